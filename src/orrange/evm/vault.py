"""A typed web3.py layer over the vault contract (``contracts/Vault.vy``, docs/vault.md).

Like :mod:`.chain` for the escrow, everything here is synchronous web3.py:

- :meth:`Vault.deploy` (development mode) and unsigned transactions for every call
  (:class:`~.chain.UnsignedTx`; a call the contract would refuse raises
  :class:`~.chain.TransactionRejected` with its revert reason, e.g. ``"bad signature"``);
- the engine's withdrawal authorization: :func:`sign_withdrawal` signs the EIP-712
  (https://eips.ethereum.org/EIPS/eip-712) typed data of :func:`withdrawal_typed_data` with
  eth-account, :func:`recover_withdrawal_signer` recovers its signer;
- the funds events decoded into :class:`VaultDeposited`, :class:`VaultWithdrawn` and
  :class:`VaultWithdrawalCanceled` (:meth:`Vault.events`, :meth:`Vault.receipt_events`).

Units: amounts are exact integers of the asset's base units (wei for ETH, the ERC-20's
smallest unit); ``token`` is the ERC-20's address, the zero address meaning ETH; ``expiry``
and delays are unix seconds (the EVM's ``block.timestamp``); withdrawal ids are 32 raw bytes
on the way in and ``0x`` + 64 lower-case hex digits in events; accounts are the engine's user
ids (1 to 64 of ``A-Z a-z 0-9 _ -``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

import msgspec
from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils import to_checksum_address
from web3 import Web3
from web3.types import TxReceipt

from orrange.evm.chain import (
    UnsignedTx,
    _decode_logs,
    _deploy,
    _event_specs,
    _get_logs,
    build_call,
    load_artifact,
)
from orrange.settlement.events import ZERO_ADDRESS, ChainLog

__all__ = [
    "MIN_SIGNER_DELAY_S",
    "SIGNER_DELAY_S",
    "WITHDRAWAL_TYPES",
    "Vault",
    "VaultDeposited",
    "VaultEvent",
    "VaultWithdrawalCanceled",
    "VaultWithdrawn",
    "Withdrawal",
    "recover_withdrawal_signer",
    "sign_withdrawal",
    "withdrawal_typed_data",
]

#: The signer rotation delay of a deployment (seconds): 2 days.
SIGNER_DELAY_S = 2 * 86_400
#: The shortest delay the contract accepts (``MIN_SIGNER_DELAY`` in Vault.vy), for tests.
MIN_SIGNER_DELAY_S = 3_600

#: The EIP-712 types of a withdrawal authorization (domain ``Orrange Vault`` version ``1``).
WITHDRAWAL_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "Withdrawal": [
        {"name": "account", "type": "string"},
        {"name": "token", "type": "address"},
        {"name": "amount", "type": "uint256"},
        {"name": "to", "type": "address"},
        {"name": "withdrawal_id", "type": "bytes32"},
        {"name": "expiry", "type": "uint256"},
    ],
}


class Withdrawal(msgspec.Struct, frozen=True, kw_only=True):
    """The terms of one withdrawal authorization (the EIP-712 ``Withdrawal`` message): pay
    ``amount`` base units of ``token`` (zero address: ETH) booked to the exchange account
    ``account`` to the address ``to``, once, under the 32-byte ``withdrawal_id``, in a block
    whose timestamp is at most ``expiry`` (unix s). Raises ``ValueError`` unless
    ``withdrawal_id`` is 32 bytes."""

    account: str
    token: str
    amount: int
    to: str
    withdrawal_id: bytes
    expiry: int

    def __post_init__(self) -> None:
        if len(self.withdrawal_id) != 32:
            raise ValueError(f"withdrawal id must be 32 bytes, got {len(self.withdrawal_id)}")

    def call_args(self) -> tuple[str, str, int, str, bytes, int]:
        """The contract's argument order: account, token, amount, to, withdrawal_id, expiry
        (addresses checksummed)."""
        return (
            self.account,
            to_checksum_address(self.token),
            self.amount,
            to_checksum_address(self.to),
            bytes(self.withdrawal_id),
            self.expiry,
        )


def withdrawal_typed_data(chain_id: int, vault_address: str, w: Withdrawal) -> dict[str, Any]:
    """The EIP-712 ``full_message`` (``types``, ``primaryType``, ``domain``, ``message``) of
    the authorization ``w`` for the vault at ``vault_address`` on chain ``chain_id``."""
    names = [f["name"] for f in WITHDRAWAL_TYPES["Withdrawal"]]
    return {
        "types": WITHDRAWAL_TYPES,
        "primaryType": "Withdrawal",
        "domain": {
            "name": "Orrange Vault",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(vault_address),
        },
        "message": dict(zip(names, w.call_args())),
    }


def _signable(chain_id: int, vault_address: str, w: Withdrawal) -> SignableMessage:
    return encode_typed_data(full_message=withdrawal_typed_data(chain_id, vault_address, w))


def sign_withdrawal(
    private_key: bytes | str, chain_id: int, vault_address: str, w: Withdrawal
) -> bytes:
    """The signer's 65-byte signature ``r || s || v`` (``v`` 27 or 28, low ``s``) of the
    authorization's EIP-712 typed data (:func:`withdrawal_typed_data`), the ``signature``
    argument of :meth:`Vault.withdraw_tx`. ``private_key``: 32 bytes or ``0x`` hex."""
    signed = Account.sign_message(_signable(chain_id, vault_address, w), private_key)
    return bytes(signed.signature)


def recover_withdrawal_signer(
    signature: bytes, chain_id: int, vault_address: str, w: Withdrawal
) -> str:
    """The checksummed address whose key made ``signature`` over the authorization ``w``
    (for other terms it is some unrelated address). Raises eth-account's
    ``ValueError``/``BadSignature`` for a malformed signature."""
    signable = _signable(chain_id, vault_address, w)
    return str(Account.recover_message(signable, signature=signature))


class _VaultEventBase(ChainLog, frozen=True, kw_only=True, tag_field="kind"):
    """A vault funds event; encoded with its type tag in ``kind``."""


class VaultDeposited(_VaultEventBase, frozen=True, kw_only=True, tag="deposited"):
    """``sender`` deposited ``amount`` base units of ``token`` (zero address: ETH) for the
    exchange account ``account``."""

    account: str
    token: str
    sender: str
    amount: int


class VaultWithdrawn(_VaultEventBase, frozen=True, kw_only=True, tag="withdrawn"):
    """The authorization ``withdrawal_id`` paid ``amount`` of ``token`` from ``account``
    to ``to``."""

    withdrawal_id: str
    account: str
    token: str
    to: str
    amount: int


class VaultWithdrawalCanceled(
    _VaultEventBase, frozen=True, kw_only=True, tag="withdrawal_canceled"
):
    """The signer spent ``withdrawal_id`` unused: its authorization can never execute."""

    withdrawal_id: str


VaultEvent = VaultDeposited | VaultWithdrawn | VaultWithdrawalCanceled

_VAULT_EVENTS: dict[str, type[VaultEvent]] = {
    "Deposited": VaultDeposited,
    "Withdrawn": VaultWithdrawn,
    "WithdrawalCanceled": VaultWithdrawalCanceled,
}


class Vault:
    """A deployed vault contract at ``address`` reached through ``w3``."""

    def __init__(self, w3: Web3, address: str) -> None:
        self.w3 = w3
        self.address = to_checksum_address(address)
        abi = load_artifact("Vault").abi
        self.contract = w3.eth.contract(address=self.address, abi=abi)
        self._specs = _event_specs(abi, _VAULT_EVENTS)

    @classmethod
    def deploy(
        cls, w3: Web3, deployer: str, *, signer: str, signer_delay_s: int = SIGNER_DELAY_S
    ) -> Vault:
        """Deploy from the node-held ``deployer`` account (development mode), which becomes
        the owner. Raises :class:`~.chain.TransactionRejected` for a zero signer or a delay
        outside 3600 s .. 30 days."""
        return cls(w3, _deploy(w3, "Vault", deployer, signer, signer_delay_s))

    # -- unsigned transactions -------------------------------------------------------------

    def deposit_tx(self, sender: str, account: str, amount: int) -> UnsignedTx:
        """``sender`` deposits ``amount`` wei of ETH for ``account`` (the tx's value)."""
        return build_call(self.w3, self.contract.functions.deposit(account), sender, amount)

    def deposit_token_tx(self, sender: str, token: str, amount: int, account: str) -> UnsignedTx:
        """``sender`` deposits ``amount`` base units of ``token`` for ``account``; the sender
        must first approve the vault (:meth:`~.chain.Token.approve_tx`)."""
        call = self.contract.functions.deposit_token(to_checksum_address(token), amount, account)
        return build_call(self.w3, call, sender)

    def withdraw_tx(self, submitter: str, w: Withdrawal, signature: bytes) -> UnsignedTx:
        """Anybody (``submitter`` pays the gas) executes the authorization ``w`` with the
        signer's ``signature`` (:func:`sign_withdrawal`): ``w.amount`` goes to ``w.to``."""
        call = self.contract.functions.withdraw(*w.call_args(), signature)
        return build_call(self.w3, call, submitter)

    def cancel_withdrawal_tx(self, signer: str, withdrawal_id: bytes) -> UnsignedTx:
        """The signer spends the unused ``withdrawal_id``."""
        call = self.contract.functions.cancel_withdrawal(withdrawal_id)
        return build_call(self.w3, call, signer)

    def propose_signer_tx(self, owner: str, new_signer: str) -> UnsignedTx:
        """The owner proposes ``new_signer``, active after the signer delay."""
        call = self.contract.functions.propose_signer(to_checksum_address(new_signer))
        return build_call(self.w3, call, owner)

    def activate_signer_tx(self, owner: str) -> UnsignedTx:
        """The owner activates the pending signer once its delay has passed."""
        return build_call(self.w3, self.contract.functions.activate_signer(), owner)

    def transfer_ownership_tx(self, owner: str, new_owner: str) -> UnsignedTx:
        """The owner hands the owner's role to ``new_owner``."""
        call = self.contract.functions.transfer_ownership(to_checksum_address(new_owner))
        return build_call(self.w3, call, owner)

    # -- reads ---------------------------------------------------------------------------------

    def signer(self) -> str:
        """The address whose EIP-712 signatures authorize withdrawals now."""
        return str(self.contract.functions.signer().call())

    def owner(self) -> str:
        """The address that may rotate the signer and transfer ownership."""
        return str(self.contract.functions.owner().call())

    def signer_delay_s(self) -> int:
        """Seconds between a signer proposal and the earliest activation."""
        return int(self.contract.functions.signer_delay().call())

    def pending_signer(self) -> tuple[str, int]:
        """``(address, effective_at unix s)`` of the proposed signer; the zero address and 0
        when none is pending."""
        f = self.contract.functions
        return str(f.pending_signer().call()), int(f.pending_signer_at().call())

    def used(self, withdrawal_id: bytes) -> bool:
        """True once ``withdrawal_id`` was executed or canceled."""
        return bool(self.contract.functions.used(withdrawal_id).call())

    def domain_separator(self) -> bytes:
        """The contract's EIP-712 domain separator (32 bytes)."""
        return bytes(self.contract.functions.domain_separator().call())

    def withdrawal_digest(self, w: Withdrawal) -> bytes:
        """The 32-byte EIP-712 digest the contract checks a signature of ``w`` against."""
        return bytes(self.contract.functions.withdrawal_digest(*w.call_args()).call())

    def total_deposited(self, token: str = ZERO_ADDRESS) -> int:
        """Everything ever deposited of ``token`` (base units)."""
        return int(self.contract.functions.total_deposited(to_checksum_address(token)).call())

    def total_withdrawn(self, token: str = ZERO_ADDRESS) -> int:
        """Everything ever withdrawn of ``token`` (base units)."""
        return int(self.contract.functions.total_withdrawn(to_checksum_address(token)).call())

    def reserves(self, token: str = ZERO_ADDRESS) -> int:
        """The vault's own balance of ``token`` (base units): proof of reserves, at least
        ``total_deposited - total_withdrawn``."""
        return int(self.contract.functions.reserves(to_checksum_address(token)).call())

    # -- events --------------------------------------------------------------------------------

    def decode_logs(self, logs: Iterable[Mapping[str, Any]]) -> list[VaultEvent]:
        """Decode raw logs (``eth_getLogs`` or receipt ``logs`` entries) into vault funds
        events in the given order; other contracts' logs and the vault's configuration events
        (signer and owner changes) are skipped. Raises ``KeyError`` for a pending log."""
        return _decode_logs(self.w3, self.address, self._specs, logs)

    def events(self, from_block: int, to_block: int | str = "latest") -> list[VaultEvent]:
        """The vault's funds events in blocks ``from_block..to_block`` (inclusive), in chain
        order (``eth_getLogs``)."""
        return self.decode_logs(_get_logs(self.w3, self.address, from_block, to_block))

    def receipt_events(self, receipt: TxReceipt) -> list[VaultEvent]:
        """The vault's funds events in one transaction receipt."""
        return self.decode_logs(cast(Iterable[Mapping[str, Any]], receipt["logs"]))
