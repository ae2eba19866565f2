"""Request and response bodies of the REST API and the WebSocket (decimal strings at the edge).

Prices and quantities are decimal strings in the market's grid (``"65000.01"``, ``"0.00150"``);
fees are decimal strings of the quote asset; times are integer milliseconds since the Unix epoch
(UTC); engine order ids are integers. :func:`submit_command` turns an :class:`OrderIn` into the
engine's :class:`~orrange.matching.SubmitOrder` (ticks and lots) through the
:class:`~orrange.markets.MarketSpec`, raising :class:`~orrange.api.errors.ApiError` naming the
field and the reason for anything the market refuses.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

from orrange.api.errors import ApiError
from orrange.markets import InvalidValue, MarketSpec
from orrange.matching import (
    AmendOrder,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderTriggered,
    OrderType,
    SelfTradePrevention,
    Side,
    SubmitOrder,
    TimeInForce,
    TriggerSource,
)
from orrange.matching.orders import OrderRecord
from orrange.store.queries import Ticker, TradeRecord

__all__ = [
    "AmendIn",
    "AmendOut",
    "BookOut",
    "CancelAllOut",
    "CancelOut",
    "FillOut",
    "OrderIn",
    "OrderOut",
    "OrderPage",
    "OrderStatus",
    "TickerOut",
    "TradeOut",
    "amend_command",
    "book_levels",
    "check_client_order_id",
    "fee_string",
    "fill_out",
    "order_event_json",
    "order_out",
    "reject_field",
    "reject_status",
    "submit_command",
    "ticker_out",
]

OrderStatus = Literal[
    "new", "partially_filled", "filled", "canceled", "expired", "rejected", "pending"
]

_CLIENT_ORDER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_PAYMENT_METHODS = 16


class OrderIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/orders``: a new order, prices and quantities as decimal strings.

    Attributes:
        symbol: market, e.g. ``BTC-USDT``.
        side: ``buy`` or ``sell``.
        type: ``limit``, ``market``, ``stop_market``, ``stop_limit``, ``take_profit_market``
            or ``take_profit_limit``.
        quantity: base quantity (multiple of the lot size, within min/max quantity).
        price: a multiple of the tick size, > 0. For ``limit``, ``stop_limit`` and
            ``take_profit_limit``: the limit price (required). For ``market``, ``stop_market``
            and ``take_profit_market``: the optional protection price, the worst price the
            order may trade at (a buy at or below it, a sell at or above); the book stops at the
            tighter of it and the ``max_slippage_bps`` bound and cancels the rest.
        trigger_price: stop/take-profit trigger (multiple of the tick size).
        trigger_source: ``last`` (last trade) or ``index``.
        tif: ``gtc``, ``ioc``, ``fok`` or ``day``.
        expire_at: ms UTC; required with ``day``.
        post_only: refuse instead of trading on arrival.
        stp: self-trade prevention mode.
        client_order_id: your id (``[A-Za-z0-9_-]{1,64}``), unique per user; generated when
            absent. Resubmitting the same id is answered as a duplicate, never executed twice.
        payment_methods: P2P payment methods accepted (empty: any).
        min_reputation: lowest counterparty reputation accepted.
        max_slippage_bps: market-order protection (0: the market's default).
    """

    symbol: str
    side: Side
    quantity: str
    type: OrderType = OrderType.LIMIT
    price: str | None = None
    trigger_price: str | None = None
    trigger_source: TriggerSource = TriggerSource.LAST
    tif: TimeInForce = TimeInForce.GTC
    expire_at: int | None = None
    post_only: bool = False
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_NEWEST
    client_order_id: str | None = None
    payment_methods: list[str] = msgspec.field(default_factory=list)
    min_reputation: int = 0
    max_slippage_bps: int = 0


class AmendIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PATCH /api/v1/orders/{symbol}/{order_id}``: a new total quantity and/or limit price."""

    quantity: str | None = None
    price: str | None = None


class FillOut(msgspec.Struct, frozen=True, kw_only=True):
    """One fill of an order, from the order owner's point of view."""

    seq: int
    ts: int
    price: str
    quantity: str
    fee: str
    liquidity: Literal["maker", "taker"]


class OrderOut(msgspec.Struct, frozen=True, kw_only=True):
    """An order as the API reports it.

    ``status`` is ``new``, ``partially_filled``, ``filled``, ``canceled``, ``expired``,
    ``rejected`` or ``pending`` (a stop waiting for its trigger); ``reason`` says why it was
    rejected or canceled.
    """

    order_id: int
    symbol: str
    client_order_id: str
    side: Side
    type: OrderType
    tif: TimeInForce
    price: str | None
    trigger_price: str | None
    quantity: str
    filled_quantity: str
    leaves_quantity: str
    status: OrderStatus
    created_at: int
    updated_at: int
    reason: str | None = None
    fills: list[FillOut] = msgspec.field(default_factory=list)


class OrderPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of orders, newest first; pass ``next_cursor`` as ``cursor`` for the next one
    (``null`` on the last page)."""

    orders: list[OrderOut]
    next_cursor: str | None


class AmendOut(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of an amend: the order's limit price, total quantity and open quantity;
    ``priority_kept`` tells whether it kept its place in the queue."""

    order_id: int
    symbol: str
    price: str | None
    quantity: str
    leaves_quantity: str
    priority_kept: bool


class CancelAllOut(msgspec.Struct, frozen=True, kw_only=True):
    """A cancel-all command stored for the engine (``status`` is ``submitted``)."""

    symbol: str
    request_id: str
    status: Literal["submitted"]


class CancelOut(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of a cancel: the quantity that left the book and what stays open."""

    order_id: int
    symbol: str
    status: OrderStatus
    canceled_quantity: str
    leaves_quantity: str


class BookOut(msgspec.Struct, frozen=True, kw_only=True):
    """L2 book at event sequence ``seq``: ``[price, size]`` per level, best first."""

    symbol: str
    seq: int
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


class TradeOut(msgspec.Struct, frozen=True, kw_only=True):
    """A public trade: ``side`` is the aggressor's (taker's) side."""

    seq: int
    ts: int
    price: str
    quantity: str
    side: Side


class TickerOut(msgspec.Struct, frozen=True, kw_only=True):
    """24 h statistics of a market (``null`` prices when nothing traded)."""

    symbol: str
    open: str | None
    high: str | None
    low: str | None
    last: str | None
    volume: str
    quote_volume: str
    trades: int
    from_ts: int
    to_ts: int


# ------------------------------------------------------------------------------- conversions


def check_client_order_id(value: str) -> str:
    """Return ``value`` if it is a valid client order id.

    Raises:
        ApiError: 400 ``client_order_id``/``invalid_format``.
    """
    if not _CLIENT_ORDER_ID.match(value):
        raise ApiError(
            400,
            "client_order_id",
            "invalid_format",
            "client_order_id must be 1-64 characters of [A-Za-z0-9_-]",
        )
    return value


def _convert(fn: Any, *args: Any) -> int:
    try:
        result: int = fn(*args)
    except InvalidValue as exc:
        raise ApiError.from_invalid_value(exc) from exc
    return result


def submit_command(
    spec: MarketSpec, body: OrderIn, user: str, client_order_id: str, ts: int
) -> SubmitOrder:
    """The engine command for ``body`` (ticks and lots).

    Raises:
        ApiError: 400 naming the field: off the tick/lot grid, not positive, outside the
            quantity limits, too many payment methods, negative reputation or slippage.
    """
    qty = _convert(spec.qty_to_lots, body.quantity, "quantity")
    price = None if body.price is None else _convert(spec.price_to_ticks, body.price, "price")
    trigger = (
        None
        if body.trigger_price is None
        else _convert(spec.price_to_ticks, body.trigger_price, "trigger_price")
    )
    if len(body.payment_methods) > _MAX_PAYMENT_METHODS or any(
        not m or len(m) > 64 for m in body.payment_methods
    ):
        raise ApiError(
            400,
            "payment_methods",
            "invalid",
            f"at most {_MAX_PAYMENT_METHODS} payment methods of 1-64 characters",
        )
    if body.min_reputation < 0:
        raise ApiError(400, "min_reputation", "negative", "min_reputation must be >= 0")
    if body.max_slippage_bps < 0:
        raise ApiError(400, "max_slippage_bps", "negative", "max_slippage_bps must be >= 0")
    return SubmitOrder(
        ts=ts,
        user=user,
        side=body.side,
        quantity=qty,
        order_type=body.type,
        price=price,
        trigger_price=trigger,
        trigger_source=body.trigger_source,
        tif=body.tif,
        expire_at=body.expire_at,
        post_only=body.post_only,
        stp=body.stp,
        client_order_id=client_order_id,
        payment_methods=tuple(body.payment_methods),
        min_reputation=body.min_reputation,
        max_slippage_bps=body.max_slippage_bps,
    )


def amend_command(spec: MarketSpec, body: AmendIn, user: str, order_id: int, ts: int) -> AmendOrder:
    """The engine command for ``body``.

    Raises:
        ApiError: 400 when neither field is given or a value is off the market's grid.
    """
    if body.quantity is None and body.price is None:
        raise ApiError(400, "body", "missing", "give quantity and/or price")
    qty = None if body.quantity is None else _convert(spec.qty_to_lots, body.quantity, "quantity")
    price = None if body.price is None else _convert(spec.price_to_ticks, body.price, "price")
    return AmendOrder(ts=ts, user=user, order_id=order_id, quantity=qty, price=price)


def book_levels(spec: MarketSpec, levels: Any) -> list[tuple[str, str]]:
    """``[(ticks, lots), ...]`` as ``[(price, size), ...]`` decimal strings."""
    return [(spec.ticks_to_price(p), spec.lots_to_qty(q)) for p, q in levels]


_REJECT_FIELDS = {
    "invalid_quantity": "quantity",
    "below_min_qty": "quantity",
    "above_max_qty": "quantity",
    "below_min_notional": "quantity",
    "invalid_amend": "quantity",
    "invalid_price": "price",
    "missing_price": "price",
    "unexpected_price": "price",
    "price_out_of_band": "price",
    "post_only_would_cross": "price",
    "missing_trigger_price": "trigger_price",
    "unexpected_trigger_price": "trigger_price",
    "would_trigger_immediately": "trigger_price",
    "missing_expiry": "expire_at",
    "unexpected_expiry": "expire_at",
    "expiry_in_past": "expire_at",
    "invalid_slippage": "max_slippage_bps",
    "post_only_not_limit": "post_only",
    "duplicate_order_id": "order_id",
    "unknown_order": "order_id",
    "not_owner": "order_id",
    "duplicate_client_order_id": "client_order_id",
    "too_many_open_orders": "user",
    "rate_limited": "user",
    "book_halted": "symbol",
    "unknown_market": "symbol",
    "insufficient_funds": "quantity",
    "no_reference_price": "price",
}

_REJECT_STATUS = {
    "not_owner": 403,
    "unknown_order": 404,
    "duplicate_client_order_id": 409,
    "rate_limited": 429,
    "too_many_open_orders": 429,
    "book_halted": 503,
}


def reject_field(reason: str) -> str:
    """The request field an engine :class:`~orrange.matching.RejectReason` is about."""
    return _REJECT_FIELDS.get(reason, "order")


def reject_status(reason: str) -> int:
    """The HTTP status of an engine rejection (422 unless more specific)."""
    return _REJECT_STATUS.get(reason, 422)


def order_event_json(spec: MarketSpec, ev: Any, user: str) -> dict[str, Any] | None:
    """A private order event for ``user`` as JSON-ready values (decimal strings), or None when
    ``ev`` is not about one of ``user``'s orders."""
    p = spec.ticks_to_price
    q = spec.lots_to_qty
    base: dict[str, Any] = {"symbol": ev.symbol, "seq": ev.seq, "ts": ev.ts}
    if isinstance(ev, OrderFilled):
        if ev.maker_user == user:
            mine, oid, fee, leaves = "maker", ev.maker_order_id, ev.maker_fee, ev.maker_leaves
        elif ev.taker_user == user:
            mine, oid, fee, leaves = "taker", ev.taker_order_id, ev.taker_fee, ev.taker_leaves
        else:
            return None
        return base | {
            "event": "fill",
            "order_id": oid,
            "price": p(ev.price),
            "quantity": q(ev.quantity),
            "fee": fee_string(spec, fee),
            "liquidity": mine,
            "leaves_quantity": q(leaves),
        }
    if getattr(ev, "user", None) != user:
        return None
    if isinstance(ev, OrderAccepted):
        return base | {
            "event": "accepted",
            "order_id": ev.order_id,
            "client_order_id": ev.client_order_id,
            "side": ev.side,
            "order_type": ev.order_type,
            "tif": ev.tif,
            "price": None if ev.price is None else p(ev.price),
            "trigger_price": None if ev.trigger_price is None else p(ev.trigger_price),
            "quantity": q(ev.quantity),
            "pending": ev.pending,
        }
    if isinstance(ev, OrderRejected):
        return base | {
            "event": "rejected",
            "order_id": ev.order_id,
            "client_order_id": ev.client_order_id,
            "command": ev.command,
            "reason": str(ev.reason),
            "message": ev.message,
        }
    if isinstance(ev, OrderCanceled):
        return base | {
            "event": "canceled",
            "order_id": ev.order_id,
            "reason": str(ev.reason),
            "canceled_quantity": q(ev.canceled_qty),
            "leaves_quantity": q(ev.leaves),
        }
    if isinstance(ev, OrderExpired):
        return base | {
            "event": "expired",
            "order_id": ev.order_id,
            "expired_quantity": q(ev.expired_qty),
        }
    if isinstance(ev, OrderTriggered):
        return base | {
            "event": "triggered",
            "order_id": ev.order_id,
            "trigger_price": p(ev.trigger_price),
            "observed_price": p(ev.observed_price),
        }
    if isinstance(ev, OrderAmended):
        return base | {
            "event": "amended",
            "order_id": ev.order_id,
            "price": None if ev.price is None else p(ev.price),
            "quantity": q(ev.quantity),
            "leaves_quantity": q(ev.leaves),
            "priority_kept": ev.priority_kept,
        }
    return None


def fill_out(spec: MarketSpec, f: OrderFilled | TradeRecord, order_id: int) -> FillOut:
    """Fill ``f`` (the event or its stored row) from the side of order ``order_id``."""
    maker = f.maker_order_id == order_id
    return FillOut(
        seq=f.seq,
        ts=f.ts,
        price=spec.ticks_to_price(f.price),
        quantity=spec.lots_to_qty(f.quantity),
        fee=fee_string(spec, f.maker_fee if maker else f.taker_fee),
        liquidity="maker" if maker else "taker",
    )


def order_out(spec: MarketSpec, o: OrderRecord, fills: list[FillOut] | None = None) -> OrderOut:
    """The public representation of order ``o`` (decimal strings) with its ``fills``."""
    p, q = spec.ticks_to_price, spec.lots_to_qty
    return OrderOut(
        order_id=o.order_id,
        symbol=o.symbol,
        client_order_id=o.client_order_id,
        side=o.side,
        type=o.order_type,
        tif=o.tif,
        price=None if o.price is None else p(o.price),
        trigger_price=None if o.trigger_price is None else p(o.trigger_price),
        quantity=q(o.quantity),
        filled_quantity=q(o.filled),
        leaves_quantity=q(o.leaves),
        status=o.status.value,
        created_at=o.created_ts,
        updated_at=o.updated_ts,
        reason=o.reason,
        fills=fills or [],
    )


def ticker_out(spec: MarketSpec, t: Ticker) -> TickerOut:
    """A store :class:`~orrange.store.queries.Ticker` as decimal strings."""

    def p(v: int | None) -> str | None:
        return None if v is None else spec.ticks_to_price(v)

    return TickerOut(
        symbol=t.symbol,
        open=p(t.open),
        high=p(t.high),
        low=p(t.low),
        last=p(t.last),
        volume=spec.lots_to_qty(t.volume),
        quote_volume=spec.units_to_quote(t.quote_volume),
        trades=t.count,
        from_ts=t.from_ts,
        to_ts=t.to_ts,
    )


def fee_string(spec: MarketSpec, units: int) -> str:
    """Signed quote units as a decimal string (rebates are negative)."""
    if units >= 0:
        return spec.units_to_quote(units)
    return "-" + spec.units_to_quote(-units)
