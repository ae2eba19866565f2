"""Incremental OHLCV candles built from trades, exchange (Binance) conventions, exact integers.

Units: prices are integer **ticks**, quantities integer **lots** and quote volumes integer
**quote units** (``tick_size * lot_size`` of the quote asset, so ``price * qty`` is exact; see
:mod:`orrange.markets`); times are integer **ms since the Unix epoch, UTC**. No float touches a
price or a quantity.

Conventions (those of Binance spot klines, checked against the exchange's own klines in the
tests):

* Intervals ``1m 5m 15m 1h 4h 1d`` (:data:`INTERVAL_MS`). A window is ``[open_time,
  open_time + interval_ms)`` with ``open_time = ts - ts % interval_ms``: windows are aligned to
  the Unix epoch, hence to UTC midnight (4h windows open at 00, 04, ... 20 UTC). ``close_time``
  is ``open_time + interval_ms - 1``, as Binance reports it.
* ``open`` is the window's **first** trade (smallest timestamp; ties by arrival order),
  ``close`` its last (largest timestamp; ties by arrival order), ``high``/``low`` the extremes.
  The open is never the previous close: if the first minutes of a 5m window are empty, the 5m
  open is the first trade inside the window, not a carried-forward value.
* ``volume`` is the base volume in lots, ``quote_volume`` the exact sum of ``price * qty`` in
  quote units, ``trades`` the number of trades (an aggregated trade may count several, see
  ``count`` in :meth:`CandleAggregator.add_trade`), ``taker_buy_*`` the part of the volume
  whose taker bought (``buyer_is_maker`` false), ``vwap`` the volume-weighted average price
  ``quote_volume / volume`` rounded half up to a whole tick (exact value:
  :meth:`Candle.vwap_exact`).

Empty windows: the aggregator emits **only non-empty windows** (a window without trades has no
candle event at all). Binance's kline endpoint instead reports every window; its rule for an
empty window is the carry-forward candle ``open = high = low = close = previous close``, all
volumes and the trade count 0. :func:`fill_gaps` applies that rule to a sequence of
non-empty candles to produce the contiguous Binance-style series (the tests check it
reproduces every one of the exchange's 3,560 1m klines, the 1,091 empty ones included).

Closing: a window closes when a trade for the same symbol arrives at or after its end, or when
the caller advances the clock with :meth:`CandleAggregator.advance` (time is always passed in;
the core reads no clock). Once the finest interval's window has closed, a trade with an
earlier timestamp is **late**: it is dropped for every interval (so all intervals stay
consistent) and counted in :attr:`CandleAggregator.late_trades`. Trades that arrive out of
order *within* the open window are accepted (open/close follow their timestamps).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from typing import Any, Final, Literal

import msgspec

__all__ = [
    "INTERVALS",
    "INTERVAL_MS",
    "Candle",
    "CandleAggregator",
    "CandleClosed",
    "CandleEvent",
    "CandleUpdated",
    "Interval",
    "build_candles",
    "fill_gaps",
    "window_open",
]

Interval = Literal["1m", "5m", "15m", "1h", "4h", "1d"]

#: Length of each supported interval in ms.
INTERVAL_MS: Final[dict[str, int]] = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}
#: All supported intervals, finest first.
INTERVALS: Final[tuple[Interval, ...]] = ("1m", "5m", "15m", "1h", "4h", "1d")


def window_open(ts: int, interval: str) -> int:
    """Open time (ms UTC) of the ``interval`` window containing ``ts`` (ms UTC).

    Raises:
        KeyError: unknown interval.
    """
    return ts - ts % INTERVAL_MS[interval]


class Candle(msgspec.Struct, frozen=True, gc=False, tag_field="type", tag="candle"):
    """One OHLCV window of one symbol (see the module docstring for the conventions).

    Attributes:
        symbol: market name.
        interval: one of :data:`INTERVALS`.
        open_time: window start, ms UTC (inclusive).
        close_time: ``open_time + interval_ms - 1``, ms UTC.
        open, high, low, close: prices in ticks.
        volume: base volume in lots.
        quote_volume: sum of ``price * qty`` in quote units (``tick_size * lot_size``).
        trades: number of trades.
        taker_buy_volume: base volume of trades whose taker bought, lots.
        taker_buy_quote_volume: quote volume of those trades, quote units.
        vwap: ``quote_volume / volume`` rounded half up to ticks (the close if volume is 0).
        first_trade_time, last_trade_time: timestamps of the open and close trades, ms UTC
            (both ``open_time`` for a carried-forward empty window).
    """

    symbol: str
    interval: str
    open_time: int
    close_time: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    quote_volume: int
    trades: int
    taker_buy_volume: int
    taker_buy_quote_volume: int
    vwap: int
    first_trade_time: int
    last_trade_time: int

    def vwap_exact(self) -> Fraction:
        """Exact VWAP in ticks (``quote_volume / volume``); the close when volume is 0."""
        if self.volume == 0:
            return Fraction(self.close)
        return Fraction(self.quote_volume, self.volume)


class CandleUpdated(Candle, frozen=True, gc=False, tag="candle_updated"):
    """The open (not yet final) candle after a trade changed it. Publish/upsert idempotently:
    a later update or the :class:`CandleClosed` of the same ``(symbol, interval, open_time)``
    supersedes it."""


class CandleClosed(Candle, frozen=True, gc=False, tag="candle_closed"):
    """The final candle of a window that has ended; no later trade changes it."""


CandleEvent = CandleUpdated | CandleClosed


class _Open:
    """Mutable state of one window (internal; converted to events on demand)."""

    __slots__ = (
        "close_at",
        "first_ts",
        "h",
        "l",
        "last_ts",
        "n",
        "o",
        "open_time",
        "p",
        "qv",
        "tbqv",
        "tbv",
        "v",
    )

    open_time: int
    close_at: int
    first_ts: int
    last_ts: int
    o: int
    h: int
    l: int  # noqa: E741 - OHLC naming
    p: int  # close
    v: int
    qv: int
    n: int
    tbv: int
    tbqv: int

    def event(self, cls: type[Candle], symbol: str, interval: str) -> Candle:
        v = self.v
        vwap = (2 * self.qv + v) // (2 * v) if v else self.p
        return cls(
            symbol,
            interval,
            self.open_time,
            self.close_at - 1,
            self.o,
            self.h,
            self.l,
            self.p,
            v,
            self.qv,
            self.n,
            self.tbv,
            self.tbqv,
            vwap,
            self.first_ts,
            self.last_ts,
        )


def _new(open_time: int, close_at: int, ts: int, p: int, q: int, n: int, buy: bool) -> _Open:
    c = _Open()
    c.open_time = open_time
    c.close_at = close_at
    c.first_ts = c.last_ts = ts
    c.o = c.h = c.l = c.p = p
    c.v = q
    c.qv = p * q
    c.n = n
    if buy:
        c.tbv = q
        c.tbqv = p * q
    else:
        c.tbv = c.tbqv = 0
    return c


def _fold(acc: _Open | None, c: _Open, ms: int) -> _Open:
    """Add the closed finer window ``c`` (later than everything in ``acc``) to the coarser
    window ``acc`` of length ``ms``; returns the (possibly new) accumulator."""
    if acc is None:
        a = _Open()
        a.open_time = start = c.open_time - c.open_time % ms
        a.close_at = start + ms
        a.first_ts, a.last_ts = c.first_ts, c.last_ts
        a.o, a.h, a.l, a.p = c.o, c.h, c.l, c.p
        a.v, a.qv, a.n, a.tbv, a.tbqv = c.v, c.qv, c.n, c.tbv, c.tbqv
        return a
    if c.h > acc.h:
        acc.h = c.h
    if c.l < acc.l:
        acc.l = c.l
    acc.p = c.p
    acc.last_ts = c.last_ts
    acc.v += c.v
    acc.qv += c.qv
    acc.n += c.n
    acc.tbv += c.tbv
    acc.tbqv += c.tbqv
    return acc


class _Symbol:
    __slots__ = ("acc", "fine", "floor")

    def __init__(self, n: int) -> None:
        self.floor = -(2**62)  # trades before this ts are late (finest closed window end)
        self.fine: _Open | None = None  # open window of the finest interval
        # coarser intervals: closed finest windows folded so far (index 0 unused)
        self.acc: list[_Open | None] = [None] * n


class CandleAggregator:
    """Candles of many symbols and intervals, updated one trade at a time.

    Only the finest interval's window is updated per trade (a few integer comparisons and
    additions); coarser windows accumulate the finest windows as they close (a roll-up, exact
    because every coarser interval is a multiple of the finest and windows are aligned), and
    their open candle is the accumulation plus the open finest window. The results are the
    same as building each interval directly from the trades (tested).

    Args:
        intervals: the intervals to build (subset of :data:`INTERVALS`, any order).
        emit_updates: if true (default) :meth:`add_trade` returns a :class:`CandleUpdated` per
            interval for every accepted trade; if false it returns only
            :class:`CandleClosed` events and the open candles are read with
            :meth:`open_candles` (for actors that publish updates once per batch: much
            cheaper per trade).

    Raises:
        ValueError: empty, duplicate or unknown interval.

    Example::

        agg = CandleAggregator(("1m", "5m"))
        events = agg.add_trade("XRP-ETH", 1570752011620, 141342, 2300, buyer_is_maker=True)
        # [CandleUpdated(interval="1m", ...), CandleUpdated(interval="5m", ...)]
    """

    __slots__ = ("_coarse", "_emit", "_fine_iv", "_fine_ms", "_symbols", "intervals", "late_trades")

    def __init__(self, intervals: Sequence[str] = INTERVALS, *, emit_updates: bool = True) -> None:
        if not intervals:
            raise ValueError("at least one interval is required")
        unknown = [iv for iv in intervals if iv not in INTERVAL_MS]
        if unknown:
            raise ValueError(f"unknown interval(s) {unknown}; supported: {', '.join(INTERVALS)}")
        if len(set(intervals)) != len(intervals):
            raise ValueError(f"duplicate interval in {list(intervals)}")
        ordered = sorted(intervals, key=INTERVAL_MS.__getitem__)
        #: the intervals built, finest first.
        self.intervals: tuple[str, ...] = tuple(ordered)
        self._fine_iv = ordered[0]
        self._fine_ms = INTERVAL_MS[ordered[0]]
        # (index into _Symbol.acc, interval, ms) of the coarser intervals
        self._coarse = tuple((j, iv, INTERVAL_MS[iv]) for j, iv in enumerate(ordered) if j)
        self._emit = emit_updates
        self._symbols: dict[str, _Symbol] = {}
        #: number of trades dropped because their window had already closed.
        self.late_trades = 0

    def add_trade(
        self,
        symbol: str,
        ts: int,
        price: int,
        qty: int,
        buyer_is_maker: bool = False,
        count: int = 1,
    ) -> list[CandleEvent]:
        """Apply one trade and return the resulting events, in order.

        Args:
            symbol: market name.
            ts: trade time, ms UTC.
            price: price in ticks (> 0).
            qty: quantity in lots (> 0).
            buyer_is_maker: true when the taker sold (Binance ``m``); false counts the trade
                as a taker buy.
            count: number of exchange trades this record stands for (an aggTrade
                ``l - f + 1``); added to ``trades``.

        Returns:
            If the trade starts a new window: :class:`CandleClosed` for each window it ends,
            finest interval first; then (with ``emit_updates``) one :class:`CandleUpdated` per
            interval, finest first. An empty list for a late trade (counted in
            :attr:`late_trades`).

        Raises:
            ValueError: ``price``, ``qty`` or ``count`` is not positive.
        """
        if price <= 0 or qty <= 0 or count <= 0:
            raise ValueError(f"price, qty and count must be positive: {price}, {qty}, {count}")
        st = self._symbols.get(symbol)
        if st is None:
            st = self._symbols[symbol] = _Symbol(len(self.intervals))
        elif ts < st.floor:
            self.late_trades += 1
            return []
        c = st.fine
        if c is None or ts >= c.close_at:
            out: list[CandleEvent] = self._roll(symbol, st, ts) if c is not None else []
            if c is None and st.acc:
                out = self._close_coarse(symbol, st, ts)
            ms = self._fine_ms
            start = ts - ts % ms
            c = st.fine = _new(start, start + ms, ts, price, qty, count, not buyer_is_maker)
            st.floor = start
        else:
            out = []
            if price > c.h:
                c.h = price
            elif price < c.l:
                c.l = price
            if ts >= c.last_ts:
                c.p = price
                c.last_ts = ts
            elif ts < c.first_ts:
                c.o = price
                c.first_ts = ts
            c.v += qty
            pq = price * qty
            c.qv += pq
            c.n += count
            if not buyer_is_maker:
                c.tbv += qty
                c.tbqv += pq
        if self._emit:
            self._updates(symbol, st, out)
        return out

    def _updates(
        self, symbol: str, st: _Symbol, out: list[Any], finest: bool = True, coarser: bool = True
    ) -> None:
        """Append the open candles of ``st`` (finest first) to ``out`` as CandleUpdated:
        the finest interval's (``finest``) and the coarser ones (``coarser``)."""
        c = st.fine
        acc = st.acc
        if c is None:
            if coarser:
                for j, iv, _ms in self._coarse:
                    a = acc[j]
                    if a is not None:
                        out.append(a.event(CandleUpdated, symbol, iv))
            return
        if finest:
            out.append(c.event(CandleUpdated, symbol, self._fine_iv))
        if not coarser:
            return
        fh, fl, fp, fv, fqv, fn = c.h, c.l, c.p, c.v, c.qv, c.n
        ftbv, ftbqv, flast = c.tbv, c.tbqv, c.last_ts
        fo, ffirst, fopen = c.o, c.first_ts, c.open_time
        # the coarser vwap is the finest one while no finer window of it has closed
        fvwap = (2 * fqv + fv) // (2 * fv) if fv else fp
        append = out.append
        for j, iv, ms in self._coarse:
            a = acc[j]
            if a is None:
                start = fopen - fopen % ms
                append(
                    CandleUpdated(
                        symbol,
                        iv,
                        start,
                        start + ms - 1,
                        fo,
                        fh,
                        fl,
                        fp,
                        fv,
                        fqv,
                        fn,
                        ftbv,
                        ftbqv,
                        fvwap,
                        ffirst,
                        flast,
                    )
                )
                continue
            v = a.v + fv
            qv = a.qv + fqv
            append(
                CandleUpdated(
                    symbol,
                    iv,
                    a.open_time,
                    a.close_at - 1,
                    a.o,
                    a.h if a.h >= fh else fh,
                    a.l if a.l <= fl else fl,
                    fp,
                    v,
                    qv,
                    a.n + fn,
                    a.tbv + ftbv,
                    a.tbqv + ftbqv,
                    (2 * qv + v) // (2 * v),
                    a.first_ts,
                    flast,
                )
            )

    def _roll(self, symbol: str, st: _Symbol, now: int) -> list[CandleEvent]:
        """Close the finest window, fold it into the coarser ones, close those ending by
        ``now``."""
        c = st.fine
        assert c is not None
        out: list[CandleEvent] = [c.event(CandleClosed, symbol, self._fine_iv)]  # type: ignore[list-item]
        st.fine = None
        acc = st.acc
        for j, _iv, ms in self._coarse:
            acc[j] = _fold(acc[j], c, ms)
        out.extend(self._close_coarse(symbol, st, now))
        return out

    def _close_coarse(self, symbol: str, st: _Symbol, now: int) -> list[CandleEvent]:
        out: list[CandleEvent] = []
        acc = st.acc
        for j, iv, _ms in self._coarse:
            a = acc[j]
            if a is not None and now >= a.close_at:
                out.append(a.event(CandleClosed, symbol, iv))  # type: ignore[arg-type]
                acc[j] = None
        return out

    def advance(self, now: int) -> list[CandleClosed]:
        """Close every window (all symbols) that ended at or before ``now`` (ms UTC).

        Call it from a timer with the exchange-time watermark (for example the current time
        minus an allowed lateness); trades older than the finest closed window are then late.
        Cost is proportional to the number of symbols.

        Returns:
            The closed candles, grouped by symbol, finest interval first.
        """
        out: list[CandleEvent] = []
        floor = now - now % self._fine_ms
        for symbol, st in self._symbols.items():
            c = st.fine
            if c is not None and c.close_at <= now:
                out.extend(self._roll(symbol, st, now))
            elif st.acc:
                out.extend(self._close_coarse(symbol, st, now))
            if floor > st.floor:
                st.floor = floor
        return out  # type: ignore[return-value]

    def close_all(self) -> list[CandleClosed]:
        """Close every open window now (end of a file or replay); returns the candles."""
        out: list[CandleEvent] = []
        end = 2**62
        for symbol, st in self._symbols.items():
            c = st.fine
            if c is not None:
                out.extend(self._roll(symbol, st, end))
                st.floor = max(st.floor, c.close_at)
            else:
                out.extend(self._close_coarse(symbol, st, end))
        return out  # type: ignore[return-value]

    def open_candles(
        self, symbol: str, *, finest: bool = True, coarser: bool = True
    ) -> list[CandleUpdated]:
        """The current open candles of ``symbol`` (finest first; none if it has no trades).

        ``finest=False`` leaves out the finest interval's candle, ``coarser=False`` the
        coarser intervals' (an actor can publish the finest often and the others less often).
        """
        st = self._symbols.get(symbol)
        if st is None:
            return []
        out: list[CandleUpdated] = []
        self._updates(symbol, st, out, finest, coarser)
        return out

    def open_finest(self, symbols: Iterable[str]) -> list[CandleUpdated]:
        """The finest interval's open candle of each of ``symbols`` that has one, in the order
        given: ``open_candles(sym, coarser=False)`` of each, concatenated, in one call (an
        actor's flush of the markets that traded)."""
        states = self._symbols
        iv = self._fine_iv
        out: list[CandleUpdated] = []
        for symbol in symbols:
            st = states.get(symbol)
            if st is not None and st.fine is not None:
                out.append(st.fine.event(CandleUpdated, symbol, iv))  # type: ignore[arg-type]
        return out

    def restore(self, symbol: str, candles: Iterable[Candle]) -> None:
        """Rebuild the state of ``symbol`` after a restart, from its persisted candles of the
        **finest** interval.

        ``candles`` are in increasing ``open_time``: the :class:`CandleClosed` candles of the
        current windows of the coarser intervals (e.g. for 1m..1d: the closed 1m candles since
        00:00 UTC; older ones are ignored) and, last, the open window as a
        :class:`CandleUpdated` if there is one. Afterwards the aggregator behaves as if it had
        seen the trades behind those candles (trades before the last restored window are
        late). Replaying trades already counted in the open window would count them twice:
        resume the trade stream after the open candle's ``last_trade_time``.

        Raises:
            ValueError: ``symbol`` already has state, or a candle of another symbol or
                interval, open times not increasing, or a :class:`CandleUpdated` that is not
                the last candle.
        """
        if symbol in self._symbols:
            raise ValueError(f"{symbol} already has candle state")
        cs = list(candles)
        st = _Symbol(len(self.intervals))
        if not cs:
            return
        last = cs[-1]
        prev = None
        for c in cs:
            if c.symbol != symbol or c.interval != self._fine_iv:
                raise ValueError(f"restore needs {symbol} {self._fine_iv} candles, got {c!r}")
            if prev is not None and c.open_time <= prev:
                raise ValueError(f"open times not increasing at {c.open_time}")
            prev = c.open_time
            o = _Open()
            o.open_time, o.close_at = c.open_time, c.close_time + 1
            o.first_ts, o.last_ts = c.first_trade_time, c.last_trade_time
            o.o, o.h, o.l, o.p = c.open, c.high, c.low, c.close
            o.v, o.qv, o.n, o.tbv, o.tbqv = (
                c.volume,
                c.quote_volume,
                c.trades,
                c.taker_buy_volume,
                c.taker_buy_quote_volume,
            )
            if isinstance(c, CandleUpdated):
                if c is not last:
                    raise ValueError("only the last restored candle may be open")
                st.fine = o
                st.floor = o.open_time
                continue
            for j, _iv, ms in self._coarse:
                if last.open_time - last.open_time % ms == o.open_time - o.open_time % ms:
                    st.acc[j] = _fold(st.acc[j], o, ms)
            st.floor = o.close_at
        self._symbols[symbol] = st

    @property
    def symbols(self) -> list[str]:
        """Symbols seen so far."""
        return list(self._symbols)


def build_candles(
    trades: Iterable[tuple[int, int, int, bool, int]], interval: str, symbol: str = ""
) -> Iterator[CandleClosed]:
    """Final candles of one symbol from ``(ts, price, qty, buyer_is_maker, count)`` tuples.

    Yields one :class:`CandleClosed` per non-empty window, in time order (trades should be in
    time order; late ones are dropped as in :class:`CandleAggregator`).

    Raises:
        ValueError: unknown interval or a non-positive price, quantity or count.
    """
    agg = CandleAggregator((interval,), emit_updates=False)
    add = agg.add_trade
    for ts, price, qty, buyer_is_maker, count in trades:
        yield from add(symbol, ts, price, qty, buyer_is_maker, count)  # type: ignore[misc]
    yield from agg.close_all()


def fill_gaps(candles: Iterable[Candle], end: int | None = None) -> Iterator[Candle]:
    """Insert Binance's carry-forward candles for empty windows between non-empty ones.

    ``candles`` must be one symbol and interval in increasing ``open_time``. Each missing window
    gets ``open = high = low = close = vwap =`` the previous close, volumes and ``trades`` 0,
    ``first_trade_time = last_trade_time = open_time``; it has the type of the candle that
    follows it. With ``end`` (ms UTC, exclusive) empty windows after the last candle up to
    ``end`` are emitted too (as :class:`CandleClosed`). Nothing is emitted before the first
    candle (there is no previous close).

    Raises:
        ValueError: mixed symbols/intervals or open times not increasing.
    """
    prev: Candle | None = None
    ms = 0
    for c in candles:
        if prev is None:
            ms = INTERVAL_MS[c.interval]
        else:
            if c.symbol != prev.symbol or c.interval != prev.interval:
                raise ValueError("fill_gaps needs candles of one symbol and interval")
            if c.open_time <= prev.open_time:
                raise ValueError(f"open times not increasing at {c.open_time}")
            yield from _carry(type(c), prev, prev.open_time + ms, c.open_time, ms)
        yield c
        prev = c
    if prev is not None and end is not None:
        yield from _carry(CandleClosed, prev, prev.open_time + ms, end, ms)


def _carry(cls: type[Candle], prev: Candle, start: int, stop: int, ms: int) -> Iterator[Candle]:
    p = prev.close
    for t in range(start, stop, ms):
        yield cls(prev.symbol, prev.interval, t, t + ms - 1, p, p, p, p, 0, 0, 0, 0, 0, p, t, t)
