"""Declarative JetStream streams and durable pull consumers, provisioned idempotently.

A :class:`StreamSpec` / :class:`ConsumerSpec` says what must exist; :func:`ensure_stream` and
:func:`ensure_consumer` create it, or update it in place when it exists with another
configuration (create-or-update), so every actor can provision what it uses at start without
coordination. Durations are integer **milliseconds**.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import msgspec
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import APIError, NotFoundError

__all__ = [
    "DLQ_STREAM",
    "DLQ_SUBJECT_PREFIX",
    "ConsumerSpec",
    "ProvisioningError",
    "StreamSpec",
    "dlq_stream_spec",
    "ensure_consumer",
    "ensure_stream",
]

#: Stream holding dead letters of every actor (subjects ``dlq.<actor>``).
DLQ_STREAM = "DLQ"
DLQ_SUBJECT_PREFIX = "dlq"


class ProvisioningError(RuntimeError):
    """A stream or consumer could not be created or updated (e.g. an immutable field changed)."""


class StreamSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A JetStream stream.

    Attributes:
        name: stream name (``[A-Za-z0-9_-]``).
        subjects: subjects it captures (wildcards allowed), e.g. ``("evt.>",)``.
        storage: ``file`` (survives restarts) or ``memory``.
        retention: ``limits``, ``workqueue`` or ``interest``.
        max_age_ms: drop messages older than this (ms); 0 keeps them forever.
        max_msgs: keep at most this many messages; -1 unlimited.
        max_bytes: keep at most this many bytes; -1 unlimited.
        max_msgs_per_subject: per-subject cap (1 makes a last-value store); -1 unlimited.
        duplicate_window_ms: ``Nats-Msg-Id`` de-duplication window (ms).
        allow_direct: allow direct get (fast reads of the last message per subject).
        description: free text shown by ``nats stream info``.
    """

    name: str
    subjects: tuple[str, ...]
    storage: Literal["file", "memory"] = "file"
    retention: Literal["limits", "workqueue", "interest"] = "limits"
    max_age_ms: int = 0
    max_msgs: int = -1
    max_bytes: int = -1
    max_msgs_per_subject: int = -1
    duplicate_window_ms: int = 600_000
    allow_direct: bool = True
    description: str = ""

    def to_config(self) -> js_api.StreamConfig:
        """The nats-py ``StreamConfig`` for this spec."""
        return js_api.StreamConfig(
            name=self.name,
            description=self.description or None,
            subjects=list(self.subjects),
            storage=js_api.StorageType(self.storage),
            retention=js_api.RetentionPolicy(self.retention),
            max_age=self.max_age_ms / 1000.0,
            max_msgs=self.max_msgs,
            max_bytes=self.max_bytes,
            max_msgs_per_subject=self.max_msgs_per_subject,
            duplicate_window=self.duplicate_window_ms / 1000.0,
            allow_direct=self.allow_direct,
            num_replicas=1,
        )


class ConsumerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A durable pull consumer.

    Attributes:
        stream: the stream it reads.
        durable: durable name; the consumer's position survives restarts of actor and server.
        filter_subjects: subjects of the stream it receives; empty means all.
        ack_wait_ms: redeliver a delivered message not acked within this time (ms).
        max_deliver: give up redelivering after this many deliveries; -1 never gives up (the
            runtime dead-letters bad input itself, so only infrastructure failures redeliver).
        max_ack_pending: delivered-but-unacked messages allowed at once (>= batch size).
        deliver_policy: ``all`` (from the first message) or ``new`` (only later ones).
        ack_policy: ``explicit`` acks every message; ``all`` lets the runtime ack only the
            last message of a batch (one ack per batch, faster). Use ``all`` only when a single
            process reads the durable (one writer per book), since an ack covers every earlier
            delivery of the consumer.
        start_seq: deliver from this stream sequence on (overrides ``deliver_policy``).
        recreate: delete the consumer before creating it, dropping its position and its
            unacked deliveries. With ``start_seq`` this is how a stateful actor (a matcher)
            resumes strictly in order from its snapshot: the leftovers of a crashed instance
            would otherwise be redelivered only after ``ack_wait_ms``, behind newer messages.
        description: free text.
    """

    stream: str
    durable: str
    filter_subjects: tuple[str, ...] = ()
    ack_wait_ms: int = 30_000
    max_deliver: int = -1
    max_ack_pending: int = 20_000
    deliver_policy: Literal["all", "new"] = "all"
    ack_policy: Literal["explicit", "all"] = "explicit"
    start_seq: int | None = None
    recreate: bool = False
    description: str = ""

    def to_config(self) -> js_api.ConsumerConfig:
        """The nats-py ``ConsumerConfig`` for this spec."""
        subjects = list(self.filter_subjects)
        return js_api.ConsumerConfig(
            durable_name=self.durable,
            name=self.durable,
            description=self.description or None,
            ack_policy=js_api.AckPolicy(self.ack_policy),
            ack_wait=self.ack_wait_ms / 1000.0,
            max_deliver=self.max_deliver,
            max_ack_pending=self.max_ack_pending,
            deliver_policy=(
                js_api.DeliverPolicy.BY_START_SEQUENCE
                if self.start_seq is not None
                else js_api.DeliverPolicy(self.deliver_policy)
            ),
            opt_start_seq=self.start_seq,
            filter_subject=subjects[0] if len(subjects) == 1 else None,
            filter_subjects=subjects if len(subjects) > 1 else None,
        )


def dlq_stream_spec(duplicate_window_ms: int = 600_000) -> StreamSpec:
    """The shared dead-letter stream ``DLQ`` on ``dlq.>`` (file storage, kept 30 days)."""
    return StreamSpec(
        name=DLQ_STREAM,
        subjects=(f"{DLQ_SUBJECT_PREFIX}.>",),
        max_age_ms=30 * 24 * 3600 * 1000,
        duplicate_window_ms=duplicate_window_ms,
        description="dead letters: undecodable or failing input of actors, with the error",
    )


async def ensure_stream(js: JetStreamContext, spec: StreamSpec) -> js_api.StreamInfo:
    """Create the stream, or update it when it exists with another configuration.

    Returns the stream info after provisioning; calling it again is a no-op.

    Raises:
        ProvisioningError: the server refused (e.g. storage type change, overlapping subjects).
    """
    cfg = spec.to_config()
    try:
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            try:
                return await js.add_stream(cfg)
            except APIError as exc:
                if exc.err_code != 10058:  # stream name already in use (a concurrent create)
                    raise
        return await js.update_stream(cfg)
    except APIError as exc:
        raise ProvisioningError(f"stream {spec.name}: {exc.description or exc}") from exc


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> js_api.ConsumerInfo:
    """Create the durable consumer, or update it in place when its configuration changed.

    Returns the consumer info; calling it again is a no-op. The consumer's delivery position is
    kept across updates, unless ``spec.recreate`` asks for a fresh consumer.

    Raises:
        ProvisioningError: the server refused (e.g. the stream does not exist, or an immutable
            field such as ``deliver_policy`` changed).
    """
    try:
        if spec.recreate:
            with contextlib.suppress(NotFoundError):
                await js.delete_consumer(spec.stream, spec.durable)
        return await js.add_consumer(spec.stream, spec.to_config())
    except APIError as exc:
        raise ProvisioningError(
            f"consumer {spec.stream}/{spec.durable}: {exc.description or exc}"
        ) from exc
