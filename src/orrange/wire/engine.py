"""The order pipeline's streams, subjects, message ids and batch encodings.

Every actor provisions the streams it touches with :func:`orrange.runtime.ensure_stream`; the
specs here are the single definition so that all of them ask for the same configuration.

======== =================== ===================================================================
Stream   Subjects            Content
======== =================== ===================================================================
CMD      ``cmd.order.<SYM>`` order commands from the API, one per message (risk reads them,
                             durable ``risk``; ``Nats-Msg-Id`` :func:`submit_msg_id` /
                             :func:`command_msg_id`)
BOOK_IN  ``book.in.<SYM>``   commands risk accepted, many per message (:data:`BookInPayload`;
                             matcher reads them, durable ``matcher-<SYM>``;
                             :func:`book_in_msg_id`)
EVENTS   ``evt.<SYM>``       every book event, many per message (:data:`EventPayload`,
                             :func:`events_msg_id`); risk (``risk-events``), the persister
                             (``persister``), the feed, the alerter and the escrow watcher
                             read it
REJECTS  ``rej.<SYM>``       risk's ``OrderRejected`` with ``seq = 0`` (:func:`rejection_msg_id`;
                             the persister reads them, durable ``persister-rejects``)
======== =================== ===================================================================

**Batched payloads.** JetStream costs about the same per message whatever its size, so the
hops inside the engine carry batches:

* ``evt.<SYM>``: a JSON array of the events of one matcher batch of that symbol, in ``seq``
  order with no gap (or, from older producers and tests, one event object). Decode it with
  :func:`decode_events`. A consumer must ignore an event whose ``seq`` is not above the last
  one it applied for the symbol: after a publish timeout the matcher re-publishes what
  ``EVENTS`` lacks, and a batch that was stored late can then appear twice with different
  boundaries.
* ``book.in.<SYM>``: a JSON array of ``[cmd_seq, command]`` pairs, ``cmd_seq`` being the
  ``CMD`` stream sequence the command came from (increasing within a symbol), or one bare
  command object (``cmd_seq`` unknown; tools and tests). Decode with :func:`decode_book_in`. The
  matcher applies a pair only if its ``cmd_seq`` is above the last one it applied, so a batch
  that risk forwards again after a crash, with other boundaries, applies nothing twice.

Book queries are core NATS request/reply on ``book.query.<SYM>``; the matcher snapshots into the
KV bucket :data:`SNAPSHOT_BUCKET`, risk keeps client order ids in :data:`CLIENT_ORDERS_BUCKET`.
Durations are integer milliseconds.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import msgspec

from orrange.matching import Command, Event
from orrange.wire.spec import StreamSpec

__all__ = [
    "BOOK_IN",
    "BOOK_IN_MAX_BYTES",
    "BOOK_IN_PREFIX",
    "BOOK_QUERY_PREFIX",
    "CLIENT_ORDERS_BUCKET",
    "CLIENT_ORDERS_KV_PREFIX",
    "CMD",
    "CMD_PREFIX",
    "DUPLICATE_WINDOW_MS",
    "ENGINE_STREAMS",
    "EVENTS",
    "EVENTS_PREFIX",
    "PERSISTER_EVENTS_DURABLE",
    "PERSISTER_REJECTS_DURABLE",
    "REJECTS",
    "REJECTS_PREFIX",
    "RISK_DURABLE",
    "RISK_EVENTS_DURABLE",
    "SNAPSHOT_BUCKET",
    "BookInPayload",
    "EventPayload",
    "book_in_messages",
    "book_in_msg_id",
    "book_in_subject",
    "book_query_subject",
    "cmd_subject",
    "command_msg_id",
    "decode_book_in",
    "decode_events",
    "encode_book_in",
    "events_msg_id",
    "events_subject",
    "lobster_msg_id",
    "matcher_durable",
    "reference_msg_id",
    "rejection_msg_id",
    "rejects_subject",
    "seq_id",
    "submit_msg_id",
]

#: De-duplication window of the engine streams (ms): one hour, far longer than any replay after
#: a crash (a matcher replays at most the commands since its last snapshot).
DUPLICATE_WINDOW_MS = 3_600_000

CMD_PREFIX = "cmd.order"
BOOK_IN_PREFIX = "book.in"
EVENTS_PREFIX = "evt"
REJECTS_PREFIX = "rej"
BOOK_QUERY_PREFIX = "book.query"

#: JetStream KV bucket of matcher snapshots (key ``<SYM>``).
SNAPSHOT_BUCKET = "snapshots"
#: JetStream KV bucket of seen client order ids (key ``<user>.<client_order_id>``).
CLIENT_ORDERS_BUCKET = "client_orders"
#: Subject prefix of the keys of :data:`CLIENT_ORDERS_BUCKET` (``$KV.client_orders.<key>``).
CLIENT_ORDERS_KV_PREFIX = f"$KV.{CLIENT_ORDERS_BUCKET}."

#: Risk's durable on ``CMD`` and its durable on ``EVENTS`` (open-order counts, last prices).
RISK_DURABLE = "risk"
RISK_EVENTS_DURABLE = "risk-events"
#: The persister's durables on ``EVENTS`` and ``REJECTS``.
PERSISTER_EVENTS_DURABLE = "persister"
PERSISTER_REJECTS_DURABLE = "persister-rejects"

CMD = StreamSpec(
    name="CMD",
    subjects=(f"{CMD_PREFIX}.>",),
    duplicate_window_ms=DUPLICATE_WINDOW_MS,
    description="order commands from the API (SubmitOrder, CancelOrder, AmendOrder, CancelAll)",
)
BOOK_IN = StreamSpec(
    name="BOOK_IN",
    subjects=(f"{BOOK_IN_PREFIX}.>",),
    duplicate_window_ms=DUPLICATE_WINDOW_MS,
    description="commands accepted by risk, in the order each book applies them",
)
EVENTS = StreamSpec(
    name="EVENTS",
    subjects=(f"{EVENTS_PREFIX}.>",),
    duplicate_window_ms=DUPLICATE_WINDOW_MS,
    description="every book event; Nats-Msg-Id <SYM>:<seq>",
)
REJECTS = StreamSpec(
    name="REJECTS",
    subjects=(f"{REJECTS_PREFIX}.>",),
    duplicate_window_ms=DUPLICATE_WINDOW_MS,
    description="OrderRejected (seq 0) of commands risk refused",
)

#: Every stream above, in pipeline order.
ENGINE_STREAMS: tuple[StreamSpec, ...] = (CMD, BOOK_IN, EVENTS, REJECTS)


def cmd_subject(symbol: str) -> str:
    """``cmd.order.<SYM>``: where the API publishes the commands of ``symbol``."""
    return f"{CMD_PREFIX}.{symbol}"


def book_in_subject(symbol: str) -> str:
    """``book.in.<SYM>``: the sequenced input of the book of ``symbol``."""
    return f"{BOOK_IN_PREFIX}.{symbol}"


def events_subject(symbol: str) -> str:
    """``evt.<SYM>``: the events of the book of ``symbol``."""
    return f"{EVENTS_PREFIX}.{symbol}"


def rejects_subject(symbol: str) -> str:
    """``rej.<SYM>``: risk's rejections of commands for ``symbol``."""
    return f"{REJECTS_PREFIX}.{symbol}"


def book_query_subject(symbol: str) -> str:
    """``book.query.<SYM>``: core NATS request/reply answering the ``L2Book`` of ``symbol``."""
    return f"{BOOK_QUERY_PREFIX}.{symbol}"


def matcher_durable(symbol: str) -> str:
    """``matcher-<SYM>``: the matcher's durable consumer name on ``BOOK_IN`` for ``symbol``."""
    return f"matcher-{symbol}"


def submit_msg_id(user: str, client_order_id: str) -> str:
    """``<user>:<client_order_id>``: the ``Nats-Msg-Id`` of a submit on ``cmd.order.<SYM>``
    (JetStream drops a second submit of the same pair within :data:`DUPLICATE_WINDOW_MS`)."""
    return f"{user}:{client_order_id}"


def command_msg_id(user: str, request_id: str) -> str:
    """``<user>:<request id>``: the ``Nats-Msg-Id`` of a cancel, amend or cancel-all on
    ``cmd.order.<SYM>`` (``request_id`` unique per request, e.g. a UUID4 in hex)."""
    return f"{user}:{request_id}"


def lobster_msg_id(symbol: str, index: int) -> str:
    """``lobster:<SYM>:<index>``: the ``Nats-Msg-Id`` of the ``index``-th (0-based) command of a
    LOBSTER replay on ``cmd.order.<SYM>``, so replaying the same file again stores nothing."""
    return f"lobster:{symbol}:{index}"


def reference_msg_id(symbol: str, ts: int) -> str:
    """``ref:<SYM>:<ts>``: the ``Nats-Msg-Id`` of the feed's ``SetReferencePrice`` of ``symbol``
    at ``ts`` (ms UTC) on ``book.in.<SYM>``."""
    return f"ref:{symbol}:{ts}"


def seq_id(stream: str, stream_seq: int) -> str:
    """``<stream>:<stream seq>``: the id of an input message that carries no ``Nats-Msg-Id``
    (risk's ``CMD:<seq>`` in :func:`rejection_msg_id`, the persister's key of a rejection)."""
    return f"{stream}:{stream_seq}"


def book_in_msg_id(symbol: str, first_cmd_seq: int, last_cmd_seq: int) -> str:
    """``in:<SYM>:<first cmd_seq>-<last cmd_seq>``: the ``Nats-Msg-Id`` of a ``book.in.<SYM>``
    batch (the ``CMD`` sequences of its first and last commands)."""
    return f"in:{symbol}:{first_cmd_seq}-{last_cmd_seq}"


def events_msg_id(symbol: str, first_seq: int) -> str:
    """``<SYM>:<first seq>``: the ``Nats-Msg-Id`` of an ``evt.<SYM>`` batch (the book ``seq`` of
    its first event)."""
    return f"{symbol}:{first_seq}"


def rejection_msg_id(input_id: str) -> str:
    """``rej:<input id>``: the ``Nats-Msg-Id`` of risk's rejection on ``rej.<SYM>`` of the
    command whose ``Nats-Msg-Id`` is ``input_id`` (or :func:`seq_id`); also the
    rejection's key in the persister's ``rejections`` table."""
    return f"rej:{input_id}"


#: Wire type of ``evt.<SYM>``: a batch of events (or one event).
EventPayload: TypeAlias = Event | list[Event]
#: Wire type of ``book.in.<SYM>``: ``[cmd_seq, command]`` pairs (or one bare command).
BookInPayload: TypeAlias = Command | list[tuple[int, Command]]

_events_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(EventPayload)
_book_in_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(BookInPayload)
_json = msgspec.json.Encoder()


def decode_events(data: bytes) -> list[Event]:
    """The events of one ``evt.<SYM>`` message, in ``seq`` order.

    Raises:
        msgspec.DecodeError, msgspec.ValidationError: not an event nor an array of events.
    """
    value = _events_decoder.decode(data)
    return value if isinstance(value, list) else [value]


def decode_book_in(data: bytes) -> list[tuple[int, Command]]:
    """The ``(cmd_seq, command)`` pairs of one ``book.in.<SYM>`` message; ``cmd_seq`` is 0 for a
    bare command (always applied).

    Raises:
        msgspec.DecodeError, msgspec.ValidationError: not a command nor an array of pairs.
    """
    value = _book_in_decoder.decode(data)
    return value if isinstance(value, list) else [(0, value)]


def encode_book_in(pairs: list[tuple[int, Command]]) -> bytes:
    """JSON of a ``book.in.<SYM>`` batch (see :func:`decode_book_in`)."""
    return _json.encode(pairs)


#: :func:`book_in_messages` splits above this many bytes (NATS's default max payload: 1 MiB).
BOOK_IN_MAX_BYTES = 512 * 1024


def book_in_messages(
    items: list[tuple[int, bytes]], max_bytes: int = BOOK_IN_MAX_BYTES
) -> list[tuple[bytes, int, int]]:
    """``book.in.<SYM>`` payloads of ``(cmd_seq, command JSON)`` items, without re-encoding.

    Args:
        items: ``(cmd_seq, the command's JSON bytes)`` in ``CMD`` order (non-empty).
        max_bytes: a message is split before it would exceed this; a single larger command
            goes alone.

    Returns:
        ``(payload, first cmd_seq, last cmd_seq)`` per message, in order.
    """
    out: list[tuple[bytes, int, int]] = []
    parts: list[bytes] = []
    first = items[0][0]
    last = first
    size = 2
    for seq, payload in items:
        part = b"[%d,%s]" % (seq, payload)
        if parts and size + len(part) + 1 > max_bytes:
            out.append((b"[" + b",".join(parts) + b"]", first, last))
            parts, first, size = [], seq, 2
        parts.append(part)
        size += len(part) + 1
        last = seq
    out.append((b"[" + b",".join(parts) + b"]", first, last))
    return out
