"""The floor of REST throughput on this machine: a bare Litestar POST handler.

The same stack as ``orrange api`` (Litestar on uvicorn with uvloop and httptools, msgspec
body decoding), but the handler only decodes the order body and answers 201: no JWT, no NATS,
no engine. ``wrk`` sends ``POST /api/v1/orders`` with the order body of
``bench_pipeline.py``'s REST part (one thread, 128 keep-alive connections). Whatever the
engine does per order comes on top of this figure, so it bounds what ``POST /api/v1/orders``
can reach here.

Writes ``bench/results/rest_floor.json`` and ``bench/results/rest_floor.md``.

    .venv/bin/python bench/bench_rest_floor.py [--runs 5] [--duration 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

APP = """
import msgspec
from litestar import Litestar, post


class OrderIn(msgspec.Struct, forbid_unknown_fields=True):
    symbol: str
    side: str
    type: str
    quantity: str
    price: str | None = None


class OrderOut(msgspec.Struct):
    order_id: int
    symbol: str
    status: str


@post("/api/v1/orders", status_code=201)
async def submit(data: OrderIn) -> OrderOut:
    return OrderOut(1, data.symbol, "new")


app = Litestar([submit], openapi_config=None)
"""

LUA = """
wrk.method = "POST"
wrk.body = '{"symbol":"AMZN-USD","side":"buy","type":"limit","quantity":"1","price":"50.00"}'
wrk.headers["Content-Type"] = "application/json"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(tmp: Path, duration_s: int, connections: int) -> dict[str, float]:
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app:app",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=tmp,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("uvicorn did not start") from None
                time.sleep(0.1)
        cpu0 = _cpu_s(server.pid)
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{duration_s}s",
                "--latency",
                "-s",
                str(tmp / "post.lua"),
                f"http://127.0.0.1:{port}/api/v1/orders",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        cpu = _cpu_s(server.pid) - cpu0
    finally:
        server.terminate()
        server.wait(30)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": rps,
        "requests": requests,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "server_cpu_s": round(cpu, 2),
        "server_cpu_us_per_request": round(cpu / requests * 1e6, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--duration", type=int, default=5, help="seconds of wrk load per run")
    p.add_argument("--connections", type=int, default=128)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="orrange-rest-floor-"))
    (tmp / "app.py").write_text(APP)
    (tmp / "post.lua").write_text(LUA)
    load_before = os.getloadavg()
    runs = [one_run(tmp, args.duration, args.connections) for _ in range(args.runs)]
    for r in runs:
        print(r, flush=True)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "connections": args.connections,
        "duration_s": args.duration,
        "runs": runs,
        "median": med,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rest_floor.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        "# REST floor: a bare Litestar POST handler (bench/bench_rest_floor.py)",
        "",
        f"{doc['when']}, Python {doc['python']}, {doc['cpus']} CPUs (shared; load average "
        f"{doc['load_before']} before, {doc['load_after']} after). Litestar on uvicorn (uvloop, "
        "httptools), the handler decodes the order body with msgspec and answers 201; no JWT, "
        f"NATS or engine. `wrk -t1 -c{args.connections}`, {args.duration} s per run, median of "
        f"{len(runs)} runs.",
        "",
        "| figure | median | runs |",
        "| --- | ---: | --- |",
        f"| requests/s | {med['requests_per_s']:,.0f} | "
        + ", ".join(f"{r['requests_per_s']:,.0f}" for r in runs)
        + " |",
        f"| server CPU µs per request | {med['server_cpu_us_per_request']:.0f} | "
        + ", ".join(f"{r['server_cpu_us_per_request']:.0f}" for r in runs)
        + " |",
        "",
        "Everything `POST /api/v1/orders` does for an order (JWT, validation, the NATS publish "
        "and its ack, waiting for the engine's answer, the hub following every event) comes on "
        "top of this, and the engine's processes and `wrk` share the same 2 cores.",
    ]
    (RESULTS / "rest_floor.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
