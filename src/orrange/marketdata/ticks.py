"""Normalized market-data ticks, the common output of every feed source.

Every tick names its ``source`` (the configured source name, e.g. ``"binance"``), OUR market
``symbol`` (``"BTC-USDT"``, mapped from the exchange symbol by ``config/sources.toml``), the
exchange timestamp ``exchange_ts_ms`` and the local receive timestamp ``recv_ts_ms``, both in
**milliseconds since the Unix epoch, UTC**. When the exchange sends no time for a message
(Binance ``bookTicker``, Kraken ``ticker``) ``exchange_ts_ms`` equals ``recv_ts_ms``.

Prices and quantities are :class:`~decimal.Decimal` values built from the exchange's decimal
strings, never through a float, so they are exact. They are on the exchange's grid, which may
be finer than our market's: convert with :meth:`orrange.markets.MarketSpec.price_to_ticks` and
:meth:`~orrange.markets.MarketSpec.qty_to_lots` (which raise ``InvalidValue`` off-grid).
msgspec encodes a Decimal as a JSON string, and the tagged union :data:`AnyTick` round-trips
through :func:`encode_tick` / :func:`decode_tick` (tag field ``"kind"``). Ticks hold only
scalars and tuples of them, so they are not tracked by the cyclic garbage collector
(``gc=False``): a feed buffering 100,000 ticks a second gives it no work.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

__all__ = [
    "AnyTick",
    "BestBidOffer",
    "BookSnapshotTick",
    "BookUpdate",
    "CandleTick",
    "Level",
    "Tick",
    "TickSide",
    "TradeTick",
    "decode_tick",
    "encode_tick",
]

TickSide = Literal["buy", "sell"]
"""The taker (aggressor) side of a trade."""

Level = tuple[Decimal, Decimal]
"""One book level: ``(price, quantity)``; in an update a quantity of 0 removes the level."""


class Tick(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", gc=False):
    """Fields common to every tick (see the module docstring for units)."""

    source: str
    symbol: str
    exchange_ts_ms: int
    recv_ts_ms: int


class TradeTick(Tick, frozen=True, kw_only=True, tag="trade", gc=False):
    """One public trade (Binance: one aggTrade, which may aggregate several fills).

    Attributes:
        trade_id: the exchange's trade id as a string (Kraken v1 has none: ``"<time>-<i>"``).
        price: quote per base. qty: base quantity. side: taker side.
    """

    trade_id: str
    price: Decimal
    qty: Decimal
    side: TickSide


class BestBidOffer(Tick, frozen=True, kw_only=True, tag="bbo", gc=False):
    """Top of book: best bid and ask prices with their quantities."""

    bid_price: Decimal
    bid_qty: Decimal
    ask_price: Decimal
    ask_qty: Decimal


class BookSnapshotTick(Tick, frozen=True, kw_only=True, tag="book_snapshot", gc=False):
    """The full local L2 book after a (re)synchronisation.

    Attributes:
        bids: levels best (highest) first. asks: levels best (lowest) first.
        sequence: the exchange sequence the book is at (Binance ``lastUpdateId``/``u``,
            Coinbase ``sequence_num``; Kraken v1 has none: 0).
    """

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    sequence: int


class BookUpdate(Tick, frozen=True, kw_only=True, tag="book_update", gc=False):
    """Changed levels since the previous snapshot/update of the same symbol and source.

    A quantity of 0 removes the level. Updates are only emitted while the source's local book
    is in sync, so applying them in order to the last :class:`BookSnapshotTick` reproduces the
    source's book.

    Attributes:
        bids, asks: changed levels in exchange order. sequence: as in :class:`BookSnapshotTick`
            (Binance ``u``).
    """

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    sequence: int


class CandleTick(Tick, frozen=True, kw_only=True, tag="candle", gc=False):
    """An exchange kline (Binance ``kline_<interval>``), open or final.

    Attributes:
        interval: ``"1m"``, ``"5m"`` ... open_time_ms, close_time_ms: ms UTC (close inclusive,
            Binance convention). volume: base. quote_volume: quote. trade_count: fills.
        closed: true when the window is final.
    """

    interval: str
    open_time_ms: int
    close_time_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trade_count: int
    closed: bool


AnyTick = TradeTick | BestBidOffer | BookSnapshotTick | BookUpdate | CandleTick

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyTick)


def encode_tick(tick: AnyTick) -> bytes:
    """JSON bytes of a tick (decimals as strings, ``"kind"`` tag)."""
    return _encoder.encode(tick)


def decode_tick(data: bytes | str) -> AnyTick:
    """Decode JSON produced by :func:`encode_tick`.

    Raises:
        msgspec.ValidationError: not a valid tick.
    """
    return _decoder.decode(data)
