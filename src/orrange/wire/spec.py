"""Declarations of JetStream streams and durable pull consumers (pure data, no NATS client).

A :class:`StreamSpec` / :class:`ConsumerSpec` says what must exist;
:func:`orrange.runtime.ensure_stream` and :func:`orrange.runtime.ensure_consumer` create it, or
update it in place (create-or-update). Durations are integer **milliseconds**.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["ConsumerSpec", "StreamSpec"]


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
