"""An order's current state folded from its book events (pure, no I/O).

The one fold of the order lifecycle: the persister stores its result as the ``orders`` table,
the API answers a submit with it and reads it back from that table. Prices ticks, quantities
lots, times ms UTC.

Rules of :func:`apply`:

* ``accepted``: a new record with ``leaves = quantity``, ``filled = 0``, status ``pending`` for
  a stop/take-profit order waiting for its trigger, else ``new``.
* ``fill``: for both the maker and the taker, ``filled += quantity`` and ``leaves`` = the
  event's ``maker_leaves`` / ``taker_leaves``; status ``filled`` when nothing is left, else
  ``partially_filled``.
* ``canceled``: ``leaves`` = the event's ``leaves``. With ``leaves == 0`` the order is gone:
  status ``canceled``, ``reason`` = the cancel reason (``quantity`` keeps the value it had, so
  ``quantity - filled`` lots were canceled). With ``leaves > 0`` (a self-trade decrement) the
  canceled lots leave the total too (``quantity -= canceled_qty``, as the book does, so
  ``quantity == filled + leaves`` while the order is open) and status and reason stay.
* ``expired``: ``leaves = 0``, status ``expired``, ``reason`` ``expired``.
* ``triggered``: a pending order enters the book: status ``new`` (``partially_filled`` if it
  had fills).
* ``amended``: ``quantity``, ``leaves`` and (when given) ``price`` take the event's values.
* ``rejected``, ``delta``, ``status``: no order changes (rejections have their own table).

Every applied event sets ``updated_ts`` and ``last_seq`` to its own ``ts`` and ``seq``.
"""

from __future__ import annotations

import enum

import msgspec

from orrange.matching.enums import OrderType, Side, TimeInForce
from orrange.matching.events import (
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderTriggered,
)

__all__ = [
    "EXPIRED_REASON",
    "OPEN_STATUSES",
    "OrderRecord",
    "OrderStatus",
    "apply",
    "new_order",
    "order_ids",
]


class OrderStatus(enum.StrEnum):
    """Status of an order (the ``orders.status`` column, the API's ``status``)."""

    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"
    PENDING = "pending"


#: Statuses of orders still live in the book (resting or waiting for a trigger).
OPEN_STATUSES: frozenset[OrderStatus] = frozenset(
    {OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING}
)

#: The ``reason`` of an expired order.
EXPIRED_REASON = "expired"


class OrderRecord(msgspec.Struct, gc=False):
    """An order's current state (a row of ``orders``; field order = column order).

    Attributes:
        symbol, order_id: the order's key (ids are unique per symbol).
        user, client_order_id: owner and the client's own id.
        side, order_type, tif: as submitted.
        price: limit price (ticks); None for market and stop-market orders.
        trigger_price: trigger (ticks) of stop / take-profit orders, else None.
        quantity: total lots (lowered by self-trade decrements and amends).
        leaves: lots still open (0 once terminal).
        filled: lots traded.
        status: see :class:`OrderStatus`.
        reason: why a canceled/expired order ended (a cancel reason or ``expired``), else None.
        created_ts, updated_ts: ms UTC of the acceptance and of the last change.
        last_seq: the book sequence number of the last event applied.
    """

    symbol: str
    order_id: int
    user: str
    client_order_id: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int | None
    trigger_price: int | None
    quantity: int
    leaves: int
    filled: int
    status: OrderStatus
    reason: str | None
    created_ts: int
    updated_ts: int
    last_seq: int


def order_ids(e: Event) -> tuple[int, ...]:
    """The ids of the orders whose state ``e`` changes (maker first for a fill)."""
    t = type(e)
    if t is OrderFilled:
        return (e.maker_order_id, e.taker_order_id)  # type: ignore[union-attr]
    if t in (OrderAccepted, OrderCanceled, OrderExpired, OrderTriggered, OrderAmended):
        return (e.order_id,)  # type: ignore[union-attr]
    return ()


def new_order(a: OrderAccepted) -> OrderRecord:
    """The record of a just accepted order."""
    return OrderRecord(
        a.symbol,
        a.order_id,
        a.user,
        a.client_order_id,
        a.side,
        a.order_type,
        a.tif,
        a.price,
        a.trigger_price,
        a.quantity,
        a.quantity,
        0,
        OrderStatus.PENDING if a.pending else OrderStatus.NEW,
        None,
        a.ts,
        a.ts,
        a.seq,
    )


def apply(rec: OrderRecord | None, e: Event) -> OrderRecord | None:
    """Apply event ``e`` to the order ``rec`` (``e`` is one of its events, see
    :func:`order_ids`).

    Returns ``rec`` itself, mutated; a new record for ``accepted``; or None when ``rec`` is
    None and ``e`` does not create the order (an event of an unknown order).
    """
    t = type(e)
    if t is OrderAccepted:
        return new_order(e)  # type: ignore[arg-type]
    if rec is None:
        return None
    if t is OrderFilled:
        f: OrderFilled = e  # type: ignore[assignment]
        rec.filled += f.quantity
        rec.leaves = f.maker_leaves if rec.order_id == f.maker_order_id else f.taker_leaves
        rec.status = OrderStatus.PARTIALLY_FILLED if rec.leaves else OrderStatus.FILLED
    elif t is OrderCanceled:
        c: OrderCanceled = e  # type: ignore[assignment]
        if c.leaves:
            rec.quantity -= c.canceled_qty
            rec.leaves = c.leaves
        else:
            rec.leaves = 0
            rec.status = OrderStatus.CANCELED
            rec.reason = c.reason.value
    elif t is OrderExpired:
        rec.leaves = 0
        rec.status = OrderStatus.EXPIRED
        rec.reason = EXPIRED_REASON
    elif t is OrderTriggered:
        rec.status = OrderStatus.PARTIALLY_FILLED if rec.filled else OrderStatus.NEW
    elif t is OrderAmended:
        m: OrderAmended = e  # type: ignore[assignment]
        if m.price is not None:
            rec.price = m.price
        rec.quantity = m.quantity
        rec.leaves = m.leaves
    else:
        return rec
    rec.updated_ts = e.ts
    rec.last_seq = e.seq
    return rec
