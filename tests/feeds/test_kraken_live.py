"""Kraken v1 client against a local server replaying the real capture (three recorded
connections merged into one stream), with a forced disconnect mid-stream.

Kraken v1 book frames carry no sequence number, so a dropped update cannot be detected without
the CRC32 checksum (which the client does not verify); the resync this test checks is the one
every reconnect performs: a fresh depth-1000 snapshot on resubscribe. The expected books are
computed here from the capture by Kraken's documented procedure (apply, delete on zero volume,
truncate to the subscribed depth).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from kit.feeds_captures import KRAKEN, jsonl_frames
from kit.feeds_helpers import Book, Collector
from kit.feeds_server import KrakenExchange
from kit.wait import wait_for

from orrange.feeds import Backoff, BestBidOffer, KrakenSource, Liveness, TradeTick

pytestmark = [
    pytest.mark.skipif(not KRAKEN.exists(), reason="ws-captures not found"),
    pytest.mark.process,
]

PAIRS = [
    "WAVES/EUR", "XMR/USD", "KSM/XBT", "GRT/ETH", "SC/EUR",
    "ETH/CHF", "OCEAN/XBT", "OMG/USD", "XBT/CHF", "ADA/XBT",
]  # fmt: skip
SYMBOLS = {p: p.replace("XBT", "BTC").replace("/", "-") for p in PAIRS}
DEPTH = 1000


def expected(frames: list) -> tuple[dict[str, Book], list[tuple], list[tuple]]:
    books: dict[str, Book] = {}
    trades: list[tuple] = []
    bbo: list[tuple] = []
    for f in sorted(frames, key=lambda f: f.ts):
        m = f.msg
        if not isinstance(m, list):
            continue
        name, pair = m[-2], m[-1]
        if name == "trade":
            trades += [
                (SYMBOLS[pair], Decimal(t[0]), Decimal(t[1]), "buy" if t[3] == "b" else "sell")
                for t in m[1]
            ]
        elif name == "ticker":
            bbo.append((SYMBOLS[pair], Decimal(m[1]["b"][0]), Decimal(m[1]["a"][0])))
        elif "as" in m[1] or "bs" in m[1]:
            books[pair] = (
                {Decimal(p): Decimal(q) for p, q, _ in m[1]["bs"]},
                {Decimal(p): Decimal(q) for p, q, _ in m[1]["as"]},
            )
        else:
            bids, asks = books[pair]
            for part in m[1:-2]:
                for key, side in (("b", bids), ("a", asks)):
                    for lv in part.get(key, []):
                        if Decimal(lv[1]) == 0:
                            side.pop(Decimal(lv[0]), None)
                        else:
                            side[Decimal(lv[0])] = Decimal(lv[1])
            if len(bids) > DEPTH:
                for p in sorted(bids, reverse=True)[DEPTH:]:
                    del bids[p]
            if len(asks) > DEPTH:
                for p in sorted(asks)[DEPTH:]:
                    del asks[p]
    return books, trades, bbo


async def test_kraken_reconnects_resubscribes_and_matches_capture() -> None:
    frames = jsonl_frames(KRAKEN)
    books, trades, bbo = expected(frames)
    async with KrakenExchange(frames, disconnect_at=len(frames) // 2) as ex:
        src = KrakenSource("kraken", SYMBOLS, ws_url=ex.ws_url, live=Liveness(Backoff(0.01, 0.05)))
        col = Collector()
        task = asyncio.create_task(src.run(col))
        try:
            await wait_for(
                lambda: ex.finished.is_set() and src.stats.messages == ex.sent,
                "every frame handled",
            )
            internal = {p: src.book(p).as_dicts() for p in PAIRS}  # type: ignore[union-attr]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    assert ex.connections == 2 and src.stats.reconnects == 1
    subs = [(m["subscription"]["name"], tuple(m["pair"])) for m in ex.client_messages]
    assert subs == 2 * [("trade", tuple(PAIRS)), ("ticker", tuple(PAIRS)), ("book", tuple(PAIRS))]
    assert ex.generated_snapshots == len(PAIRS)  # every book resynced on the new connection
    assert src.stats.snapshots == 2 * len(PAIRS) and src.stats.malformed == 0
    for pair in PAIRS:
        assert col.books[SYMBOLS[pair]] == books[pair], pair
        assert internal[pair] == books[pair], pair
    got = [(t.symbol, t.price, t.qty, t.side) for t in col.of(TradeTick)]
    assert got == trades and len(trades) >= 8
    assert [(b.symbol, b.bid_price, b.ask_price) for b in col.of(BestBidOffer)] == bbo
    assert len(bbo) == 18
