"""Funds on the wire: what moves money into, out of and inside the ledger (``docs/funds.md``).

========== ======================== ==========================================================
Stream     Subjects                 Content
========== ======================== ==========================================================
FUNDS      ``funds.cmd``            the API: :class:`WithdrawalRequest` (``Nats-Msg-Id``
                                    :func:`withdrawal_msg_id`)
           ``funds.chain``          the vault watcher: :class:`DepositConfirmed`,
                                    :class:`DepositReversed`, :class:`WithdrawalConfirmed`,
                                    :class:`WithdrawalExpired` (``Nats-Msg-Id``
                                    :func:`chain_funds_msg_id`)
LEDGER     ``ledger.<source>``      risk: one JSON array of ledger entries per handled input
                                    message and source (``Nats-Msg-Id``
                                    :func:`ledger_msg_id`, the first entry's id)
           ``ledger.withdrawal``    risk: :class:`WithdrawalDecision`, the answer to a
                                    :class:`WithdrawalRequest` (``Nats-Msg-Id``
                                    :func:`withdrawal_decision_msg_id`)
========== ======================== ==========================================================

Amounts are integers of the asset's base units; times ms UTC; addresses lowercase 0x hex.
Risk reads ``FUNDS`` in stream order (durable :data:`RISK_FUNDS_DURABLE`); the persister
reads ``LEDGER`` (durable :data:`PERSISTER_LEDGER_DURABLE`).
"""

from __future__ import annotations

import msgspec

from orrange.wire.spec import StreamSpec

__all__ = [
    "FUNDS",
    "FUNDS_CHAIN_SUBJECT",
    "FUNDS_CMD_SUBJECT",
    "FUNDS_PREFIX",
    "FUNDS_STREAMS",
    "LEDGER",
    "LEDGER_PREFIX",
    "LEDGER_SNAPSHOT_KEY",
    "LEDGER_WITHDRAWAL_SUBJECT",
    "PERSISTER_LEDGER_DURABLE",
    "RISK_FUNDS_DURABLE",
    "DepositConfirmed",
    "DepositReversed",
    "FundsMessage",
    "WithdrawalConfirmed",
    "WithdrawalDecision",
    "WithdrawalExpired",
    "WithdrawalRequest",
    "chain_funds_msg_id",
    "ledger_msg_id",
    "ledger_subject",
    "withdrawal_decision_msg_id",
    "withdrawal_msg_id",
]

FUNDS_PREFIX = "funds"
FUNDS_CMD_SUBJECT = f"{FUNDS_PREFIX}.cmd"
FUNDS_CHAIN_SUBJECT = f"{FUNDS_PREFIX}.chain"
LEDGER_PREFIX = "ledger"
LEDGER_WITHDRAWAL_SUBJECT = f"{LEDGER_PREFIX}.withdrawal"
#: Risk's durable on ``FUNDS``; the persister's on ``LEDGER``.
RISK_FUNDS_DURABLE = "risk-funds"
PERSISTER_LEDGER_DURABLE = "persister-ledger"
#: The key of risk's ledger snapshot in the ``snapshots`` KV bucket.
LEDGER_SNAPSHOT_KEY = "ledger"

FUNDS = StreamSpec(
    name="FUNDS",
    subjects=(f"{FUNDS_PREFIX}.>",),
    duplicate_window_ms=3_600_000,
    description="money in and out: withdrawal requests (funds.cmd), vault logs (funds.chain)",
)
LEDGER = StreamSpec(
    name="LEDGER",
    subjects=(f"{LEDGER_PREFIX}.>",),
    duplicate_window_ms=3_600_000,
    description="risk's ledger entries (ledger.<source>) and withdrawal decisions",
)
#: Both funds streams.
FUNDS_STREAMS: tuple[StreamSpec, ...] = (FUNDS, LEDGER)


def ledger_subject(source: str) -> str:
    """``ledger.<source>``: the entries of one source (``cmd``, ``funds``, ``evt.<SYM>``)."""
    return f"{LEDGER_PREFIX}.{source}"


def ledger_msg_id(first_entry_id: str) -> str:
    """The ``Nats-Msg-Id`` of a ``LEDGER`` batch: its first entry's id
    (``<source>:<seq>:<n>``, unique per entry)."""
    return first_entry_id


def withdrawal_msg_id(withdrawal_id: str) -> str:
    """``withdraw:<withdrawal_id>``: the ``Nats-Msg-Id`` of a :class:`WithdrawalRequest`."""
    return f"withdraw:{withdrawal_id}"


def withdrawal_decision_msg_id(withdrawal_id: str) -> str:
    """``decision:<withdrawal_id>``: the ``Nats-Msg-Id`` of a :class:`WithdrawalDecision`."""
    return f"decision:{withdrawal_id}"


def chain_funds_msg_id(kind: str, event_id: str) -> str:
    """``<kind>:<event_id>``: the ``Nats-Msg-Id`` of a ``funds.chain`` message (``kind`` its
    type tag; ``event_id`` the vault log's ``<block_hash>:<log_index>``, or the withdrawal id
    for an expiry)."""
    return f"{kind}:{event_id}"


class WithdrawalRequest(msgspec.Struct, frozen=True, kw_only=True, tag="withdrawal_request"):
    """A user asks to withdraw ``amount`` base units of ``asset`` to the address ``to``.

    ``withdrawal_id`` is 32 bytes as 0x hex (the vault's ``withdrawal_id``); ``expiry`` the
    authorization's last valid chain time, in seconds since the epoch (the vault compares it
    with ``block.timestamp``); ``ts`` ms UTC of the request.
    """

    withdrawal_id: str
    user: str
    asset: str
    amount: int
    to: str
    expiry: int
    ts: int


class DepositConfirmed(msgspec.Struct, frozen=True, kw_only=True, tag="deposit"):
    """A vault ``Deposited`` log at the confirmation depth: ``amount`` base units of ``asset``
    credited to ``account`` (the user id the deposit named). ``event_id``:
    ``<block_hash>:<log_index>``."""

    event_id: str
    account: str
    asset: str
    amount: int
    sender: str
    tx_hash: str
    block_number: int
    ts: int


class DepositReversed(msgspec.Struct, frozen=True, kw_only=True, tag="deposit_reversed"):
    """A reorg removed the confirmed deposit ``event_id``."""

    event_id: str
    block_number: int
    ts: int


class WithdrawalConfirmed(msgspec.Struct, frozen=True, kw_only=True, tag="withdrawal_confirmed"):
    """A vault ``Withdrawn`` log at the confirmation depth for ``withdrawal_id``."""

    withdrawal_id: str
    event_id: str
    tx_hash: str
    block_number: int
    ts: int


class WithdrawalExpired(msgspec.Struct, frozen=True, kw_only=True, tag="withdrawal_expired"):
    """The authorization of ``withdrawal_id`` can no longer execute: a confirmed block is past
    its expiry, or the signer canceled it (``event_id`` of the cancel log, else empty)."""

    withdrawal_id: str
    event_id: str
    block_number: int
    ts: int


#: Everything on ``FUNDS``.
FundsMessage = (
    WithdrawalRequest | DepositConfirmed | DepositReversed | WithdrawalConfirmed | WithdrawalExpired
)


class WithdrawalDecision(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Risk's answer to a :class:`WithdrawalRequest`, on ``ledger.withdrawal``.

    ``status``: ``authorized`` (the amount is held; ``signature`` is the signer's 65-byte
    EIP-712 authorization as 0x hex, for the vault's ``withdraw``) or ``rejected``
    (``reason``, e.g. ``insufficient_funds``, and a human ``message``). ``token`` is the
    asset's token (``native`` or an address) and ``vault`` the vault's address.
    """

    withdrawal_id: str
    user: str
    asset: str
    amount: int
    to: str
    expiry: int
    status: str
    ts: int
    token: str = ""
    vault: str = ""
    chain_id: int = 0
    signature: str = ""
    reason: str = ""
    message: str = ""
