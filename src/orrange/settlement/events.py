"""Escrow chain events: what the escrow contract logged, as plain msgspec values.

These are the inputs of the pure settlement lifecycle (:mod:`orrange.settlement.lifecycle`);
:mod:`orrange.evm.chain` decodes them from transaction logs. Shapes and units:

- ``trade_id``: the 32-byte trade id as ``0x`` + 64 lower-case hex digits;
- addresses: EIP-55 checksummed ``0x`` strings; the zero address as ``token`` means ETH;
- amounts (``amount``, ``to_buyer``, ``to_seller``, ``fee``): exact integers in the
  smallest unit of the escrowed asset (wei, or the ERC-20's base unit);
- ``fee_bps``, ``buyer_bps``: basis points (1/10000); ``payment_deadline``: unix seconds;
- where the log was found: ``block_number``, ``block_hash``, ``tx_hash`` (``0x`` hex) and
  ``log_index`` (position in the block). :attr:`event_id` identifies a log on one chain
  branch: a reorg that moves the transaction to another block changes it.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "ZERO_ADDRESS",
    "ChainEvent",
    "ChainLog",
    "EscrowDisputed",
    "EscrowFunded",
    "EscrowPaid",
    "EscrowReclaimed",
    "EscrowReleased",
    "EscrowResolved",
    "trade_id_hex",
]

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


def trade_id_hex(trade_id: bytes) -> str:
    """``0x`` + 64 hex digits for a 32-byte id; raises ``ValueError`` for any other length."""
    if len(trade_id) != 32:
        raise ValueError(f"trade id must be 32 bytes, got {len(trade_id)}")
    return "0x" + trade_id.hex()


class ChainLog(msgspec.Struct, frozen=True, kw_only=True):
    """Where a contract's log was found (the base of the escrow's and the vault's events)."""

    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int

    @property
    def event_id(self) -> str:
        """``<block_hash>:<log_index>``: unique per log on a chain branch."""
        return f"{self.block_hash}:{self.log_index}"

    @property
    def position(self) -> tuple[int, int]:
        """``(block_number, log_index)``: the order in which the chain applied the logs."""
        return (self.block_number, self.log_index)


class _ChainEventBase(ChainLog, frozen=True, kw_only=True, tag_field="kind"):
    trade_id: str


class EscrowFunded(_ChainEventBase, frozen=True, kw_only=True, tag="funded"):
    """The seller locked ``amount`` of ``token`` for ``buyer``; ``fee_bps`` is fixed for the
    deal; the buyer must mark paid by ``payment_deadline`` (unix seconds)."""

    seller: str
    buyer: str
    token: str
    amount: int
    fee_bps: int
    payment_deadline: int


class EscrowPaid(_ChainEventBase, frozen=True, kw_only=True, tag="paid"):
    """The buyer marked the off-chain payment as made."""

    buyer: str


class EscrowReleased(_ChainEventBase, frozen=True, kw_only=True, tag="released"):
    """The seller released: ``to_buyer`` went to the buyer, ``fee`` to the fee recipient."""

    buyer: str
    to_buyer: int
    fee: int


class EscrowDisputed(_ChainEventBase, frozen=True, kw_only=True, tag="disputed"):
    """``by`` (buyer or seller) opened a dispute."""

    by: str


class EscrowResolved(_ChainEventBase, frozen=True, kw_only=True, tag="resolved"):
    """The mediator resolved: the buyer got ``buyer_bps`` of the amount (10000 = release,
    0 = refund) less ``fee``; ``to_seller`` went back to the seller."""

    buyer_bps: int
    to_buyer: int
    to_seller: int
    fee: int


class EscrowReclaimed(_ChainEventBase, frozen=True, kw_only=True, tag="reclaimed"):
    """After the payment deadline with no paid mark, ``amount`` went back to the seller."""

    seller: str
    amount: int


ChainEvent = (
    EscrowFunded | EscrowPaid | EscrowReleased | EscrowDisputed | EscrowResolved | EscrowReclaimed
)
