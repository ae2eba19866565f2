"""The escrow watcher's stream ``SETTLEMENT``: trade changes, their subjects and message ids.

========== ========================== ========================================================
Stream     Subjects                   Content
========== ========================== ========================================================
SETTLEMENT ``settlement.<trade_id>``  one :class:`SettlementEvent` per change of a trade
                                      (``Nats-Msg-Id`` :func:`settlement_msg_id`, derived
                                      from the change's cause)
========== ========================== ========================================================

The watcher reads ``EVENTS`` (durable :data:`ESCROW_DURABLE`) and opens a trade for every fill
of a P2P market (:func:`is_p2p`).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from orrange.markets import MarketSpec
from orrange.matching.events import OrderFilled
from orrange.settlement.lifecycle import ReputationEvent
from orrange.wire.spec import StreamSpec

__all__ = [
    "ESCROW_DURABLE",
    "SETTLEMENT",
    "SETTLEMENT_PREFIX",
    "SettlementCause",
    "SettlementEvent",
    "is_p2p",
    "settlement_msg_id",
    "settlement_subject",
]

#: The escrow watcher's durable on ``EVENTS``.
ESCROW_DURABLE = "escrow"
SETTLEMENT_PREFIX = "settlement"
SETTLEMENT = StreamSpec(
    name="SETTLEMENT",
    subjects=(f"{SETTLEMENT_PREFIX}.>",),
    duplicate_window_ms=3_600_000,
    description="trade settlement changes from the escrow watcher (settlement.<trade_id>)",
)

#: Why a trade changed: a fill opened it, an escrow log was applied, a reorg orphaned one, or
#: a deadline passed.
SettlementCause = Literal["opened", "chain", "reverted", "deadline"]


def settlement_subject(trade_id: str) -> str:
    """``settlement.<trade_id>``: where the changes of one trade are published."""
    return f"{SETTLEMENT_PREFIX}.{trade_id}"


def settlement_msg_id(trade_id: str, cause: SettlementCause, detail: str | None = None) -> str:
    """``<trade_id>:<cause>`` (``:<detail>`` appended when given): the ``Nats-Msg-Id`` of a
    change of a trade. ``detail`` is the escrow log's event id for ``chain`` and ``reverted``,
    the trade's new state for ``deadline``, None for ``opened``."""
    msg_id = f"{trade_id}:{cause}"
    return msg_id if detail is None else f"{msg_id}:{detail}"


def is_p2p(spec: MarketSpec | None, fill: OrderFilled) -> bool:
    """Whether a fill settles peer to peer: its market orders by ``price-reputation-time``
    (the P2P markets of ``config/markets.toml``) or the fill names payment methods."""
    return bool(fill.payment_methods) or (
        spec is not None and spec.priority == "price-reputation-time"
    )


class SettlementEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A change of one trade, on ``settlement.<trade_id>``.

    ``cause``: ``opened`` (a fill), ``chain`` (escrow log ``event_id`` applied), ``reverted``
    (a reorg orphaned ``event_id``) or ``deadline`` (a tick). ``state`` is the state after
    the change; ``reputation`` the facts it emitted (retractions included); ``ts`` ms UTC.
    """

    trade_id: str
    symbol: str
    buyer: str
    seller: str
    state: str
    cause: str
    event_id: str | None
    tx_hashes: dict[str, str]
    reputation: tuple[ReputationEvent, ...]
    ts: int
