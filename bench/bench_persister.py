"""Throughput of the persister: book events into PostgreSQL (embedded nats-server and
PostgreSQL, JetStream file storage).

The events are those of a real :class:`~orrange.matching.book.OrderBook` running
``--commands`` commands of :func:`~orrange.matching.flow.synthetic_flow` (accepts, fills,
cancels, L2 deltas...). Measured, each as the median of ``--runs`` runs on a fresh database
(already migrated) and a fresh JetStream:

* the writer alone: :class:`~orrange.store.EventWriter` batches of 500 straight into
  PostgreSQL (no NATS);
* the actor: the events pre-published on ``evt.<SYM>``, then :class:`Persister` started and
  timed until it has handled (stored and acked) all of them, for several batch sizes.

events/s counts every event consumed (L2 deltas are consumed but not stored); rows/s counts
the rows written to ``order_events`` + ``fills`` (the ``orders`` upserts come on top).

Writes ``bench/results/persister.json`` and ``bench/results/persister.md``.

    .venv/bin/python bench/bench_persister.py [--commands 20000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import uvloop

from orrange.engine.persister import Persister
from orrange.infra import EmbeddedPostgres, NatsServer
from orrange.matching.book import OrderBook
from orrange.matching.events import BookDelta, Event
from orrange.matching.flow import BENCH_SPEC, synthetic_flow
from orrange.runtime import ActorConfig, Publisher, ensure_stream
from orrange.store import EventWriter, migrate
from orrange.wire.engine import EVENTS, REJECTS, events_msg_id, events_subject

RESULTS = Path(__file__).resolve().parent / "results"


def _events(n: int) -> list[tuple[Event, bytes]]:
    book = OrderBook(BENCH_SPEC)
    out: list[tuple[Event, bytes]] = []
    for cmd in synthetic_flow(n, 42):
        for e in book.process(cmd):
            out.append((e, msgspec.json.encode(e)))
    return out


async def _fresh_db(pg: EmbeddedPostgres) -> str:
    name = "bench_" + uuid.uuid4().hex[:12]
    pg.create_database(name)
    url = pg.url(name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return url


async def _stored_rows(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        a = await conn.fetchval("SELECT count(*) FROM order_events")
        b = await conn.fetchval("SELECT count(*) FROM fills")
        return int(a) + int(b)
    finally:
        await conn.close()


async def _writer(pg: EmbeddedPostgres, events: list[tuple[Event, bytes]]) -> dict[str, float]:
    url = await _fresh_db(pg)
    conn = await asyncpg.connect(url)
    try:
        writer = EventWriter(conn)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(events), 500):
            await writer.write(events[i : i + 500])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        await conn.close()
    rows = await _stored_rows(url)
    pg.drop_database(url.rsplit("/", 1)[1])
    return {"wall": wall, "cpu": cpu, "rows": rows}


async def _actor(
    pg: EmbeddedPostgres, nats_url: str, events: list[tuple[Event, bytes]], batch: int
) -> dict[str, float]:
    url = await _fresh_db(pg)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for spec in (EVENTS, REJECTS):
        await ensure_stream(js, spec)
    pub = Publisher(nc)
    for i, (e, payload) in enumerate(events):
        await pub.submit(events_subject(e.symbol), payload, msg_id=events_msg_id(e.symbol, e.seq))
        if i % 1000 == 999:
            await pub.flush()
    await pub.flush()
    await nc.close()
    actor = Persister(
        ActorConfig(name="persister", nats_url=nats_url, metrics_port=None),
        url,
        batch_size=batch,
    )
    n = len(events)
    t0, c0 = time.perf_counter(), time.process_time()
    await actor.start()
    while actor.messages_in < n:  # noqa: ASYNC110 -- Actor.messages_in is a bare counter (no event)
        await asyncio.sleep(0.005)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    await actor.stop()
    rows = await _stored_rows(url)
    pg.drop_database(url.rsplit("/", 1)[1])
    return {"wall": wall, "cpu": cpu, "rows": rows}


def _one(
    pg: EmbeddedPostgres, kind: str, events: list[tuple[Event, bytes]], batch: int
) -> dict[str, float]:
    if kind == "writer":
        return uvloop.run(_writer(pg, events))
    with tempfile.TemporaryDirectory() as d, NatsServer(d, log_file=Path(d) / "log") as srv:
        return uvloop.run(_actor(pg, srv.url, events, batch))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--commands", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    events = _events(args.commands)
    n = len(events)
    stored = sum(1 for e, _ in events if type(e) is not BookDelta)
    print(f"{args.commands:,} commands -> {n:,} events ({stored:,} stored in order_events)")
    cases: list[tuple[str, str, int]] = [("writer alone (EventWriter, batch 500)", "writer", 500)]
    cases += [(f"persister actor, batch {b}", "actor", b) for b in (256, 500, 1000)]
    base = Path(tempfile.mkdtemp(prefix="orrange-bench-pg-"))
    pg = EmbeddedPostgres(base / "data", log_file=base / "postgres.log")
    results: list[dict[str, Any]] = []
    try:
        pg.start()
        for name, kind, batch in cases:
            runs = [_one(pg, kind, events, batch) for _ in range(args.runs)]
            rates = [n / r["wall"] for r in runs]
            rows = [r["rows"] / r["wall"] for r in runs]
            cpu = [n / r["cpu"] for r in runs]
            assert all(r["rows"] == runs[0]["rows"] for r in runs)
            res = {
                "case": name,
                "batch": batch,
                "events": n,
                "rows_stored": int(runs[0]["rows"]),
                "events_per_s_median": round(statistics.median(rates)),
                "events_per_s_runs": [round(x) for x in rates],
                "rows_per_s_median": round(statistics.median(rows)),
                "events_per_cpu_s_median": round(statistics.median(cpu)),
            }
            results.append(res)
            print(
                f"{name}: {res['events_per_s_median']:,} events/s, "
                f"{res['rows_per_s_median']:,} rows/s, "
                f"{res['events_per_cpu_s_median']:,} events per CPU-s "
                f"(runs: {', '.join(f'{x:,.0f}' for x in rates)})"
            )
        pg_version = pg.psql("SHOW server_version").strip()
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)
    report = {
        "benchmark": "persister",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "postgres": pg_version,
        "commands": args.commands,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "runs": args.runs,
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "persister.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Persister throughput",
        "",
        f"{report['date_utc']}, Python {report['python']}, {report['cpus']} CPUs, PostgreSQL "
        f"{pg_version} (embedded, default settings), JetStream file storage; median of "
        f"{args.runs} runs, each on a fresh migrated database and a fresh JetStream. Events: a "
        f"real book running {args.commands:,} synthetic commands ({n:,} events, of which "
        f"{stored:,} order events and L2 deltas the rest). events/s counts every event consumed "
        "(deltas are acked, not stored); rows/s counts `order_events` + `fills` rows (plus the "
        "`orders` upserts). The actor's time includes its start. events per CPU-s divides by "
        "the Python process's CPU time (nats-server and PostgreSQL excluded). Load average at "
        f"the end: {report['load_avg']}. Produced by `bench/bench_persister.py`.",
        "",
        "| case | events | rows stored | events/s (median) | rows/s (median) "
        "| events per CPU-s | runs (events/s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        runs_txt = ", ".join(f"{x:,}" for x in r["events_per_s_runs"])
        lines.append(
            f"| {r['case']} | {r['events']:,} | {r['rows_stored']:,} "
            f"| {r['events_per_s_median']:,} | {r['rows_per_s_median']:,} "
            f"| {r['events_per_cpu_s_median']:,} | {runs_txt} |"
        )
    (RESULTS / "persister.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
