"""The matcher's output on a real nats-server, and the same commands run through the pure core.

The market is ``BENCH_SPEC`` (``SYM``); events compare as their JSON bytes.
"""

from __future__ import annotations

import msgspec
import nats
from nats.aio.client import Client as NATS

from orrange.matching import Command, OrderBook
from orrange.matching.flow import BENCH_SPEC
from orrange.wire.engine import EVENTS, decode_events, events_subject

SYM = BENCH_SPEC.symbol
_enc = msgspec.json.Encoder()


async def last_seq(nc: NATS, symbol: str = SYM) -> int:
    js = nc.jetstream()
    try:
        raw = await js.get_last_msg(EVENTS.name, events_subject(symbol))
    except nats.js.errors.NotFoundError:
        return 0
    events = decode_events(raw.data or b"")
    return events[-1].seq if events else 0


async def read_events(nc: NATS, symbol: str = SYM) -> list[bytes]:
    """Every event on ``evt.<symbol>`` in stream order, each as its own JSON (the messages
    carry batches of events)."""
    js = nc.jetstream()
    info = await js.stream_info(EVENTS.name, subjects_filter=events_subject(symbol))
    total = (info.state.subjects or {}).get(events_subject(symbol), 0)
    sub = await js.subscribe(events_subject(symbol), ordered_consumer=True)
    out = []
    try:
        for _ in range(total):
            msg = await sub.next_msg(timeout=10)
            out.extend(_enc.encode(e) for e in decode_events(msg.data))
    finally:
        await sub.unsubscribe()
    return out


def pure_events(cmds: list[Command]) -> list[bytes]:
    book = OrderBook(BENCH_SPEC)
    enc = msgspec.json.Encoder()
    return [enc.encode(e) for c in cmds for e in book.process(c)]
