"""The pure settlement state machine: every path, timeouts, idempotency, reorg rollback and
the reputation facts it emits."""

from __future__ import annotations

import itertools

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orrange.markets import MarketSpec
from orrange.matching.enums import Side
from orrange.matching.events import OrderFilled
from orrange.settlement.config import SettlementConfig, load_settlement_config
from orrange.settlement.events import (
    ChainEvent,
    EscrowDisputed,
    EscrowFunded,
    EscrowPaid,
    EscrowReclaimed,
    EscrowReleased,
    EscrowResolved,
)
from orrange.settlement.lifecycle import (
    LifecycleError,
    P2PTrade,
    ReputationEvent,
    TradeState,
    Transition,
    apply_event,
    open_trade,
    outcomes,
    revert_event,
    tick,
    trade_id_for_fill,
)

SPEC = MarketSpec(
    symbol="BTC-USDT",
    base="BTC",
    quote="USDT",
    tick_size="0.01",
    lot_size="0.00001",
    min_qty="0.00001",
    max_qty="1000",
)
CONFIG = load_settlement_config()
T0 = 1_700_000_000_000
SELLER_ADDR = "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"
BUYER_ADDR = "0x6813Eb9362372EEF6200f3b1dbC3f819671cBA69"
TOKEN = "0x0000000000000000000000000000000000000000"
MIN = 60_000


def fill(
    aggressor: Side = Side.BUY, methods: tuple[str, ...] = ("sepa",), seq: int = 7
) -> OrderFilled:
    return OrderFilled(
        symbol="BTC-USDT",
        seq=seq,
        ts=T0,
        maker_order_id=1,
        taker_order_id=2,
        maker_user="alice",
        taker_user="bob",
        price=6_500_000,  # 65,000.00
        quantity=1_500,  # 0.015 BTC
        aggressor=aggressor,
        maker_fee=0,
        taker_fee=0,
        maker_leaves=0,
        taker_leaves=0,
        payment_methods=methods,
    )


def new_trade(methods: tuple[str, ...] = ("sepa",)) -> P2PTrade:
    return open_trade(fill(Side.BUY, methods), SPEC, CONFIG)  # bob buys from alice


class Chain:
    """Builds the chain events of one trade, one block per event unless told."""

    def __init__(self, trade: P2PTrade) -> None:
        self.tid = trade.trade_id
        self.block = 100

    def meta(
        self, block: int | None = None, log_index: int = 0, fork: str = "a"
    ) -> dict[str, object]:
        if block is None:
            self.block += 1
            block = self.block
        return {
            "trade_id": self.tid,
            "block_number": block,
            "block_hash": "0x" + f"{fork}{block:063x}",
            "tx_hash": "0x" + f"{block:032x}{log_index:032x}",
            "log_index": log_index,
        }

    def funded(self, deadline_s: int, amount: int = 10**18, **kw: object) -> EscrowFunded:
        return EscrowFunded(
            seller=SELLER_ADDR,
            buyer=BUYER_ADDR,
            token=TOKEN,
            amount=amount,
            fee_bps=150,
            payment_deadline=deadline_s,
            **self.meta(**kw),
        )  # type: ignore[arg-type]

    def paid(self, **kw: object) -> EscrowPaid:
        return EscrowPaid(buyer=BUYER_ADDR, **self.meta(**kw))  # type: ignore[arg-type]

    def released(self, **kw: object) -> EscrowReleased:
        return EscrowReleased(
            buyer=BUYER_ADDR, to_buyer=985 * 10**15, fee=15 * 10**15, **self.meta(**kw)
        )  # type: ignore[arg-type]

    def disputed(self, **kw: object) -> EscrowDisputed:
        return EscrowDisputed(by=BUYER_ADDR, **self.meta(**kw))  # type: ignore[arg-type]

    def resolved(self, bps: int, **kw: object) -> EscrowResolved:
        share = 10**18 * bps // 10_000
        fee = share * 150 // 10_000
        return EscrowResolved(
            buyer_bps=bps,
            to_buyer=share - fee,
            to_seller=10**18 - share,
            fee=fee,
            **self.meta(**kw),
        )  # type: ignore[arg-type]

    def reclaimed(self, **kw: object) -> EscrowReclaimed:
        return EscrowReclaimed(seller=SELLER_ADDR, amount=10**18, **self.meta(**kw))  # type: ignore[arg-type]


def run(
    trade: P2PTrade, steps: list[tuple[ChainEvent, int]]
) -> tuple[P2PTrade, list[ReputationEvent]]:
    rep: list[ReputationEvent] = []
    for ev, at in steps:
        tr = apply_event(trade, ev, at)
        trade = tr.trade
        rep.extend(tr.reputation)
    return trade, rep


def kinds(rep: list[ReputationEvent] | tuple[ReputationEvent, ...]) -> list[tuple[str, str, bool]]:
    return sorted((e.user, e.kind, e.retract) for e in rep)


# -- opening ------------------------------------------------------------------------------------


def test_open_trade_from_a_fill() -> None:
    t = new_trade()
    assert (t.buyer, t.seller) == ("bob", "alice")
    assert t.state == TradeState.AWAITING_FUNDING
    assert t.trade_id == trade_id_for_fill("BTC-USDT", 7)
    assert t.trade_id.startswith("0x") and len(t.trade_id) == 66
    assert t.notional == 6_500_000 * 1_500
    assert t.volume == 97_500  # 0.015 * 65,000.00 = 975.00 USDT = 97,500 cents
    assert t.payment_method == "sepa"
    assert t.funding_deadline_ms == T0 + 900_000
    assert t.payment_window_ms == 86_400_000
    assert t.payment_deadline_s(T0) == (T0 + 86_400_000) // 1000
    assert t.payment_deadline_s(T0 + 1) == (T0 + 86_400_000) // 1000 + 1  # rounded up
    sell = open_trade(fill(Side.SELL), SPEC, CONFIG)
    assert (sell.buyer, sell.seller) == ("alice", "bob")
    assert sell.trade_id == t.trade_id  # same fill, same id
    assert open_trade(fill(seq=8), SPEC, CONFIG).trade_id != t.trade_id


def test_payment_window_per_method() -> None:
    assert new_trade(("pix", "sepa")).payment_window_ms == 900_000
    assert new_trade(("carrier_pigeon",)).payment_window_ms == CONFIG.default_payment_window_ms
    default = new_trade(())
    assert default.payment_method == CONFIG.default_payment_method == "bank_transfer"
    assert default.payment_window_ms == 3_600_000


def test_open_trade_rejections() -> None:
    self_trade = msgspec.structs.replace(fill(), taker_user="alice")
    with pytest.raises(LifecycleError, match="themself"):
        open_trade(self_trade, SPEC, CONFIG)
    other = msgspec.structs.replace(SPEC, symbol="ETH-USDT")
    with pytest.raises(LifecycleError, match="spec of ETH-USDT"):
        open_trade(fill(), other, CONFIG)


# -- paths --------------------------------------------------------------------------------------


def test_happy_path() -> None:
    t = new_trade()
    c = Chain(t)
    f = c.funded(deadline_s=(T0 + 3_600_000) // 1000)
    t, rep = run(t, [(f, T0 + MIN)])
    assert t.state == TradeState.FUNDED and rep == []
    assert (t.amount, t.token, t.fee_bps) == (10**18, TOKEN, 150)
    assert (t.seller_address, t.buyer_address) == (SELLER_ADDR, BUYER_ADDR)
    assert t.payment_deadline_ms == T0 + 3_600_000
    t, rep = run(t, [(c.paid(), T0 + 10 * MIN)])
    assert t.state == TradeState.PAID and t.paid_ms == T0 + 10 * MIN and rep == []
    rel = c.released()
    tr = apply_event(t, rel, T0 + 25 * MIN)
    t = tr.trade
    assert t.state == TradeState.RELEASED and t.terminal
    assert (t.to_buyer, t.to_seller, t.fee) == (985 * 10**15, 0, 15 * 10**15)
    assert t.closed_ms == T0 + 25 * MIN
    assert set(t.tx_hashes) == {"funded", "paid", "released"}
    assert t.tx_hashes["released"] == rel.tx_hash
    assert kinds(tr.reputation) == [("alice", "completed", False), ("bob", "completed", False)]
    seller_fact = next(e for e in tr.reputation if e.user == "alice")
    assert seller_fact.release_ms == 15 * MIN
    assert seller_fact.volume == 97_500
    assert next(e for e in tr.reputation if e.user == "bob").release_ms is None
    # time passing after the end changes nothing
    later = tick(t, T0 + 10 * 86_400_000)
    assert later.changed is False and later.reputation == ()
    assert later.trade.state == TradeState.RELEASED


def test_release_before_the_paid_mark_measures_from_funding() -> None:
    t = new_trade()
    c = Chain(t)
    t, rep = run(t, [(c.funded((T0 + 3_600_000) // 1000), T0 + MIN), (c.released(), T0 + 4 * MIN)])
    assert t.state == TradeState.RELEASED
    (seller,) = [e for e in rep if e.user == "alice"]
    assert seller.release_ms == 3 * MIN


@pytest.mark.parametrize(
    ("bps", "resolution", "facts"),
    [
        (
            10_000,
            "release",
            [
                ("alice", "completed", False),
                ("alice", "dispute_lost", False),
                ("bob", "completed", False),
            ],
        ),
        (0, "refund", [("bob", "dispute_lost", False)]),
        (4_000, "split", []),
    ],
)
def test_dispute_resolutions(bps: int, resolution: str, facts: list[tuple[str, str, bool]]) -> None:
    t = new_trade()
    c = Chain(t)
    t, rep = run(t, [(c.funded((T0 + 3_600_000) // 1000), T0 + MIN), (c.paid(), T0 + 2 * MIN)])
    t, rep = run(t, [(c.disputed(), T0 + 3 * MIN)])
    assert t.state == TradeState.DISPUTED and t.disputed_ms == T0 + 3 * MIN and rep == []
    # a dispute stops the payment clock: no expiry
    assert tick(t, T0 + 86_400_000).trade.state == TradeState.DISPUTED
    t, rep = run(t, [(c.resolved(bps), T0 + 60 * MIN)])
    assert t.state == TradeState.RESOLVED
    assert (t.resolution, t.buyer_bps) == (resolution, bps)
    assert t.to_buyer is not None and t.to_seller is not None and t.fee is not None
    assert t.to_buyer + t.to_seller + t.fee == 10**18
    assert kinds(rep) == facts


def test_payment_timeout_expires_then_refunds() -> None:
    t = new_trade()
    c = Chain(t)
    deadline_ms = T0 + 3_600_000
    t, _ = run(t, [(c.funded(deadline_ms // 1000), T0 + MIN)])
    assert tick(t, deadline_ms).trade.state == TradeState.FUNDED  # at the deadline: in time
    tr = tick(t, deadline_ms + 1)
    assert tr.changed and tr.trade.state == TradeState.EXPIRED
    assert [(e.user, e.kind, e.at_ms) for e in tr.reputation] == [("bob", "timed_out", deadline_ms)]
    tr2 = apply_event(tr.trade, c.reclaimed(), deadline_ms + 5 * MIN)
    assert tr2.trade.state == TradeState.REFUNDED and tr2.trade.terminal
    assert (tr2.trade.to_buyer, tr2.trade.to_seller, tr2.trade.fee) == (0, 10**18, 0)
    assert tr2.reputation == ()  # the timeout was already recorded


def test_funding_timeout_cancels_and_a_late_funding_wins() -> None:
    t = new_trade()
    assert tick(t, t.funding_deadline_ms).trade.state == TradeState.AWAITING_FUNDING
    tr = tick(t, t.funding_deadline_ms + 1)
    assert tr.trade.state == TradeState.CANCELED
    assert kinds(tr.reputation) == [("alice", "timed_out", False)]
    late = apply_event(tr.trade, Chain(t).funded((T0 + 7_200_000) // 1000), T0 + 20 * MIN)
    assert late.trade.state == TradeState.FUNDED  # the chain is the truth
    assert kinds(late.reputation) == [("alice", "timed_out", True)]


def test_events_of_another_trade_are_refused() -> None:
    t = new_trade()
    other = open_trade(fill(seq=99), SPEC, CONFIG)
    with pytest.raises(LifecycleError):
        apply_event(t, Chain(other).paid(), T0)


def test_clock_never_goes_back() -> None:
    t = new_trade()
    tr = tick(t, T0 - 1)
    assert tr.changed is False and tr.trade is t
    assert tick(t, T0 + 1).changed is False  # time moved, nothing else did


# -- idempotency and reorgs ---------------------------------------------------------------------


def _full_path(t: P2PTrade) -> list[tuple[ChainEvent, int]]:
    c = Chain(t)
    return [
        (c.funded((T0 + 3_600_000) // 1000), T0 + MIN),
        (c.paid(), T0 + 2 * MIN),
        (c.disputed(), T0 + 3 * MIN),
        (c.resolved(10_000), T0 + 4 * MIN),
    ]


def test_duplicate_events_change_nothing() -> None:
    t = new_trade()
    steps = _full_path(t)
    once, rep = run(t, steps)
    for ev, at in steps:
        tr = apply_event(once, ev, at + 999)
        assert tr == Transition(once, False, ())
    twice, rep2 = run(once, steps)
    assert twice == once and rep2 == []
    assert len(rep) == 3


def test_event_order_does_not_matter() -> None:
    t = new_trade()
    steps = _full_path(t)
    expected, expected_rep = run(t, steps)
    for perm in itertools.permutations(steps):
        got, rep = run(t, list(perm))
        assert got == expected
        # the net reputation (facts minus retractions) is the same
        net: set[tuple[str, str]] = set()
        for e in rep:
            (net.discard if e.retract else net.add)((e.user, e.kind))
        assert net == {(e.user, e.kind) for e in expected_rep}


def test_reorg_rollback_and_reinclusion() -> None:
    t = new_trade()
    c = Chain(t)
    funded = c.funded((T0 + 3_600_000) // 1000)
    paid = c.paid()
    released = c.released()
    t, _ = run(t, [(funded, T0 + MIN), (paid, T0 + 2 * MIN), (released, T0 + 3 * MIN)])
    assert t.state == TradeState.RELEASED
    # the release's block is orphaned
    tr = revert_event(t, released.event_id)
    assert tr.changed and tr.trade.state == TradeState.PAID
    assert tr.trade.closed_ms is None and "released" not in tr.trade.tx_hashes
    assert kinds(tr.reputation) == [("alice", "completed", True), ("bob", "completed", True)]
    assert all(e.retract for e in tr.reputation)
    # reverting twice, or an unknown id, is a no-op
    assert revert_event(tr.trade, released.event_id).changed is False
    # the transaction is mined again in another block of the new branch
    again = msgspec.structs.replace(
        released, block_number=released.block_number + 1, block_hash="0x" + "b" * 64
    )
    tr2 = apply_event(tr.trade, again, T0 + 4 * MIN)
    assert tr2.trade.state == TradeState.RELEASED
    assert kinds(tr2.reputation) == [("alice", "completed", False), ("bob", "completed", False)]
    # rolling the funding back too leaves a trade awaiting funding (or canceled once late)
    t3 = revert_event(
        revert_event(revert_event(tr2.trade, again.event_id).trade, paid.event_id).trade,
        funded.event_id,
    ).trade
    assert t3.state == TradeState.AWAITING_FUNDING and t3.applied == ()
    assert t3.amount is None and t3.tx_hashes == {}


def test_outcomes_are_a_function_of_the_state() -> None:
    t = new_trade()
    assert outcomes(t) == frozenset()
    done, _ = run(t, _full_path(t))
    assert {(e.user, e.kind) for e in outcomes(done)} == {
        ("alice", "completed"),
        ("alice", "dispute_lost"),
        ("bob", "completed"),
    }


@st.composite
def event_orders(draw: st.DrawFn) -> list[int]:
    idx = draw(st.lists(st.integers(0, 3), min_size=0, max_size=12))
    return idx + draw(st.permutations([0, 1, 2, 3]))


@settings(max_examples=100, deadline=None)
@given(order=event_orders(), reverts=st.lists(st.integers(0, 3), max_size=6))
def test_any_delivery_with_duplicates_and_reverts_converges(
    order: list[int], reverts: list[int]
) -> None:
    t0 = new_trade()
    steps = _full_path(t0)
    expected, _ = run(t0, steps)
    t = t0
    net: dict[tuple[str, str], int] = {}
    for i in order:
        tr = apply_event(t, *steps[i])
        t = tr.trade
        for e in tr.reputation:
            net[(e.user, e.kind)] = net.get((e.user, e.kind), 0) + (-1 if e.retract else 1)
    for i in reverts:  # a reorg undoes some, then the new branch re-includes them
        tr = revert_event(t, steps[i][0].event_id)
        t = tr.trade
        for e in tr.reputation:
            net[(e.user, e.kind)] = net.get((e.user, e.kind), 0) + (-1 if e.retract else 1)
    for i in reverts:
        tr = apply_event(t, *steps[i])
        t = tr.trade
        for e in tr.reputation:
            net[(e.user, e.kind)] = net.get((e.user, e.kind), 0) + (-1 if e.retract else 1)
    assert t == expected
    assert {k for k, v in net.items() if v} == {(e.user, e.kind) for e in outcomes(expected)}
    assert all(v in (0, 1) for v in net.values())


# -- configuration ------------------------------------------------------------------------------


def test_config_file_and_environment() -> None:
    assert CONFIG.funding_timeout_ms == 900_000
    assert CONFIG.payment_window_ms("sepa") == 86_400_000
    env = {
        "ORRANGE_SETTLEMENT_FUNDING_TIMEOUT_MS": "60_000",
        "ORRANGE_SETTLEMENT_DEFAULT_PAYMENT_METHOD": "pix",
    }
    cfg = load_settlement_config(env=env)
    assert cfg.funding_timeout_ms == 60_000 and cfg.default_payment_method == "pix"
    assert cfg.payment_methods == CONFIG.payment_methods
    assert SettlementConfig().payment_methods == {}
