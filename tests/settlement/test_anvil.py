"""The escrow on a real anvil node over JSON-RPC (anvil from the npm registry)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from orrange.evm.chain import (
    DealState,
    Escrow,
    Token,
    TransactionRejected,
    connect,
    send_dev,
)
from orrange.infra.anvil import AnvilError, AnvilNode, ensure_anvil, find_anvil, main
from orrange.settlement.events import EscrowFunded, EscrowPaid, EscrowReclaimed, EscrowReleased

TOOLS = Path(__file__).resolve().parents[2] / "var" / "tools"
TID = bytes.fromhex("ab" * 32)


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilNode]:
    binary = ensure_anvil(TOOLS)
    log = tmp_path_factory.mktemp("anvil") / "anvil.log"
    with AnvilNode(binary, log_file=log) as n:
        yield n


@pytest.fixture
def w3(anvil: AnvilNode) -> Web3:
    return connect(anvil.url)


def test_anvil_is_installed_and_reachable(anvil: AnvilNode, w3: Web3) -> None:
    assert find_anvil(TOOLS) is not None
    assert main(["path", "--tools-dir", str(TOOLS)]) == 0
    assert w3.eth.chain_id == 31337
    assert len(w3.eth.accounts) == 10
    assert w3.eth.get_balance(w3.eth.accounts[0]) == 10_000 * 10**18
    with pytest.raises(AnvilError, match="eth_noSuchMethod"):
        anvil.rpc("eth_noSuchMethod")


def test_escrow_happy_path_over_json_rpc(w3: Web3) -> None:
    deployer, seller, buyer, mediator, fee_to = w3.eth.accounts[:5]
    escrow = Escrow.deploy(w3, deployer, mediator=mediator, fee_recipient=fee_to, fee_bps=25)
    assert escrow.config().fee_bps == 25
    start = w3.eth.block_number
    now = int(w3.eth.get_block("latest")["timestamp"])
    amount = 3 * 10**18 + 7
    fund = escrow.fund_tx(seller, TID, buyer=buyer, amount=amount, payment_deadline=now + 600)
    assert (fund.value, fund.chain_id, fund.sender) == (amount, 31337, seller)
    send_dev(w3, fund)
    with pytest.raises(TransactionRejected, match="not seller"):  # JSON-RPC revert reason
        escrow.release_tx(buyer, TID)
    send_dev(w3, escrow.mark_paid_tx(buyer, TID))
    buyer0, fee0 = w3.eth.get_balance(buyer), w3.eth.get_balance(fee_to)
    send_dev(w3, escrow.release_tx(seller, TID))
    fee = amount * 25 // 10_000
    assert w3.eth.get_balance(buyer) - buyer0 == amount - fee
    assert w3.eth.get_balance(fee_to) - fee0 == fee
    assert escrow.deal(TID).state == DealState.RELEASED
    events = escrow.events(start)
    assert [type(e) for e in events] == [EscrowFunded, EscrowPaid, EscrowReleased]
    released = events[-1]
    assert isinstance(released, EscrowReleased)
    assert (released.to_buyer, released.fee) == (amount - fee, fee)
    block = w3.eth.get_block(released.block_number)
    assert released.block_hash == "0x" + bytes(block["hash"]).hex()


def test_token_reclaim_after_increase_time(anvil: AnvilNode, w3: Web3) -> None:
    deployer, seller, buyer, mediator, fee_to = w3.eth.accounts[:5]
    escrow = Escrow.deploy(w3, deployer, mediator=mediator, fee_recipient=fee_to, fee_bps=25)
    token = Token.deploy(w3, deployer, decimals=6)
    send_dev(w3, token.mint_tx(deployer, seller, 5_000_000))
    send_dev(w3, token.approve_tx(seller, escrow.address, 5_000_000))
    now = int(w3.eth.get_block("latest")["timestamp"])
    send_dev(
        w3,
        escrow.fund_tx(
            seller,
            TID,
            buyer=buyer,
            amount=5_000_000,
            payment_deadline=now + 60,
            token=token.address,
        ),
    )
    assert token.balance_of(escrow.address) == 5_000_000
    with pytest.raises(TransactionRejected, match="deadline not passed"):
        escrow.reclaim_tx(seller, TID)
    anvil.rpc("evm_increaseTime", [120])
    anvil.rpc("evm_mine")
    receipt = send_dev(w3, escrow.reclaim_tx(seller, TID))
    (ev,) = escrow.receipt_events(receipt)
    assert isinstance(ev, EscrowReclaimed) and ev.amount == 5_000_000
    assert token.balance_of(seller) == 5_000_000
    assert token.balance_of(escrow.address) == 0
