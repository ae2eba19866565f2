"""The persister actor: book events and risk rejections into PostgreSQL.

Inputs (durable pull consumers, batches of ``batch_size``):

* ``EVENTS`` (``evt.>``), durable ``persister``: every book event (a message holds the events
  of one matcher batch, see :mod:`orrange.wire.engine`);
* ``REJECTS`` (``rej.>``), durable ``persister-rejects``: risk's rejections.

Each batch is written by :class:`~orrange.store.EventWriter` in one transaction, idempotent on
``(symbol, seq)`` (rejections on their ``Nats-Msg-Id``), then acked. At start the actor
connects to PostgreSQL (waiting up to ``db_connect_timeout_ms`` for it) and applies the schema
migrations.

Errors: a message with an event whose symbol does not match the subject, or a book event with
``seq < 1``, is dead-lettered whole (``dlq.<actor>``); a batch the database refuses as data is
retried one message at a time and the offending message dead-lettered; a lost database
connection is retried with backoff and nothing is acked meanwhile (``docs/actors.md``,
Persister).

The process is ``orrange actor persister`` (:mod:`actors.persister`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

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
from orrange.wire.spec import ConsumerSpec, StreamSpec

__all__ = ["Persister"]

#: Default of :attr:`Persister.linger_ms` (ms).
DEFAULT_LINGER_MS = 20
_encoder = msgspec.json.Encoder()


class Persister(Actor):
    """Writes ``evt.>`` and ``rej.>`` into PostgreSQL (see the module docstring).

    Args:
        config: actor configuration (name normally ``persister``).
        database_url: ``postgresql://`` URL of the database (migrated at start).
        batch_size: messages per fetch (None: ``config.batch_size``).
        db_connect_timeout_ms: how long :meth:`start` waits for PostgreSQL (ms).
        linger_ms: a fetch that brings less than a full batch waits up to this long (ms) for
            more before it is written: fewer, fuller transactions at moderate rates. The
            persister is off the order-to-fill path, so this costs no trading latency.

    Attributes:
        totals: running sums of what was stored (events, fills, rejections, orders upserts).
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
        self._db_lock = asyncio.Lock()  # one connection: writes of the two inputs never overlap
        self.totals: dict[str, int] = {
            "events": 0,
            "fills": 0,
            "rejections": 0,
            "orders": 0,
            "rebuilt": 0,
            "orphans": 0,
        }

    def streams(self) -> Sequence[StreamSpec]:
        return (EVENTS, REJECTS)

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

    async def on_stop(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None and not writer.conn.is_closed():
            await writer.conn.close()

    async def _connect_db(self, timeout_s: float) -> asyncpg.Connection:
        return await connect_when_ready(self.database_url, timeout_s, self.log)

    async def _write(
        self, events: Sequence[tuple[Event, bytes]], rejections: Sequence[RiskRejection]
    ) -> WriteResult:
        async with self._db_lock:
            return await self._write_locked(events, rejections)

    async def _write_locked(
        self, events: Sequence[tuple[Event, bytes]], rejections: Sequence[RiskRejection]
    ) -> WriteResult:
        delay = 0.2
        while True:
            writer = self._writer
            try:
                if writer is None or writer.conn.is_closed():
                    writer = self._writer = EventWriter(await self._connect_db(0))
                result = await writer.write(events, rejections)
            except TRANSIENT_ERRORS as exc:
                self.log.error("database unavailable; batch will be retried", error=repr(exc))
                if writer is not None:
                    writer.conn.terminate()
                self._writer = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            for k in self.totals:
                self.totals[k] += getattr(result, k)
            if result.orphans or result.rebuilt:
                self.log.warning(
                    "events out of order", rebuilt=result.rebuilt, orphans=result.orphans
                )
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
