"""The persister actor on a real nats-server and a real PostgreSQL: a real book's events
published on ``evt.<SYM>`` end up in the tables exactly, redelivery changes nothing, bad input
is dead-lettered without stopping the actor."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import msgspec
import nats
import pytest
from kit.store_expect import SYMBOL, BookRun, book_run, check_matches_book, dump
from kit.wait import wait_for
from nats.js import JetStreamContext

from actors.persister import main
from orrange.engine.persister import Persister
from orrange.matching.enums import OrderType, RejectReason, Side, TimeInForce
from orrange.matching.events import OrderAccepted, OrderRejected
from orrange.runtime import ActorConfig, Publisher, ensure_stream
from orrange.wire.dlq import DLQ_STREAM
from orrange.wire.engine import (
    EVENTS,
    PERSISTER_EVENTS_DURABLE,
    PERSISTER_REJECTS_DURABLE,
    REJECTS,
    events_subject,
    rejects_subject,
)

WAIT_S = 60.0
ROOT = Path(__file__).resolve().parents[2]


async def _drained(js: JetStreamContext) -> bool:
    for stream, durable in (
        (EVENTS.name, PERSISTER_EVENTS_DURABLE),
        (REJECTS.name, PERSISTER_REJECTS_DURABLE),
    ):
        info = await js.consumer_info(stream, durable)
        if info.num_pending or info.num_ack_pending:
            return False
    return True


def _persister(nats_url: str, database_url: str) -> Persister:
    config = ActorConfig(name="persister", nats_url=nats_url, metrics_port=None)
    return Persister(config, database_url, batch_size=500)


async def _run_until_drained(persister: Persister, js: JetStreamContext) -> None:
    await persister.start()
    try:
        await wait_for(lambda: _drained(js), "persister consumers drained")
    finally:
        await persister.stop()


async def _publish(nc: nats.NATS, run: BookRun, id_prefix: str = "") -> None:
    pub = Publisher(nc)
    for i, (e, payload) in enumerate(run.pairs()):
        await pub.submit(events_subject(e.symbol), payload, msg_id=f"{id_prefix}{e.symbol}:{e.seq}")
        if i % 1000 == 999:
            await pub.flush()
    await pub.flush()


def _risk_rejection(i: int) -> OrderRejected:
    return OrderRejected(
        SYMBOL,
        0,
        1_700_000_000_000 + i,
        0,
        f"u{i}",
        f"c{i}",
        "submit",
        RejectReason.RATE_LIMITED,
        "",
    )


@pytest.fixture(scope="module")
def run() -> BookRun:
    return book_run(3000, seed=11)


async def test_book_events_end_up_in_postgres_once(
    nats_url: str, database_url: str, run: BookRun
) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for spec in (EVENTS, REJECTS):
        await ensure_stream(js, spec)
    await _publish(nc, run)
    pub = Publisher(nc)
    for i in range(20):
        await pub.submit(rejects_subject(SYMBOL), _risk_rejection(i), msg_id=f"rej:u{i}:c{i}")
    await pub.flush()

    first = _persister(nats_url, database_url)
    await _run_until_drained(first, js)
    assert first.totals["events"] > 0 and first.totals["rejections"] > 0
    conn = await asyncpg.connect(database_url)
    try:
        await check_matches_book(conn, run)
        risk = await conn.fetch(
            "SELECT id, user_id, client_order_id FROM rejections WHERE source = 'risk' ORDER BY ts"
        )
        assert [tuple(r.values()) for r in risk] == [
            (f"rej:u{i}:c{i}", f"u{i}", f"c{i}") for i in range(20)
        ]
        before = await dump(conn)

        # Redelivery: every message again (consumers reset, as after losing their state), and
        # the events a second time in the stream under other message ids.
        await js.delete_consumer(EVENTS.name, PERSISTER_EVENTS_DURABLE)
        await js.delete_consumer(REJECTS.name, PERSISTER_REJECTS_DURABLE)
        await _publish(nc, run, id_prefix="again:")
        second = _persister(nats_url, database_url)
        await _run_until_drained(second, js)
        assert second.messages_in == 2 * len(run.events) + 20
        assert {k: v for k, v in second.totals.items() if v} == {}
        assert await dump(conn) == before
    finally:
        await conn.close()
        await nc.close()


async def test_bad_input_is_dead_lettered_and_the_rest_stored(
    nats_url: str, database_url: str
) -> None:
    run = book_run(400, seed=5)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for spec in (EVENTS, REJECTS):
        await ensure_stream(js, spec)
    pub = Publisher(nc)
    await pub.submit(events_subject(SYMBOL), b"not json", msg_id="bad:1")
    wrong_symbol = run.pairs()[0][1]
    await pub.submit(events_subject("OTHER-USD"), wrong_symbol, msg_id="bad:2")
    too_big = OrderAccepted(
        "BAD-USD",
        1,
        2**63,
        1,
        "u",
        "",
        Side.BUY,
        OrderType.LIMIT,
        TimeInForce.GTC,
        1,
        None,
        1,
        False,
    )
    await pub.submit(events_subject("BAD-USD"), too_big, msg_id="bad:3")
    await pub.submit(rejects_subject(SYMBOL), b"{}", msg_id="bad:4")
    seq_zero = _risk_rejection(0)  # a risk rejection (seq 0) on the events subject
    await pub.submit(events_subject(SYMBOL), seq_zero, msg_id="bad:5")
    await pub.flush()
    await _publish(nc, run)

    persister = _persister(nats_url, database_url)
    await _run_until_drained(persister, js)
    info = await js.stream_info(DLQ_STREAM)
    assert info.state.messages == 5
    dead = [await js.get_msg(DLQ_STREAM, s) for s in range(1, 6)]
    assert {m.subject for m in dead} == {"dlq.persister"}
    assert sorted(m.data or b"" for m in dead) == sorted(
        [
            b"not json",
            wrong_symbol,
            msgspec.json.encode(too_big),
            b"{}",
            msgspec.json.encode(seq_zero),
        ]
    )
    conn = await asyncpg.connect(database_url)
    try:
        await check_matches_book(conn, run)
    finally:
        await conn.close()
        await nc.close()


async def test_a_lost_database_connection_is_retried_not_dead_lettered(
    nats_url: str, database_url: str
) -> None:
    run = book_run(1200, seed=9)
    pairs = run.pairs()
    half = len(pairs) // 2
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for spec in (EVENTS, REJECTS):
        await ensure_stream(js, spec)
    pub = Publisher(nc)
    for e, payload in pairs[:half]:
        await pub.submit(events_subject(e.symbol), payload, msg_id=f"{e.symbol}:{e.seq}")
    await pub.flush()
    persister = _persister(nats_url, database_url)
    await persister.start()
    admin = await asyncpg.connect(database_url)
    try:
        await wait_for(lambda: _drained(js), "first half stored")
        writer = persister._writer
        assert writer is not None
        # the server drops the persister's session (as on a PostgreSQL restart)
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", writer.conn.get_server_pid())
        for e, payload in pairs[half:]:
            await pub.submit(events_subject(e.symbol), payload, msg_id=f"{e.symbol}:{e.seq}")
        await pub.flush()
        await wait_for(lambda: _drained(js), "second half stored")
        assert persister._writer is not writer
        await check_matches_book(admin, run)
        assert (await js.stream_info(DLQ_STREAM)).state.messages == 0
    finally:
        await persister.stop()
        await admin.close()
        await nc.close()


async def test_start_waits_for_the_database_to_exist(nats_url: str, database_url: str) -> None:
    name = "t_late_" + uuid.uuid4().hex[:12]
    late_url = database_url.rsplit("/", 1)[0] + "/" + name
    admin = await asyncpg.connect(database_url)
    persister = _persister(nats_url, late_url)
    starting = asyncio.create_task(persister.start())
    try:
        await asyncio.sleep(0.3)  # let it find no database (not an assertion: it may be slower)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await starting
        run = book_run(200, seed=2)
        nc = await nats.connect(nats_url)
        await _publish(nc, run)
        await nc.close()
        await wait_for(lambda: _drained(persister.js), "events stored")
        await persister.stop()
        conn = await asyncpg.connect(late_url)
        try:
            await check_matches_book(conn, run)
        finally:
            await conn.close()
    finally:
        await persister.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _spawn(nats_url: str, database_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ORRANGE_RUNTIME_ACK_WAIT_MS": "1000",  # redeliver the killed process's batch soon
        "ORRANGE_LOG_LEVEL": "WARNING",
    }
    args = ["--database-url", database_url, "--nats-url", nats_url, "--metrics-port", "-1"]
    return subprocess.Popen(
        [sys.executable, "-m", "actors.persister", *args],
        cwd=ROOT,
        env=env,
    )


async def test_kill_9_mid_run_then_restart_stores_everything_once(
    nats_url: str, database_url: str
) -> None:
    run = book_run(8000, seed=13)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for spec in (EVENTS, REJECTS):
        await ensure_stream(js, spec)
    await _publish(nc, run)
    conn = await asyncpg.connect(database_url)
    proc = _spawn(nats_url, database_url)
    try:

        async def some_stored() -> bool:
            exists = await conn.fetchval("SELECT to_regclass('order_events') IS NOT NULL")
            return bool(exists) and bool(await conn.fetchval("SELECT count(*) FROM order_events"))

        await wait_for(some_stored, "a first batch stored")
        proc.kill()
        proc.wait()
        proc = _spawn(nats_url, database_url)
        await wait_for(lambda: _drained(js), "everything stored after the restart")
        await check_matches_book(conn, run)
        proc.terminate()
        assert proc.wait(timeout=WAIT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await conn.close()
        await nc.close()


def test_main_refuses_a_bad_batch_size() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--batch-size", "0"])
    assert exc.value.code == 2
