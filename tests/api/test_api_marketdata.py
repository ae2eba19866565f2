"""Market-data endpoints and the ``candles`` WebSocket channel on a real stack (nats-server,
PostgreSQL, matcher, risk, persister, the feed actor and the API in-process): candles,
indicators and snapshots are checked against the pure core on the same data."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

import asyncpg
import msgspec
import nats
from kit.api_stack import SPEC, SYM, Stack, api_stack
from kit.wait import wait_for
from websockets.asyncio.client import connect

from orrange.engine.feed import Feed
from orrange.feeds import FeedConfig
from orrange.marketdata.candles import Candle, CandleAggregator, CandleClosed
from orrange.marketdata.index import IndexPrice
from orrange.marketdata.indicators import INDICATOR_NAMES, IndicatorSet
from orrange.matching import OrderBook, Side, SubmitOrder
from orrange.runtime import ActorConfig
from orrange.store.candles import latest_candles, query_candles, upsert_candles
from orrange.wire.marketdata import MD, index_subject

P = SPEC.ticks_to_price
#: Resting orders (side, quantity, price) placed through the API, then one crossing buy.
BOOK = [
    ("buy", "10", "99.00"),
    ("buy", "20", "98.00"),
    ("buy", "50", "90.00"),
    ("sell", "10", "101.00"),
    ("sell", "30", "102.00"),
    ("sell", "100", "110.00"),
]
CROSS = ("buy", "3", "101.00")


def _pure_book() -> OrderBook:
    book = OrderBook(SPEC)
    for i, (side, qty, price) in enumerate([*BOOK, CROSS]):
        book.process(
            SubmitOrder(
                ts=i,
                user=f"u{i}",
                side=Side(side),
                quantity=SPEC.qty_to_lots(qty),
                price=SPEC.price_to_ticks(price),
            )
        )
    return book


async def _seed_history(conn: asyncpg.Connection, now: int) -> None:
    """Closed 1m..1h candles of 90 minutes of trades ending 10 minutes ago."""
    agg = CandleAggregator(("1m", "5m", "1h"), emit_updates=False)
    start = now - now % 60_000 - 100 * 60_000
    out: list[Candle] = []
    for i in range(90 * 4):
        price = 10_000 + (i * 7919) % 301 - 150
        out += agg.add_trade(SYM, start + i * 15_000, price, 1 + i % 9, i % 2 == 0)
    out += agg.close_all()
    await upsert_candles(conn, out)


def _feed(nats_url: str, database_url: str) -> Feed:
    cfg = ActorConfig(name="feed", nats_url=nats_url, metrics_port=None, fetch_timeout_ms=50)
    walk = FeedConfig(
        name="walk", kind="random_walk", seed=5, interval_ms=20, start_prices={SYM: "100.00"}
    )
    return Feed(
        cfg,
        database_url,
        {SYM: SPEC},
        [walk],
        index_interval_ms=50,
        candle_lateness_ms=3_600_000,
    )


async def _last_index(nc: nats.NATS) -> IndexPrice:
    msg = await nc.jetstream().get_last_msg(MD.name, index_subject(SYM))
    assert msg.data is not None
    return msgspec.json.decode(msg.data, type=IndexPrice)


def _q2(x: Fraction) -> str:
    d = Decimal(x.numerator) / Decimal(x.denominator)
    return str(d.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


async def _check_candles(s: Stack, conn: asyncpg.Connection) -> None:
    for iv in ("1m", "5m", "1h"):
        stored = await query_candles(conn, SYM, iv, 0, 2**62, 1000)
        r = await s.http.get(f"/api/v1/markets/{SYM}/candles", params={"interval": iv})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["next_start"] is None and body["interval"] == iv
        assert [c["open_time"] for c in body["candles"]] == [c.open_time for c in stored]
        for got, c in zip(body["candles"], stored, strict=True):
            assert got["open"] == P(c.open) and got["close"] == P(c.close)
            assert got["high"] == P(c.high) and got["low"] == P(c.low)
            assert got["volume"] == SPEC.lots_to_qty(c.volume)
            assert got["quote_volume"] == SPEC.units_to_quote(c.quote_volume)
            assert got["trades"] == c.trades and got["final"] is isinstance(c, CandleClosed)
    # pagination: pages of 7 walk the same 1m series
    stored = await query_candles(conn, SYM, "1m", 0, 2**62, 1000)
    pages: list[int] = []
    params: dict[str, Any] = {"interval": "1m", "limit": 7, "start": 0}
    while True:
        body = (await s.http.get(f"/api/v1/markets/{SYM}/candles", params=params)).json()
        pages += [c["open_time"] for c in body["candles"]]
        if body["next_start"] is None:
            break
        params["start"] = body["next_start"]
    assert pages == [c.open_time for c in stored]
    window = await s.http.get(
        f"/api/v1/markets/{SYM}/candles",
        params={"start": stored[3].open_time, "end": stored[5].open_time},
    )
    assert [c["open_time"] for c in window.json()["candles"]] == [c.open_time for c in stored[3:6]]
    bad = await s.http.get(f"/api/v1/markets/{SYM}/candles", params={"interval": "2m"})
    assert bad.status_code == 400 and bad.json()["error"]["reason"] == "unknown_interval"
    assert (await s.http.get("/api/v1/markets/NOPE/candles")).status_code == 404


async def _check_indicators(s: Stack, conn: asyncpg.Connection) -> None:
    for iv in ("1m", "5m"):
        rows = await latest_candles(conn, SYM, iv, 2**62, 1000)
        ind = IndicatorSet(SYM, iv, SPEC.tick_size, SPEC.lot_size)
        for c in rows:
            ind.update(c)
        latest = ind.latest
        assert latest is not None
        r = await s.http.get(f"/api/v1/markets/{SYM}/indicators", params={"interval": iv})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["open_time"] == latest.open_time and body["bars"] == ind.bars
        assert body["values"] == latest.select(INDICATOR_NAMES)
        if iv == "1m":  # enough history to warm up
            assert latest.sma is not None and latest.rsi is not None and latest.atr is not None
    some = await s.http.get(
        f"/api/v1/markets/{SYM}/indicators", params={"interval": "5m", "names": "rsi,bb"}
    )
    assert set(some.json()["values"]) == {"rsi", "bb_lower", "bb_middle", "bb_upper"}
    bad = await s.http.get(f"/api/v1/markets/{SYM}/indicators", params={"names": "rsi,foo"})
    assert bad.status_code == 400 and bad.json()["error"]["reason"] == "unknown_indicator"


async def _check_snapshot(s: Stack, conn: asyncpg.Connection, nc: nats.NATS) -> None:
    ip = await _last_index(nc)
    r = await s.http.get(f"/api/v1/markets/{SYM}/snapshot")
    assert r.status_code == 200, r.text
    snap = r.json()
    assert snap["index_price"] == P(ip.price) and snap["index_confidence"] == ip.confidence
    day = await query_candles(conn, SYM, "1m", snap["ts"] - 86_400_000 + 1, snap["ts"], 2000)
    o, last = day[0].open, day[-1].close
    assert snap["open_24h"] == P(o) and snap["last_price"] == P(last)
    assert snap["high_24h"] == P(max(c.high for c in day))
    assert snap["low_24h"] == P(min(c.low for c in day))
    assert snap["change_pct"] == _q2(Fraction(100 * (last - o), o))
    assert snap["volume_24h"] == SPEC.lots_to_qty(sum(c.volume for c in day))
    assert snap["quote_volume_24h"] == SPEC.units_to_quote(sum(c.quote_volume for c in day))
    assert snap["trades_24h"] == sum(c.trades for c in day)

    book = _pure_book()
    assert snap["book_available"] is True
    assert (snap["best_bid"], snap["best_ask"]) == ("99.00", "101.00")
    assert snap["spread"] == P(book.spread() or 0) == "2.00"
    bands = book.depth_bands((100, 500, 1000))
    assert [d["band_pct"] for d in snap["depth"]] == ["1", "5", "10"]
    for got, b in zip(snap["depth"], bands, strict=True):
        assert got["bid_size"] == SPEC.lots_to_qty(b.bid_size)
        assert got["ask_size"] == SPEC.lots_to_qty(b.ask_size)
        assert got["bid_notional"] == SPEC.units_to_quote(b.bid_notional)
        assert got["ask_notional"] == SPEC.units_to_quote(b.ask_notional)
    assert snap["depth"][1]["ask_size"] == "37"  # 7 left at 101.00, 30 at 102.00
    impacts = [
        (q, book.price_impact(side, SPEC.quote_to_units(q)))
        for q in ("1000", "10000")
        for side in (Side.BUY, Side.SELL)
    ]
    for got, (q, pi) in zip(snap["price_impact"], impacts, strict=True):
        assert got["quote_amount"] == q and got["side"] == str(pi.side)
        assert got["filled_qty"] == SPEC.lots_to_qty(pi.filled_lots)
        assert got["spent"] == SPEC.units_to_quote(pi.spent_units)
        assert got["complete"] is pi.complete and got["levels"] == pi.levels_consumed
        assert pi.avg_price is not None and pi.slippage_bps is not None
        tick = Fraction(SPEC.tick_size)
        exact = Fraction(pi.avg_price.numerator) * tick / pi.avg_price.denominator
        assert abs(Fraction(got["avg_price"]) - exact) <= tick / 20_000
        assert len(got["avg_price"].split(".")[1]) == 6  # 0.01 tick: 4 digits finer
        assert got["slippage_bps"] == _q2(pi.slippage_bps)

    every = await s.http.get("/api/v1/markets/snapshots")
    assert every.status_code == 200
    [one] = every.json()
    assert {k: v for k, v in one.items() if k != "ts"} == {
        k: v for k, v in snap.items() if k != "ts"
    }
    assert (await s.http.get("/api/v1/markets/NOPE/snapshot")).status_code == 404


async def test_marketdata_endpoints_and_candles_channel(nats_url: str, database_url: str) -> None:
    now = time.time_ns() // 1_000_000
    conn = await asyncpg.connect(database_url)
    nc = await nats.connect(nats_url)
    feed = _feed(nats_url, database_url)
    try:
        async with api_stack(nats_url, database_url) as s:
            await _seed_history(conn, now)
            for i, (side, qty, price) in enumerate([*BOOK, CROSS]):
                r = await s.place(f"u{i}", side=side, quantity=qty, price=price)
                assert r.status_code == 201, r.text
            async with connect(s.ws_url) as ws:
                await ws.send(json.dumps({"op": "subscribe", "channel": "candles.1m.T-USD"}))
                await ws.send(json.dumps({"op": "subscribe", "channel": "candles.2m.T-USD"}))
                await feed.start()
                got: list[dict[str, Any]] = []

                async def candle_seen() -> bool:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    got.append(msg)
                    return any(m["type"] == "candle" for m in got)

                await wait_for(candle_seen, "a candle on the WebSocket")
            errors = [m for m in got if m["type"] == "error"]
            assert errors and errors[0]["channel"] == "candles.2m.T-USD"
            assert errors[0]["reason"] == "unknown_interval"
            candle = next(m for m in got if m["type"] == "candle")
            assert candle["channel"] == "candles.1m.T-USD" and candle["interval"] == "1m"
            assert Decimal(candle["high"]) >= Decimal(candle["low"]) > 0

            async def fill_counted() -> bool:
                return feed.counts["fills"] == 1 and feed.counts["index"] > 0

            await wait_for(fill_counted, "the own fill and an index price")
            await feed.stop()  # the stored data is final from here on
            await _check_candles(s, conn)
            await _check_indicators(s, conn)
            await _check_snapshot(s, conn, nc)
    finally:
        await feed.stop()
        await conn.close()
        await nc.drain()
