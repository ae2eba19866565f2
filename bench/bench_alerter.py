"""End-to-end benchmark of the alerter: price updates evaluated per second, and trigger-to-
delivery latency over a real WebSocket.

Setup (untimed): embedded nats-server and PostgreSQL; 100,000 active alerts over 1,000 markets
(100 per market, index reference, above / below / crosses in equal parts, 30 % re-arming with a
band of 1..20 ticks, targets within 400 ticks of the market's price of 100,000 ticks) copied
into PostgreSQL; the alerter (``orrange actor alerter``) and the API (``orrange api``,
``ORRANGE_ENV=dev``) as real processes; one first price per market.

Throughput: ``--updates`` pre-encoded ``md.index.<SYM>`` index prices (a random market each, a
random-walk step of -30..+30 ticks) are published as fast as JetStream takes them; timed from
the first publish until the alerter has acked the last one (every fired alert's notification
and state committed to PostgreSQL and published on ``alert.<USER>``). Reported: updates/s and
notifications/s.

Latency: one WebSocket client, authenticated as ``bench`` and subscribed to ``orders``; the
user has one re-arming alert ``above 1000`` (band 1 tick) on market ``LAT``. Each probe
publishes ``999`` (re-arm) then ``1001`` (fire) and measures from just before the firing
publish until the notification arrives on the WebSocket (perf_counter of this process, which
also runs the client). ``--probes`` probes idle, then the same while a background task
publishes ``--load`` updates/s over the 1,000 markets. Reported: p50, p99 and max in ms.

Usage: ``.venv/bin/python bench/bench_alerter.py [--updates 100000] [--probes 300]
[--load 5000]``; writes ``bench/results/alerter.json`` and ``bench/results/alerter.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import nats
from nats.js.errors import NotFoundError
from websockets.asyncio.client import connect

from orrange.api.auth import DEV_JWT_SECRET, issue_token
from orrange.engine.alerter import INDEX_DURABLE
from orrange.engine.md_streams import MD, index_subject
from orrange.infra import EmbeddedPostgres, NatsServer
from orrange.marketdata.index import IndexPrice
from orrange.runtime import Publisher, ensure_stream
from orrange.store import migrate

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
N_MARKETS = 1_000
PER_MARKET = 100
P0 = 100_000
LAT = "LAT"


def _markets() -> list[str]:
    return [f"M{i:04d}" for i in range(N_MARKETS)]


def _alert_rows(rng: random.Random, now: int) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for m, sym in enumerate(_markets()):
        for k in range(PER_MARKET):
            cond = ("above", "below", "crosses")[k % 3]
            if cond == "above":
                target = P0 + rng.randint(1, 400)
            elif cond == "below":
                target = P0 - rng.randint(1, 400)
            else:
                target = P0 + rng.choice((-1, 1)) * rng.randint(1, 400)
            rearm = rng.random() < 0.3
            band = rng.randint(1, 20) if rearm else 0
            user = f"u{(m * PER_MARKET + k) % 5000}"
            rows.append((user, sym, cond, "index", target, rearm, band, now, now))
    rows.append(("bench", LAT, "above", "index", 1000, True, 1, now, now))
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _index(sym: str, ts: int, price: int) -> bytes:
    return msgspec.json.encode(IndexPrice(sym, ts, price, 1.0, ("bench",), (), (), False))


async def _drained(js: Any) -> bool:
    info = await js.consumer_info(MD.name, INDEX_DURABLE)
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def _wait(check: Any, what: str, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what}")
        await asyncio.sleep(0.01)


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="orrange-bench-alerter-"))
    nats_srv = NatsServer(base / "nats", log_file=base / "nats.log")
    pg = EmbeddedPostgres(base / "pg", log_file=base / "pg.log")
    procs: list[subprocess.Popen[bytes]] = []
    nats_srv.start()
    pg.start()
    pg.create_database("bench")
    db_url = pg.url("bench")
    try:
        rng = random.Random(args.seed)
        now = time.time_ns() // 1_000_000
        conn = await asyncpg.connect(db_url)
        await migrate(conn)
        await conn.copy_records_to_table(
            "alerts",
            records=_alert_rows(rng, now),
            columns=[
                "user_id",
                "market",
                "condition",
                "reference",
                "target",
                "rearm",
                "hysteresis",
                "created_at",
                "updated_at",
            ],
        )
        nc = await nats.connect(nats_srv.url)
        js = nc.jetstream()
        await ensure_stream(js, MD)
        port = _free_port()
        env = dict(os.environ)
        env.update(
            ORRANGE_NATS_URL=nats_srv.url,
            ORRANGE_DATABASE_URL=db_url,
            ORRANGE_ENV="dev",
            ORRANGE_LOG_LEVEL="WARNING",
        )
        for cmd, log in (
            (["actor", "alerter", "--metrics-port", "-1"], "alerter.log"),
            (["api", "--port", str(port)], "api.log"),
        ):
            with (base / log).open("ab") as fh:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "orrange.cli", *cmd],
                        cwd=ROOT,
                        env=env,
                        stdout=fh,
                        stderr=subprocess.STDOUT,
                    )
                )

        async def consumer() -> bool:
            try:
                await js.consumer_info(MD.name, INDEX_DURABLE)
            except NotFoundError:
                return False
            return True

        async def api_ready() -> bool:
            try:
                async with httpx.AsyncClient() as http:
                    r = await http.get(f"http://127.0.0.1:{port}/ready")
                return r.status_code == 200
            except httpx.HTTPError:
                return False

        await _wait(consumer, "the alerter")
        await _wait(api_ready, "the API")
        pub = Publisher(nc)
        ts = now
        prices = dict.fromkeys(_markets(), P0)
        for sym in prices:
            ts += 1
            await pub.submit(index_subject(sym), _index(sym, ts, P0), msg_id=f"i:{ts}")
        await pub.flush()
        await _wait(lambda: _drained(js), "the first prices")

        # ---------------------------------------------------------------- throughput
        syms = _markets()
        stream: list[tuple[str, bytes, str]] = []
        for _ in range(args.updates):
            sym = syms[rng.randrange(N_MARKETS)]
            prices[sym] = max(1, prices[sym] + rng.randint(-30, 30))
            ts += 1
            stream.append((index_subject(sym), _index(sym, ts, prices[sym]), f"i:{ts}"))
        notes0: int = await conn.fetchval("SELECT count(*) FROM notifications")
        t0 = time.perf_counter()
        for i in range(0, len(stream), 5000):
            for subject, data, mid in stream[i : i + 5000]:
                await pub.submit(subject, data, msg_id=mid)
            await pub.flush()
        t_pub = time.perf_counter() - t0
        await _wait(lambda: _drained(js), "the alerter to evaluate every update", 600)
        elapsed = time.perf_counter() - t0
        notes: int = await conn.fetchval("SELECT count(*) FROM notifications") - notes0
        throughput = {
            "updates": args.updates,
            "seconds": round(elapsed, 3),
            "publish_seconds": round(t_pub, 3),
            "updates_per_s": round(args.updates / elapsed),
            "notifications": notes,
            "notifications_per_s": round(notes / elapsed),
        }
        print("throughput", throughput, flush=True)

        # ---------------------------------------------------------------- latency
        token = issue_token(DEV_JWT_SECRET, "bench")
        latency: dict[str, Any] = {}
        async with connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
            await ws.send(json.dumps({"op": "auth", "token": token}))
            await ws.send(json.dumps({"op": "subscribe", "channel": "orders"}))
            while json.loads(await ws.recv()).get("type") != "subscribed":
                pass

            async def probes(n: int) -> list[float]:
                nonlocal ts
                out: list[float] = []
                for _ in range(n):
                    ts += 1
                    await pub.publish(index_subject(LAT), _index(LAT, ts, 999), msg_id=f"l:{ts}")
                    ts += 1
                    fire_ts = ts
                    t = time.perf_counter()
                    await pub.publish(index_subject(LAT), _index(LAT, ts, 1001), msg_id=f"l:{ts}")
                    while True:
                        msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
                        if msg.get("type") == "notification" and msg.get("ts") == fire_ts:
                            out.append((time.perf_counter() - t) * 1000)
                            break
                    await asyncio.sleep(0.005)
                return out

            def summary(xs: list[float]) -> dict[str, float]:
                return {
                    "probes": len(xs),
                    "p50_ms": round(statistics.median(xs), 2),
                    "p99_ms": round(_pct(xs, 0.99), 2),
                    "max_ms": round(max(xs), 2),
                }

            latency["idle"] = summary(await probes(args.probes))
            print("latency idle", latency["idle"], flush=True)

            stop = asyncio.Event()
            sent = 0
            bg_pub = Publisher(await nats.connect(nats_srv.url))

            async def background() -> None:
                nonlocal sent
                bts = ts + 10_000_000  # separate ts range (the probes' ts stay unique)
                tick = 0.01
                per_tick = max(1, int(args.load * tick))
                start = time.perf_counter()
                while not stop.is_set():
                    for _ in range(per_tick):
                        sym = syms[rng.randrange(N_MARKETS)]
                        prices[sym] = max(1, prices[sym] + rng.randint(-30, 30))
                        bts += 1
                        await bg_pub.submit(
                            index_subject(sym), _index(sym, bts, prices[sym]), msg_id=f"b:{bts}"
                        )
                    await bg_pub.flush()
                    sent += per_tick
                    ahead = start + sent / args.load - time.perf_counter()
                    if ahead > 0:
                        await asyncio.sleep(ahead)

            bg = asyncio.create_task(background())
            await asyncio.sleep(1.0)
            t_load = time.perf_counter()
            sent0 = sent
            loaded = await probes(args.probes)
            rate = (sent - sent0) / (time.perf_counter() - t_load)
            stop.set()
            await bg
            latency["under_load"] = {**summary(loaded), "load_updates_per_s": round(rate)}
            print("latency under load", latency["under_load"], flush=True)
        await conn.close()
        await nc.close()
        return {
            "alerts": N_MARKETS * PER_MARKET + 1,
            "markets": N_MARKETS,
            "throughput": throughput,
            "latency": latency,
        }
    except BaseException:
        for log in ("alerter.log", "api.log"):
            if (base / log).exists():
                print(f"--- {log}", (base / log).read_text()[-3000:], sep="\n", file=sys.stderr)
        raise
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        pg.stop()
        nats_srv.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    """Run the benchmark and write ``bench/results/alerter.{json,md}``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--updates", type=int, default=100_000, help="throughput phase updates")
    p.add_argument("--probes", type=int, default=300, help="latency probes per phase")
    p.add_argument("--load", type=int, default=5_000, help="background updates/s (latency)")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    res = asyncio.run(run(args))
    res["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    res["args"] = vars(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "alerter.json").write_text(json.dumps(res, indent=2) + "\n")
    t, lat = res["throughput"], res["latency"]
    md = [
        "# Alerter end to end (bench/bench_alerter.py)",
        "",
        f"{res['alerts']:,} active alerts over {res['markets']:,} markets; alerter and API as",
        "real processes on embedded nats-server and PostgreSQL; "
        f"{res['machine']['cpus']} CPUs, Python {res['machine']['python']}.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| price updates evaluated/s (end to end, incl. PostgreSQL commit) | "
        f"{t['updates_per_s']:,} |",
        f"| notifications/s during that run | {t['notifications_per_s']:,} |",
        f"| trigger-to-WebSocket latency idle p50 / p99 / max (ms) | "
        f"{lat['idle']['p50_ms']} / {lat['idle']['p99_ms']} / {lat['idle']['max_ms']} |",
        f"| same under {lat['under_load']['load_updates_per_s']:,} updates/s p50 / p99 / max "
        f"(ms) | {lat['under_load']['p50_ms']} / {lat['under_load']['p99_ms']} / "
        f"{lat['under_load']['max_ms']} |",
        "",
        "Notes: the issue's target (50,000 updates/s, p99 under 50 ms) is not met end to end on",
        "this 2-CPU machine, where the bench client, nats-server, PostgreSQL, the alerter and the",
        "API share the CPUs. The alerter is one Python process, CPU-bound: a cProfile run shows",
        "the index evaluation (about 40 us per update, see bench_alerts.py for the pure figure)",
        "is a minority of its time; NATS message parsing and acking, JSON, publishing the",
        "notifications (about 0.6 per update here: the walk crosses many of the 100 alerts per",
        "market) and the one-statement PostgreSQL commit per batch take the rest. Scaling out is",
        "by market: several alerters, each with its own consumers filtered on a subset of",
        "``md.index.<SYM>`` / ``evt.<SYM>`` (not implemented yet).",
        "",
    ]
    (RESULTS / "alerter.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
