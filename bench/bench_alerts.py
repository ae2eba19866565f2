"""Benchmark of the pure alert core: AlertIndex under a random-walk price stream.

Setup (untimed): 100,000 alerts over 1,000 markets (100 per market), both references (last
trade, index), conditions above/below/crosses in equal parts, 30% re-arming with a band of
1..20 ticks, 10% with an expiry uniform over five times the run length (so about 2% expire
during a run). Targets lie within 400 ticks of the market's price (100,000 ticks at the
start) on the side the condition watches: above-alerts above the price, below-alerts below
it, crosses-alerts either side. Each market/reference then gets a first price so the fresh
alerts are placed.

Timed: a pre-generated stream of price updates, each for a random (market, reference), a
random-walk step of -s..+s ticks (scenario "calm": s = 3, "volatile": s = 30), ts advancing
1 ms per update. Every one-shot alert that fires or expires is replaced by a new one (a user
creating alerts, in the updated market, on the updated reference, around its new price)
inside the timed loop, so the index stays at 100,000 active alerts and the replacement cost
is included.

Reported: updates/s over the whole timed loop, wall clock and per CPU-second of this process
(medians of ``--runs`` runs; each run on a fresh index and stream), and per-update evaluation
latency p50/p99 (perf_counter_ns around each ``update`` call, in a separate pass so the timer
does not slow the throughput figure).

Usage: ``.venv/bin/python bench/bench_alerts.py [--updates N] [--runs R]``; writes
``bench/results/alerts.json`` and ``bench/results/alerts.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import orrange.alerts.index as index_module
from orrange.alerts.index import AlertIndex
from orrange.alerts.rules import AlertExpired, AlertFired, Condition, PriceAlert, TriggerSource

MARKETS = 1_000
ALERTS = 100_000
START = 100_000
SPREAD = 400
REFS = (TriggerSource.LAST, TriggerSource.INDEX)
CONDS = (Condition.ABOVE, Condition.BELOW, Condition.CROSSES)
RESULTS = Path(__file__).resolve().parent / "results"


class AlertFactory:
    """Makes alerts from random choices drawn in advance (untimed), so the timed loop pays
    for building and adding an alert, not for the random number generator."""

    POOL = 1 << 16

    def __init__(self, rng: random.Random, horizon_ms: int) -> None:
        self.next_id = 0
        # per alert: (rearm, hysteresis, expiry offset or None, |offset|, signed offset)
        self.pool = [
            (
                rearm := rng.random() < 0.3,
                rng.randint(1, 20) if rearm else 0,
                rng.randrange(1, horizon_ms) if rng.random() < 0.1 else None,
                rng.randint(1, SPREAD),
                rng.randint(-SPREAD, SPREAD),
            )
            for _ in range(self.POOL)
        ]
        self.users = [f"user{i}" for i in range(5_000)]
        self.markets = [f"M{m:04d}" for m in range(MARKETS)]

    def make(self, market: int, ref: TriggerSource, price: int, now_ms: int) -> PriceAlert:
        """A new alert on the side of ``price`` its condition watches (as users set them)."""
        self.next_id += 1
        i = self.next_id
        rearm, hysteresis, expiry, offset, signed = self.pool[i % self.POOL]
        cond = CONDS[i % 3]
        if cond is Condition.ABOVE:
            target = price + offset
        elif cond is Condition.BELOW:
            target = max(1, price - offset)
        else:
            target = max(1, price + signed)
        return PriceAlert(
            id=i,
            user=self.users[i % 5_000],
            market=self.markets[market],
            condition=cond,
            reference=ref,
            target=target,
            expires_at=None if expiry is None else now_ms + expiry,
            rearm=rearm,
            hysteresis=hysteresis,
        )


def setup(seed: int, n_updates: int, step: int) -> tuple[AlertIndex, AlertFactory, list[tuple]]:
    rng = random.Random(seed)
    factory = AlertFactory(rng, horizon_ms=5 * n_updates)
    index = AlertIndex()
    for i in range(ALERTS):
        index.add(factory.make(i % MARKETS, REFS[(i // MARKETS) % 2], START, 0))
    prices = {}
    for m in range(MARKETS):
        for ref in REFS:
            prices[(m, ref)] = START
            index.update(f"M{m:04d}", ref, START, 0)
    stream = []
    names = [f"M{m:04d}" for m in range(MARKETS)]
    for k in range(n_updates):
        m = rng.randrange(MARKETS)
        ref = REFS[rng.randrange(2)]
        p = max(1, prices[(m, ref)] + rng.randint(-step, step))
        prices[(m, ref)] = p
        stream.append((names[m], ref, p, k + 1, m))
    return index, factory, stream


def run_throughput(seed: int, n_updates: int, step: int) -> dict:
    index, factory, stream = setup(seed, n_updates, step)
    update = index.update
    add = index.add
    make = factory.make
    fired = rearmed = expired = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    for market, ref, price, ts, m in stream:
        events = update(market, ref, price, ts)
        if events:
            for e in events:
                if type(e) is AlertFired:
                    fired += 1
                    if e.final:
                        add(make(m, ref, price, ts))
                elif type(e) is AlertExpired:
                    expired += 1
                    add(make(m, ref, price, ts))
                else:
                    rearmed += 1
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {
        "updates": n_updates,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "updates_per_s": n_updates / elapsed,
        "updates_per_cpu_s": n_updates / cpu,
        "fired": fired,
        "rearmed": rearmed,
        "expired": expired,
        "active_at_end": len(index),
    }


def run_latency(seed: int, n_updates: int, step: int) -> list[int]:
    index, factory, stream = setup(seed, n_updates, step)
    update = index.update
    clock = time.perf_counter_ns
    lat = []
    for market, ref, price, ts, m in stream:
        t0 = clock()
        events = update(market, ref, price, ts)
        lat.append(clock() - t0)
        for e in events:
            if (type(e) is AlertFired and e.final) or type(e) is AlertExpired:
                index.add(factory.make(m, ref, price, ts))
    return lat


def pct(sorted_values: list[int], q: float) -> float:
    return float(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))])


SCENARIOS = {"calm": 3, "volatile": 30}  # max random-walk step in ticks


def scenario(step: int, n_updates: int, n_runs: int) -> dict:
    runs = [run_throughput(seed, n_updates, step) for seed in range(1, n_runs + 1)]
    for r in runs:
        print(
            f"step {step:>3}: {r['updates_per_s']:>10,.0f} updates/s  fired={r['fired']} "
            f"rearmed={r['rearmed']} expired={r['expired']} active={r['active_at_end']}"
        )
    lat = sorted(run_latency(100, n_updates, step))
    rates = [r["updates_per_s"] for r in runs]
    cpu_rates = [r["updates_per_cpu_s"] for r in runs]
    return {
        "max_step_ticks": step,
        "updates_per_s_median": statistics.median(rates),
        "updates_per_s_min": min(rates),
        "updates_per_s_max": max(rates),
        "updates_per_cpu_s_median": statistics.median(cpu_rates),
        "latency_ns_p50": pct(lat, 0.50),
        "latency_ns_p99": pct(lat, 0.99),
        "latency_ns_p999": pct(lat, 0.999),
        "latency_ns_max": float(lat[-1]),
        "fired_per_run_median": statistics.median(r["fired"] for r in runs),
        "rearmed_per_run_median": statistics.median(r["rearmed"] for r in runs),
        "expired_per_run_median": statistics.median(r["expired"] for r in runs),
        "per_run": runs,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    scenarios = {name: scenario(step, args.updates, args.runs) for name, step in SCENARIOS.items()}
    result = {
        "benchmark": "alerts-core",
        "description": "AlertIndex.update under a random-walk price stream (pure core, no I/O)",
        "alerts": ALERTS,
        "markets": MARKETS,
        "references_per_market": len(REFS),
        "updates_per_run": args.updates,
        "runs": args.runs,
        "target_updates_per_s": 50_000,
        "scenarios": scenarios,
        "machine": {
            "python": sys.version.split()[0],
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1m_at_end": os.getloadavg()[0],
        },
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "alerts.json").write_text(json.dumps(result, indent=2) + "\n")
    names = list(scenarios)
    rows = [
        ("max random-walk step (ticks)", lambda r: f"{r['max_step_ticks']}"),
        (
            f"updates/s, median of {args.runs} runs of {args.updates:,}",
            lambda r: f"{r['updates_per_s_median']:,.0f}",
        ),
        (
            "updates/s min / max",
            lambda r: f"{r['updates_per_s_min']:,.0f} / {r['updates_per_s_max']:,.0f}",
        ),
        (
            "updates per CPU-second (median; insensitive to other processes)",
            lambda r: f"{r['updates_per_cpu_s_median']:,.0f}",
        ),
        ("evaluation latency p50", lambda r: f"{r['latency_ns_p50'] / 1000:.1f} us"),
        ("evaluation latency p99", lambda r: f"{r['latency_ns_p99'] / 1000:.1f} us"),
        ("evaluation latency p99.9", lambda r: f"{r['latency_ns_p999'] / 1000:.1f} us"),
        ("fires per run (median)", lambda r: f"{r['fired_per_run_median']:,.0f}"),
        ("re-arms per run (median)", lambda r: f"{r['rearmed_per_run_median']:,.0f}"),
        ("expiries per run (median)", lambda r: f"{r['expired_per_run_median']:,.0f}"),
    ]
    table = "| metric | " + " | ".join(names) + " |\n| --- |" + " ---: |" * len(names) + "\n"
    for label, fmt in rows:
        table += f"| {label} | " + " | ".join(fmt(scenarios[n]) for n in names) + " |\n"
    m = result["machine"]
    compiled = not str(index_module.__file__).endswith(".py")
    md = f"""# Alert core benchmark

`bench/bench_alerts.py`: {ALERTS:,} active alerts over {MARKETS:,} markets (x2 references:
last trade and index), random-walk price updates. One-shot alerts that fire or expire are
replaced inside the timed loop, so the index stays at {ALERTS:,} alerts and the cost of adding
alerts is included. Pure core, one thread, no I/O: the alerter actor adds NATS, PostgreSQL and
WebSocket delivery on top. Target for the whole alerter: 50,000 updates/s. The index module is
{"compiled by Cython at install (setup.py)" if compiled else "the pure-Python source"}.

{table}
Latency is the time of one `AlertIndex.update` call (perf_counter_ns), measured in a
separate pass. The machine is shared with other sessions (1-minute load average
{m["load_average_1m_at_end"]:.1f} on {m["cpus"]} CPUs at the end of the run): the spread between
runs and the p99.9 (a few ms, the scheduler's time slice) come from CPU contention, not from
the index (disabling the garbage collector does not change them).

Machine: Python {m["python"]}, {m["cpus"]} CPUs, {m["platform"]}; {result["date_utc"]}.
"""
    (RESULTS / "alerts.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
