"""The persister actor: book events, risk rejections and the ledger into PostgreSQL.

Inputs (durable pull consumers, batches of ``batch_size``):

* ``EVENTS`` (``evt.>``), durable ``persister``: every book event (a message holds the events
  of one matcher batch, see :mod:`orrange.wire.engine`);
* ``REJECTS`` (``rej.>``), durable ``persister-rejects``: risk's rejections;
* ``LEDGER`` (``ledger.>``), durable ``persister-ledger``: risk's ledger entries (a JSON array
  of :class:`~orrange.ledger.Entry` per message on ``ledger.<source>``) and withdrawal
  decisions (:class:`~orrange.wire.funds.WithdrawalDecision` on ``ledger.withdrawal``).

Each batch is written in one transaction, then acked: events and rejections by
:class:`~orrange.store.EventWriter`, idempotent on ``(symbol, seq)`` (rejections on their
``Nats-Msg-Id``); ledger messages by :class:`~orrange.store.ledger.LedgerWriter`, exactly
once on the entry ids. The inputs share one connection and never write at the same time. At
start the actor connects to PostgreSQL (waiting up to ``db_connect_timeout_ms`` for it) and
applies the schema migrations.

Errors: a message with an event whose symbol does not match the subject, a book event with
``seq < 1``, an entry whose source does not match its subject, a decision on another subject
than ``ledger.withdrawal`` or entries on it, is dead-lettered whole (``dlq.<actor>``); a batch
the database refuses as data is retried one message at a time and the offending message
dead-lettered; a lost database connection is retried with backoff and nothing is acked
meanwhile (``docs/actors.md``, Persister).

The process is ``orrange actor persister`` (:mod:`actors.persister`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
import msgspec

from orrange.ledger import Entry
from orrange.matching.events import BookDelta, Event, OrderRejected
from orrange.runtime import (
    MSG_ID_HEADER,
    Actor,
    ActorConfig,
    Inbound,
    Input,
    Outbox,
)
from orrange.store import EventWriter, RiskRejection, WriteResult, migrate
from orrange.store.connect import TRANSIENT_ERRORS, connect_when_ready
from orrange.store.ledger import LedgerWriter, LedgerWriteResult
from orrange.wire.engine import (
    EVENTS,
    EVENTS_PREFIX,
    PERSISTER_EVENTS_DURABLE,
    PERSISTER_REJECTS_DURABLE,
    REJECTS,
    REJECTS_PREFIX,
    EventPayload,
    rejects_subject,
    seq_id,
)
from orrange.wire.funds import (
    LEDGER,
    LEDGER_PREFIX,
    LEDGER_WITHDRAWAL_SUBJECT,
    PERSISTER_LEDGER_DURABLE,
    WithdrawalDecision,
)
from orrange.wire.spec import ConsumerSpec, StreamSpec

__all__ = ["Persister"]

#: Default of :attr:`Persister.linger_ms` (ms).
DEFAULT_LINGER_MS = 20
_encoder = msgspec.json.Encoder()
R = TypeVar("R")
#: A ``LEDGER`` message: the entries of one input message, or a withdrawal decision.
LedgerPayload = list[Entry] | WithdrawalDecision


class Persister(Actor):
    """Writes ``evt.>``, ``rej.>`` and ``ledger.>`` into PostgreSQL (see the module
    docstring).

    Args:
        config: actor configuration (name normally ``persister``).
        database_url: ``postgresql://`` URL of the database (migrated at start).
        batch_size: messages per fetch (None: ``config.batch_size``).
        db_connect_timeout_ms: how long :meth:`start` waits for PostgreSQL (ms).
        linger_ms: a fetch that brings less than a full batch waits up to this long (ms) for
            more before it is written: fewer, fuller transactions at moderate rates. The
            persister is off the order-to-fill path, so this costs no trading latency.

    Attributes:
        totals: running sums of what was stored (events, fills, rejections, orders upserts,
            ledger entries, postings and withdrawal decisions).
    """

    def __init__(
        self,
        config: ActorConfig,
        database_url: str,
        *,
        batch_size: int | None = None,
        db_connect_timeout_ms: int = 60_000,
        linger_ms: int = DEFAULT_LINGER_MS,
    ) -> None:
        super().__init__(config)
        self.linger_ms = linger_ms
        self.database_url = database_url
        self.batch_size = batch_size
        self.db_connect_timeout_ms = db_connect_timeout_ms
        self._writer: EventWriter | None = None
        self._ledger: LedgerWriter | None = None
        self._db_lock = asyncio.Lock()  # one connection: writes of the inputs never overlap
        self.totals: dict[str, int] = {
            "events": 0,
            "fills": 0,
            "rejections": 0,
            "orders": 0,
            "rebuilt": 0,
            "orphans": 0,
            "entries": 0,
            "postings": 0,
            "decisions": 0,
        }

    def streams(self) -> Sequence[StreamSpec]:
        return (EVENTS, REJECTS, LEDGER)

    def inputs(self) -> Sequence[Input[Any]]:
        return (
            self._input(
                EVENTS, PERSISTER_EVENTS_DURABLE, EVENTS_PREFIX, EventPayload, self._on_events
            ),
            self._input(
                REJECTS,
                PERSISTER_REJECTS_DURABLE,
                REJECTS_PREFIX,
                OrderRejected,
                self._on_rejects,
            ),
            self._input(
                LEDGER, PERSISTER_LEDGER_DURABLE, LEDGER_PREFIX, LedgerPayload, self._on_ledger
            ),
        )

    def _input(
        self, stream: StreamSpec, durable: str, prefix: str, kind: Any, handler: Any
    ) -> Input[Any]:
        spec = ConsumerSpec(
            stream=stream.name,
            durable=durable,
            filter_subjects=(f"{prefix}.>",),
            ack_wait_ms=self.config.ack_wait_ms,
            description=f"persister: {prefix}.> into PostgreSQL",
        )
        return Input(spec, kind, handler, self.batch_size, linger_ms=self.linger_ms)

    async def on_start(self) -> None:
        conn = await self._connect_db(self.db_connect_timeout_ms / 1000)
        applied = await migrate(conn)
        self.log.info("database ready", migrations_applied=applied)
        self._writer = EventWriter(conn)
        self._ledger = LedgerWriter(conn)

    async def on_stop(self) -> None:
        writer, self._writer = self._writer, None
        self._ledger = None
        if writer is not None and not writer.conn.is_closed():
            await writer.conn.close()

    async def _connect_db(self, timeout_s: float) -> asyncpg.Connection:
        return await connect_when_ready(self.database_url, timeout_s, self.log)

    async def _retrying(self, write: Callable[[EventWriter, LedgerWriter], Awaitable[R]]) -> R:
        """``write`` with the writers of the current connection, under the database lock;
        a transient error reconnects and tries again (with backoff) until it succeeds."""
        async with self._db_lock:
            delay = 0.2
            while True:
                writer, ledger = self._writer, self._ledger
                try:
                    if writer is None or ledger is None or writer.conn.is_closed():
                        conn = await self._connect_db(0)
                        writer = self._writer = EventWriter(conn)
                        ledger = self._ledger = LedgerWriter(conn)
                    return await write(writer, ledger)
                except TRANSIENT_ERRORS as exc:
                    self.log.error("database unavailable; batch will be retried", error=repr(exc))
                    if writer is not None:
                        writer.conn.terminate()
                    self._writer = self._ledger = None
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

    async def _write(
        self, events: Sequence[tuple[Event, bytes]], rejections: Sequence[RiskRejection]
    ) -> WriteResult:
        result = await self._retrying(lambda w, _: w.write(events, rejections))
        for k in ("events", "fills", "rejections", "orders", "rebuilt", "orphans"):
            self.totals[k] += getattr(result, k)
        if result.orphans or result.rebuilt:
            self.log.warning("events out of order", rebuilt=result.rebuilt, orphans=result.orphans)
        return result

    async def _write_ledger(
        self, entries: Sequence[Entry], decisions: Sequence[WithdrawalDecision]
    ) -> LedgerWriteResult:
        result = await self._retrying(lambda _, ledger: ledger.write(entries, decisions))
        for k in ("entries", "postings", "decisions"):
            self.totals[k] += getattr(result, k)
        return result

    async def _on_events(self, batch: Sequence[Inbound[Event | list[Event]]], out: Outbox) -> None:
        good: list[tuple[Event, bytes]] = []
        encode = _encoder.encode
        for m in batch:
            data = m.data
            if not isinstance(data, list):
                data = [data]
            symbol = m.subject[len(EVENTS_PREFIX) + 1 :]
            bad = next((e for e in data if e.symbol != symbol or e.seq < 1), None)
            if bad is not None:
                reason = (
                    f"event of {bad.symbol!r} on subject {m.subject!r}"
                    if bad.symbol != symbol
                    else f"book event with seq {bad.seq} (must be >= 1)"
                )
                out.dead_letter(m, reason)
                continue
            # L2 deltas are not stored (see EventWriter): not worth encoding
            good.extend((e, encode(e)) for e in data if type(e) is not BookDelta)
        if good:
            await self._write(good, ())

    async def _on_rejects(self, batch: Sequence[Inbound[OrderRejected]], out: Outbox) -> None:
        good: list[RiskRejection] = []
        for m in batch:
            r = m.data
            if m.subject != rejects_subject(r.symbol):
                out.dead_letter(m, f"rejection of {r.symbol!r} on subject {m.subject!r}")
                continue
            rid = (m.headers or {}).get(MSG_ID_HEADER) or seq_id(m.stream, m.stream_seq)
            good.append(RiskRejection(rid, r))
        if good:
            await self._write((), good)

    async def _on_ledger(self, batch: Sequence[Inbound[LedgerPayload]], out: Outbox) -> None:
        entries: list[Entry] = []
        decisions: list[WithdrawalDecision] = []
        for m in batch:
            data = m.data
            if isinstance(data, WithdrawalDecision):
                if m.subject != LEDGER_WITHDRAWAL_SUBJECT:
                    out.dead_letter(m, f"withdrawal decision on subject {m.subject!r}")
                else:
                    decisions.append(data)
                continue
            source = m.subject[len(LEDGER_PREFIX) + 1 :]
            bad = next((e for e in data if e.source != source), None)
            if m.subject == LEDGER_WITHDRAWAL_SUBJECT or bad is not None:
                what = f"entry of source {bad.source!r}" if bad is not None else "entries"
                out.dead_letter(m, f"{what} on subject {m.subject!r}")
                continue
            entries.extend(data)
        if entries or decisions:
            await self._write_ledger(entries, decisions)
