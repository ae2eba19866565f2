"""The pure risk rules: every reject reason, the band, the rate bucket, open-order bookkeeping."""

from __future__ import annotations

import os
import uuid
from fractions import Fraction

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orrange.markets import MarketSpec
from orrange.matching.commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Halt,
    SetReferencePrice,
    SubmitOrder,
)
from orrange.matching.enums import CancelReason, OrderType, RejectReason, Side, TimeInForce
from orrange.matching.events import (
    BookDelta,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
)
from orrange.risk import (
    GENERATED_ID_PREFIX,
    RiskEngine,
    RiskLimits,
    TokenBucket,
    client_order_key,
    escape_key_part,
    generate_client_order_id,
    is_generated_client_order_id,
)

SYM = "T-USD"
# 1 tick = 0.01 USD, 1 lot = 1 T: a notional unit is 0.01 USD; min notional 100 USD = 10000 units
SPEC = MarketSpec(
    symbol=SYM,
    base="T",
    quote="USD",
    tick_size="0.01",
    lot_size="1",
    min_qty="2",
    max_qty="1000",
    min_notional="100",
    price_band_bps=1000,
)
T0 = 1_700_000_000_000


def engine(**limits: int) -> RiskEngine:
    return RiskEngine({SYM: SPEC}, RiskLimits(**limits))


def submit(
    user: str = "alice", qty: int = 10, price: int | None = 10_000, ts: int = T0, **kw: object
) -> SubmitOrder:
    return SubmitOrder(ts=ts, user=user, side=Side.BUY, quantity=qty, price=price, **kw)  # type: ignore[arg-type]


def accepted(order_id: int, user: str = "alice", seq: int = 1) -> OrderAccepted:
    return OrderAccepted(
        symbol=SYM,
        seq=seq,
        ts=T0,
        order_id=order_id,
        user=user,
        client_order_id="",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        tif=TimeInForce.GTC,
        price=10_000,
        trigger_price=None,
        quantity=10,
        pending=False,
    )


def fill(maker: int, taker: int, price: int, maker_leaves: int, taker_leaves: int) -> OrderFilled:
    return OrderFilled(
        symbol=SYM,
        seq=9,
        ts=T0,
        maker_order_id=maker,
        taker_order_id=taker,
        maker_user="alice",
        taker_user="bob",
        price=price,
        quantity=1,
        aggressor=Side.SELL,
        maker_fee=0,
        taker_fee=0,
        maker_leaves=maker_leaves,
        taker_leaves=taker_leaves,
        payment_methods=(),
    )


def canceled(order_id: int, leaves: int, user: str = "alice") -> OrderCanceled:
    return OrderCanceled(
        symbol=SYM,
        seq=5,
        ts=T0,
        order_id=order_id,
        user=user,
        reason=CancelReason.USER,
        canceled_qty=3,
        leaves=leaves,
    )


def reason(result: object) -> RejectReason:
    assert isinstance(result, OrderRejected), result
    assert result.seq == 0
    return result.reason


# ------------------------------------------------------------------ pass-through


def test_a_good_submit_passes_unchanged_and_counts_in_flight() -> None:
    risk = engine()
    cmd = submit(client_order_id="c1")
    assert risk.check(SYM, cmd) is cmd
    assert risk.in_flight("alice") == 1
    assert risk.open_orders("alice") == 1


def test_cancels_and_operator_commands_always_pass() -> None:
    risk = engine(rate_per_s=1, burst=1, max_open_orders=1)
    assert risk.check(SYM, submit()) == submit()  # uses the only token and the only slot
    for cmd in (
        CancelOrder(ts=T0, user="alice", order_id=1),
        CancelAll(ts=T0, user="alice"),
        SetReferencePrice(ts=T0, price=1),
        Halt(ts=T0),
    ):
        assert risk.check(SYM, cmd) is cmd


# ------------------------------------------------------------------ each reason


def test_unknown_market_names_the_symbol_and_echoes_the_command() -> None:
    cmd = submit(client_order_id="c9")
    rej = engine().check("NOPE-USD", cmd)
    assert reason(rej) is RejectReason.UNKNOWN_MARKET
    assert isinstance(rej, OrderRejected)
    assert (rej.symbol, rej.user, rej.client_order_id, rej.command, rej.ts) == (
        "NOPE-USD",
        "alice",
        "c9",
        "submit",
        T0,
    )
    assert "NOPE-USD" in rej.message
    cancel = CancelOrder(ts=T0, user="alice", order_id=42)
    rej2 = engine().check("NOPE-USD", cancel)
    assert isinstance(rej2, OrderRejected)
    assert (rej2.command, rej2.order_id, rej2.reason) == (
        "cancel",
        42,
        RejectReason.UNKNOWN_MARKET,
    )


@pytest.mark.parametrize(
    ("cmd", "expected"),
    [
        (submit(qty=0), RejectReason.INVALID_QUANTITY),
        (submit(qty=-5), RejectReason.INVALID_QUANTITY),
        (submit(qty=1), RejectReason.BELOW_MIN_QTY),
        (submit(qty=1001), RejectReason.ABOVE_MAX_QTY),
        (submit(price=0), RejectReason.INVALID_PRICE),
        (submit(price=-1), RejectReason.INVALID_PRICE),
        (
            submit(order_type=OrderType.STOP_MARKET, price=None, trigger_price=0),
            RejectReason.INVALID_PRICE,
        ),
        # 999 lots x 10 ticks = 9990 units < 10000 (100 USD)
        (submit(qty=999, price=10), RejectReason.BELOW_MIN_NOTIONAL),
        (
            submit(order_type=OrderType.STOP_MARKET, price=None, trigger_price=10, qty=999),
            RejectReason.BELOW_MIN_NOTIONAL,
        ),
    ],
)
def test_submit_rejections(cmd: SubmitOrder, expected: RejectReason) -> None:
    risk = engine()
    rej = risk.check(SYM, cmd)
    assert reason(rej) is expected
    assert isinstance(rej, OrderRejected) and rej.message
    assert risk.in_flight("alice") == 0  # a rejection changes nothing


def test_min_notional_boundary_is_exact() -> None:
    risk = engine()
    assert risk.check(SYM, submit(qty=1000, price=10)) == submit(qty=1000, price=10)  # 10000
    assert reason(risk.check(SYM, submit(qty=2, price=4999))) is RejectReason.BELOW_MIN_NOTIONAL


def test_market_order_notional_uses_the_last_trade_price_once_known() -> None:
    risk = engine()
    small = submit(order_type=OrderType.MARKET, price=None, qty=5)
    assert risk.check(SYM, small) is small  # no reference price yet: the book decides
    risk.apply(fill(1, 2, price=100, maker_leaves=5, taker_leaves=0))
    assert reason(risk.check(SYM, small)) is RejectReason.BELOW_MIN_NOTIONAL  # 500 < 10000


def test_price_band_only_after_the_first_trade_and_inclusive_at_the_edge() -> None:
    risk = engine()
    far = submit(price=50_000)
    assert risk.check(SYM, far) is far
    risk.apply(fill(1, 2, price=10_000, maker_leaves=1, taker_leaves=0))
    assert risk.last_price[SYM] == 10_000
    for ok in (9_000, 11_000, 10_000):  # exactly 1000 bps away is allowed
        assert risk.check(SYM, submit(price=ok)) == submit(price=ok)
    for bad in (8_999, 11_001, 50_000):
        rej = risk.check(SYM, submit(price=bad))
        assert reason(rej) is RejectReason.PRICE_OUT_OF_BAND
        assert isinstance(rej, OrderRejected) and "9000..11000" in rej.message


def test_zero_band_disables_the_check() -> None:
    spec = msgspec_replace_band(0)
    risk = RiskEngine({SYM: spec})
    risk.apply(fill(1, 2, price=10_000, maker_leaves=1, taker_leaves=0))
    assert risk.check(SYM, submit(price=90_000)) == submit(price=90_000)


def msgspec_replace_band(band: int) -> MarketSpec:
    return msgspec.structs.replace(SPEC, price_band_bps=band)


def test_amend_rules() -> None:
    risk = engine()
    risk.apply(fill(1, 2, price=10_000, maker_leaves=1, taker_leaves=0))

    def amend(**kw: int) -> AmendOrder:
        return AmendOrder(ts=T0, user="alice", order_id=7, **kw)

    assert risk.check(SYM, amend(quantity=5)) == amend(quantity=5)
    assert risk.check(SYM, amend(price=10_500)) == amend(price=10_500)
    assert reason(risk.check(SYM, amend(quantity=0))) is RejectReason.INVALID_QUANTITY
    assert reason(risk.check(SYM, amend(quantity=1001))) is RejectReason.ABOVE_MAX_QTY
    assert reason(risk.check(SYM, amend(price=0))) is RejectReason.INVALID_PRICE
    rej = risk.check(SYM, amend(price=20_000))
    assert reason(rej) is RejectReason.PRICE_OUT_OF_BAND
    assert isinstance(rej, OrderRejected) and (rej.command, rej.order_id) == ("amend", 7)
    assert risk.in_flight("alice") == 0  # amends do not open orders


def test_rate_limit_burst_then_refill_from_command_time() -> None:
    risk = engine(rate_per_s=10, burst=3, max_open_orders=1000)
    for _ in range(3):
        assert not isinstance(risk.check(SYM, submit()), OrderRejected)
    rej = risk.check(SYM, submit())
    assert reason(rej) is RejectReason.RATE_LIMITED
    assert risk.in_flight("alice") == 3
    # other users have their own bucket
    assert not isinstance(risk.check(SYM, submit(user="bob")), OrderRejected)
    # 10/s: one token every 100 ms of command time
    assert reason(risk.check(SYM, submit(ts=T0 + 99))) is RejectReason.RATE_LIMITED
    assert not isinstance(risk.check(SYM, submit(ts=T0 + 100)), OrderRejected)
    assert reason(risk.check(SYM, submit(ts=T0 + 100))) is RejectReason.RATE_LIMITED
    # an older timestamp never refills
    assert reason(risk.check(SYM, submit(ts=T0))) is RejectReason.RATE_LIMITED
    # a long pause refills only up to the burst
    results = [risk.check(SYM, submit(ts=T0 + 3_600_000)) for _ in range(4)]
    assert [isinstance(r, OrderRejected) for r in results] == [False, False, False, True]


def test_open_order_cap_counts_in_flight_and_accepted_orders() -> None:
    risk = engine(max_open_orders=2)
    assert not isinstance(risk.check(SYM, submit()), OrderRejected)
    assert not isinstance(risk.check(SYM, submit()), OrderRejected)
    rej = risk.check(SYM, submit())
    assert reason(rej) is RejectReason.TOO_MANY_OPEN_ORDERS
    assert isinstance(rej, OrderRejected) and "2 open orders" in rej.message
    # the book accepts one and rejects the other: one slot frees up
    risk.apply(accepted(1))
    risk.apply(
        OrderRejected(
            symbol=SYM,
            seq=2,
            ts=T0,
            order_id=0,
            user="alice",
            client_order_id="",
            command="submit",
            reason=RejectReason.POST_ONLY_WOULD_CROSS,
            message="x",
        )
    )
    assert (risk.in_flight("alice"), risk.open_orders("alice")) == (0, 1)
    assert not isinstance(risk.check(SYM, submit()), OrderRejected)
    assert reason(risk.check(SYM, submit())) is RejectReason.TOO_MANY_OPEN_ORDERS
    # a partial cancel keeps the order open, a full one closes it
    risk.apply(accepted(2))
    risk.apply(canceled(1, leaves=4))
    assert risk.open_orders("alice") == 2
    risk.apply(canceled(1, leaves=0))
    assert risk.open_orders("alice") == 1
    assert not isinstance(risk.check(SYM, submit()), OrderRejected)


def test_release_undoes_the_in_flight_count() -> None:
    risk = engine(max_open_orders=1)
    cmd = submit()
    assert risk.check(SYM, cmd) is cmd
    risk.release(cmd)
    assert risk.open_orders("alice") == 0
    assert risk.check(SYM, cmd) is cmd


def test_events_close_orders_by_fill_expiry_amend_and_ignore_the_rest() -> None:
    risk = engine()
    for oid, user in ((1, "alice"), (2, "bob"), (3, "alice"), (4, "alice")):
        risk.apply(accepted(oid, user))
    risk.apply(accepted(1))  # a repeated event opens nothing twice
    assert (risk.open_orders("alice"), risk.open_orders("bob")) == (3, 1)
    risk.apply(fill(maker=1, taker=2, price=10_100, maker_leaves=0, taker_leaves=0))
    assert (risk.open_orders("alice"), risk.open_orders("bob")) == (2, 0)
    assert risk.last_price[SYM] == 10_100
    risk.apply(fill(maker=1, taker=2, price=10_200, maker_leaves=0, taker_leaves=0))
    assert risk.open_orders("alice") == 2  # closing twice closes once
    risk.apply(OrderExpired(symbol=SYM, seq=10, ts=T0, order_id=3, user="alice", expired_qty=2))
    risk.apply(
        OrderAmended(
            symbol=SYM,
            seq=11,
            ts=T0,
            order_id=4,
            user="alice",
            price=1,
            quantity=3,
            leaves=0,
            priority_kept=True,
        )
    )
    risk.apply(BookDelta(symbol=SYM, seq=12, ts=T0, side=Side.BUY, price=1, size=0))
    assert risk.open_orders("alice") == 0
    assert risk.last_price[SYM] == 10_200


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RiskLimits(max_open_orders=0)
    with pytest.raises(ValueError):
        RiskLimits(rate_per_s=0)
    with pytest.raises(ValueError):
        RiskLimits(burst=-1)


# ------------------------------------------------------------------ properties


@given(
    last=st.integers(1, 10**12),
    price=st.integers(1, 10**12),
    band=st.integers(1, 20_000),
)
def test_band_decision_is_the_exact_rational_one(last: int, price: int, band: int) -> None:
    spec = msgspec_replace_band(band)
    risk = RiskEngine({SYM: spec})
    risk.apply(fill(1, 2, price=last, maker_leaves=1, taker_leaves=1))
    result = risk.check(SYM, submit(qty=1000, price=price))
    inside = abs(Fraction(price, last) - 1) <= Fraction(band, 10_000)
    if 1000 * price < spec.min_notional_units:
        assert reason(result) is RejectReason.BELOW_MIN_NOTIONAL
    elif inside:
        assert not isinstance(result, OrderRejected)
    else:
        assert reason(result) is RejectReason.PRICE_OUT_OF_BAND


@given(
    rate=st.integers(1, 1000),
    burst=st.integers(1, 50),
    gaps=st.lists(st.integers(0, 2000), min_size=1, max_size=200),
)
def test_token_bucket_never_grants_more_than_burst_plus_refill(
    rate: int, burst: int, gaps: list[int]
) -> None:
    bucket = TokenBucket(rate, burst, T0)
    ts = T0
    granted = 0
    for gap in gaps:
        ts += gap
        granted += bucket.take(ts)
    # exact upper bound, and a bucket that is never short grants every request
    assert granted <= burst + (ts - T0) * rate // 1000
    assert 0 <= bucket.tokens <= burst * 1000
    if len(gaps) <= burst:
        assert granted == len(gaps)


@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["open", "close", "partial"]), st.integers(1, 8)),
        max_size=100,
    )
)
def test_open_count_matches_a_model(ops: list[tuple[str, int]]) -> None:
    risk = engine()
    model: set[int] = set()
    for op, oid in ops:
        if op == "open":
            risk.apply(accepted(oid))
            model.add(oid)
        elif op == "close":
            risk.apply(canceled(oid, leaves=0))
            model.discard(oid)
        else:
            risk.apply(canceled(oid, leaves=1))
    assert risk.open_orders("alice") == len(model)


# ------------------------------------------------------------------ keys


def test_client_order_keys_are_valid_and_injective() -> None:
    assert client_order_key("alice", "order-1_A") == "alice.order-1_A"
    assert client_order_key("a.b", "c") != client_order_key("a", "b.c")
    assert client_order_key("a.b", "c") == "a=2Eb.c"
    assert escape_key_part("") == "="
    assert escape_key_part("é *") == "=C3=A9=20=2A"


@given(user=st.text(max_size=20), cid=st.text(max_size=20), user2=st.text(max_size=20))
def test_client_order_key_charset_and_injectivity(user: str, cid: str, user2: str) -> None:
    key = client_order_key(user, cid)
    assert set(key) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.")
    assert key.count(".") == 1
    assert not key.startswith(".") and not key.endswith(".")
    if user2 != user:
        assert client_order_key(user2, cid) != key


def test_exempt_users_skip_the_cap_and_the_rate_limit_only() -> None:
    risk = RiskEngine(
        {SYM: SPEC},
        RiskLimits(max_open_orders=1, rate_per_s=1, burst=1, exempt_users=frozenset({"mm"})),
    )
    for oid in range(1, 4):
        risk.apply(accepted(oid, user="mm"))
    assert risk.open_orders("mm") == 3
    for _ in range(5):
        assert not isinstance(risk.check(SYM, submit(user="mm")), OrderRejected)
        amend = AmendOrder(ts=T0, user="mm", order_id=1, quantity=5)
        assert risk.check(SYM, amend) is amend
    assert reason(risk.check(SYM, submit(user="mm", qty=0))) is RejectReason.INVALID_QUANTITY
    assert not isinstance(risk.check(SYM, submit()), OrderRejected)
    assert reason(risk.check(SYM, submit())) is RejectReason.TOO_MANY_OPEN_ORDERS


def test_generated_client_order_ids() -> None:
    cid = generate_client_order_id()
    assert cid.startswith(GENERATED_ID_PREFIX) and len(cid) == 33
    assert is_generated_client_order_id(cid)
    assert cid != generate_client_order_id()
    for other in ("c1", "", "~", "~" + "g" * 32, cid.upper(), cid + "0", cid[1:] + "0"):
        assert not is_generated_client_order_id(other), other


def test_generated_client_order_ids_are_uuid4_and_differ_after_fork() -> None:
    ids = [generate_client_order_id() for _ in range(1000)]  # spans several 256-id refills
    assert len(set(ids)) == 1000
    for cid in ids[:300]:
        u = uuid.UUID(cid[1:])
        assert u.version == 4 and u.variant == uuid.RFC_4122
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child draws from its own refilled pool, not the parent's buffer
        os.write(write_end, generate_client_order_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child_id = os.read(read_end, 64).decode()
    os.close(read_end)
    os.close(write_end)
    assert is_generated_client_order_id(child_id)
    assert child_id != generate_client_order_id()
