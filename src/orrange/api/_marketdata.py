"""Market-data routes of the API (candles, indicators, snapshots) and the ``candles`` channel.

Routes (public, JSON; prices, quantities and notionals are decimal strings):

====================================================== =========================================
``GET /api/v1/markets/{symbol}/candles``                stored candles: ``interval`` (1m, 5m, 15m,
                                                        1h, 4h, 1d; default 1m), ``start`` /
                                                        ``end`` (open time, ms UTC, inclusive),
                                                        ``limit`` (1..1000, default 500); the
                                                        next page starts at ``next_start``
``GET /api/v1/markets/{symbol}/indicators``             SMA, EMA, RSI, MACD, Bollinger Bands,
                                                        VWAP, ATR (``names``, comma-separated,
                                                        default all) over the last 1,000 stored
                                                        candles of ``interval``
``GET /api/v1/markets/{symbol}/snapshot``               index price and confidence, last price,
                                                        24 h statistics, spread, depth within
                                                        1/5/10 %, price impact of 1,000 and
                                                        10,000 quote units
``GET /api/v1/markets/snapshots``                       the snapshot of every market
====================================================== =========================================

Sources: candles are those the feed actor (:mod:`orrange.engine.feed`) stores, built from our
fills and the external trades; the 24 h statistics of a snapshot are summed over the 1m
candles opened in the last 24 h (``open`` is the first of them, ``last`` the close of the
newest); the index is the last ``md.index.<SYM>`` message of stream ``MD``; the book figures
come from the matcher's L2 book (``book.query.<SYM>``, its best 1,000 levels per side) through
the pure core's :func:`~orrange.matching.depth.depth_bands` and
:func:`~orrange.matching.depth.price_impact` (what the book's own views compute). When no
matcher answers, the book fields are null and ``book_available`` is false. Indicator values
are floats (analytics, never money).

WebSocket: ``candles.<IV>.<SYM>`` delivers ``{"type": "candle", "channel": ..., ...}`` with the
fields of :class:`CandleOut` for every candle of that interval and market in the feed's
``md.candles`` batches (the latest version of the open window per feed flush, ``final`` true
once the window closed); :class:`CandleFanout` serves the channel (registered by
:func:`~orrange.api.app.create_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Annotated, Any

import msgspec
from litestar import Request, get
from litestar.params import FromPath, FromQuery, QueryParameter
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from orrange.api.context import ApiContext, now_ms
from orrange.api.deps import context, market
from orrange.api.errors import ApiError
from orrange.api.mirrors import BookUnavailable
from orrange.api.subscriber import Subscriber
from orrange.marketdata.candles import INTERVAL_MS, Candle, CandleClosed
from orrange.marketdata.index import IndexPrice
from orrange.marketdata.indicators import INDICATOR_NAMES, IndicatorConfig, IndicatorSet
from orrange.markets import MarketSpec
from orrange.matching import L2Book, PriceImpact, Side, depth_bands, price_impact
from orrange.store.candles import latest_candles, query_candles
from orrange.wire.marketdata import MD, MD_CANDLES_SUBJECT, decode_candles, index_subject

__all__ = [
    "MARKETDATA_HANDLERS",
    "CandleFanout",
    "CandleOut",
    "CandlePage",
    "DepthBandOut",
    "IndicatorsOut",
    "MarketSnapshotOut",
    "PriceImpactOut",
    "candle_out",
    "market_snapshot",
]

DAY_MS = 86_400_000
#: Candles fed to the indicators (the talipp history of :class:`IndicatorConfig`).
INDICATOR_BARS = IndicatorConfig().history
#: Depth bands of a snapshot (basis points of mid) and price-impact notionals (quote amounts).
DEPTH_BANDS_BPS = (100, 500, 1000)
IMPACT_QUOTES = ("1000", "10000")
#: Decimal digits of a price-impact average price beyond the tick's (rounded half even).
AVG_PRICE_EXTRA_DIGITS = 4
#: Levels per side read from the matcher for the book figures.
BOOK_LEVELS = 1000


class CandleOut(msgspec.Struct, frozen=True, kw_only=True):
    """One candle: times ms UTC, prices and quantities decimal strings; ``final`` once its
    window has closed (until then it is the open candle, superseded by later updates)."""

    symbol: str
    interval: str
    open_time: int
    close_time: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str
    trades: int
    taker_buy_volume: str
    taker_buy_quote_volume: str
    vwap: str
    final: bool


class CandlePage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of candles in increasing open time; ``next_start`` is the ``start`` of the next
    page (null on the last page)."""

    symbol: str
    interval: str
    candles: list[CandleOut]
    next_start: int | None


class IndicatorsOut(msgspec.Struct, frozen=True, kw_only=True):
    """Indicator values after the newest stored candle (``open_time``; ``final`` false while
    it is open); ``bars`` counts the candles used (carry-forward bars included); a value is
    null while its indicator warms up. Floats in price units (RSI 0..100)."""

    symbol: str
    interval: str
    open_time: int | None
    final: bool
    bars: int
    values: dict[str, float | None]


class DepthBandOut(msgspec.Struct, frozen=True, kw_only=True):
    """Resting size (base) and notional (quote) within ``band_pct`` % of mid, per side."""

    band_pct: str
    bid_size: str
    ask_size: str
    bid_notional: str
    ask_notional: str


class PriceImpactOut(msgspec.Struct, frozen=True, kw_only=True):
    """A market ``side`` order spending ``quote_amount``: base filled, quote spent, average
    price (4 decimals finer than the tick, half even), slippage from the best price in bps (2
    decimals, half even), levels touched; ``complete`` is false when the book ran out first."""

    side: str
    quote_amount: str
    filled_qty: str
    spent: str
    avg_price: str | None
    slippage_bps: str | None
    levels: int
    complete: bool


class MarketSnapshotOut(msgspec.Struct, frozen=True, kw_only=True):
    """A market at ``ts`` (ms UTC); see the module docstring for where each part comes from.

    ``change_pct`` is ``(last - open_24h) / open_24h * 100`` with 2 decimals (half even);
    ``index_confidence`` a score in [0, 1]; ``spread`` best ask minus best bid.
    """

    symbol: str
    ts: int
    index_price: str | None
    index_confidence: float | None
    index_ts: int | None
    last_price: str | None
    open_24h: str | None
    high_24h: str | None
    low_24h: str | None
    change_pct: str | None
    volume_24h: str
    quote_volume_24h: str
    trades_24h: int
    book_available: bool
    book_seq: int | None
    best_bid: str | None
    best_ask: str | None
    spread: str | None
    depth: list[DepthBandOut] | None
    price_impact: list[PriceImpactOut] | None


def candle_out(spec: MarketSpec, c: Candle) -> CandleOut:
    """A candle (ticks, lots, quote units) as decimal strings."""
    return CandleOut(
        symbol=c.symbol,
        interval=c.interval,
        open_time=c.open_time,
        close_time=c.close_time,
        open=spec.ticks_to_price(c.open),
        high=spec.ticks_to_price(c.high),
        low=spec.ticks_to_price(c.low),
        close=spec.ticks_to_price(c.close),
        volume=spec.lots_to_qty(c.volume),
        quote_volume=spec.units_to_quote(c.quote_volume),
        trades=c.trades,
        taker_buy_volume=spec.lots_to_qty(c.taker_buy_volume),
        taker_buy_quote_volume=spec.units_to_quote(c.taker_buy_quote_volume),
        vwap=spec.ticks_to_price(c.vwap),
        final=isinstance(c, CandleClosed),
    )


def _interval(interval: str) -> str:
    if interval not in INTERVAL_MS:
        raise ApiError(
            400,
            "interval",
            "unknown_interval",
            f"interval must be one of {', '.join(INTERVAL_MS)}, not {interval!r}",
        )
    return interval


@get("/markets/{symbol:str}/candles", summary="Candles")
async def get_candles(
    request: Request[Any, Any, Any],
    symbol: FromPath[str],
    interval: FromQuery[str] = "1m",
    start: Annotated[int, QueryParameter(ge=0)] = 0,
    end: Annotated[int | None, QueryParameter(ge=0)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 500,
) -> CandlePage:
    """Stored candles with ``start <= open_time <= end`` (ms UTC; ``end`` defaults to now),
    oldest first, at most ``limit``; 400 for an unknown interval or ``start > end``."""
    ctx = context(request)
    spec = market(ctx, symbol)
    iv = _interval(interval)
    stop = now_ms() if end is None else end
    if start > stop:
        raise ApiError(400, "start", "invalid_range", f"start {start} is after end {stop}")
    rows = await query_candles(ctx.pool, symbol, iv, start, stop, limit)
    nxt = rows[-1].open_time + 1 if len(rows) == limit and rows[-1].open_time < stop else None
    return CandlePage(
        symbol=symbol,
        interval=iv,
        candles=[candle_out(spec, c) for c in rows],
        next_start=nxt,
    )


@get("/markets/{symbol:str}/indicators", summary="Indicators")
async def get_indicators(
    request: Request[Any, Any, Any],
    symbol: FromPath[str],
    interval: FromQuery[str] = "1m",
    names: FromQuery[str | None] = None,
) -> IndicatorsOut:
    """Indicators over the stored candles of ``interval`` (``names`` among sma, ema, rsi,
    macd, bb, vwap, atr; default all); 400 for an unknown interval or name."""
    ctx = context(request)
    spec = market(ctx, symbol)
    iv = _interval(interval)
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else list(INDICATOR_NAMES)
    unknown = [n for n in wanted if n not in INDICATOR_NAMES]
    if unknown or not wanted:
        raise ApiError(
            400,
            "names",
            "unknown_indicator",
            f"names must be among {', '.join(INDICATOR_NAMES)}, not {unknown or names!r}",
        )
    rows = await latest_candles(ctx.pool, symbol, iv, now_ms(), INDICATOR_BARS)
    ind = IndicatorSet(symbol, iv, spec.tick_size, spec.lot_size)
    for c in rows:
        ind.update(c)
    latest = ind.latest
    if latest is None:
        return IndicatorsOut(
            symbol=symbol,
            interval=iv,
            open_time=None,
            final=False,
            bars=0,
            values={f: None for n in wanted for f in INDICATOR_NAMES[n]},
        )
    return IndicatorsOut(
        symbol=symbol,
        interval=iv,
        open_time=latest.open_time,
        final=latest.final,
        bars=ind.bars,
        values=latest.select(wanted),
    )


def _pct(band_bps: int) -> str:
    return str(Decimal(band_bps) / 100)


def _ratio(value: Fraction, places: str = "0.01") -> str:
    d = Decimal(value.numerator) / Decimal(value.denominator)
    return str(d.quantize(Decimal(places), rounding=ROUND_HALF_EVEN))


def _impact_out(spec: MarketSpec, quote: str, pi: PriceImpact) -> PriceImpactOut:
    avg = None
    if pi.avg_price is not None:
        tick = Decimal(spec.tick_size)
        exact = Fraction(pi.avg_price.numerator) * Fraction(tick) / pi.avg_price.denominator
        avg = _ratio(exact, str(tick.scaleb(-AVG_PRICE_EXTRA_DIGITS)))
    return PriceImpactOut(
        side=str(pi.side),
        quote_amount=quote,
        filled_qty=spec.lots_to_qty(pi.filled_lots),
        spent=spec.units_to_quote(pi.spent_units),
        avg_price=avg,
        slippage_bps=None if pi.slippage_bps is None else _ratio(pi.slippage_bps),
        levels=pi.levels_consumed,
        complete=pi.complete,
    )


async def _last_index(ctx: ApiContext, symbol: str) -> IndexPrice | None:
    try:
        msg = await ctx.nc.jetstream().get_last_msg(MD.name, index_subject(symbol), direct=True)
    except (NotFoundError, TimeoutError):
        return None
    except Exception:  # stream not provisioned yet (no feed ran), no responders
        return None
    if msg.data is None:
        return None
    try:
        return msgspec.json.decode(msg.data, type=IndexPrice)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


async def market_snapshot(ctx: ApiContext, spec: MarketSpec) -> MarketSnapshotOut:
    """The snapshot of one market now (see :class:`MarketSnapshotOut`)."""
    now = now_ms()
    symbol = spec.symbol
    p = spec.ticks_to_price

    async def book() -> L2Book | None:
        try:
            return await ctx.books.query(symbol, BOOK_LEVELS)
        except BookUnavailable:
            return None

    ip, l2, day = await asyncio.gather(
        _last_index(ctx, symbol),
        book(),
        query_candles(ctx.pool, symbol, "1m", now - DAY_MS + 1, now, 1441),
    )
    open_ = high = low = last = None
    volume = quote = trades = 0
    if day:
        open_, last = day[0].open, day[-1].close
        high = max(c.high for c in day)
        low = min(c.low for c in day)
        volume = sum(c.volume for c in day)
        quote = sum(c.quote_volume for c in day)
        trades = sum(c.trades for c in day)
    change = None
    if open_ is not None and last is not None:
        change = _ratio(Fraction(100 * (last - open_), open_))
    depth = impact = None
    bid = ask = spread = None
    if l2 is not None:
        bid = l2.bids[0][0] if l2.bids else None
        ask = l2.asks[0][0] if l2.asks else None
        spread = None if bid is None or ask is None else ask - bid
        depth = [
            DepthBandOut(
                band_pct=_pct(b.band_bps),
                bid_size=spec.lots_to_qty(b.bid_size),
                ask_size=spec.lots_to_qty(b.ask_size),
                bid_notional=spec.units_to_quote(b.bid_notional),
                ask_notional=spec.units_to_quote(b.ask_notional),
            )
            for b in depth_bands(l2.bids, l2.asks, DEPTH_BANDS_BPS)
        ]
        impact = [
            _impact_out(
                spec,
                q,
                price_impact(
                    side, l2.asks if side is Side.BUY else l2.bids, spec.quote_to_units(q)
                ),
            )
            for q in IMPACT_QUOTES
            for side in (Side.BUY, Side.SELL)
        ]
    return MarketSnapshotOut(
        symbol=symbol,
        ts=now,
        index_price=None if ip is None else p(ip.price),
        index_confidence=None if ip is None else ip.confidence,
        index_ts=None if ip is None else ip.ts,
        last_price=None if last is None else p(last),
        open_24h=None if open_ is None else p(open_),
        high_24h=None if high is None else p(high),
        low_24h=None if low is None else p(low),
        change_pct=change,
        volume_24h=spec.lots_to_qty(volume),
        quote_volume_24h=spec.units_to_quote(quote),
        trades_24h=trades,
        book_available=l2 is not None,
        book_seq=None if l2 is None else l2.seq,
        best_bid=None if bid is None else p(bid),
        best_ask=None if ask is None else p(ask),
        spread=None if spread is None else p(spread),
        depth=depth,
        price_impact=impact,
    )


@get("/markets/snapshots", summary="Snapshots of every market")
async def get_snapshots(request: Request[Any, Any, Any]) -> list[MarketSnapshotOut]:
    """:class:`MarketSnapshotOut` of every market, by symbol."""
    ctx = context(request)
    specs = [ctx.markets[s] for s in sorted(ctx.markets)]
    return list(await asyncio.gather(*(market_snapshot(ctx, s) for s in specs)))


@get("/markets/{symbol:str}/snapshot", summary="Market snapshot")
async def get_snapshot(request: Request[Any, Any, Any], symbol: FromPath[str]) -> MarketSnapshotOut:
    """Index, last price, 24 h statistics, spread, depth and price impact of one market."""
    ctx = context(request)
    return await market_snapshot(ctx, market(ctx, symbol))


#: The route handlers of this module (mounted under ``/api/v1``).
MARKETDATA_HANDLERS = [get_candles, get_indicators, get_snapshots, get_snapshot]


_json = msgspec.json.Encoder()


class CandleFanout:
    """The ``candles.<IV>.<SYM>`` WebSocket channel: one core NATS subscription to
    ``md.candles`` (batches of candles of every market and interval), each candle sent to the
    subscribers of its channel (through their bounded queues, so a slow client never delays
    the others); candles of channels nobody follows are skipped without being converted.

    Args:
        markets: the markets served, keyed by symbol.
    """

    def __init__(self, markets: dict[str, MarketSpec] | Any) -> None:
        self._markets = markets
        self._subs: dict[str, set[Subscriber]] = {}
        self._nats_sub: Any = None

    async def start(self, nc: NATS) -> None:
        """Subscribe to ``md.candles``."""
        self._nats_sub = await nc.subscribe(
            MD_CANDLES_SUBJECT, cb=self._on_msg, pending_msgs_limit=-1, pending_bytes_limit=-1
        )

    async def stop(self) -> None:
        """Unsubscribe (no-op when not started)."""
        sub, self._nats_sub = self._nats_sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def subscribe(self, sub: Subscriber, channel: str) -> str | None:
        """Add ``sub`` to ``channel`` (``candles.<IV>.<SYM>``); returns an error reason
        (``unknown_interval``, ``unknown_market``) or None."""
        _, _, rest = channel.partition(".")
        iv, _, sym = rest.partition(".")
        if iv not in INTERVAL_MS:
            return "unknown_interval"
        if sym not in self._markets:
            return "unknown_market"
        sub.channels.add(channel)
        self._subs.setdefault(channel, set()).add(sub)
        return None

    def unsubscribe(self, sub: Subscriber, channel: str) -> None:
        """Remove ``sub`` from ``channel`` (no-op when not subscribed)."""
        subs = self._subs.get(channel)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[channel]

    async def _on_msg(self, msg: Any) -> None:
        """Fan the candles of one ``md.candles`` message out to their channels."""
        if not self._subs:
            return
        try:
            candles = decode_candles(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        for c in candles:
            channel = f"candles.{c.interval}.{c.symbol}"
            subs = self._subs.get(channel)
            if not subs:
                continue
            spec = self._markets.get(c.symbol)
            if spec is None:
                continue
            body = msgspec.to_builtins(candle_out(spec, c))
            data = _json.encode({"type": "candle", "channel": channel, **body})
            for sub in list(subs):
                sub.enqueue(data)
