"""Dead letters: the shared stream ``DLQ`` (subjects ``dlq.<actor>``).

A dead letter's payload is the original message's bytes (or one item of a batch message); its
headers say what failed and where it came from (:data:`ERROR_HEADER` ... :data:`SOURCE_SEQ_HEADER`).
Its ``Nats-Msg-Id`` is :func:`dead_letter_msg_id`, so dead-lettering the same input again is
dropped by JetStream.
"""

from __future__ import annotations

from orrange.wire.spec import StreamSpec

__all__ = [
    "ACTOR_HEADER",
    "DLQ_STREAM",
    "DLQ_SUBJECT_PREFIX",
    "ERROR_HEADER",
    "ERROR_TYPE_HEADER",
    "SOURCE_SEQ_HEADER",
    "SOURCE_STREAM_HEADER",
    "SOURCE_SUBJECT_HEADER",
    "dead_letter_msg_id",
    "dlq_stream_spec",
    "dlq_subject",
]

#: Stream holding dead letters of every actor (subjects ``dlq.<actor>``).
DLQ_STREAM = "DLQ"
DLQ_SUBJECT_PREFIX = "dlq"

#: The error text (whitespace collapsed, at most 1,000 characters).
ERROR_HEADER = "Orrange-Error"
#: The exception's class name, or ``Rejected`` for an error given as text.
ERROR_TYPE_HEADER = "Orrange-Error-Type"
#: The actor that dead-lettered the message.
ACTOR_HEADER = "Orrange-Actor"
#: Subject, stream and stream sequence of the original message.
SOURCE_SUBJECT_HEADER = "Orrange-Source-Subject"
SOURCE_STREAM_HEADER = "Orrange-Source-Stream"
SOURCE_SEQ_HEADER = "Orrange-Source-Seq"

#: How long ``DLQ`` keeps dead letters (ms): 30 days.
_DLQ_MAX_AGE_MS = 30 * 24 * 3600 * 1000


def dlq_stream_spec(duplicate_window_ms: int = 600_000) -> StreamSpec:
    """The shared dead-letter stream ``DLQ`` on ``dlq.>`` (file storage, kept 30 days)."""
    return StreamSpec(
        name=DLQ_STREAM,
        subjects=(f"{DLQ_SUBJECT_PREFIX}.>",),
        max_age_ms=_DLQ_MAX_AGE_MS,
        duplicate_window_ms=duplicate_window_ms,
        description="dead letters: undecodable or failing input of actors, with the error",
    )


def dlq_subject(actor: str) -> str:
    """``dlq.<actor>``: where ``actor`` sends its dead letters."""
    return f"{DLQ_SUBJECT_PREFIX}.{actor}"


def dead_letter_msg_id(actor: str, stream: str, seq: int, part: int | None = None) -> str:
    """``dlq:<actor>:<stream>:<seq>`` (``:<part>`` appended for item ``part``, 0-based, of a
    batch message): the ``Nats-Msg-Id`` of a dead letter of input ``stream`` sequence ``seq``."""
    msg_id = f"dlq:{actor}:{stream}:{seq}"
    return msg_id if part is None else f"{msg_id}:{part}"
