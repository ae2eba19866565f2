"""Binance client against a local server replaying the real capture (real sockets).

The expected final books are computed here straight from the capture (recorded REST snapshot +
every later diff), independently of the client and of the server.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from kit.feeds_captures import BINANCE_WS, Frame, binance_frames, binance_snapshots
from kit.feeds_helpers import Book, Collector
from kit.feeds_server import BinanceExchange
from kit.wait import wait_for

from orrange.feeds import (
    Backoff,
    BestBidOffer,
    BinanceSource,
    BookSnapshotTick,
    CandleTick,
    Liveness,
    TradeTick,
)

pytestmark = [
    pytest.mark.skipif(not BINANCE_WS.exists(), reason="ws-captures not found"),
    pytest.mark.process,
]

SYMBOLS = {"NKNUSDT": "NKN-USDT", "BLZETH": "BLZ-ETH", "LRCBTC": "LRC-BTC", "RUNEEUR": "RUNE-EUR"}


def expected_books() -> tuple[dict[str, Book], dict[str, int]]:
    books: dict[str, Book] = {}
    last: dict[str, int] = {}
    for sym, body in binance_snapshots().items():
        snap = json.loads(body)
        books[sym] = (
            {Decimal(p): Decimal(q) for p, q in snap["bids"] if Decimal(q)},
            {Decimal(p): Decimal(q) for p, q in snap["asks"] if Decimal(q)},
        )
        last[sym] = snap["lastUpdateId"]
    for f in binance_frames():
        d = f.msg["data"]
        if d.get("e") != "depthUpdate" or d["u"] <= last[d["s"]]:
            continue
        assert d["U"] <= last[d["s"]] + 1  # the capture itself has no gap
        bids, asks = books[d["s"]]
        for side, levels in ((bids, d["b"]), (asks, d["a"])):
            for p, q in levels:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(q)
        last[d["s"]] = d["u"]
    return books, last


def make_source(ex: BinanceExchange) -> BinanceSource:
    return BinanceSource(
        "binance",
        SYMBOLS,
        ws_url=ex.ws_url + "/stream",
        rest_url=ex.http_url,
        live=Liveness(Backoff(0.01, 0.05)),
    )


async def run_to_end(
    ex: BinanceExchange, src: BinanceSource, last: dict[str, int]
) -> tuple[Collector, dict[str, Book]]:
    """Run the client until it consumed the whole script and every book is at its last id;
    returns the collected ticks and the client's own final books."""
    col = Collector()
    task = asyncio.create_task(src.run(col))

    def done() -> bool:
        if not ex.finished.is_set() or src.stats.messages != ex.sent:
            return False
        return all(src.book(s) is not None and src._depth[s].last_u == last[s] for s in SYMBOLS)

    try:
        await wait_for(done, "every frame handled and every book in sync")
        internal = {s: src.book(s).as_dicts() for s in SYMBOLS}  # type: ignore[union-attr]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await src.close()
    return col, internal


async def test_binance_clean_replay_matches_capture() -> None:
    frames = binance_frames()
    books, last = expected_books()
    async with BinanceExchange(frames, binance_snapshots()) as ex:
        src = make_source(ex)
        col, internal = await run_to_end(ex, src, last)
    assert src.stats.gaps == 0 and src.stats.malformed == 0 and ex.connections == 1
    # the first REST answer of every symbol is the recorded snapshot itself
    first = {}
    for sym, _, body in ex.snapshot_requests:
        first.setdefault(sym, body)
    assert first == binance_snapshots()
    for sym, market in SYMBOLS.items():
        assert col.books[market] == books[sym]
        assert internal[sym] == books[sym]


async def test_binance_reconnects_and_resyncs_after_drop_and_disconnect() -> None:
    frames = binance_frames()
    books, last = expected_books()
    nkn_depth = [i for i, f in enumerate(frames) if f.msg["stream"] == "nknusdt@depth@100ms"]
    drop = nkn_depth[20]
    disconnect_at = len(frames) * 2 // 3
    assert drop < disconnect_at
    async with BinanceExchange(
        frames,
        binance_snapshots(),
        disconnect_at=disconnect_at,
        drop=[drop],
    ) as ex:
        src = make_source(ex)
        col, internal = await run_to_end(ex, src, last)

    # reconnected once, resubscribed the same streams, detected the gap and resynced
    assert ex.connections == 2
    assert src.stats.reconnects == 1
    assert ex.client_messages[0]["params"] == ex.client_messages[1]["params"]
    assert ex.client_messages[0]["method"] == "SUBSCRIBE"
    assert src.stats.gaps == 1
    nkn_ids = [u for s, u, _ in ex.snapshot_requests if s == "NKNUSDT"]
    assert len(nkn_ids) >= 3  # initial sync, gap resync, reconnect resync
    assert src.stats.malformed == 0

    # same final books as the capture, both inside the client and rebuilt from its ticks
    for sym, market in SYMBOLS.items():
        assert col.books[market] == books[sym], sym
        assert internal[sym] == books[sym]

    # every trade, ticker and kline of the capture, exact, in order, on our market names
    data = [f.msg["data"] for f in frames]
    want_trades = [
        (SYMBOLS[d["s"]], str(d["a"]), Decimal(d["p"]), Decimal(d["q"]), d["T"], d["m"])
        for d in data
        if d.get("e") == "aggTrade"
    ]
    got_trades = [
        (t.symbol, t.trade_id, t.price, t.qty, t.exchange_ts_ms, t.side == "sell")
        for t in col.of(TradeTick)
    ]
    assert got_trades == want_trades and len(want_trades) == 2
    want_bbo = [
        (SYMBOLS[d["s"]], Decimal(d["b"]), Decimal(d["B"]), Decimal(d["a"]), Decimal(d["A"]))
        for d in data
        if "e" not in d
    ]
    got_bbo = [
        (b.symbol, b.bid_price, b.bid_qty, b.ask_price, b.ask_qty) for b in col.of(BestBidOffer)
    ]
    assert got_bbo == want_bbo and len(want_bbo) == 84
    candles = col.of(CandleTick)
    want_k = [d["k"] for d in data if d.get("e") == "kline"]
    assert [(c.open_time_ms, c.close, c.volume, c.trade_count, c.closed) for c in candles] == [
        (k["t"], Decimal(k["c"]), Decimal(k["v"]), k["n"], k["x"]) for k in want_k
    ]
    assert all(str(t.price) == d for t, d in zip(col.of(TradeTick), ["0.35280000", t_price(data)]))


def t_price(data: list[dict]) -> str:
    return [d for d in data if d.get("e") == "aggTrade"][1]["p"]


class _FlakyRest(BinanceExchange):
    """The REST endpoint first fails (HTTP 503), then answers NKNUSDT with a snapshot older
    than the stream (``lastUpdateId`` below the first buffered ``U``), then behaves."""

    STALE_ID = 499869700

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.nkn_calls = 0

    def _process_request(self, conn, request):  # type: ignore[no-untyped-def]
        if "symbol=NKNUSDT" in request.path:
            self.nkn_calls += 1
            if self.nkn_calls == 1:
                return conn.respond(503, "busy")
            if self.nkn_calls == 2:
                snap = json.loads(binance_snapshots()["NKNUSDT"])
                snap["lastUpdateId"] = self.STALE_ID
                return conn.respond(200, json.dumps(snap))
        return super()._process_request(conn, request)


async def test_binance_refetches_failed_and_stale_snapshots() -> None:
    """Steps 3 and 4 of Binance's procedure: a snapshot older than the first buffered event is
    fetched again (as is a failed request), and the book still ends equal to the capture's."""
    books, last = expected_books()
    async with _FlakyRest(binance_frames(), binance_snapshots()) as ex:
        src = make_source(ex)
        col, internal = await run_to_end(ex, src, last)
    assert ex.nkn_calls >= 3
    assert src.stats.gaps == 0 and src.stats.resyncs == len(SYMBOLS)  # one sync per symbol
    for sym, market in SYMBOLS.items():
        assert col.books[market] == books[sym] == internal[sym], sym
    nkn = [t for t in col.of(BookSnapshotTick) if t.symbol == "NKN-USDT"]
    assert len(nkn) == 1 and nkn[0].sequence > _FlakyRest.STALE_ID  # the stale one never applied


async def test_binance_malformed_depth_frame_is_dropped_without_breaking_the_sync() -> None:
    frames = binance_frames()
    bad = '{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"NKNUSDT",'
    bad += '"U":1,"u":2,"b":[["not a price","1"]],"a":[]}}'
    frames.insert(1, Frame(frames[0].ts, frames[0].conn, bad, json.loads(bad)))  # while buffering
    books, last = expected_books()
    async with BinanceExchange(frames, binance_snapshots()) as ex:
        src = make_source(ex)
        col, internal = await run_to_end(ex, src, last)
    assert src.stats.malformed == 1 and src.stats.gaps == 0
    for sym, market in SYMBOLS.items():
        assert col.books[market] == books[sym] == internal[sym], sym
