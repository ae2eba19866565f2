"""Rejection reasons, fees, sequence numbers, views and snapshot/restore."""

from __future__ import annotations

import math
from fractions import Fraction
from types import SimpleNamespace

import msgspec
import pytest
from kit.book_helpers import BUY, SELL, fills, lim, make_book, make_spec, mkt, of, one

from orrange.matching import (
    AdvanceTime,
    AmendOrder,
    CancelOrder,
    DepthBand,
    Event,
    Halt,
    OrderAccepted,
    OrderBook,
    OrderFilled,
    OrderRejected,
    OrderType,
    RejectReason,
    SetReferencePrice,
    SubmitOrder,
    TimeInForce,
    TriggerSource,
)

R = RejectReason


def _sub(**kw):  # type: ignore[no-untyped-def]
    base = {"ts": 10, "user": "u", "side": BUY, "quantity": 5, "price": 100}
    base.update(kw)
    return SubmitOrder(**base)


SUBMIT_REJECTS = [
    (_sub(quantity=0), R.INVALID_QUANTITY),
    (_sub(quantity=-3), R.INVALID_QUANTITY),
    (_sub(quantity=1), R.BELOW_MIN_QTY),
    (_sub(quantity=1001), R.ABOVE_MAX_QTY),
    (_sub(price=None), R.MISSING_PRICE),
    (_sub(price=0), R.INVALID_PRICE),
    (_sub(price=-1), R.INVALID_PRICE),
    (_sub(price=10, quantity=5), R.BELOW_MIN_NOTIONAL),
    (_sub(order_type=OrderType.MARKET, price=0), R.INVALID_PRICE),  # a protection price
    (_sub(order_type=OrderType.STOP_MARKET, trigger_price=105, price=-1), R.INVALID_PRICE),
    (_sub(trigger_price=90), R.UNEXPECTED_TRIGGER_PRICE),
    (_sub(order_type=OrderType.MARKET, price=None, trigger_price=9), R.UNEXPECTED_TRIGGER_PRICE),
    (_sub(order_type=OrderType.STOP_LIMIT), R.MISSING_TRIGGER_PRICE),
    (_sub(order_type=OrderType.TAKE_PROFIT_MARKET, price=None), R.MISSING_TRIGGER_PRICE),
    (_sub(order_type=OrderType.STOP_LIMIT, trigger_price=0), R.INVALID_PRICE),
    (_sub(tif=TimeInForce.DAY), R.MISSING_EXPIRY),
    (_sub(tif=TimeInForce.DAY, expire_at=10), R.EXPIRY_IN_PAST),
    (_sub(tif=TimeInForce.DAY, expire_at=5), R.EXPIRY_IN_PAST),
    (_sub(expire_at=50), R.UNEXPECTED_EXPIRY),
    (_sub(order_type=OrderType.MARKET, price=None, max_slippage_bps=-1), R.INVALID_SLIPPAGE),
    (_sub(post_only=True, tif=TimeInForce.IOC), R.POST_ONLY_NOT_LIMIT),
    (_sub(side=SELL, price=100, post_only=True), R.POST_ONLY_WOULD_CROSS),
    (_sub(order_id=1), R.DUPLICATE_ORDER_ID),
    (
        _sub(order_type=OrderType.STOP_MARKET, price=None, trigger_price=102, side=SELL),
        R.WOULD_TRIGGER_IMMEDIATELY,
    ),
]


def _reject_book() -> OrderBook:
    book = make_book(min_qty="2", max_qty="1000", min_notional="100")
    book.process(lim(BUY, 5, 100, user="m", ts=1))  # id 1, resting bid 100
    book.process(lim(SELL, 5, 101, user="m", ts=1))  # id 2
    book.process(lim(BUY, 2, 101, user="t", ts=1))  # trade at 101: last = 101
    return book


@pytest.mark.parametrize(("cmd", "reason"), SUBMIT_REJECTS)
def test_submit_rejections_change_nothing(cmd: SubmitOrder, reason: RejectReason) -> None:
    book = _reject_book()
    before = book.snapshot_state()
    seq = book.seq
    ev = book.process(cmd)
    assert len(ev) == 1
    r = ev[0]
    assert isinstance(r, OrderRejected)
    assert r.reason is reason and r.command == "submit" and r.message and r.seq == seq + 1
    assert r.user == "u" and r.ts == 10
    after = book.snapshot_state()
    assert msgspec.structs.replace(after, seq=before.seq) == before


def test_other_rejections_and_their_command_tags() -> None:
    book = _reject_book()
    cases = [
        (CancelOrder(ts=10, user="m", order_id=99), R.UNKNOWN_ORDER, "cancel"),
        (CancelOrder(ts=10, user="x", order_id=1), R.NOT_OWNER, "cancel"),
        (AmendOrder(ts=10, user="m", order_id=1), R.INVALID_AMEND, "amend"),
        (SetReferencePrice(ts=10, price=0), R.INVALID_PRICE, "reference_price"),
        (AmendOrder(ts=10, user="m", order_id=4, price=104), R.UNEXPECTED_PRICE, "amend"),
    ]
    stop = _sub(user="m", order_type=OrderType.STOP_MARKET, trigger_price=105, price=106)
    assert one(book.process(stop), OrderAccepted).order_id == 4  # a protection price: accepted
    for cmd, reason, tag in cases:
        r = one(book.process(cmd), OrderRejected)
        assert (r.reason, r.command) == (reason, tag)
    book.process(Halt(ts=11))
    r = one(book.process(_sub(ts=12)), OrderRejected)
    assert r.reason is R.BOOK_HALTED


def test_every_book_reject_reason_is_covered() -> None:
    """Reasons emitted by the book are all exercised above; the rest belong to the risk layer."""
    covered = {r for _, r in SUBMIT_REJECTS} | {
        R.UNKNOWN_ORDER,
        R.NOT_OWNER,
        R.INVALID_AMEND,
        R.UNEXPECTED_PRICE,
        R.BOOK_HALTED,
    }
    risk_layer = {
        R.PRICE_OUT_OF_BAND,
        R.DUPLICATE_CLIENT_ORDER_ID,
        R.TOO_MANY_OPEN_ORDERS,
        R.RATE_LIMITED,
        R.UNKNOWN_MARKET,
        R.INSUFFICIENT_FUNDS,
        R.NO_REFERENCE_PRICE,
    }
    assert covered | risk_layer == set(RejectReason)


def test_explicit_order_id_advances_the_counter() -> None:
    book = make_book()
    ev = book.process(lim(BUY, 1, 10, order_id=42))
    assert ev[0].order_id == 42
    ev = book.process(lim(BUY, 1, 10))
    assert ev[0].order_id == 43


def test_unknown_command_type_raises() -> None:
    with pytest.raises(TypeError):
        make_book().process(SimpleNamespace(ts=1))  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------- fees


def _fee(n: int, bps: int) -> int:
    """The documented rule, written independently with Fraction and math."""
    x = Fraction(n * bps, 10000)
    return math.ceil(x) if bps >= 0 else -math.floor(-x)


@pytest.mark.parametrize(
    ("maker_bps", "taker_bps", "price", "qty", "maker_fee", "taker_fee"),
    [
        (2, 5, 12345, 7, 18, 44),  # n = 86415: 17.283 -> 18, 43.2075 -> 44
        (2, 5, 10000, 1, 2, 5),  # exact
        (0, 10, 3, 1, 0, 1),  # tiny positive fee rounds up to 1
        (-1, 5, 12345, 7, -8, 44),  # rebate 8.6415 rounds toward zero
        (-1, 5, 9999, 1, 0, 5),  # rebate 0.9999 -> 0
        (-25, 30, 40000, 3, -300, 360),  # exact rebate
        (-3, 7, 33333, 3, -29, 70),  # 29.9997 -> -29 ; 69.9993 -> 70
    ],
)
def test_fee_rounding_rule(
    maker_bps: int, taker_bps: int, price: int, qty: int, maker_fee: int, taker_fee: int
) -> None:
    book = make_book(maker_fee_bps=maker_bps, taker_fee_bps=taker_bps)
    book.process(lim(SELL, qty, price, user="m"))
    f = one(book.process(lim(BUY, qty, price, user="t")), OrderFilled)
    assert (f.maker_fee, f.taker_fee) == (maker_fee, taker_fee)
    assert (f.maker_fee, f.taker_fee) == (
        _fee(price * qty, maker_bps),
        _fee(price * qty, taker_bps),
    )


def test_fees_per_fill_on_multi_level_sweep() -> None:
    book = make_book(maker_fee_bps=-2, taker_fee_bps=7)
    for p, q in [(1001, 3), (1003, 7), (1010, 11)]:
        book.process(lim(SELL, q, p, user="m"))
    ev = book.process(mkt(BUY, 20))
    fs = of(ev, OrderFilled)
    assert len(fs) == 3
    for f in fs:
        assert f.maker_fee == _fee(f.price * f.quantity, -2)
        assert f.taker_fee == _fee(f.price * f.quantity, 7)
        assert f.maker_fee <= 0 < f.taker_fee


# --------------------------------------------------------------------------------- sequence


def test_sequence_numbers_increase_by_one_per_event_across_commands() -> None:
    book = make_book()
    cmds = [
        lim(SELL, 5, 100, user="a"),
        lim(SELL, 5, 101, user="b"),
        lim(BUY, 7, 101, user="c"),
        CancelOrder(ts=2, user="x", order_id=1),
        AmendOrder(ts=2, user="c", order_id=3, quantity=1),
        lim(BUY, 1, 1, tif=TimeInForce.DAY, expire_at=5),
        AdvanceTime(ts=6),
        SetReferencePrice(ts=7, price=3),
    ]
    seqs: list[int] = []
    for c in cmds:
        ev: list[Event] = book.process(c)
        seqs += [e.seq for e in ev]
        assert all(e.ts == c.ts for e in ev)
        assert all(e.symbol == "T-USD" for e in ev)
    assert seqs == list(range(1, len(seqs) + 1))
    assert book.seq == seqs[-1]


# ------------------------------------------------------------------------------------ views


def _view_book() -> OrderBook:
    book = make_book()
    for p, q in [(99, 1), (95, 2), (94, 4), (90, 8), (89, 16)]:
        book.process(lim(BUY, q, p, user="b"))
    for p, q in [(101, 1), (105, 2), (106, 4), (110, 8), (111, 16)]:
        book.process(lim(SELL, q, p, user="s"))
    return book


def test_top_of_book_views() -> None:
    book = _view_book()
    assert (book.best_bid(), book.best_ask(), book.spread(), book.mid()) == (99, 101, 2, 100)
    book.process(lim(BUY, 1, 100, user="b"))
    assert book.mid() == Fraction(201, 2) and book.spread() == 1
    empty = make_book()
    assert (empty.best_bid(), empty.best_ask(), empty.spread(), empty.mid()) == (
        None,
        None,
        None,
        None,
    )


def test_depth_levels_and_limit() -> None:
    book = _view_book()
    d = book.depth(3)
    assert d.bids == [(99, 1), (95, 2), (94, 4)]
    assert d.asks == [(101, 1), (105, 2), (106, 4)]
    assert d.seq == book.seq and d.symbol == "T-USD"
    assert len(book.depth(100).bids) == 5


def test_l3_queue_order_and_leaves() -> None:
    book = make_book()
    for u, q in [("a", 3), ("b", 4), ("c", 5)]:
        book.process(lim(SELL, q, 100, user=u))
    book.process(lim(BUY, 4, 100, user="t"))
    q = book.l3(SELL, 100)
    assert [(o.order_id, o.user, o.leaves, o.quantity) for o in q] == [
        (2, "b", 3, 4),
        (3, "c", 5, 5),
    ]
    assert book.l3(SELL, 555) == [] and book.l3(BUY, 100) == []


def test_depth_bands_at_1_5_10_percent() -> None:
    book = _view_book()  # mid 100
    bands = book.depth_bands()
    assert bands == [
        DepthBand(100, 1, 1, 99, 101),
        DepthBand(500, 3, 3, 99 + 190, 101 + 210),
        DepthBand(1000, 15, 15, 99 + 190 + 376 + 720, 101 + 210 + 424 + 880),
    ]
    assert make_book().depth_bands() == [DepthBand(b, 0, 0, 0, 0) for b in (100, 500, 1000)]


def test_price_impact_partial_level() -> None:
    book = make_book()
    for p, q in [(100, 2), (101, 3), (103, 5)]:
        book.process(lim(SELL, q, p, user="s"))
    pi = book.price_impact(BUY, 500)
    assert (pi.filled_lots, pi.spent_units, pi.levels_consumed, pi.complete) == (4, 402, 2, True)
    assert pi.avg_price == Fraction(402, 4) and pi.slippage_bps == 50
    pi = book.price_impact(BUY, 100)
    assert (pi.filled_lots, pi.avg_price, pi.slippage_bps, pi.levels_consumed) == (1, 100, 0, 1)


def test_price_impact_runs_out_of_book_and_sell_side() -> None:
    book = make_book()
    for p, q in [(100, 2), (101, 3), (103, 5)]:
        book.process(lim(SELL, q, p, user="s"))
    pi = book.price_impact(BUY, 10**6)
    assert (pi.filled_lots, pi.spent_units, pi.levels_consumed, pi.complete) == (
        10,
        200 + 303 + 515,
        3,
        False,
    )
    assert pi.avg_price == Fraction(1018, 10)
    assert pi.slippage_bps == Fraction(1018 - 1000, 1000) * 10000
    assert book.price_impact(SELL, 1000).avg_price is None
    book.process(lim(BUY, 4, 50, user="b"))
    book.process(lim(BUY, 4, 40, user="b"))
    pi = book.price_impact(SELL, 300)
    assert (pi.filled_lots, pi.spent_units, pi.levels_consumed) == (6, 280, 2)
    assert pi.avg_price == Fraction(280, 6)
    assert pi.slippage_bps == Fraction(50 - Fraction(280, 6), 50) * 10000


def test_views_never_change_the_book() -> None:
    book = _view_book()
    book.process(lim(SELL, 1, 200, user="s", payment_methods=("x",)))
    before = book.snapshot()
    book.best_bid(), book.best_ask(), book.spread(), book.mid(), book.depth(2)
    book.l3(BUY, 99), book.depth_bands((1, 50, 10000)), book.price_impact(BUY, 10**9)
    book.price_impact(SELL, 10**9), book.order(1), book.open_orders(), book.open_orders("b")
    assert book.snapshot() == before


def test_order_and_open_orders_views() -> None:
    book = make_book()
    book.process(lim(BUY, 5, 100, user="a", client_order_id="x1", ts=3))
    stop = SubmitOrder(
        ts=4,
        user="b",
        side=SELL,
        quantity=2,
        order_type=OrderType.STOP_LIMIT,
        trigger_price=90,
        price=89,
        trigger_source=TriggerSource.INDEX,
    )
    book.process(stop)
    v = book.order(1)
    assert v is not None
    assert (v.user, v.client_order_id, v.side, v.price, v.quantity, v.leaves, v.pending, v.ts) == (
        "a",
        "x1",
        BUY,
        100,
        5,
        5,
        False,
        3,
    )
    s = book.order(2)
    assert s is not None and s.pending and s.trigger_price == 90 and s.price == 89
    assert [o.order_id for o in book.open_orders()] == [1, 2]
    assert [o.order_id for o in book.open_orders("b")] == [2]
    assert book.order(3) is None


# --------------------------------------------------------------------------- snapshot/restore


def test_snapshot_restore_round_trip_and_continuation() -> None:
    spec = make_spec(priority="price-reputation-time")
    book = OrderBook(spec)
    book.process(lim(BUY, 5, 100, user="a", reputation=300, tif=TimeInForce.DAY, expire_at=50))
    book.process(lim(BUY, 5, 100, user="b", reputation=100))
    book.process(lim(SELL, 3, 100, user="c"))  # trade: last 100
    book.process(
        SubmitOrder(
            ts=2,
            user="d",
            side=SELL,
            quantity=2,
            order_type=OrderType.STOP_MARKET,
            trigger_price=99,
        )
    )
    book.process(SetReferencePrice(ts=2, price=101))
    data = book.snapshot()
    other = OrderBook.restore(spec, data)
    assert other.snapshot() == data
    assert (other.seq, other.last_price, other.reference_price) == (book.seq, 100, 101)
    assert other.depth() == book.depth() and other.open_orders() == book.open_orders()
    tail = [
        lim(SELL, 2, 99, user="e", ts=3),
        AdvanceTime(ts=60),
        lim(BUY, 3, 100, user="f", ts=61),
    ]
    assert [other.process(c) for c in tail] == [book.process(c) for c in tail]
    assert other.snapshot() == book.snapshot()


def test_restore_rejects_other_symbol_and_garbage() -> None:
    data = make_book().snapshot()
    with pytest.raises(ValueError):
        OrderBook.restore(make_spec(symbol="X-USD"), data)
    with pytest.raises(msgspec.DecodeError):
        OrderBook.restore(make_spec(), b"\x01garbage")


def test_fills_at_maker_price_report_both_users() -> None:
    book = make_book()
    book.process(lim(BUY, 2, 100, user="a"))
    ev = book.process(lim(SELL, 2, 90, user="b"))
    assert fills(ev) == [(1, 2, 100, 2)]
    f = one(ev, OrderFilled)
    assert (f.maker_user, f.taker_user, f.aggressor) == ("a", "b", SELL)


def test_commands_and_events_round_trip_through_json() -> None:
    from orrange.matching import Command

    book = make_book(maker_fee_bps=-1, taker_fee_bps=4)
    cmds: list[Command] = [
        lim(SELL, 3, 100, user="a", payment_methods=("bank",), client_order_id="c"),
        mkt(BUY, 5, payment_methods=("bank", "cash")),
        SubmitOrder(
            ts=2,
            user="s",
            side=BUY,
            quantity=1,
            order_type=OrderType.STOP_LIMIT,
            trigger_price=120,
            price=121,
            trigger_source=TriggerSource.INDEX,
            tif=TimeInForce.DAY,
            expire_at=9,
        ),
        AmendOrder(ts=3, user="s", order_id=3, quantity=2),
        SetReferencePrice(ts=4, price=0),
        Halt(ts=5),
        AdvanceTime(ts=10),
    ]
    for c in cmds:
        wire = msgspec.json.encode(c)
        assert msgspec.json.decode(wire, type=Command) == c
        ev = book.process(c)
        back = msgspec.json.decode(msgspec.json.encode(ev), type=list[Event])
        assert back == ev and [type(e) for e in back] == [type(e) for e in ev]
