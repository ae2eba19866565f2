"""Amend, cancel, cancel-all, halt and resume."""

from __future__ import annotations

from kit.book_helpers import (
    BUY,
    SELL,
    accepted_id,
    fills,
    l3_ids,
    lim,
    make_book,
    mkt,
    of,
    one,
    types,
)

from orrange.matching import (
    AmendOrder,
    BookDelta,
    BookStatus,
    CancelAll,
    CancelOrder,
    CancelReason,
    Halt,
    OrderAmended,
    OrderCanceled,
    OrderRejected,
    OrderTriggered,
    OrderType,
    RejectReason,
    Resume,
    SetReferencePrice,
    SubmitOrder,
    TriggerSource,
)


def _three_bids():  # type: ignore[no-untyped-def]
    book = make_book()
    for u in ("a", "b", "c"):
        book.process(lim(BUY, 10, 100, user=u))
    return book


def test_amend_quantity_down_keeps_priority() -> None:
    book = _three_bids()
    ev = book.process(AmendOrder(ts=2, user="a", order_id=1, quantity=4))
    assert types(ev) == ["OrderAmended", "BookDelta"]
    am = ev[0]
    assert (am.order_id, am.price, am.quantity, am.leaves, am.priority_kept) == (1, 100, 4, 4, True)
    assert (ev[1].price, ev[1].size) == (100, 24)
    assert l3_ids(book, BUY, 100) == [1, 2, 3]
    ev = book.process(lim(SELL, 5, 100, user="s"))
    assert fills(ev) == [(1, 4, 100, 4), (2, 4, 100, 1)]


def test_amend_quantity_up_loses_priority() -> None:
    book = _three_bids()
    ev = book.process(AmendOrder(ts=2, user="a", order_id=1, quantity=12))
    am = one(ev, OrderAmended)
    assert not am.priority_kept and am.leaves == 12
    assert l3_ids(book, BUY, 100) == [2, 3, 1]
    assert book.depth().bids == [(100, 32)]


def test_amend_price_change_loses_priority_and_moves_level() -> None:
    book = _three_bids()
    book.process(lim(BUY, 1, 99, user="d"))  # 4
    ev = book.process(AmendOrder(ts=2, user="b", order_id=2, price=99))
    assert not one(ev, OrderAmended).priority_kept
    assert l3_ids(book, BUY, 100) == [1, 3] and l3_ids(book, BUY, 99) == [4, 2]
    assert book.depth().bids == [(100, 20), (99, 11)]
    ds = of(ev, BookDelta)
    assert [(d.price, d.size) for d in ds] == [(100, 20), (99, 11)]


def test_amend_price_back_to_same_level_still_goes_to_back() -> None:
    book = _three_bids()
    book.process(AmendOrder(ts=2, user="a", order_id=1, quantity=10, price=100))
    # same price and quantity: nothing lost
    assert l3_ids(book, BUY, 100) == [1, 2, 3]


def test_amend_after_partial_fill_counts_total_quantity() -> None:
    book = _three_bids()
    book.process(lim(SELL, 6, 100, user="s"))  # order 1: filled 6, leaves 4
    ev = book.process(AmendOrder(ts=3, user="a", order_id=1, quantity=8))
    am = one(ev, OrderAmended)
    assert (am.quantity, am.leaves, am.priority_kept) == (8, 2, True)
    ev = book.process(AmendOrder(ts=3, user="a", order_id=1, quantity=6))
    assert one(ev, OrderRejected).reason is RejectReason.INVALID_AMEND
    assert book.order(1).leaves == 2  # type: ignore[union-attr]


def test_amend_crossing_price_trades_as_cancel_replace() -> None:
    book = make_book()
    book.process(lim(SELL, 3, 105, user="s"))  # 1
    book.process(lim(BUY, 5, 100, user="b"))  # 2
    ev = book.process(AmendOrder(ts=2, user="b", order_id=2, price=106))
    assert types(ev)[0] == "OrderAmended"
    assert fills(ev) == [(1, 2, 105, 3)]
    assert book.depth().bids == [(106, 2)] and book.depth().asks == []
    assert book.last_price == 105


def test_amend_post_only_that_would_cross_is_rejected() -> None:
    book = make_book()
    book.process(lim(SELL, 3, 105, user="s"))
    book.process(lim(BUY, 5, 100, user="b", post_only=True))
    ev = book.process(AmendOrder(ts=2, user="b", order_id=2, price=105))
    assert one(ev, OrderRejected).reason is RejectReason.POST_ONLY_WOULD_CROSS
    assert book.depth().bids == [(100, 5)]


def test_amend_rejections() -> None:
    book = make_book(max_qty="50", min_notional="100")
    book.process(lim(BUY, 5, 100, user="b"))
    cases = [
        (AmendOrder(ts=2, user="b", order_id=1), RejectReason.INVALID_AMEND),
        (AmendOrder(ts=2, user="b", order_id=1, price=0), RejectReason.INVALID_PRICE),
        (AmendOrder(ts=2, user="b", order_id=1, quantity=0), RejectReason.INVALID_AMEND),
        (AmendOrder(ts=2, user="b", order_id=1, quantity=51), RejectReason.ABOVE_MAX_QTY),
        (AmendOrder(ts=2, user="b", order_id=1, price=10), RejectReason.BELOW_MIN_NOTIONAL),
        (AmendOrder(ts=2, user="x", order_id=1, quantity=2), RejectReason.NOT_OWNER),
        (AmendOrder(ts=2, user="b", order_id=9, quantity=2), RejectReason.UNKNOWN_ORDER),
    ]
    for cmd, reason in cases:
        ev = book.process(cmd)
        r = one(ev, OrderRejected)
        assert r.reason is reason and r.command == "amend" and len(ev) == 1, cmd
    assert book.order(1).quantity == 5  # type: ignore[union-attr]


def test_amend_below_min_qty_is_rejected() -> None:
    book = make_book(min_qty="3")
    book.process(lim(BUY, 5, 100, user="b"))
    ev = book.process(AmendOrder(ts=2, user="b", order_id=1, quantity=2))
    r = one(ev, OrderRejected)
    assert r.reason is RejectReason.BELOW_MIN_QTY and r.command == "amend" and len(ev) == 1
    assert book.order(1).quantity == 5  # type: ignore[union-attr]
    # down to the minimum itself is fine and keeps priority
    ev = book.process(AmendOrder(ts=3, user="b", order_id=1, quantity=3))
    assert one(ev, OrderAmended).priority_kept
    assert book.depth().bids == [(100, 3)]


def test_amend_pending_stops() -> None:
    book = make_book()
    sm = SubmitOrder(
        ts=1, user="s", side=BUY, quantity=5, order_type=OrderType.STOP_MARKET, trigger_price=50
    )
    sid = accepted_id(book.process(sm))
    ev = book.process(AmendOrder(ts=2, user="s", order_id=sid, price=40))
    assert one(ev, OrderRejected).reason is RejectReason.UNEXPECTED_PRICE
    ev = book.process(AmendOrder(ts=2, user="s", order_id=sid, quantity=3))
    am = one(ev, OrderAmended)
    assert (am.quantity, am.leaves, am.price, am.priority_kept) == (3, 3, None, True)
    assert book.order(sid).quantity == 3  # type: ignore[union-attr]
    sl = SubmitOrder(
        ts=1,
        user="s",
        side=BUY,
        quantity=5,
        order_type=OrderType.STOP_LIMIT,
        trigger_price=50,
        price=52,
    )
    sid2 = accepted_id(book.process(sl))
    ev = book.process(AmendOrder(ts=2, user="s", order_id=sid2, price=53, quantity=6))
    am = one(ev, OrderAmended)
    assert (am.price, am.quantity) == (53, 6) and types(ev) == ["OrderAmended"]
    v = book.order(sid2)
    assert v is not None and v.pending and v.price == 53 and v.quantity == 6


def test_cancel_resting_and_errors() -> None:
    book = _three_bids()
    ev = book.process(CancelOrder(ts=2, user="b", order_id=2))
    assert types(ev) == ["OrderCanceled", "BookDelta"]
    c = ev[0]
    assert (c.order_id, c.user, c.reason, c.canceled_qty, c.leaves) == (
        2,
        "b",
        CancelReason.USER,
        10,
        0,
    )
    assert (ev[1].price, ev[1].size) == (100, 20)
    assert l3_ids(book, BUY, 100) == [1, 3]
    r = one(book.process(CancelOrder(ts=3, user="b", order_id=2)), OrderRejected)
    assert r.reason is RejectReason.UNKNOWN_ORDER and r.command == "cancel"
    r = one(book.process(CancelOrder(ts=3, user="b", order_id=1)), OrderRejected)
    assert r.reason is RejectReason.NOT_OWNER
    assert book.depth().bids == [(100, 20)]


def test_cancel_last_order_removes_level() -> None:
    book = make_book()
    book.process(lim(SELL, 1, 100, user="a"))
    book.process(lim(SELL, 1, 101, user="a"))
    ev = book.process(CancelOrder(ts=2, user="a", order_id=1))
    assert (ev[-1].price, ev[-1].size) == (100, 0)
    assert book.depth().asks == [(101, 1)] and book.best_ask() == 101


def test_cancel_all_cancels_only_that_users_resting_and_pending_orders() -> None:
    book = make_book()
    book.process(lim(BUY, 1, 100, user="a"))  # 1
    book.process(lim(BUY, 2, 99, user="b"))  # 2
    book.process(lim(SELL, 3, 110, user="a"))  # 3
    book.process(
        SubmitOrder(
            ts=1, user="a", side=SELL, quantity=4, order_type=OrderType.STOP_MARKET, trigger_price=5
        )
    )  # 4
    ev = book.process(CancelAll(ts=2, user="a"))
    cs = of(ev, OrderCanceled)
    assert [(c.order_id, c.canceled_qty) for c in cs] == [(1, 1), (3, 3), (4, 4)]
    assert {c.reason for c in cs} == {CancelReason.CANCEL_ALL}
    assert book.open_orders("a") == []
    assert [v.order_id for v in book.open_orders()] == [2]
    assert book.process(CancelAll(ts=3, user="a")) == []


def test_halt_rejects_new_orders_but_allows_cancels_and_resume() -> None:
    book = make_book()
    book.process(lim(SELL, 1, 100, user="a"))
    ev = book.process(Halt(ts=2))
    assert types(ev) == ["BookStatus"] and ev[0].halted and book.halted
    ev = book.process(lim(BUY, 1, 100, user="b", ts=3))
    r = one(ev, OrderRejected)
    assert r.reason is RejectReason.BOOK_HALTED and len(ev) == 1
    ev = book.process(mkt(BUY, 1, ts=3))
    assert one(ev, OrderRejected).reason is RejectReason.BOOK_HALTED
    assert book.depth().asks == [(100, 1)]
    ev = book.process(CancelOrder(ts=4, user="a", order_id=1))
    assert one(ev, OrderCanceled).reason is CancelReason.USER
    ev = book.process(Resume(ts=5))
    st = one(ev, BookStatus)
    assert not st.halted and not book.halted
    assert of(book.process(lim(BUY, 1, 100, user="b", ts=6)), OrderRejected) == []


def test_halted_book_never_trades_on_amend() -> None:
    book = make_book()
    book.process(lim(SELL, 5, 100, user="a"))
    book.process(lim(BUY, 5, 90, user="b"))
    book.process(Halt(ts=2))
    ev = book.process(AmendOrder(ts=3, user="b", order_id=2, price=100))
    assert fills(ev) == []
    assert book.depth().asks == [(100, 5)]
    # reducing size (a partial cancel) is still allowed while halted
    ev = book.process(AmendOrder(ts=3, user="b", order_id=2, quantity=4))
    assert one(ev, OrderAmended).priority_kept


def test_halted_book_never_trades_on_index_trigger_and_triggers_on_resume() -> None:
    book = make_book()
    book.process(lim(BUY, 5, 90, user="b"))
    stop = SubmitOrder(
        ts=1,
        user="c",
        side=SELL,
        quantity=2,
        order_type=OrderType.STOP_MARKET,
        trigger_price=95,
        trigger_source=TriggerSource.INDEX,
    )
    sid = accepted_id(book.process(stop))
    book.process(Halt(ts=2))
    ev = book.process(SetReferencePrice(ts=3, price=94))
    assert fills(ev) == [] and of(ev, OrderTriggered) == []
    assert book.reference_price == 94 and book.order(sid) is not None
    ev = book.process(Resume(ts=4))
    assert types(ev)[0] == "BookStatus"
    assert one(ev, OrderTriggered).order_id == sid
    assert fills(ev) == [(1, sid, 90, 2)]
