"""Events: everything an :class:`~orrange.matching.book.OrderBook` says.

Every event carries the book's ``symbol``, its per-book sequence number ``seq`` (increasing by
exactly 1 per event, starting at 1, so a consumer detects gaps and de-duplicates on
``(symbol, seq)``) and ``ts``, the ms UTC of the command that caused it. Prices are ticks,
quantities lots, fees quote units (``tick_size * lot_size`` of quote; see
:mod:`orrange.markets`).

Fee rounding rule: a fee of ``bps`` basis points on a fill of notional ``n`` quote units is
``ceil(n * bps / 10000)`` for ``bps >= 0`` (rounded up, in the venue's favour) and
``-floor(n * -bps / 10000)`` for a rebate (``bps < 0``, rounded toward zero, again in the
venue's favour). Both are exact integer arithmetic.
"""

from __future__ import annotations

import msgspec

from orrange.matching.enums import (
    CancelReason,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
    TriggerSource,
)

__all__ = [
    "BookDelta",
    "BookStatus",
    "Event",
    "OrderAccepted",
    "OrderAmended",
    "OrderCanceled",
    "OrderExpired",
    "OrderFilled",
    "OrderRejected",
    "OrderTriggered",
]


class _EventBase(msgspec.Struct, frozen=True, gc=False, tag_field="type"):
    symbol: str
    seq: int
    ts: int


class OrderAccepted(_EventBase, frozen=True, gc=False, tag="accepted"):
    """The order passed the book's checks. Stop/take-profit orders now wait for their trigger
    (``pending`` is true); others proceed to match and rest."""

    order_id: int
    user: str
    client_order_id: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int | None
    trigger_price: int | None
    quantity: int
    pending: bool


class OrderRejected(_EventBase, frozen=True, gc=False, tag="rejected"):
    """A command was refused; nothing changed. ``command`` names the command's type tag
    (``submit``, ``cancel``, ``amend`` ...); ``order_id`` is 0 when none was assigned."""

    order_id: int
    user: str
    client_order_id: str
    command: str
    reason: RejectReason
    message: str


class OrderFilled(_EventBase, frozen=True, gc=False, tag="fill"):
    """A trade between a resting maker and an incoming taker, at the maker's price.

    ``maker_leaves``/``taker_leaves`` are the quantities still open after this fill;
    ``payment_methods`` are the methods both sides accept (empty when neither restricts).
    """

    maker_order_id: int
    taker_order_id: int
    maker_user: str
    taker_user: str
    price: int
    quantity: int
    aggressor: Side
    maker_fee: int
    taker_fee: int
    maker_leaves: int
    taker_leaves: int
    payment_methods: tuple[str, ...]


class OrderCanceled(_EventBase, frozen=True, gc=False, tag="canceled"):
    """``canceled_qty`` lots left the order without trading; ``leaves`` is what stays open
    (0 when the order is gone; positive after a decrement)."""

    order_id: int
    user: str
    reason: CancelReason
    canceled_qty: int
    leaves: int


class OrderExpired(_EventBase, frozen=True, gc=False, tag="expired"):
    """A DAY order reached its ``expire_at``; ``expired_qty`` lots were open."""

    order_id: int
    user: str
    expired_qty: int


class OrderTriggered(_EventBase, frozen=True, gc=False, tag="triggered"):
    """A stop or take-profit order's trigger was reached by ``reference`` price
    ``observed_price``; it now enters the book as a market or limit order."""

    order_id: int
    user: str
    trigger_price: int
    source: TriggerSource
    observed_price: int


class OrderAmended(_EventBase, frozen=True, gc=False, tag="amended"):
    """The order now has limit ``price``, total ``quantity`` and ``leaves`` open lots;
    ``priority_kept`` tells whether it kept its place in the queue."""

    order_id: int
    user: str
    price: int | None
    quantity: int
    leaves: int
    priority_kept: bool


class BookDelta(_EventBase, frozen=True, gc=False, tag="delta"):
    """L2 change: the level ``price`` on ``side`` now holds ``size`` lots (0: level gone)."""

    side: Side
    price: int
    size: int


class BookStatus(_EventBase, frozen=True, gc=False, tag="status"):
    """Trading status change: ``halted`` true after a halt, false after a resume."""

    halted: bool


Event = (
    OrderAccepted
    | OrderRejected
    | OrderFilled
    | OrderCanceled
    | OrderExpired
    | OrderTriggered
    | OrderAmended
    | BookDelta
    | BookStatus
)
"""Any event; decode with ``msgspec.json.decode(data, type=Event)``."""
