"""The persister's LEDGER input on a real nats-server and PostgreSQL: risk's entries and
withdrawal decisions end up in ``ledger_entries``, ``balances`` and ``withdrawals`` exactly
once (redelivery and a dropped database session change nothing), bad messages are
dead-lettered."""

from __future__ import annotations

import asyncpg
import msgspec
import nats
from kit.wait import wait_for
from nats.js import JetStreamContext

from orrange.engine.persister import Persister
from orrange.ledger import Entry, EntryKind, Posting
from orrange.runtime import ActorConfig, Publisher, ensure_stream
from orrange.store.ledger import withdrawal
from orrange.wire.dlq import DLQ_STREAM
from orrange.wire.funds import (
    LEDGER,
    LEDGER_WITHDRAWAL_SUBJECT,
    PERSISTER_LEDGER_DURABLE,
    WithdrawalDecision,
    ledger_msg_id,
    ledger_subject,
    withdrawal_decision_msg_id,
)

E18 = 10**18
T0 = 1_700_000_000_000


def _persister(nats_url: str, database_url: str) -> Persister:
    config = ActorConfig(name="persister", nats_url=nats_url, metrics_port=None)
    return Persister(config, database_url, batch_size=50)


async def _drained(js: JetStreamContext) -> bool:
    info = await js.consumer_info(LEDGER.name, PERSISTER_LEDGER_DURABLE)
    return not (info.num_pending or info.num_ack_pending)


def _batches(n: int) -> list[list[Entry]]:
    """What risk publishes for ``n`` inputs of ``cmd``: per input a deposit-like credit from
    ``@vault`` and a hold of part of it (two entries, n = 0 and 1)."""
    out = []
    for seq in range(1, n + 1):
        user = f"u{seq % 7}"
        x = seq * E18 + 1
        credit = (Posting("@vault", "USDT", -x, 0), Posting(user, "USDT", x, 0))
        hold = (Posting(user, "USDT", -(x // 3), x // 3),)
        out.append(
            [
                Entry(
                    id=f"cmd:{seq}:{i}",
                    kind=kind,
                    source="cmd",
                    seq=seq,
                    n=i,
                    ts=T0 + seq,
                    ref=f"BTC-USDT:{seq}" if kind == EntryKind.HOLD else "",
                    postings=postings,
                )
                for i, (kind, postings) in enumerate(
                    ((EntryKind.DEPOSIT, credit), (EntryKind.HOLD, hold))
                )
            ]
        )
    return out


def _expected(batches: list[list[Entry]]) -> dict[tuple[str, str], tuple[int, int]]:
    acc: dict[tuple[str, str], tuple[int, int]] = {}
    for batch in batches:
        for e in batch:
            for p in e.postings:
                a, h = acc.get((p.account, p.asset), (0, 0))
                acc[(p.account, p.asset)] = (a + p.available, h + p.held)
    return acc


async def _stored(conn: asyncpg.Connection) -> dict[tuple[str, str], tuple[int, int]]:
    rows = await conn.fetch("SELECT account, asset, available, held FROM balances")
    return {(r["account"], r["asset"]): (int(r["available"]), int(r["held"])) for r in rows}


DECISION = WithdrawalDecision(
    withdrawal_id="0x" + "ab" * 32,
    user="u1",
    asset="USDT",
    amount=E18,
    to="0x" + "11" * 20,
    expiry=1_700_003_600,
    status="authorized",
    ts=T0,
    signature="0x" + "22" * 65,
)


async def _ledger_stream(nats_url: str) -> tuple[nats.NATS, JetStreamContext, Publisher]:
    """A connection, its JetStream context with ``LEDGER`` provisioned, a publisher."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_stream(js, LEDGER)
    return nc, js, Publisher(nc)


async def _publish(pub: Publisher, batches: list[list[Entry]], prefix: str = "") -> None:
    for batch in batches:
        await pub.submit(
            ledger_subject("cmd"),
            msgspec.json.encode(batch),
            msg_id=prefix + ledger_msg_id(batch[0].id),
        )
    await pub.flush()


async def test_ledger_messages_are_stored_exactly_once(nats_url: str, database_url: str) -> None:
    nc, js, pub = await _ledger_stream(nats_url)
    batches = _batches(300)
    await _publish(pub, batches[:150])
    await pub.submit(
        LEDGER_WITHDRAWAL_SUBJECT,
        DECISION,
        msg_id=withdrawal_decision_msg_id(DECISION.withdrawal_id),
    )
    await pub.flush()
    persister = _persister(nats_url, database_url)
    admin = await asyncpg.connect(database_url)
    await persister.start()
    try:
        await wait_for(lambda: _drained(js), "first half stored")
        # the server drops the persister's session: the next batches wait and retry
        writer = persister._writer
        assert writer is not None
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", writer.conn.get_server_pid())
        await _publish(pub, batches[150:])
        await wait_for(lambda: _drained(js), "second half stored")
        assert persister._writer is not writer
    finally:
        await persister.stop()
    try:
        assert persister.totals["entries"] == 600 and persister.totals["decisions"] == 1
        assert await _stored(admin) == _expected(batches)
        w = await withdrawal(admin, "u1", DECISION.withdrawal_id)
        assert w is not None and w.status == "authorized" and w.signature == DECISION.signature

        # everything again: the consumer reset and the batches a second time in the stream
        await js.delete_consumer(LEDGER.name, PERSISTER_LEDGER_DURABLE)
        await _publish(pub, batches, prefix="again:")
        second = _persister(nats_url, database_url)
        await second.start()
        try:
            await wait_for(lambda: _drained(js), "redelivery handled")
        finally:
            await second.stop()
        assert second.messages_in == 2 * 300 + 1
        assert (second.totals["entries"], second.totals["postings"]) == (0, 0)
        assert await _stored(admin) == _expected(batches)
        assert await admin.fetchval("SELECT count(*) FROM ledger_entries") == 600
        assert (await js.stream_info(DLQ_STREAM)).state.messages == 0
    finally:
        await admin.close()
        await nc.close()


async def test_bad_ledger_messages_are_dead_lettered(nats_url: str, database_url: str) -> None:
    nc, js, pub = await _ledger_stream(nats_url)
    good = _batches(20)
    wrong_source = msgspec.json.encode(good[0])  # entries of cmd on ledger.funds
    bad: list[tuple[str, bytes]] = [
        (ledger_subject("funds"), wrong_source),
        (ledger_subject("cmd"), msgspec.json.encode(DECISION)),  # a decision off its subject
        (LEDGER_WITHDRAWAL_SUBJECT, msgspec.json.encode(good[1])),  # entries on withdrawal
        (ledger_subject("cmd"), b"[{]"),
    ]
    for i, (subject, data) in enumerate(bad):
        await pub.submit(subject, data, msg_id=f"bad:{i}")
    await pub.flush()
    await _publish(pub, good)
    persister = _persister(nats_url, database_url)
    await persister.start()
    try:
        await wait_for(lambda: _drained(js), "ledger consumer drained")
    finally:
        await persister.stop()
    info = await js.stream_info(DLQ_STREAM)
    assert info.state.messages == len(bad)
    dead = [await js.get_msg(DLQ_STREAM, s) for s in range(1, len(bad) + 1)]
    assert sorted(m.data or b"" for m in dead) == sorted(d for _, d in bad)
    conn = await asyncpg.connect(database_url)
    try:
        assert await _stored(conn) == _expected(good)
        assert await conn.fetchval("SELECT count(*) FROM withdrawals") == 0
    finally:
        await conn.close()
        await nc.close()
