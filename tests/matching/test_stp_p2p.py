"""Self-trade prevention, P2P constraints and the price-reputation-time policy."""

from __future__ import annotations

import pytest
from kit.book_helpers import BUY, SELL, fills, l3_ids, lim, make_book, of, one

from orrange.matching import (
    AmendOrder,
    CancelReason,
    OrderAmended,
    OrderCanceled,
    OrderFilled,
    SelfTradePrevention,
    TimeInForce,
)

STP = SelfTradePrevention


def _book_with_own_maker():  # type: ignore[no-untyped-def]
    """asks: 100 [1: other x2, 2: me x5, 3: other x4]"""
    book = make_book()
    book.process(lim(SELL, 2, 100, user="other"))
    book.process(lim(SELL, 5, 100, user="me"))
    book.process(lim(SELL, 4, 100, user="other"))
    return book


def test_stp_none_trades_with_self() -> None:
    book = _book_with_own_maker()
    ev = book.process(lim(BUY, 4, 100, user="me", stp=STP.NONE))
    assert fills(ev) == [(1, 4, 100, 2), (2, 4, 100, 2)]
    f = of(ev, OrderFilled)[1]
    assert (f.maker_user, f.taker_user) == ("me", "me")
    assert of(ev, OrderCanceled) == []


def test_stp_cancel_newest_cancels_taker_after_trading_with_others_ahead() -> None:
    book = _book_with_own_maker()
    ev = book.process(lim(BUY, 6, 100, user="me", stp=STP.CANCEL_NEWEST))
    assert fills(ev) == [(1, 4, 100, 2)]
    c = one(ev, OrderCanceled)
    assert (c.order_id, c.reason, c.canceled_qty, c.leaves) == (
        4,
        CancelReason.SELF_TRADE_PREVENTION,
        4,
        0,
    )
    assert l3_ids(book, SELL, 100) == [2, 3] and book.depth().bids == []


def test_stp_default_mode_is_cancel_newest() -> None:
    book = _book_with_own_maker()
    from orrange.matching import Side, SubmitOrder

    ev = book.process(SubmitOrder(ts=1, user="me", side=Side.BUY, quantity=6, price=100))
    assert fills(ev) == [(1, 4, 100, 2)]
    assert one(ev, OrderCanceled).order_id == 4


def test_stp_cancel_oldest_cancels_maker_and_continues() -> None:
    book = _book_with_own_maker()
    ev = book.process(lim(BUY, 6, 100, user="me", stp=STP.CANCEL_OLDEST))
    assert fills(ev) == [(1, 4, 100, 2), (3, 4, 100, 4)]
    c = one(ev, OrderCanceled)
    assert (c.order_id, c.reason, c.canceled_qty, c.leaves) == (
        2,
        CancelReason.SELF_TRADE_PREVENTION,
        5,
        0,
    )
    assert book.depth().asks == [] and book.order(2) is None


def test_stp_cancel_both() -> None:
    book = _book_with_own_maker()
    ev = book.process(lim(BUY, 6, 100, user="me", stp=STP.CANCEL_BOTH))
    assert fills(ev) == [(1, 4, 100, 2)]
    cs = {c.order_id: c for c in of(ev, OrderCanceled)}
    assert set(cs) == {2, 4}
    assert (cs[4].canceled_qty, cs[4].leaves) == (4, 0)
    assert (cs[2].canceled_qty, cs[2].leaves) == (5, 0)
    assert {c.reason for c in cs.values()} == {CancelReason.SELF_TRADE_PREVENTION}
    assert l3_ids(book, SELL, 100) == [3] and book.depth().bids == []


def test_stp_decrement_and_cancel_taker_smaller() -> None:
    book = _book_with_own_maker()
    ev = book.process(lim(BUY, 5, 100, user="me", stp=STP.DECREMENT_AND_CANCEL))
    # 2 fill with order 1, then 3 left vs own 5: both decremented by 3, taker gone
    assert fills(ev) == [(1, 4, 100, 2)]
    cs = {c.order_id: c for c in of(ev, OrderCanceled)}
    assert (cs[4].canceled_qty, cs[4].leaves) == (3, 0)
    assert (cs[2].canceled_qty, cs[2].leaves) == (3, 2)
    assert [(o.order_id, o.leaves) for o in book.l3(SELL, 100)] == [(2, 2), (3, 4)]
    assert book.depth().asks == [(100, 6)] and book.depth().bids == []


def test_stp_decrement_and_cancel_maker_smaller_continues_matching() -> None:
    book = _book_with_own_maker()
    ev = book.process(lim(BUY, 10, 100, user="me", stp=STP.DECREMENT_AND_CANCEL))
    # 2 filled by 1; 8 vs own 5: both -5, maker gone; 3 left fill with order 3
    assert fills(ev) == [(1, 4, 100, 2), (3, 4, 100, 3)]
    cs = {c.order_id: c for c in of(ev, OrderCanceled)}
    assert (cs[2].canceled_qty, cs[2].leaves) == (5, 0)
    assert (cs[4].canceled_qty, cs[4].leaves) == (5, 3)
    assert book.depth().asks == [(100, 1)] and book.depth().bids == []


def test_stp_decrement_and_cancel_equal_cancels_both() -> None:
    book = make_book()
    book.process(lim(SELL, 5, 100, user="me"))
    ev = book.process(lim(BUY, 5, 100, user="me", stp=STP.DECREMENT_AND_CANCEL))
    cs = {c.order_id: (c.canceled_qty, c.leaves) for c in of(ev, OrderCanceled)}
    assert cs == {1: (5, 0), 2: (5, 0)} and fills(ev) == []
    assert book.depth().asks == [] and book.depth().bids == []


def test_fok_with_stp_counts_only_what_would_fill() -> None:
    book = _book_with_own_maker()
    ev = book.process(lim(BUY, 3, 100, user="me", stp=STP.CANCEL_NEWEST, tif=TimeInForce.FOK))
    assert fills(ev) == [] and one(ev, OrderCanceled).reason is CancelReason.FOK_UNFILLABLE
    ev = book.process(lim(BUY, 6, 100, user="me", stp=STP.CANCEL_OLDEST, tif=TimeInForce.FOK))
    assert fills(ev) == [(1, 5, 100, 2), (3, 5, 100, 4)]
    book2 = _book_with_own_maker()
    ev = book2.process(lim(BUY, 7, 100, user="me", stp=STP.CANCEL_OLDEST, tif=TimeInForce.FOK))
    assert fills(ev) == [] and one(ev, OrderCanceled).reason is CancelReason.FOK_UNFILLABLE
    assert book2.depth().asks == [(100, 11)]


# ------------------------------------------------------------------------------------- P2P


def test_payment_methods_must_intersect_and_incompatible_maker_keeps_its_place() -> None:
    book = make_book()
    book.process(lim(SELL, 3, 100, user="a", payment_methods=("bank",)))  # 1
    book.process(lim(SELL, 3, 100, user="b", payment_methods=("mpesa", "bank")))  # 2
    book.process(lim(SELL, 3, 101, user="c"))  # 3: accepts any
    ev = book.process(lim(BUY, 5, 101, user="t", payment_methods=("mpesa", "revolut")))
    assert fills(ev) == [(2, 4, 100, 3), (3, 4, 101, 2)]
    f = of(ev, OrderFilled)
    assert f[0].payment_methods == ("mpesa",)
    assert f[1].payment_methods == ("mpesa", "revolut")  # maker accepts any
    # the skipped maker is still first at its level, untouched
    assert [(o.order_id, o.leaves) for o in book.l3(SELL, 100)] == [(1, 3)]
    assert book.depth().asks == [(100, 3), (101, 1)]
    ev = book.process(lim(BUY, 1, 101, user="u", payment_methods=("bank",)))
    assert fills(ev) == [(1, 5, 100, 1)]
    assert one(ev, OrderFilled).payment_methods == ("bank",)


def test_unrestricted_both_sides_have_empty_common_methods() -> None:
    book = make_book()
    book.process(lim(SELL, 1, 100, user="a"))
    ev = book.process(lim(BUY, 1, 100, user="b"))
    assert one(ev, OrderFilled).payment_methods == ()


@pytest.mark.parametrize(
    ("maker_kw", "taker_kw", "trades"),
    [
        ({"reputation": 40}, {"min_reputation": 50}, False),  # maker below taker's floor
        ({"min_reputation": 50}, {"reputation": 40}, False),  # taker below maker's floor
        ({"reputation": 50}, {"min_reputation": 50}, True),  # floor is inclusive
        ({"min_reputation": 50}, {"reputation": 50}, True),
        ({"min_reputation": 50, "reputation": 90}, {"reputation": 60, "min_reputation": 90}, True),
        ({"min_reputation": 50, "reputation": 89}, {"reputation": 60, "min_reputation": 90}, False),
    ],
)
def test_min_reputation_both_ways(maker_kw: dict, taker_kw: dict, trades: bool) -> None:
    book = make_book()
    book.process(lim(SELL, 2, 100, user="m", **maker_kw))
    ev = book.process(lim(BUY, 2, 100, user="t", **taker_kw))
    assert bool(fills(ev)) is trades
    if not trades:
        # the taker rests next to the incompatible maker; both stay in the book
        assert book.depth().asks == [(100, 2)] and book.depth().bids == [(100, 2)]
        assert l3_ids(book, SELL, 100) == [1]


def test_incompatible_maker_skipped_across_levels_for_market_order() -> None:
    book = make_book()
    book.process(lim(SELL, 2, 100, user="a", min_reputation=10))  # 1
    book.process(lim(SELL, 2, 101, user="b"))  # 2
    ev = book.process(lim(BUY, 3, 102, user="t", tif=TimeInForce.IOC))
    assert fills(ev) == [(2, 3, 101, 2)]
    assert one(ev, OrderCanceled).canceled_qty == 1
    assert l3_ids(book, SELL, 100) == [1]


def test_fok_counts_only_compatible_liquidity() -> None:
    book = make_book()
    book.process(lim(SELL, 5, 100, user="a", payment_methods=("bank",)))
    book.process(lim(SELL, 2, 100, user="b", payment_methods=("cash",)))
    ev = book.process(lim(BUY, 3, 100, user="t", payment_methods=("cash",), tif=TimeInForce.FOK))
    assert fills(ev) == [] and one(ev, OrderCanceled).reason is CancelReason.FOK_UNFILLABLE
    ev = book.process(lim(BUY, 2, 100, user="t", payment_methods=("cash",), tif=TimeInForce.FOK))
    assert fills(ev) == [(2, 4, 100, 2)]


# ------------------------------------------------------------------- price-reputation-time


def _tiered_book():  # type: ignore[no-untyped-def]
    book = make_book(priority="price-reputation-time", reputation_tier_size=100)
    for user, rep in [("r50", 50), ("r250", 250), ("r120", 120), ("r260", 260), ("r99", 99)]:
        book.process(lim(BUY, 1, 100, user=user, reputation=rep))
    return book


def test_price_reputation_time_orders_level_by_tier_then_time() -> None:
    book = _tiered_book()
    # ids: 1 r50 (t0), 2 r250 (t2), 3 r120 (t1), 4 r260 (t2), 5 r99 (t0)
    assert l3_ids(book, BUY, 100) == [2, 4, 3, 1, 5]
    book.process(lim(BUY, 1, 101, user="best", reputation=0))  # 6: better price wins
    ev = book.process(lim(SELL, 4, 100, user="s"))
    assert [f[0] for f in fills(ev)] == [6, 2, 4, 3]


def test_price_reputation_time_amend_up_goes_to_back_of_its_tier() -> None:
    book = _tiered_book()
    book.process(AmendOrder(ts=2, user="r250", order_id=2, quantity=2))
    assert l3_ids(book, BUY, 100) == [4, 2, 3, 1, 5]
    book.process(AmendOrder(ts=2, user="r120", order_id=3, quantity=1, price=100))
    assert l3_ids(book, BUY, 100) == [4, 2, 3, 1, 5]


def test_price_time_policy_ignores_reputation() -> None:
    book = make_book()
    for user, rep in [("a", 0), ("b", 900), ("c", 500)]:
        book.process(lim(SELL, 1, 100, user=user, reputation=rep))
    assert l3_ids(book, SELL, 100) == [1, 2, 3]


def test_stp_decrement_reduces_total_quantity_so_amend_cannot_revive_it() -> None:
    book = _book_with_own_maker()
    book.process(lim(BUY, 5, 100, user="me", stp=STP.DECREMENT_AND_CANCEL))
    v = book.order(2)  # own maker: 5, decremented by 3 without a trade
    assert v is not None and (v.quantity, v.filled, v.leaves) == (2, 0, 2)
    # amending to the quantity the book reports changes nothing
    ev = book.process(AmendOrder(ts=2, user="me", order_id=2, quantity=2))
    am = one(ev, OrderAmended)
    assert (am.quantity, am.leaves, am.priority_kept) == (2, 2, True)
    assert book.depth().asks == [(100, 6)]
    # the taker rests what is left after its own decrement
    book2 = make_book()
    book2.process(lim(SELL, 2, 100, user="me"))
    book2.process(lim(BUY, 5, 100, user="me", stp=STP.DECREMENT_AND_CANCEL))
    t = book2.order(2)
    assert t is not None and (t.quantity, t.filled, t.leaves) == (3, 0, 3)
