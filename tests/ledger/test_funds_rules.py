"""The funds rules with the real book: every hold and release path, order type, time in force,
amend, STP mode, fee and rejection reason (T: 2 decimals, 100 base units a lot; USD: 3
decimals, 1000 base units a quote unit)."""

from __future__ import annotations

import msgspec
import pytest
from funds_harness import BPL, QPU, SYM, FundedBook

from orrange.ledger import FEES, LOSS, VAULT, Entry, EntryKind, FundsError, p2p_account
from orrange.matching import (
    AdvanceTime,
    AmendOrder,
    CancelOrder,
    OrderAccepted,
    OrderRejected,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    SetReferencePrice,
    Side,
    SubmitOrder,
    TimeInForce,
    TriggerSource,
)
from orrange.settlement.lifecycle import trade_id_for_fill

BUY, SELL = Side.BUY, Side.SELL
K = EntryKind
RICH = 10**12


def sub(user: str, side: Side, qty: int, price: int | None = None, **kw: object) -> SubmitOrder:
    return SubmitOrder(ts=kw.pop("ts", 10), user=user, side=side, quantity=qty, price=price, **kw)  # type: ignore[arg-type]


def funded(settlement: str = "vault", **kw: object) -> FundedBook:
    fb = FundedBook(settlement, **kw)  # type: ignore[arg-type]
    for u in ("a", "b", "c"):
        fb.deposit(u, "T", RICH)
        fb.deposit(u, "USD", RICH)
    return fb


def kinds(entries: list[Entry]) -> list[str]:
    return [e.kind.value for e in entries]


def assert_sound(fb: FundedBook) -> None:
    for asset in ("T", "USD"):
        audit = fb.funds.ledger.audit(asset)
        assert audit.ok, audit
    live = {v.order_id for v in fb.book.open_orders()}
    for ref in fb.funds.ledger.holds():
        if ref.startswith(SYM + ":"):
            assert int(ref.split(":")[1]) in live, f"hold {ref} of an order the book has not"


# ------------------------------------------------------------------------- holds at entry
def test_limit_buy_holds_notional_and_fee_reserve_and_stamps_the_order_id() -> None:
    fb = funded(taker_fee_bps=10, maker_fee_bps=-2)
    step = fb.send(sub("a", BUY, 3, 100))
    assert isinstance(step.decision, SubmitOrder) and step.decision.order_id == fb.cmd_seq
    # n = 300 units; fee reserve ceil(300 * 10 / 10000) + (3 - 1) = 3
    need = (300 + 3) * QPU
    assert kinds(step.entries) == ["hold"]
    e = step.entries[0]
    assert (e.source, e.seq, e.n, e.ref) == ("cmd", fb.cmd_seq, 0, f"{SYM}:{fb.cmd_seq}")
    assert fb.bal("a", "USD") == (RICH - need, need)
    assert fb.held(fb.cmd_seq) == need
    assert_sound(fb)


def test_sell_holds_the_quantity_in_base() -> None:
    fb = funded()
    fb.send(sub("a", SELL, 7, 100))
    assert fb.bal("a", "T") == (RICH - 7 * BPL, 7 * BPL)
    assert fb.bal("a", "USD") == (RICH, 0)


def test_insufficient_funds_rejects_with_asset_needed_and_available() -> None:
    fb = FundedBook()
    fb.deposit("a", "USD", 299_999)  # 299.999 USD
    step = fb.send(sub("a", BUY, 3, 100, client_order_id="c1"))
    assert isinstance(step.decision, OrderRejected)
    assert step.decision.reason is RejectReason.INSUFFICIENT_FUNDS
    assert step.decision.message == "needs 300 USD, 299.999 available"
    assert (step.decision.seq, step.decision.client_order_id) == (0, "c1")
    assert kinds(step.entries) == ["reject"] and step.entries[0].postings == ()
    assert step.events == [] and fb.book.open_orders() == []
    assert fb.bal("a", "USD") == (299_999, 0)
    fb2 = FundedBook()
    step = fb2.send(sub("a", SELL, 1, 100))
    assert isinstance(step.decision, OrderRejected)
    assert step.decision.message == "needs 1 T, 0 available"


def test_an_order_id_on_a_funded_market_is_refused() -> None:
    fb = funded()
    step = fb.send(sub("a", BUY, 1, 100, order_id=77))
    assert isinstance(step.decision, OrderRejected)
    assert step.decision.reason is RejectReason.DUPLICATE_ORDER_ID
    assert fb.bal("a", "USD") == (RICH, 0)


def test_none_market_passes_commands_unchanged_and_moves_nothing() -> None:
    fb = FundedBook("none")
    cmd = sub("a", BUY, 3, 100)
    step = fb.send(cmd)
    assert step.decision is cmd and step.entries == []
    fb.send(sub("b", SELL, 3, 100))
    assert fb.funds.ledger.accounts() == []


# ------------------------------------------------------------------------- fills and fees
def test_fill_moves_base_and_quote_and_pays_fees_and_the_maker_rebate() -> None:
    fb = funded(taker_fee_bps=10, maker_fee_bps=-2)
    fb.send(sub("a", SELL, 50, 1000))  # maker
    step = fb.send(sub("b", BUY, 50, 1002))  # taker, 2 ticks of price improvement
    n = 50 * 1000
    tf, mf = 50, -10  # ceil(50000 * 10 / 10000), -floor(50000 * 2 / 10000)
    assert kinds(step.entries) == ["hold", "fill", "fill", "fee", "fee", "release"]
    assert fb.bal("b", "USD") == (RICH - (n + tf) * QPU, 0)
    assert fb.bal("b", "T") == (RICH + 50 * BPL, 0)
    assert fb.bal("a", "USD") == (RICH + (n - mf) * QPU, 0)
    assert fb.bal("a", "T") == (RICH - 50 * BPL, 0)
    assert fb.bal(FEES, "USD") == ((tf + mf) * QPU, 0)
    assert fb.funds.ledger.holds() == {}
    assert_sound(fb)


def test_seller_taker_pays_its_fee_from_proceeds_and_buyer_maker_from_its_hold() -> None:
    fb = funded(taker_fee_bps=20, maker_fee_bps=10)
    fb.send(sub("a", BUY, 10, 500))  # maker buyer
    oid = fb.cmd_seq
    fb.send(sub("b", SELL, 4, 490))  # taker seller
    n = 4 * 500
    mf, tf = 2, 4
    # a's remaining hold is exactly what 6 lots at 500 need: 3000 + ceil(3000*20/1e4) + 5
    assert fb.held(oid) == (3000 + 6 + 5) * QPU
    assert fb.bal("a", "USD")[0] == RICH - (n + mf + 3011) * QPU
    assert fb.bal("b", "USD") == (RICH + (n - tf) * QPU, 0)
    assert fb.bal(FEES, "USD") == ((mf + tf) * QPU, 0)
    assert_sound(fb)


def test_partial_fills_keep_the_hold_at_what_the_rest_needs_and_rounding_never_overdraws() -> None:
    fb = funded(taker_fee_bps=1, maker_fee_bps=1)
    fb.send(sub("a", BUY, 8, 3))  # tiny notional: every fill's fee rounds up to 1 unit
    oid = fb.cmd_seq
    for _ in range(8):
        fb.send(sub("b", SELL, 1, 3))
        assert_sound(fb)
    assert fb.held(oid) == 0 and fb.funds.order(SYM, oid) is None
    # 8 fills of notional 3, each fee ceil(3 / 10000) = 1 unit
    assert fb.bal("a", "USD") == (RICH - (24 + 8) * QPU, 0)


# ------------------------------------------------------------- order types, time in force
def test_market_buy_protection_from_the_last_trade_and_release_of_the_remainder() -> None:
    fb = funded(market_protection_bps=500)
    assert fb.send(sub("c", BUY, 1, order_type=OrderType.MARKET)).decision.reason is (  # type: ignore[union-attr]
        RejectReason.NO_REFERENCE_PRICE
    )
    fb.send(sub("a", SELL, 1, 100))
    fb.send(sub("b", BUY, 1, 100))  # last = 100
    fb.send(sub("a", SELL, 2, 104))
    step = fb.send(sub("c", BUY, 5, order_type=OrderType.MARKET))
    assert isinstance(step.decision, SubmitOrder) and step.decision.price == 105
    assert step.entries[0].postings[0].held == 5 * 105 * QPU
    # 2 lots at 104 fill, the rest is canceled and released
    assert fb.bal("c", "USD") == (RICH - 2 * 104 * QPU, 0)
    assert fb.funds.ledger.holds() == {}
    assert_sound(fb)


def test_market_buy_with_a_client_price_and_max_slippage() -> None:
    fb = funded()
    fb.send(sub("a", SELL, 1, 100))
    fb.send(sub("b", BUY, 1, 100))
    step = fb.send(sub("c", BUY, 2, 101, order_type=OrderType.MARKET))
    assert step.decision.price == 101  # type: ignore[union-attr]
    assert step.entries[0].postings[0].held == 2 * 101 * QPU
    step = fb.send(sub("c", BUY, 2, order_type=OrderType.MARKET, max_slippage_bps=1000))
    assert step.decision.price == 110  # type: ignore[union-attr]
    assert fb.bal("c", "USD") == (RICH, 0)  # no liquidity: both released


def test_market_sell_releases_what_it_could_not_sell() -> None:
    fb = funded()
    fb.send(sub("a", BUY, 2, 100))
    fb.send(sub("b", SELL, 5, order_type=OrderType.MARKET))
    assert fb.bal("b", "T") == (RICH - 2 * BPL, 0)
    assert_sound(fb)


@pytest.mark.parametrize("tif", [TimeInForce.IOC, TimeInForce.FOK])
def test_ioc_and_fok_release_their_unfilled_remainder(tif: TimeInForce) -> None:
    fb = funded()
    fb.send(sub("a", SELL, 2, 100))
    fb.send(sub("b", BUY, 5, 100, tif=tif))
    filled = 2 if tif is TimeInForce.IOC else 0
    assert fb.bal("b", "USD") == (RICH - filled * 100 * QPU, 0)
    assert fb.bal("b", "T") == (RICH + filled * BPL, 0)
    assert_sound(fb)


def test_day_expiry_releases() -> None:
    fb = funded()
    fb.send(sub("a", BUY, 2, 100, tif=TimeInForce.DAY, expire_at=20))
    assert fb.bal("a", "USD")[1] == 200 * QPU
    fb.send(AdvanceTime(ts=20))
    assert fb.bal("a", "USD") == (RICH, 0)
    assert_sound(fb)


def test_book_rejections_of_held_orders_release_post_only_and_expiry_in_past() -> None:
    fb = funded()
    fb.send(sub("a", SELL, 1, 100))
    step = fb.send(sub("b", BUY, 1, 100, post_only=True))
    assert isinstance(step.events[0], OrderRejected)
    assert kinds(step.entries) == ["hold", "release"]
    fb.send(sub("b", BUY, 1, 90, tif=TimeInForce.DAY, expire_at=5))  # ts 10 > 5: book refuses
    assert fb.bal("b", "USD") == (RICH, 0)
    assert_sound(fb)


def test_user_cancel_releases_everything() -> None:
    fb = funded()
    fb.send(sub("a", BUY, 4, 100))
    oid = fb.cmd_seq
    step = fb.send(CancelOrder(ts=11, user="a", order_id=oid))
    assert kinds(step.entries) == ["release"]
    assert fb.bal("a", "USD") == (RICH, 0)


def test_stop_limit_and_stop_market_buys_hold_when_accepted_and_settle_after_trigger() -> None:
    fb = funded(market_protection_bps=100)
    fb.send(sub("a", SELL, 1, 100))
    fb.send(sub("b", BUY, 1, 100))  # last 100
    fb.send(sub("c", BUY, 2, 103, order_type=OrderType.STOP_LIMIT, trigger_price=102))  # holds 206
    step = fb.send(sub("c", BUY, 1, order_type=OrderType.STOP_MARKET, trigger_price=102))
    assert step.decision.price == 103  # type: ignore[union-attr]  # 102 + 1 %
    assert fb.bal("c", "USD")[1] == (206 + 103) * QPU
    fb.send(sub("a", SELL, 5, 102))
    fb.send(SetReferencePrice(ts=12, price=50))  # index moves do not trigger last-price stops
    fb.send(sub("b", BUY, 1, 102))  # last 102: both trigger and buy at 102
    assert fb.bal("c", "USD") == (RICH - 3 * 102 * QPU, 0)
    assert fb.bal("c", "T") == (RICH + 3 * BPL, 0)
    assert_sound(fb)


def test_take_profit_market_buy_takes_its_trigger_as_reference() -> None:
    fb = funded(market_protection_bps=1000)
    step = fb.send(
        sub(
            "c",
            BUY,
            1,
            order_type=OrderType.TAKE_PROFIT_MARKET,
            trigger_price=90,
            trigger_source=TriggerSource.INDEX,
        )
    )
    assert step.decision.price == 99  # type: ignore[union-attr]
    fb.send(sub("a", SELL, 1, 95))
    fb.send(SetReferencePrice(ts=12, price=90))
    assert fb.bal("c", "USD") == (RICH - 95 * QPU, 0)
    assert_sound(fb)


# -------------------------------------------------------------------------------- amends
def test_amend_up_holds_the_difference_first_and_down_releases() -> None:
    fb = funded()
    fb.send(sub("a", BUY, 2, 100))
    oid = fb.cmd_seq
    step = fb.send(AmendOrder(ts=11, user="a", order_id=oid, quantity=5))
    assert kinds(step.entries) == ["hold"] and step.entries[0].postings[0].held == 300 * QPU
    assert fb.held(oid) == 500 * QPU
    step = fb.send(AmendOrder(ts=12, user="a", order_id=oid, price=110))
    assert fb.held(oid) == 550 * QPU
    step = fb.send(AmendOrder(ts=13, user="a", order_id=oid, quantity=1, price=90))
    assert kinds(step.entries) == ["release"] and fb.held(oid) == 90 * QPU
    assert_sound(fb)


def test_amend_up_without_funds_is_refused_and_changes_nothing() -> None:
    fb = FundedBook()
    fb.deposit("a", "USD", 250 * QPU)
    fb.send(sub("a", BUY, 2, 100))
    oid = fb.cmd_seq
    step = fb.send(AmendOrder(ts=11, user="a", order_id=oid, quantity=3))
    assert isinstance(step.decision, OrderRejected)
    assert step.decision.reason is RejectReason.INSUFFICIENT_FUNDS
    assert step.decision.message == "needs 100 USD, 50 available"
    assert fb.book.order(oid).quantity == 2  # type: ignore[union-attr]
    assert fb.held(oid) == 200 * QPU


def test_amend_the_book_refuses_gives_the_extra_hold_back() -> None:
    fb = funded()
    fb.send(sub("a", BUY, 3, 100))
    oid = fb.cmd_seq
    fb.send(sub("b", SELL, 2, 100))  # 2 filled, 1 left
    step = fb.send(AmendOrder(ts=11, user="a", order_id=oid, quantity=2, price=120))
    # target leaves 0 with the new price: the book refuses (quantity must exceed filled)
    assert isinstance(step.events[0], OrderRejected)
    assert fb.held(oid) == 100 * QPU
    other = fb.send(AmendOrder(ts=12, user="b", order_id=oid, quantity=9))
    assert other.entries == [] and isinstance(other.events[0], OrderRejected)  # not_owner
    assert_sound(fb)


def test_amend_in_flight_keeps_the_larger_hold_until_the_book_answers() -> None:
    fb = funded()
    fb.send(sub("a", BUY, 4, 100))
    oid = fb.cmd_seq
    fb.send(sub("b", SELL, 1, 100))
    # risk sees the amend before the events of a fill the book makes first
    decision, entries = fb.funds.amend(
        SYM, 100, AmendOrder(ts=20, user="a", order_id=oid, quantity=8)
    )
    assert kinds(entries) == ["hold"]
    assert fb.held(oid) == 700 * QPU  # 7 lots open after the amend
    sell = sub("c", SELL, 2, 100, ts=21)
    d2, _ = fb.funds.submit(SYM, 101, sell, fb.book.last_price)
    evs = fb.book.process(d2)  # type: ignore[arg-type]
    fb.funds.on_events(SYM, evs)  # the fill must not release the amend's hold
    assert fb.held(oid) == 700 * QPU - 200 * QPU
    fb.funds.on_events(SYM, fb.book.process(decision))  # type: ignore[arg-type]
    assert fb.held(oid) == 5 * 100 * QPU
    assert fb.book.order(oid).leaves == 5  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------- STP
@pytest.mark.parametrize(
    ("mode", "a_left", "taker_left"),
    [
        (SelfTradePrevention.CANCEL_NEWEST, 5, 0),
        (SelfTradePrevention.CANCEL_OLDEST, 0, 3),
        (SelfTradePrevention.CANCEL_BOTH, 0, 0),
        (SelfTradePrevention.DECREMENT_AND_CANCEL, 2, 0),
    ],
)
def test_self_trade_prevention_cancels_release(
    mode: SelfTradePrevention, a_left: int, taker_left: int
) -> None:
    fb = funded()
    fb.send(sub("a", SELL, 5, 100))
    maker = fb.cmd_seq
    fb.send(sub("a", BUY, 3, 100, stp=mode))
    taker = fb.cmd_seq
    assert fb.held(maker) == a_left * BPL
    assert fb.held(taker) == taker_left * 100 * QPU
    assert fb.bal("a", "T")[1] == a_left * BPL
    assert fb.bal("a", "USD")[1] == taker_left * 100 * QPU
    assert_sound(fb)


def test_self_trade_without_stp_settles_within_one_account() -> None:
    fb = funded(taker_fee_bps=10)
    fb.send(sub("a", SELL, 20, 100))
    fb.send(sub("a", BUY, 20, 100, stp=SelfTradePrevention.NONE))
    assert fb.bal("a", "T") == (RICH, 0)
    assert fb.bal("a", "USD") == (RICH - 2 * QPU, 0)  # only the taker fee left
    assert_sound(fb)


# ------------------------------------------------------------------------------------ p2p
def test_p2p_sells_hold_base_buys_nothing_and_fills_lock_into_the_trade_escrow() -> None:
    fb = FundedBook("p2p", taker_fee_bps=10)
    fb.deposit("a", "T", 10 * BPL)
    fb.send(sub("a", SELL, 4, 100))
    step = fb.send(sub("b", BUY, 3, 100))  # b has no funds at all
    assert isinstance(step.decision, SubmitOrder)
    fill = next(e for e in step.events if type(e).__name__ == "OrderFilled")
    tid = trade_id_for_fill(SYM, fill.seq)
    assert kinds(step.entries) == ["p2p_lock"] and step.entries[0].detail == tid
    assert fb.bal(p2p_account(tid), "T") == (3 * BPL, 0)
    assert fb.bal("a", "T") == (6 * BPL, 1 * BPL)
    assert fb.bal("b", "USD") == (0, 0) and fb.bal("b", "T") == (0, 0)
    audit = fb.funds.ledger.audit("T")
    assert audit.ok and audit.p2p == 3 * BPL


# ----------------------------------------------------------------------- chain in and out
def test_withdrawal_request_confirm_and_return() -> None:
    fb = FundedBook()
    fb.deposit("a", "USD", 1000)
    f = fb.funds
    assert f.withdrawal_requested(10, "a", "USD", 1001, "w1", 5) == (
        "insufficient_funds: needs 1.001 USD, 1 available"
    )
    e = f.withdrawal_requested(11, "a", "USD", 600, "w1", 5)
    assert isinstance(e, Entry) and e.kind is K.WITHDRAWAL_REQUESTED
    assert f.withdrawal_requested(11, "a", "USD", 600, "w1", 5) is None  # replay
    assert f.withdrawal_requested(12, "a", "USD", 1, "w1", 5).startswith("duplicate_withdrawal")  # type: ignore[union-attr]
    assert fb.bal("a", "USD") == (400, 600)
    assert kinds(f.withdrawal_confirmed(13, "w1", 6)) == ["withdrawal_confirmed"]
    assert fb.bal("a", "USD") == (400, 0) and fb.bal(VAULT, "USD") == (-400, 0)
    f.withdrawal_requested(14, "a", "USD", 400, "w2", 7)
    f.withdrawal_returned(15, "w2", 8)
    assert fb.bal("a", "USD") == (400, 0)
    with pytest.raises(FundsError):
        f.withdrawal_confirmed(16, "w2", 9)
    audit = f.ledger.audit("USD")
    assert audit.ok and (audit.deposits, audit.withdrawals) == (1000, 600)


def test_deposit_reversal_takes_available_then_cancels_orders_then_books_a_loss() -> None:
    fb = FundedBook()
    fb.deposit("a", "USD", 1000 * QPU)  # event 0xb:1
    fb.send(sub("a", BUY, 3, 100))  # holds 300
    first = fb.cmd_seq
    fb.send(sub("a", BUY, 2, 100))  # holds 200
    second = fb.cmd_seq
    fb.funds.withdrawal_requested(10, "a", "USD", 400 * QPU, "w1", 5)  # 100 left available
    entries, refs = fb.funds.deposit_reversed(11, "0xb:1", 6)
    assert refs == [f"{SYM}:{second}", f"{SYM}:{first}"]  # newest first
    assert [e.kind for e in entries] == [K.DEPOSIT_REVERSED] * 4
    assert fb.bal(LOSS, "USD") == (-400 * QPU, 0)  # the withdrawal's hold stays authorized
    assert fb.bal("a", "USD") == (0, 400 * QPU)
    audit = fb.funds.ledger.audit("USD")
    assert audit.ok and audit.reversed == 1000 * QPU
    # an order taken back that fills before its cancel arrives is paid by @loss
    fb.funds_seq = 11
    fb.deposit("b", "T", 10 * BPL)
    fb.send(sub("b", SELL, 1, 100))
    assert fb.bal(LOSS, "USD") == (-500 * QPU, 0)
    assert fb.bal("a", "T") == (1 * BPL, 0)
    fb.send(CancelOrder(ts=12, user="a", order_id=first))
    fb.send(CancelOrder(ts=12, user="a", order_id=second))
    assert fb.funds.ledger.audit("USD").ok and fb.funds.ledger.audit("T").ok
    assert fb.funds.deposit_reversed(11, "0xb:1", 6) == ([], [])  # replay
    with pytest.raises(FundsError):
        fb.funds.deposit_reversed(99, "0xb:1", 6)


def test_faucet_credits_count_in_the_audit() -> None:
    fb = FundedBook()
    fb.funds.faucet(1, "a", "T", 500, 1)
    audit = fb.funds.ledger.audit("T")
    assert audit.ok and audit.faucet == 500 and audit.faucet_account == -500
    with pytest.raises(FundsError):
        fb.funds.faucet(2, "@fees", "T", 1, 1)


# ---------------------------------------------------------------------- exactly once
def test_replayed_commands_and_events_repeat_the_decision_and_create_nothing() -> None:
    fb = funded()
    cmd = sub("a", BUY, 2, 100)
    d1, e1 = fb.funds.submit(SYM, 50, cmd, None)
    d2, e2 = fb.funds.submit(SYM, 50, cmd, None)
    assert d1 == d2 and e1 and e2 == []
    poor = sub("nobody", BUY, 2, 100)
    r1, _ = fb.funds.submit(SYM, 51, poor, None)
    fb.deposit("nobody", "USD", RICH)
    r2, e3 = fb.funds.submit(SYM, 51, poor, None)
    assert isinstance(r2, OrderRejected) and r1 == r2 and e3 == []
    evs = fb.book.process(d1)  # type: ignore[arg-type]
    assert isinstance(evs[0], OrderAccepted)
    fb.funds.on_events(SYM, evs)
    before = fb.funds.snapshot()
    assert fb.funds.on_events(SYM, evs) == []
    assert fb.funds.snapshot() == before


def test_entries_encode_to_json_and_msgpack() -> None:
    fb = funded(taker_fee_bps=10, maker_fee_bps=-2)
    fb.send(sub("a", SELL, 50, 1000))
    step = fb.send(sub("b", BUY, 50, 1000))
    for e in step.entries:
        assert msgspec.json.decode(msgspec.json.encode(e), type=Entry) == e
        assert msgspec.msgpack.decode(msgspec.msgpack.encode(e), type=Entry) == e
    raw = msgspec.json.encode(step.entries[1])
    assert b'"postings":[["b","USD",0,-50000000]' in raw
