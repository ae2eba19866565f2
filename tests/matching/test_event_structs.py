"""The compiled core builds its hot events at C level (see book.pxd): they must be exactly the
structs their constructors build, and must hold their fields without leaking them."""

from __future__ import annotations

import sys

import msgspec
from kit.book_helpers import BUY, SELL, lim, make_book

from orrange.matching import CancelOrder, Event, OrderBook
from orrange.matching.flow import BENCH_SPEC, synthetic_flow


def test_events_equal_the_same_events_built_by_their_constructors() -> None:
    book = OrderBook(BENCH_SPEC)
    seen = set()
    for c in synthetic_flow(3000, 7):
        for e in book.process(c):
            again = type(e)(*msgspec.structs.astuple(e))
            assert e == again and hash(e) == hash(again)
            raw = msgspec.json.encode(e)
            assert raw == msgspec.json.encode(again)
            assert msgspec.json.decode(raw, type=Event) == e
            assert msgspec.msgpack.decode(msgspec.msgpack.encode(e), type=Event) == e
            seen.add(type(e).__name__)
    assert {"OrderAccepted", "OrderFilled", "OrderCanceled", "BookDelta"} <= seen


def test_event_fields_are_released() -> None:
    maker = "".join(["ma", "ker"])  # fresh string objects, referenced only here and by the book
    taker = "".join(["ta", "ker"])
    book = make_book()
    before = (sys.getrefcount(maker), sys.getrefcount(taker))
    for i in range(50):
        ev = book.process(lim(SELL, 2, 100, user=maker, ts=i))
        ev = book.process(lim(BUY, 1, 100, user=taker, ts=i))  # fill, then rests nothing
        ev = book.process(CancelOrder(ts=i, user=maker, order_id=ev[1].maker_order_id))  # type: ignore[union-attr]
    del ev
    book.process(CancelOrder(ts=99, user="z", order_id=999))  # the book keeps its last output
    assert (sys.getrefcount(maker), sys.getrefcount(taker)) == before
    assert book.depth().asks == [] and book.depth().bids == []
