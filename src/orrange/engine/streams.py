"""The engine's shared streams and subjects (the wire contract of ``docs/architecture.md``).

Every actor provisions the streams it touches with :func:`orrange.runtime.ensure_stream`; the
specs here are the single definition so that all of them ask for the same configuration.

======== =================== ===================================================================
Stream   Subjects            Content
======== =================== ===================================================================
CMD      ``cmd.order.<SYM>`` order commands from the API (risk reads them, durable ``risk``)
BOOK_IN  ``book.in.<SYM>``   commands risk accepted (matcher reads them, durable
                             ``matcher-<SYM>``)
EVENTS   ``evt.<SYM>``       every book event (``Nats-Msg-Id`` ``<SYM>:<seq>``)
REJECTS  ``rej.<SYM>``       risk's ``OrderRejected`` with ``seq = 0`` (``rej:<input id>``)
======== =================== ===================================================================

Book queries are core NATS request/reply on ``book.query.<SYM>``; the matcher snapshots into the
KV bucket :data:`SNAPSHOT_BUCKET`, risk keeps client order ids in :data:`CLIENT_ORDERS_BUCKET`.
Durations are integer milliseconds.
"""

from __future__ import annotations

from orrange.runtime import StreamSpec

__all__ = [
    "BOOK_IN",
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
    "book_in_subject",
    "book_query_subject",
    "cmd_subject",
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
