"""Order types and time in force of the matching core."""

from __future__ import annotations

import pytest
from kit.book_helpers import BUY, SELL, accepted_id, fills, lim, make_book, mkt, of, one, types

from orrange.matching import (
    AdvanceTime,
    BookDelta,
    CancelOrder,
    CancelReason,
    OrderAccepted,
    OrderBook,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderTriggered,
    OrderType,
    RejectReason,
    SetReferencePrice,
    Side,
    SubmitOrder,
    TimeInForce,
    TriggerSource,
)

# ------------------------------------------------------------------------------------ limit


def test_limit_rests_and_reports_accepted_then_delta() -> None:
    book = make_book()
    ev = book.process(lim(SELL, 5, 100, user="a", client_order_id="c1"))
    assert types(ev) == ["OrderAccepted", "BookDelta"]
    acc, delta = ev
    assert acc.order_id == 1 and acc.client_order_id == "c1" and not acc.pending
    assert acc.price == 100 and acc.quantity == 5 and acc.order_type is OrderType.LIMIT
    assert (delta.side, delta.price, delta.size) == (SELL, 100, 5)
    assert book.best_ask() == 100 and book.best_bid() is None
    assert book.depth().asks == [(100, 5)]


def test_limit_crosses_at_maker_price_walks_levels_and_rests_remainder() -> None:
    book = make_book()
    book.process(lim(SELL, 2, 100, user="a"))  # id 1
    book.process(lim(SELL, 3, 101, user="b"))  # id 2
    book.process(lim(SELL, 4, 103, user="c"))  # id 3
    ev = book.process(lim(BUY, 7, 102, user="t"))  # id 4
    assert fills(ev) == [(1, 4, 100, 2), (2, 4, 101, 3)]
    f = of(ev, OrderFilled)
    assert [x.aggressor for x in f] == [BUY, BUY]
    assert [(x.maker_leaves, x.taker_leaves) for x in f] == [(0, 5), (0, 2)]
    assert [(x.maker_user, x.taker_user) for x in f] == [("a", "t"), ("b", "t")]
    assert book.depth().bids == [(102, 2)]
    assert book.depth().asks == [(103, 4)]
    assert book.last_price == 101
    view = book.order(4)
    assert view is not None and view.filled == 5 and view.leaves == 2 and view.quantity == 7


def test_limit_partial_fill_of_maker_leaves_it_first_in_queue() -> None:
    book = make_book()
    book.process(lim(BUY, 10, 50, user="a"))  # 1
    book.process(lim(BUY, 10, 50, user="b"))  # 2
    ev = book.process(lim(SELL, 4, 50, user="t"))
    assert fills(ev) == [(1, 3, 50, 4)]
    assert [(o.order_id, o.leaves, o.quantity) for o in book.l3(BUY, 50)] == [
        (1, 6, 10),
        (2, 10, 10),
    ]
    assert of(ev, BookDelta)[-1].size == 16


# ----------------------------------------------------------------------------------- market


def test_market_buy_stops_at_protection_price_and_cancels_rest() -> None:
    book = make_book(market_protection_bps=500)  # 5 % of 100 = 5 ticks
    book.process(lim(SELL, 2, 100, user="a"))
    book.process(lim(SELL, 2, 105, user="b"))
    book.process(lim(SELL, 5, 106, user="c"))
    ev = book.process(mkt(BUY, 10))
    assert fills(ev) == [(1, 4, 100, 2), (2, 4, 105, 2)]
    c = one(ev, OrderCanceled)
    assert c.reason is CancelReason.MARKET_PROTECTION and c.canceled_qty == 6 and c.leaves == 0
    assert book.depth().asks == [(106, 5)]
    assert book.order(4) is None and book.depth().bids == []


def test_market_sell_protection_and_per_order_slippage() -> None:
    book = make_book()
    book.process(lim(BUY, 1, 1000, user="a"))
    book.process(lim(BUY, 1, 990, user="b"))  # exactly 100 bps below
    book.process(lim(BUY, 1, 989, user="c"))
    ev = book.process(mkt(SELL, 5, max_slippage_bps=100))
    assert fills(ev) == [(1, 4, 1000, 1), (2, 4, 990, 1)]
    assert one(ev, OrderCanceled).reason is CancelReason.MARKET_PROTECTION
    assert one(ev, OrderCanceled).canceled_qty == 3


def test_market_on_empty_book_and_exhausted_book_cancel_no_liquidity() -> None:
    book = make_book()
    ev = book.process(mkt(BUY, 3))
    assert types(ev) == ["OrderAccepted", "OrderCanceled"]
    assert ev[1].reason is CancelReason.NO_LIQUIDITY and ev[1].canceled_qty == 3
    book.process(lim(SELL, 1, 100, user="a"))
    ev = book.process(mkt(BUY, 3))
    assert fills(ev) == [(2, 3, 100, 1)]
    c = one(ev, OrderCanceled)
    assert c.reason is CancelReason.NO_LIQUIDITY and c.canceled_qty == 2


def test_market_fok_all_or_nothing() -> None:
    book = make_book()
    book.process(lim(SELL, 2, 100, user="a"))
    ev = book.process(mkt(BUY, 3, tif=TimeInForce.FOK))
    assert fills(ev) == []
    assert one(ev, OrderCanceled).reason is CancelReason.FOK_UNFILLABLE
    assert book.depth().asks == [(100, 2)]
    ev = book.process(mkt(BUY, 2, tif=TimeInForce.FOK))
    assert fills(ev) == [(1, 3, 100, 2)] and of(ev, OrderCanceled) == []


def _asks(book, *levels: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    for i, (qty, price) in enumerate(levels):
        book.process(lim(SELL, qty, price, user=f"m{i}"))


def _bids(book, *levels: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    for i, (qty, price) in enumerate(levels):
        book.process(lim(BUY, qty, price, user=f"m{i}"))


def test_market_buy_protection_price_tighter_than_slippage_bound() -> None:
    book = make_book(market_protection_bps=500)  # bound: 100 + 5 ticks = 105
    _asks(book, (2, 100), (2, 101), (2, 103), (2, 105))
    ev = book.process(mkt(BUY, 10, price=102))  # id 5
    assert one(ev, OrderAccepted).price == 102
    assert fills(ev) == [(1, 5, 100, 2), (2, 5, 101, 2)]
    c = one(ev, OrderCanceled)
    assert c.reason is CancelReason.MARKET_PROTECTION and c.canceled_qty == 6 and c.leaves == 0
    assert book.depth().asks == [(103, 2), (105, 2)] and book.depth().bids == []


def test_market_buy_protection_price_looser_than_slippage_bound() -> None:
    book = make_book(market_protection_bps=500)  # bound 105 is the tighter one
    _asks(book, (2, 100), (2, 105), (2, 106))
    ev = book.process(mkt(BUY, 10, price=110))  # id 4
    assert fills(ev) == [(1, 4, 100, 2), (2, 4, 105, 2)]
    assert one(ev, OrderCanceled).reason is CancelReason.MARKET_PROTECTION
    assert book.depth().asks == [(106, 2)]


def test_market_sell_protection_price_tighter_and_looser_than_slippage_bound() -> None:
    book = make_book()
    _bids(book, (1, 1000), (1, 995), (1, 990), (1, 989))
    ev = book.process(mkt(SELL, 5, max_slippage_bps=100, price=995))  # bound 990; price tighter
    assert fills(ev) == [(1, 5, 1000, 1), (2, 5, 995, 1)]
    c = one(ev, OrderCanceled)
    assert c.reason is CancelReason.MARKET_PROTECTION and c.canceled_qty == 3
    book = make_book()
    _bids(book, (1, 1000), (1, 995), (1, 990), (1, 989))
    ev = book.process(mkt(SELL, 5, max_slippage_bps=100, price=980))  # bound 990 is tighter
    assert fills(ev) == [(1, 5, 1000, 1), (2, 5, 995, 1), (3, 5, 990, 1)]
    assert one(ev, OrderCanceled).reason is CancelReason.MARKET_PROTECTION
    assert book.depth().bids == [(989, 1)]


def test_market_protection_price_beyond_the_best_price_trades_nothing() -> None:
    book = make_book()
    _asks(book, (3, 100))
    ev = book.process(mkt(BUY, 2, price=99))
    assert fills(ev) == []
    c = one(ev, OrderCanceled)
    assert c.reason is CancelReason.MARKET_PROTECTION and c.canceled_qty == 2
    assert book.depth().asks == [(100, 3)]
    ev = book.process(mkt(BUY, 2, price=100))  # at the protection price itself it trades
    assert fills(ev) == [(1, 3, 100, 2)] and of(ev, OrderCanceled) == []


def test_market_with_protection_price_exhausting_the_book_cancels_no_liquidity() -> None:
    book = make_book()
    ev = book.process(mkt(SELL, 3, price=90))
    assert one(ev, OrderCanceled).reason is CancelReason.NO_LIQUIDITY
    _bids(book, (1, 100))
    ev = book.process(mkt(SELL, 3, price=90))
    assert fills(ev) == [(2, 3, 100, 1)]
    assert one(ev, OrderCanceled).reason is CancelReason.NO_LIQUIDITY


def test_market_fok_with_protection_price() -> None:
    book = make_book()  # default bound 5 %: 102 is inside it
    _asks(book, (2, 100), (3, 102))
    ev = book.process(mkt(BUY, 4, tif=TimeInForce.FOK, price=101))  # only 2 lots at <= 101
    assert fills(ev) == []
    assert one(ev, OrderCanceled).reason is CancelReason.FOK_UNFILLABLE
    assert book.depth().asks == [(100, 2), (102, 3)]
    ev = book.process(mkt(BUY, 4, tif=TimeInForce.FOK, price=102))
    assert fills(ev) == [(1, 4, 100, 2), (2, 4, 102, 2)] and of(ev, OrderCanceled) == []


# ------------------------------------------------------------------------- stops / take profit


def _trade_at(book, price: int, ts: int = 1) -> None:  # type: ignore[no-untyped-def]
    book.process(lim(SELL, 1, price, user="mm", ts=ts))
    ev = book.process(lim(BUY, 1, price, user="tt", ts=ts))
    assert fills(ev) and book.last_price == price


def _stop(side, ot, trig, qty=1, price=None, src=TriggerSource.LAST, **kw):  # type: ignore[no-untyped-def]
    return SubmitOrder(
        ts=kw.pop("ts", 2),
        user=kw.pop("user", "s"),
        side=side,
        quantity=qty,
        order_type=ot,
        trigger_price=trig,
        price=price,
        trigger_source=src,
        **kw,
    )


def test_stop_market_buy_triggers_on_last_trade_and_executes_as_market() -> None:
    book = make_book()
    _trade_at(book, 100)
    ev = book.process(_stop(BUY, OrderType.STOP_MARKET, 105, qty=3))
    acc = one(ev, OrderAccepted)
    assert acc.pending and types(ev) == ["OrderAccepted"]
    sid = acc.order_id
    assert book.order(sid) is not None and book.order(sid).pending  # type: ignore[union-attr]
    book.process(lim(SELL, 1, 105, user="m1", ts=3))
    book.process(lim(SELL, 5, 106, user="m2", ts=3))
    ev = book.process(lim(BUY, 1, 105, user="x", ts=4))  # trade at 105 -> trigger
    t = one(ev, OrderTriggered)
    assert (t.order_id, t.trigger_price, t.source, t.observed_price) == (
        sid,
        105,
        TriggerSource.LAST,
        105,
    )
    after = ev[ev.index(t) :]
    assert [f[1:] for f in fills(after)] == [(sid, 106, 3)]
    assert book.order(sid) is None and book.depth().asks == [(106, 2)]


def _stop_with_protection(book):  # type: ignore[no-untyped-def]
    """asks 102 x2 and 104 x2, a pending buy stop-market (trigger 101, protection 103): id 5."""
    _trade_at(book, 100)  # ids 1, 2
    book.process(lim(SELL, 2, 102, user="m1"))  # 3
    book.process(lim(SELL, 2, 104, user="m2"))  # 4
    ev = book.process(_stop(BUY, OrderType.STOP_MARKET, 101, qty=5, price=103))
    acc = one(ev, OrderAccepted)
    assert acc.pending and acc.price == 103 and acc.order_id == 5
    return book


def _trigger_at_101(book) -> list:  # type: ignore[no-untyped-def]
    book.process(lim(SELL, 1, 101, user="mm", ts=3))
    return book.process(lim(BUY, 1, 101, user="tt", ts=3))


def test_stop_market_with_protection_price_triggers_and_stops_at_it() -> None:
    book = _stop_with_protection(make_book())  # the 5 % bound alone would reach 107
    v = book.order(5)
    assert v is not None and v.pending and v.price == 103
    ev = _trigger_at_101(book)
    t = one(ev, OrderTriggered)
    after = ev[ev.index(t) :]
    assert [f[1:] for f in fills(after)] == [(5, 102, 2)]
    c = one(after, OrderCanceled)
    assert c.order_id == 5 and c.reason is CancelReason.MARKET_PROTECTION and c.canceled_qty == 3
    assert book.order(5) is None and book.depth().asks == [(104, 2)]


def test_pending_stop_market_keeps_its_protection_price_through_snapshot_restore() -> None:
    book = _stop_with_protection(make_book())
    snap = book.snapshot_state()
    assert [(st.order_id, st.price) for st in snap.stops] == [(5, 103)]
    restored = OrderBook.restore(book.spec, book.snapshot())
    assert restored.snapshot_state() == snap
    assert _trigger_at_101(restored) == _trigger_at_101(book)
    assert restored.depth().asks == [(104, 2)]


def test_stop_market_buy_below_trigger_does_not_fire() -> None:
    book = make_book()
    _trade_at(book, 100)
    book.process(_stop(BUY, OrderType.STOP_MARKET, 105))
    _trade_at(book, 104, ts=3)
    assert book.order(3) is not None and book.order(3).pending  # type: ignore[union-attr]


def test_stop_limit_sell_triggers_on_fall_and_rests_as_limit() -> None:
    book = make_book()
    _trade_at(book, 100)
    sid = accepted_id(book.process(_stop(SELL, OrderType.STOP_LIMIT, 95, qty=4, price=94)))
    book.process(lim(BUY, 1, 95, user="b", ts=3))
    book.process(lim(BUY, 1, 94, user="b2", ts=3))
    ev = book.process(lim(SELL, 1, 95, user="x", ts=4))
    t = one(ev, OrderTriggered)
    assert t.order_id == sid and t.observed_price == 95
    # enters as a sell limit at 94: takes the 94 bid, rests 3 at 94
    assert [f[1:] for f in fills(ev[ev.index(t) :])] == [(sid, 94, 1)]
    assert book.depth().asks == [(94, 3)] and book.depth().bids == []
    v = book.order(sid)
    assert v is not None and not v.pending and v.leaves == 3 and v.price == 94


def test_take_profit_market_sell_triggers_on_rise() -> None:
    book = make_book()
    _trade_at(book, 100)
    sid = accepted_id(book.process(_stop(SELL, OrderType.TAKE_PROFIT_MARKET, 110, qty=2)))
    book.process(lim(BUY, 5, 108, user="b", ts=3))
    _trade_at(book, 109, ts=4)
    assert book.order(sid).pending  # type: ignore[union-attr]
    ev = []
    book.process(lim(SELL, 1, 110, user="m", ts=5))
    ev = book.process(lim(BUY, 1, 110, user="x", ts=5))
    assert one(ev, OrderTriggered).order_id == sid
    assert [f[1:] for f in fills(ev)][-1] == (sid, 108, 2)


def test_take_profit_limit_buy_triggers_on_fall() -> None:
    book = make_book()
    _trade_at(book, 100)
    sid = accepted_id(book.process(_stop(BUY, OrderType.TAKE_PROFIT_LIMIT, 90, qty=2, price=91)))
    _trade_at(book, 91, ts=3)
    assert book.order(sid).pending  # type: ignore[union-attr]
    _trade_at(book, 90, ts=4)
    v = book.order(sid)
    assert v is not None and not v.pending
    assert book.depth().bids == [(91, 2)]


def test_stops_trigger_on_index_price_and_ignore_last() -> None:
    book = make_book()
    # no last trade and no index yet: nothing can trigger immediately
    s1 = accepted_id(
        book.process(_stop(SELL, OrderType.STOP_MARKET, 95, src=TriggerSource.INDEX, user="a"))
    )
    s2 = accepted_id(
        book.process(_stop(BUY, OrderType.TAKE_PROFIT_LIMIT, 96, price=96, src=TriggerSource.INDEX))
    )
    s3 = accepted_id(book.process(_stop(SELL, OrderType.STOP_MARKET, 95, user="c")))  # LAST
    ev = book.process(SetReferencePrice(ts=3, price=96))
    t = one(ev, OrderTriggered)
    assert (t.order_id, t.source, t.observed_price) == (s2, TriggerSource.INDEX, 96)
    assert book.reference_price == 96 and book.depth().bids == [(96, 1)]
    ev = book.process(SetReferencePrice(ts=4, price=95))
    t = one(ev, OrderTriggered)
    assert t.order_id == s1
    # the triggered sell stop-market trades with the resting 96 bid
    assert fills(ev) == [(s2, s1, 96, 1)]
    assert book.order(s3) is not None and book.order(s3).pending  # type: ignore[union-attr]
    assert book.last_price == 96


def test_triggered_order_can_trigger_further_stops_in_cascade() -> None:
    book = make_book()
    _trade_at(book, 100)
    a = accepted_id(book.process(_stop(SELL, OrderType.STOP_MARKET, 99, user="a")))
    b = accepted_id(book.process(_stop(SELL, OrderType.STOP_MARKET, 98, user="b")))
    book.process(lim(BUY, 1, 99, user="m", ts=3))
    book.process(lim(BUY, 1, 98, user="m", ts=3))
    book.process(lim(BUY, 1, 97, user="m", ts=3))
    ev = book.process(lim(SELL, 1, 99, user="x", ts=4))
    assert [t.order_id for t in of(ev, OrderTriggered)] == [a, b]
    assert [f[1:] for f in fills(ev)] == [(8, 99, 1), (a, 98, 1), (b, 97, 1)]


def test_stop_that_would_trigger_immediately_is_rejected() -> None:
    book = make_book()
    _trade_at(book, 100)
    for side, ot, trig in [
        (BUY, OrderType.STOP_MARKET, 100),
        (SELL, OrderType.STOP_MARKET, 101),
        (BUY, OrderType.TAKE_PROFIT_MARKET, 101),
        (SELL, OrderType.TAKE_PROFIT_MARKET, 100),
    ]:
        ev = book.process(_stop(side, ot, trig))
        assert one(ev, OrderRejected).reason is RejectReason.WOULD_TRIGGER_IMMEDIATELY
    book.process(SetReferencePrice(ts=3, price=50))
    ev = book.process(_stop(SELL, OrderType.STOP_MARKET, 60, src=TriggerSource.INDEX))
    assert one(ev, OrderRejected).reason is RejectReason.WOULD_TRIGGER_IMMEDIATELY
    ev = book.process(_stop(SELL, OrderType.STOP_MARKET, 40, src=TriggerSource.INDEX))
    assert one(ev, OrderAccepted).pending


def test_pending_stop_can_be_canceled() -> None:
    book = make_book()
    sid = accepted_id(book.process(_stop(BUY, OrderType.STOP_MARKET, 105, qty=3)))
    ev = book.process(CancelOrder(ts=3, user="s", order_id=sid))
    c = one(ev, OrderCanceled)
    assert c.reason is CancelReason.USER and c.canceled_qty == 3
    assert book.order(sid) is None
    _trade_at(book, 110, ts=4)
    assert book.open_orders() == []


# -------------------------------------------------------------------------------- post-only


def test_post_only_rests_when_passive_and_is_rejected_when_crossing() -> None:
    book = make_book()
    book.process(lim(SELL, 1, 100, user="a"))
    ev = book.process(lim(BUY, 1, 99, user="b", post_only=True))
    assert types(ev) == ["OrderAccepted", "BookDelta"]
    ev = book.process(lim(BUY, 1, 100, user="b", post_only=True))
    r = one(ev, OrderRejected)
    assert r.reason is RejectReason.POST_ONLY_WOULD_CROSS and r.command == "submit"
    assert len(ev) == 1 and book.depth().asks == [(100, 1)]
    ev = book.process(lim(SELL, 1, 99, user="c", post_only=True))
    assert one(ev, OrderRejected).reason is RejectReason.POST_ONLY_WOULD_CROSS


def test_post_only_requires_resting_limit() -> None:
    book = make_book()
    for cmd in [
        mkt(BUY, 1, post_only=True),
        lim(BUY, 1, 10, post_only=True, tif=TimeInForce.IOC),
        lim(BUY, 1, 10, post_only=True, tif=TimeInForce.FOK),
        _stop(BUY, OrderType.STOP_LIMIT, 10, price=10, post_only=True),
    ]:
        ev = book.process(cmd)
        assert one(ev, OrderRejected).reason is RejectReason.POST_ONLY_NOT_LIMIT


# ------------------------------------------------------------------------------ time in force


def test_gtc_rests_remainder() -> None:
    book = make_book()
    book.process(lim(SELL, 2, 100, user="a"))
    ev = book.process(lim(BUY, 5, 100, user="b", tif=TimeInForce.GTC))
    assert fills(ev) == [(1, 2, 100, 2)] and of(ev, OrderCanceled) == []
    assert book.depth().bids == [(100, 3)]


def test_ioc_fills_what_it_can_and_cancels_rest() -> None:
    book = make_book()
    book.process(lim(SELL, 2, 100, user="a"))
    ev = book.process(lim(BUY, 5, 101, user="b", tif=TimeInForce.IOC))
    assert fills(ev) == [(1, 2, 100, 2)]
    c = one(ev, OrderCanceled)
    assert c.reason is CancelReason.IOC_REMAINDER and c.canceled_qty == 3 and c.leaves == 0
    assert book.depth().bids == [] and book.order(2) is None
    ev = book.process(lim(BUY, 5, 99, user="b", tif=TimeInForce.IOC))
    assert types(ev) == ["OrderAccepted", "OrderCanceled"]
    assert ev[1].reason is CancelReason.IOC_REMAINDER and ev[1].canceled_qty == 5


def test_fok_decided_before_any_fill() -> None:
    book = make_book()
    book.process(lim(SELL, 3, 100, user="a"))
    book.process(lim(SELL, 3, 101, user="b"))
    book.process(lim(SELL, 3, 103, user="c"))
    ev = book.process(lim(BUY, 7, 101, user="t", tif=TimeInForce.FOK))
    assert types(ev) == ["OrderAccepted", "OrderCanceled"]
    assert ev[1].reason is CancelReason.FOK_UNFILLABLE and ev[1].canceled_qty == 7
    assert book.depth().asks == [(100, 3), (101, 3), (103, 3)]
    ev = book.process(lim(BUY, 5, 99, user="t", tif=TimeInForce.FOK))
    assert one(ev, OrderCanceled).reason is CancelReason.FOK_UNFILLABLE
    ev = book.process(lim(BUY, 6, 101, user="t", tif=TimeInForce.FOK))
    assert fills(ev) == [(1, 6, 100, 3), (2, 6, 101, 3)] and of(ev, OrderCanceled) == []
    assert book.depth().asks == [(103, 3)]


def test_day_order_expires_on_advance_time() -> None:
    book = make_book()
    ev = book.process(lim(BUY, 4, 100, user="a", ts=5, tif=TimeInForce.DAY, expire_at=100))
    oid = accepted_id(ev)
    assert book.process(AdvanceTime(ts=99)) == []
    assert book.depth().bids == [(100, 4)]
    ev = book.process(AdvanceTime(ts=100))
    assert types(ev) == ["OrderExpired", "BookDelta"]
    x = ev[0]
    assert (x.order_id, x.user, x.expired_qty, x.ts) == (oid, "a", 4, 100)
    assert (ev[1].price, ev[1].size) == (100, 0)
    assert book.order(oid) is None and book.depth().bids == []


def test_day_order_expires_before_any_later_command_is_applied() -> None:
    book = make_book()
    book.process(lim(BUY, 4, 100, user="a", ts=5, tif=TimeInForce.DAY, expire_at=50))
    book.process(lim(BUY, 1, 100, user="a2", ts=6))  # GTC behind it
    # a crossing sell at ts >= expire_at must not trade with the expired order
    ev = book.process(lim(SELL, 2, 100, user="b", ts=70))
    assert types(ev)[:2] == ["OrderExpired", "BookDelta"]
    assert fills(ev) == [(2, 3, 100, 1)]
    assert of(ev, OrderExpired)[0].expired_qty == 4
    assert book.depth().asks == [(100, 1)]


def test_partially_filled_day_order_expires_its_leaves() -> None:
    book = make_book()
    book.process(lim(SELL, 5, 100, user="a", tif=TimeInForce.DAY, expire_at=10))
    book.process(lim(BUY, 2, 100, user="b", ts=2))
    ev = book.process(AdvanceTime(ts=11))
    assert one(ev, OrderExpired).expired_qty == 3


def test_day_pending_stop_expires() -> None:
    book = make_book()
    sid = accepted_id(
        book.process(
            _stop(BUY, OrderType.STOP_MARKET, 105, qty=2, tif=TimeInForce.DAY, expire_at=20)
        )
    )
    ev = book.process(AdvanceTime(ts=25))
    assert types(ev) == ["OrderExpired"] and ev[0].order_id == sid and ev[0].expired_qty == 2
    assert book.order(sid) is None


TRIGGERED_TYPES = [
    OrderType.STOP_MARKET,
    OrderType.STOP_LIMIT,
    OrderType.TAKE_PROFIT_MARKET,
    OrderType.TAKE_PROFIT_LIMIT,
]


@pytest.mark.parametrize("source", list(TriggerSource))
@pytest.mark.parametrize("side", [BUY, SELL])
@pytest.mark.parametrize("ot", TRIGGERED_TYPES)
def test_trigger_threshold_direction_and_source(
    ot: OrderType, side: Side, source: TriggerSource
) -> None:
    rising = (side is BUY) == (ot in (OrderType.STOP_MARKET, OrderType.STOP_LIMIT))
    trig = 103 if rising else 97
    step = 1 if rising else -1
    book = make_book()
    book.process(lim(SELL, 5, 110, user="liq"))
    book.process(lim(BUY, 5, 90, user="liq"))

    def move(price: int, src: TriggerSource, ts: int) -> list:  # type: ignore[type-arg]
        if src is TriggerSource.INDEX:
            return book.process(SetReferencePrice(ts=ts, price=price))
        book.process(lim(SELL, 1, price, user="mm", ts=ts))
        return book.process(lim(BUY, 1, price, user="tt", ts=ts))

    move(100, source, 1)
    limit = {"price": 110 if side is BUY else 90} if "limit" in ot else {}
    cmd = SubmitOrder(
        ts=2,
        user="s",
        side=side,
        quantity=2,
        order_type=ot,
        trigger_price=trig,
        trigger_source=source,
        **limit,  # type: ignore[arg-type]
    )
    sid = accepted_id(book.process(cmd))
    assert of(move(trig - step, source, 3), OrderTriggered) == []
    other = TriggerSource.LAST if source is TriggerSource.INDEX else TriggerSource.INDEX
    assert of(move(trig + 5 * step, other, 4), OrderTriggered) == []  # the other source
    v = book.order(sid)
    assert v is not None and v.pending
    ev = move(trig, source, 5)
    t = one(ev, OrderTriggered)
    assert (t.order_id, t.trigger_price, t.source, t.observed_price) == (sid, trig, source, trig)
    # entered the book and took the far liquidity on the other side
    assert [f[1:] for f in fills(ev[ev.index(t) :])] == [(sid, 110 if side is BUY else 90, 2)]
    assert book.order(sid) is None


def test_every_stop_reached_by_a_move_enters_even_if_an_earlier_one_reverses_it() -> None:
    book = make_book()
    _trade_at(book, 100)
    book.process(lim(BUY, 1, 99, user="m"))
    book.process(lim(BUY, 1, 97, user="m"))
    book.process(lim(SELL, 5, 104, user="m"))
    tp = SubmitOrder(
        ts=2,
        user="a",
        side=BUY,
        quantity=1,
        order_type=OrderType.TAKE_PROFIT_MARKET,
        trigger_price=99,
    )
    t1 = accepted_id(book.process(tp))
    stop = SubmitOrder(
        ts=2, user="b", side=SELL, quantity=1, order_type=OrderType.STOP_MARKET, trigger_price=98
    )
    s2 = accepted_id(book.process(stop))
    # the sell sweeps down to 97: both the buy take-profit (<= 99) and the sell stop (<= 98)
    # are reached; the take-profit enters first (nearest trigger) and trades up at 104
    ev = book.process(lim(SELL, 2, 97, user="t", ts=3))
    trig = of(ev, OrderTriggered)
    assert [(t.order_id, t.observed_price) for t in trig] == [(t1, 97), (s2, 97)]
    assert book.order(s2) is None and book.open_orders("b") == []
