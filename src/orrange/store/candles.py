"""Candles in PostgreSQL (table ``candles``, migration ``0003_candles.sql``).

Units are those of :mod:`orrange.marketdata.candles`: prices integer ticks, volumes integer
lots, quote volumes integer quote units, times ms since the Unix epoch (UTC). A stored row is
a :class:`~orrange.marketdata.candles.CandleUpdated` while ``final`` is false (its window is
open) and a :class:`~orrange.marketdata.candles.CandleClosed` once final.

Idempotence: :func:`upsert_candles` never changes a final row, and replaces an open row only
by a candle that is final or has at least as many trades and an equal or later last trade, so
writing the same candles again, or an older update after a newer one, changes nothing.

Every function takes ``db``, an ``asyncpg`` pool or connection (:data:`orrange.store.queries.Db`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from orrange.marketdata.candles import Candle, CandleClosed, CandleUpdated
from orrange.store.queries import Db

__all__ = [
    "fill_marks",
    "latest_candles",
    "query_candles",
    "set_fill_marks",
    "upsert_candles",
]

_COLUMNS = (
    "symbol, interval, open_time, close_time, open, high, low, close, volume, quote_volume, "
    "trades, taker_buy_volume, taker_buy_quote_volume, vwap, first_trade_time, last_trade_time"
)
_UPSERT = (
    f"INSERT INTO candles ({_COLUMNS}, final) VALUES "
    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) "
    "ON CONFLICT (symbol, interval, open_time) DO UPDATE SET "
    "close_time = EXCLUDED.close_time, open = EXCLUDED.open, high = EXCLUDED.high, "
    "low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume, "
    "quote_volume = EXCLUDED.quote_volume, trades = EXCLUDED.trades, "
    "taker_buy_volume = EXCLUDED.taker_buy_volume, "
    "taker_buy_quote_volume = EXCLUDED.taker_buy_quote_volume, vwap = EXCLUDED.vwap, "
    "first_trade_time = EXCLUDED.first_trade_time, last_trade_time = EXCLUDED.last_trade_time, "
    "final = EXCLUDED.final "
    "WHERE NOT candles.final AND (EXCLUDED.final OR (EXCLUDED.trades >= candles.trades "
    "AND EXCLUDED.last_trade_time >= candles.last_trade_time))"
)


def _row(c: Candle) -> tuple[Any, ...]:
    return (
        c.symbol,
        c.interval,
        c.open_time,
        c.close_time,
        c.open,
        c.high,
        c.low,
        c.close,
        c.volume,
        c.quote_volume,
        c.trades,
        c.taker_buy_volume,
        c.taker_buy_quote_volume,
        c.vwap,
        c.first_trade_time,
        c.last_trade_time,
        isinstance(c, CandleClosed),
    )


def _candle(r: Any) -> Candle:
    cls = CandleClosed if r["final"] else CandleUpdated
    return cls(
        r["symbol"],
        r["interval"],
        r["open_time"],
        r["close_time"],
        r["open"],
        r["high"],
        r["low"],
        r["close"],
        int(r["volume"]),
        int(r["quote_volume"]),
        r["trades"],
        int(r["taker_buy_volume"]),
        int(r["taker_buy_quote_volume"]),
        r["vwap"],
        r["first_trade_time"],
        r["last_trade_time"],
    )


async def upsert_candles(db: Db, candles: Iterable[Candle]) -> None:
    """Store ``candles`` (a :class:`CandleClosed` as final, any other candle as open).

    Call it inside a transaction to make a batch atomic; see the module docstring for the
    idempotence rule.

    Raises:
        asyncpg.PostgresError: the database refused the rows.
    """
    rows = [_row(c) for c in candles]
    if rows:
        await db.executemany(_UPSERT, rows)


async def query_candles(
    db: Db, symbol: str, interval: str, start: int, end: int, limit: int
) -> list[Candle]:
    """Candles of ``symbol`` and ``interval`` with ``start <= open_time <= end`` (ms UTC), in
    increasing open time, at most ``limit`` of them (the page after the last one starts at its
    ``open_time + 1``)."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS}, final FROM candles WHERE symbol = $1 AND interval = $2 "
        "AND open_time BETWEEN $3 AND $4 ORDER BY open_time LIMIT $5",
        symbol,
        interval,
        start,
        end,
        limit,
    )
    return [_candle(r) for r in rows]


async def latest_candles(db: Db, symbol: str, interval: str, end: int, limit: int) -> list[Candle]:
    """The last ``limit`` candles of ``symbol`` and ``interval`` with ``open_time <= end`` (ms
    UTC), in increasing open time."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS}, final FROM candles WHERE symbol = $1 AND interval = $2 "
        "AND open_time <= $3 ORDER BY open_time DESC LIMIT $4",
        symbol,
        interval,
        end,
        limit,
    )
    return [_candle(r) for r in reversed(rows)]


async def fill_marks(db: Db) -> dict[str, int]:
    """Per market, the ``EVENTS`` seq of the last own fill counted in the candles."""
    rows = await db.fetch("SELECT symbol, last_seq FROM candle_fill_marks")
    return {r["symbol"]: r["last_seq"] for r in rows}


async def set_fill_marks(db: Db, marks: Mapping[str, int]) -> None:
    """Raise the fill marks of the markets in ``marks`` (a mark never goes down)."""
    items: Sequence[tuple[str, int]] = sorted(marks.items())
    if items:
        await db.executemany(
            "INSERT INTO candle_fill_marks (symbol, last_seq) VALUES ($1, $2) "
            "ON CONFLICT (symbol) DO UPDATE SET last_seq = GREATEST(candle_fill_marks.last_seq, "
            "EXCLUDED.last_seq)",
            items,
        )
