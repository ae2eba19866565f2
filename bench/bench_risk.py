"""Throughput of the risk rules (pure) and of the risk actor on a local JetStream.

Pure cases (one Python thread, no I/O), each the median of ``--runs`` runs on a fresh
:class:`~orrange.risk.RiskEngine` over the same pre-built flow of ``--commands`` commands from
1,000 users on one market (BTC-USDT of ``config/markets.toml``, 10 % band around a last price):
80 % limit submits (about 2 % outside the band, 1 % below the minimum quantity), 20 % cancels,
one command per ms of command time.

* ``check``: :meth:`RiskEngine.check` only (open orders accumulate in flight, as without a book);
* ``apply``: :meth:`RiskEngine.apply` of the matching book events only (accepted, fill,
  canceled);
* ``check + apply``: both interleaved, as the actor sees them in steady state.

Actor cases: ``--actor-commands`` submits pre-published on ``cmd.order.BTC-USDT`` (file
storage, fresh nats-server per run), then the :class:`~orrange.engine.risk.RiskActor` is
started in-process and timed until it has handled all of them (forwarded to ``BOOK_IN`` or
rejected), with and without client order ids (each id costs a create-only write to the
``client_orders`` KV bucket, pipelined per batch).

Writes ``bench/results/risk.json`` and ``bench/results/risk.md``.

    .venv/bin/python bench/bench_risk.py [--commands 200000] [--runs 5] [--actor-commands 30000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nats
import uvloop

from orrange.engine.risk import RiskActor
from orrange.infra import NatsServer
from orrange.markets import MarketSpec, load_markets
from orrange.matching.commands import CancelOrder, Command, SubmitOrder
from orrange.matching.enums import CancelReason, OrderType, Side, TimeInForce
from orrange.matching.events import Event, OrderAccepted, OrderCanceled, OrderFilled
from orrange.risk import RiskEngine, RiskLimits
from orrange.runtime import ActorConfig, Publisher, ensure_stream
from orrange.settings import config_file
from orrange.wire.engine import BOOK_IN, CMD, REJECTS, cmd_subject

RESULTS = Path(__file__).resolve().parent / "results"
SYM = "BTC-USDT"
T0 = 1_700_000_000_000
LAST = 6_000_000  # 60,000.00 USDT in ticks of 0.01
USERS = 1000


def _market() -> MarketSpec:
    return load_markets(config_file("markets.toml"))[SYM]


def _flow(n: int, seed: int = 7) -> tuple[list[Command], list[list[Event]]]:
    """Commands and, for each, the book events it would cause (for the apply cases)."""
    rng = random.Random(seed)
    cmds: list[Command] = []
    events: list[list[Event]] = []
    open_by_user: dict[str, list[int]] = {}
    seq = 1
    oid = 1
    for i in range(n):
        ts = T0 + i
        user = f"user-{rng.randrange(USERS)}"
        mine = open_by_user.setdefault(user, [])
        if rng.random() < 0.2 and mine:
            victim = mine.pop(rng.randrange(len(mine)))
            cmds.append(CancelOrder(ts=ts, user=user, order_id=victim))
            events.append(
                [
                    OrderCanceled(
                        symbol=SYM,
                        seq=seq,
                        ts=ts,
                        order_id=victim,
                        user=user,
                        reason=CancelReason.USER,
                        canceled_qty=100,
                        leaves=0,
                    )
                ]
            )
            seq += 1
            continue
        r = rng.random()
        price = LAST + rng.randrange(-300_000, 300_000)  # within 5 %
        if r < 0.02:
            price = LAST * 2  # outside the 10 % band
        qty = 0 if r > 0.99 else rng.randrange(100, 10_000)  # lots of 0.00001 BTC
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        cmds.append(
            SubmitOrder(
                ts=ts,
                user=user,
                side=side,
                quantity=qty,
                price=price,
                client_order_id=f"c{i}",
            )
        )
        evs: list[Event] = [
            OrderAccepted(
                symbol=SYM,
                seq=seq,
                ts=ts,
                order_id=oid,
                user=user,
                client_order_id=f"c{i}",
                side=side,
                order_type=OrderType.LIMIT,
                tif=TimeInForce.GTC,
                price=price,
                trigger_price=None,
                quantity=max(qty, 1),
                pending=False,
            )
        ]
        seq += 1
        if rng.random() < 0.3:
            evs.append(
                OrderFilled(
                    symbol=SYM,
                    seq=seq,
                    ts=ts,
                    maker_order_id=oid - 1,
                    taker_order_id=oid,
                    maker_user="mm",
                    taker_user=user,
                    price=price,
                    quantity=max(qty, 1),
                    aggressor=side,
                    maker_fee=0,
                    taker_fee=0,
                    maker_leaves=0,
                    taker_leaves=0,
                    payment_methods=(),
                )
            )
            seq += 1
        else:
            mine.append(oid)
        oid += 1
        events.append(evs)
    return cmds, events


def _pure(kind: str, spec: MarketSpec, cmds: list[Command], events: list[list[Event]]) -> float:
    risk = RiskEngine({SYM: spec}, RiskLimits(max_open_orders=1_000_000))
    risk.last_price[SYM] = LAST
    check, apply = risk.check, risk.apply
    if kind == "check":
        t0 = time.perf_counter()
        for c in cmds:
            check(SYM, c)
        return len(cmds) / (time.perf_counter() - t0)
    flat = [e for evs in events for e in evs]
    if kind == "apply":
        t0 = time.perf_counter()
        for e in flat:
            apply(e)
        return len(flat) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for c, evs in zip(cmds, events):
        check(SYM, c)
        for e in evs:
            apply(e)
    return len(cmds) / (time.perf_counter() - t0)


async def _actor_run(url: str, spec: MarketSpec, cmds: Sequence[Command], with_ids: bool) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_stream(js, CMD)
    pub = Publisher(nc)
    for i, c in enumerate(cmds):
        if not with_ids and isinstance(c, SubmitOrder):
            c = SubmitOrder(ts=c.ts, user=c.user, side=c.side, quantity=c.quantity, price=c.price)
        await pub.submit(cmd_subject(SYM), c, msg_id=f"b{i}")
        if i % 1000 == 999:
            await pub.flush()
    await pub.flush()
    actor = RiskActor(
        ActorConfig(name="risk", nats_url=url, metrics_port=None),
        {SYM: spec},
        limits=RiskLimits(max_open_orders=1_000_000, rate_per_s=10_000, burst=10_000),
    )
    n = len(cmds)
    t0 = time.perf_counter()
    await actor.start()
    while actor.messages_in < n:  # noqa: ASYNC110 -- Actor.messages_in is a bare counter (no event)
        await asyncio.sleep(0.005)
    rate = n / (time.perf_counter() - t0)
    await actor.stop()
    out = (await js.stream_info(BOOK_IN.name)).state.messages + (
        await js.stream_info(REJECTS.name)
    ).state.messages
    await nc.close()
    if out != n:
        raise RuntimeError(f"risk answered {out} of {n} commands")
    return rate


def _actor(spec: MarketSpec, cmds: Sequence[Command], with_ids: bool) -> float:
    with tempfile.TemporaryDirectory() as d, NatsServer(d, log_file=Path(d) / "log") as srv:
        return uvloop.run(_actor_run(srv.url, spec, cmds, with_ids))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--commands", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--actor-commands", type=int, default=30_000)
    ap.add_argument("--actor-runs", type=int, default=3)
    args = ap.parse_args(argv)
    spec = _market()
    cmds, events = _flow(args.commands)
    results: list[dict[str, Any]] = []
    for kind, unit in (("check", "commands"), ("apply", "events"), ("check + apply", "commands")):
        rates = [_pure(kind, spec, cmds, events) for _ in range(args.runs)]
        med = statistics.median(rates)
        count = len(cmds) if unit == "commands" else sum(len(e) for e in events)
        results.append(
            {
                "case": f"pure {kind}",
                "items": count,
                "unit": unit,
                "per_s_median": round(med),
                "per_s_runs": [round(r) for r in rates],
            }
        )
        print(f"pure {kind}: {med:,.0f} {unit}/s (runs: {', '.join(f'{r:,.0f}' for r in rates)})")
    submits = [c for c in cmds if isinstance(c, SubmitOrder)][: args.actor_commands]
    for with_ids in (True, False):
        name = "actor, submits " + (
            "with client order ids (KV claims)" if with_ids else "without client order ids"
        )
        rates = [_actor(spec, submits, with_ids) for _ in range(args.actor_runs)]
        med = statistics.median(rates)
        results.append(
            {
                "case": name,
                "items": len(submits),
                "unit": "commands",
                "per_s_median": round(med),
                "per_s_runs": [round(r) for r in rates],
            }
        )
        print(f"{name}: {med:,.0f} commands/s (runs: {', '.join(f'{r:,.0f}' for r in rates)})")
    report = {
        "benchmark": "risk",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "runs": args.runs,
        "actor_runs": args.actor_runs,
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "risk.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Risk throughput",
        "",
        f"{report['date_utc']}, Python {report['python']}, {report['cpus']} CPUs, load average "
        f"at the end {report['load_avg']}. Pure cases: median of {args.runs} runs of "
        ":class:`RiskEngine` over one synthetic flow (1,000 users, BTC-USDT, 80 % limit submits "
        "with 2 % outside the band and 1 % with a zero quantity, 20 % cancels). Actor cases: "
        f"median of {args.actor_runs} runs, each on a fresh nats-server (file storage), "
        "pre-published submits, actor started in-process and timed until every command was "
        "forwarded or rejected. Produced by `bench/bench_risk.py`.",
        "",
        "| case | items | per second (median) | runs |",
        "| --- | ---: | ---: | --- |",
    ]
    for r in results:
        runs_txt = ", ".join(f"{x:,}" for x in r["per_s_runs"])
        lines.append(
            f"| {r['case']} | {r['items']:,} {r['unit']} | {r['per_s_median']:,} | {runs_txt} |"
        )
    (RESULTS / "risk.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
