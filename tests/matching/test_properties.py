"""Property-based tests: invariants of the book on random command streams."""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kit.book_helpers import apply_deltas, make_spec
from kit.cmd_strategies import Op, build_commands, ops_strategy

from orrange.markets import MarketSpec
from orrange.matching import (
    BookDelta,
    CancelReason,
    Command,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderBook,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderTriggered,
    OrderType,
    Side,
    SubmitOrder,
    TimeInForce,
    TriggerSource,
)

SPECS = [
    make_spec(maker_fee_bps=-1, taker_fee_bps=5),
    make_spec(
        priority="price-reputation-time",
        reputation_tier_size=100,
        maker_fee_bps=3,
        taker_fee_bps=7,
        market_protection_bps=200,
    ),
]
ALL = 10**9
RESTING_TYPES = {OrderType.LIMIT, OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT_LIMIT}
MARKET_TYPES = {OrderType.MARKET, OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET}
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _fee(n: int, bps: int) -> int:
    x = Fraction(n * bps, 10000)
    return math.ceil(x) if bps >= 0 else -math.floor(-x)


def _compatible(a: SubmitOrder, b: SubmitOrder) -> bool:
    if a.reputation < b.min_reputation or b.reputation < a.min_reputation:
        return False
    pa, pb = set(a.payment_methods), set(b.payment_methods)
    return not (pa and pb and not pa & pb)


def _reached(c: SubmitOrder, price: int) -> bool:
    rising = (c.side is Side.BUY) == (c.order_type in (OrderType.STOP_MARKET, OrderType.STOP_LIMIT))
    assert c.trigger_price is not None
    return price >= c.trigger_price if rising else price <= c.trigger_price


class Checked:
    """Runs a book and checks every invariant after every command."""

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.book = OrderBook(spec)
        self.tiered = spec.priority == "price-reputation-time"
        self.submit: dict[int, SubmitOrder] = {}
        self.total: dict[int, int] = {}  # accepted quantity
        self.open: dict[int, int] = {}  # open lots according to the events so far
        self.amended_away: Counter[int] = Counter()  # net lots removed by amends
        self.filled: Counter[int] = Counter()
        self.taker_filled: Counter[int] = Counter()
        self.canceled: Counter[int] = Counter()
        self.expired: Counter[int] = Counter()
        self.stamp: dict[int, int] = {}
        self.entered: dict[int, int] = {}  # open lots when the order entered the book
        self.cancels: dict[int, list[OrderCanceled]] = {}
        self.l2: dict[Side, dict[int, int]] = {Side.BUY: {}, Side.SELL: {}}
        self.seq = 0
        self.ts = 0

    def step(self, cmd: Command) -> list[Event]:
        ev = self.book.process(cmd)
        self.ts = max(self.ts, cmd.ts)
        for e in ev:
            self.seq += 1
            assert e.seq == self.seq and e.ts == cmd.ts
            self._account(e, cmd)
        apply_deltas([e for e in ev if isinstance(e, BookDelta)], self.l2)
        self.check_state()
        return ev

    def _account(self, e: Event, cmd: Command) -> None:
        if isinstance(e, OrderAccepted):
            assert isinstance(cmd, SubmitOrder)
            self.submit[e.order_id] = cmd
            self.total[e.order_id] = e.quantity
            self.open[e.order_id] = e.quantity
            if not e.pending:
                self.stamp[e.order_id] = e.seq
                self.entered[e.order_id] = e.quantity
        elif isinstance(e, OrderFilled):
            self.filled[e.maker_order_id] += e.quantity
            self.filled[e.taker_order_id] += e.quantity
            self.taker_filled[e.taker_order_id] += e.quantity
            self.open[e.maker_order_id] -= e.quantity
            self.open[e.taker_order_id] -= e.quantity
            assert e.maker_leaves == self.open[e.maker_order_id] >= 0
            assert e.taker_leaves == self.open[e.taker_order_id] >= 0
            n = e.price * e.quantity
            assert e.maker_fee == _fee(n, self.spec.maker_fee_bps)
            assert e.taker_fee == _fee(n, self.spec.taker_fee_bps)
            m, t = self.submit[e.maker_order_id], self.submit[e.taker_order_id]
            assert _compatible(m, t)
            if m.payment_methods and t.payment_methods:
                assert set(e.payment_methods) == set(m.payment_methods) & set(t.payment_methods)
                assert e.payment_methods
            else:
                assert set(e.payment_methods) == set(m.payment_methods) | set(t.payment_methods)
            assert e.aggressor is t.side and m.side is not t.side
            if t.price is not None and t.order_type in MARKET_TYPES:  # its protection price
                assert e.price <= t.price if t.side is Side.BUY else e.price >= t.price, e
        elif isinstance(e, OrderCanceled):
            self.canceled[e.order_id] += e.canceled_qty
            self.open[e.order_id] -= e.canceled_qty
            assert e.canceled_qty > 0 and e.leaves == self.open[e.order_id] >= 0
            self.cancels.setdefault(e.order_id, []).append(e)
        elif isinstance(e, OrderExpired):
            self.expired[e.order_id] += e.expired_qty
            assert e.expired_qty == self.open[e.order_id] > 0
            self.open[e.order_id] = 0
        elif isinstance(e, OrderAmended):
            # the amended total counts what has filled
            assert e.quantity - e.leaves == self.filled[e.order_id] and e.leaves > 0
            self.amended_away[e.order_id] += self.open[e.order_id] - e.leaves
            self.open[e.order_id] = e.leaves
            if not e.priority_kept:
                self.stamp[e.order_id] = e.seq
        elif isinstance(e, OrderTriggered):
            self.stamp[e.order_id] = e.seq
            self.entered[e.order_id] = self.open[e.order_id]

    def check_state(self) -> None:
        book = self.book
        depth = book.depth(ALL)
        # L2 deltas applied to an empty book reproduce depth()
        assert sorted(self.l2[Side.BUY].items(), reverse=True) == depth.bids
        assert sorted(self.l2[Side.SELL].items()) == depth.asks
        resting: dict[Side, list[tuple[int, int]]] = {Side.BUY: [], Side.SELL: []}
        for side, levels in ((Side.BUY, depth.bids), (Side.SELL, depth.asks)):
            prices = [p for p, _ in levels]
            assert prices == sorted(prices, reverse=side is Side.BUY)
            for price, size in levels:
                q = book.l3(side, price)
                # no empty levels; level size is the sum of its orders
                assert size > 0 and q and sum(o.leaves for o in q) == size
                # FIFO within the level (tier first under price-reputation-time)
                keys = [self._priority(o.order_id) for o in q]
                assert keys == sorted(keys), (side, price, [o.order_id for o in q])
                resting[side] += [(o.order_id, price) for o in q]
        # never crossed at rest, except between makers that may not trade with each other
        for bid_id, bp in resting[Side.BUY]:
            for ask_id, ap in resting[Side.SELL]:
                if bp >= ap:
                    assert not _compatible(self.submit[bid_id], self.submit[ask_id]), (
                        bid_id,
                        ask_id,
                    )
        if depth.bids and depth.asks:
            assert book.best_bid() == depth.bids[0][0] and book.best_ask() == depth.asks[0][0]
        # no pending stop is left that the current last/index price reaches (while trading)
        if not book.halted:
            for v in book.open_orders():
                if v.pending:
                    c = self.submit[v.order_id]
                    px = book.last_price if c.trigger_source is TriggerSource.LAST else None
                    px = book.reference_price if c.trigger_source is TriggerSource.INDEX else px
                    assert px is None or not _reached(c, px), v
        # IOC/FOK/market never rest; DAY orders are gone once due
        for v in book.open_orders():
            c = self.submit[v.order_id]
            if not v.pending:
                assert c.tif in (TimeInForce.GTC, TimeInForce.DAY), v
                assert c.order_type in RESTING_TYPES, v
            if c.tif is TimeInForce.DAY:
                assert c.expire_at is not None and c.expire_at > self.ts
            assert v.leaves == self.open[v.order_id] > 0
            assert v.quantity == v.filled + v.leaves and v.filled == self.filled[v.order_id]

    def _priority(self, oid: int) -> tuple[int, int]:
        tier = self.submit[oid].reputation // self.spec.reputation_tier_size if self.tiered else 0
        return (-tier, self.stamp[oid])

    def check_final(self) -> None:
        for oid, total in self.total.items():
            v = self.book.order(oid)
            leaves = 0 if v is None else v.leaves
            # quantity is conserved per order: submitted = filled + canceled + expired + resting
            # (+ what amends took away, net of what they added)
            gone = self.filled[oid] + self.canceled[oid] + self.expired[oid]
            assert total == gone + self.amended_away[oid] + leaves, oid
            assert self.open[oid] == leaves
            c = self.submit[oid]
            if c.tif is TimeInForce.FOK and oid in self.entered:
                # FOK is all-or-nothing (of the size it had when it reached the book)
                size = self.entered[oid]
                got = self.taker_filled[oid]
                cs = self.cancels.get(oid, [])
                if got:
                    assert got == size and not cs, oid
                else:
                    assert [x.canceled_qty for x in cs] == [size], oid
                    ok = {CancelReason.FOK_UNFILLABLE}
                    if c.order_type is not OrderType.LIMIT:  # a market FOK on an empty side
                        ok.add(CancelReason.NO_LIQUIDITY)
                    assert cs[0].reason in ok, oid


@SETTINGS
@given(spec=st.sampled_from(SPECS), ops=ops_strategy(full=True))
def test_invariants_on_random_streams(spec: MarketSpec, ops: list[Op]) -> None:
    cmds = build_commands(ops, spec)
    run = Checked(spec)
    for c in cmds:
        run.step(c)
    run.check_final()


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    spec=st.sampled_from(SPECS),
    ops=ops_strategy(full=True),
    cut=st.floats(0, 1),
)
def test_snapshot_restore_replay_equals_uninterrupted_run(
    spec: MarketSpec, ops: list[Op], cut: float
) -> None:
    cmds = build_commands(ops, spec)
    k = int(cut * len(cmds))
    whole = OrderBook(spec)
    expected = [whole.process(c) for c in cmds]
    first = OrderBook(spec)
    for c in cmds[:k]:
        first.process(c)
    data = first.snapshot()
    restored = OrderBook.restore(spec, data)
    assert restored.snapshot() == data
    assert [restored.process(c) for c in cmds[k:]] == expected[k:]
    assert restored.snapshot() == whole.snapshot()
    assert restored.depth(ALL) == whole.depth(ALL)
    assert restored.open_orders() == whole.open_orders()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(spec=st.sampled_from(SPECS), ops=ops_strategy(full=True))
def test_replay_is_deterministic_and_rejections_change_nothing(
    spec: MarketSpec, ops: list[Op]
) -> None:
    cmds = build_commands(ops, spec)
    a, b = OrderBook(spec), OrderBook(spec)
    for c in cmds:
        before = a.snapshot_state()
        ev = a.process(c)
        assert ev == b.process(c)
        if ev and all(isinstance(e, OrderRejected) for e in ev):
            after = a.snapshot_state()
            assert after.bids == before.bids and after.asks == before.asks
            assert after.stops == before.stops
