"""Typed read queries over the persister's tables, for the API.

Every function takes ``db``, an ``asyncpg`` pool or connection (:data:`Db`). Prices are integer
ticks, quantities integer lots, fees and quote volumes integer quote units (``tick_size * lot_size``
of the quote asset), times integer ms since the Unix epoch (UTC); decimal conversion is the
caller's job (:class:`orrange.markets.MarketSpec`).

Order lists are newest first (``created_ts``, then symbol and order id, descending) with keyset
pagination: a :class:`Page` carries ``next_cursor``, an opaque string to pass back as
``cursor`` for the next page (None on the last page).

Errors: :class:`InvalidCursorError` and :class:`ValueError` (bad ``limit``) are the caller's
mistakes (HTTP 400); :class:`NotOwnerError` means the order exists but belongs to another user
(HTTP 404 or 403, as the API prefers not to leak existence); :class:`AmbiguousOrderError`
means an order id exists in several of the user's markets and the symbol must be given.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection
from typing import Any, Generic, TypeVar

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from orrange.matching.enums import RejectReason, Side
from orrange.matching.orders import OrderRecord, OrderStatus

__all__ = [
    "DAY_MS",
    "MAX_LIMIT",
    "AmbiguousOrderError",
    "ClientOrderStatus",
    "Db",
    "InvalidCursorError",
    "NotOwnerError",
    "Page",
    "RejectionRecord",
    "Ticker",
    "TradeRecord",
    "client_order_status",
    "get_order",
    "list_open_orders",
    "list_order_history",
    "order_fills",
    "order_record",
    "recent_trades",
    "ticker_24h",
]

T = TypeVar("T")

#: What the query functions accept: a pool, a connection, or a connection acquired from a pool.
Db = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy

#: Largest page / trade list a query returns.
MAX_LIMIT = 1000
#: The ticker's window (ms).
DAY_MS = 86_400_000


class InvalidCursorError(ValueError):
    """The ``cursor`` argument is not one this module produced."""


class NotOwnerError(PermissionError):
    """The order exists but belongs to another user."""


class AmbiguousOrderError(LookupError):
    """The order id exists in several markets of the user; pass ``symbol``."""


class TradeRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A fill (a row of ``fills``); ``seq`` is the book's event sequence number.

    ``aggressor`` is the taker's side; fees are quote units (negative: a rebate).
    """

    symbol: str
    seq: int
    ts: int
    price: int
    quantity: int
    aggressor: Side
    maker_order_id: int
    taker_order_id: int
    maker_user: str
    taker_user: str
    maker_fee: int
    taker_fee: int
    payment_methods: tuple[str, ...]


class RejectionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A refused command: by risk (``source == "risk"``, ``seq == 0``) or by the book."""

    id: str
    source: str
    symbol: str
    seq: int
    order_id: int
    user: str
    client_order_id: str
    command: str
    reason: RejectReason
    message: str
    ts: int


class ClientOrderStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What became of a ``(user, client_order_id)``: the order if the book accepted one, else
    the latest rejection. ``status`` is the order's status, or ``rejected``."""

    status: OrderStatus
    order: OrderRecord | None
    rejection: RejectionRecord | None


class Page(msgspec.Struct, Generic[T], frozen=True):
    """One page of a keyset-paginated list; ``next_cursor`` is None on the last page."""

    items: list[T]
    next_cursor: str | None


class Ticker(msgspec.Struct, frozen=True, kw_only=True):
    """24 h statistics of a market from its fills with ``from_ts <= ts <= to_ts``.

    ``open``/``high``/``low``/``last`` are ticks (None without trades); ``volume`` lots;
    ``quote_volume`` the sum of ``price * quantity`` (quote units); ``count`` fills.
    """

    symbol: str
    from_ts: int
    to_ts: int
    open: int | None
    high: int | None
    low: int | None
    last: int | None
    volume: int
    quote_volume: int
    count: int


_ORDER_SELECT = (
    'SELECT symbol, order_id, user_id AS "user", client_order_id, side, order_type, tif, price, '
    "trigger_price, quantity, leaves, filled, status, reason, created_ts, updated_ts, last_seq "
    "FROM orders"
)
_TRADE_SELECT = (
    "SELECT symbol, seq, ts, price, quantity, aggressor, maker_order_id, taker_order_id, "
    "maker_user, taker_user, maker_fee, taker_fee, payment_methods FROM fills"
)


def order_record(r: Any) -> OrderRecord:
    """The :class:`~orrange.matching.orders.OrderRecord` of a row of ``orders`` (columns named as
    its fields)."""
    return msgspec.convert(dict(r), OrderRecord)


def _trade(r: Any) -> TradeRecord:
    return msgspec.convert(dict(r), TradeRecord)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")


def _encode_cursor(o: OrderRecord) -> str:
    raw = f"{o.created_ts}.{o.order_id}.{o.symbol}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, oid, symbol = raw.split(".", 2)
        return int(ts), symbol, int(oid)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursorError(f"invalid cursor {cursor!r}") from exc


async def _order_page(
    db: Db,
    where: list[str],
    args: list[Any],
    limit: int,
    cursor: str | None,
) -> Page[OrderRecord]:
    _check_limit(limit)
    if cursor is not None:
        ts, symbol, oid = _decode_cursor(cursor)
        n = len(args)
        where.append(f"(created_ts, symbol, order_id) < (${n + 1}, ${n + 2}, ${n + 3})")
        args += [ts, symbol, oid]
    args.append(limit + 1)
    sql = (
        f"{_ORDER_SELECT} WHERE {' AND '.join(where)} "
        f"ORDER BY created_ts DESC, symbol DESC, order_id DESC LIMIT ${len(args)}"
    )
    rows = [order_record(r) for r in await db.fetch(sql, *args)]
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(rows, _encode_cursor(rows[-1]))
    return Page(rows, None)


async def get_order(
    db: Db, order_id: int, *, user: str, symbol: str | None = None
) -> OrderRecord | None:
    """The order ``order_id`` of ``user`` (in market ``symbol`` when given); None if unknown.

    Raises:
        NotOwnerError: it exists (in ``symbol``, or only in markets) of other users.
        AmbiguousOrderError: ``symbol`` is None and the user has this id in several markets.
    """
    if symbol is not None:
        row = await db.fetchrow(
            f"{_ORDER_SELECT} WHERE symbol = $1 AND order_id = $2", symbol, order_id
        )
        if row is None:
            return None
        order = order_record(row)
        if order.user != user:
            raise NotOwnerError(f"order {order_id} of {symbol} belongs to another user")
        return order
    found = [
        order_record(r) for r in await db.fetch(f"{_ORDER_SELECT} WHERE order_id = $1", order_id)
    ]
    mine = [o for o in found if o.user == user]
    if len(mine) > 1:
        raise AmbiguousOrderError(
            f"order id {order_id} exists in {sorted(o.symbol for o in mine)}: give the symbol"
        )
    if mine:
        return mine[0]
    if found:
        raise NotOwnerError(f"order {order_id} belongs to another user")
    return None


async def list_open_orders(
    db: Db,
    user: str,
    *,
    symbol: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page[OrderRecord]:
    """``user``'s open orders (``new``, ``partially_filled``, ``pending``), newest first.

    Args:
        symbol: only this market.
        limit: page size, 1 to :data:`MAX_LIMIT`.
        cursor: ``next_cursor`` of the previous page.

    Raises:
        ValueError: ``limit`` out of range. InvalidCursorError: a malformed ``cursor``.
    """
    where = ["user_id = $1", "status IN ('new', 'partially_filled', 'pending')"]
    args: list[Any] = [user]
    if symbol is not None:
        args.append(symbol)
        where.append(f"symbol = ${len(args)}")
    return await _order_page(db, where, args, limit, cursor)


async def list_order_history(
    db: Db,
    user: str,
    *,
    symbol: str | None = None,
    statuses: Collection[OrderStatus] | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page[OrderRecord]:
    """All of ``user``'s orders (open and closed), newest first.

    Args:
        symbol: only this market.
        statuses: only these statuses (None: all).
        limit: page size, 1 to :data:`MAX_LIMIT`.
        cursor: ``next_cursor`` of the previous page.

    Raises:
        ValueError: ``limit`` out of range or an unknown status. InvalidCursorError: a
            malformed ``cursor``.
    """
    where = ["user_id = $1"]
    args: list[Any] = [user]
    if symbol is not None:
        args.append(symbol)
        where.append(f"symbol = ${len(args)}")
    if statuses is not None:
        args.append([OrderStatus(s).value for s in statuses])
        where.append(f"status = ANY(${len(args)}::text[])")
    return await _order_page(db, where, args, limit, cursor)


async def order_fills(db: Db, symbol: str, order_id: int, *, user: str) -> list[TradeRecord]:
    """The fills of ``user``'s order (as maker or taker), oldest first; empty if unknown.

    Raises:
        NotOwnerError: the order belongs to another user.
    """
    if await get_order(db, order_id, user=user, symbol=symbol) is None:
        return []
    rows = await db.fetch(
        f"{_TRADE_SELECT} WHERE symbol = $1 AND (maker_order_id = $2 OR taker_order_id = $2) "
        "ORDER BY seq",
        symbol,
        order_id,
    )
    return [_trade(r) for r in rows]


async def recent_trades(
    db: Db, symbol: str, *, limit: int = 100, before_seq: int | None = None
) -> list[TradeRecord]:
    """The latest fills of ``symbol``, newest first.

    Args:
        limit: how many, 1 to :data:`MAX_LIMIT`.
        before_seq: only fills with a smaller sequence number (the next page: pass the last
            ``seq`` returned).

    Raises:
        ValueError: ``limit`` out of range.
    """
    _check_limit(limit)
    if before_seq is None:
        rows = await db.fetch(
            f"{_TRADE_SELECT} WHERE symbol = $1 ORDER BY seq DESC LIMIT $2", symbol, limit
        )
    else:
        rows = await db.fetch(
            f"{_TRADE_SELECT} WHERE symbol = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
            symbol,
            before_seq,
            limit,
        )
    return [_trade(r) for r in rows]


_WINDOW = "FROM fills WHERE symbol = $1 AND ts >= $2 AND ts <= $3"
_TICKER = f"""
SELECT
    (SELECT price {_WINDOW} ORDER BY ts, seq LIMIT 1) AS open,
    (SELECT price {_WINDOW} ORDER BY ts DESC, seq DESC LIMIT 1) AS last,
    agg.*
FROM (
    SELECT
        max(price) AS high,
        min(price) AS low,
        coalesce(sum(quantity), 0) AS volume,
        coalesce(sum(price::numeric * quantity), 0) AS quote_volume,
        count(*) AS count
    {_WINDOW}
) AS agg
"""


async def ticker_24h(db: Db, symbol: str, now_ms: int) -> Ticker:
    """Open/high/low/last, volume, quote volume and count of ``symbol``'s fills over the
    24 h up to ``now_ms`` (ms UTC, inclusive at both ends); open and last are the first and
    the latest fill by ``(ts, seq)``."""
    start = now_ms - DAY_MS
    r = await db.fetchrow(_TICKER, symbol, start, now_ms)
    assert r is not None  # an aggregate always returns one row
    return Ticker(
        symbol=symbol,
        from_ts=start,
        to_ts=now_ms,
        open=r["open"],
        high=r["high"],
        low=r["low"],
        last=r["last"],
        volume=int(r["volume"]),
        quote_volume=int(r["quote_volume"]),
        count=int(r["count"]),
    )


async def client_order_status(
    db: Db, user: str, client_order_id: str, *, symbol: str | None = None
) -> ClientOrderStatus | None:
    """What became of ``user``'s order with ``client_order_id``; None if nothing is stored yet.

    The accepted order (the latest one if the id was reused) wins over rejections (a repeated
    submit is rejected as a duplicate while the first one lives); otherwise the latest
    rejection of a ``submit`` with that id, by risk or by the book.
    """
    args: list[Any] = [user, client_order_id]
    where = "user_id = $1 AND client_order_id = $2"
    if symbol is not None:
        args.append(symbol)
        where += " AND symbol = $3"
    row = await db.fetchrow(
        f"{_ORDER_SELECT} WHERE {where} ORDER BY created_ts DESC, order_id DESC LIMIT 1", *args
    )
    if row is not None:
        order = order_record(row)
        return ClientOrderStatus(status=order.status, order=order, rejection=None)
    rej = await db.fetchrow(
        'SELECT id, source, symbol, seq, order_id, user_id AS "user", client_order_id, command, '
        f"reason, message, ts FROM rejections WHERE {where} AND command = 'submit' "
        "ORDER BY ts DESC, id DESC LIMIT 1",
        *args,
    )
    if rej is None:
        return None
    rejection = msgspec.convert(dict(rej), RejectionRecord)
    return ClientOrderStatus(status=OrderStatus.REJECTED, order=None, rejection=rejection)
