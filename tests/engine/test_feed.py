"""The feed actor on a real nats-server and PostgreSQL, beside a real matcher (in-process):
tick batches and index prices are published (``md.ticks.<SRC>``, ``md.indexes``,
``md.index.<SYM>``), the index reaches the matcher as its reference price and triggers an
index-driven stop order, and the candles built from external trades and our own fills
(``evt.<SYM>`` batches) are published (``md.candles``, ``md.candle.<IV>.<SYM>``) and stored
exactly as the pure core builds them."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import pytest
from kit.wait import wait_for

from actors.feed import main
from orrange.engine.feed import COARSE_STORE_EVERY, Feed, _chunks, index_configs
from orrange.engine.matcher import Matcher
from orrange.feeds import FeedConfig, shard_sources
from orrange.marketdata.candles import Candle, CandleAggregator, CandleClosed
from orrange.marketdata.index import IndexPrice
from orrange.marketdata.ticks import BestBidOffer, TradeTick
from orrange.markets import load_markets
from orrange.matching import Event, OrderFilled, OrderTriggered, SubmitOrder
from orrange.matching.enums import OrderType, Side, TriggerSource
from orrange.runtime import ActorConfig, Publisher
from orrange.settings import config_file
from orrange.store.candles import query_candles
from orrange.wire.engine import book_in_subject, decode_events
from orrange.wire.marketdata import FEED_DURABLE, decode_candles, decode_indexes, decode_ticks

MARKETS = {
    k: v
    for k, v in load_markets(config_file("markets.toml")).items()
    if k in ("BTC-USDT", "ETH-USDT")
}
BTC, ETH = MARKETS["BTC-USDT"], MARKETS["ETH-USDT"]


def _replay_csv(path: Path, now: int, n: int) -> list[tuple[int, int, int, bool]]:
    """Binance aggTrades rows of ETH-USDT over the last ~3 minutes; returns (ts, ticks, lots,
    buyer_is_maker) of each."""
    rows, trades = [], []
    start = now - 180_000
    for i in range(n):
        ts = start + i * (170_000 // n)
        ticks = 190_000 + (i * 37) % 500 - 250
        lots = 1 + (i * 13) % 90
        maker = i % 3 == 0
        trades.append((ts, ticks, lots, maker))
        rows.append(
            f"{i},{ETH.ticks_to_price(ticks)},{ETH.lots_to_qty(lots)},{i},{i},{ts},"
            f"{'True' if maker else 'False'},True"
        )
    path.write_text("\n".join(rows) + "\n")
    return trades


def _key(c: Candle) -> tuple[Any, ...]:
    return (isinstance(c, CandleClosed), *msgspec.structs.astuple(c))


async def test_feed_ticks_index_reference_stop_and_candles(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    now = time.time_ns() // 1_000_000
    replay = _replay_csv(tmp_path / "eth.csv", now, 240)
    sources = [
        FeedConfig(
            name="synthetic",
            kind="random_walk",
            seed=3,
            interval_ms=20,
            max_step_ticks=5,
            start_prices={"BTC-USDT": "65000.00"},
        ),
        FeedConfig(
            name="replay", kind="replay", path=str(tmp_path / "eth.csv"), market="ETH-USDT", speed=0
        ),
    ]

    def cfg(name: str) -> ActorConfig:
        return ActorConfig(name=name, nats_url=nats_url, metrics_port=None, fetch_timeout_ms=50)

    matcher = Matcher(cfg("matcher"), MARKETS, ["BTC-USDT", "ETH-USDT"])
    feed = Feed(
        cfg("feed"),
        database_url,
        MARKETS,
        sources,
        index_interval_ms=50,
        candle_lateness_ms=3_600_000,
    )
    nc = await nats.connect(nats_url)
    seen: dict[str, list[bytes]] = {
        "tick": [],
        "indexes": [],
        "index": [],
        "evt": [],
        "candles": [],
        "closed": [],
    }

    def collector(kind: str) -> Callable[[Any], Awaitable[None]]:
        async def cb(msg: Any) -> None:
            seen[kind].append(msg.data)

        return cb

    for kind, subject in (
        ("tick", "md.ticks.synthetic"),
        ("indexes", "md.indexes"),
        ("index", "md.index.BTC-USDT"),
        ("evt", "evt.BTC-USDT"),
        ("candles", "md.candles"),
        ("closed", "md.candle.>"),
    ):
        await nc.subscribe(subject, cb=collector(kind))
    conn = await asyncpg.connect(database_url)
    try:
        await matcher.start()
        pub = Publisher(nc)
        # a resting ask far above the walk, and an index-driven stop buy below it: only a
        # reference price (the index) can trigger the stop, which then lifts the ask
        ask = SubmitOrder(ts=now, user="maker", side=Side.SELL, quantity=100, price=7_000_000)
        stop = SubmitOrder(
            ts=now,
            user="taker",
            side=Side.BUY,
            quantity=100,
            order_type=OrderType.STOP_MARKET,
            trigger_price=6_000_000,
            trigger_source=TriggerSource.INDEX,
        )
        await pub.publish(book_in_subject("BTC-USDT"), ask, msg_id="t:ask")
        await pub.publish(book_in_subject("BTC-USDT"), stop, msg_id="t:stop")
        await feed.start()

        # ticks and index prices; every index price is a price the walk printed
        def ticks() -> list[Any]:
            return [t for b in list(seen["tick"]) for t in decode_ticks(b)]

        await wait_for(
            lambda: len(seen["indexes"]) >= 5 and seen["index"] and len(ticks()) >= 10, "index"
        )
        indexes = [ip for b in list(seen["indexes"])[:5] for ip in decode_indexes(b)]
        assert {ip.symbol for ip in indexes} <= {"BTC-USDT", "ETH-USDT"}  # each names its market
        indexes = [ip for ip in indexes if ip.symbol == "BTC-USDT"]
        assert indexes
        latest = msgspec.json.decode(seen["index"][0], type=IndexPrice)

        def printed() -> set[int]:
            return {BTC.price_to_ticks(str(t.price)) for t in ticks() if isinstance(t, TradeTick)}

        # every index price is a price the walk printed (its tick batch and the index round
        # are separate messages, either may come first)
        await wait_for(
            lambda: {ip.price for ip in [*indexes, latest]} <= printed(), "the indexed ticks"
        )
        for ip in [*indexes, latest]:
            assert ip.symbol == "BTC-USDT" and ip.sources == ("synthetic",)
            assert ip.confidence == 1.0
        assert {type(t) for t in ticks()} == {TradeTick, BestBidOffer}
        assert {t.symbol for t in ticks()} == {"BTC-USDT"}
        steps = [int(t.trade_id) for t in ticks() if isinstance(t, TradeTick)]
        assert steps == list(range(len(steps)))  # every tick, once, in order

        # the reference price reached the matcher and triggered the stop, which traded
        def events() -> list[Event]:
            return [e for b in list(seen["evt"]) for e in decode_events(b)]

        await wait_for(lambda: any(isinstance(e, OrderFilled) for e in events()), "stop fill")
        trig = next(e for e in events() if isinstance(e, OrderTriggered))
        assert trig.source is TriggerSource.INDEX and trig.user == "taker"
        assert trig.observed_price in printed()
        fill = next(e for e in events() if isinstance(e, OrderFilled))
        assert (fill.price, fill.quantity, fill.taker_user) == (7_000_000, 100, "taker")

        # our own fill is in the BTC candles (its price is far above every walk price)
        async def btc_fill_stored() -> bool:
            rows = await query_candles(conn, "BTC-USDT", "1m", 0, 2**62, 1000)
            return any(c.high == 7_000_000 for c in rows)

        await wait_for(btc_fill_stored, "the own fill in the BTC candles")

        # ETH: the whole replay is stored, then one own fill joins the open window
        async def eth_trades() -> int:
            rows = await query_candles(conn, "ETH-USDT", "1m", 0, 2**62, 1000)
            return sum(c.trades for c in rows)

        await wait_for(lambda: _eq(eth_trades(), len(replay)), "the replay's candles")
        last_ts = replay[-1][0]
        sell = SubmitOrder(ts=last_ts + 1, user="s", side=Side.SELL, quantity=50, price=190_100)
        buy = SubmitOrder(ts=last_ts + 1, user="b", side=Side.BUY, quantity=50, price=190_100)
        await pub.publish(book_in_subject("ETH-USDT"), sell, msg_id="t:eth-sell")
        await pub.publish(book_in_subject("ETH-USDT"), buy, msg_id="t:eth-buy")
        await wait_for(lambda: _eq(eth_trades(), len(replay) + 1), "the ETH fill's candle")

        agg = CandleAggregator(emit_updates=False)
        expected: list[Candle] = []
        for ts, ticks_, lots, maker in replay:
            expected += agg.add_trade("ETH-USDT", ts, ticks_, lots, maker)
        expected += agg.add_trade("ETH-USDT", last_ts + 1, 190_100, 50, buyer_is_maker=False)
        expected += agg.open_candles("ETH-USDT")
        stored: list[Candle] = []
        for iv in agg.intervals:
            stored += await query_candles(conn, "ETH-USDT", iv, 0, 2**62, 1000)
        assert sorted(map(_key, stored)) == sorted(map(_key, expected))

        # the candle messages of ETH end with the stored candles: the latest version of each
        # window on md.candles, the closed ones also on md.candle.<IV>.<SYM>
        def published() -> dict[tuple[str, int], Candle]:
            last: dict[tuple[str, int], Candle] = {}
            for b in list(seen["candles"]):
                for c in decode_candles(b):
                    if c.symbol == "ETH-USDT":
                        last[(c.interval, c.open_time)] = c
            return last

        want = {(c.interval, c.open_time): _key(c) for c in stored}
        await wait_for(
            lambda: {k: _key(c) for k, c in published().items()} == want, "the candle messages"
        )
        closed = [msgspec.json.decode(b, type=CandleClosed) for b in list(seen["closed"])]
        assert sorted(_key(c) for c in closed if c.symbol == "ETH-USDT") == sorted(
            _key(c) for c in stored if isinstance(c, CandleClosed)
        )
        assert feed.counts["fills"] == 2  # BTC and ETH, each counted once
    finally:
        await feed.stop()
        await matcher.stop()
        await conn.close()
        await nc.drain()


async def _eq(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


def test_index_configs_and_main_usage(tmp_path: Path) -> None:
    cfgs = [
        FeedConfig(name="a", kind="random_walk", start_prices={"BTC-USDT": "1.00"}, weight=3),
        FeedConfig(name="b", kind="random_walk", start_prices={"BTC-USDT": "1.00"}, enabled=False),
    ]
    idx = index_configs(cfgs)
    assert list(idx) == ["BTC-USDT"]
    assert [(s.name, s.weight, s.fallback) for s in idx["BTC-USDT"].sources] == [
        ("a", 3, False),
        ("orrange", 1, True),
    ]
    assert FEED_DURABLE == "feed"
    bad = tmp_path / "sources.toml"
    bad.write_text('[[source]]\nname = "x"\nkind = "random_walk"\n')
    with pytest.raises(SystemExit) as exc:
        main(["--sources", str(bad), "--metrics-port", "-1"])
    assert exc.value.code == 2


async def test_feed_restart_restores_candles_and_never_counts_a_fill_twice(
    nats_url: str, database_url: str
) -> None:
    def cfg(name: str) -> ActorConfig:
        return ActorConfig(name=name, nats_url=nats_url, metrics_port=None, fetch_timeout_ms=50)

    def make_feed() -> Feed:
        return Feed(cfg("feed"), database_url, MARKETS, [], candle_lateness_ms=3_600_000)

    now = time.time_ns() // 1_000_000
    matcher = Matcher(cfg("matcher"), MARKETS, ["ETH-USDT"])
    nc = await nats.connect(nats_url)
    conn = await asyncpg.connect(database_url)
    pub = Publisher(nc)
    fills: list[tuple[int, int, int]] = []  # (ts, ticks, lots), taker buys

    async def trade(i: int) -> None:
        ts, price, qty = now + i, 190_000 + 10 * i, 50 + i  # above the 5 USDT minimum
        for side, user in ((Side.SELL, "s"), (Side.BUY, "b")):
            cmd = SubmitOrder(ts=ts, user=user, side=side, quantity=qty, price=price)
            await pub.publish(book_in_subject("ETH-USDT"), cmd, msg_id=f"t:{i}:{side}")
        fills.append((ts, price, qty))

    async def stored() -> list[Candle]:
        out: list[Candle] = []
        for iv in ("1m", "5m", "15m", "1h", "4h", "1d"):
            out += await query_candles(conn, "ETH-USDT", iv, 0, 2**62, 1000)
        return out

    def expected() -> list[Candle]:
        agg = CandleAggregator(emit_updates=False)
        out: list[Candle] = []
        for ts, price, qty in fills:
            out += agg.add_trade("ETH-USDT", ts, price, qty, buyer_is_maker=False)
        return out + agg.open_candles("ETH-USDT")

    async def matches() -> bool:
        return sorted(map(_key, await stored())) == sorted(map(_key, expected()))

    feed = make_feed()
    try:
        await matcher.start()
        await feed.start()
        for i in range(3):
            await trade(i)
        await wait_for(matches, "the first fills' candles")
        await feed.stop()
        # a crash before the acks: the consumer is gone and every event comes again
        await nc.jetstream().delete_consumer("EVENTS", FEED_DURABLE)
        feed = make_feed()
        await feed.start()
        await trade(3)
        # the new fill comes after the redelivered ones, so once it is stored they were seen
        await wait_for(matches, "the restored candles plus the new fill, nothing twice")
        assert feed.counts["fills"] == 1
    finally:
        await feed.stop()
        await matcher.stop()
        await conn.close()
        await nc.drain()


def test_batches_keep_order_and_fit_the_payload_limit() -> None:
    ticks = [
        TradeTick(
            source="x",
            symbol="BTC-USDT",
            exchange_ts_ms=i,
            recv_ts_ms=i,
            trade_id=str(i),
            price=Decimal(BTC.ticks_to_price(6_500_000 + i)),
            qty=Decimal(BTC.lots_to_qty(1 + i)),
            side="buy",
        )
        for i in range(1_000)
    ]
    datas, dropped = _chunks(ticks, 300, 10_000)
    assert dropped == 0 and all(len(d) <= 10_000 for d in datas) and len(datas) > 4
    back = [t for d in datas for t in decode_ticks(d)]
    assert [t.trade_id for t in back] == [str(i) for i in range(1_000)]
    assert back[5].price == ticks[5].price  # exact decimal strings
    # an item alone over the limit is left out and counted, the others keep their order
    datas, dropped = _chunks(["a", "b" * 100, "c"], 10, 20)
    assert dropped == 1 and [x for d in datas for x in msgspec.json.decode(d)] == ["a", "c"]


def test_stores_take_turns_with_the_coarser_candles() -> None:
    markets = {f"M{i}-USDT": BTC for i in range(23)}
    feed = Feed(ActorConfig(name="feed", metrics_port=None), "postgresql://unused", markets)
    feed._dirty_store = set(markets)  # traded since the last store (a flush moved them here)
    stored: list[str] = []
    for n in range(1, COARSE_STORE_EVERY + 1):
        fine, coarse = feed._take_store_dirty(n)
        assert fine == (set(markets) if n == 1 else set())
        assert len(coarse) <= -(-len(markets) // COARSE_STORE_EVERY)
        stored += coarse
    # every market's coarser candles once within COARSE_STORE_EVERY stores, none left over
    assert sorted(stored) == sorted(markets) and feed._take_store_dirty() == (set(), set())
    feed._dirty_store = {"M0-USDT", "M1-USDT"}
    assert feed._take_store_dirty() == ({"M0-USDT", "M1-USDT"},) * 2  # at stop: all of them


def test_shard_sources_keep_each_markets_sources_in_its_shard() -> None:
    cfgs = [
        FeedConfig(
            name="walk", kind="random_walk", start_prices={BTC.symbol: "1", ETH.symbol: "2"}
        ),
        FeedConfig(
            name="bn", kind="binance", symbols={"BTCUSDT": BTC.symbol, "ETHUSDT": ETH.symbol}
        ),
        FeedConfig(name="eth", kind="replay", path="x.csv", market="ETH-USDT"),
    ]
    btc = shard_sources(cfgs, {"BTC-USDT": BTC})
    assert [(c.name, c.markets()) for c in btc] == [("walk", ["BTC-USDT"]), ("bn", ["BTC-USDT"])]
    assert btc[1].symbols == {"BTCUSDT": "BTC-USDT"}
    eth = shard_sources(cfgs, {"ETH-USDT": ETH})
    assert [(c.name, c.markets()) for c in eth] == [
        ("walk", ["ETH-USDT"]),
        ("bn", ["ETH-USDT"]),
        ("eth", ["ETH-USDT"]),
    ]
    assert shard_sources(cfgs, {}) == []
    # an unknown market in --symbols is refused; so is a name that cannot name a consumer
    with pytest.raises(SystemExit) as exc:
        main(["--symbols", "BTC-USDT,NOPE-USDT", "--metrics-port", "-1"])
    assert exc.value.code == 2
    with pytest.raises(ValueError, match="feed name"):
        Feed(ActorConfig(name="feed.b", metrics_port=None), "postgresql://unused", MARKETS)


async def test_two_feed_shards_split_the_markets(nats_url: str, database_url: str) -> None:
    """Two feeds with disjoint markets on one NATS and PostgreSQL: each runs only its markets'
    sources, reads every fill of its markets through its own durable consumer (none is lost to
    the other shard) and publishes its indexes without colliding with the other's."""
    now = time.time_ns() // 1_000_000
    walk = FeedConfig(
        name="walk",
        kind="random_walk",
        seed=5,
        interval_ms=20,
        start_prices={"BTC-USDT": "65000.00", "ETH-USDT": "1900.00"},
    )

    def cfg(name: str) -> ActorConfig:
        return ActorConfig(name=name, nats_url=nats_url, metrics_port=None, fetch_timeout_ms=50)

    def shard(name: str, spec: Any) -> Feed:
        mkts = {spec.symbol: spec}
        return Feed(
            cfg(name),
            database_url,
            mkts,
            shard_sources([walk], mkts),
            index_interval_ms=20,
            candle_lateness_ms=3_600_000,
        )

    matcher = Matcher(cfg("matcher"), MARKETS, ["BTC-USDT", "ETH-USDT"])
    shards = [shard("feed-a", BTC), shard("feed-b", ETH)]
    nc = await nats.connect(nats_url)
    conn = await asyncpg.connect(database_url)
    indexes: list[bytes] = []
    ticks: list[bytes] = []

    async def on_indexes(msg: Any) -> None:
        indexes.append(msg.data)

    async def on_ticks(msg: Any) -> None:
        ticks.append(msg.data)

    await nc.subscribe("md.indexes", cb=on_indexes)
    await nc.subscribe("md.ticks.walk", cb=on_ticks)
    fills: dict[str, list[tuple[int, int, int]]] = {"BTC-USDT": [], "ETH-USDT": []}
    base = {"BTC-USDT": 9_000_000, "ETH-USDT": 300_000}  # above every walk price
    try:
        await matcher.start()
        for f in shards:
            await f.start()
        pub = Publisher(nc)
        for i in range(4):
            for sym in fills:
                ts, price, qty = now + i, base[sym] + i, 50 + i  # above the 5 USDT minimum
                for side, user in ((Side.SELL, "s"), (Side.BUY, "b")):
                    cmd = SubmitOrder(ts=ts, user=user, side=side, quantity=qty, price=price)
                    await pub.publish(book_in_subject(sym), cmd, msg_id=f"sh:{sym}:{i}:{side}")
                fills[sym].append((ts, price, qty))

        async def own_fills_stored(sym: str) -> bool:
            rows = await query_candles(conn, sym, "1d", 0, 2**62, 10)
            return bool(rows) and rows[0].high == base[sym] + 3 and rows[0].trades > 4

        for sym in fills:
            await wait_for(lambda sym=sym: own_fills_stored(sym), f"{sym}'s own fills stored")
        await wait_for(lambda: all(f.counts["fills"] == 4 for f in shards), "4 fills per shard")
        # each shard's fills are exactly its market's (no fill of the other market counted)
        assert [f.counts["fills"] for f in shards] == [4, 4]

        # both shards' index rounds arrive (the message ids carry the shard's name)
        def indexed() -> dict[str, int]:
            out: dict[str, int] = {}
            for b in list(indexes):
                for ip in decode_indexes(b):
                    out[ip.symbol] = out.get(ip.symbol, 0) + 1
            return out

        await wait_for(lambda: min(indexed().get(s, 0) for s in fills) >= 20, "both indexes")
        assert all(
            {ip.symbol for ip in decode_indexes(b)} in ({"BTC-USDT"}, {"ETH-USDT"}) for b in indexes
        ), "a round's message holds one shard's markets"
        # one walk per shard: each shard's ticks are of its market only
        by_shard = [{t.symbol for t in decode_ticks(b)} for b in list(ticks)]
        assert set().union(*by_shard) == {"BTC-USDT", "ETH-USDT"}
        assert all(len(s) == 1 for s in by_shard)
        names = {c.name async for c in _consumers(nc)}  # the durable consumers on EVENTS
        assert {"feed-a", "feed-b"} <= names and "feed" not in names
    finally:
        for f in shards:
            await f.stop()
        await matcher.stop()
        await conn.close()
        await nc.drain()


async def _consumers(nc: Any) -> Any:
    for info in await nc.jetstream().consumers_info("EVENTS"):
        yield info


async def test_a_feed_shard_process_from_the_command_line(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    """``orrange actor feed --symbols ETH-USDT --name feed-eth`` as a real process, given a
    sources file whose walk covers BTC and ETH: it walks ETH only, reads fills through its own
    durable consumer and stops cleanly on SIGTERM."""
    sources = tmp_path / "sources.toml"
    sources.write_text(
        '[[source]]\nname = "walk"\nkind = "random_walk"\ninterval_ms = 20\n'
        '[source.start_prices]\n"BTC-USDT" = "65000.00"\n"ETH-USDT" = "1900.00"\n'
    )
    env = dict(os.environ)
    env.update(ORRANGE_NATS_URL=nats_url, ORRANGE_DATABASE_URL=database_url)
    nc = await nats.connect(nats_url)
    ticks: list[bytes] = []

    async def on_ticks(msg: Any) -> None:
        ticks.append(msg.data)

    await nc.subscribe("md.ticks.walk", cb=on_ticks)
    log = (tmp_path / "feed.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orrange.cli",
        "actor",
        "feed",
        "--symbols",
        "ETH-USDT",
        "--name",
        "feed-eth",
        "--sources",
        str(sources),
        "--metrics-port",
        "-1",
        env=env,
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:

        def seen() -> set[str]:
            return {t.symbol for b in list(ticks) for t in decode_ticks(b)}

        await wait_for(lambda: len(ticks) >= 5, "the shard's tick batches")
        assert seen() == {"ETH-USDT"}
        names = {c.name async for c in _consumers(nc)}
        assert "feed-eth" in names and "feed" not in names
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
        await nc.drain()
