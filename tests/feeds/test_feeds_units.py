"""Normalization, robustness and the offline sources (real sockets, real data files)."""

from __future__ import annotations

import asyncio
import json
import random
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from kit.feeds_helpers import Collector
from kit.wait import wait_for
from websockets.asyncio.server import ServerConnection, serve

from orrange.feeds import (
    Backoff,
    BestBidOffer,
    BinanceSource,
    BookSnapshotTick,
    CoinbaseSource,
    FeedConfig,
    FileReplaySource,
    KrakenSource,
    Liveness,
    RandomWalkSource,
    TradeTick,
    WsSource,
    build_sources,
    decode_tick,
    encode_tick,
    load_sources,
    parse_sources,
)
from orrange.feeds.base import iso_to_ms, seconds_str_to_ms
from orrange.marketdata.tradefiles import scale_spec
from orrange.markets import load_markets

REPO = Path(__file__).resolve().parents[2]
BINANCE_DATA = (REPO / ".." / "shared" / "data" / "binance").resolve()
FAST = Liveness(Backoff(0.01, 0.05))


def test_ticks_round_trip_exactly() -> None:
    t = TradeTick(
        source="binance",
        symbol="LRC-BTC",
        exchange_ts_ms=1633998534486,
        recv_ts_ms=1633998534490,
        trade_id="12368013",
        price=Decimal("0.00000638"),
        qty=Decimal("177.00000000"),
        side="buy",
    )
    raw = encode_tick(t)
    assert b'"price":"0.00000638"' in raw and b'"kind":"trade"' in raw
    assert decode_tick(raw) == t
    snap = BookSnapshotTick(
        source="kraken",
        symbol="XMR-USD",
        exchange_ts_ms=1,
        recv_ts_ms=2,
        bids=((Decimal("354.15000000"), Decimal("5")),),
        asks=(),
        sequence=0,
    )
    assert decode_tick(encode_tick(snap)) == snap
    with pytest.raises(msgspec.ValidationError):
        decode_tick(b'{"kind":"trade","price":1.5}')


def test_timestamps_are_exact_ms_utc() -> None:
    assert iso_to_ms("2026-08-09T21:05:48.228568804Z") == 1786309548228
    assert iso_to_ms("2026-08-09T21:05:42.5Z") == 1786309542500
    assert iso_to_ms("2026-08-09T21:05:42Z") == 1786309542000
    assert iso_to_ms("2026-08-09T21:05:42.514318+00:00") == 1786309542514
    for bad in ("2026-08-09T21:05:42+02:00", "yesterday", "2026-08-09T21:05:42.x1Z"):
        with pytest.raises(ValueError):
            iso_to_ms(bad)
    assert seconds_str_to_ms("1618678132.214235") == 1618678132214
    assert seconds_str_to_ms("1618678132") == 1618678132000
    with pytest.raises(ValueError):
        seconds_str_to_ms("-1.5")


def test_backoff_grows_with_jitter_and_caps() -> None:
    b = Backoff(0.5, 4.0, rng=random.Random(1))
    for attempt, full in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0), (500, 4.0)]:
        delays = {b.delay(attempt) for _ in range(50)}
        assert all(full / 2 <= d <= full for d in delays)
        assert len(delays) > 1  # jittered
    with pytest.raises(ValueError):
        Backoff(0)


class _Scripted:
    """A WebSocket server sending fixed frames after the first client message, then recording
    what the client sends."""

    def __init__(self, frames: list[str]) -> None:
        self.frames = frames
        self.connections = 0
        self.received: list[str] = []

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        self.received.append(str(await ws.recv()))
        for f in self.frames:
            await ws.send(f)
        async for m in ws:
            self.received.append(str(m))


AGG = {"e": "aggTrade", "E": 1, "s": "NKNUSDT", "a": 7, "p": "0.3528", "q": "58", "T": 5, "m": 0}
CB_TRADE = {
    "channel": "market_trades",
    "timestamp": "2026-08-09T21:05:48.251397169Z",
    "sequence_num": 0,
    "events": [
        {
            "type": "update",
            "trades": [
                {
                    "product_id": "BTC-USD",
                    "trade_id": "1068572091",
                    "price": "65083.67",
                    "size": "0.01034361",
                    "time": "2026-08-09T21:05:48.167634Z",
                    "side": "SELL",
                }
            ],
        }
    ],
}
KR_TRADE = [993, [["354.11000000", "0.89594024", "1618678142.557535", "s", "l", ""]], "trade"]

CASES = {
    "binance": (
        lambda url: BinanceSource("b", {"NKNUSDT": "NKN-USDT"}, ws_url=url, live=FAST),
        [
            "not json",
            json.dumps({"stream": "x", "data": {"e": "aggTrade", "s": "NKNUSDT"}}),
            json.dumps({"stream": "x", "data": {**AGG, "s": "UNKNOWN"}}),
            json.dumps({"stream": "x", "data": {**AGG, "p": "abc"}}),
            json.dumps({"stream": "x", "data": AGG}),
        ],
    ),
    "coinbase": (
        lambda url: CoinbaseSource("c", {"BTC-USD": "BTC-USD"}, ws_url=url, live=FAST),
        [
            "[1, 2",
            json.dumps({"channel": "nope", "events": []}),
            json.dumps({**CB_TRADE, "sequence_num": None, "events": [{"trades": [{}]}]}),
            json.dumps({"channel": "ticker", "timestamp": "bad", "events": []}),
            json.dumps(CB_TRADE),
        ],
    ),
    "kraken": (
        lambda url: KrakenSource("k", {"XMR/USD": "XMR-USD"}, ws_url=url, live=FAST),
        [
            "{",
            json.dumps([993, {"a": [["1", "2", "3"]]}, "book-1000", "XMR/USD"]),  # no snapshot
            json.dumps([*KR_TRADE, "DOGE/USD"]),
            json.dumps([993, [["1", "2", "x", "s", "l", ""]], "trade", "XMR/USD"]),
            json.dumps([*KR_TRADE, "XMR/USD"]),
        ],
    ),
}


@pytest.mark.parametrize("exchange", sorted(CASES))
async def test_malformed_frames_are_counted_not_fatal(exchange: str) -> None:
    make, frames = CASES[exchange]
    server = _Scripted(frames)
    async with serve(server.handler, "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
        src: WsSource = make(f"ws://127.0.0.1:{port}")
        col = Collector()
        task = asyncio.create_task(src.run(col))
        try:
            await wait_for(lambda: src.stats.messages == len(frames), "every frame handled")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert src.stats.malformed == len(frames) - 1
    assert src.stats.reconnects == 0 and server.connections == 1
    [trade] = col.of(TradeTick)
    assert trade.price in (Decimal("0.3528"), Decimal("65083.67"), Decimal("354.11000000"))


async def test_silent_connection_is_dropped_and_resubscribed() -> None:
    server = _Scripted([])  # accepts the subscription, then never sends a frame
    async with serve(server.handler, "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
        live = Liveness(Backoff(0.01, 0.02), idle_timeout=0.1)
        src = KrakenSource(
            "k",
            {"XMR/USD": "XMR-USD"},
            ws_url=f"ws://127.0.0.1:{port}",
            live=live,
            channels=["bbo"],
        )
        task = asyncio.create_task(src.run(Collector()))
        try:
            await wait_for(lambda: server.connections >= 3, "three connections")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert src.stats.reconnects >= 2
    assert all(json.loads(m)["subscription"] == {"name": "ticker"} for m in server.received)


async def test_unreachable_endpoint_keeps_retrying() -> None:
    src = CoinbaseSource("c", {"BTC-USD": "BTC-USD"}, ws_url="ws://127.0.0.1:9", live=FAST)
    task = asyncio.create_task(src.run(Collector()))
    try:
        await wait_for(lambda: src.stats.reconnects >= 3, "three reconnects")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert src.stats.connects == 0


@pytest.mark.skipif(not BINANCE_DATA.exists(), reason="binance data set not found")
async def test_file_replay_csv_and_ccxt_json_give_the_same_ticks() -> None:
    spec = scale_spec("0.00000001", "0.00000001", "XRP-ETH")
    csv_path = next(BINANCE_DATA.glob("XRPETH-aggTrades-*.csv"))
    json_path = BINANCE_DATA / "XRP_ETH-trades.json.gz"
    out = {}
    for path in (csv_path, json_path):
        src = FileReplaySource("replay", path, "XRP-ETH", spec, speed=0)
        out[path.suffix] = [t async for t in src.stream()]
    csv_ticks, json_ticks = out[".csv"], out[".gz"]
    assert len(csv_ticks) == 12477
    key = [(t.exchange_ts_ms, t.price, t.qty, t.side) for t in csv_ticks]
    assert key == [(t.exchange_ts_ms, t.price, t.qty, t.side) for t in json_ticks]
    first = csv_ticks[0]  # 13519807,0.00141342,23.00000000,...,1570752011620,True,True
    assert (first.price, first.qty, first.exchange_ts_ms, first.side) == (
        Decimal("0.00141342"),
        Decimal("23.00000000"),
        1570752011620,
        "sell",
    )
    assert all(isinstance(t, TradeTick) and t.symbol == "XRP-ETH" for t in csv_ticks)


async def test_file_replay_bad_row_ends_replay_without_raising(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "1,0.00141342,23.00000000,1,1,1570752011620,True,True\n2,oops,1,2,2,1570752011621,True,True\n"
    )
    src = FileReplaySource("replay", path, "XRP-ETH", scale_spec("0.00000001", "0.00000001"))
    ticks = [t async for t in src.stream()]
    assert len(ticks) == 1 and src.stats.malformed == 1


async def test_random_walk_is_seeded_and_on_grid() -> None:
    markets = load_markets(REPO / "config" / "markets.toml")
    chosen = {m: markets[m] for m in ("BTC-USDT", "ETH-USDT")}
    prices = {"BTC-USDT": "65000.00", "ETH-USDT": "1900.00"}

    def walk(seed: int) -> RandomWalkSource:
        return RandomWalkSource(
            "synthetic", chosen, prices, seed=seed, count=200, realtime=False, start_ms=10**12
        )

    a = [t async for t in walk(7).stream()]
    b = [t async for t in walk(7).stream()]
    c = [t async for t in walk(8).stream()]
    assert a == b and a != c and len(a) == 200 * 2 * 2
    for trade, bbo in zip(a[::2], a[1::2]):
        assert isinstance(trade, TradeTick) and isinstance(bbo, BestBidOffer)
        spec = chosen[trade.symbol]
        ticks = spec.price_to_ticks(trade.price)  # raises if off the tick grid
        spec.qty_to_lots(trade.qty)
        assert spec.price_to_ticks(bbo.bid_price) == ticks - 1
        assert spec.price_to_ticks(bbo.ask_price) == ticks + 1
        assert trade.exchange_ts_ms == bbo.exchange_ts_ms >= 10**12


def test_sources_config_builds_the_offline_default() -> None:
    cfgs = load_sources(REPO / "config" / "sources.toml")
    assert [c.name for c in cfgs][:4] == ["synthetic", "binance", "coinbase", "kraken"]
    markets = load_markets(REPO / "config" / "markets.toml")
    built = build_sources(cfgs, markets)
    assert [type(s) for s in built] == [RandomWalkSource]  # live feeds are opt-in
    binance = next(c for c in cfgs if c.kind == "binance")
    assert set(binance.symbols.values()) <= set(markets)
    local = msgspec.structs.replace(
        binance, enabled=True, ws_url="ws://127.0.0.1:1/stream", rest_url="http://127.0.0.1:1"
    )
    [src] = build_sources([local], markets)
    assert isinstance(src, BinanceSource) and src.url == "ws://127.0.0.1:1/stream"
    assert src.rest_url == "http://127.0.0.1:1"
    assert "btcusdt@depth@100ms" in src.streams()


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "x", "kind": "binance"},  # no symbols
        {"name": "x", "kind": "ftx", "symbols": {"A": "B"}},
        {"name": "x", "kind": "replay", "market": "BTC-USDT"},  # no path
        {"name": "x", "kind": "random_walk", "start_prices": {"A": "1"}, "colour": "red"},
    ],
)
def test_invalid_source_entries_are_refused(entry: dict) -> None:
    with pytest.raises(ValueError):
        parse_sources({"source": [entry]})


def test_duplicate_names_and_unknown_markets_are_refused() -> None:
    entry = {"name": "s", "kind": "random_walk", "start_prices": {"NOPE-USD": "1"}}
    with pytest.raises(ValueError, match="duplicate"):
        parse_sources({"source": [entry, entry]})
    [cfg] = parse_sources({"source": [entry]})
    assert isinstance(cfg, FeedConfig)
    with pytest.raises(ValueError, match="unknown markets"):
        build_sources([cfg], load_markets(REPO / "config" / "markets.toml"))


async def test_stream_surfaces_a_source_failure(tmp_path: Path) -> None:
    src = FileReplaySource("replay", tmp_path / "missing.csv", "XRP-ETH", scale_spec("1", "1"))
    with pytest.raises(OSError):
        _ = [t async for t in src.stream()]


def _kr_book(payload: dict, pair: str = "XMR/USD") -> str:
    return json.dumps([992, payload, "book-1000", pair])


def _cb_l2(seq: int, kind: str, updates: list[tuple[str, str, str]]) -> str:
    ups = [
        {"side": sd, "event_time": "", "price_level": p, "new_quantity": q} for sd, p, q in updates
    ]
    return json.dumps(
        {
            "channel": "l2_data",
            "timestamp": "2026-08-09T21:05:48.483587501Z",
            "sequence_num": seq,
            "events": [{"type": kind, "product_id": "BTC-USD", "updates": ups}],
        }
    )


T = "1618678132.214235"
RESYNC_CASES = {
    "kraken": (
        lambda url: KrakenSource(
            "k", {"XMR/USD": "XMR-USD"}, ws_url=url, live=FAST, channels=["book"]
        ),
        [
            _kr_book({"as": [["355.1", "2", T]], "bs": [["354.1", "1", T]]}),
            _kr_book({"b": [["354.2", "3", T], ["bad", "1", T]]}),  # malformed
            _kr_book({"b": [["354.3", "9", T]]}),  # before the new snapshot: ignored
            _kr_book({"as": [["355.0", "4", T]], "bs": [["354.0", "5", T]]}),
            _kr_book({"a": [["355.5", "6", T]]}),
        ],
        ["unsubscribe", "subscribe"],
    ),
    "coinbase": (
        lambda url: CoinbaseSource(
            "c", {"BTC-USD": "BTC-USD"}, ws_url=url, live=FAST, channels=["book"]
        ),
        [
            _cb_l2(0, "snapshot", [("bid", "354.1", "1"), ("offer", "355.1", "2")]),
            _cb_l2(1, "update", [("bid", "354.2", "3"), ("bid", "354.25", "x")]),  # malformed
            _cb_l2(2, "update", [("bid", "354.3", "9")]),  # before the new snapshot: ignored
            _cb_l2(3, "snapshot", [("bid", "354.0", "5"), ("offer", "355.0", "4")]),
            _cb_l2(4, "update", [("offer", "355.5", "6")]),
        ],
        ["unsubscribe", "subscribe"],
    ),
}


@pytest.mark.parametrize("exchange", sorted(RESYNC_CASES))
async def test_malformed_book_frame_triggers_a_book_resubscribe(exchange: str) -> None:
    make, frames, requests = RESYNC_CASES[exchange]
    server = _Scripted(frames)
    async with serve(server.handler, "127.0.0.1", 0) as srv:
        src: WsSource = make(f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}")
        col = Collector()
        task = asyncio.create_task(src.run(col))
        try:
            await wait_for(
                lambda: src.stats.messages == len(frames) and len(server.received) >= 3,
                "every frame handled and three requests received",
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    sent = [json.loads(m) for m in server.received]
    assert [m.get("event", m.get("type")) for m in sent[-2:]] == requests
    assert src.stats.malformed == 1 and src.stats.resyncs == 1 and src.stats.snapshots == 2
    [market] = col.books
    bids, asks = col.books[market]
    assert bids == {Decimal("354.0"): Decimal(5)}
    assert asks == {Decimal("355.0"): Decimal(4), Decimal("355.5"): Decimal(6)}


async def test_file_replay_paces_by_recorded_time_and_speed(tmp_path: Path) -> None:
    """A virtual clock that only moves when the source sleeps: the replay must sleep until
    each trade's scheduled offset ``(ts - ts0) / 1000 / speed``."""
    path = tmp_path / "t.csv"
    times = [1_000, 1_000, 3_000, 11_000]  # ms
    path.write_text("".join(f"{i},0.5,1,{i},{i},{t},False,True\n" for i, t in enumerate(times, 1)))
    now = [100.0]
    emitted_at: list[float] = []

    async def sleep(s: float) -> None:
        now[0] += s

    async def emit(tick: object) -> None:
        emitted_at.append(now[0])

    src = FileReplaySource(
        "replay", path, "X", scale_spec("0.1", "1"), speed=4.0, clock=lambda: now[0], sleep=sleep
    )
    await src.run(emit)  # type: ignore[arg-type]
    assert [round(t - 100.0, 9) for t in emitted_at] == [0.0, 0.0, 0.5, 2.5]
