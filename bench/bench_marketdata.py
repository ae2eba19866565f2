"""Benchmark of the pure market-data core: normalization, candles (6 intervals) and index
price across 1,000 symbols, driven the way the feed actor drives it.

Stream (pre-generated, untimed): ticks for random symbols out of 1,000, each from one of 3
sources (binance, coinbase, kraken), a random-walk price step of -3..+3 ticks around 100,000
ticks with -2..+2 ticks of per-source noise, 1..1,000 lots, a random taker side; exchange time
advances 1 ms per tick (accelerated, so that windows close during the run).

Per tick: ``CandleAggregator.add_trade`` (1m, 5m, 15m, 1h, 4h, 1d) and the index source update
(``IndexCalculator.update`` of the market). The feed's cadence, at 100,000 ticks/s: a flush
every ``FLUSH`` ticks (20 ms) builds the coalesced finest (1m) open candle of every symbol the
flush touched, plus the ``CandleClosed`` returned on window ends; every ``INDEX_EVERY`` ticks
(100 ms) the index of every touched symbol is computed; every ``COARSE_EVERY`` ticks (1 s) the
coarser open candles of the symbols touched since, and ``advance(now - 2 s)``. Modes:

* ``batched``: prices and quantities already integer ticks and lots;
* ``normalized`` (what the feed does): ``batched`` with each tick's price and quantity
  arriving as exact exchange ``Decimal`` values, put on the grid with the feed's
  :class:`~orrange.feeds.grid.GridConverter` (one per step, shared by the markets);
* ``per_tick_events``: ``emit_updates=True``, every tick returns its 6 ``CandleUpdated``
  (the cost of updating every interval per tick, for comparison).

Reported: ticks/s over the timed loop per wall second and per CPU second of the process
(median of RUNS runs, fresh state each run) and, in a separate pass of the ``normalized``
mode, the latency from a flush batch's arrival to its candle updates (the wait inside the
batch included), p50/p99, and the per-tick core time (perf_counter_ns) p50/p99.

Usage: ``.venv/bin/python bench/bench_marketdata.py [--ticks N] [--runs R]``; writes
``bench/results/marketdata.json`` and ``bench/results/marketdata.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from orrange.feeds.grid import GridConverter
from orrange.marketdata.candles import INTERVALS, CandleAggregator
from orrange.marketdata.index import IndexConfig, IndexEngine, SourceConfig

SYMBOLS = 1_000
SOURCES = ("binance", "coinbase", "kraken")
FLUSH = 2_000  # ticks per flush: 20 ms at 100,000 ticks/s
INDEX_EVERY = 10_000  # ticks: 100 ms
COARSE_EVERY = 100_000  # ticks: 1 s (coarser open candles, window closes)
MODES = ("batched", "normalized", "per_tick_events")
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
RESULTS = Path(__file__).resolve().parent / "results"

Tick = tuple[str, str, int, int, int, bool]


def make_ticks(n: int, seed: int) -> list[Tick]:
    rng = random.Random(seed)
    names = [f"S{i:04d}-USDT" for i in range(SYMBOLS)]
    price = [100_000] * SYMBOLS
    out: list[Tick] = []
    for i in range(n):
        k = rng.randrange(SYMBOLS)
        price[k] = max(1_000, price[k] + rng.randint(-3, 3))
        src = rng.randrange(3)
        out.append(
            (
                names[k],
                SOURCES[src],
                T0 + i,
                price[k] + rng.randint(-2, 2),
                rng.randint(1, 1_000),
                rng.random() < 0.5,
            )
        )
    return out


def index_engine() -> IndexEngine:
    cfg = IndexConfig(
        sources=(
            SourceConfig(name="binance", weight=3),
            SourceConfig(name="coinbase", weight=2),
            SourceConfig(name="kraken", weight=1),
        ),
        stale_after_ms=10_000,
    )
    return IndexEngine({}, default=cfg)


def run(
    ticks: list[Tick], mode: str, lat: tuple[list[int], list[int]] | None = None
) -> tuple[float, float, int, int]:
    """One pass over ``ticks``; returns (wall seconds, CPU seconds, candle events, index
    values). With ``lat`` (two lists) it records per-tick core time and
    flush-arrival-to-update latency in ns."""
    emit = mode == "per_tick_events"
    agg = CandleAggregator(INTERVALS, emit_updates=emit)
    idx = index_engine()
    calcs = {sym: idx.calculator(sym) for sym in {t[0] for t in ticks}}
    add, compute, open_candles = agg.add_trade, idx.compute, agg.open_candles
    stream: list[tuple[str, str, int, Any, Any, bool]] = list(ticks)
    if mode == "normalized":
        stream = [
            (s, src, ts, Decimal(p).scaleb(-2), Decimal(q).scaleb(-3), m)
            for s, src, ts, p, q, m in ticks
        ]
    to_ticks, to_lots = GridConverter("0.01").convert, GridConverter("0.001").convert
    clock = time.perf_counter_ns
    n_events = n_index = 0
    index_due: set[str] = set()
    coarse_due: set[str] = set()
    gc.collect()
    start = time.perf_counter()
    cpu_start = time.process_time()
    for b in range(0, len(stream), FLUSH):
        arrival = clock() if lat is not None else 0
        touched: set[str] = set()
        now = 0
        for sym, src, ts, price, qty, maker in stream[b : b + FLUSH]:
            t0 = clock() if lat is not None else 0
            if mode == "normalized":
                price, qty = to_ticks(price), to_lots(qty)
            n_events += len(add(sym, ts, price, qty, maker))
            calcs[sym].update(src, ts, price, qty)
            if lat is not None:
                lat[0].append(clock() - t0)
            touched.add(sym)
            now = ts
        if not emit:
            for sym in touched:
                n_events += len(open_candles(sym, coarser=False))
        if lat is not None:
            done = clock() - arrival  # every tick of the flush has its update now
            lat[1].extend([done] * (len(stream[b : b + FLUSH])))
        index_due |= touched
        coarse_due |= touched
        if (b + FLUSH) % INDEX_EVERY == 0:
            for sym in index_due:
                n_index += compute(sym, now) is not None
            index_due.clear()
        if (b + FLUSH) % COARSE_EVERY == 0:
            if not emit:
                for sym in coarse_due:
                    n_events += len(open_candles(sym, finest=False))
            coarse_due.clear()
            n_events += len(agg.advance(now - 2_000))
    return time.perf_counter() - start, time.process_time() - cpu_start, n_events, n_index


def machine(load_before: float, load_after: float) -> dict[str, Any]:
    """The machine a benchmark ran on, with the 1-minute load average around the run."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_1m_before_after": [round(load_before, 2), round(load_after, 2)],
    }


def pct(xs: list[int], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] / 1_000  # us


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--ticks", type=int, default=500_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    ticks = make_ticks(args.ticks, seed=7)
    n = len(ticks)
    load_before = os.getloadavg()[0]

    rates: dict[str, list[float]] = {m: [] for m in MODES}
    cpu_rates: dict[str, list[float]] = {m: [] for m in MODES}
    events: dict[str, int] = {}
    index_values = 0
    for _ in range(args.runs):
        for mode in MODES:
            secs, cpu, ev, ix = run(ticks, mode)
            rates[mode].append(n / secs)
            cpu_rates[mode].append(n / cpu)
            events[mode] = ev
            index_values = ix
    lat: tuple[list[int], list[int]] = ([], [])
    run(ticks, "normalized", lat)
    load_after = os.getloadavg()[0]

    def summary(xs: list[float]) -> dict[str, int]:
        return {
            "median": round(statistics.median(xs)),
            "min": round(min(xs)),
            "max": round(max(xs)),
        }

    result = {
        "benchmark": "marketdata core: candles (1m,5m,15m,1h,4h,1d) + index, 1,000 symbols",
        "symbols": SYMBOLS,
        "sources_per_symbol": len(SOURCES),
        "intervals": list(INTERVALS),
        "ticks_per_run": n,
        "runs": args.runs,
        "flush_every_ticks": FLUSH,
        "index_every_ticks": INDEX_EVERY,
        "coarse_candles_every_ticks": COARSE_EVERY,
        "ticks_per_s": {m: summary(rates[m]) for m in MODES},
        "ticks_per_cpu_s": {m: summary(cpu_rates[m]) for m in MODES},
        "latency_us": {
            "flush_arrival_to_candle_update_p50": pct(lat[1], 50),
            "flush_arrival_to_candle_update_p99": pct(lat[1], 99),
            "flush_arrival_to_candle_update_max": pct(lat[1], 100),
            "per_tick_core_p50": pct(lat[0], 50),
            "per_tick_core_p99": pct(lat[0], 99),
        },
        "candle_events_per_run": events,
        "index_values_per_run": index_values,
        "target": {"ticks_per_s": 100_000, "p99_ms": 50},
        "machine": machine(load_before, load_after),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "marketdata.json").write_text(json.dumps(result, indent=2) + "\n")
    tp = result["ticks_per_s"]
    tc = result["ticks_per_cpu_s"]
    la = result["latency_us"]
    assert isinstance(tp, dict) and isinstance(tc, dict) and isinstance(la, dict)
    b, e, z = tp["batched"], tp["per_tick_events"], tp["normalized"]
    md = f"""# Market-data core benchmark

`bench/bench_marketdata.py`: {n:,} ticks per run, {SYMBOLS:,} symbols x {len(SOURCES)} sources
(random walk; exchange time +1 ms per tick so windows close during the run). Per tick: candles
for {", ".join(INTERVALS)} and the index source update; the feed's cadence at 100k ticks/s: a
flush every {FLUSH:,} ticks (20 ms) builds the 1m open candle of every touched symbol, the index
of each touched symbol is computed every {INDEX_EVERY:,} ticks (100 ms), the coarser open
candles every {COARSE_EVERY:,} ticks (1 s). Pure core, one thread, no I/O (the feed actor adds
NATS and PostgreSQL on top: `md_pipeline.md`).

Throughput is reported per wall-clock second and per CPU second of the process (the latter
is what the code costs when it has a core to itself; the machine is shared).

| metric (median of {args.runs} runs) | per wall s | per CPU s |
| --- | ---: | ---: |
| ticks/s, normalization (exchange Decimals onto the grid) + index + candles | \
{z["median"]:,} | {tc["normalized"]["median"]:,} |
| the same, min / max of runs | {z["min"]:,} / {z["max"]:,} | \
{tc["normalized"]["min"]:,} / {tc["normalized"]["max"]:,} |
| ticks/s, integer ticks in (no normalization) | {b["median"]:,} | \
{tc["batched"]["median"]:,} |
| ticks/s, 6 `CandleUpdated` events per tick (for comparison) | {e["median"]:,} | \
{tc["per_tick_events"]["median"]:,} |

| latency | value |
| --- | ---: |
| flush arrival to candle update, p50 / p99 | {la["flush_arrival_to_candle_update_p50"]:,.0f} / \
{la["flush_arrival_to_candle_update_p99"]:,.0f} us |
| per-tick core time (normalization + candles + index update), p50 / p99 | \
{la["per_tick_core_p50"]:.1f} / {la["per_tick_core_p99"]:.1f} us |
| target (issue 4) | 100,000 ticks/s, p99 < 50 ms |

Machine: Python {platform.python_version()}, {os.cpu_count()} CPUs,
{platform.platform()}; {result["date"]}; 1-minute load average {load_before:.1f} before and
{load_after:.1f} after the run (other sessions share the machine, so figures are noisy).
"""
    (RESULTS / "marketdata.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
