"""Ledger entries: one movement of funds with its cause (docs/funds.md, "Ledger").

Entries encode to JSON for the ``LEDGER`` stream and to msgpack for snapshots
(``msgspec.json.encode(entry)``, ``msgspec.json.decode(data, type=Entry)``).
"""

from __future__ import annotations

import enum
from typing import Final

import msgspec

__all__ = [
    "FAUCET",
    "FEES",
    "LOSS",
    "P2P_PREFIX",
    "VAULT",
    "Entry",
    "EntryKind",
    "Posting",
    "entry_id",
    "order_ref",
    "p2p_account",
]

#: Fees paid by users and maker rebates paid to them.
FEES: Final = "@fees"
#: The chain: minus everything deposited and not withdrawn (may be negative).
VAULT: Final = "@vault"
#: Development credits: minus everything the faucet gave (may be negative).
FAUCET: Final = "@faucet"
#: The exchange's loss: a reorg took back a deposit that was already withdrawn, held for a
#: withdrawal or spent by orders that kept trading before their cancel (may be negative).
LOSS: Final = "@loss"
#: Prefix of a P2P trade's escrow account, ``@p2p:<trade_id>``.
P2P_PREFIX: Final = "@p2p:"


def p2p_account(trade_id: str) -> str:
    """The escrow account of P2P trade ``trade_id`` (``@p2p:0x...``)."""
    return P2P_PREFIX + trade_id


def order_ref(symbol: str, order_id: int) -> str:
    """An order's hold reference, ``<SYM>:<order_id>`` (``"BTC-USDT:42"``)."""
    return f"{symbol}:{order_id}"


def entry_id(source: str, seq: int, n: int) -> str:
    """An entry's id ``<source>:<seq>:<n>`` (``"evt.BTC-USDT:17:2"``), also its
    ``Nats-Msg-Id`` on ``LEDGER``."""
    return f"{source}:{seq}:{n}"


class EntryKind(enum.StrEnum):
    """What an entry records (docs/funds.md)."""

    DEPOSIT = "deposit"
    DEPOSIT_REVERSED = "deposit_reversed"
    FAUCET = "faucet"
    WITHDRAWAL_REQUESTED = "withdrawal_requested"
    WITHDRAWAL_CONFIRMED = "withdrawal_confirmed"
    WITHDRAWAL_RETURNED = "withdrawal_returned"
    HOLD = "hold"
    RELEASE = "release"
    FILL = "fill"
    FEE = "fee"
    P2P_LOCK = "p2p_lock"
    REJECT = "reject"


class Posting(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One (account, asset) change: ``available`` and ``held`` deltas in base units.
    Encoded as ``[account, asset, available, held]``."""

    account: str
    asset: str
    available: int
    held: int


class Entry(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """One movement with a cause.

    Attributes:
        id: ``<source>:<seq>:<n>`` (:func:`entry_id`).
        kind: an :class:`EntryKind`.
        source: ``cmd`` (the ``CMD`` stream), ``evt.<SYM>`` (a book's events) or ``funds``
            (the ``FUNDS`` stream).
        seq: the sequence of the cause within its source (stream sequence or event seq).
        n: the entry's index among those of the same cause (0, 1, ...).
        ts: ms UTC of the cause.
        ref: order key ``<SYM>:<order_id>``, withdrawal id, or chain event id of a deposit.
        postings: the movements; per asset they sum to zero.
        detail: a reason (a rejection's ``reason: message``, the P2P trade id of a lock).
    """

    id: str
    kind: EntryKind
    source: str
    seq: int
    n: int
    ts: int
    ref: str = ""
    postings: tuple[Posting, ...] = ()
    detail: str = ""
