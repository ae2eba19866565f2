"""``orrange bench matcher``: throughput and latency of the matching core.

Drives a fresh :class:`~orrange.matching.book.OrderBook` through its public command API
(:meth:`~orrange.matching.book.OrderBook.process`, every event produced and kept until the next
command) on the seeded synthetic flow of :func:`~orrange.matching.flow.synthetic_flow`, and
replays the LOBSTER AMZN sample when ``../shared/data/lobster`` is found. Reports the median of
``--runs`` timed runs, and per-command latency percentiles (µs) from one extra run timed
command by command with ``time.perf_counter_ns`` (each figure includes the clock read).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from orrange.matching import book as _book_module
from orrange.matching.book import OrderBook
from orrange.matching.commands import Command
from orrange.matching.flow import BENCH_SPEC, synthetic_flow

__all__ = ["cli_main", "run_matcher_bench"]


def _throughput(cmds: list[Command]) -> tuple[float, int]:
    book = OrderBook(BENCH_SPEC)
    process = book.process
    events = 0
    gc.collect()
    t0 = time.perf_counter()
    for c in cmds:
        events += len(process(c))
    dt = time.perf_counter() - t0
    return len(cmds) / dt, events


def _latencies(cmds: list[Command]) -> list[int]:
    book = OrderBook(BENCH_SPEC)
    process = book.process
    clock = time.perf_counter_ns
    lat = [0] * len(cmds)
    gc.collect()
    for i, c in enumerate(cmds):
        t0 = clock()
        process(c)
        lat[i] = clock() - t0
    return lat


def _pct(sorted_ns: list[int], q: float) -> int:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))]


def _find_lobster() -> tuple[Path, Path] | None:
    here = Path(__file__).resolve()
    for base in [Path.cwd(), *here.parents]:
        d = base / ".." / "shared" / "data" / "lobster"
        m = d / "AMZN_2012-06-21_34200000_57600000_message_1.csv"
        o = d / "AMZN_2012-06-21_34200000_57600000_orderbook_1.csv"
        if m.exists() and o.exists():
            return m.resolve(), o.resolve()
    return None


def run_matcher_bench(events: int, runs: int, seed: int) -> dict[str, Any]:
    """Run the benchmark; return its figures (rates per second, latencies in ns).

    Raises:
        ValueError: ``events`` < 1 or ``runs`` < 1.
    """
    if events < 1 or runs < 1:
        raise ValueError("need events >= 1 and runs >= 1")
    cmds = synthetic_flow(events, seed)
    rates: list[float] = []
    produced = 0
    for _ in range(runs):
        rate, produced = _throughput(cmds)
        rates.append(rate)
    lat = sorted(_latencies(cmds))
    result: dict[str, Any] = {
        "benchmark": "matcher",
        "events": len(cmds),
        "runs": runs,
        "seed": seed,
        "events_per_s": round(statistics.median(rates)),
        "events_per_s_runs": [round(r) for r in rates],
        "output_events_per_command": round(produced / len(cmds), 3),
        "latency_ns": {
            "p50": _pct(lat, 0.50),
            "p99": _pct(lat, 0.99),
            "p99_9": _pct(lat, 0.999),
            "max": lat[-1],
        },
        "compiled": not _book_module.__file__.endswith(".py"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    found = _find_lobster()
    if found is not None:
        import orrange.matching.lobster as lobster

        lob_rates = []
        for _ in range(runs):
            summary = lobster.replay(found[0], found[1]).summary
            lob_rates.append(summary.messages_per_s)
        result["lobster_amzn"] = {
            "messages": summary.messages,
            "mismatches": summary.mismatches,
            "wrong_fills": summary.wrong_fills,
            "messages_per_s": round(statistics.median(lob_rates)),
        }
    return result


def _table(r: dict[str, Any]) -> str:
    lat = r["latency_ns"]
    rows = [
        "| figure | value |",
        "| --- | ---: |",
        f"| commands | {r['events']:,} |",
        f"| events/s (median of {r['runs']}) | {r['events_per_s']:,} |",
        f"| runs | {', '.join(f'{x:,}' for x in r['events_per_s_runs'])} |",
        f"| output events per command | {r['output_events_per_command']} |",
        f"| latency p50 / p99 / p99.9 (ns) | {lat['p50']:,} / {lat['p99']:,} / {lat['p99_9']:,} |",
        f"| compiled core | {r['compiled']} |",
    ]
    if "lobster_amzn" in r:
        lo = r["lobster_amzn"]
        rows.append(
            f"| LOBSTER AMZN replay msgs/s | {lo['messages_per_s']:,} "
            f"({lo['messages']:,} msgs, {lo['mismatches']} mismatches) |"
        )
    return "\n".join(rows) + "\n"


def cli_main(args: argparse.Namespace) -> int:
    """Entry of ``orrange bench matcher``; returns the exit code."""
    r = run_matcher_bench(args.events, args.runs, args.seed)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "matcher.json").write_text(json.dumps(r, indent=2) + "\n")
        (out / "matcher.md").write_text(f"# Matcher benchmark ({r['timestamp']})\n\n" + _table(r))
    if args.json:
        sys.stdout.write(json.dumps(r) + "\n")
    else:
        sys.stdout.write(_table(r))
    return 0
