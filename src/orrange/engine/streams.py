"""The engine's shared streams and subjects (the wire contract of ``docs/architecture.md``).

Every actor provisions the streams it touches with :func:`orrange.runtime.ensure_stream`; the
specs here are the single definition so that all of them ask for the same configuration.

======== =================== ===================================================================
Stream   Subjects            Content
======== =================== ===================================================================
CMD      ``cmd.order.<SYM>`` order commands from the API, one per message (risk reads them,
                             durable ``risk``)
BOOK_IN  ``book.in.<SYM>``   commands risk accepted, many per message (:data:`BookInPayload`;
                             matcher reads them, durable ``matcher-<SYM>``)
EVENTS   ``evt.<SYM>``       every book event, many per message (:data:`EventPayload`,
                             ``Nats-Msg-Id`` ``<SYM>:<first seq>``)
REJECTS  ``rej.<SYM>``       risk's ``OrderRejected`` with ``seq = 0`` (``rej:<input id>``)
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
from orrange.runtime import StreamSpec

__all__ = [
    "BOOK_IN",
    "BOOK_IN_MAX_BYTES",
    "BOOK_IN_PREFIX",
    "BOOK_QUERY_PREFIX",
    "CLIENT_ORDERS_BUCKET",
    "CMD",
    "CMD_PREFIX",
    "DUPLICATE_WINDOW_MS",
    "ENGINE_STREAMS",
    "EVENTS",
    "EVENTS_PREFIX",
    "REJECTS",
    "REJECTS_PREFIX",
    "SNAPSHOT_BUCKET",
    "BookInPayload",
    "EventPayload",
    "book_in_messages",
    "book_in_subject",
    "book_query_subject",
    "cmd_subject",
    "decode_book_in",
    "decode_events",
    "encode_book_in",
    "events_subject",
    "matcher_durable",
    "rejects_subject",
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
