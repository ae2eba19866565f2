"""Throughput of the pure ledger fold and of the funds rules (issue 13; target of the fold:
at least 1,000,000 entries/s, so that it never limits risk).

Each case is the median of ``--runs`` runs on fresh state over the same pre-built input, one
Python thread, no I/O:

* ``Ledger.apply``, simple entries: ``--entries`` one-posting ``hold`` / ``release`` entries
  (available <-> held of one account) on 1,000 funded users, each with a ref;
* ``Ledger.apply``, transfers: two-posting ``fill`` entries (a held amount to another user's
  available), each settling a ref's hold;
* baseline of each: the same postings added to a plain ``dict`` of ints keyed by (account,
  asset), with no check at all (what the fold would cost without its rules); the table gives
  the fold's rate as a share of it;
* ``Funds``: ``--commands`` BTC-USDT commands (``config/markets.toml``, a ``vault`` market,
  maker 2 bps, taker 5 bps) from 1,000 funded users, fill-heavy (limit orders around the
  last price, 35 % crossing it, 15 % cancels), first run through a real ``OrderBook`` to
  record each command's events; then timed: :meth:`Funds.submit` of every submit and
  :meth:`Funds.on_events` of every command's events (hold, fill, fee and release entries),
  as risk sees them; entries/s counts the entries created, and ``on_events`` alone is timed
  too.

Writes ``bench/results/ledger.json`` and ``bench/results/ledger.md``.

    .venv/bin/python bench/bench_ledger.py [--entries 300000] [--commands 100000] [--runs 5]
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from orrange.ledger import (
    VAULT,
    Entry,
    EntryKind,
    Funds,
    FundsMarket,
    Ledger,
    Posting,
    entry_id,
    load_assets,
)
from orrange.markets import load_markets
from orrange.matching import CancelOrder, Command, Event, OrderBook, OrderRejected, Side
from orrange.matching.commands import SubmitOrder
from orrange.settings import config_file

RESULTS = Path(__file__).resolve().parent / "results"
SYM = "BTC-USDT"
USERS = [f"user-{i}" for i in range(1000)]
T0 = 1_700_000_000_000
LAST = 6_000_000  # 60,000.00 USDT in ticks
RICH = 10**40


def _deposits(led: Ledger) -> None:
    for i, u in enumerate(USERS):
        for asset in ("BTC", "USDT"):
            led.apply(
                Entry(
                    id=entry_id("funds", 2 * i + (asset == "USDT"), 0),
                    kind=EntryKind.DEPOSIT,
                    source="funds",
                    seq=2 * i + (asset == "USDT") + 1,
                    n=0,
                    ts=T0,
                    ref=f"0x{i}:{asset}",
                    postings=(Posting(VAULT, asset, -RICH, 0), Posting(u, asset, RICH, 0)),
                )
            )


def _entry(seq: int, kind: EntryKind, ref: str, *postings: Posting) -> Entry:
    return Entry(
        id=entry_id("cmd", seq, 0),
        kind=kind,
        source="cmd",
        seq=seq,
        n=0,
        ts=T0 + seq,
        ref=ref,
        postings=postings,
    )


def _simple(n: int, rng: random.Random) -> list[Entry]:
    """Alternating holds and releases of open refs (one posting each)."""
    out: list[Entry] = []
    open_refs: list[tuple[str, str, int]] = []
    for seq in range(1, n + 1):
        if open_refs and (len(open_refs) > 500 or rng.random() < 0.5):
            ref, user, amount = open_refs.pop(rng.randrange(len(open_refs)))
            out.append(_entry(seq, EntryKind.RELEASE, ref, Posting(user, "USDT", amount, -amount)))
        else:
            user = rng.choice(USERS)
            amount = rng.randrange(1, 10**15) * 10**11
            ref = f"{SYM}:{seq}"
            open_refs.append((ref, user, amount))
            out.append(_entry(seq, EntryKind.HOLD, ref, Posting(user, "USDT", -amount, amount)))
    return out


def _transfers(n: int, rng: random.Random) -> tuple[list[Entry], list[Entry]]:
    """Holds (set-up) and fills from them (timed): a held amount to another user."""
    holds: list[Entry] = []
    fills: list[Entry] = []
    for seq in range(1, n + 1):
        user, other = rng.sample(USERS, 2)
        amount = rng.randrange(1, 10**15) * 10**11
        ref = f"{SYM}:{seq}"
        holds.append(_entry(seq, EntryKind.HOLD, ref, Posting(user, "USDT", -amount, amount)))
        fills.append(
            _entry(
                n + seq,
                EntryKind.FILL,
                ref,
                Posting(user, "USDT", 0, -amount),
                Posting(other, "USDT", amount, 0),
            )
        )
    return holds, fills


def _fold(setup: list[Entry], timed: list[Entry]) -> float:
    led = Ledger()
    _deposits(led)
    for e in setup:
        led.apply(e)
    apply = led.apply
    t0 = time.perf_counter()
    for e in timed:
        apply(e)
    return len(timed) / (time.perf_counter() - t0)


def _baseline(setup: list[Entry], timed: list[Entry]) -> float:
    avail: dict[tuple[str, str], int] = {}
    held: dict[tuple[str, str], int] = {}
    for e in setup:
        for p in e.postings:
            key = (p.account, p.asset)
            avail[key] = avail.get(key, 0) + p.available
            held[key] = held.get(key, 0) + p.held
    t0 = time.perf_counter()
    for e in timed:
        for p in e.postings:
            key = (p.account, p.asset)
            avail[key] = avail.get(key, 0) + p.available
            held[key] = held.get(key, 0) + p.held
    return len(timed) / (time.perf_counter() - t0)


def _flow(n: int, funds_factory: Callable[[], Funds]) -> list[tuple[int, Command, list[Event]]]:
    """Commands with the events a book gives them after the funds stamped them."""
    rng = random.Random(11)
    funds = funds_factory()
    spec = funds.markets[SYM].spec
    book = OrderBook(spec)
    book.process(SubmitOrder(ts=T0, user="seed", side=Side.SELL, quantity=1, price=LAST))
    book.process(SubmitOrder(ts=T0, user="seed2", side=Side.BUY, quantity=1, price=LAST))
    trace: list[tuple[int, Command, list[Event]]] = []
    mine: dict[str, list[int]] = {}
    for seq in range(1, n + 1):
        ts = T0 + seq
        user = rng.choice(USERS)
        live = mine.setdefault(user, [])
        cmd: Command
        if live and rng.random() < 0.15:
            cmd = CancelOrder(ts=ts, user=user, order_id=live.pop(rng.randrange(len(live))))
            evs = book.process(cmd)
        else:
            side = rng.choice((Side.BUY, Side.SELL))
            last = book.last_price or LAST
            cross = rng.random() < 0.35
            off = rng.randrange(1, 200)
            price = last + off if (side is Side.BUY) == cross else last - off
            qty = rng.randrange(1, 500)
            cmd = SubmitOrder(ts=ts, user=user, side=side, quantity=qty, price=price)
            decision, _ = funds.submit(SYM, seq, cmd, book.last_price)
            if isinstance(decision, OrderRejected):
                raise RuntimeError(f"funded flow refused: {decision.message}")
            evs = book.process(decision)
            live.append(seq)
        funds.on_events(SYM, evs)
        trace.append((seq, cmd, evs))
    return trace


def _funds_run(
    trace: list[tuple[int, Command, list[Event]]], funds_factory: Callable[[], Funds]
) -> tuple[float, float, int, int]:
    funds = funds_factory()
    submit, on_events = funds.submit, funds.on_events
    clock = time.perf_counter
    entries = events = 0
    in_events = 0.0
    t0 = clock()
    for seq, cmd, evs in trace:
        if isinstance(cmd, SubmitOrder):
            entries += len(submit(SYM, seq, cmd, LAST)[1])
        t1 = clock()
        entries += len(on_events(SYM, evs))
        in_events += clock() - t1
        events += len(evs)
    total = clock() - t0
    if not funds.ledger.audit("USDT").ok or not funds.ledger.audit("BTC").ok:
        raise RuntimeError("the funds run broke conservation")
    return entries / total, events / in_events, entries, events


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=300_000)
    ap.add_argument("--commands", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    rng = random.Random(7)
    results: list[dict[str, Any]] = []

    def record(case: str, items: int, unit: str, rates: list[float], base: float | None) -> None:
        med = statistics.median(rates)
        row: dict[str, Any] = {
            "case": case,
            "items": items,
            "unit": unit,
            "per_s_median": round(med),
            "per_s_runs": [round(r) for r in rates],
        }
        if base is not None:
            row["baseline_per_s_median"] = round(base)
            row["ratio_to_baseline"] = round(med / base, 3)
        results.append(row)
        extra = f", {med / base:.2f} x the plain dict" if base else ""
        print(f"{case}: {med:,.0f} {unit}/s{extra} (runs: {', '.join(f'{r:,.0f}' for r in rates)})")

    simple = _simple(args.entries, rng)
    rates = [_fold([], simple) for _ in range(args.runs)]
    base = statistics.median(_baseline([], simple) for _ in range(args.runs))
    record(
        "Ledger.apply, simple entries (hold/release, 1 posting)",
        len(simple),
        "entries",
        rates,
        base,
    )
    holds, fills = _transfers(args.entries, rng)
    rates = [_fold(holds, fills) for _ in range(args.runs)]
    base = statistics.median(_baseline(holds, fills) for _ in range(args.runs))
    record("Ledger.apply, fills (2 postings, settling a hold)", len(fills), "entries", rates, base)

    spec = load_markets(config_file("markets.toml"))[SYM]
    assets = load_assets(config_file("assets.toml").read_text())
    market = FundsMarket.build(spec, assets, "vault")

    def fresh() -> Funds:
        f = Funds([market], assets)
        _deposits(f.ledger)
        return f

    trace = _flow(args.commands, fresh)
    runs = [_funds_run(trace, fresh) for _ in range(args.runs)]
    n_entries, n_events = runs[0][2], runs[0][3]
    fills_n = sum(type(e).__name__ == "OrderFilled" for _, _, evs in trace for e in evs)
    record(
        f"Funds.submit + on_events ({args.commands:,} commands, {fills_n:,} fills)",
        n_entries,
        "entries",
        [r[0] for r in runs],
        None,
    )
    record("Funds.on_events alone", n_events, "events", [r[1] for r in runs], None)
    report = {
        "benchmark": "ledger",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "runs": args.runs,
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ledger.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Ledger throughput",
        "",
        f"{report['date_utc']}, Python {report['python']}, {report['cpus']} CPUs, load average "
        f"at the end {report['load_avg']}. Median of {args.runs} runs each, one thread, no "
        "I/O; the baseline adds the same postings to a plain dict of ints with no check. "
        "Produced by `bench/bench_ledger.py` (its docstring describes the inputs).",
        "",
        "| case | items | per second (median) | plain dict (median) | share of it | runs |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        runs_txt = ", ".join(f"{x:,}" for x in r["per_s_runs"])
        base_txt = f"{r['baseline_per_s_median']:,}" if "baseline_per_s_median" in r else "-"
        ratio = f"{r['ratio_to_baseline']:.2f}" if "ratio_to_baseline" in r else "-"
        lines.append(
            f"| {r['case']} | {r['items']:,} {r['unit']} | {r['per_s_median']:,} | {base_txt} "
            f"| {ratio} | {runs_txt} |"
        )
    (RESULTS / "ledger.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
