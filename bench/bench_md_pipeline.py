"""Benchmark of the running market-data pipeline: the feed actor on a real nats-server and
PostgreSQL (embedded, temporary), 1,000 markets, three sources, ticks/s and tick-to-candle
latency as issue 4 asks.

Input: a paced in-process source offering each ``--rates`` value in trade ticks/s, in bursts
on a fixed 5 ms schedule (the way frames arrive from exchange sockets; late bursts are still
emitted, as frames wait in a socket, up to 1 s behind, beyond which ticks are shed and
counted), over ``--symbols`` markets (tick 0.01, lot 0.001)
and three source names (binance, coinbase, kraken; weights 3/2/1, all in every market's
index). The ticks are typed :class:`~orrange.feeds.TradeTick` objects with exact Decimal price and
quantity (records pre-generated untimed, a random walk of -3..+3 ticks per market with -2..+2
ticks of per-source noise, 1..1,000 lots, random taker side), built at emission with the wall
clock as exchange and receive time. Parsing exchange frames into those ticks is the clients'
cost, measured per exchange on real captures by ``bench/bench_feeds.py``; not included here.

Per tick the feed (unchanged production code, default intervals) normalizes price and
quantity onto the market's grid, updates the index source and the 1m, 5m, 15m, 1h, 4h and 1d
candles, and buffers the tick; every 20 ms it publishes the tick batches (``md.ticks.<SRC>``)
and the coalesced candles (``md.candles``: closed windows and each traded market's open 1m
candle; a share of the markets' coarser open candles, each market's once a second), every
100 ms the index of every market (``md.indexes``, a share of ``md.index.<SYM>``) and a share
of the changed reference prices (``book.in.<SYM>``, each market's at most once a second),
every second it upserts the changed candles into PostgreSQL; the closed candles also go one by
one to ``md.candle.<IV>.<SYM>``. All publishes are JetStream publishes with acks.

Measured over ``--seconds`` after a 3 s warm-up, in each of ``--runs`` runs per offered rate
(fresh feed and database each run; medians reported):

* ticks/s the feed took in (wall clock), and per CPU second of the benchmark process (the
  feed and its source), plus the CPU seconds per second used by nats-server and PostgreSQL
  (all processes share the machine's cores);
* tick-to-candle-update latency, p50/p99/max: for every tick of 20 tracked markets, the time
  (monotonic clock, shared by the processes) from its scheduled emission (so time spent waiting
  behind a busy or descheduled process counts) to the arrival, at a core NATS
  subscriber of ``md.candles`` in a process of its own, of the first 1m candle of its market
  and window that includes it (trade count at least its position in the window). The source
  sends each tracked tick's record to that process right after its burst, before any flush
  can publish it.

Usage: ``.venv/bin/python bench/bench_md_pipeline.py [--symbols N] [--rates R1,R2]
[--seconds S] [--runs K] [--shards N] [--out NAME]``; writes ``bench/results/md_pipeline.json``
and ``bench/results/md_pipeline.md`` (``--out NAME``: ``NAME.json`` and ``NAME.md``).

With ``--shards N`` (N > 1) the markets are split over N feed processes, as N ``orrange actor
feed --symbols ... --name feed-<k>`` shards would split them (market k to shard k mod N), each
with its own paced source offering its share of the rate and sending its tracked ticks'
records to the measuring subscriber; the benchmark process only coordinates, and "process
CPU" is the shards' sum.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec
import nats
import uvloop
from bench_marketdata import machine

from orrange.engine.feed import Feed
from orrange.feeds import Emit, FeedConfig, Source, TradeTick
from orrange.infra import EmbeddedPostgres, NatsServer
from orrange.marketdata.ticks import TickSide
from orrange.markets import MarketSpec
from orrange.runtime import ActorConfig
from orrange.runtime.actor import tune_gc
from orrange.wire.marketdata import MD_CANDLES_SUBJECT

RESULTS = Path(__file__).resolve().parent / "results"
SOURCES = (("binance", 3), ("coinbase", 2), ("kraken", 1))
BURST_S = 0.005
MAX_BACKLOG_S = 1.0
TRACKED = 20
WARMUP_S = 3.0
RECORDS = 200_000
MINUTE_MS = 60_000


class _Seen(msgspec.Struct, gc=False):
    """The fields of an ``md.candles`` candle the latency measurement reads (the others are
    skipped by the decoder: a cheaper subscriber)."""

    symbol: str
    interval: str
    open_time: int
    trades: int


_seen_decoder = msgspec.json.Decoder(list[_Seen])


def markets(n: int) -> dict[str, MarketSpec]:
    return markets_named([f"S{i:04d}-USD" for i in range(n)])


def markets_named(symbols: Sequence[str]) -> dict[str, MarketSpec]:
    return {
        sym: MarketSpec(
            symbol=sym,
            base=sym.split("-")[0],
            quote="USD",
            tick_size="0.01",
            lot_size="0.001",
            min_qty="0.001",
            max_qty="1000000",
        )
        for sym in symbols
    }


class PacedSource(Source):
    """Offers ``rate`` trade ticks/s from pre-generated records (see the module docstring) and
    records the emission time of every tick of the tracked markets."""

    def __init__(self, symbols: list[str], rate: int, seed: int) -> None:
        super().__init__("bench")
        rng = random.Random(seed)
        price = [10_000] * len(symbols)
        self.records: list[tuple[str, str, Decimal, Decimal, TickSide]] = []
        for _ in range(RECORDS):
            k = rng.randrange(len(symbols))
            price[k] = max(1_000, price[k] + rng.randint(-3, 3))
            self.records.append(
                (
                    symbols[k],
                    SOURCES[rng.randrange(3)][0],
                    Decimal(price[k] + rng.randint(-2, 2)).scaleb(-2),
                    Decimal(rng.randint(1, 1_000)).scaleb(-3),
                    "sell" if rng.random() < 0.5 else "buy",
                )
            )
        self.rate = rate
        self.tracked = set(symbols[:: max(1, len(symbols) // TRACKED)][:TRACKED])
        self._window: dict[str, tuple[int, int]] = {}
        #: receives, after each burst, (market, window open, position in window, scheduled
        #: emission time on the monotonic clock) of every tick of a tracked market while
        #: ``recording``
        self.sink: Any = None
        self.recording = False
        self.emitted = 0
        #: ticks not offered because the process was more than MAX_BACKLOG_S behind
        self.shed = 0

    async def run(self, emit: Emit) -> None:
        """Bursts every 5 ms on a fixed schedule. A burst that is late (the process was busy
        or descheduled) is still emitted, like frames waiting in a socket, up to
        :data:`MAX_BACKLOG_S` behind (older ones are shed and counted); a tick's emission time
        for the latency is its scheduled time, so the wait behind a busy loop counts."""
        burst = max(1, round(self.rate * BURST_S))
        records, n = self.records, len(self.records)
        tracked, window = self.tracked, self._window
        clock = time.monotonic
        i = 0
        due = clock()
        while True:
            if clock() - due > MAX_BACKLOG_S:
                skip = int((clock() - due) / BURST_S)
                self.shed += skip * burst
                due += skip * BURST_S
            now = time.time_ns() // 1_000_000
            wo = now - now % MINUTE_MS
            seen: list[tuple[str, int, int, float]] = []
            for _ in range(burst):
                sym, src, price, qty, side = records[i % n]
                i += 1
                await emit(
                    TradeTick(
                        source=src,
                        symbol=sym,
                        exchange_ts_ms=now,
                        recv_ts_ms=now,
                        trade_id=str(i),
                        price=price,
                        qty=qty,
                        side=side,
                    )
                )
                if sym in tracked:
                    w, k = window.get(sym, (0, 0))
                    k = k + 1 if w == wo else 1
                    window[sym] = (wo, k)
                    if self.recording:
                        seen.append((sym, wo, k, due))
            if seen:  # before any flush can publish them (a burst never yields)
                self.sink(seen)
            self.emitted += burst
            due += BURST_S
            await asyncio.sleep(max(0.0, due - clock()))


def measure(nats_url: str, conn: Connection, records: Sequence[Connection] = ()) -> None:
    """The latency subscriber, in a process of its own (so that decoding every candle message
    costs the feed's process nothing): receives the tracked ticks' records through ``conn``
    (and, with feed shards, through each shard's ``records`` pipe), matches them against
    ``md.candles`` as they arrive; on ``"stop"`` (on ``conn``) sends back (latencies in ms,
    unmatched records, its CPU seconds)."""
    uvloop.run(_measure(nats_url, conn, records))


async def _measure(nats_url: str, conn: Connection, records: Sequence[Connection]) -> None:
    pending: dict[str, deque[tuple[int, int, float]]] = {}
    latencies: list[float] = []
    stop = False
    conns = [conn, *records]

    def drain() -> None:
        nonlocal stop
        for c in conns:
            while c.poll():
                item = c.recv()
                if item == "stop":
                    stop = True
                    continue
                for sym, wo, k, t in item:
                    pending.setdefault(sym, deque()).append((wo, k, t))

    async def on_candles(msg: Any) -> None:
        arrival = time.monotonic()
        drain()  # the records of a tick are sent before any candle can include it
        for c in _seen_decoder.decode(msg.data):
            q = pending.get(c.symbol)
            if not q or c.interval != "1m":
                continue
            while q and (q[0][0] < c.open_time or (q[0][0] == c.open_time and q[0][1] <= c.trades)):
                latencies.append((arrival - q.popleft()[2]) * 1000)

    nc = await nats.connect(nats_url)
    await nc.subscribe(MD_CANDLES_SUBJECT, cb=on_candles, pending_msgs_limit=-1)
    await nc.flush()
    conn.send("ready")
    while not stop:
        drain()
        await asyncio.sleep(0.01)
    await nc.close()
    conn.send((latencies, sum(len(q) for q in pending.values()), time.process_time()))


def _cpu_of(pids: set[int]) -> float:
    """CPU seconds (user + system) of ``pids`` and their children (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total = 0.0
    for pid, (ppid, cpu) in stats.items():
        if pid in pids or ppid in pids:
            total += cpu
    return total


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def _bench_feed(
    nats_url: str, database_url: str, name: str, symbols: list[str], rate: int, seed: int
) -> tuple[Feed, PacedSource]:
    """The feed actor ``name`` over ``symbols`` (3 weighted sources in every market's index)
    with its paced source offering ``rate`` ticks/s."""
    configs = [
        FeedConfig(
            name=src, kind="random_walk", weight=w, start_prices={s: "100.00" for s in symbols}
        )
        for src, w in SOURCES
    ]
    source = PacedSource(symbols, rate, seed=seed)
    cfg = ActorConfig(name=name, nats_url=nats_url, metrics_port=None)
    feed = Feed(cfg, database_url, markets_named(symbols), configs, source_objects=[source])
    return feed, source


class _Window:
    """A feed's and its source's counters from the moment it is made (see :meth:`counts`)."""

    def __init__(self, feed: Feed, source: PacedSource) -> None:
        self.feed, self.source = feed, source
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()
        self.ticks0, self.msgs0 = feed.counts["ticks"], feed.counts["messages"]
        self.emitted0 = source.emitted

    def counts(self) -> dict[str, Any]:
        """Ticks taken, ticks emitted, messages published, CPU s of this process and wall s
        since the start; ticks dropped and shed so far."""
        feed = self.feed
        return {
            "ticks": feed.counts["ticks"] - self.ticks0,
            "emitted": self.source.emitted - self.emitted0,
            "messages": feed.counts["messages"] - self.msgs0,
            "cpu_s": time.process_time() - self.cpu0,
            "seconds": time.perf_counter() - self.t0,
            "dropped": feed.counts["dropped"],
            "shed": self.source.shed,
        }


def _result(
    rate: int,
    counts: list[dict[str, Any]],
    nats_cpu_per_s: float,
    pg_cpu_per_s: float,
    measured: tuple[list[float], int, float],
) -> dict[str, Any]:
    """One run's figures from the feed processes' :meth:`_Window.counts` and the measuring
    subscriber's (latencies in ms, unmatched records, its CPU s)."""
    latencies, unmatched, sub_cpu = measured
    ticks = sum(c["ticks"] for c in counts)
    cpu = sum(c["cpu_s"] for c in counts)
    wall = max(c["seconds"] for c in counts)
    return {
        "offered_ticks_per_s": rate,
        "shards": len(counts),
        "ticks_per_s": round(ticks / wall),
        "emitted_ticks_per_s": round(sum(c["emitted"] for c in counts) / wall),
        "ticks_per_cpu_s": round(ticks / cpu),
        "process_cpu_per_s": round(cpu / wall, 3),
        "shard_cpu_per_s": [round(c["cpu_s"] / c["seconds"], 3) for c in counts],
        "measuring_subscriber_cpu_s_whole_run": round(sub_cpu, 2),
        "nats_server_cpu_per_s": round(nats_cpu_per_s, 3),
        "postgres_cpu_per_s": round(pg_cpu_per_s, 3),
        "md_messages_per_s": round(sum(c["messages"] for c in counts) / wall),
        "latency_ms_p50": round(pct(latencies, 0.5), 2),
        "latency_ms_p99": round(pct(latencies, 0.99), 2),
        "latency_ms_max": round(max(latencies), 2) if latencies else None,
        "latency_samples": len(latencies),
        "latency_unmatched": unmatched,
        "dropped": sum(c["dropped"] for c in counts),
        "shed_by_source": sum(c["shed"] for c in counts),
        "seconds": round(wall, 2),
    }


async def one_run(
    nats_url: str,
    database_url: str,
    n_symbols: int,
    rate: int,
    seconds: float,
    pids: dict[str, int],
) -> dict[str, Any]:
    """One run with the feed in this process (``--shards 1``)."""
    feed, source = _bench_feed(
        nats_url, database_url, "feed", sorted(markets(n_symbols)), rate, seed=7
    )
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    measurer = ctx.Process(target=measure, args=(nats_url, there), daemon=True)
    measurer.start()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, here.recv)  # "ready"
    source.sink = here.send
    gc.collect()
    await feed.start()
    try:
        await asyncio.sleep(WARMUP_S)
        source.recording = True
        window = _Window(feed, source)
        nats0, pg0 = _cpu_of({pids["nats"]}), _cpu_of({pids["pg"]})
        await asyncio.sleep(seconds)
        counts = window.counts()
        nats_cpu = _cpu_of({pids["nats"]}) - nats0
        pg_cpu = _cpu_of({pids["pg"]}) - pg0
        source.recording = False
        await asyncio.sleep(0.5)  # the last tracked ticks reach their candles
        here.send("stop")
        measured = await loop.run_in_executor(None, here.recv)
    finally:
        await feed.stop()
        measurer.join(10)
    elapsed = counts["seconds"]
    return _result(rate, [counts], nats_cpu / elapsed, pg_cpu / elapsed, measured)


def _shard_main(*args: Any) -> None:
    """One feed shard in a process of its own (``--shards``): :func:`_shard` on uvloop."""
    tune_gc()
    uvloop.run(_shard(*args))


async def _shard(
    nats_url: str,
    database_url: str,
    name: str,
    symbols: list[str],
    rate: int,
    seed: int,
    records: Connection,
    control: Connection,
) -> None:
    """The feed actor named ``name`` over ``symbols`` with its paced source at ``rate``
    ticks/s; the tracked ticks' records go to the measuring subscriber through ``records``. On
    ``control``: sends ``"ready"``, waits for ``"start"``, then for ``"stop"``, and answers
    with its counts over that window."""
    feed, source = _bench_feed(nats_url, database_url, name, symbols, rate, seed)
    source.sink = records.send
    loop = asyncio.get_running_loop()
    gc.collect()
    await feed.start()
    try:
        control.send("ready")
        assert await loop.run_in_executor(None, control.recv) == "start"
        source.recording = True
        window = _Window(feed, source)
        assert await loop.run_in_executor(None, control.recv) == "stop"
        source.recording = False
        control.send(window.counts())
        await asyncio.sleep(0.5)  # the last tracked ticks reach their candles
    finally:
        await feed.stop()


async def sharded_run(
    nats_url: str,
    database_url: str,
    n_symbols: int,
    rate: int,
    seconds: float,
    pids: dict[str, int],
    shards: int,
) -> dict[str, Any]:
    """:func:`one_run` with the markets split over ``shards`` feed processes (``--symbols`` of
    ``orrange actor feed``: market k goes to shard k mod ``shards``), each with its own paced
    source offering its share of ``rate``; the benchmark process only coordinates."""
    symbols = sorted(markets(n_symbols))
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    rec_pipes = [ctx.Pipe(duplex=False) for _ in range(shards)]
    measurer = ctx.Process(
        target=measure, args=(nats_url, there, [r for r, _ in rec_pipes]), daemon=True
    )
    measurer.start()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, here.recv)  # "ready"
    controls, procs = [], []
    for k in range(shards):
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(
            target=_shard_main,
            args=(
                nats_url,
                database_url,
                f"feed-{k}",
                symbols[k::shards],
                rate // shards,
                7 + k,
                rec_pipes[k][1],
                theirs,
            ),
            daemon=True,
        )
        proc.start()
        controls.append(mine)
        procs.append(proc)
    try:
        for c in controls:
            assert await loop.run_in_executor(None, c.recv) == "ready"
        await asyncio.sleep(WARMUP_S)
        nats0, pg0 = _cpu_of({pids["nats"]}), _cpu_of({pids["pg"]})
        t0 = time.perf_counter()
        for c in controls:
            c.send("start")
        await asyncio.sleep(seconds)
        for c in controls:
            c.send("stop")
        counts = [await loop.run_in_executor(None, c.recv) for c in controls]
        elapsed = time.perf_counter() - t0
        nats_cpu = _cpu_of({pids["nats"]}) - nats0
        pg_cpu = _cpu_of({pids["pg"]}) - pg0
        await asyncio.sleep(0.5)
        here.send("stop")
        measured = await loop.run_in_executor(None, here.recv)
    finally:
        for p in procs:
            p.join(30)
        measurer.join(10)
    return _result(rate, counts, nats_cpu / elapsed, pg_cpu / elapsed, measured)


def _median(runs: list[dict[str, Any]], key: str) -> Any:
    vals = [r[key] for r in runs if r[key] is not None]
    return statistics.median(vals) if vals else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; writes the results and prints the table. Returns 0."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--symbols", type=int, default=1000)
    p.add_argument("--rates", default="20000,40000,100000", help="offered ticks/s, comma-separated")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument(
        "--shards",
        type=int,
        default=2,
        help="feed processes, the markets split between them (default 2, one per core of this "
        "machine; 1: the feed in this process)",
    )
    p.add_argument("--out", default="md_pipeline", help="bench/results/NAME.json and NAME.md")
    args = p.parse_args(argv)
    rates = [int(r) for r in args.rates.split(",")]
    tune_gc()  # as in every actor process (orrange actor feed runs through run_actor)
    load_before = os.getloadavg()[0]
    base = Path(tempfile.mkdtemp(prefix="orrange-bench-md-"))
    results: dict[int, list[dict[str, Any]]] = {r: [] for r in rates}
    try:
        with NatsServer(str(base / "nats"), log_file=base / "nats.log") as srv:
            pg = EmbeddedPostgres(base / "pg", log_file=base / "pg.log")
            pg.start()
            try:
                pids = {"nats": srv.pid or 0, "pg": pg.pid or 0}
                k = 0
                for _ in range(args.runs):
                    for rate in rates:
                        k += 1
                        pg.create_database(f"bench{k}")
                        db = pg.url(f"bench{k}")
                        run = (
                            one_run(srv.url, db, args.symbols, rate, args.seconds, pids)
                            if args.shards == 1
                            else sharded_run(
                                srv.url, db, args.symbols, rate, args.seconds, pids, args.shards
                            )
                        )
                        r = uvloop.run(run)
                        print(json.dumps(r))
                        results[rate].append(r)
            finally:
                pg.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    load_after = os.getloadavg()[0]
    keys = [
        k
        for k, v in results[rates[0]][0].items()
        if k not in ("offered_ticks_per_s", "shards") and not isinstance(v, list)
    ]
    summary = {
        str(rate): {k: _median(runs, k) for k in keys} | {"runs": runs}
        for rate, runs in results.items()
    }
    out = {
        "benchmark": "feed actor on nats-server + PostgreSQL: normalization, index, candles",
        "symbols": args.symbols,
        "sources": [s for s, _ in SOURCES],
        "seconds_per_run": args.seconds,
        "runs": args.runs,
        "feed_processes": args.shards,
        "median_by_offered_rate": summary,
        "target": {"ticks_per_s": 100_000, "p99_ms": 50},
        "machine": machine(load_before, load_after),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(out, indent=2) + "\n")
    rows = []
    for rate in rates:
        m = summary[str(rate)]
        tps = [r["ticks_per_s"] for r in results[rate]]
        rows.append(
            f"| {rate:,} | {m['ticks_per_s']:,.0f} ({min(tps):,} / {max(tps):,}) | "
            f"{m['ticks_per_cpu_s']:,.0f} | {m['process_cpu_per_s']:.2f} | "
            f"{m['nats_server_cpu_per_s']:.2f} | "
            f"{m['postgres_cpu_per_s']:.2f} | {m['md_messages_per_s']:,.0f} | "
            f"{m['latency_ms_p50']:.1f} / {m['latency_ms_p99']:.1f} / {m['latency_ms_max']:.1f} |"
        )
    if args.shards == 1:
        layout = (
            "the feed actor in the benchmark process, on an embedded nats-server and "
            f"PostgreSQL,\n{args.symbols:,} markets x 3 sources, a paced in-process source"
        )
        cpu_note = (
            "the benchmark process (feed and source)",
            '"ticks\nper CPU s" is what the feed process costs: its throughput if it had a core '
            "to itself.",
        )
    else:
        layout = (
            f"{args.shards} feed shards (`orrange actor feed --symbols`; market k in shard k mod "
            f"{args.shards}),\neach in a process of its own with its paced source, on an embedded "
            f"nats-server and PostgreSQL,\n{args.symbols:,} markets x 3 sources, each shard's "
            "source"
        )
        cpu_note = (
            "the feed shards' processes (summed)",
            '"ticks\nper CPU s" is what the shards cost together: their throughput per core '
            "they use.",
        )
    md = f"""# Market-data pipeline benchmark (feed actor, NATS JetStream, PostgreSQL)

`bench/bench_md_pipeline.py --shards {args.shards}`: {layout} offering trade ticks (typed
ticks with exact Decimals; exchange-frame parsing is measured per exchange in `feeds.md`).
Per tick: normalization onto the market grid, index source update, candles 1m..1d; every 20 ms
tick batches (`md.ticks.<SRC>`) and coalesced candles (`md.candles`: closed and 1m), every
100 ms the indexes (`md.indexes`, a share of `md.index.<SYM>`), once a second per market (the
markets take turns) the reference prices (`book.in.<SYM>`) and the coarser open candles,
every second the candles into PostgreSQL. All publishes are acknowledged JetStream publishes.
{args.runs} runs of {args.seconds:.0f} s per offered rate after a 3 s warm-up; medians (min / max
of the runs for ticks/s).

Latency: emission of a tick to the arrival of the first `md.candles` 1m candle including it at
a subscriber in another process (every tick of 20 tracked markets). CPU is in seconds per
second: {cpu_note[0]}, nats-server, PostgreSQL; the measuring
subscriber runs in a process of its own; all share the machine's {os.cpu_count()} cores.
{cpu_note[1]}

| offered ticks/s | ticks/s (wall) | ticks per CPU s | process CPU/s | nats-server CPU/s | \
PostgreSQL CPU/s | md messages/s | latency p50 / p99 / max ms |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{chr(10).join(rows)}

Target (issue 4): 100,000 ticks/s across 1,000 symbols, p99 under 50 ms.

Machine: Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()};
{out["date"]}; 1-minute load average {load_before:.1f} before and {load_after:.1f} after (other
sessions share the machine, so figures are noisy).
"""
    (RESULTS / f"{args.out}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
