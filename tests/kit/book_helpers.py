"""Shared helpers for the matching-core tests: small markets, command shorthands, event filters."""

from __future__ import annotations

from typing import Any

from orrange.markets import MarketSpec
from orrange.matching import (
    BookDelta,
    Event,
    OrderBook,
    OrderType,
    SelfTradePrevention,
    Side,
    SubmitOrder,
)

BUY = Side.BUY
SELL = Side.SELL


def make_spec(**kw: Any) -> MarketSpec:
    """A 1-tick, 1-lot market (price ticks == price, lots == quantity) without fees."""
    base: dict[str, Any] = {
        "symbol": "T-USD",
        "base": "T",
        "quote": "USD",
        "tick_size": "1",
        "lot_size": "1",
        "min_qty": "1",
        "max_qty": "1000000",
    }
    base.update(kw)
    return MarketSpec(**base)


def make_book(**kw: Any) -> OrderBook:
    return OrderBook(make_spec(**kw))


def lim(
    side: Side, qty: int, price: int, *, user: str = "u", ts: int = 1, **kw: Any
) -> SubmitOrder:
    kw.setdefault("stp", SelfTradePrevention.NONE)
    return SubmitOrder(ts=ts, user=user, side=side, quantity=qty, price=price, **kw)


def mkt(side: Side, qty: int, *, user: str = "t", ts: int = 1, **kw: Any) -> SubmitOrder:
    kw.setdefault("stp", SelfTradePrevention.NONE)
    return SubmitOrder(ts=ts, user=user, side=side, quantity=qty, order_type=OrderType.MARKET, **kw)


def of(events: list[Event], cls: type) -> list[Any]:
    return [e for e in events if isinstance(e, cls)]


def one(events: list[Event], cls: type) -> Any:
    found = of(events, cls)
    assert len(found) == 1, f"expected one {cls.__name__}, got {events}"
    return found[0]


def types(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def fills(events: list[Event]) -> list[tuple[int, int, int, int]]:
    """(maker id, taker id, price, qty) of every fill."""
    from orrange.matching import OrderFilled

    return [
        (e.maker_order_id, e.taker_order_id, e.price, e.quantity) for e in of(events, OrderFilled)
    ]


def accepted_id(events: list[Event]) -> int:
    from orrange.matching import OrderAccepted

    return int(one(events, OrderAccepted).order_id)


def apply_deltas(deltas: list[BookDelta], book: dict[Side, dict[int, int]]) -> None:
    for d in deltas:
        if d.size:
            book[d.side][d.price] = d.size
        else:
            book[d.side].pop(d.price, None)


def l3_ids(book: OrderBook, side: Side, price: int) -> list[int]:
    return [o.order_id for o in book.l3(side, price)]
