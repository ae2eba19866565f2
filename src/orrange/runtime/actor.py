"""The actor runtime: NATS connection, provisioning, batched consume/publish/ack, DLQ, probes.

An :class:`Actor` is handed an :class:`ActorConfig` (name, NATS URL, batch size, ports...) and
declares what it needs by overriding :meth:`Actor.streams` (streams to provision) and
:meth:`Actor.inputs` (durable pull consumers, each with a message type and a handler). The
runtime then, for each input, loops:

1. fetch up to ``batch_size`` messages from the durable pull consumer;
2. decode each into the input's msgspec type (JSON); undecodable ones are dead-lettered;
3. call the handler once with the whole batch and an :class:`Outbox`;
4. publish everything the handler put in the outbox asynchronously (``Nats-Msg-Id`` on each),
   together with the batch's dead letters, and wait for **all** publish acks;
5. ack every input message of the batch. If publishing failed, nothing is acked: the batch is
   nak'ed and redelivered, and JetStream drops the outputs that were already stored because
   their ``Nats-Msg-Id`` repeats.

Handlers must be deterministic in their input for this to be exactly-once in effect: derive
``msg_id`` from the input (a function of :mod:`orrange.wire` of the input's stream sequence or
ids), never from a clock or a counter that a restart resets.

If a batch handler raises, the outbox is rolled back and the batch is retried one message at a
time; messages that raise alone are dead-lettered (``dlq.<actor>`` on stream ``DLQ``, payload =
original bytes, error in headers) and acked. So a batch handler must be all-or-nothing (e.g. one
SQL transaction); stateful per-message handlers should use :func:`per_message`, which isolates
each message itself. Input never crashes the actor.

SIGTERM/SIGINT (:func:`run_actor`) or :meth:`Actor.request_stop` stop fetching; the batch in
hand is finished (published and acked), :meth:`Actor.on_stop` runs, then the connection drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec
import nats
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from orrange.runtime._pull import PullConsumer
from orrange.runtime.metrics import ActorMetrics, MetricsServer
from orrange.runtime.publisher import MSG_ID_HEADER, Publisher, PublishError, encode
from orrange.runtime.streams import ensure_consumer, ensure_stream
from orrange.settings import Settings
from orrange.wire import dlq
from orrange.wire.spec import ConsumerSpec, StreamSpec

__all__ = [
    "Actor",
    "ActorConfig",
    "BatchHandler",
    "Heartbeat",
    "Inbound",
    "Input",
    "Outbox",
    "per_message",
    "run_actor",
    "tune_gc",
]

T = TypeVar("T")


class ActorConfig(msgspec.Struct, kw_only=True, frozen=True):
    """Everything an actor is handed at construction.

    Attributes:
        name: actor name; used in logs, metrics labels, ``heartbeat.<name>`` and
            ``dlq.<name>`` subjects (``[A-Za-z0-9_-]``).
        nats_url: NATS server URL(s), comma-separated.
        batch_size: messages per fetch.
        fetch_timeout_ms: how long a fetch waits for a first message (ms); also bounds how long
            a stop request waits for an idle fetch.
        publish_timeout_ms: how long a batch waits for its publish acks (ms).
        ack_wait_ms: default redelivery timeout of the consumers this actor creates (ms).
        duplicate_window_ms: default de-dup window of the streams this actor creates (ms).
        heartbeat_interval_ms: period of ``heartbeat.<name>`` publishes (ms).
        metrics_host: bind address of the metrics/probe HTTP server.
        metrics_port: its port; 0 picks a free one, None disables the server.
        max_publish_pending: outstanding async publishes before publishing waits.
        serialize_handlers: hold :attr:`Actor.lock` around handler calls, so handlers of
            different inputs (and timers that take the lock) never interleave.
        connect_timeout_ms: how long :meth:`Actor.start` tries to reach NATS (ms).
    """

    name: str
    nats_url: str = "nats://127.0.0.1:4222"
    batch_size: int = 500
    fetch_timeout_ms: int = 500
    publish_timeout_ms: int = 10_000
    ack_wait_ms: int = 30_000
    duplicate_window_ms: int = 600_000
    heartbeat_interval_ms: int = 5_000
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = 0
    max_publish_pending: int = 20_000
    serialize_handlers: bool = True
    connect_timeout_ms: int = 30_000

    @classmethod
    def from_settings(
        cls, name: str, settings: Settings, *, metrics_port: int | None = 0, **overrides: Any
    ) -> ActorConfig:
        """Config for actor ``name`` from process :class:`~orrange.settings.Settings`."""
        rt = settings.runtime
        values: dict[str, Any] = {
            "name": name,
            "nats_url": settings.effective_nats_url,
            "batch_size": rt.batch_size,
            "fetch_timeout_ms": rt.fetch_timeout_ms,
            "publish_timeout_ms": rt.publish_timeout_ms,
            "ack_wait_ms": rt.ack_wait_ms,
            "duplicate_window_ms": rt.duplicate_window_ms,
            "heartbeat_interval_ms": rt.heartbeat_interval_ms,
            "metrics_host": rt.metrics_host,
            "metrics_port": metrics_port,
            "max_publish_pending": rt.max_publish_pending,
        }
        values.update(overrides)
        return cls(**values)


class Inbound(msgspec.Struct, Generic[T], frozen=True, gc=False):
    """One decoded input message.

    Attributes:
        data: the decoded message.
        subject: subject it was published on (e.g. ``book.in.AMZN``).
        stream: stream it was read from.
        stream_seq: its sequence in that stream (stable across redeliveries: the natural
            de-dup key for what the handler publishes).
        num_delivered: 1 on first delivery, more on redeliveries.
        num_pending: messages still in the stream after it for this consumer.
        timestamp_ns: JetStream store time, ns since the Unix epoch (UTC).
        headers: message headers (``Nats-Msg-Id`` among them), or None.
        payload: the original bytes.
    """

    data: T
    subject: str
    stream: str
    stream_seq: int
    num_delivered: int
    num_pending: int
    timestamp_ns: int
    headers: dict[str, str] | None
    payload: bytes


class _Out(msgspec.Struct, frozen=True, gc=False):
    subject: str
    payload: bytes
    headers: dict[str, str]


class Outbox:
    """What a handler emits for one batch; published after the handler returns."""

    __slots__ = ("_actor", "_dead", "_items")

    def __init__(self, actor: str) -> None:
        self._actor = actor
        self._items: list[_Out] = []
        self._dead: list[_Out] = []

    def publish(
        self,
        subject: str,
        msg: msgspec.Struct | bytes,
        *,
        msg_id: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue ``msg`` (a msgspec struct, sent as JSON, or bytes) for ``subject``.

        ``msg_id`` becomes the ``Nats-Msg-Id`` header: derive it from the input so that a
        replay produces the same id.
        """
        hdrs = dict(headers) if headers else {}
        hdrs[MSG_ID_HEADER] = msg_id
        self._items.append(_Out(subject, encode(msg), hdrs))

    def dead_letter(self, msg: Inbound[Any], error: BaseException | str) -> None:
        """Send ``msg`` to ``dlq.<actor>`` with ``error``; it is acked like the others."""
        self._dead_raw(msg.subject, msg.stream, msg.stream_seq, msg.payload, error)

    def dead_letter_part(
        self, msg: Inbound[Any], index: int, payload: bytes, error: BaseException | str
    ) -> None:
        """Dead-letter item ``index`` (0-based) of a batch message ``msg`` alone.

        For inputs whose messages carry many items (e.g. ``book.in.<SYM>``): ``payload`` is the
        item's own bytes, its ``Nats-Msg-Id`` ``dlq:<actor>:<stream>:<seq>:<index>``. The
        message itself is acked with its batch like any other.
        """
        self._dead_raw(msg.subject, msg.stream, msg.stream_seq, payload, error, part=index)

    def _dead_raw(
        self,
        subject: str,
        stream: str,
        seq: int,
        payload: bytes,
        error: BaseException | str,
        part: int | None = None,
    ) -> None:
        if isinstance(error, BaseException):
            etype, text = type(error).__name__, str(error) or type(error).__name__
        else:
            etype, text = "Rejected", error
        text = " ".join(text.split())[:1000]
        self._dead.append(
            _Out(
                dlq.dlq_subject(self._actor),
                payload,
                {
                    MSG_ID_HEADER: dlq.dead_letter_msg_id(self._actor, stream, seq, part),
                    dlq.ERROR_HEADER: text,
                    dlq.ERROR_TYPE_HEADER: etype,
                    dlq.ACTOR_HEADER: self._actor,
                    dlq.SOURCE_SUBJECT_HEADER: subject,
                    dlq.SOURCE_STREAM_HEADER: stream,
                    dlq.SOURCE_SEQ_HEADER: str(seq),
                },
            )
        )

    def __len__(self) -> int:
        return len(self._items)

    def _mark(self) -> tuple[int, int]:
        return len(self._items), len(self._dead)

    def _rollback(self, mark: tuple[int, int]) -> None:
        del self._items[mark[0] :]
        del self._dead[mark[1] :]


BatchHandler = Callable[[Sequence[Inbound[T]], Outbox], Awaitable[None]]


async def _isolated(
    handler: Callable[[Inbound[T], Outbox], Awaitable[None]],
    msg: Inbound[T],
    out: Outbox,
    log: Any,
) -> None:
    """Run ``handler`` on one message; if it raises, drop its output and dead-letter ``msg``."""
    mark = out._mark()
    try:
        await handler(msg, out)
    except Exception as exc:
        out._rollback(mark)
        _report(log, msg, out, exc)


def _report(log: Any, msg: Inbound[Any], out: Outbox, exc: Exception) -> None:
    log.warning(
        "handler failed; dead-lettered", subject=msg.subject, seq=msg.stream_seq, error=repr(exc)
    )
    out.dead_letter(msg, exc)


def per_message(
    handler: Callable[[Inbound[T], Outbox], Awaitable[None]],
) -> BatchHandler[T]:
    """Turn a one-message handler into a batch handler that isolates failures.

    Messages are handled in order; when one raises, what it queued is discarded and it is
    dead-lettered, and the batch goes on with the next message.
    """

    async def run(batch: Sequence[Inbound[T]], out: Outbox) -> None:
        log = structlog.get_logger("orrange.runtime")
        for msg in batch:
            await _isolated(handler, msg, out, log)

    return run


@dataclass(frozen=True)
class Input(Generic[T]):
    """One input of an actor: a durable pull consumer, its message type and its handler.

    Attributes:
        consumer: the durable pull consumer (created or updated at start).
        type: what messages decode to (any msgspec-supported type, e.g. a tagged union).
        handler: ``async (batch, outbox) -> None``.
        batch_size: overrides :attr:`ActorConfig.batch_size` for this input.
        linger_ms: when a fetch brings less than a full batch, keep fetching for up to this
            long (ms) before handling it. For inputs off the latency path whose handling
            costs per batch (a database transaction): fewer, fuller batches at moderate rates.
    """

    consumer: ConsumerSpec
    type: Any
    handler: BatchHandler[T]
    batch_size: int | None = None
    linger_ms: int = 0
    _decoder: msgspec.json.Decoder[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_decoder", msgspec.json.Decoder(self.type))


class Heartbeat(msgspec.Struct, frozen=True):
    """Published on ``heartbeat.<actor>`` every ``heartbeat_interval_ms`` (core NATS).

    Attributes:
        actor: actor name.
        ts: ms since the Unix epoch (UTC).
        pid: process id.
        started: ms UTC when the actor started.
        messages_in: input messages handled since start.
        messages_out: messages published since start.
    """

    actor: str
    ts: int
    pid: int
    started: int
    messages_in: int
    messages_out: int


def _ack_fields(reply: str) -> tuple[int, int, int, int]:
    """(num_delivered, stream_seq, timestamp_ns, num_pending) from a JetStream ack subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`` or the v2 form
    with ``<domain>.<account hash>`` after ``$JS.ACK`` and a trailing token.

    Raises:
        ValueError: not a JetStream ack subject.
    """
    t = reply.split(".")
    if len(t) == 9:
        return int(t[4]), int(t[5]), int(t[7]), int(t[8])
    if len(t) >= 11 and t[0] == "$JS" and t[1] == "ACK":
        return int(t[6]), int(t[7]), int(t[9]), int(t[10])
    raise ValueError(f"not a JetStream ack subject: {reply!r}")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Actor:
    """Base class of every actor process; see the module docstring for the processing loop.

    Subclasses override :meth:`streams`, :meth:`inputs`, and optionally :meth:`on_start` /
    :meth:`on_stop`. After :meth:`start` they may use :attr:`nc`, :attr:`js`,
    :attr:`publisher`, :attr:`log`, :attr:`lock` and :meth:`spawn`.

    Args:
        config: the actor's configuration.
    """

    def __init__(self, config: ActorConfig) -> None:
        self.config = config
        self.name = config.name
        self.log: Any = structlog.get_logger("orrange.actor").bind(actor=config.name)
        self.metrics = ActorMetrics(config.name)
        self.lock = asyncio.Lock()
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._publisher: Publisher | None = None
        self._server: MetricsServer | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._started_ms = 0
        self._last_heartbeat_ms = 0
        self._ready = False
        self._on_start_done = False
        self._count_in = 0
        self._count_out = 0

    # -- to override ---------------------------------------------------------------------

    def streams(self) -> Sequence[StreamSpec]:
        """Streams this actor reads or writes; provisioned (create-or-update) at start."""
        return ()

    def inputs(self) -> Sequence[Input[Any]]:
        """The actor's inputs; each gets its own fetch loop.

        Called after :meth:`on_start`, so an actor that restored a snapshot can resume its
        input from the next sequence (``ConsumerSpec(start_seq=..., recreate=True)``).
        """
        return ()

    async def on_start(self) -> None:
        """Called once streams exist and before :meth:`inputs` (restore state here)."""

    async def on_stop(self) -> None:
        """Called after the last batch was acked, before the connection drains."""

    # -- accessors -----------------------------------------------------------------------

    @property
    def nc(self) -> NATS:
        """The NATS connection (after :meth:`start`)."""
        if self._nc is None:
            raise RuntimeError(f"actor {self.name} not started")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context (after :meth:`start`)."""
        if self._js is None:
            raise RuntimeError(f"actor {self.name} not started")
        return self._js

    @property
    def publisher(self) -> Publisher:
        """A :class:`Publisher` on this actor's connection, for publishes outside handlers."""
        if self._publisher is None:
            raise RuntimeError(f"actor {self.name} not started")
        return self._publisher

    @property
    def metrics_port(self) -> int | None:
        """Bound port of the metrics/probe server (None when disabled or not started)."""
        return self._server.port if self._server is not None else None

    @property
    def messages_in(self) -> int:
        """Input messages handled and acked since start."""
        return self._count_in

    @property
    def messages_out(self) -> int:
        """Messages published (and acked by JetStream) since start."""
        return self._count_out

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stopping.is_set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Run a background task (timers, snapshots) cancelled when the actor stops."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, provision, call :meth:`on_start`, start fetch loops, heartbeat and probes.

        Raises:
            nats.errors.NoServersError: NATS unreachable within ``connect_timeout_ms``.
            ProvisioningError: a stream or consumer could not be provisioned.
        """
        cfg = self.config
        if self._stopped.is_set():  # a restart after stop(); a stop requested during start holds
            self._stopping.clear()
            self._stopped.clear()
        self._started_ms = _now_ms()
        self.metrics.messages_out.labels(self.name)
        self.metrics.duplicates.labels(self.name)
        if cfg.metrics_port is not None:
            self._server = MetricsServer(
                self.metrics, cfg.metrics_host, cfg.metrics_port, self._live, self._readiness
            )
            await self._server.start()
        self._nc = await self._connect()
        self._js = self._nc.jetstream()
        self._publisher = Publisher(
            self._nc, timeout_ms=cfg.publish_timeout_ms, max_pending=cfg.max_publish_pending
        )
        await ensure_stream(self._js, dlq.dlq_stream_spec(cfg.duplicate_window_ms))
        for spec in self.streams():
            await ensure_stream(self._js, spec)
        await self.on_start()
        self._on_start_done = True
        inputs = list(self.inputs())
        for inp in inputs:
            await ensure_consumer(self._js, inp.consumer)
        for inp in inputs:
            self._loops.append(
                asyncio.create_task(self._consume(inp), name=f"{self.name}:{inp.consumer.durable}")
            )
        self.spawn(self._heartbeat_loop(), name=f"{self.name}:heartbeat")
        self._ready = True
        self.log.info(
            "actor started",
            nats=cfg.nats_url,
            inputs=[i.consumer.durable for i in inputs],
            metrics_port=self.metrics_port,
        )

    async def _connect(self) -> NATS:
        cfg = self.config
        deadline = time.monotonic() + cfg.connect_timeout_ms / 1000
        while True:
            try:
                return await nats.connect(
                    cfg.nats_url,
                    name=cfg.name,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    error_cb=self._on_nats_error,
                    disconnected_cb=self._on_disconnect,
                    reconnected_cb=self._on_reconnect,
                )
            except (nats.errors.NoServersError, OSError) as exc:
                if time.monotonic() > deadline:
                    raise
                self.log.warning("waiting for NATS", url=cfg.nats_url, error=repr(exc))
                await asyncio.sleep(0.5)

    async def _on_nats_error(self, exc: Exception) -> None:
        self.log.warning("nats error", error=repr(exc))

    async def _on_disconnect(self) -> None:
        if not self._stopping.is_set():
            self.log.warning("nats disconnected")

    async def _on_reconnect(self) -> None:
        self.log.info("nats reconnected")

    def request_stop(self) -> None:
        """Ask the actor to stop after the batch in hand (safe from signal handlers)."""
        self._stopping.set()

    async def stop(self) -> None:
        """Stop fetching, finish (publish and ack) the batch in hand, call :meth:`on_stop`,
        drain the connection, close the probe server. Idempotent."""
        self._stopping.set()
        if self._loops:
            await asyncio.gather(*self._loops, return_exceptions=True)
            self._loops = []
        self._ready = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._nc is not None:
            try:
                if self._on_start_done:
                    self._on_start_done = False
                    await self.on_stop()
            finally:
                nc, self._nc = self._nc, None
                if not nc.is_closed:
                    with contextlib.suppress(Exception):
                        await nc.drain()
        if self._server is not None:
            await self._server.stop()
            self._server = None
        if not self._stopped.is_set():
            self.log.info("actor stopped", messages_in=self._count_in, messages_out=self._count_out)
        self._stopped.set()

    async def run(self) -> None:
        """:meth:`start`, wait for a stop request, then :meth:`stop` (also when start fails).

        Raises:
            whatever :meth:`start` raises, after cleaning up.
        """
        try:
            await self.start()
            await self._stopping.wait()
        finally:
            await self.stop()

    # -- probes ---------------------------------------------------------------------------

    def _live(self) -> tuple[bool, str]:
        if self._stopped.is_set():
            return False, "stopped"
        nc = self._nc
        if nc is None or not nc.is_connected:
            return False, "nats not connected"
        limit = 3 * self.config.heartbeat_interval_ms
        age = _now_ms() - self._last_heartbeat_ms
        if age > limit:
            return False, f"last heartbeat {age} ms ago"
        return True, f"last heartbeat {age} ms ago"

    def _readiness(self) -> tuple[bool, str]:
        if not self._ready:
            return False, "starting" if not self._stopping.is_set() else "stopping"
        return self._live()

    async def _heartbeat_loop(self) -> None:
        interval = self.config.heartbeat_interval_ms / 1000
        subject = f"heartbeat.{self.name}"
        while True:
            now = _now_ms()
            self._last_heartbeat_ms = now
            self.metrics.last_heartbeat.labels(self.name).set(now / 1000)
            beat = Heartbeat(
                self.name, now, os.getpid(), self._started_ms, self._count_in, self._count_out
            )
            nc = self._nc
            if nc is not None and nc.is_connected:
                with contextlib.suppress(Exception):
                    await nc.publish(subject, encode(beat))
            await asyncio.sleep(interval)

    # -- the loop -------------------------------------------------------------------------

    async def _consume(self, inp: Input[Any]) -> None:
        spec = inp.consumer
        batch_size = inp.batch_size or self.config.batch_size
        timeout = self.config.fetch_timeout_ms / 1000
        labels = (self.name, spec.durable)
        m = self.metrics
        for counter in (m.messages_in, m.dead_letters, m.batch_failures):
            counter.labels(*labels)  # export zeros from the start
        lag = m.consumer_lag.labels(*labels)
        log = self.log.bind(consumer=spec.durable, stream=spec.stream)
        puller = PullConsumer(
            self.nc,
            spec.stream,
            spec.durable,
            batch=batch_size,
            expires_ms=self.config.fetch_timeout_ms,
        )
        await puller.start()
        # one publisher per loop: submit/flush batches of different inputs must not mix
        publisher = Publisher(
            self.nc,
            timeout_ms=self.config.publish_timeout_ms,
            max_pending=self.config.max_publish_pending,
        )
        reported: str | None = None
        try:
            while not self._stopping.is_set():
                try:
                    msgs = await puller.fetch(timeout)
                except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
                    if self._stopping.is_set():
                        break
                    log.error("connection closed under the consumer")
                    await asyncio.sleep(0.5)
                    continue
                except Exception as exc:
                    log.warning("fetch failed", error=repr(exc))
                    await asyncio.sleep(0.5)
                    continue
                if msgs and inp.linger_ms and len(msgs) < batch_size:
                    msgs += await self._linger(puller, batch_size - len(msgs), inp.linger_ms)
                if msgs:
                    await self._process(inp, msgs, publisher, labels, log)
                elif puller.last_error is not None:
                    if puller.last_error != reported:
                        log.warning("pull request refused", status=puller.last_error)
                    reported = puller.last_error
                    await asyncio.sleep(0.5)
                else:
                    lag.set(0)
        finally:
            # Drain: let outstanding pull requests end, handle and ack what they delivered.
            rest = await puller.close(timeout + 1.0)
            for i in range(0, len(rest), batch_size):
                if self._nc is None or not self._nc.is_connected:
                    break
                await self._process(inp, rest[i : i + batch_size], publisher, labels, log)

    async def _linger(self, puller: PullConsumer, room: int, linger_ms: int) -> list[Msg]:
        """More messages (at most ``room``) for up to ``linger_ms``, or until a stop request."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + linger_ms / 1000
        more: list[Msg] = []
        while len(more) < room and not self._stopping.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                more += await puller.fetch(remaining, room - len(more))
            except Exception:
                break  # the main loop's next fetch reports it
        return more

    async def _process(
        self,
        inp: Input[Any],
        msgs: list[Msg],
        publisher: Publisher,
        labels: tuple[str, str],
        log: Any,
    ) -> None:
        t0 = time.perf_counter()
        m = self.metrics
        out = Outbox(self.name)
        batch: list[Inbound[Any]] = []
        decoder = inp._decoder
        stream = inp.consumer.stream
        pending = 0
        for msg in msgs:
            delivered, seq, ts_ns, pending = _ack_fields(msg.reply)
            try:
                data = decoder.decode(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("undecodable input; dead-lettered", subject=msg.subject, seq=seq)
                out._dead_raw(msg.subject, stream, seq, msg.data, exc)
                continue
            batch.append(
                Inbound(
                    data,
                    msg.subject,
                    stream,
                    seq,
                    delivered,
                    pending,
                    ts_ns,
                    msg.headers,
                    msg.data,
                )
            )
        if batch:
            if self.config.serialize_handlers:
                async with self.lock:
                    await self._call(inp, batch, out, log)
            else:
                await self._call(inp, batch, out, log)
        entries = out._items + out._dead
        try:
            if entries:
                for e in entries:
                    await publisher.submit(e.subject, e.payload, msg_id=None, headers=e.headers)
                acks = await publisher.flush()
                dups = sum(1 for a in acks if a.duplicate)
                if dups:
                    m.duplicates.labels(self.name).inc(dups)
        except (PublishError, nats.errors.Error) as exc:
            m.batch_failures.labels(*labels).inc()
            log.error("publishing failed; batch will be redelivered", error=str(exc))
            for msg in msgs:
                with contextlib.suppress(Exception):
                    await msg.nak(delay=1)
            await asyncio.sleep(0.2)
            return
        if inp.consumer.ack_policy == "all":
            await msgs[-1].ack()
        else:
            for msg in msgs:
                await msg.ack()
        n_in = len(msgs)
        self._count_in += n_in
        self._count_out += len(out._items)
        m.messages_in.labels(*labels).inc(n_in)
        if out._items:
            m.messages_out.labels(self.name).inc(len(out._items))
        if out._dead:
            m.dead_letters.labels(*labels).inc(len(out._dead))
        m.consumer_lag.labels(*labels).set(pending)
        m.batch_size.labels(*labels).observe(n_in)
        m.batch_seconds.labels(*labels).observe(time.perf_counter() - t0)

    async def _call(
        self, inp: Input[Any], batch: list[Inbound[Any]], out: Outbox, log: Any
    ) -> None:
        mark = out._mark()
        try:
            await inp.handler(batch, out)
            return
        except Exception as exc:
            out._rollback(mark)
            if len(batch) == 1:
                _report(log, batch[0], out, exc)
                return
            log.warning("batch handler failed; retrying one message at a time", error=repr(exc))
        handler = inp.handler

        async def one(msg: Inbound[Any], o: Outbox) -> None:
            await handler([msg], o)

        for msg in batch:
            await _isolated(one, msg, out, log)


#: Allocations between young-generation collections in an actor process (CPython's default
#: is 700). Batches allocate many short-lived tuples and structs; collecting every 700 of them
#: costs more than it frees.
GC_GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Set the process's garbage collector for batch work: collect the young generation every
    :data:`GC_GEN0_THRESHOLD` allocations and the old one rarely (reference counting frees
    almost everything; the collector only has cycles to find)."""
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 100)


def run_actor(actor: Actor, *, use_uvloop: bool = True) -> int:
    """Run ``actor`` until SIGTERM or SIGINT, then drain it; returns the exit code (0).

    For ``actors/<name>.py`` mains: ``sys.exit(run_actor(MyActor(config)))``.
    """

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, actor.request_stop)
        await actor.run()

    tune_gc()

    if use_uvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
    return 0
