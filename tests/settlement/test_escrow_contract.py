"""The escrow contract on an in-process EVM: every path, every unauthorized call, ETH and
ERC-20, exact fee math."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import vyper
from eth_utils import to_checksum_address
from kit.chain_env import Asset
from web3.types import TxReceipt

from orrange.evm import compile as build
from orrange.evm.chain import (
    DealState,
    Escrow,
    TransactionRejected,
    TransactionReverted,
    UnsignedTx,
    build_call,
    load_artifact,
    send_dev,
)
from orrange.settlement.events import (
    ZERO_ADDRESS,
    EscrowDisputed,
    EscrowFunded,
    EscrowPaid,
    EscrowReclaimed,
    EscrowReleased,
    EscrowResolved,
)

from .conftest import FEE_BPS, Env

TID = bytes.fromhex("11" * 32)
TID2 = bytes.fromhex("22" * 32)
AMOUNT = 1_234_567_891  # odd on purpose: fee rounding is visible


@pytest.fixture(params=["eth", "token"])
def asset(request: pytest.FixtureRequest, evm: Env) -> Asset:
    return Asset(evm, request.param)


def fund(
    evm: Env,
    asset: Asset,
    trade_id: bytes = TID,
    amount: int = AMOUNT,
    deadline_in: int = 3600,
    buyer: str | None = None,
) -> TxReceipt:
    if asset.kind == "token":
        send_dev(evm.w3, evm.token.approve_tx(evm.seller, evm.escrow.address, amount))
    tx = evm.escrow.fund_tx(
        evm.seller,
        trade_id,
        buyer=buyer or evm.buyer,
        amount=amount,
        payment_deadline=evm.now() + deadline_in,
        token=asset.address,
    )
    return send_dev(evm.w3, tx)


def send(evm: Env, tx: UnsignedTx) -> TxReceipt:
    return send_dev(evm.w3, tx)


def rejected(reason: str) -> Any:
    return pytest.raises(TransactionRejected, match=reason)


# -- artifacts --------------------------------------------------------------------------------


def test_committed_artifacts_equal_a_fresh_compile() -> None:
    fresh = build.compile_all()
    assert set(fresh) == {"Escrow", "TestToken", "Vault"}
    for name, text in fresh.items():
        committed = (build.BUILD_DIR / f"{name}.json").read_text()
        assert committed == text, f"{name}.json is stale: run python -m orrange.evm.compile"
    art = load_artifact("Escrow")
    assert art.compiler == f"vyper {vyper.__version__}"
    assert Path(build.CONTRACTS_DIR / "Escrow.vy").exists()


# -- deployment and configuration -----------------------------------------------------------


def test_deploy_sets_config(evm: Env) -> None:
    cfg = evm.escrow.config()
    assert cfg.owner == evm.deployer
    assert cfg.mediator == evm.mediator
    assert cfg.fee_recipient == evm.fee_recipient
    assert cfg.fee_bps == FEE_BPS


@pytest.mark.parametrize(
    ("mediator", "fee_recipient", "fee_bps", "reason"),
    [
        (ZERO_ADDRESS, None, 10, "zero mediator"),
        (None, ZERO_ADDRESS, 10, "zero fee recipient"),
        (None, None, 1001, "fee too high"),
    ],
)
def test_deploy_rejects_bad_config(
    evm: Env, mediator: str | None, fee_recipient: str | None, fee_bps: int, reason: str
) -> None:
    with rejected(reason):
        Escrow.deploy(
            evm.w3,
            evm.deployer,
            mediator=mediator or evm.mediator,
            fee_recipient=fee_recipient or evm.fee_recipient,
            fee_bps=fee_bps,
        )


def test_set_config_owner_only_and_fee_fixed_at_funding(evm: Env, asset: Asset) -> None:
    for who in (evm.seller, evm.mediator, evm.stranger):
        with rejected("not owner"):
            evm.escrow.set_config_tx(who, mediator=who, fee_recipient=evm.fee_recipient, fee_bps=0)
    fund(evm, asset)  # at FEE_BPS
    send(
        evm,
        evm.escrow.set_config_tx(
            evm.deployer, mediator=evm.stranger, fee_recipient=evm.fee_recipient, fee_bps=1000
        ),
    )
    assert evm.escrow.config().fee_bps == 1000
    assert evm.escrow.config().mediator == evm.stranger
    assert evm.escrow.deal(TID).fee_bps == FEE_BPS
    before = asset.balance(evm.fee_recipient)
    receipt = send(evm, evm.escrow.release_tx(evm.seller, TID))
    (released,) = evm.escrow.receipt_events(receipt)
    assert isinstance(released, EscrowReleased)
    assert released.fee == AMOUNT * FEE_BPS // 10_000
    assert asset.balance(evm.fee_recipient) - before == released.fee
    with rejected("fee too high"):
        evm.escrow.set_config_tx(
            evm.deployer, mediator=evm.mediator, fee_recipient=evm.fee_recipient, fee_bps=1001
        )


# -- funding ----------------------------------------------------------------------------------


def test_fund_locks_the_amount_and_emits_funded(evm: Env, asset: Asset) -> None:
    seller_before = asset.balance(evm.seller)
    receipt = fund(evm, asset)
    assert asset.balance(evm.escrow.address) == AMOUNT
    assert seller_before - asset.balance(evm.seller) == AMOUNT + asset.spent_on_gas(receipt)
    (ev,) = evm.escrow.receipt_events(receipt)
    assert isinstance(ev, EscrowFunded)
    assert ev.trade_id == "0x" + TID.hex()
    assert (ev.seller, ev.buyer, ev.token) == (evm.seller, evm.buyer, asset.address)
    assert (ev.amount, ev.fee_bps) == (AMOUNT, FEE_BPS)
    assert ev.block_number == receipt["blockNumber"]
    assert ev.block_hash == "0x" + bytes(receipt["blockHash"]).hex()
    assert ev.tx_hash == "0x" + bytes(receipt["transactionHash"]).hex()
    deal = evm.escrow.deal(TID)
    assert deal.state == DealState.FUNDED
    assert (deal.seller, deal.buyer, deal.amount) == (evm.seller, evm.buyer, AMOUNT)
    assert deal.payment_deadline == ev.payment_deadline


def test_fund_rejections(evm: Env) -> None:
    esc, now = evm.escrow, evm.now()
    ok = {"buyer": evm.buyer, "amount": 10**18, "payment_deadline": now + 600}
    with rejected("zero buyer"):
        esc.fund_tx(evm.seller, TID, **{**ok, "buyer": ZERO_ADDRESS})
    with rejected("buyer is seller"):
        esc.fund_tx(evm.seller, TID, **{**ok, "buyer": evm.seller})
    with rejected("zero amount"):
        esc.fund_tx(evm.seller, TID, **{**ok, "amount": 0})
    with rejected("deadline passed"):
        esc.fund_tx(evm.seller, TID, **{**ok, "payment_deadline": now - 1})
    # ETH value must equal the amount; no ETH with a token
    call = esc.contract.functions.fund(TID, evm.buyer, ZERO_ADDRESS, 10**18, now + 600)
    with rejected("wrong value"):
        build_call(evm.w3, call, evm.seller, value=10**18 - 1)
    with pytest.raises(TransactionReverted):  # mined anyway when the gas is given: status 0
        send(evm, _raw(evm, call, evm.seller, value=10**18 - 1))
    call = esc.contract.functions.fund(TID, evm.buyer, evm.token.address, 10, now + 600)
    with rejected("value with token"):
        build_call(evm.w3, call, evm.seller, value=10)
    # a token transfer without allowance fails
    with pytest.raises(TransactionRejected):
        esc.fund_tx(evm.seller, TID, **{**ok, "amount": 10}, token=evm.token.address)
    assert esc.deal(TID).state == DealState.EMPTY


def _raw(evm: Env, call: Any, sender: str, value: int) -> Any:
    return {
        "from": sender,
        "to": evm.escrow.address,
        "value": value,
        "data": call._encode_transaction_data(),
        "gas": 300_000,
    }


def test_trade_id_cannot_be_reused(evm: Env, asset: Asset) -> None:
    fund(evm, asset)
    send(evm, evm.escrow.release_tx(evm.seller, TID))
    with rejected("trade id used"):
        fund(evm, asset)


# -- happy path: fund, paid, release ------------------------------------------------------------


def test_happy_path_fee_exact(evm: Env, asset: Asset) -> None:
    fund(evm, asset)
    paid = send(evm, evm.escrow.mark_paid_tx(evm.buyer, TID))
    (ev_paid,) = evm.escrow.receipt_events(paid)
    assert isinstance(ev_paid, EscrowPaid) and ev_paid.buyer == evm.buyer
    assert evm.escrow.deal(TID).state == DealState.PAID
    buyer0, fee0 = asset.balance(evm.buyer), asset.balance(evm.fee_recipient)
    receipt = send(evm, evm.escrow.release_tx(evm.seller, TID))
    fee = AMOUNT * FEE_BPS // 10_000  # rounded down
    assert fee == 18_518_518
    assert asset.balance(evm.buyer) - buyer0 == AMOUNT - fee  # the buyer sent nothing since
    assert asset.balance(evm.fee_recipient) - fee0 == fee
    assert asset.balance(evm.escrow.address) == 0
    (ev,) = evm.escrow.receipt_events(receipt)
    assert ev == EscrowReleased(
        trade_id="0x" + TID.hex(),
        block_number=receipt["blockNumber"],
        block_hash="0x" + bytes(receipt["blockHash"]).hex(),
        tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
        log_index=0,
        buyer=evm.buyer,
        to_buyer=AMOUNT - fee,
        fee=fee,
    )
    assert evm.escrow.deal(TID).state == DealState.RELEASED


def test_seller_may_release_before_the_paid_mark(evm: Env, asset: Asset) -> None:
    fund(evm, asset)
    buyer0 = asset.balance(evm.buyer)
    send(evm, evm.escrow.release_tx(evm.seller, TID))
    assert asset.balance(evm.buyer) - buyer0 == AMOUNT - AMOUNT * FEE_BPS // 10_000


def test_zero_fee_pays_everything_to_the_buyer(evm: Env) -> None:
    send(
        evm,
        evm.escrow.set_config_tx(
            evm.deployer, mediator=evm.mediator, fee_recipient=evm.fee_recipient, fee_bps=0
        ),
    )
    asset = Asset(evm, "token")
    fund(evm, asset)
    fee0 = asset.balance(evm.fee_recipient)
    receipt = send(evm, evm.escrow.release_tx(evm.seller, TID))
    (ev,) = evm.escrow.receipt_events(receipt)
    assert isinstance(ev, EscrowReleased)
    assert (ev.to_buyer, ev.fee) == (AMOUNT, 0)
    assert asset.balance(evm.buyer) == AMOUNT
    assert asset.balance(evm.fee_recipient) == fee0


# -- unauthorized calls -------------------------------------------------------------------------


def test_unauthorized_calls_on_a_funded_deal(evm: Env, asset: Asset) -> None:
    esc = evm.escrow
    fund(evm, asset)
    for who in (evm.seller, evm.mediator, evm.stranger, evm.deployer):
        with rejected("not buyer"):
            esc.mark_paid_tx(who, TID)
    for who in (evm.buyer, evm.mediator, evm.stranger, evm.deployer):
        with rejected("not seller"):
            esc.release_tx(who, TID)
        with rejected("not seller"):
            esc.reclaim_tx(who, TID)
    for who in (evm.buyer, evm.seller):
        with rejected("not paid"):
            esc.dispute_tx(who, TID)
    with rejected("not disputed"):
        esc.resolve_tx(evm.mediator, TID, 5000)
    with rejected("deadline not passed"):
        esc.reclaim_tx(evm.seller, TID)
    assert esc.deal(TID).state == DealState.FUNDED


def test_unauthorized_calls_on_a_paid_deal(evm: Env, asset: Asset) -> None:
    esc = evm.escrow
    fund(evm, asset)
    send(evm, esc.mark_paid_tx(evm.buyer, TID))
    with rejected("not funded"):
        esc.mark_paid_tx(evm.buyer, TID)
    for who in (evm.mediator, evm.stranger, evm.deployer):
        with rejected("not a party"):
            esc.dispute_tx(who, TID)
    for who in (evm.buyer, evm.mediator, evm.stranger):
        with rejected("not seller"):
            esc.release_tx(who, TID)
    evm.travel_to(esc.deal(TID).payment_deadline + 10)
    with rejected("not funded"):  # paid: no reclaim, even after the deadline
        esc.reclaim_tx(evm.seller, TID)


def test_unknown_trade_id(evm: Env) -> None:
    esc = evm.escrow
    with rejected("not funded"):
        esc.mark_paid_tx(evm.buyer, TID)
    with rejected("not releasable"):
        esc.release_tx(evm.seller, TID)
    with rejected("not paid"):
        esc.dispute_tx(evm.buyer, TID)
    with rejected("not disputed"):
        esc.resolve_tx(evm.mediator, TID, 0)
    with rejected("not funded"):
        esc.reclaim_tx(evm.seller, TID)


# -- disputes -----------------------------------------------------------------------------------


def _disputed(evm: Env, asset: Asset, by: str) -> None:
    fund(evm, asset)
    send(evm, evm.escrow.mark_paid_tx(evm.buyer, TID))
    receipt = send(evm, evm.escrow.dispute_tx(by, TID))
    (ev,) = evm.escrow.receipt_events(receipt)
    assert isinstance(ev, EscrowDisputed) and ev.by == by
    assert evm.escrow.deal(TID).state == DealState.DISPUTED


@pytest.mark.parametrize("opener", ["buyer", "seller"])
def test_dispute_blocks_everything_but_the_mediator(evm: Env, asset: Asset, opener: str) -> None:
    esc = evm.escrow
    _disputed(evm, asset, getattr(evm, opener))
    with rejected("not releasable"):
        esc.release_tx(evm.seller, TID)
    with rejected("not paid"):
        esc.dispute_tx(evm.buyer, TID)
    with rejected("not funded"):
        esc.reclaim_tx(evm.seller, TID)
    for who in (evm.buyer, evm.seller, evm.stranger, evm.deployer, evm.fee_recipient):
        with rejected("not mediator"):
            esc.resolve_tx(who, TID, 10_000)
    with rejected("bps > 10000"):
        esc.resolve_tx(evm.mediator, TID, 10_001)


@pytest.mark.parametrize("buyer_bps", [10_000, 0, 3_333, 1])
def test_mediator_resolution_math(evm: Env, asset: Asset, buyer_bps: int) -> None:
    _disputed(evm, asset, evm.buyer)
    b0, s0, f0 = (asset.balance(x) for x in (evm.buyer, evm.seller, evm.fee_recipient))
    receipt = send(evm, evm.escrow.resolve_tx(evm.mediator, TID, buyer_bps))
    share = AMOUNT * buyer_bps // 10_000
    fee = share * FEE_BPS // 10_000
    (ev,) = evm.escrow.receipt_events(receipt)
    assert isinstance(ev, EscrowResolved)
    assert (ev.buyer_bps, ev.to_buyer, ev.to_seller, ev.fee) == (
        buyer_bps,
        share - fee,
        AMOUNT - share,
        fee,
    )
    assert ev.to_buyer + ev.to_seller + ev.fee == AMOUNT
    assert asset.balance(evm.buyer) - b0 == share - fee
    assert asset.balance(evm.seller) - s0 == AMOUNT - share
    assert asset.balance(evm.fee_recipient) - f0 == fee
    assert asset.balance(evm.escrow.address) == 0
    assert evm.escrow.deal(TID).state == DealState.RESOLVED
    with rejected("not disputed"):
        evm.escrow.resolve_tx(evm.mediator, TID, buyer_bps)


def test_split_values(evm: Env) -> None:
    asset = Asset(evm, "eth")
    _disputed(evm, asset, evm.seller)
    receipt = send(evm, evm.escrow.resolve_tx(evm.mediator, TID, 3_333))
    (ev,) = evm.escrow.receipt_events(receipt)
    assert isinstance(ev, EscrowResolved)
    # 1_234_567_891 * 3333 // 10000 = 411_481_478; fee 1.5 % of that, rounded down
    assert (ev.to_buyer, ev.to_seller, ev.fee) == (405_309_256, 823_086_413, 6_172_222)


# -- timeout and reclaim ------------------------------------------------------------------------


def test_reclaim_after_the_deadline(evm: Env, asset: Asset) -> None:
    esc = evm.escrow
    fund(evm, asset, deadline_in=600)
    deadline = esc.deal(TID).payment_deadline
    evm.travel_to(deadline + 1)
    with rejected("deadline passed"):
        esc.mark_paid_tx(evm.buyer, TID)
    for who in (evm.buyer, evm.mediator, evm.stranger):
        with rejected("not seller"):
            esc.reclaim_tx(who, TID)
    s0, f0 = asset.balance(evm.seller), asset.balance(evm.fee_recipient)
    receipt = send(evm, esc.reclaim_tx(evm.seller, TID))
    assert asset.balance(evm.seller) - s0 == AMOUNT - asset.spent_on_gas(receipt)
    assert asset.balance(evm.fee_recipient) == f0
    assert asset.balance(esc.address) == 0
    (ev,) = esc.receipt_events(receipt)
    assert isinstance(ev, EscrowReclaimed)
    assert (ev.seller, ev.amount) == (evm.seller, AMOUNT)
    assert esc.deal(TID).state == DealState.RECLAIMED
    with rejected("not funded"):
        esc.reclaim_tx(evm.seller, TID)
    with rejected("not releasable"):
        esc.release_tx(evm.seller, TID)


def test_mark_paid_at_the_deadline_is_still_in_time(evm: Env) -> None:
    asset = Asset(evm, "eth")
    fund(evm, asset, deadline_in=600)
    deadline = evm.escrow.deal(TID).payment_deadline
    evm.travel_to(deadline - 1)  # the mark_paid transaction is mined in a later block
    send(evm, evm.escrow.mark_paid_tx(evm.buyer, TID))
    assert evm.escrow.deal(TID).state == DealState.PAID


# -- reentrancy --------------------------------------------------------------------------------


def test_reentrancy_is_blocked(evm: Env) -> None:
    src = (Path(__file__).parent / "Reenterer.vy").read_text()
    out = vyper.compile_code(src, output_formats=["abi", "bytecode"])
    factory = evm.w3.eth.contract(abi=out["abi"], bytecode=out["bytecode"])
    r = send(evm, build_call(evm.w3, factory.constructor(evm.escrow.address), evm.deployer))
    evil = to_checksum_address(r["contractAddress"])
    attacker = evm.w3.eth.contract(address=evil, abi=out["abi"])
    asset = Asset(evm, "eth")
    fund(evm, asset, TID, buyer=evil)
    fund(evm, asset, TID2, buyer=evil)
    for tid in (TID, TID2):
        send(evm, build_call(evm.w3, attacker.functions.mark_paid(tid), evm.stranger))
    send(evm, build_call(evm.w3, attacker.functions.set_target(TID2), evm.stranger))
    receipt = send(evm, evm.escrow.release_tx(evm.seller, TID))
    assert attacker.functions.attempts().call() == 1
    assert attacker.functions.reentered().call() is False  # the nested dispute was refused
    assert evm.escrow.deal(TID2).state == DealState.PAID
    assert evm.eth(evil) == AMOUNT - AMOUNT * FEE_BPS // 10_000
    assert len(evm.escrow.receipt_events(receipt)) == 1
    # outside the guarded call the same dispute is allowed
    send(evm, build_call(evm.w3, attacker.functions.dispute(TID2), evm.stranger))
    assert evm.escrow.deal(TID2).state == DealState.DISPUTED


# -- event stream --------------------------------------------------------------------------------


def test_events_returns_every_step_in_chain_order(evm: Env) -> None:
    asset = Asset(evm, "token")
    start = evm.w3.eth.block_number
    fund(evm, asset, TID)
    fund(evm, asset, TID2)
    send(evm, evm.escrow.mark_paid_tx(evm.buyer, TID))
    send(evm, evm.escrow.mark_paid_tx(evm.buyer, TID2))
    send(evm, evm.escrow.release_tx(evm.seller, TID))
    send(evm, evm.escrow.dispute_tx(evm.seller, TID2))
    send(evm, evm.escrow.resolve_tx(evm.mediator, TID2, 2_500))
    events = evm.escrow.events(start)
    kinds = [(type(e).__name__, e.trade_id[-2:]) for e in events]
    assert kinds == [
        ("EscrowFunded", "11"),
        ("EscrowFunded", "22"),
        ("EscrowPaid", "11"),
        ("EscrowPaid", "22"),
        ("EscrowReleased", "11"),
        ("EscrowDisputed", "22"),
        ("EscrowResolved", "22"),
    ]
    positions = [e.position for e in events]
    assert positions == sorted(positions)
    assert len({e.event_id for e in events}) == len(events)
    # token Transfer logs from the same receipts are not escrow events
    assert evm.escrow.events(start, start) == []
