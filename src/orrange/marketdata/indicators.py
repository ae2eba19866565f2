"""Technical indicators per symbol and interval, updated incrementally per candle (talipp).

Indicators are **analytics, not money**: their outputs are floats, in price units (quote per
base) for SMA, EMA, MACD, Bollinger Bands, VWAP and ATR, and 0..100 for RSI. The inputs are the
exact candles of :mod:`orrange.marketdata.candles`, converted from ticks and lots to floats
only here (``ticks * tick_size`` rounded once to the nearest float). Nothing computed here
feeds back into prices, quantities or fees.

Computation is done by talipp (https://nardew.github.io/talipp/), an incremental library:
each new candle costs O(1) per indicator (SMA/BB O(period)), and a provisional update of the
open candle replaces the last input instead of appending. Definitions (those of talipp,
checked in the tests against independent implementations on Binance's XRP/ETH klines):

* SMA(n): mean of the last ``n`` closes.
* EMA(n): first value SMA(n), then ``EMA = a * close + (1 - a) * EMA_prev``, ``a = 2/(n+1)``.
* RSI(n): Wilder's RSI ``100 - 100 / (1 + avg_gain / avg_loss)`` with Wilder smoothing
  ``avg = (avg_prev * (n-1) + x) / n`` (J. W. Wilder, *New Concepts in Technical Trading
  Systems*, 1978); the first averages are the means of the first ``n`` changes (talipp
  writes this as a mean of ``n - 1`` changes followed by one smoothing step, which is the same
  value).
* MACD(fast, slow, signal): ``EMA_fast - EMA_slow``, its EMA(signal) and the difference
  (histogram) (G. Appel).
* Bollinger Bands(n, k): SMA(n) ± k * population standard deviation of the last ``n`` closes.
* ATR(n): Wilder's average true range; true range ``max(H - L, |H - C_prev|, |L - C_prev|)``
  (``H - L`` on the first bar), first value the mean of the first ``n`` ranges, then Wilder
  smoothing.
* VWAP: ``Σ typical_price * volume / Σ volume`` with ``typical_price = (H + L + C) / 3``,
  restarting at every UTC window of ``vwap_anchor`` (default each UTC day: session VWAP).
  The exact traded VWAP of one candle is :attr:`~orrange.marketdata.candles.Candle.vwap`.

Empty windows: the candle builder emits only non-empty windows; :class:`IndicatorSet` inserts
Binance's carry-forward bars (O=H=L=C=previous close, volume 0) for skipped windows so that a
period of ``n`` always spans ``n`` intervals of time, as on the exchange's charts.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Final

import msgspec
from talipp.indicators import ATR, BB, EMA, MACD, RSI, SMA, VWAP
from talipp.ohlcv import OHLCV

from orrange.marketdata.candles import INTERVAL_MS, Candle, CandleUpdated

__all__ = ["INDICATOR_NAMES", "IndicatorConfig", "IndicatorSet", "IndicatorValues"]

#: Indicator groups selectable by name (the API's ``names=``) and the fields each one fills.
INDICATOR_NAMES: Final[dict[str, tuple[str, ...]]] = {
    "sma": ("sma",),
    "ema": ("ema",),
    "rsi": ("rsi",),
    "macd": ("macd", "macd_signal", "macd_histogram"),
    "bb": ("bb_lower", "bb_middle", "bb_upper"),
    "vwap": ("vwap",),
    "atr": ("atr",),
}


class IndicatorConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Periods and parameters (bars of the set's interval).

    Attributes:
        sma_period, ema_period, rsi_period, atr_period: periods in bars.
        macd_fast, macd_slow, macd_signal: MACD periods (fast < slow).
        bb_period: Bollinger period; ``bb_std_mult``: band width in standard deviations.
        vwap_anchor: interval whose UTC windows restart the VWAP (``"1d"`` = session VWAP).
        history: bars kept in memory; older ones are purged (must exceed 4x the longest
            period so purging never changes a value).

    Raises:
        ValueError: on construction, for a non-positive period, ``macd_fast >= macd_slow``,
            an unknown anchor or a too small ``history``.
    """

    sma_period: int = 20
    ema_period: int = 20
    rsi_period: int = 14
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    bb_period: int = 20
    bb_std_mult: float = 2.0
    atr_period: int = 14
    vwap_anchor: str = "1d"
    history: int = 1_000

    def __post_init__(self) -> None:
        periods = (
            self.sma_period,
            self.ema_period,
            self.rsi_period,
            self.macd_fast,
            self.macd_slow,
            self.macd_signal,
            self.bb_period,
            self.atr_period,
        )
        if min(periods) < 1 or self.bb_std_mult <= 0:
            raise ValueError("indicator periods and bb_std_mult must be positive")
        if self.rsi_period < 2:
            raise ValueError("rsi_period must be at least 2")
        if self.macd_fast >= self.macd_slow:
            raise ValueError("macd_fast must be shorter than macd_slow")
        if self.vwap_anchor not in INTERVAL_MS:
            raise ValueError(f"unknown vwap_anchor {self.vwap_anchor!r}")
        longest = max(*periods, self.macd_slow + self.macd_signal)
        if self.history <= 4 * longest + 8:
            raise ValueError(f"history must exceed {4 * longest + 8} bars for these periods")


class IndicatorValues(msgspec.Struct, frozen=True, gc=False):
    """Latest indicator values after a candle (``None`` while an indicator warms up).

    Attributes:
        symbol, interval: the series.
        open_time: open time (ms UTC) of the candle the values include.
        final: false while that candle is still open (values provisional).
        sma, ema, macd, macd_signal, macd_histogram, bb_lower, bb_middle, bb_upper, vwap,
            atr: floats in price units (quote per base).
        rsi: float in 0..100.
    """

    symbol: str
    interval: str
    open_time: int
    final: bool
    sma: float | None = None
    ema: float | None = None
    rsi: float | None = None
    macd: float | None = None
    macd_signal: float | None = None
    macd_histogram: float | None = None
    bb_lower: float | None = None
    bb_middle: float | None = None
    bb_upper: float | None = None
    vwap: float | None = None
    atr: float | None = None

    def select(self, names: Iterable[str]) -> dict[str, float | None]:
        """The fields of the named groups (keys of :data:`INDICATOR_NAMES`), e.g.
        ``select(["rsi", "bb"])`` -> ``{"rsi": .., "bb_lower": .., "bb_middle": ..,
        "bb_upper": ..}``.

        Raises:
            KeyError: an unknown name.
        """
        out: dict[str, float | None] = {}
        for name in names:
            for field in INDICATOR_NAMES[name]:
                out[field] = getattr(self, field)
        return out


def _last(ind: Any) -> Any:
    return ind[-1] if len(ind) else None


class IndicatorSet:
    """SMA, EMA, RSI, MACD, Bollinger Bands, VWAP and ATR of one symbol and interval.

    Feed every :class:`~orrange.marketdata.candles.CandleUpdated` (provisional, replaces the
    open bar) and/or :class:`~orrange.marketdata.candles.CandleClosed` (final) of the series
    in time order to :meth:`update`. A talipp update costs tens of microseconds, so an actor
    updates on every close and throttles provisional updates (e.g. once per batch).

    Args:
        symbol, interval: the series (``interval`` one of the candle intervals).
        tick_size, lot_size: the market's grid (decimal strings), to turn ticks and lots into
            price and quantity floats.
        config: periods; defaults are the common ones (20, 20, 14, 12/26/9, 20/2, 14).

    Raises:
        ValueError: unknown interval or a non-positive tick or lot size.

    Example::

        ind = IndicatorSet("XRP-ETH", "1m", "0.00000001", "0.00000001")
        for ev in aggregator.add_trade("XRP-ETH", ts, price, qty):
            if ev.interval == "1m" and isinstance(ev, CandleClosed):
                values = ind.update(ev)   # IndicatorValues(rsi=..., bb_upper=..., ...)
        ind.latest.select(["rsi", "macd"])
    """

    def __init__(
        self,
        symbol: str,
        interval: str,
        tick_size: str,
        lot_size: str,
        config: IndicatorConfig | None = None,
    ) -> None:
        if interval not in INTERVAL_MS:
            raise ValueError(f"unknown interval {interval!r}")
        tick, lot = Decimal(tick_size), Decimal(lot_size)
        if not (tick > 0 and lot > 0):
            raise ValueError("tick_size and lot_size must be positive")
        cfg = config if config is not None else IndicatorConfig()
        self.symbol = symbol
        self.interval = interval
        self.config = cfg
        self._ms = INTERVAL_MS[interval]
        self._anchor_ms = INTERVAL_MS[cfg.vwap_anchor]
        self._tick = tick
        self._lot = lot
        self._sma = SMA(cfg.sma_period)
        self._ema = EMA(cfg.ema_period)
        self._rsi = RSI(cfg.rsi_period)
        self._macd = MACD(cfg.macd_fast, cfg.macd_slow, cfg.macd_signal)
        self._bb = BB(cfg.bb_period, cfg.bb_std_mult)
        self._atr = ATR(cfg.atr_period)
        self._vwap = VWAP()
        self._vwap_anchor = -1
        self._last_open = -1
        self._last_close = 0
        self._count = 0  # bars held by talipp (capped by purging)
        self._total = 0
        self._latest: IndicatorValues | None = None

    @property
    def latest(self) -> IndicatorValues | None:
        """Values after the last candle fed (``None`` before the first)."""
        return self._latest

    @property
    def bars(self) -> int:
        """Bars applied so far, inserted carry-forward bars included."""
        return self._total

    @property
    def held(self) -> int:
        """Bars currently kept in memory (at most ``2 * config.history``)."""
        return self._count

    def update(self, candle: Candle) -> IndicatorValues:
        """Apply a candle of this series and return the new values.

        A candle with the open time of the last one replaces it (provisional update or its
        close); a later one appends, after carry-forward bars for any skipped windows.

        Raises:
            ValueError: another symbol or interval, or an open time before the last one.
        """
        if candle.symbol != self.symbol or candle.interval != self.interval:
            raise ValueError(
                f"candle {candle.symbol} {candle.interval} fed to {self.symbol} {self.interval}"
            )
        t = candle.open_time
        if t < self._last_open:
            raise ValueError(f"candle {t} is older than the last one ({self._last_open})")
        tick = self._tick
        o = float(candle.open * tick)
        h = float(candle.high * tick)
        lo = float(candle.low * tick)
        c = float(candle.close * tick)
        v = float(candle.volume * self._lot)
        if t == self._last_open:
            self._apply(OHLCV(o, h, lo, c, v), replace=True)
        else:
            if self._last_open >= 0:
                prev = float(self._last_close * tick)
                for gap in range(self._last_open + self._ms, t, self._ms):
                    self._roll_vwap(gap)
                    self._apply(OHLCV(prev, prev, prev, prev, 0.0), replace=False)
            self._roll_vwap(t)
            self._apply(OHLCV(o, h, lo, c, v), replace=False)
            self._last_open = t
            self._purge()
        self._last_close = candle.close
        self._latest = self._values(t, final=not isinstance(candle, CandleUpdated))
        return self._latest

    # ---------------------------------------------------------------- internals
    def _roll_vwap(self, open_time: int) -> None:
        anchor = open_time - open_time % self._anchor_ms
        if anchor != self._vwap_anchor:
            self._vwap_anchor = anchor
            self._vwap = VWAP()

    def _apply(self, bar: OHLCV, replace: bool) -> None:
        close = bar.close
        if replace:
            for ind in (self._sma, self._ema, self._rsi, self._macd, self._bb):
                ind.update(close)
            for ind in (self._atr, self._vwap):
                ind.update(bar)
        else:
            for ind in (self._sma, self._ema, self._rsi, self._macd, self._bb):
                ind.add(close)
            for ind in (self._atr, self._vwap):
                ind.add(bar)
            self._count += 1
            self._total += 1

    def _purge(self) -> None:
        keep = self.config.history
        if self._count > 2 * keep:
            n = self._count - keep
            for ind in (self._sma, self._ema, self._rsi, self._macd, self._bb, self._atr):
                ind.purge_oldest(n)
            if len(self._vwap.input_values) > keep:
                self._vwap.purge_oldest(len(self._vwap.input_values) - keep)
            self._count = keep

    def _values(self, open_time: int, final: bool) -> IndicatorValues:
        macd = _last(self._macd)
        bb = _last(self._bb)
        return IndicatorValues(
            self.symbol,
            self.interval,
            open_time,
            final,
            sma=_last(self._sma),
            ema=_last(self._ema),
            rsi=_last(self._rsi),
            macd=macd.macd if macd is not None else None,
            macd_signal=macd.signal if macd is not None else None,
            macd_histogram=macd.histogram if macd is not None else None,
            bb_lower=bb.lb if bb is not None else None,
            bb_middle=bb.cb if bb is not None else None,
            bb_upper=bb.ub if bb is not None else None,
            vwap=_last(self._vwap),
            atr=_last(self._atr),
        )
