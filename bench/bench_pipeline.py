"""End-to-end pipeline benchmark: the whole engine as real processes (``orrange up``).

Each run starts ``orrange up`` with its own temporary data directory and free ports (embedded
nats-server with JetStream file storage, embedded PostgreSQL, matcher, risk, persister, and the
API when ``orrange actor api`` exists), then measures:

1. **Burst throughput** (``AMZN-USD``, a fresh book): ``--orders`` commands of the seeded
   synthetic mix of :func:`orrange.matching.flow.synthetic_flow` (55 % limit, 35 % cancels of
   live orders by book-assigned id, 10 % market; 1,000 users, within the default risk limits)
   are offered at once on ``cmd.order.AMZN-USD`` with the pipelined :class:`Publisher`
   (``Nats-Msg-Id`` per command). Timed from the first publish until (a) the last event is in
   ``EVENTS`` (its JetStream timestamp; the matcher is done) and (b) the persister's durable
   consumer has acked every event and the ``fills`` rows equal those of a pure replay of the same
   commands (PostgreSQL is done). The final book sequence and the fill count are checked
   against the pure replay.
2. **REST** (``POST /api/v1/orders`` with a JWT, many concurrent ``httpx.AsyncClient`` clients)
   when the API process is available; otherwise recorded as not measured, with the reason.
3. **Latency at fixed offered rates** (``BTC-USDT``): pairs of crossing limit orders (a resting
   maker, then a taker from another user at the same price), paced at ``R`` orders/s. Latency is
   from the publish of the taker to the receipt of its ``OrderFilled`` on ``evt.BTC-USDT``
   through a core NATS subscription. A rate is *sustained* when the fill backlog (takers sent
   but not filled yet) and the persister's backlog do not grow over the second half of the
   window and end below 0.5 s of offered load. The highest sustained rate is searched by
   doubling from 1,000 orders/s and then bisecting. After every window the benchmark waits
   until the pipeline is idle again (every taker filled, the persister drained).

Figures are medians over ``--runs`` runs, each on a fresh stack. The machine is shared, so
the load average and per-process CPU seconds are recorded with the results.

Writes ``bench/results/pipeline.json`` and ``bench/results/pipeline.md`` (``--out NAME``: other
names, e.g. for a run with ``--env ORRANGE_API_WORKERS=2``).

    .venv/bin/python bench/bench_pipeline.py [--quick] [--runs 3] [--orders 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import nats.errors
import uvloop
from nats.js.errors import NotFoundError

from orrange.markets import load_markets
from orrange.matching import OrderBook
from orrange.matching.commands import SubmitOrder
from orrange.matching.enums import Side
from orrange.matching.events import OrderFilled
from orrange.matching.flow import synthetic_flow
from orrange.runtime import MSG_ID_HEADER, Publisher
from orrange.wire.engine import (
    BOOK_IN,
    CMD,
    EVENTS,
    cmd_subject,
    decode_events,
    events_subject,
    submit_msg_id,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BURST_SYMBOL = "AMZN-USD"
LAT_SYMBOL = "BTC-USDT"
#: BTC-USDT: 30,000.00 USDT, 0.001 BTC (30 USDT notional, above the 5 USDT minimum).
LAT_PRICE = 3_000_000
LAT_QTY = 100
LAT_USERS = 2_000  # makers and as many takers: at 10k orders/s, 2.5 submits/s per user
JWT_SECRET = "bench-pipeline-secret"
_json = msgspec.json.Encoder()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _api_available() -> bool:
    """True when this checkout's ``orrange actor api`` exists."""
    out = subprocess.run(
        [sys.executable, "-m", "orrange.cli", "actor", "api", "--help"],
        capture_output=True,
        cwd=ROOT,
        check=False,
    )
    return out.returncode == 0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_times() -> list[int]:
    """The machine's ``cpu`` line of /proc/stat (user nice system idle iowait irq softirq
    steal ...), in clock ticks."""
    return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]


def _steal_pct(before: list[int], after: list[int]) -> float:
    """Share of the interval the hypervisor gave this machine's CPUs to someone else (%)."""
    delta = [b - a for a, b in zip(before, after, strict=True)]
    return round(100.0 * delta[7] / max(1, sum(delta)), 1)


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and all its descendants still alive."""
    total = _cpu_s(pid)
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            total += _tree_cpu_s(int(child))
    return total


# ------------------------------------------------------------------------------------ stack
@dataclass
class Stack:
    """A running ``orrange up`` (see :func:`start_stack`)."""

    proc: subprocess.Popen[bytes]
    tmp: Path
    env: dict[str, str]
    nats_url: str
    database_url: str
    api_url: str | None
    log: Path
    pids: dict[str, int] = field(default_factory=dict)

    def read_pids(self) -> None:
        """Child pids from the supervisor's ``<name> started (pid=N)`` lines."""
        for m in re.finditer(
            r"(\w+) started \(pid=(\d+)\)", self.log.read_text("utf-8", "replace")
        ):
            self.pids[m.group(1)] = int(m.group(2))

    def cpu(self) -> dict[str, float]:
        """CPU seconds per process so far, its descendants included (nats-server and the
        PostgreSQL backends under their ``orrange infra`` parents, API workers under
        uvicorn's supervisor)."""
        return {name: _tree_cpu_s(pid) for name, pid in self.pids.items()}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


async def _quiet(exc: Exception) -> None:
    pass


async def start_stack(
    with_api: bool,
    timeout_s: float = 240.0,
    extra_env: dict[str, str] | None = None,
    procfile: str | None = None,
) -> Stack:
    """``orrange up`` in a temporary data directory with free ports; returns once every actor's
    durable consumer exists (and the API answers ``/ready`` when it runs)."""
    tmp = Path(tempfile.mkdtemp(prefix="orrange-bench-"))
    ports = {k: _free_port() for k in ("nats", "mon", "pg", "api")}
    env = {
        k: v for k, v in os.environ.items() if k not in ("ORRANGE_NATS_URL", "ORRANGE_DATABASE_URL")
    }
    env.update(
        ORRANGE_DATA_DIR=str(tmp / "var"),
        ORRANGE_NATS_PORT=str(ports["nats"]),
        ORRANGE_NATS_MONITOR_PORT=str(ports["mon"]),
        ORRANGE_POSTGRES_PORT=str(ports["pg"]),
        ORRANGE_API_PORT=str(ports["api"]),
        ORRANGE_JWT_SECRET=JWT_SECRET,
        ORRANGE_LOG_FORMAT="json",
        ORRANGE_LOG_LEVEL="WARNING",
    )
    env.update(extra_env or {})
    cmd = [sys.executable, "-m", "orrange.cli", "up"]
    if procfile:
        cmd += ["--procfile", str(Path(procfile).resolve())]  # noqa: ASYNC240 -- setup, unmeasured
    # only the trading pipeline: other Procfile processes (market-data feeds...) would add
    # load and commands of their own to the books
    cmd += ["--only", "nats,postgres,matcher,risk,persister" + (",api" if with_api else "")]
    log = tmp / "up.log"
    with open(log, "wb") as out:  # noqa: ASYNC230 -- setup, before the measured window
        proc = subprocess.Popen(  # noqa: ASYNC220 -- the stack is stopped synchronously at the end
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    stack = Stack(
        proc=proc,
        tmp=tmp,
        env=env,
        nats_url=f"nats://127.0.0.1:{ports['nats']}",
        database_url=f"postgresql://postgres@127.0.0.1:{ports['pg']}/orrange",
        api_url=f"http://127.0.0.1:{ports['api']}" if with_api else None,
        log=log,
    )
    wanted = [
        (CMD.name, "risk"),
        (BOOK_IN.name, f"matcher-{BURST_SYMBOL}"),
        (BOOK_IN.name, f"matcher-{LAT_SYMBOL}"),
        (EVENTS.name, "persister"),
        (EVENTS.name, "risk-events"),
    ]
    deadline = time.monotonic() + timeout_s
    nc = None
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"orrange up exited: {log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"stack not ready: {log.read_text()[-3000:]}")
            try:
                if nc is None:
                    nc = await nats.connect(
                        stack.nats_url,
                        connect_timeout=1,
                        allow_reconnect=False,
                        error_cb=_quiet,
                    )
                js = nc.jetstream()
                for stream, durable in wanted:
                    await js.consumer_info(stream, durable)
            except Exception:
                await asyncio.sleep(0.5)
                continue
            break
        if with_api:
            import httpx

            async with httpx.AsyncClient(timeout=2) as http:
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(f"{stack.api_url}/ready")).status_code == 200:
                            break
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"API not ready: {log.read_text()[-3000:]}")
                    await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)  # let every actor's pull requests settle
        stack.read_pids()
        return stack
    except BaseException:
        stack.stop()
        raise
    finally:
        if nc is not None:
            await nc.close()


# ------------------------------------------------------------------------------------ burst
@dataclass
class Burst:
    commands: list[bytes]
    ids: list[str]
    final_seq: int
    fills: int
    submits: int


def make_burst(n: int, seed: int) -> Burst:
    """The synthetic mix on ``AMZN-USD`` and what a pure replay of it produces."""
    spec = load_markets(ROOT / "config" / "markets.toml")[BURST_SYMBOL]
    cmds = synthetic_flow(n, seed, spec=spec, users=1000, start_ts=int(time.time() * 1000))
    book = OrderBook(spec)
    fills = 0
    for c in cmds:
        for e in book.process(c):
            if type(e) is OrderFilled:
                fills += 1
    return Burst(
        commands=[_json.encode(c) for c in cmds],
        ids=[f"bench:{seed}:{i}" for i in range(n)],
        final_seq=book.seq,
        fills=fills,
        submits=sum(isinstance(c, SubmitOrder) for c in cmds),
    )


async def _consumer_drained(js: Any, stream: str, durable: str) -> bool:
    try:
        info = await js.consumer_info(stream, durable)
        last = (await js.stream_info(stream)).state.last_seq
    except nats.errors.TimeoutError:  # a loaded server answers late: ask again
        return False
    return bool(
        info.num_pending == 0 and info.num_ack_pending == 0 and info.ack_floor.stream_seq >= last
    )


async def run_burst(stack: Stack, burst: Burst, publish_acks: bool = False) -> dict[str, Any]:
    """Publish the burst on the command subject and time the engine until PostgreSQL has it.

    The load generator shares the 2 cores with the engine, so by default it publishes each
    command as a core NATS publish carrying its ``Nats-Msg-Id`` and no reply subject:
    JetStream stores it in CMD all the same (the subject is CMD's), but sends no ack back, which
    halves the generator's CPU (and saves nats-server the acks). That every command was stored
    is checked afterwards (CMD's message count). ``publish_acks`` publishes with the pipelined
    :class:`Publisher` and collects every ack instead (how the API and the actors publish).
    """
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream(timeout=20)
    db = await asyncpg.connect(stack.database_url)
    try:
        pub = Publisher(nc, timeout_ms=60_000, max_pending=20_000)
        subject = cmd_subject(BURST_SYMBOL)
        cmd_before = (await js.stream_info(CMD.name)).state.messages
        cpu0 = stack.cpu()
        client_cpu0 = time.process_time()
        t0 = time.time()
        if publish_acks:
            for payload, mid in zip(burst.commands, burst.ids, strict=True):
                await pub.submit(subject, payload, msg_id=mid)
            await pub.flush()
        else:
            for payload, mid in zip(burst.commands, burst.ids, strict=True):
                await nc.publish(subject, payload, headers={MSG_ID_HEADER: mid})
            await nc.flush()
        t_pub = time.time()
        client_cpu = time.process_time() - client_cpu0
        evt_subject = events_subject(BURST_SYMBOL)
        deadline = time.monotonic() + 900
        matcher_done = None
        while matcher_done is None:
            with contextlib.suppress(NotFoundError, nats.errors.TimeoutError):
                last = await js.get_last_msg(EVENTS.name, evt_subject)
                seq = decode_events(last.data)[-1].seq
                if seq >= burst.final_seq:
                    matcher_done = last.time.timestamp() if last.time else time.time()
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("matcher did not finish the burst")
            await asyncio.sleep(0.01)
        t_matcher_seen = time.time()
        while True:
            if await _consumer_drained(js, EVENTS.name, "persister"):
                n = await db.fetchval("SELECT count(*) FROM fills WHERE symbol = $1", BURST_SYMBOL)
                if n >= burst.fills:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("persister did not finish the burst")
            await asyncio.sleep(0.02)
        persister_done = time.time()
        cpu1 = stack.cpu()
        stored_cmds = (await js.stream_info(CMD.name)).state.messages - cmd_before
        if stored_cmds != len(burst.commands):
            raise RuntimeError(f"CMD stored {stored_cmds} of {len(burst.commands)} commands")
        rejects = (await js.stream_info("REJECTS")).state.messages
        stored_fills = await db.fetchval(
            "SELECT count(*) FROM fills WHERE symbol = $1", BURST_SYMBOL
        )
        orders_rows = await db.fetchval(
            "SELECT count(*) FROM orders WHERE symbol = $1", BURST_SYMBOL
        )
        last = await js.get_last_msg(EVENTS.name, evt_subject)
        n = len(burst.commands)
        return {
            "commands": n,
            "submits": burst.submits,
            "publish_s": t_pub - t0,
            "publish_per_s": n / (t_pub - t0),
            "publish_acks": publish_acks,
            "client_cpu_s": round(client_cpu, 2),
            "stored_commands": stored_cmds,
            "matcher_s": matcher_done - t0,
            "matcher_orders_per_s": n / (matcher_done - t0),
            "matcher_seen_s": t_matcher_seen - t0,
            "persister_s": persister_done - t0,
            "persister_orders_per_s": n / (persister_done - t0),
            "events": decode_events(last.data)[-1].seq,
            "expected_events": burst.final_seq,
            "fills": stored_fills,
            "expected_fills": burst.fills,
            "orders_rows": orders_rows,
            "rejections": rejects,
            "cpu_s": {k: round(cpu1.get(k, 0.0) - v, 2) for k, v in cpu0.items()},
        }
    finally:
        await db.close()
        await nc.close()


# ------------------------------------------------------------------------------------ latency
def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def _slope(points: Sequence[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


class LatencyProbe:
    """Paced pairs of crossing orders on ``LAT_SYMBOL`` and their takers' fill latencies."""

    def __init__(self, nc: Any, js: Any) -> None:
        self.nc = nc
        self.js = js
        self.sent: dict[str, deque[float]] = {}
        self.latencies: list[float] = []
        self.filled = 0
        self.fill_target: int | None = None  # set once a window stops sending
        self.all_filled = asyncio.Event()  # filled reached fill_target
        self.pairs_total = 0
        self.ts = int(time.time() * 1000)
        self.window = 0

    async def start(self) -> None:
        await self.nc.subscribe(
            events_subject(LAT_SYMBOL),
            cb=self._on_event,
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )
        self.pub = Publisher(self.nc, timeout_ms=60_000, max_pending=50_000)

    async def _on_event(self, msg: Any) -> None:
        now = time.perf_counter()
        data = msg.data
        if b'"fill"' not in data:
            return
        for fill in decode_events(data):
            if not isinstance(fill, OrderFilled) or fill.taker_leaves != 0:
                continue
            q = self.sent.get(fill.taker_user)
            if q:
                self.latencies.append(now - q.popleft())
                self.filled += 1
                if self.fill_target is not None and self.filled >= self.fill_target:
                    self.all_filled.set()

    async def offer(self, rate: float, duration_s: float, drain_s: float = 300.0) -> dict[str, Any]:
        """Offer ``rate`` orders/s (``rate / 2`` pairs/s) for ``duration_s``, then wait until
        every taker is filled and the persister is drained (at most ``drain_s``) so that the
        next window starts on an idle pipeline. Each window has its own users, so a late fill
        of an earlier window can never be taken for one of this window."""
        self.window += 1
        window = self.window
        self.latencies = []
        self.filled = 0
        self.fill_target = None
        self.all_filled.clear()
        subject = cmd_subject(LAT_SYMBOL)
        pair_rate = rate / 2
        sent = 0
        samples: list[tuple[float, float]] = []  # (t, fill backlog)
        pers: list[tuple[float, float]] = []  # (t, persister pending)
        pub = self.pub
        loop = asyncio.get_running_loop()
        cpu0 = time.process_time()
        t0 = loop.time()
        next_sample = t0
        while True:
            now = loop.time()
            el = now - t0
            if el >= duration_s:
                break
            due = int(pair_rate * el) + 1
            while sent < due:
                k = self.pairs_total
                maker = f"m{window}-{k % LAT_USERS}"
                taker = f"t{window}-{k % LAT_USERS}"
                self.ts += 1
                m = SubmitOrder(
                    ts=self.ts, user=maker, side=Side.SELL, quantity=LAT_QTY, price=LAT_PRICE
                )
                t = SubmitOrder(
                    ts=self.ts, user=taker, side=Side.BUY, quantity=LAT_QTY, price=LAT_PRICE
                )
                await pub.submit(subject, m, msg_id=submit_msg_id(maker, f"lat-{k}"))
                self.sent.setdefault(taker, deque()).append(time.perf_counter())
                await pub.submit(subject, t, msg_id=submit_msg_id(taker, f"lat-{k}"))
                self.pairs_total += 1
                sent += 1
            if now >= next_sample:
                samples.append((el, sent - self.filled))
                with contextlib.suppress(Exception):
                    info = await self.js.consumer_info(EVENTS.name, "persister")
                    pers.append((el, float(info.num_pending + info.num_ack_pending)))
                next_sample = now + 0.1
            await pub.flush()
            await asyncio.sleep(0.001)
        t_end = loop.time()
        client_cpu = time.process_time() - cpu0
        backlog_end = sent - self.filled
        offered = 2 * sent / (t_end - t0)
        # drain: every taker filled and the persister caught up, before the next window
        t_drain = loop.time()
        deadline = t_drain + drain_s
        self.fill_target = sent
        if self.filled >= sent:
            self.all_filled.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_filled.wait(), drain_s)
        drained_fills = self.filled
        while loop.time() < deadline:
            with contextlib.suppress(Exception):
                if await _consumer_drained(self.js, EVENTS.name, "persister"):
                    break
            await asyncio.sleep(0.05)
        drain_time = loop.time() - t_drain
        half = [p for p in samples if p[0] >= duration_s / 2]
        phalf = [p for p in pers if p[0] >= duration_s / 2]
        fill_slope = _slope(half)  # pairs/s of growth
        pers_slope = _slope(phalf)  # events/s of growth
        pers_end = pers[-1][1] if pers else 0.0
        lat = sorted(self.latencies)
        ok = (
            fill_slope < 0.02 * pair_rate
            and backlog_end < 0.5 * pair_rate
            and drained_fills == sent
            and pers_slope < 0.02 * 5 * pair_rate
            and pers_end < 0.5 * 5 * pair_rate
        )
        for q in self.sent.values():
            q.clear()  # unfilled takers (a failed window) must not skew the next one
        return {
            "offered_orders_per_s": rate,
            "achieved_offer_per_s": round(offered, 1),
            "pairs": sent,
            "filled": drained_fills,
            "p50_ms": _percentile(lat, 0.50) * 1000,
            "p99_ms": _percentile(lat, 0.99) * 1000,
            "max_ms": (lat[-1] * 1000) if lat else float("nan"),
            "fill_backlog_end": backlog_end,
            "fill_backlog_slope_per_s": round(fill_slope, 1),
            "persister_pending_end": pers_end,
            "persister_pending_slope_per_s": round(pers_slope, 1),
            "drain_s": round(drain_time, 2),
            "client_cpu_s": round(client_cpu, 2),
            "sustained": ok,
        }


async def run_latency(
    stack: Stack, rates: Sequence[float], duration_s: float, search: bool, search_steps: int
) -> dict[str, Any]:
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream(timeout=20)
    try:
        probe = LatencyProbe(nc, js)
        await probe.start()
        await probe.offer(500, 2.0)  # warm-up (connections, book, first trade price)
        fixed = [await probe.offer(r, duration_s) for r in rates]
        out: dict[str, Any] = {"fixed": fixed}
        if search:
            tried: list[dict[str, Any]] = []
            lo, hi = 0.0, None
            rate = 1_000.0
            while hi is None and rate <= 128_000:
                r = await probe.offer(rate, duration_s)
                tried.append(r)
                if r["sustained"]:
                    lo, rate = rate, rate * 2
                else:
                    hi = rate
            for _ in range(search_steps if hi is not None else 0):
                assert hi is not None
                mid = round((lo + hi) / 2 / 500) * 500
                if mid in (lo, hi):
                    break
                r = await probe.offer(mid, duration_s)
                tried.append(r)
                if r["sustained"]:
                    lo = mid
                else:
                    hi = mid
            out["search"] = tried
            out["max_sustained_orders_per_s"] = lo
        return out
    finally:
        await nc.close()


# ------------------------------------------------------------------------------------ REST
REST_USERS = [f"rest{i}" for i in range(64)]
REST_BODIES = (
    b'{"symbol":"AMZN-USD","side":"buy","type":"limit","quantity":"1","price":"50.00"}',
    b'{"symbol":"AMZN-USD","side":"sell","type":"limit","quantity":"1","price":"150.00"}',
)
_WRK_LUA = """
local tokens = {%(tokens)s}
local bodies = {'%(buy)s', '%(sell)s'}
local n = 0
local hdrs = {}
for i, t in ipairs(tokens) do
  hdrs[i] = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. t}
end
request = function()
  n = n + 1
  return wrk.format("POST", "/api/v1/orders", hdrs[(n %% #tokens) + 1], bodies[(n %% 2) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"non_2xx\\": %%d, "
    .. "\\"socket_errors\\": %%d, "
    .. "\\"p50_us\\": %%d, \\"p99_us\\": %%d, \\"max_us\\": %%d}\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def _token(user: str) -> str:
    from orrange.api.auth import issue_token

    return issue_token(JWT_SECRET, user, ttl_s=3600)


async def run_rest(stack: Stack, duration_s: float, connections: int) -> dict[str, Any]:
    """``POST /api/v1/orders`` from ``wrk`` (one thread, ``connections`` keep-alive
    connections, each request a passive limit order of one of :data:`REST_USERS`, alternating
    sides, no client order id so the API generates one) for ``duration_s``; every answer comes
    after the engine accepted the order. Counts the 201 answers per second."""
    assert stack.api_url is not None
    # one check request first: the body is valid and answered 201
    import httpx

    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
        r = await http.post(
            "/api/v1/orders",
            content=REST_BODIES[0],
            headers={
                "Authorization": f"Bearer {_token(REST_USERS[0])}",
                "Content-Type": "application/json",
            },
        )
        if r.status_code != 201:
            raise RuntimeError(f"REST check order: {r.status_code} {r.text}")
    script = stack.tmp / "orders.lua"
    script.write_text(
        _WRK_LUA
        % {
            "tokens": ", ".join(f"'{_token(u)}'" for u in REST_USERS),
            "buy": REST_BODIES[0].decode(),
            "sell": REST_BODIES[1].decode(),
        }
    )
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        stack.api_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    text = out.decode()
    line = next((ln for ln in text.splitlines() if ln.startswith("WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk: {text}")
    w = json.loads(line[4:])
    ok = w["requests"] - w["non_2xx"]
    elapsed = w["duration_us"] / 1e6
    return {
        "tool": "wrk -t1",
        "connections": connections,
        "requests": w["requests"],
        "non_2xx": w["non_2xx"],
        "socket_errors": w["socket_errors"],
        "elapsed_s": elapsed,
        "orders_per_s": ok / elapsed,
        "p50_ms": w["p50_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000,
        "max_ms": w["max_us"] / 1000,
    }


# ------------------------------------------------------------------------------------ main
def _nats_version() -> str:
    from orrange.infra import nats_server_binary

    with contextlib.suppress(Exception):
        out = subprocess.run(
            [str(nats_server_binary()), "--version"], capture_output=True, text=True
        )
        return out.stdout.strip().split()[-1]
    return "?"


async def one_run(
    i: int, args: argparse.Namespace, burst: Burst, with_api: bool, search: bool
) -> dict[str, Any]:
    t = time.monotonic()
    stack = await start_stack(with_api, extra_env=args.env_vars, procfile=args.procfile)
    print(f"run {i}: stack up in {time.monotonic() - t:.1f} s ({stack.tmp})", flush=True)
    ok = False
    try:
        res: dict[str, Any] = {"burst": await run_burst(stack, burst, args.publish_acks)}
        b = res["burst"]
        print(
            f"run {i}: burst {b['commands']:,} cmds: matcher {b['matcher_orders_per_s']:,.0f}/s, "
            f"persister {b['persister_orders_per_s']:,.0f}/s, publish {b['publish_per_s']:,.0f}/s "
            f"(events {b['events']}/{b['expected_events']}, fills {b['fills']}/"
            f"{b['expected_fills']}, rejections {b['rejections']}) cpu {b['cpu_s']}",
            flush=True,
        )
        if args.burst_only:
            ok = True
            return res
        if with_api:
            cpu0 = stack.cpu()
            res["rest"] = await run_rest(stack, args.rest_duration, args.rest_connections)
            x = res["rest"]
            x["cpu_s"] = {k: round(v - cpu0.get(k, 0.0), 2) for k, v in stack.cpu().items()}
            print(
                f"run {i}: REST {x['orders_per_s']:,.0f} orders/s ({x['requests']:,} requests, "
                f"{x['non_2xx']} non-2xx, {x['socket_errors']} socket errors), p50 "
                f"{x['p50_ms']:.1f} ms, p99 {x['p99_ms']:.1f} ms, cpu {x['cpu_s']}",
                flush=True,
            )
        lat = await run_latency(stack, args.rates, args.duration, search, args.search_steps)
        res["latency"] = lat
        for r in lat["fixed"] + lat.get("search", []):
            print(
                f"run {i}: {r['offered_orders_per_s']:>8,.0f}/s offered "
                f"({r['achieved_offer_per_s']:,.0f}): p50 {r['p50_ms']:.2f} ms, p99 "
                f"{r['p99_ms']:.2f} ms, backlog end {r['fill_backlog_end']}, persister pending "
                f"{r['persister_pending_end']:.0f}, drain {r['drain_s']} s, sustained "
                f"{r['sustained']}",
                flush=True,
            )
        if search:
            print(
                f"run {i}: highest sustained {lat['max_sustained_orders_per_s']:,.0f}/s", flush=True
            )
        ok = True
        return res
    finally:
        stack.stop()
        if ok and not args.keep:
            shutil.rmtree(stack.tmp, ignore_errors=True)
        else:
            print(f"run {i}: stack log kept in {stack.log}", flush=True)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(runs: list[dict[str, Any]], rates: Sequence[float]) -> dict[str, Any]:
    bursts = [r["burst"] for r in runs]
    out: dict[str, Any] = {
        "pipeline_matcher_orders_per_s": _median([b["matcher_orders_per_s"] for b in bursts]),
        "pipeline_persister_orders_per_s": _median([b["persister_orders_per_s"] for b in bursts]),
        "publish_per_s": _median([b["publish_per_s"] for b in bursts]),
    }
    lat = {}
    for k, rate in enumerate(rates):
        rs = [r["latency"]["fixed"][k] for r in runs]
        lat[str(int(rate))] = {
            "p50_ms": _median([x["p50_ms"] for x in rs]),
            "p99_ms": _median([x["p99_ms"] for x in rs]),
            "sustained_runs": sum(bool(x["sustained"]) for x in rs),
            "runs": len(rs),
        }
    out["latency"] = lat
    sus = [
        r["latency"]["max_sustained_orders_per_s"]
        for r in runs
        if "max_sustained_orders_per_s" in r["latency"]
    ]
    out["max_sustained_orders_per_s"] = _median(sus) if sus else None
    rest = [r["rest"]["orders_per_s"] for r in runs if "rest" in r]
    out["rest_orders_per_s"] = _median(rest) if rest else None
    return out


def write_results(doc: dict[str, Any], name: str = "pipeline") -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    s = doc["summary"]
    runs = doc["runs"]
    cfg = doc["config"]

    def runs_of(key: str) -> str:
        return ", ".join(f"{r['burst'][key]:,.0f}" for r in runs)

    def met(ok: bool | None) -> str:
        return "n/a" if ok is None else ("yes" if ok else "**no**")

    rest = s["rest_orders_per_s"]
    p99_5k = s["latency"].get("5000", {}).get("p99_ms")
    rest_text = "not measured (see 2.)" if rest is None else f"{rest:,.0f} orders/s"
    lines = [
        "# Pipeline benchmark (whole stack, real processes)",
        "",
        f"{doc['date']}, Python {doc['python']}, {doc['cpus']} CPUs (shared and noisy: load "
        f"average before {doc['loadavg_before']}, after {doc['loadavg_after']}"
        + (
            f"; the hypervisor took {doc['steal_pct']} % of the CPU time (steal)"
            if "steal_pct" in doc
            else ""
        )
        + "), nats-server "
        f"{doc['nats_server']} with JetStream file storage, embedded PostgreSQL. Median of "
        f"{len(runs)} run(s), each on a fresh `orrange up` (temporary data directory, free ports; "
        f"embedded nats-server and PostgreSQL, matcher, risk, persister"
        f"{', API' if cfg['api'] else ''}). Produced by `bench/bench_pipeline.py"
        f"{' --quick' if cfg['quick'] else ''}`"
        + "".join(
            f" `--env {k}={v}`"
            for k, v in cfg.get("env", {}).items()
            if k != "ORRANGE_RISK_EXEMPT_USERS"
        )
        + ".",
        "",
        "## Targets",
        "",
        "| target | measured (median) | met |",
        "| --- | ---: | --- |",
        f"| >= 20,000 orders/s through risk, matcher and persister | "
        f"{s['pipeline_persister_orders_per_s']:,.0f} orders/s to PostgreSQL "
        f"({s['pipeline_matcher_orders_per_s']:,.0f} to EVENTS) | "
        f"{met(s['pipeline_persister_orders_per_s'] >= 20_000)} |",
        f"| >= 5,000 orders/s through REST | "
        f"{rest_text}"
        f" | {met(None if rest is None else rest >= 5_000)} |",
        f"| p99 < 10 ms at 5,000 orders/s | "
        f"{'n/a' if p99_5k is None else f'{p99_5k:.2f} ms'} | "
        f"{met(None if p99_5k is None else p99_5k < 10)} |",
        "",
        "## 1. Burst through the pipeline",
        "",
        f"{cfg['orders']:,} commands of the seeded synthetic mix (55 % limit, 35 % cancel, 10 % "
        f"market; 1,000 users within the default risk limits, no client order ids) on "
        f"`cmd.order.{BURST_SYMBOL}`, all at once, "
        + (
            "with the pipelined `Publisher` (`Nats-Msg-Id` each, every JetStream ack collected). "
            if cfg.get("publish_acks")
            else "each a core NATS publish with its `Nats-Msg-Id` and no reply subject: JetStream "
            "stores it in CMD as any publish on its subjects but sends no ack, which halves the "
            "generator's CPU on the 2 cores it shares with the engine; CMD's message count is "
            "checked after each run (the API and the actors do collect acks). "
        )
        + "*Matcher done*: the JetStream timestamp of the last "
        "event in EVENTS; *persister done*: the `persister` consumer acked every event and "
        "`fills` holds every fill of the pure replay (polled every 20 ms). The event sequence and "
        "fill count are checked against a pure replay of the same commands.",
        "",
        "| figure | median | runs |",
        "| --- | ---: | --- |",
        f"| orders/s, first publish -> last event in EVENTS | "
        f"{s['pipeline_matcher_orders_per_s']:,.0f} | {runs_of('matcher_orders_per_s')} |",
        f"| orders/s, first publish -> every fill/order row in PostgreSQL | "
        f"{s['pipeline_persister_orders_per_s']:,.0f} | {runs_of('persister_orders_per_s')} |",
        f"| publish rate of the burst | {s['publish_per_s']:,.0f} | {runs_of('publish_per_s')} |",
        "",
        "| run | events (expected) | fills (expected) | risk rejections | CPU s per process |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for k, r in enumerate(runs):
        b = r["burst"]
        cpu = ", ".join(f"{n} {v:.1f}" for n, v in sorted(b["cpu_s"].items()))
        if "client_cpu_s" in b:
            cpu += f"; generator {b['client_cpu_s']:.1f}"
        lines.append(
            f"| {k + 1} | {b['events']:,} ({b['expected_events']:,}) | {b['fills']:,} "
            f"({b['expected_fills']:,}) | {b['rejections']} | {cpu} |"
        )
    lines += [
        "",
        "## 2. REST",
        "",
    ]
    if rest is None:
        lines.append(f"Not measured: {doc['rest_not_measured']}.")
    else:
        lines += [
            f"`POST /api/v1/orders` with a JWT from `wrk` (one thread, "
            f"{cfg['rest_connections']} keep-alive connections, {cfg['rest_duration_s']} s, Lua "
            f"script), passive limit orders on `{BURST_SYMBOL}` alternating sides, rotating over "
            f"{len(REST_USERS)} users (exempt from the per-user rate limit and open-order cap); "
            "no client order id, so the API generates one (`~` and a UUID4, unique by "
            "construction, "
            "so risk does not claim it in the KV bucket). "
            "Each answer (201) comes once the order is accepted on the events stream. "
            "orders/s counts 201 answers.",
            "",
            "| run | orders/s | requests | non-2xx | socket errors | p50 ms | p99 ms | CPU s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for k, r in enumerate(runs):
            x = r["rest"]
            cpu = ", ".join(f"{n} {v:.1f}" for n, v in sorted(x.get("cpu_s", {}).items()))
            lines.append(
                f"| {k + 1} | {x['orders_per_s']:,.0f} | {x['requests']:,} | {x['non_2xx']} | "
                f"{x['socket_errors']} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} | {cpu} |"
            )
    lines += [
        "",
        "## 3. Order-to-fill latency at fixed offered rates",
        "",
        f"Pairs of crossing limit orders on `{LAT_SYMBOL}` (a maker, then a taker of another "
        f"user at the same price; {LAT_USERS:,} makers and {LAT_USERS:,} takers), paced for "
        f"{cfg['duration_s']} s per rate from the benchmark process. Latency: publish of the "
        f"taker -> receipt of its `OrderFilled` on `evt.{LAT_SYMBOL}` (core NATS subscription in "
        "the same process, which also paces the load). *Sustained*: the fill backlog and the "
        "persister's pending events do not grow over the second half of the window and end "
        "below 0.5 s of offered load.",
        "",
        "| offered orders/s | p50 ms (median) | p99 ms (median) | sustained (runs) "
        "| runs p50 / p99 ms |",
        "| ---: | ---: | ---: | --- | --- |",
    ]
    for k, rate in enumerate(cfg["rates"]):
        m = s["latency"][str(int(rate))]
        per = ", ".join(
            f"{r['latency']['fixed'][k]['p50_ms']:.2f} / {r['latency']['fixed'][k]['p99_ms']:.2f}"
            for r in runs
        )
        lines.append(
            f"| {rate:,.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
            f"{m['sustained_runs']}/{m['runs']} | {per} |"
        )
    if s["max_sustained_orders_per_s"] is not None:
        tried = "; ".join(
            ", ".join(
                f"{x['offered_orders_per_s']:,.0f}{'' if x['sustained'] else ' (no)'}"
                for x in r["latency"].get("search", [])
            )
            for r in runs
        )
        sus = ", ".join(f"{r['latency'].get('max_sustained_orders_per_s', 0):,.0f}" for r in runs)
        lines += [
            "",
            f"Highest sustained offered rate (median): **{s['max_sustained_orders_per_s']:,.0f} "
            f"orders/s** (runs: {sus}; rates tried per run: {tried}).",
        ]
    if doc.get("notes"):
        lines += ["", "## Notes", ""] + [f"* {n}" for n in doc["notes"]]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 run, 20k orders, short windows")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--orders", type=int, default=100_000)
    p.add_argument("--duration", type=float, default=8.0, help="seconds per offered rate")
    p.add_argument("--rates", default="1000,5000,10000", help="fixed offered rates, orders/s")
    p.add_argument("--search-steps", type=int, default=2, help="bisection steps of the search")
    p.add_argument("--no-search", action="store_true", help="skip the highest-rate search")
    p.add_argument("--search-runs", type=int, default=None, help="runs with the search (all)")
    p.add_argument("--rest-duration", type=float, default=10.0, help="seconds of wrk load")
    p.add_argument("--rest-connections", type=int, default=128, help="wrk connections")
    p.add_argument("--no-api", action="store_true", help="do not start the API")
    p.add_argument("--keep", action="store_true", help="keep the temporary data directories")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--note", action="append", default=[], help="a note for the report")
    p.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the stack (e.g. batch size)"
    )
    p.add_argument("--procfile", default=None, help="another Procfile for `orrange up`")
    p.add_argument(
        "--out", default="pipeline", help="results name: bench/results/NAME.json and NAME.md"
    )
    p.add_argument("--burst-only", action="store_true", help="only part 1 (no results written)")
    p.add_argument(
        "--publish-acks",
        action="store_true",
        help="the burst's generator collects a JetStream ack per command (default: core "
        "publishes with Nats-Msg-Id, no acks; CMD's count is checked)",
    )
    p.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite NAME.md from NAME.json (with the --note lines)",
    )
    args = p.parse_args(argv)
    if args.render_only:
        doc = json.loads((RESULTS / f"{args.out}.json").read_text())
        doc["notes"] = args.note or doc.get("notes", [])
        write_results(doc, args.out)
        return 0
    if args.quick:
        args.runs, args.orders, args.duration = 1, min(args.orders, 20_000), 4.0
        args.rest_duration = 5.0
        args.search_steps = 1
    args.rates = [float(x) for x in args.rates.split(",")]
    args.env_vars = dict(kv.split("=", 1) for kv in args.env)
    api = _api_available() and not args.no_api and shutil.which("wrk") is not None
    rest_reason = ""
    if args.no_api:
        rest_reason = "disabled with --no-api"
    elif not _api_available():
        rest_reason = (
            "`orrange actor api` does not exist in this checkout, so `orrange up` runs without it"
        )
    elif shutil.which("wrk") is None:
        rest_reason = "the load generator `wrk` is not installed (apt-get install wrk)"
    # the REST users are exempt from the per-user rate limit and open-order cap, as the
    # market-maker accounts of the default configuration are
    exempt = ["lobster", "lobster-seed", "lobster-taker", *REST_USERS]
    args.env_vars.setdefault("ORRANGE_RISK_EXEMPT_USERS", ",".join(exempt))
    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    cpu_times_before = _cpu_times()
    burst = make_burst(args.orders, args.seed)
    runs = []
    search_runs = args.runs if args.search_runs is None else args.search_runs
    for i in range(args.runs):
        search = not args.no_search and i < search_runs
        runs.append(uvloop.run(one_run(i + 1, args, burst, api, search)))
    if args.burst_only:
        for key in ("matcher_orders_per_s", "persister_orders_per_s"):
            print(key, f"{_median([r['burst'][key] for r in runs]):,.0f}")
        return 0
    doc = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "nats_server": _nats_version(),
        "loadavg_before": loadavg_before,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "steal_pct": _steal_pct(cpu_times_before, _cpu_times()),
        "config": {
            "quick": args.quick,
            "runs": args.runs,
            "orders": args.orders,
            "duration_s": args.duration,
            "rates": args.rates,
            "api": api,
            "rest_duration_s": args.rest_duration,
            "rest_connections": args.rest_connections,
            "seed": args.seed,
            "publish_acks": args.publish_acks,
            "env": args.env_vars,
            "procfile": args.procfile,
        },
        "rest_not_measured": rest_reason or None,
        "summary": summarize(runs, args.rates),
        "runs": runs,
        "notes": args.note,
    }
    write_results(doc, args.out)
    print(json.dumps(doc["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
