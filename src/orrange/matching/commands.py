"""Commands: the only input of an :class:`~orrange.matching.book.OrderBook`.

Every command carries ``ts``, the time it takes effect in **milliseconds since the Unix epoch
(UTC)**; the book never reads a clock. Prices are integer **ticks** and quantities integer
**lots** of the book's :class:`~orrange.markets.MarketSpec`. Commands are immutable msgspec
structs tagged by ``type`` so a stream of them decodes as :data:`Command`. Encoded, they omit
fields that hold their default (a plain limit order is ~90 bytes of JSON instead of ~330);
decoding fills them in again.
"""

from __future__ import annotations

import msgspec

from orrange.matching.enums import OrderType, SelfTradePrevention, Side, TimeInForce, TriggerSource

__all__ = [
    "AdvanceTime",
    "AmendOrder",
    "CancelAll",
    "CancelOrder",
    "Command",
    "Halt",
    "Resume",
    "SetReferencePrice",
    "SubmitOrder",
]


class SubmitOrder(
    msgspec.Struct, frozen=True, gc=False, tag="submit", kw_only=True, omit_defaults=True
):
    """A new order.

    Attributes:
        ts: ms UTC.
        user: owner's user id.
        side: buy or sell.
        quantity: lots (> 0).
        order_type: limit, market, stop or take-profit (see :class:`OrderType`).
        price: ticks, > 0 (else rejected ``invalid_price``). For limit, stop-limit and
            take-profit-limit: the limit price (required). For market, stop-market and
            take-profit-market: the optional protection price, the worst price the order may
            trade at (a buy at or below it, a sell at or above); the book applies the tighter of
            it and the ``max_slippage_bps`` bound and cancels the rest with
            ``market_protection``.
        trigger_price: ticks; required for stop and take-profit orders, forbidden otherwise.
        trigger_source: which price triggers a stop/take-profit (last trade or index).
        tif: time in force. Market orders behave as IOC (or FOK when FOK is given).
        expire_at: ms UTC; required for DAY and forbidden otherwise.
        post_only: a limit order that would trade on arrival is rejected instead.
        stp: self-trade prevention mode applied when this order is the taker.
        client_order_id: the client's own id, echoed in events (idempotency is checked by risk).
        order_id: engine order id; 0 lets the book assign the next one.
        payment_methods: P2P payment methods this order accepts (empty: any).
        min_reputation: the lowest counterparty reputation this order accepts.
        reputation: the submitting user's reputation score, stamped by risk.
        max_slippage_bps: market-order protection from the best price at arrival; 0 means the
            market's default.
    """

    ts: int
    user: str
    side: Side
    quantity: int
    order_type: OrderType = OrderType.LIMIT
    price: int | None = None
    trigger_price: int | None = None
    trigger_source: TriggerSource = TriggerSource.LAST
    tif: TimeInForce = TimeInForce.GTC
    expire_at: int | None = None
    post_only: bool = False
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_NEWEST
    client_order_id: str = ""
    order_id: int = 0
    payment_methods: tuple[str, ...] = ()
    min_reputation: int = 0
    reputation: int = 0
    max_slippage_bps: int = 0


class CancelOrder(
    msgspec.Struct, frozen=True, gc=False, tag="cancel", kw_only=True, omit_defaults=True
):
    """Cancel a resting or pending order of ``user``."""

    ts: int
    user: str
    order_id: int


class AmendOrder(
    msgspec.Struct, frozen=True, gc=False, tag="amend", kw_only=True, omit_defaults=True
):
    """Change an order's total quantity (lots, including what has filled) and/or limit price.

    A quantity decrease at an unchanged price keeps time priority; a price change or a quantity
    increase loses it (the order goes to the back of its new level and may trade on arrival,
    as a cancel-replace).
    """

    ts: int
    user: str
    order_id: int
    quantity: int | None = None
    price: int | None = None


class CancelAll(
    msgspec.Struct, frozen=True, gc=False, tag="cancel_all", kw_only=True, omit_defaults=True
):
    """Cancel every resting and pending order of ``user`` in this book."""

    ts: int
    user: str


class SetReferencePrice(
    msgspec.Struct, frozen=True, gc=False, tag="reference_price", kw_only=True, omit_defaults=True
):
    """The index (reference) price in ticks; triggers index-driven stop orders."""

    ts: int
    price: int


class AdvanceTime(
    msgspec.Struct, frozen=True, gc=False, tag="clock", kw_only=True, omit_defaults=True
):
    """Advance the book's time to ``ts`` (expires DAY orders whose ``expire_at`` <= ts).

    Every other command advances time too; this one exists for quiet periods.
    """

    ts: int


class Halt(msgspec.Struct, frozen=True, gc=False, tag="halt", kw_only=True, omit_defaults=True):
    """Stop accepting new orders (cancels still work)."""

    ts: int


class Resume(msgspec.Struct, frozen=True, gc=False, tag="resume", kw_only=True, omit_defaults=True):
    """Accept new orders again after :class:`Halt`."""

    ts: int


Command = (
    SubmitOrder
    | CancelOrder
    | AmendOrder
    | CancelAll
    | SetReferencePrice
    | AdvanceTime
    | Halt
    | Resume
)
"""Any command; decode a stream with ``msgspec.json.decode(data, type=Command)``."""
