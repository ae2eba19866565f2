"""Throughput of the actor runtime on a local JetStream (embedded nats-server, file storage).

Measures, each as the median of ``--runs`` runs on a fresh server:

* producer publishing: one awaited round trip per message vs :class:`Publisher`'s pipelined
  ``submit``/``flush`` (batches of 1000);
* a pass-through actor (fetch a batch, decode, publish one output per input with
  ``Nats-Msg-Id``, wait for every publish ack, ack the inputs) over ``--messages`` pre-published
  inputs, for several batch sizes and both ack policies.

Writes ``bench/results/runtime.json`` and ``bench/results/runtime.md``.

    .venv/bin/python bench/bench_runtime.py [--messages 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import nats
import uvloop

from orrange.infra import NatsServer, nats_server_binary
from orrange.runtime import Actor, ActorConfig, Inbound, Input, Outbox, Publisher, ensure_stream
from orrange.wire.spec import ConsumerSpec, StreamSpec

RESULTS = Path(__file__).resolve().parent / "results"
IN = StreamSpec(name="IN", subjects=("in.>",))
OUT = StreamSpec(name="OUT", subjects=("out.>",))


class Order(msgspec.Struct, frozen=True):
    user: str
    side: str
    price: int
    quantity: int
    client_order_id: str


class Accepted(msgspec.Struct, frozen=True):
    seq: int
    user: str
    price: int
    quantity: int


class PassThrough(Actor):
    def __init__(self, config: ActorConfig, ack_policy: str) -> None:
        super().__init__(config)
        self.ack_policy = ack_policy

    def streams(self) -> Sequence[StreamSpec]:
        return [IN, OUT]

    def inputs(self) -> Sequence[Input[Any]]:
        spec = ConsumerSpec(stream="IN", durable="bench", ack_policy=self.ack_policy)  # type: ignore[arg-type]
        return [Input(spec, Order, self.handle)]

    async def handle(self, batch: Sequence[Inbound[Order]], out: Outbox) -> None:
        for m in batch:
            o = m.data
            out.publish(
                "out.AMZN",
                Accepted(m.stream_seq, o.user, o.price, o.quantity),
                msg_id=f"IN:{m.stream_seq}",
            )


def _order(i: int) -> Order:
    return Order(f"user-{i % 100}", "buy" if i % 2 else "sell", 10_000 + i % 50, 1 + i % 9, f"c{i}")


async def _publish_pipelined(url: str, n: int) -> tuple[float, float]:
    nc = await nats.connect(url)
    await ensure_stream(nc.jetstream(), IN)
    pub = Publisher(nc)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        await pub.submit("in.AMZN", _order(i), msg_id=f"o{i}")
        if i % 1000 == 999:
            await pub.flush()
    await pub.flush()
    rates = n / (time.perf_counter() - t0), n / (time.process_time() - c0)
    await nc.close()
    return rates


async def _publish_round_trips(url: str, n: int) -> tuple[float, float]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_stream(js, IN)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        await js.publish(
            "in.AMZN", msgspec.json.encode(_order(i)), headers={"Nats-Msg-Id": f"r{i}"}
        )
    rates = n / (time.perf_counter() - t0), n / (time.process_time() - c0)
    await nc.close()
    return rates


async def _pass_through(url: str, n: int, batch: int, ack_policy: str) -> tuple[float, float]:
    await _publish_pipelined(url, n)
    actor = PassThrough(
        ActorConfig(name="bench", nats_url=url, batch_size=batch, metrics_port=None),
        ack_policy,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    await actor.start()
    while actor.messages_in < n:  # noqa: ASYNC110 -- Actor.messages_in is a bare counter (no event)
        await asyncio.sleep(0.01)
    rates = n / (time.perf_counter() - t0), n / (time.process_time() - c0)
    await actor.stop()
    assert actor.messages_out == n
    return rates


def _one(kind: str, n: int, **kw: Any) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d, NatsServer(d, log_file=Path(d) / "log") as srv:
        if kind == "publish_round_trips":
            return uvloop.run(_publish_round_trips(srv.url, n))
        if kind == "publish_pipelined":
            return uvloop.run(_publish_pipelined(srv.url, n))
        return uvloop.run(_pass_through(srv.url, n, **kw))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    n, runs = args.messages, args.runs
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("publish, one round trip per message", "publish_round_trips", {}, min(n, 20_000)),
        ("publish, pipelined (Publisher, flush per 1000)", "publish_pipelined", {}, n),
    ]
    for batch in (256, 500, 1000):
        cases.append(
            (
                f"pass-through actor, batch {batch}, ack explicit",
                "pass",
                {"batch": batch, "ack_policy": "explicit"},
                n,
            )
        )
    cases.append(
        ("pass-through actor, batch 500, ack all", "pass", {"batch": 500, "ack_policy": "all"}, n)
    )
    results = []
    for name, kind, kw, count in cases:
        both = [_one(kind, count, **kw) for _ in range(runs)]
        rates = [r for r, _ in both]
        med = statistics.median(rates)
        cpu = statistics.median(c for _, c in both)
        results.append(
            {
                "case": name,
                "messages": count,
                "msgs_per_s_median": round(med),
                "msgs_per_s_runs": [round(r) for r in rates],
                "msgs_per_cpu_s_median": round(cpu),
                **kw,
            }
        )
        print(
            f"{name}: {med:,.0f} msg/s, {cpu:,.0f} msg per CPU-s "
            f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})"
        )
    version = subprocess.run(
        [str(nats_server_binary()), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    report = {
        "benchmark": "runtime",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "nats_server": version,
        "storage": "file",
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "runs": runs,
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "runtime.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Actor runtime throughput",
        "",
        f"{report['date_utc']}, Python {report['python']}, {report['cpus']} CPUs, "
        f"{version}, JetStream file storage, median of {runs} runs, each on a fresh server. "
        "Pass-through: fetch batch -> decode -> publish one output per input with Nats-Msg-Id "
        "-> wait for all publish acks -> ack inputs. msg per CPU-s divides by the CPU time of "
        "the Python process alone (nats-server excluded), which other load on the machine "
        f"disturbs less than wall time (load average at the end: {report['load_avg']}). "
        "Produced by `bench/bench_runtime.py`.",
        "",
        "| case | messages | msg/s (median) | msg per CPU-s (median) | runs (msg/s) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        runs_txt = ", ".join(f"{x:,}" for x in r["msgs_per_s_runs"])
        lines.append(
            f"| {r['case']} | {r['messages']:,} | {r['msgs_per_s_median']:,} "
            f"| {r['msgs_per_cpu_s_median']:,} | {runs_txt} |"
        )
    (RESULTS / "runtime.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
