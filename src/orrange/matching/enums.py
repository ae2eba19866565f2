"""Enumerations of the matching core. Values are stable lowercase strings (the wire format)."""

from __future__ import annotations

import enum

__all__ = [
    "CancelReason",
    "OrderType",
    "RejectReason",
    "SelfTradePrevention",
    "Side",
    "TimeInForce",
    "TriggerSource",
]


class Side(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(enum.StrEnum):
    """Order types. Stop and take-profit orders wait for their trigger price.

    * ``stop_market`` / ``stop_limit``: a buy triggers when the reference price rises to or
      above the trigger price, a sell when it falls to or below it.
    * ``take_profit_market`` / ``take_profit_limit``: the opposite direction (a buy triggers on
      a fall to or below the trigger, a sell on a rise to or above it).
    """

    LIMIT = "limit"
    MARKET = "market"
    STOP_MARKET = "stop_market"
    STOP_LIMIT = "stop_limit"
    TAKE_PROFIT_MARKET = "take_profit_market"
    TAKE_PROFIT_LIMIT = "take_profit_limit"


class TimeInForce(enum.StrEnum):
    """GTC rests until canceled; IOC fills what it can now and cancels the rest; FOK fills
    completely now or not at all (decided before any fill); DAY rests until ``expire_at``."""

    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    DAY = "day"


class TriggerSource(enum.StrEnum):
    """The price a stop or take-profit order watches: this book's last trade or the index
    (reference) price delivered by :class:`~orrange.matching.commands.SetReferencePrice`."""

    LAST = "last"
    INDEX = "index"


class SelfTradePrevention(enum.StrEnum):
    """What happens when an incoming (taker) order would trade with a resting order of the
    same user; the taker's mode decides.

    * ``none``: the trade happens.
    * ``cancel_newest``: the taker's remaining quantity is canceled.
    * ``cancel_oldest``: the resting order is canceled and matching continues.
    * ``cancel_both``: both are canceled.
    * ``decrement_and_cancel``: both are reduced by the smaller quantity without a trade; the
      smaller (or both when equal) ends canceled.
    """

    NONE = "none"
    CANCEL_NEWEST = "cancel_newest"
    CANCEL_OLDEST = "cancel_oldest"
    CANCEL_BOTH = "cancel_both"
    DECREMENT_AND_CANCEL = "decrement_and_cancel"


class RejectReason(enum.StrEnum):
    """Machine-readable reason codes of :class:`~orrange.matching.events.OrderRejected`."""

    INVALID_QUANTITY = "invalid_quantity"
    BELOW_MIN_QTY = "below_min_qty"
    ABOVE_MAX_QTY = "above_max_qty"
    INVALID_PRICE = "invalid_price"
    MISSING_PRICE = "missing_price"
    UNEXPECTED_PRICE = "unexpected_price"
    MISSING_TRIGGER_PRICE = "missing_trigger_price"
    UNEXPECTED_TRIGGER_PRICE = "unexpected_trigger_price"
    BELOW_MIN_NOTIONAL = "below_min_notional"
    MISSING_EXPIRY = "missing_expiry"
    UNEXPECTED_EXPIRY = "unexpected_expiry"
    EXPIRY_IN_PAST = "expiry_in_past"
    INVALID_SLIPPAGE = "invalid_slippage"
    POST_ONLY_WOULD_CROSS = "post_only_would_cross"
    POST_ONLY_NOT_LIMIT = "post_only_not_limit"
    WOULD_TRIGGER_IMMEDIATELY = "would_trigger_immediately"
    DUPLICATE_ORDER_ID = "duplicate_order_id"
    UNKNOWN_ORDER = "unknown_order"
    NOT_OWNER = "not_owner"
    INVALID_AMEND = "invalid_amend"
    BOOK_HALTED = "book_halted"
    PRICE_OUT_OF_BAND = "price_out_of_band"
    DUPLICATE_CLIENT_ORDER_ID = "duplicate_client_order_id"
    TOO_MANY_OPEN_ORDERS = "too_many_open_orders"
    RATE_LIMITED = "rate_limited"
    UNKNOWN_MARKET = "unknown_market"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    NO_REFERENCE_PRICE = "no_reference_price"


class CancelReason(enum.StrEnum):
    """Why an order (or part of it) left the book without trading."""

    USER = "user"
    CANCEL_ALL = "cancel_all"
    IOC_REMAINDER = "ioc_remainder"
    FOK_UNFILLABLE = "fok_unfillable"
    MARKET_PROTECTION = "market_protection"
    NO_LIQUIDITY = "no_liquidity"
    SELF_TRADE_PREVENTION = "self_trade_prevention"
    PARTIAL_CANCEL = "partial_cancel"
    INSUFFICIENT_FUNDS = "insufficient_funds"
