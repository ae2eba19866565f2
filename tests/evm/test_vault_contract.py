"""The vault contract on an in-process EVM: deposits of ETH and ERC-20, EIP-712 signed
withdrawals, cancellation, signer rotation, ownership, every unauthorized call, reentrancy
and proof of reserves.

The ``evm`` fixture: a fresh in-process EVM (eth-tester on py-evm) with the vault deployed, a
test token, and the signer's key held by the test (and unlocked on the node, so the signer can
send its own cancel transactions)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import vyper
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_utils import to_checksum_address
from kit.chain_env import Asset as BaseAsset
from kit.chain_env import ChainEnv
from web3 import EthereumTesterProvider, Web3
from web3.types import TxReceipt

from orrange.evm.chain import (
    Token,
    TransactionRejected,
    UnsignedTx,
    build_call,
    load_artifact,
    send_dev,
)
from orrange.evm.vault import (
    MIN_SIGNER_DELAY_S,
    Vault,
    VaultDeposited,
    VaultEvent,
    VaultWithdrawalCanceled,
    VaultWithdrawn,
    Withdrawal,
    recover_withdrawal_signer,
    sign_withdrawal,
    withdrawal_typed_data,
)
from orrange.settlement.events import ZERO_ADDRESS

SIGNER_KEY = "0x" + "a1" * 32
NEW_SIGNER_KEY = "0x" + "b2" * 32
OUTSIDER_KEY = "0x" + "c3" * 32
DELAY_S = MIN_SIGNER_DELAY_S
MINTED = 10**30


@dataclass
class VaultEnv(ChainEnv):
    vault: Vault
    token: Token
    owner: str
    alice: str
    bob: str
    stranger: str
    signer: str
    new_signer: str

    @property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)


def _node_held(w3: Web3, key: str, funder: str) -> str:
    """Import ``key`` into eth-tester (unlocked) and give it 10 ETH for gas."""
    tester = w3.provider.ethereum_tester  # type: ignore[attr-defined]
    address = Account.from_key(key).address
    tester.add_account(key)
    send_dev(w3, {"from": funder, "to": address, "value": 10 * 10**18})
    return str(address)


@pytest.fixture
def evm() -> VaultEnv:
    w3 = Web3(EthereumTesterProvider())
    owner, alice, bob, stranger = w3.eth.accounts[:4]
    signer = _node_held(w3, SIGNER_KEY, owner)
    new_signer = _node_held(w3, NEW_SIGNER_KEY, owner)
    vault = Vault.deploy(w3, owner, signer=signer, signer_delay_s=DELAY_S)
    token = Token.deploy(w3, owner, name="Test USD", symbol="USDT", decimals=18)
    for holder in (alice, bob):
        send_dev(w3, token.mint_tx(owner, holder, MINTED))
    return VaultEnv(w3, vault, token, owner, alice, bob, stranger, signer, new_signer)


HERE = Path(__file__).parent
WID = bytes.fromhex("11" * 32)
WID2 = bytes.fromhex("22" * 32)
AMOUNT = 1_234_567_891_234_567_891  # odd on purpose
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def send(evm: VaultEnv, tx: UnsignedTx) -> TxReceipt:
    return send_dev(evm.w3, tx)


@contextmanager
def rejected(reason: str) -> Iterator[None]:
    with pytest.raises(TransactionRejected) as info:
        yield
    assert reason in info.value.reason


class Asset(BaseAsset):
    """ETH or the test token, with the vault's deposit call."""

    evm: VaultEnv

    def deposit(self, sender: str, account: str, amount: int = AMOUNT) -> TxReceipt:
        v = self.evm.vault
        if self.kind == "eth":
            return send(self.evm, v.deposit_tx(sender, account, amount))
        send(self.evm, self.evm.token.approve_tx(sender, v.address, amount))
        return send(self.evm, v.deposit_token_tx(sender, self.address, amount, account))


@pytest.fixture(params=["eth", "token"])
def asset(request: pytest.FixtureRequest, evm: VaultEnv) -> Asset:
    return Asset(evm, request.param)


def auth(evm: VaultEnv, asset: Asset, **over: Any) -> Withdrawal:
    fields: dict[str, Any] = {
        "account": "alice",
        "token": asset.address,
        "amount": AMOUNT // 3,
        "to": evm.bob,
        "withdrawal_id": WID,
        "expiry": evm.now() + 3600,
    }
    fields.update(over)
    return Withdrawal(**fields)


def sign(
    evm: VaultEnv,
    a: Withdrawal,
    key: str = SIGNER_KEY,
    chain_id: int | None = None,
    vault: str = "",
) -> bytes:
    chain = evm.chain_id if chain_id is None else chain_id
    return sign_withdrawal(key, chain, vault or evm.vault.address, a)


def withdraw_tx(evm: VaultEnv, a: Withdrawal, signature: bytes, submitter: str = "") -> UnsignedTx:
    return evm.vault.withdraw_tx(submitter or evm.stranger, a, signature)


def deploy_test_contract(evm: VaultEnv, name: str, *args: Any) -> Any:
    out = vyper.compile_code((HERE / f"{name}.vy").read_text(), output_formats=["abi", "bytecode"])
    factory = evm.w3.eth.contract(abi=out["abi"], bytecode=out["bytecode"])
    r = send(evm, build_call(evm.w3, factory.constructor(*args), evm.owner))
    return evm.w3.eth.contract(address=to_checksum_address(r["contractAddress"]), abi=out["abi"])


# -- deployment ----------------------------------------------------------------------------------


def test_deploy_sets_owner_signer_and_delay(evm: VaultEnv) -> None:
    v = evm.vault
    assert v.owner() == evm.owner
    assert v.signer() == evm.signer
    assert v.signer_delay_s() == MIN_SIGNER_DELAY_S
    assert v.pending_signer() == (ZERO_ADDRESS, 0)
    assert v.reserves() == 0 and v.total_deposited() == 0 and v.total_withdrawn() == 0


@pytest.mark.parametrize(
    ("signer", "delay", "reason"),
    [
        (ZERO_ADDRESS, MIN_SIGNER_DELAY_S, "zero signer"),
        (None, MIN_SIGNER_DELAY_S - 1, "delay too short"),
        (None, 30 * 86_400 + 1, "delay too long"),
    ],
)
def test_deploy_rejects_bad_arguments(
    evm: VaultEnv, signer: str | None, delay: int, reason: str
) -> None:
    with rejected(reason):
        Vault.deploy(evm.w3, evm.owner, signer=signer or evm.signer, signer_delay_s=delay)


def test_no_function_moves_funds_but_withdraw() -> None:
    """The whole state-changing surface of the contract: nothing else can pay anybody."""
    abi = load_artifact("Vault").abi
    writes = {
        e["name"]
        for e in abi
        if e["type"] == "function" and e["stateMutability"] not in ("view", "pure")
    }
    assert writes == {
        "deposit",
        "deposit_token",
        "withdraw",
        "cancel_withdrawal",
        "propose_signer",
        "activate_signer",
        "transfer_ownership",
    }
    assert not any(e["type"] in ("fallback", "receive") for e in abi)


# -- deposits ------------------------------------------------------------------------------------


def test_deposit_credits_the_named_account(evm: VaultEnv, asset: Asset) -> None:
    before = asset.balance(evm.alice)
    receipt = asset.deposit(evm.alice, "alice_01-X")
    assert asset.balance(evm.alice) == before - AMOUNT - asset.spent_on_gas(receipt)
    assert evm.vault.reserves(asset.address) == AMOUNT
    assert evm.vault.total_deposited(asset.address) == AMOUNT
    (event,) = evm.vault.receipt_events(receipt)
    assert isinstance(event, VaultDeposited)
    assert (event.account, event.token, event.sender, event.amount) == (
        "alice_01-X",
        asset.address,
        evm.alice,
        AMOUNT,
    )
    assert event.block_number == receipt["blockNumber"]
    assert event.tx_hash == "0x" + bytes(receipt["transactionHash"]).hex()
    assert event.event_id == f"{event.block_hash}:{event.log_index}"
    assert event.event_id == event.event_id.lower()


@pytest.mark.parametrize(
    ("account", "reason"),
    [
        ("", "empty account"),
        ("@fees", "bad account"),
        ("al ice", "bad account"),
        ("alice:1", "bad account"),
        ("é", "bad account"),
    ],
)
def test_deposit_rejects_an_account_that_is_not_a_user_id(
    evm: VaultEnv, asset: Asset, account: str, reason: str
) -> None:
    with rejected(reason):
        asset.deposit(evm.alice, account)


def test_deposit_accepts_the_longest_user_id_and_refuses_a_longer_one(evm: VaultEnv) -> None:
    send(evm, evm.vault.deposit_tx(evm.alice, "a" * 64, 1))
    with pytest.raises(TransactionRejected):
        evm.vault.deposit_tx(evm.alice, "a" * 65, 1)


def test_deposits_reject_zero_amounts(evm: VaultEnv) -> None:
    with rejected("zero amount"):
        evm.vault.deposit_tx(evm.alice, "alice", 0)
    with rejected("zero amount"):
        evm.vault.deposit_token_tx(evm.alice, evm.token.address, 0, "alice")
    with rejected("zero token"):
        evm.vault.deposit_token_tx(evm.alice, ZERO_ADDRESS, 1, "alice")


def test_token_deposit_needs_the_allowance(evm: VaultEnv) -> None:
    send(evm, evm.token.approve_tx(evm.alice, evm.vault.address, AMOUNT - 1))
    with pytest.raises(TransactionRejected):
        evm.vault.deposit_token_tx(evm.alice, evm.token.address, AMOUNT, "alice")


def test_plain_eth_transfers_and_eth_with_a_token_deposit_are_refused(evm: VaultEnv) -> None:
    with pytest.raises(TransactionRejected):
        send_dev(evm.w3, {"from": evm.alice, "to": evm.vault.address, "value": 1})
    send(evm, evm.token.approve_tx(evm.alice, evm.vault.address, AMOUNT))
    data = evm.vault.contract.encode_abi("deposit_token", args=[evm.token.address, AMOUNT, "alice"])
    with pytest.raises(TransactionRejected):
        send_dev(evm.w3, {"from": evm.alice, "to": evm.vault.address, "value": 1, "data": data})
    assert evm.vault.reserves() == 0


def test_fee_on_transfer_token_is_refused(evm: VaultEnv) -> None:
    fee_token = deploy_test_contract(evm, "FeeToken")
    send(evm, build_call(evm.w3, fee_token.functions.approve(evm.vault.address, 10_000), evm.owner))
    with rejected("short transfer"):
        evm.vault.deposit_token_tx(evm.owner, fee_token.address, 10_000, "alice")
    # a fee of zero (an amount under 100) delivers everything: accepted
    send(evm, evm.vault.deposit_token_tx(evm.owner, fee_token.address, 99, "alice"))
    assert fee_token.functions.balanceOf(evm.vault.address).call() == 99


# -- EIP-712 ------------------------------------------------------------------------------------


def test_the_contract_hashes_exactly_what_eth_account_signs(evm: VaultEnv) -> None:
    a = auth(evm, Asset(evm, "token"))
    signable = encode_typed_data(
        full_message=withdrawal_typed_data(evm.chain_id, evm.vault.address, a)
    )
    assert evm.vault.domain_separator() == signable.header
    assert evm.vault.withdrawal_digest(a) == _hash_eip191_message(signable)
    sig = sign(evm, a)
    assert len(sig) == 65 and sig[64] in (27, 28)
    assert recover_withdrawal_signer(sig, evm.chain_id, evm.vault.address, a) == evm.signer
    other = msgspec.structs.replace(a, amount=a.amount + 1)
    assert recover_withdrawal_signer(sig, evm.chain_id, evm.vault.address, other) != evm.signer


def test_a_withdrawal_id_is_32_bytes(evm: VaultEnv) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        auth(evm, Asset(evm, "eth"), withdrawal_id=b"\x11" * 31)


# -- withdrawals --------------------------------------------------------------------------------


def test_signed_withdrawal_pays_the_recipient(evm: VaultEnv, asset: Asset) -> None:
    asset.deposit(evm.alice, "alice")
    a = auth(evm, asset)
    bob_before = asset.balance(evm.bob)
    receipt = send(evm, withdraw_tx(evm, a, sign(evm, a)))  # a stranger submits and pays gas
    assert asset.balance(evm.bob) == bob_before + a.amount
    assert evm.vault.reserves(asset.address) == AMOUNT - a.amount
    assert evm.vault.total_withdrawn(asset.address) == a.amount
    assert evm.vault.used(WID)
    assert not evm.vault.used(WID2)
    (event,) = evm.vault.receipt_events(receipt)
    assert event == VaultWithdrawn(
        withdrawal_id="0x" + WID.hex(),
        account="alice",
        token=asset.address,
        to=evm.bob,
        amount=a.amount,
        block_number=event.block_number,
        block_hash=event.block_hash,
        tx_hash=event.tx_hash,
        log_index=event.log_index,
    )


def test_the_recipient_may_submit_its_own_withdrawal(evm: VaultEnv) -> None:
    asset = Asset(evm, "token")
    asset.deposit(evm.alice, "alice")
    a = auth(evm, asset)
    send(evm, withdraw_tx(evm, a, sign(evm, a), submitter=evm.bob))
    assert evm.token.balance_of(evm.bob) == MINTED + a.amount


def test_withdrawal_signed_by_another_key_is_refused(evm: VaultEnv, asset: Asset) -> None:
    asset.deposit(evm.alice, "alice")
    a = auth(evm, asset)
    for key in (OUTSIDER_KEY, NEW_SIGNER_KEY):
        with rejected("bad signature"):
            withdraw_tx(evm, a, sign(evm, a, key=key))


@pytest.mark.parametrize(
    "field", ["account", "token", "amount", "to", "withdrawal_id", "expiry", "chain", "vault"]
)
def test_a_tampered_withdrawal_is_refused(evm: VaultEnv, field: str) -> None:
    eth, token = Asset(evm, "eth"), Asset(evm, "token")
    eth.deposit(evm.alice, "alice")
    token.deposit(evm.alice, "alice")
    a = auth(evm, eth)
    sig = sign(evm, a)
    changed = {
        "account": {"account": "mallory"},
        "token": {"token": evm.token.address},
        "amount": {"amount": a.amount + 1},
        "to": {"to": evm.stranger},
        "withdrawal_id": {"withdrawal_id": WID2},
        "expiry": {"expiry": a.expiry + 1},
    }
    if field == "chain":
        sig = sign(evm, a, chain_id=evm.chain_id + 1)
    elif field == "vault":
        sig = sign(evm, a, vault=evm.stranger)
    else:
        a = msgspec.structs.replace(a, **changed[field])
    with rejected("bad signature"):
        withdraw_tx(evm, a, sig)


def test_expired_withdrawal_is_refused_and_the_expiry_second_is_still_valid(
    evm: VaultEnv,
) -> None:
    asset = Asset(evm, "eth")
    asset.deposit(evm.alice, "alice")
    a = auth(evm, asset, expiry=evm.now() + 600)
    b = auth(evm, asset, withdrawal_id=WID2, expiry=a.expiry)
    evm.travel_to(a.expiry)  # the next block is mined at the expiry: still valid
    send(evm, withdraw_tx(evm, a, sign(evm, a)))
    assert evm.now() == a.expiry
    evm.travel_to(a.expiry + 1)
    with rejected("expired"):
        withdraw_tx(evm, b, sign(evm, b))


def test_a_withdrawal_id_pays_once(evm: VaultEnv, asset: Asset) -> None:
    asset.deposit(evm.alice, "alice")
    a = auth(evm, asset)
    sig = sign(evm, a)
    send(evm, withdraw_tx(evm, a, sig))
    with rejected("withdrawal id used"):
        withdraw_tx(evm, a, sig)
    # the same id under other terms is refused too
    b = auth(evm, asset, amount=1)
    with rejected("withdrawal id used"):
        withdraw_tx(evm, b, sign(evm, b))


def test_withdrawal_rejects_zero_amount_and_zero_recipient(evm: VaultEnv) -> None:
    asset = Asset(evm, "eth")
    asset.deposit(evm.alice, "alice")
    for over, reason in (({"amount": 0}, "zero amount"), ({"to": ZERO_ADDRESS}, "zero recipient")):
        a = auth(evm, asset, **over)
        with rejected(reason):
            withdraw_tx(evm, a, sign(evm, a))


def test_a_withdrawal_over_the_reserves_reverts_and_keeps_its_id(evm: VaultEnv) -> None:
    asset = Asset(evm, "eth")
    asset.deposit(evm.alice, "alice")
    a = auth(evm, asset, amount=AMOUNT + 1)
    with pytest.raises(TransactionRejected):
        withdraw_tx(evm, a, sign(evm, a))
    assert not evm.vault.used(WID)


def test_high_s_and_malformed_signatures_are_refused(evm: VaultEnv) -> None:
    asset = Asset(evm, "eth")
    asset.deposit(evm.alice, "alice")
    a = auth(evm, asset)
    sig = sign(evm, a)
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    twin = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])  # also recovers the signer
    assert recover_withdrawal_signer(twin, evm.chain_id, evm.vault.address, a) == evm.signer
    with rejected("bad signature s"):
        withdraw_tx(evm, a, twin)
    with rejected("bad signature v"):
        withdraw_tx(evm, a, sig[:64] + bytes([v - 27]))  # v as 0/1
    with rejected("bad signature length"):
        withdraw_tx(evm, a, sig[:64])
    with rejected("bad signature"):  # r = 0: ecrecover finds no key (the zero address)
        withdraw_tx(evm, a, bytes(32) + sig[32:])
    send(evm, withdraw_tx(evm, a, sig))  # the canonical form still works


def test_a_recipient_that_refuses_eth_makes_the_withdrawal_revert(evm: VaultEnv) -> None:
    asset = Asset(evm, "eth")
    asset.deposit(evm.alice, "alice")
    a = auth(evm, asset, to=evm.token.address)  # a contract with no payable entry point
    with pytest.raises(TransactionRejected):
        withdraw_tx(evm, a, sign(evm, a))
    assert not evm.vault.used(WID)
    assert evm.vault.reserves() == AMOUNT


# -- cancellation --------------------------------------------------------------------------------


def test_the_signer_cancels_an_unused_withdrawal(evm: VaultEnv) -> None:
    asset = Asset(evm, "eth")
    asset.deposit(evm.alice, "alice")
    a = auth(evm, asset)
    sig = sign(evm, a)
    receipt = send(evm, evm.vault.cancel_withdrawal_tx(evm.signer, WID))
    (event,) = evm.vault.receipt_events(receipt)
    assert isinstance(event, VaultWithdrawalCanceled)
    assert event.withdrawal_id == "0x" + WID.hex()
    assert evm.vault.used(WID)
    with rejected("withdrawal id used"):
        withdraw_tx(evm, a, sig)
    with rejected("withdrawal id used"):
        evm.vault.cancel_withdrawal_tx(evm.signer, WID)
    assert evm.vault.reserves() == AMOUNT


def test_an_executed_withdrawal_cannot_be_canceled(evm: VaultEnv) -> None:
    asset = Asset(evm, "eth")
    asset.deposit(evm.alice, "alice")
    a = auth(evm, asset)
    send(evm, withdraw_tx(evm, a, sign(evm, a)))
    with rejected("withdrawal id used"):
        evm.vault.cancel_withdrawal_tx(evm.signer, WID)


def test_only_the_signer_cancels(evm: VaultEnv) -> None:
    for who in (evm.owner, evm.stranger, evm.alice, evm.new_signer):
        with rejected("not signer"):
            evm.vault.cancel_withdrawal_tx(who, WID)
    assert not evm.vault.used(WID)


# -- signer rotation and ownership --------------------------------------------------------------


def test_signer_rotation_waits_out_the_delay(evm: VaultEnv) -> None:
    asset = Asset(evm, "eth")
    asset.deposit(evm.alice, "alice")
    v = evm.vault
    receipt = send(evm, v.propose_signer_tx(evm.owner, evm.new_signer))
    proposed_at = int(evm.w3.eth.get_block(receipt["blockNumber"])["timestamp"])
    assert v.pending_signer() == (evm.new_signer, proposed_at + MIN_SIGNER_DELAY_S)
    assert v.receipt_events(receipt) == []  # configuration, not a funds event
    evm.travel_to(proposed_at + MIN_SIGNER_DELAY_S - 2)
    with rejected("delay not passed"):
        v.activate_signer_tx(evm.owner)
    assert v.signer() == evm.signer
    # before activation the old signer's authorizations work, the new one's do not
    a = auth(evm, asset, amount=1)
    with rejected("bad signature"):
        withdraw_tx(evm, a, sign(evm, a, key=NEW_SIGNER_KEY))
    old_sig_for_later = sign(evm, auth(evm, asset, withdrawal_id=WID2, amount=2))
    evm.travel_to(proposed_at + MIN_SIGNER_DELAY_S)
    send(evm, v.activate_signer_tx(evm.owner))
    assert v.signer() == evm.new_signer
    assert v.pending_signer() == (ZERO_ADDRESS, 0)
    with rejected("bad signature"):
        withdraw_tx(evm, auth(evm, asset, withdrawal_id=WID2, amount=2), old_sig_for_later)
    with rejected("not signer"):
        v.cancel_withdrawal_tx(evm.signer, WID2)
    send(evm, withdraw_tx(evm, a, sign(evm, a, key=NEW_SIGNER_KEY)))
    send(evm, v.cancel_withdrawal_tx(evm.new_signer, WID2))


def test_rotation_is_the_owners_alone(evm: VaultEnv) -> None:
    v = evm.vault
    for who in (evm.stranger, evm.signer, evm.alice):
        with rejected("not owner"):
            v.propose_signer_tx(who, who)
    with rejected("zero signer"):
        v.propose_signer_tx(evm.owner, ZERO_ADDRESS)
    with rejected("no pending signer"):
        v.activate_signer_tx(evm.owner)
    send(evm, v.propose_signer_tx(evm.owner, evm.new_signer))
    evm.travel_to(evm.now() + MIN_SIGNER_DELAY_S + 1)
    for who in (evm.stranger, evm.signer, evm.new_signer):
        with rejected("not owner"):
            v.activate_signer_tx(who)


def test_a_new_proposal_restarts_the_delay(evm: VaultEnv) -> None:
    v = evm.vault
    send(evm, v.propose_signer_tx(evm.owner, evm.new_signer))
    evm.travel_to(evm.now() + MIN_SIGNER_DELAY_S - 10)
    send(evm, v.propose_signer_tx(evm.owner, evm.stranger))
    evm.travel_to(evm.now() + 20)
    with rejected("delay not passed"):
        v.activate_signer_tx(evm.owner)
    assert v.pending_signer()[0] == evm.stranger


def test_ownership_transfer(evm: VaultEnv) -> None:
    v = evm.vault
    with rejected("not owner"):
        v.transfer_ownership_tx(evm.stranger, evm.stranger)
    with rejected("zero owner"):
        v.transfer_ownership_tx(evm.owner, ZERO_ADDRESS)
    send(evm, v.transfer_ownership_tx(evm.owner, evm.bob))
    assert v.owner() == evm.bob
    with rejected("not owner"):
        v.propose_signer_tx(evm.owner, evm.new_signer)
    with rejected("not owner"):
        v.transfer_ownership_tx(evm.owner, evm.owner)
    send(evm, v.propose_signer_tx(evm.bob, evm.new_signer))


# -- reentrancy ----------------------------------------------------------------------------------


def test_reentrancy_on_an_eth_withdrawal_is_blocked(evm: VaultEnv) -> None:
    asset = Asset(evm, "eth")
    asset.deposit(evm.alice, "alice")
    evil = deploy_test_contract(evm, "VaultReenterer", evm.vault.address)
    first = auth(evm, asset, to=evil.address, amount=1000)
    second = auth(evm, asset, to=evil.address, amount=2000, withdrawal_id=WID2)
    nested = evm.vault.contract.encode_abi(
        "withdraw",
        args=[*second.call_args(), sign(evm, second)],
    )
    send(evm, build_call(evm.w3, evil.functions.set_payload(nested), evm.stranger))
    receipt = send(evm, withdraw_tx(evm, first, sign(evm, first)))
    assert evil.functions.attempts().call() == 1
    assert evil.functions.reentered().call() is False  # the nested withdraw was refused
    assert evm.eth(evil.address) == 1000
    assert not evm.vault.used(WID2)
    assert len(evm.vault.receipt_events(receipt)) == 1
    # outside the guarded call the same nested withdrawal is valid
    send_dev(evm.w3, {"from": evm.stranger, "to": evm.vault.address, "data": nested})
    assert evm.eth(evil.address) == 3000


# -- proof of reserves and the event stream -------------------------------------------------------


def test_reserves_equal_deposits_minus_withdrawals(evm: VaultEnv) -> None:
    start = evm.w3.eth.block_number
    assets = (Asset(evm, "eth"), Asset(evm, "token"))
    wid = iter(bytes([i]) * 32 for i in range(1, 100))
    for asset in assets:
        asset.deposit(evm.alice, "alice", 5 * 10**18)
        asset.deposit(evm.bob, "bob", 3 * 10**18 + 7)
        for amount in (10**18, 2 * 10**18 + 3):
            a = auth(evm, asset, amount=amount, withdrawal_id=next(wid))
            send(evm, withdraw_tx(evm, a, sign(evm, a)))
        send(evm, evm.vault.cancel_withdrawal_tx(evm.signer, next(wid)))
    events = evm.vault.events(start)
    for asset in assets:
        deposited = sum(
            e.amount for e in events if isinstance(e, VaultDeposited) and e.token == asset.address
        )
        withdrawn = sum(
            e.amount for e in events if isinstance(e, VaultWithdrawn) and e.token == asset.address
        )
        v = evm.vault
        assert (deposited, withdrawn) == (8 * 10**18 + 7, 3 * 10**18 + 3)
        assert v.total_deposited(asset.address) == deposited
        assert v.total_withdrawn(asset.address) == withdrawn
        assert v.reserves(asset.address) == deposited - withdrawn == asset.balance(v.address)


def test_events_come_in_chain_order_and_round_trip_through_msgspec(evm: VaultEnv) -> None:
    start = evm.w3.eth.block_number
    asset = Asset(evm, "token")
    asset.deposit(evm.alice, "alice")  # approve + deposit: the Transfer/Approval logs are skipped
    a = auth(evm, asset)
    send(evm, withdraw_tx(evm, a, sign(evm, a)))
    send(evm, evm.vault.cancel_withdrawal_tx(evm.signer, WID2))
    send(evm, evm.vault.propose_signer_tx(evm.owner, evm.new_signer))
    events = evm.vault.events(start)
    assert [type(e).__name__ for e in events] == [
        "VaultDeposited",
        "VaultWithdrawn",
        "VaultWithdrawalCanceled",
    ]
    assert [e.position for e in events] == sorted(e.position for e in events)
    assert len({e.event_id for e in events}) == 3
    wire = msgspec.json.encode(events)
    assert msgspec.json.decode(wire, type=list[VaultEvent]) == events
    assert b'"kind":"withdrawal_canceled"' in wire
    assert evm.vault.events(start, start) == []


def test_an_account_created_key_signs_like_the_engine(evm: VaultEnv) -> None:
    """A fresh key made signer through rotation works end to end (the engine's key is not
    special to the contract)."""
    key = Account.create().key
    send(evm, evm.vault.propose_signer_tx(evm.owner, Account.from_key(key).address))
    evm.travel_to(evm.now() + MIN_SIGNER_DELAY_S + 1)
    send(evm, evm.vault.activate_signer_tx(evm.owner))
    asset = Asset(evm, "eth")
    asset.deposit(evm.alice, "alice")
    a = auth(evm, asset)
    sig = sign_withdrawal(key, evm.chain_id, evm.vault.address, a)
    send(evm, withdraw_tx(evm, a, sig))
    assert evm.vault.used(WID)
