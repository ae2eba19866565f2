"""The floor of REST throughput on this machine: a bare POST handler, three ways.

The same stack as ``orrange actor api`` (uvicorn with uvloop and httptools, msgspec body decoding),
but the handler only decodes the order body and answers 201: no JWT, no NATS, no engine.
``wrk`` sends the order body of ``bench_pipeline.py``'s REST part (one thread, 128 keep-alive
connections) to each variant in turn, run after run:

* ``handler``: a Litestar handler taking ``data: OrderIn`` and returning a struct (Litestar's
  signature model, dependency resolution and response object);
* ``route_middleware``: the same Litestar route with a route middleware that reads and decodes
  the body itself and sends the answer's bytes, as ``POST /api/v1/orders``'s order entry does
  (``_order_entry`` in ``orrange/api/_orders.py``);
* ``raw_asgi``: a plain ASGI callable on uvicorn, no Litestar at all.

Whatever the engine does per order comes on top of these figures, so they bound what
``POST /api/v1/orders`` can reach here.

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


_decoder = msgspec.json.Decoder(OrderIn)
_encoder = msgspec.json.Encoder()


def _answer(body: bytes) -> bytes:
    return _encoder.encode(OrderOut(1, _decoder.decode(body).symbol, "new"))


async def _read(receive) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _send(send, out: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(out))]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": out})


def entry(app):
    async def middleware(scope, receive, send):
        await _send(send, _answer(await _read(receive)))

    return middleware


@post("/api/v1/orders-mw", status_code=201, middleware=[entry])
async def submit_mw(data: OrderIn) -> OrderOut:
    return OrderOut(1, data.symbol, "new")


app = Litestar([submit, submit_mw], openapi_config=None)


async def raw(scope, receive, send):
    if scope["type"] != "http":
        return
    await _send(send, _answer(await _read(receive)))
"""

#: variant -> (uvicorn app, path)
VARIANTS = {
    "handler": ("app:app", "/api/v1/orders"),
    "route_middleware": ("app:app", "/api/v1/orders-mw"),
    "raw_asgi": ("app:raw", "/api/v1/orders"),
}

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


def one_run(tmp: Path, variant: str, duration_s: int, connections: int) -> dict[str, float]:
    target, path = VARIANTS[variant]
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            target,
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
                f"http://127.0.0.1:{port}{path}",
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
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for _ in range(args.runs):  # the variants take turns, so a machine state hits them alike
        for v in VARIANTS:
            runs[v].append(one_run(tmp, v, args.duration, args.connections))
            print(v, runs[v][-1], flush=True)
    med = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for v, rs in runs.items()}
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
        "# REST floor: a bare POST handler, three ways (bench/bench_rest_floor.py)",
        "",
        f"{doc['when']}, Python {doc['python']}, {doc['cpus']} CPUs (shared; load average "
        f"{doc['load_before']} before, {doc['load_after']} after). uvicorn (uvloop, httptools); "
        "each variant decodes the order body with msgspec and answers 201; no JWT, NATS or "
        f"engine. `wrk -t1 -c{args.connections}`, {args.duration} s per run, the variants taking "
        f"turns, median of {args.runs} runs each. `handler`: a Litestar handler (signature "
        "model, dependency resolution, response object); `route_middleware`: the Litestar "
        "route answered by its route middleware, as `POST /api/v1/orders` is; `raw_asgi`: no "
        "Litestar.",
        "",
        "| variant | requests/s (median) | runs | server CPU µs per request (median) | runs |",
        "| --- | ---: | --- | ---: | --- |",
        *(
            f"| {v} | {med[v]['requests_per_s']:,.0f} | "
            + ", ".join(f"{r['requests_per_s']:,.0f}" for r in rs)
            + f" | {med[v]['server_cpu_us_per_request']:.0f} | "
            + ", ".join(f"{r['server_cpu_us_per_request']:.0f}" for r in rs)
            + " |"
            for v, rs in runs.items()
        ),
        "",
        "Everything `POST /api/v1/orders` does for an order (JWT, validation, the NATS publish "
        "and its ack, waiting for the engine's answer, the hub following every event) comes on "
        "top of this, and the engine's processes and `wrk` share the same 2 cores.",
    ]
    (RESULTS / "rest_floor.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
