"""The alerter actor: price alerts and market signals, persisted and delivered exactly once.

Inputs (durable pull consumers, processed one batch at a time under the actor's lock):

============================ ==================== ============================================
Subject                      Durable              What it does
============================ ==================== ============================================
``evt.<SYM>`` (``EVENTS``)   ``alerter-events``   a batch of book events
                                                  (:data:`~orrange.wire.engine.EventPayload`);
                                                  every ``OrderFilled`` is a last-trade update
``md.indexes`` (``MD``)      ``alerter-indexes``  one feed round: a JSON array of
                                                  :class:`IndexPrice`, each an index update
``md.candle.<IV>.<SYM>``     ``alerter-candles``  every :class:`CandleClosed` feeds the
                                                  :class:`SignalEngine`
``alerts.cmd``               ``alerter-cmd``      :class:`AlertCommand`: re-read one alert or
(``ALERT_CMD``)                                   subscription from PostgreSQL
============================ ==================== ============================================

Input is applied strictly in stream order; an event whose ``seq`` is not above the last one
applied for its symbol is ignored (watermark stored as ``alerter_cursors`` row ``evt:<SYM>``).

Outputs (stream :data:`~orrange.wire.alerts.ALERTS`, de-duplication window one hour):

* ``notifications``: a JSON array of :class:`~orrange.wire.alerts.Notification` (prices in
  ticks), all the notifications that **one input message** produced, in the order they fired;
  ``Nats-Msg-Id`` = ``notes:<durable>:<input stream sequence>``
  (:func:`~orrange.wire.alerts.notifications_msg_id`). Users are in each notification
  (``user``); the API fans them out to the owners' private WebSocket channel.
* ``signals``: a :class:`~orrange.wire.alerts.SignalRecord`, ``Nats-Msg-Id`` = signal id.

Notifications, alert states and cursors are stored in PostgreSQL in one transaction before the
notifications are published, so each is delivered exactly once across ``kill -9``. Alerts are
created and deleted by the API in PostgreSQL, followed by an :class:`AlertCommand` on
``alerts.cmd``; closed candles go through :class:`~orrange.alerts.signals.SignalEngine` and
each signal is stored (``signals``), published and notified to matching subscribers. Expiry:
on every price update (at the update's ``ts``, ms UTC) and, for markets without updates, every
``expiry_interval_ms``; an expired alert gets status ``expired`` (no notification).

Errors: a failed commit is retried on a fresh connection while the database is unreachable;
any other commit failure stops the actor (exit code 1); a failed evaluation reloads the state
from PostgreSQL and the batch is retried message by message.

Commit pipeline, crash recovery and signal priming: ``docs/actors.md`` (Alerter). The process
is ``orrange actor alerter`` (:mod:`actors.alerter`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec
import nats.errors
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from orrange.alerts.index import AlertIndex
from orrange.alerts.rules import AlertEvent, AlertExpired, AlertFired, AlertRearmed
from orrange.alerts.signals import SignalEngine, SignalSubscriptions
from orrange.marketdata.candles import CandleClosed, CandleEvent
from orrange.matching.enums import TriggerSource
from orrange.matching.events import OrderFilled
from orrange.runtime import (
    Actor,
    ActorConfig,
    Inbound,
    Input,
    Outbox,
    PublishError,
)
from orrange.store import migrate
from orrange.store.alerts import (
    AlertRow,
    AlertState,
    BookPrice,
    load_alert,
    load_books,
    load_cursors,
    load_live_alerts,
    load_subscription,
    load_subscriptions,
    notifications_by_source,
    signals_by_source,
    write_alerter_batch,
)
from orrange.store.connect import TRANSIENT_ERRORS, connect_when_ready
from orrange.wire.alerts import (
    ALERT_CMD,
    ALERT_CMD_SUBJECT,
    ALERTS,
    CANDLES_DURABLE,
    CMD_DURABLE,
    EVENTS_DURABLE,
    INDEX_DURABLE,
    NOTIFICATIONS_SUBJECT,
    SIGNALS_SUBJECT,
    AlertCommand,
    Notification,
    SignalRecord,
    alert_notification_id,
    encode_notifications,
    encode_signal,
    notifications_msg_id,
    signal_id,
    signal_notification_id,
)
from orrange.wire.engine import EVENTS, EVENTS_PREFIX, EventPayload
from orrange.wire.marketdata import MD, MD_CANDLE_PREFIX, MD_INDEXES_SUBJECT, candle_subject
from orrange.wire.spec import ConsumerSpec, StreamSpec

__all__ = [
    "Alerter",
    "IndexBatch",
]

#: The durable of the per-market ``md.index.<SYM>`` input of earlier versions (deleted at start).
_OLD_INDEX_DURABLE = "alerter-index"
#: ``alerter_cursors`` key prefix of the last applied event ``seq`` per symbol.
_EVENT_MARK = "evt:"
#: ``alerter_cursors`` key prefix of the last input seq per durable whose output is published.
_PUBLISHED = "published:"


class _IndexUpdate(msgspec.Struct, frozen=True, gc=False, tag_field="type", tag="index_price"):
    """The fields of an :class:`~orrange.marketdata.index.IndexPrice` the alerter reads (the
    others are skipped while decoding)."""

    symbol: str
    ts: int
    price: int


#: Wire type of ``md.indexes`` as the alerter reads it: an array of index prices (or one).
IndexBatch = list[_IndexUpdate] | _IndexUpdate

_Update = tuple[str, TriggerSource, int, int]  # market, reference, price (ticks), ts (ms)
_INDEX = TriggerSource.INDEX
_LAST = TriggerSource.LAST


def _freeze_heap() -> None:
    """Collect, then exempt every object alive now (above all the loaded index: hundreds of
    thousands of objects) from later collections: a full collection would otherwise traverse
    them all, a pause of 100 ms or more in the middle of the price stream."""
    gc.collect()
    gc.freeze()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


_State = tuple[str, str | None, int]  # status, rearm_after, fire_count


class _Pending:
    """Work evaluated but not committed yet: what the writer stores in one transaction, then
    publishes. Later batches merge into it (the last state of an alert or book wins)."""

    __slots__ = (
        "cursors",
        "marks",
        "notes",
        "publishes",
        "signals",
        "snapshot",
        "states",
        "updates",
    )

    def __init__(self) -> None:
        self.notes: list[Notification] = []
        self.signals: list[SignalRecord] = []
        self.states: dict[int, _State] = {}
        self.snapshot: list[BookPrice] | None = None  # every book's last price, at commit
        self.cursors: dict[str, int] = {}  # durable -> last input seq
        self.marks: dict[str, int] = {}  # symbol -> last applied event seq
        self.publishes: list[tuple[str, bytes, str]] = []  # subject, payload, Nats-Msg-Id
        self.updates = 0  # price updates evaluated into it

    def __bool__(self) -> bool:
        return bool(self.cursors or self.states or self.notes or self.signals)


class Alerter(Actor):
    """Evaluates price alerts and signals (see the module docstring).

    Args:
        config: actor configuration (name normally ``alerter``).
        database_url: ``postgresql://`` URL (migrated at start).
        batch_size: messages per fetch (None: ``config.batch_size``, and one ``md.indexes``
            round per fetch: a round already carries every market's update, and commits
            group rounds anyway).
        db_connect_timeout_ms: how long :meth:`start` waits for PostgreSQL (ms).
        expiry_interval_ms: period of the wall-clock expiry sweep (ms).
        max_pending_updates: price updates evaluated but not yet committed before the inputs
            wait for the writer.
        eval_slice: price updates evaluated between two looks at the clock.
        eval_yield_ms: evaluation lets the event loop run once it has held it this long (a
            round of 1,000 updates takes several ms; the writer's round trips to PostgreSQL
            and NATS go on in between instead of waiting for the whole batch).

    Attributes:
        index: the live :class:`AlertIndex`.
        engine: the :class:`SignalEngine`.
        subscriptions: the live :class:`SignalSubscriptions`.
        failed: the error that stopped the writer (the actor then stops; a restart resumes
            from the last commit), or None.
    """

    def __init__(
        self,
        config: ActorConfig,
        database_url: str,
        *,
        batch_size: int | None = None,
        db_connect_timeout_ms: int = 60_000,
        expiry_interval_ms: int = 1_000,
        max_pending_updates: int = 20_000,
        eval_slice: int = 25,
        eval_yield_ms: float = 0.25,
    ) -> None:
        super().__init__(config)
        self.expiry_interval_ms = expiry_interval_ms
        self.database_url = database_url
        self.batch_size = batch_size
        self.db_connect_timeout_ms = db_connect_timeout_ms
        self.max_pending_updates = max_pending_updates
        self.eval_slice = max(1, eval_slice)
        self.eval_yield_s = eval_yield_ms / 1000
        self.index = AlertIndex()
        self.engine = SignalEngine()
        self.subscriptions = SignalSubscriptions()
        self.failed: BaseException | None = None
        self._fires: dict[int, int] = {}
        self._books: dict[tuple[str, TriggerSource], BookPrice] = {}  # last price per book
        self._books_changed = False
        self._cursors: dict[str, int] = {}  # committed: last input seq per durable
        self._applied: dict[str, int] = {}  # evaluated (committed or pending)
        self._marks: dict[str, int] = {}  # last applied event seq per symbol
        self._published: dict[str, int] = {}  # stored: input seq whose output is published
        self._unrecorded: dict[str, int] = {}  # published since, stored with the next commit
        self._conn: asyncpg.Connection | None = None  # reads (handlers)
        self._wconn: asyncpg.Connection | None = None  # the writer's
        self._starts: dict[str, int] = {}
        self._open = _Pending()
        self._writing = False
        self._stale = False  # the index may be half-updated (see _evaluate)
        self._closing = False
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._writer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ wiring
    def streams(self) -> Sequence[StreamSpec]:
        return (EVENTS, MD, ALERTS, ALERT_CMD)

    def inputs(self) -> Sequence[Input[Any]]:
        def spec(stream: str, durable: str, subject: str, policy: Any) -> ConsumerSpec:
            start = self._starts.get(durable)
            return ConsumerSpec(
                stream=stream,
                durable=durable,
                filter_subjects=(subject,),
                ack_wait_ms=self.config.ack_wait_ms,
                deliver_policy=policy,
                start_seq=start,
                recreate=start is not None,
                ack_policy="all" if start is not None else "explicit",
                description=f"alerter: {subject}",
            )

        md = MD.name
        return (
            Input(
                spec(EVENTS.name, EVENTS_DURABLE, f"{EVENTS_PREFIX}.>", "new"),
                EventPayload,
                self._on_trades,
                self.batch_size,
            ),
            Input(
                spec(md, INDEX_DURABLE, MD_INDEXES_SUBJECT, "new"),
                IndexBatch,
                self._on_index,
                self.batch_size or 1,  # a round is 1,000 updates: one per handler call
            ),
            Input(
                spec(md, CANDLES_DURABLE, f"{MD_CANDLE_PREFIX}.>", "new"),
                CandleEvent,
                self._on_candles,
                self.batch_size,
            ),
            Input(
                spec(ALERT_CMD.name, CMD_DURABLE, ALERT_CMD_SUBJECT, "all"),
                AlertCommand,
                self._on_commands,
                self.batch_size,
            ),
        )

    async def on_start(self) -> None:
        conn = await self._connect_db(self.db_connect_timeout_ms / 1000)
        applied = await migrate(conn)
        # Fresh planner statistics for the commits' keyed update of ``alerts``: without them
        # (alerts bulk-loaded since the last autoanalyze) PostgreSQL plans a hash join over
        # every active alert, tens of ms per commit, instead of one index lookup per state.
        await conn.execute("ANALYZE alerts")
        self._conn = conn
        await self._load()
        with contextlib.suppress(NotFoundError):  # the md.index.<SYM> reader of old versions
            await self.js.delete_consumer(MD.name, _OLD_INDEX_DURABLE)
        for stream, durable in (
            (EVENTS.name, EVENTS_DURABLE),
            (MD.name, INDEX_DURABLE),
            (MD.name, CANDLES_DURABLE),
        ):
            self._starts[durable] = await self._start_seq(stream, durable)
        primed = await self._prime_signals()
        _freeze_heap()
        self._closing = False
        self._writer = asyncio.create_task(self._write_loop(), name=f"{self.name}:writer")
        self.spawn(self._expiry_loop(), name=f"{self.name}:expiry")
        self.log.info(
            "alerter ready",
            starts=self._starts,
            candles_primed=primed,
            migrations_applied=applied,
            alerts=len(self.index),
            subscriptions=len(self.subscriptions),
        )

    async def _start_seq(self, stream: str, durable: str) -> int:
        """Where ``durable`` resumes: after its ack floor (messages up to the stored cursor are
        then only published again), else after the stored cursor, else at the stream's next
        message. Input is acked once evaluated, before its commit and publication, so the ack
        floor may be ahead: then after the last input whose output is known published (the
        messages up to the cursor only have their output published again)."""
        cursor = self._cursors.get(durable)
        if cursor is not None:
            cursor = min(cursor, self._published.get(durable, 0))
        try:
            info = await self.js.consumer_info(stream, durable)
        except NotFoundError:
            if cursor is not None:
                return cursor + 1
            last: int = (await self.js.stream_info(stream)).state.last_seq
            return last + 1
        floor = (info.ack_floor.stream_seq if info.ack_floor is not None else 0) or 0
        if cursor is not None:
            floor = min(floor, cursor)
        return floor + 1

    async def on_stop(self) -> None:
        try:
            if self.failed is None and self._writer is not None:
                await self._flush()
        finally:
            if self._writer is not None:
                self._closing = True
                self._wake.set()
                try:
                    await asyncio.wait_for(asyncio.shield(self._writer), 5)
                except BaseException:
                    self._writer.cancel()
                self._writer = None
            for conn in (self._conn, self._wconn):
                if conn is not None and not conn.is_closed():
                    await conn.close()
            self._conn = self._wconn = None

    async def _connect_db(self, timeout_s: float) -> asyncpg.Connection:
        return await connect_when_ready(self.database_url, timeout_s, self.log)

    async def _db(self) -> asyncpg.Connection:
        conn = self._conn
        if conn is None or conn.is_closed():
            conn = self._conn = await self._connect_db(0)
        return conn

    async def _load(self) -> None:
        """Rebuild the index, fire counts, subscriptions, cursors and event watermarks from
        PostgreSQL (nothing may be pending: see :meth:`_flush`)."""
        conn = await self._db()
        index = AlertIndex()
        books = {}
        for b in await load_books(conn):
            index.update(b.market, b.reference, b.price, b.ts)  # no alerts yet: no events
            books[(b.market, b.reference)] = b
        self._books, self._books_changed = books, False
        fires: dict[int, int] = {}
        for row in await load_live_alerts(conn):
            index.add(row.alert, rearm_after=row.rearm_after)
            fires[row.alert.id] = row.fire_count
        subs = SignalSubscriptions()
        for s in await load_subscriptions(conn):
            subs.add(s.subscription)
        self.index, self._fires, self.subscriptions = index, fires, subs
        self._stale = False
        cursors = await load_cursors(conn)
        self._marks, self._published, self._cursors = {}, {}, {}
        for k, v in cursors.items():
            if k.startswith(_EVENT_MARK):
                self._marks[k[len(_EVENT_MARK) :]] = v
            elif k.startswith(_PUBLISHED):
                self._published[k[len(_PUBLISHED) :]] = v
            else:
                self._cursors[k] = v
        self._applied = dict(self._cursors)

    # ------------------------------------------------------------------ the writer
    async def _write_loop(self) -> None:
        """Commit what the inputs evaluated, then publish it; one transaction for everything
        pending, so commits overlap the evaluation of the next batches and grow under load.

        A job's notifications are sent right after its commit; their acks are awaited by a
        task while the next job commits (the next job's output is sent only once they are all
        in, so output keeps its order, also when publishing has to be retried)."""
        confirming: asyncio.Task[None] | None = None  # acks of the last job sent
        try:
            while True:
                if not self._open:
                    if confirming is not None:
                        await confirming  # raises what publishing raised
                        confirming = None
                    if self._unrecorded and not self._closing:  # idle: store the published cursor
                        try:
                            await asyncio.wait_for(self._wake.wait(), 0.05)
                        except TimeoutError:
                            try:
                                await self._commit(_Pending())
                            except Exception as exc:
                                self.log.error("publication cursor not stored", error=repr(exc))
                    await self._wake.wait()
                    self._wake.clear()
                    if self._closing and not self._open:
                        return
                while self._open:
                    job, self._open = self._open, _Pending()
                    if self._books_changed:  # the books as of exactly the work in ``job``
                        job.snapshot = list(self._books.values())
                        self._books_changed = False
                    self._writing = True
                    try:
                        await self._commit(job)
                        self._cursors.update(job.cursors)
                        async with self._progress:
                            self._progress.notify_all()
                        if confirming is not None:
                            await confirming  # raises what publishing raised
                            confirming = None
                        confirming = await self._send(job)
                    finally:
                        self._writing = False
                        async with self._progress:
                            self._progress.notify_all()
        except Exception as exc:
            self.failed = exc
            self.log.critical(
                "cannot store evaluated input; stopping (a restart resumes from the last commit)",
                error=repr(exc),
            )
            self.request_stop()
            async with self._progress:
                self._progress.notify_all()
        finally:
            if confirming is not None and not confirming.done():
                confirming.cancel()

    async def _send(self, job: _Pending) -> asyncio.Task[None] | None:
        """Send a committed job's output; returns the task that awaits its acks (None when
        there was nothing to send or sending failed and was retried to the end here)."""
        if not job.publishes:
            self._unrecorded.update(job.cursors)
            return None
        try:
            for subject, payload, msg_id in job.publishes:
                await self.publisher.submit(subject, payload, msg_id=msg_id)
        except (PublishError, nats.errors.Error) as exc:
            self.log.error("publishing failed; retried", error=repr(exc))
            await self._publish(job.publishes)
            self._unrecorded.update(job.cursors)
            return None
        return asyncio.create_task(self._confirm(job), name=f"{self.name}:confirm")

    async def _confirm(self, job: _Pending) -> None:
        """Wait for the acks of a job's output (publishing it again until JetStream has it);
        then its inputs count as published."""
        try:
            await self.publisher.flush()
        except (PublishError, nats.errors.Error) as exc:
            self.log.error("publishing failed; retried", error=repr(exc))
            await asyncio.sleep(0.2)
            await self._publish(job.publishes)
        self._unrecorded.update(job.cursors)

    async def _commit(self, job: _Pending) -> None:
        """Store ``job`` (see :func:`write_alerter_batch`), retrying while the database is
        unreachable."""
        delay = 0.2
        states = [AlertState(alert_id=k, status=v[0], rearm_after=v[1], fire_count=v[2])
                  for k, v in job.states.items()]  # fmt: skip
        recorded = dict(self._unrecorded)
        cursors = [
            *job.cursors.items(),
            *((_EVENT_MARK + k, v) for k, v in job.marks.items()),
            *((_PUBLISHED + k, v) for k, v in recorded.items()),
        ]
        while True:
            try:
                conn = self._wconn
                if conn is None or conn.is_closed():
                    conn = self._wconn = await self._connect_db(0)
                await write_alerter_batch(
                    conn,
                    notifications=job.notes,
                    signals=job.signals,
                    states=states,
                    cursors=cursors,
                    book_snapshot=job.snapshot,
                    now_ms=_now_ms(),
                )
                for k, v in recorded.items():
                    if self._unrecorded.get(k) == v:
                        del self._unrecorded[k]
                return
            except TRANSIENT_ERRORS as exc:
                self.log.error("database unavailable; batch will be retried", error=repr(exc))
                if self._wconn is not None:
                    self._wconn.terminate()
                self._wconn = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _publish(self, items: list[tuple[str, bytes, str]]) -> None:
        """Publish committed output (retried until JetStream has it; repeats are dropped by
        their ``Nats-Msg-Id``)."""
        delay = 0.2
        while items:
            try:
                for subject, payload, msg_id in items:
                    await self.publisher.submit(subject, payload, msg_id=msg_id)
                await self.publisher.flush()
                return
            except (PublishError, nats.errors.Error) as exc:
                self.log.error("publishing failed; retried", error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _queued(self) -> None:
        """The inputs added work: wake the writer."""
        self._wake.set()

    async def _backpressure(self) -> None:
        """Wait while too much evaluated work waits for the writer."""
        if self._open.updates < self.max_pending_updates:
            return
        async with self._progress:
            while self._open.updates >= self.max_pending_updates and self.failed is None:
                await self._progress.wait()

    async def _flush(self) -> None:
        """Wait until everything evaluated so far is committed."""
        self._wake.set()
        async with self._progress:
            while (self._open or self._writing) and self.failed is None:
                await self._progress.wait()

    async def _reload(self) -> None:
        """Back to the stored state after a failed evaluation (pending work is committed
        first; the failed batch's work was never queued)."""
        await self._flush()
        gc.unfreeze()  # the old index may now be collected
        await self._load()
        _freeze_heap()

    # ------------------------------------------------------------------ inputs
    def _split(
        self, durable: str, batch: Sequence[Inbound[Any]]
    ) -> tuple[list[Inbound[Any]], list[Inbound[Any]]]:
        """(committed already, new) messages of a batch; messages evaluated but still being
        committed are in neither (the writer publishes their output)."""
        applied = self._applied.get(durable, 0)
        if not batch or batch[0].stream_seq > applied:
            return [], list(batch)
        cursor = self._cursors.get(durable, 0)
        old = [m for m in batch if m.stream_seq <= cursor]
        new = [m for m in batch if m.stream_seq > applied]
        return old, new

    async def _republish(self, durable: str, old: Sequence[Inbound[Any]], out: Outbox) -> None:
        """Publish again what already applied messages produced, one ``notifications``
        message per input message as the first time (JetStream drops the repeats)."""
        if not old:
            return
        first = min(m.stream_seq for m in old)
        last = max(m.stream_seq for m in old)
        conn = await self._db()
        if durable == CANDLES_DURABLE:
            for s in await signals_by_source(conn, durable, first, last):
                out.publish(SIGNALS_SUBJECT, s, msg_id=s.id)
        notes = await notifications_by_source(conn, durable, first, last)
        groups: dict[int, list[Notification]] = {}
        for n in notes:
            groups.setdefault(n.source_seq, []).append(n)
        for seq, group in groups.items():
            out.publish(
                NOTIFICATIONS_SUBJECT,
                encode_notifications(group),
                msg_id=notifications_msg_id(durable, seq),
            )
        self.log.info(
            "redelivered input already applied; its notifications published again",
            consumer=durable,
            first_seq=first,
            last_seq=last,
            notifications=len(notes),
        )

    async def _incoming(
        self, durable: str, batch: Sequence[Inbound[Any]], out: Outbox
    ) -> list[Inbound[Any]]:
        """The messages of a batch still to evaluate (the writer's failure stops everything:
        nothing more is evaluated, and a restart resumes from the last commit)."""
        if self.failed is not None:
            return []
        if self._stale:
            await self._reload()
        old, new = self._split(durable, batch)
        await self._republish(durable, old, out)
        return new

    async def _on_trades(self, batch: Sequence[Inbound[Any]], out: Outbox) -> None:
        new = await self._incoming(EVENTS_DURABLE, batch, out)
        if not new:
            return
        marks: dict[str, int] = {}  # watermarks this batch raised
        work: list[tuple[int, list[_Update]]] = []
        plen = len(EVENTS_PREFIX) + 1
        for m in new:
            data = m.data
            events = data if isinstance(data, list) else [data]
            sym = m.subject[plen:]
            mark = marks.get(sym)
            if mark is None:
                mark = self._marks.get(sym, 0)
            ups: list[_Update] = []
            try:
                for ev in events:
                    if ev.symbol != sym:
                        raise ValueError(f"event of {ev.symbol!r} on subject {m.subject!r}")
                    if ev.seq <= mark:
                        continue  # applied already (stored twice with other boundaries)
                    mark = ev.seq
                    if isinstance(ev, OrderFilled):
                        if ev.price < 1:
                            raise ValueError(f"price {ev.price} ticks is not positive")
                        ups.append((sym, _LAST, ev.price, ev.ts))
            except ValueError as exc:
                out.dead_letter(m, exc)
                continue
            if mark:
                marks[sym] = mark
            if ups:
                work.append((m.stream_seq, ups))
        await self._evaluate(EVENTS_DURABLE, new[-1].stream_seq, work, marks)

    async def _on_index(self, batch: Sequence[Inbound[Any]], out: Outbox) -> None:
        new = await self._incoming(INDEX_DURABLE, batch, out)
        if not new:
            return
        work: list[tuple[int, list[_Update]]] = []
        for m in new:
            data = m.data
            items = data if isinstance(data, list) else [data]
            bad = [x for x in items if x.price < 1 or "\x00" in x.symbol]
            if bad:
                out.dead_letter(m, ValueError(f"bad index price {bad[0]!r}"))
                continue
            work.append((m.stream_seq, [(x.symbol, _INDEX, x.price, x.ts) for x in items]))
        await self._evaluate(INDEX_DURABLE, new[-1].stream_seq, work, {})

    async def _evaluate(
        self,
        durable: str,
        last: int,
        work: list[tuple[int, list[_Update]]],
        marks: dict[str, int],
    ) -> None:
        """Evaluate the updates of each input message and queue the result for the writer
        (one ``notifications`` message per input message that produced any)."""
        per_input: list[tuple[int, list[Notification]]] = []
        all_notes: list[Notification] = []
        states: dict[int, _State] = {}
        books: dict[tuple[str, TriggerSource], BookPrice] = {}
        update = self.index.update
        apply = self._apply
        step = self.eval_slice
        budget = self.eval_yield_s
        clock = time.perf_counter
        held = clock()
        n = 0
        try:
            for seq, ups in work:
                notes: list[Notification] = []
                for i in range(0, len(ups), step):
                    if clock() - held >= budget:
                        # let the writer's PostgreSQL and NATS round trips go on between
                        # slices (nothing of this batch is queued yet, so the writer cannot
                        # see it half-evaluated; the lock keeps the other inputs out)
                        await asyncio.sleep(0)
                        held = clock()
                    part = ups if len(ups) <= step else ups[i : i + step]
                    for market, ref, price, ts in part:
                        events = update(market, ref, price, ts)
                        books[(market, ref)] = BookPrice(market, ref, price, ts)
                        if events:
                            apply(events, durable, seq, notes, states)
                    n += len(part)
                if notes:
                    per_input.append((seq, notes))
                    all_notes += notes
        except Exception:
            await self._reload()  # the index may be half-updated: back to the stored state
            raise
        except BaseException:
            self._stale = True  # cancelled between slices: reload before the next evaluation
            raise
        # no await from here on: the writer takes ``_open`` and ``_books`` together
        job = self._open
        job.notes += all_notes
        job.states.update(states)
        self._books.update(books)
        self._books_changed = True
        job.cursors[durable] = last
        job.marks.update(marks)
        job.updates += n
        for seq, notes in per_input:
            job.publishes.append(
                (
                    NOTIFICATIONS_SUBJECT,
                    encode_notifications(notes),
                    notifications_msg_id(durable, seq),
                )
            )
        self._applied[durable] = last
        self._marks.update(marks)
        self._queued()
        await self._backpressure()

    def _apply(
        self,
        events: list[AlertEvent],
        source: str,
        seq: int,
        notes: list[Notification],
        states: dict[int, _State],
    ) -> None:
        """Turn index events into notifications and alert states (and update fire counts)."""
        fires = self._fires
        for ev in events:
            aid = ev.alert_id
            if isinstance(ev, AlertFired):
                n = fires.get(aid, 0) + 1
                fires[aid] = n
                notes.append(
                    Notification(
                        id=alert_notification_id(aid, n),
                        user=ev.user,
                        kind="alert",
                        market=ev.market,
                        ts=ev.ts,
                        alert_id=aid,
                        condition=str(ev.condition),  # StrEnum: the value (.value is slower)
                        reference=str(ev.reference),
                        target=ev.target,
                        price=ev.price,
                        direction=ev.direction,
                        final=ev.final,
                        source=source,
                        source_seq=seq,
                    )
                )
                if ev.final:
                    states[aid] = ("fired", None, n)
                    del fires[aid]
                else:
                    states[aid] = ("active", ev.direction, n)
            elif isinstance(ev, AlertRearmed):
                states[aid] = ("active", None, fires.get(aid, 0))
            elif isinstance(ev, AlertExpired):
                states[aid] = ("expired", None, fires.pop(aid, 0))

    async def _prime_signals(self) -> int:
        """Feed the stored ``md.candle.>`` history up to the candle cursor to the signal
        engine (its signals were emitted before the restart); returns the candles fed."""
        upto = self._cursors.get(CANDLES_DURABLE, 0)
        if upto < 1:
            return 0
        decoder = msgspec.json.Decoder(CandleEvent)
        sub = await self.js.subscribe(
            f"{MD_CANDLE_PREFIX}.>",
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )
        fed = 0
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=2)
                except nats.errors.TimeoutError:
                    break  # nothing more in the stream
                if msg.metadata.sequence.stream > upto:
                    break
                try:
                    c = decoder.decode(msg.data)
                except msgspec.DecodeError:
                    continue
                if isinstance(c, CandleClosed) and msg.subject == candle_subject(
                    c.interval, c.symbol
                ):
                    try:
                        self.engine.on_candle(c)
                    except (KeyError, ValueError):
                        continue  # an interval the engine does not know: skipped live too
                    fed += 1
                if msg.metadata.sequence.stream == upto:
                    break
        finally:
            await sub.unsubscribe()
        return fed

    async def _expiry_loop(self) -> None:
        """Expire alerts by wall clock (markets without price updates), persisting states."""
        while not self.stopping and self.failed is None:
            await asyncio.sleep(self.expiry_interval_ms / 1000)
            async with self.lock:
                if self._stale:
                    await self._reload()
                events = self.index.expire(_now_ms())
                if not events:
                    continue
                states: dict[int, _State] = {}
                self._apply(events, "expiry", 0, [], states)
                self._open.states.update(states)
                self._queued()

    # ------------------------------------------------------------------ signals
    async def _on_candles(self, batch: Sequence[Inbound[CandleEvent]], out: Outbox) -> None:
        new = await self._incoming(CANDLES_DURABLE, batch, out)
        if not new:
            return
        records: list[SignalRecord] = []
        per_input: list[tuple[int, list[Notification]]] = []
        for m in new:
            c = m.data
            if not isinstance(c, CandleClosed):
                continue
            if m.subject != candle_subject(c.interval, c.symbol):
                raise ValueError(f"candle of {c.interval} {c.symbol} on subject {m.subject!r}")
            notes: list[Notification] = []
            for sig in self.engine.on_candle(c):
                sid = signal_id(sig)
                records.append(
                    SignalRecord(
                        id=sid, signal=sig, source=CANDLES_DURABLE, source_seq=m.stream_seq
                    )
                )
                for match in self.subscriptions.match(sig):
                    notes.append(
                        Notification(
                            id=signal_notification_id(sid, match.user),
                            user=match.user,
                            kind="signal",
                            market=sig.symbol,
                            ts=sig.open_time,
                            signal_id=sid,
                            signal=sig,
                            source=CANDLES_DURABLE,
                            source_seq=m.stream_seq,
                        )
                    )
            if notes:
                per_input.append((m.stream_seq, notes))
        last = new[-1].stream_seq
        job = self._open
        job.signals += records
        job.cursors[CANDLES_DURABLE] = last
        for r in records:
            job.publishes.append((SIGNALS_SUBJECT, encode_signal(r), r.id))
        for seq, notes in per_input:
            job.notes += notes
            job.publishes.append(
                (
                    NOTIFICATIONS_SUBJECT,
                    encode_notifications(notes),
                    notifications_msg_id(CANDLES_DURABLE, seq),
                )
            )
        self._applied[CANDLES_DURABLE] = last
        self._queued()
        await self._backpressure()

    # ------------------------------------------------------------------ commands
    async def _on_commands(self, batch: Sequence[Inbound[AlertCommand]], out: Outbox) -> None:
        if self.failed is not None:
            return
        await self._flush()  # the rows must show every state evaluated so far
        conn = await self._db()
        for m in batch:
            cmd = m.data
            if cmd.kind == "alert":
                self._sync_alert(cmd.id, await load_alert(conn, cmd.id))
            else:
                row = await load_subscription(conn, cmd.id)
                if row is not None and row.active:
                    self.subscriptions.add(row.subscription)
                else:
                    self.subscriptions.remove(cmd.id)

    def _sync_alert(self, alert_id: int, row: AlertRow | None) -> None:
        if row is None or row.status != "active":
            self.index.remove(alert_id)
            self._fires.pop(alert_id, None)
        elif alert_id not in self.index:
            self.index.add(row.alert, rearm_after=row.rearm_after)
            self._fires[alert_id] = row.fire_count
