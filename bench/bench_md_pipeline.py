"""Benchmark of the running market-data pipeline: the feed actor on a real nats-server and
PostgreSQL (embedded, temporary), fed by the random-walk source across many symbols.

Per tick the feed publishes it on ``md.tick.<SRC>.<SYM>`` (JetStream, acked), updates the
index and (trades) the candles; every 100 ms it publishes each index, the changed reference
prices (``book.in.<SYM>``) and the candles that changed (``md.candle.<IV>.<SYM>``) and upserts
those candles into PostgreSQL. The random walk emits one trade and one best bid/offer per
symbol per step (``--step-ms``), so it offers ``2 * symbols * 1000 / step_ms`` ticks/s; when the
feed cannot keep up the walk slows down with it (its ``emit`` awaits the publish).

Reported, over ``--seconds`` after a 2 s warm-up: ticks/s through the feed (published ticks),
candle messages/s, and tick-to-candle latency p50/p99: wall-clock time at which an
``md.candle.1m.<SYM>`` message arrives minus the receive time (``recv_ts_ms``, wall clock) of
the trade tick it ends with (matched by symbol and ``last_trade_time``, read from
``md.tick.walk.<SYM>``). By design a candle update waits for the next 100 ms round, so the
floor is about 50 ms on average. The measuring subscriber (which decodes every tick) runs in
the feed's process and event loop, so it takes part of the CPU the figures report.

Usage: ``.venv/bin/python bench/bench_md_pipeline.py [--symbols N] [--step-ms MS]
[--seconds S]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import nats
import uvloop

from orrange.engine.feed import Feed
from orrange.feeds import FeedConfig, Trade, decode_tick
from orrange.infra import EmbeddedPostgres, NatsServer
from orrange.marketdata.candles import CandleEvent
from orrange.markets import MarketSpec
from orrange.runtime import ActorConfig


def _markets(n: int) -> dict[str, MarketSpec]:
    return {
        f"S{i:04d}-USD": MarketSpec(
            symbol=f"S{i:04d}-USD",
            base=f"S{i:04d}",
            quote="USD",
            tick_size="0.01",
            lot_size="1",
            min_qty="1",
            max_qty="1000000",
        )
        for i in range(n)
    }


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


async def _run(nats_url: str, database_url: str, symbols: int, step_ms: int, seconds: float) -> Any:
    markets = _markets(symbols)
    walk = FeedConfig(
        name="walk",
        kind="random_walk",
        seed=1,
        interval_ms=step_ms,
        max_step_ticks=3,
        start_prices={s: "100.00" for s in markets},
    )
    cfg = ActorConfig(name="feed", nats_url=nats_url, metrics_port=None)
    feed = Feed(cfg, database_url, markets, [walk], candle_lateness_ms=2_000)
    decoder = msgspec.json.Decoder(CandleEvent)
    latencies: list[float] = []
    received: dict[tuple[str, int], int] = {}
    counting = False
    candles = 0

    async def on_tick(msg: Any) -> None:
        t = decode_tick(msg.data)
        if isinstance(t, Trade):
            received[(t.symbol, t.exchange_ts_ms)] = t.recv_ts_ms

    async def on_candle(msg: Any) -> None:
        nonlocal candles
        if counting:
            c = decoder.decode(msg.data)
            recv = received.get((c.symbol, c.last_trade_time))
            if recv is not None:
                latencies.append(time.time() * 1000 - recv)
            candles += 1

    nc = await nats.connect(nats_url)
    await nc.subscribe("md.tick.walk.>", cb=on_tick)
    await nc.subscribe("md.candle.1m.>", cb=on_candle)
    await feed.start()
    try:
        await asyncio.sleep(2.0)
        counting = True
        t0, n0 = time.perf_counter(), feed.counts["ticks"]
        await asyncio.sleep(seconds)
        elapsed, ticks = time.perf_counter() - t0, feed.counts["ticks"] - n0
        counting = False
    finally:
        await feed.stop()
        await nc.drain()
    return {
        "symbols": symbols,
        "step_ms": step_ms,
        "offered_ticks_per_s": 2 * symbols * 1000 // step_ms,
        "seconds": round(elapsed, 2),
        "ticks_per_s": round(ticks / elapsed),
        "candle_msgs_per_s": round(candles / elapsed),
        "tick_to_candle_ms_p50": round(_pct(latencies, 0.5), 1),
        "tick_to_candle_ms_p99": round(_pct(latencies, 0.99), 1),
        "tick_to_candle_ms_mean": round(statistics.fmean(latencies), 1) if latencies else None,
        "python": platform.python_version(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; prints the result as JSON. Returns 0."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--symbols", type=int, default=1000)
    p.add_argument("--step-ms", type=int, default=100)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="orrange-bench-md-"))
    try:
        with NatsServer(str(base / "nats"), log_file=base / "nats.log") as srv:
            pg = EmbeddedPostgres(base / "pg", log_file=base / "pg.log")
            pg.start()
            try:
                pg.create_database("bench")
                result = uvloop.run(
                    _run(srv.url, pg.url("bench"), args.symbols, args.step_ms, args.seconds)
                )
            finally:
                pg.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
