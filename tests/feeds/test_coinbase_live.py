"""Coinbase Advanced Trade client against a local server replaying the real capture.

A level2 update frame is dropped on the wire (its ``sequence_num`` is consumed, leaving a hole)
and the connection is closed mid-stream; the client must resync (fresh snapshot) and reconnect
(resubscribe), and end with the capture's books and trades, which are computed here straight
from the capture.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from kit.feeds_captures import COINBASE, jsonl_frames
from kit.feeds_helpers import Book, Collector
from kit.feeds_server import CoinbaseExchange
from kit.wait import wait_for

from orrange.feeds import Backoff, BestBidOffer, CoinbaseSource, Liveness, TradeTick

pytestmark = [
    pytest.mark.skipif(not COINBASE.exists(), reason="ws-captures not found"),
    pytest.mark.process,
]

SYMBOLS = {"BTC-USD": "BTC-USD", "ETH-USD": "ETH-USD"}


def expected(frames: list) -> tuple[dict[str, Book], dict[str, list[tuple]], list[tuple]]:
    books: dict[str, Book] = {}
    trades: dict[str, dict[int, tuple]] = {p: {} for p in SYMBOLS}
    bbo: list[tuple] = []
    for f in frames:
        m = f.msg
        ch = m.get("channel")
        for ev in m.get("events", []):
            if ch == "l2_data":
                if ev["type"] == "snapshot":
                    books[ev["product_id"]] = ({}, {})
                bids, asks = books[ev["product_id"]]
                for u in ev["updates"]:
                    side = bids if u["side"] == "bid" else asks
                    if Decimal(u["new_quantity"]) == 0:
                        side.pop(Decimal(u["price_level"]), None)
                    else:
                        side[Decimal(u["price_level"])] = Decimal(u["new_quantity"])
            elif ch == "market_trades":
                for t in ev["trades"]:
                    trades[t["product_id"]][int(t["trade_id"])] = (
                        t["trade_id"],
                        Decimal(t["price"]),
                        Decimal(t["size"]),
                        {"BUY": "sell", "SELL": "buy"}[t["side"]],  # maker side -> taker
                    )
            elif ch == "ticker":
                bbo += [
                    (tk["product_id"], Decimal(tk["best_bid"]), Decimal(tk["best_ask"]))
                    for tk in ev["tickers"]
                ]
    by_id = {p: [ts[k] for k in sorted(ts)] for p, ts in trades.items()}
    return books, by_id, bbo


async def test_coinbase_resyncs_on_sequence_gap_and_reconnects() -> None:
    frames = jsonl_frames(COINBASE)
    books, trades, bbo = expected(frames)
    l2_updates = [
        i
        for i, f in enumerate(frames)
        if f.msg.get("channel") == "l2_data" and f.msg["events"][0]["type"] == "update"
    ]
    drop = l2_updates[100]
    disconnect_at = len(frames) * 2 // 3
    assert drop < disconnect_at
    async with CoinbaseExchange(frames, disconnect_at=disconnect_at, drop=[drop]) as ex:
        src = CoinbaseSource(
            "coinbase", SYMBOLS, ws_url=ex.ws_url, live=Liveness(Backoff(0.01, 0.05))
        )
        col = Collector()
        task = asyncio.create_task(src.run(col))

        def done() -> bool:
            return (
                ex.finished.is_set()
                and src.stats.messages == ex.sent
                and all(src.book(p) is not None for p in SYMBOLS)
            )

        try:
            await wait_for(done, "every frame handled and every book built")
            internal = {p: src.book(p).as_dicts() for p in SYMBOLS}  # type: ignore[union-attr]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    assert ex.connections == 2 and src.stats.reconnects == 1
    assert src.stats.gaps == 1 and src.stats.resyncs == 1
    assert ex.generated_snapshots == 2  # one for the level2 resubscribe, one after reconnect
    unsubs = [m for m in ex.client_messages if m["type"] == "unsubscribe"]
    assert [m["channel"] for m in unsubs] == ["level2"]
    subs = [m["channel"] for m in ex.client_messages if m["type"] == "subscribe"]
    first = ["market_trades", "level2", "ticker", "heartbeats"]
    assert subs == [*first, "level2", *first]  # resync, then a full resubscribe
    assert src.stats.malformed == 0

    for p in SYMBOLS:
        assert col.books[p] == books[p], p
        assert internal[p] == books[p], p
        got = [(t.trade_id, t.price, t.qty, t.side) for t in col.of(TradeTick) if t.symbol == p]
        assert got == trades[p], p  # every trade once, despite the repeated snapshots
    assert [(b.symbol, b.bid_price, b.ask_price) for b in col.of(BestBidOffer)] == bbo
    assert len(bbo) > 0 and sum(len(v) for v in trades.values()) > 50


def test_coinbase_trade_side_in_the_capture_is_the_makers() -> None:
    """Evidence for the side flip: a trade at the best ask (bid) of the latest ticker was a
    taker buy (sell); the recorded ``side`` says the opposite for almost all of them."""
    best: dict[str, tuple[Decimal, Decimal]] = {}
    maker = taker = 0
    for f in jsonl_frames(COINBASE):
        m = f.msg
        for ev in m.get("events", []):
            if m.get("channel") == "ticker":
                for tk in ev["tickers"]:
                    best[tk["product_id"]] = (Decimal(tk["best_bid"]), Decimal(tk["best_ask"]))
            elif m.get("channel") == "market_trades" and ev["type"] == "update":
                for t in ev["trades"]:
                    bid, ask = best.get(t["product_id"], (Decimal(0), Decimal("Infinity")))
                    price = Decimal(t["price"])
                    aggressor = "BUY" if price >= ask else "SELL" if price <= bid else None
                    if aggressor is not None:
                        taker += t["side"] == aggressor
                        maker += t["side"] != aggressor
    assert maker > 10 * max(taker, 1)
