"""An order's current state derived from its book events (pure, no I/O).

Rules (prices ticks, quantities lots, times ms UTC):

* ``accepted``: a new row with ``leaves = quantity``, ``filled = 0``, status ``pending`` for a
  stop/take-profit order waiting for its trigger, else ``new``.
* ``fill``: for both the maker and the taker, ``filled += quantity`` and ``leaves`` = the
  event's ``maker_leaves`` / ``taker_leaves``; status ``filled`` when nothing is left, else
  ``partially_filled``.
* ``canceled``: ``leaves`` = the event's ``leaves``. With ``leaves == 0`` the order is gone:
  status ``canceled``, ``reason`` = the cancel reason (``quantity`` keeps the value it had, so
  ``quantity - filled`` lots were canceled). With ``leaves > 0`` (a self-trade decrement) the
  canceled lots leave the total too (``quantity -= canceled_qty``, as the book does) and the
  order stays open.
* ``expired``: ``leaves = 0``, status ``expired``.
* ``triggered``: a pending order enters the book: status ``new``.
* ``amended``: ``quantity``, ``leaves`` and (when given) ``price`` take the event's values.
* ``rejected``, ``delta``, ``status``: no order changes (rejections have their own table).

Every applied event sets ``updated_ts`` and ``last_seq`` to its own ``ts`` and ``seq``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from orrange.matching.events import (
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderTriggered,
)

__all__ = ["OPEN_STATUSES", "OrderRow", "OrderStatus", "apply_event", "order_ids"]


class OrderStatus(enum.StrEnum):
    """Status of an order in the store (the ``orders.status`` column)."""

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


@dataclass(slots=True)
class OrderRow:
    """One row of ``orders`` (field order = column order)."""

    symbol: str
    order_id: int
    user_id: str
    client_order_id: str
    side: str
    order_type: str
    tif: str
    price: int | None
    trigger_price: int | None
    quantity: int
    leaves: int
    filled: int
    status: str
    reason: str | None
    created_ts: int
    updated_ts: int
    last_seq: int

    def as_tuple(self) -> tuple[object, ...]:
        """The row's values in column order (for COPY)."""
        return (
            self.symbol,
            self.order_id,
            self.user_id,
            self.client_order_id,
            self.side,
            self.order_type,
            self.tif,
            self.price,
            self.trigger_price,
            self.quantity,
            self.leaves,
            self.filled,
            self.status,
            self.reason,
            self.created_ts,
            self.updated_ts,
            self.last_seq,
        )


def order_ids(e: Event) -> tuple[int, ...]:
    """The ids of the orders whose state ``e`` changes (maker first for a fill)."""
    t = type(e)
    if t is OrderFilled:
        return (e.maker_order_id, e.taker_order_id)  # type: ignore[union-attr]
    if t in (OrderAccepted, OrderCanceled, OrderExpired, OrderTriggered, OrderAmended):
        return (e.order_id,)  # type: ignore[union-attr]
    return ()


def _active(row: OrderRow) -> str:
    return OrderStatus.PARTIALLY_FILLED if row.filled else OrderStatus.NEW


def apply_event(row: OrderRow | None, e: Event, order_id: int) -> OrderRow | None:
    """Apply event ``e`` to order ``order_id`` (one of :func:`order_ids` of ``e``).

    Returns the updated row (``row`` itself, mutated), a new row for ``accepted``, or None
    when ``row`` is None and ``e`` does not create the order (an event of an unknown order).
    """
    t = type(e)
    if t is OrderAccepted:
        a: OrderAccepted = e  # type: ignore[assignment]
        return OrderRow(
            a.symbol,
            a.order_id,
            a.user,
            a.client_order_id,
            a.side.value,
            a.order_type.value,
            a.tif.value,
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
    if row is None:
        return None
    if t is OrderFilled:
        f: OrderFilled = e  # type: ignore[assignment]
        row.filled += f.quantity
        row.leaves = f.maker_leaves if order_id == f.maker_order_id else f.taker_leaves
        row.status = OrderStatus.PARTIALLY_FILLED if row.leaves else OrderStatus.FILLED
    elif t is OrderCanceled:
        c: OrderCanceled = e  # type: ignore[assignment]
        if c.leaves:
            row.quantity -= c.canceled_qty
            row.leaves = c.leaves
        else:
            row.leaves = 0
            row.status = OrderStatus.CANCELED
            row.reason = c.reason.value
    elif t is OrderExpired:
        row.leaves = 0
        row.status = OrderStatus.EXPIRED
        row.reason = "expired"
    elif t is OrderTriggered:
        row.status = _active(row)
    elif t is OrderAmended:
        m: OrderAmended = e  # type: ignore[assignment]
        if m.price is not None:
            row.price = m.price
        row.quantity = m.quantity
        row.leaves = m.leaves
    else:
        return row
    row.updated_ts = e.ts
    row.last_seq = e.seq
    return row
