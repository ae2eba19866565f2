"""Market signals computed incrementally from closed candles, and users' signal subscriptions.

:class:`SignalEngine` keeps, per ``(symbol, interval)``, the rolling state needed by each
detector and turns every closed :class:`~orrange.marketdata.candles.Candle` into zero or more
:class:`Signal` values. Prices are integer ticks and volumes integer lots (as in the candles);
the volume, move and breakout tests are exact integer/rational comparisons. RSI and MACD come
from talipp (floats over the close in ticks; both are scale-free or reported in ticks).

Bars: candles of one series must arrive in increasing ``open_time``. A candle whose
``open_time`` is not after the previous one is ignored (duplicate or late). Missing windows
(``open_time`` jumps by more than one interval) are filled with Binance's carry-forward bar
(``open = high = low = close =`` previous close, volume 0, as
:func:`~orrange.marketdata.candles.fill_gaps` does) and evaluated like real bars; a gap of more
than ``max_gap_bars`` windows resets the series. Signals fired on a bar carry its
``open_time``.

Detectors (``t`` is the current bar; all thresholds in :class:`SignalConfig`):

* ``volume_spike``: trailing average ``A`` of the volumes of the ``volume_window`` bars before
  ``t``; fires when ``A > 0`` and ``v_t >= volume_spike_ratio * A``. Value ``r = v_t / A``.
  Score ``min(1, (r - ratio) / (volume_full_ratio - ratio))``.
* ``move_up`` / ``move_down``: ``m = (c_t - c_{t-W}) / c_{t-W}`` over ``W = move_window`` bars,
  in basis points. ``move_up`` fires on the bar where ``m >= move_bps`` becomes true (it was
  false or not computable on the previous bar), ``move_down`` where ``m <= -move_bps`` becomes
  true. Value ``m`` in %. Score ``min(1, (|m| - move_bps) / (move_full_bps - move_bps))``.
* ``breakout_up`` / ``breakout_down``: resistance ``R`` = highest high, support ``S`` = lowest
  low of the ``breakout_window`` bars before ``t``. ``breakout_up`` fires when ``c_t > R``,
  ``breakout_down`` when ``c_t < S`` (every such bar: each one sets a new extreme). Value: the
  close in ticks. Score ``min(1, (c_t - R) / (breakout_full_fraction * (R - S)))`` (mirror for
  down), ``1`` when ``R == S``.
* ``rsi_overbought`` / ``rsi_oversold``: Wilder RSI of the close (talipp ``RSI``, period
  ``rsi_period``; RSI is 100 when the average loss is 0). Fires on the bar where RSI rises
  above ``rsi_overbought`` (previous bar ``<=``) or falls below ``rsi_oversold`` (previous
  ``>=``). Value: RSI. Score ``(rsi - ob) / (100 - ob)`` or ``(os - rsi) / os``.
* ``macd_bullish_cross`` / ``macd_bearish_cross``: talipp ``MACD(fast, slow, signal)`` (EMAs
  seeded with the SMA of their first values), histogram ``h = macd - signal`` in ticks. The
  histogram's side is ``+1`` when ``h > macd_epsilon``, ``-1`` when ``h < -macd_epsilon``,
  unchanged in between (so float noise around 0 is not a cross). A cross fires when the side
  flips from ``-1`` to ``+1`` (bullish) or ``+1`` to ``-1`` (bearish). Value: ``h``. Score
  ``min(1, |h_t - h_{t-1}| / (macd_full_bps * c_t / 10000))``.

RSI and MACD signals are emitted only from bar number ``indicator_warmup`` of a series on (the
indicators are updated from the first bar): exponential smoothing forgets its seed as
``((n-1)/n)^k`` for RSI and ``(1 - 2/(n+1))^k`` for an EMA, so after the default 250 bars the
seed convention changes RSI and MACD by less than 1e-6 relative. An actor primes a series at
startup by feeding stored history through :meth:`SignalEngine.on_candle`.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Mapping
from fractions import Fraction

import msgspec
from talipp.indicators import MACD, RSI

from orrange.marketdata.candles import INTERVAL_MS, Candle, CandleUpdated
from orrange.markets import MarketSpec

__all__ = [
    "Signal",
    "SignalConfig",
    "SignalEngine",
    "SignalMatch",
    "SignalSubscription",
    "SignalSubscriptions",
    "SignalType",
]


class SignalType(enum.StrEnum):
    """Signal types (stable lowercase wire names). Declaration order is emission order."""

    VOLUME_SPIKE = "volume_spike"
    MOVE_UP = "move_up"
    MOVE_DOWN = "move_down"
    BREAKOUT_UP = "breakout_up"
    BREAKOUT_DOWN = "breakout_down"
    RSI_OVERBOUGHT = "rsi_overbought"
    RSI_OVERSOLD = "rsi_oversold"
    MACD_BULLISH_CROSS = "macd_bullish_cross"
    MACD_BEARISH_CROSS = "macd_bearish_cross"


class Signal(msgspec.Struct, frozen=True, gc=False):
    """One market signal.

    Attributes:
        type: :class:`SignalType`.
        symbol: market symbol.
        interval: candle interval (``"1m"``, ``"5m"`` ...).
        open_time: open time of the bar that produced it, ms UTC.
        score: strength in ``[0, 1]`` (formula per type in the module docstring).
        value: the measured quantity (volume ratio, move in %, close in ticks, RSI, MACD
            histogram in ticks).
        explanation: one line for humans.
    """

    type: SignalType
    symbol: str
    interval: str
    open_time: int
    score: float
    value: float
    explanation: str


class SignalConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Thresholds of the detectors (see the module docstring for how each is used).

    Raises (on construction):
        ValueError: a window or period below 1 (below 2 for RSI; MACD needs
            ``fast < slow``), a full-score level not beyond its threshold, RSI levels not in
            ``0 < oversold < overbought < 100``, or a negative epsilon.
    """

    volume_window: int = 20
    volume_spike_ratio: float = 3.0
    volume_full_ratio: float = 10.0
    move_window: int = 15
    move_bps: int = 100
    move_full_bps: int = 300
    breakout_window: int = 20
    breakout_full_fraction: float = 0.5
    rsi_period: int = 14
    rsi_overbought: float = 70.0
    rsi_oversold: float = 30.0
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    macd_epsilon: float = 1e-6
    macd_full_bps: float = 5.0
    indicator_warmup: int = 250
    max_gap_bars: int = 10_000

    def __post_init__(self) -> None:
        windows = (
            self.volume_window,
            self.move_window,
            self.breakout_window,
            self.macd_fast,
            self.macd_signal,
            self.max_gap_bars,
        )
        if min(windows) < 1 or self.rsi_period < 2 or self.macd_slow <= self.macd_fast:
            raise ValueError("windows and periods must be >= 1 (RSI >= 2, macd_slow > fast)")
        if not self.volume_full_ratio > self.volume_spike_ratio > 0:
            raise ValueError("need 0 < volume_spike_ratio < volume_full_ratio")
        if not self.move_full_bps > self.move_bps > 0:
            raise ValueError("need 0 < move_bps < move_full_bps")
        if not self.breakout_full_fraction > 0 or not self.macd_full_bps > 0:
            raise ValueError("breakout_full_fraction and macd_full_bps must be positive")
        if not 0 < self.rsi_oversold < self.rsi_overbought < 100:
            raise ValueError("need 0 < rsi_oversold < rsi_overbought < 100")
        if self.macd_epsilon < 0 or self.indicator_warmup < 0:
            raise ValueError("macd_epsilon and indicator_warmup must not be negative")


def _clamp01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


class _Series:
    """Rolling state of one (symbol, interval)."""

    __slots__ = (
        "bars",
        "closes",
        "highs",
        "last_close",
        "last_open",
        "lows",
        "macd",
        "macd_hist",
        "macd_side",
        "move_down",
        "move_up",
        "rsi",
        "rsi_prev",
        "vol_sum",
        "vols",
    )

    def __init__(self, cfg: SignalConfig) -> None:
        self.bars = 0
        self.last_open = -1
        self.last_close = 0
        self.vols: deque[int] = deque()
        self.vol_sum = 0
        self.closes: deque[int] = deque(maxlen=cfg.move_window + 1)
        self.move_up = False
        self.move_down = False
        # monotonic deques of (bar number, price): rolling max high / min low
        self.highs: deque[tuple[int, int]] = deque()
        self.lows: deque[tuple[int, int]] = deque()
        self.rsi = RSI(cfg.rsi_period)
        self.rsi_prev: float | None = None
        self.macd = MACD(cfg.macd_fast, cfg.macd_slow, cfg.macd_signal)
        self.macd_hist: float | None = None
        self.macd_side = 0


class SignalEngine:
    """Incremental signal detectors for many ``(symbol, interval)`` series.

    Usage::

        engine = SignalEngine(SignalConfig(), specs={"XRP-ETH": spec})
        for candle in closed_candles:            # CandleClosed events, per series in order
            for signal in engine.on_candle(candle):
                publish(signal)

    ``specs`` (optional) only formats prices as decimals in explanations; without a spec
    they are written in ticks. Memory per series is ``O(max window)``.
    """

    def __init__(
        self, config: SignalConfig | None = None, specs: Mapping[str, MarketSpec] | None = None
    ) -> None:
        self.config = config or SignalConfig()
        self._specs = dict(specs or {})
        self._series: dict[tuple[str, str], _Series] = {}
        cfg = self.config
        # talipp keeps its full input history; trim it beyond what any indicator looks back
        self._keep = 2 * max(cfg.rsi_period, cfg.macd_slow + cfg.macd_signal) + 16
        self._spike_ratio = Fraction(cfg.volume_spike_ratio)

    def on_candle(self, candle: Candle) -> list[Signal]:
        """Feed one closed candle; returns the signals of its bar (and of any carry-forward
        bars inserted for missing windows before it), in bar order then :class:`SignalType`
        order.

        Raises:
            KeyError: ``candle.interval`` is not one of ``INTERVAL_MS``.
            ValueError: ``candle`` is a :class:`~orrange.marketdata.candles.CandleUpdated`
                (a window still open; only final candles make signals).
        """
        if isinstance(candle, CandleUpdated):
            raise ValueError("signals are computed from closed candles, not CandleUpdated")
        ms = INTERVAL_MS[candle.interval]
        key = (candle.symbol, candle.interval)
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = _Series(self.config)
        out: list[Signal] = []
        if s.bars:
            if candle.open_time <= s.last_open:
                return out
            missing = (candle.open_time - s.last_open) // ms - 1
            if missing > self.config.max_gap_bars:
                s = self._series[key] = _Series(self.config)
            else:
                p = s.last_close
                for _ in range(missing):
                    self._bar(s, candle.symbol, candle.interval, s.last_open + ms, p, p, p, 0, out)
        self._bar(
            s,
            candle.symbol,
            candle.interval,
            candle.open_time,
            candle.high,
            candle.low,
            candle.close,
            candle.volume,
            out,
        )
        return out

    def on_candles(self, candles: Iterable[Candle]) -> list[Signal]:
        """:meth:`on_candle` over many candles; the concatenated signals."""
        out: list[Signal] = []
        for c in candles:
            out.extend(self.on_candle(c))
        return out

    # ------------------------------------------------------------------ detectors
    def _price(self, symbol: str, ticks: int) -> str:
        spec = self._specs.get(symbol)
        return spec.ticks_to_price(ticks) if spec is not None else f"{ticks} ticks"

    def _bar(
        self,
        s: _Series,
        symbol: str,
        interval: str,
        open_time: int,
        high: int,
        low: int,
        close: int,
        volume: int,
        out: list[Signal],
    ) -> None:
        cfg = self.config
        n = s.bars  # index of this bar
        s.bars = n + 1
        s.last_open = open_time
        s.last_close = close

        def emit(kind: SignalType, score: float, value: float, text: str) -> None:
            out.append(Signal(kind, symbol, interval, open_time, _clamp01(score), value, text))

        # volume spike: against the previous volume_window bars
        w = cfg.volume_window
        if len(s.vols) == w and s.vol_sum > 0 and volume * w >= self._spike_ratio * s.vol_sum:
            ratio = volume * w / s.vol_sum
            lo, hi = cfg.volume_spike_ratio, cfg.volume_full_ratio
            emit(
                SignalType.VOLUME_SPIKE,
                (ratio - lo) / (hi - lo),
                ratio,
                f"volume {volume} is {ratio:.2f}x the {w}-bar average {s.vol_sum / w:.1f}",
            )
        s.vols.append(volume)
        s.vol_sum += volume
        if len(s.vols) > w:
            s.vol_sum -= s.vols.popleft()

        # significant move over move_window bars (edge-triggered per direction)
        s.closes.append(close)
        up = down = False
        if len(s.closes) == cfg.move_window + 1:
            base = s.closes[0]
            diff_bps = (close - base) * 10_000  # compare diff_bps with move_bps * base
            up = diff_bps >= cfg.move_bps * base
            down = diff_bps <= -cfg.move_bps * base
            if (up and not s.move_up) or (down and not s.move_down):
                pct = (close - base) * 100 / base
                score = (abs(pct) * 100 - cfg.move_bps) / (cfg.move_full_bps - cfg.move_bps)
                verb = "rose" if up else "fell"
                emit(
                    SignalType.MOVE_UP if up else SignalType.MOVE_DOWN,
                    score,
                    pct,
                    f"close {verb} {abs(pct):.2f}% over {cfg.move_window} bars "
                    f"({self._price(symbol, base)} -> {self._price(symbol, close)})",
                )
        s.move_up, s.move_down = up, down

        # breakout against the previous breakout_window bars
        L = cfg.breakout_window
        highs, lows = s.highs, s.lows
        while highs and highs[0][0] < n - L:
            highs.popleft()
        while lows and lows[0][0] < n - L:
            lows.popleft()
        if n >= L:
            res, sup = highs[0][1], lows[0][1]
            width = res - sup
            if close > res:
                emit(
                    SignalType.BREAKOUT_UP,
                    (close - res) / (cfg.breakout_full_fraction * width) if width else 1.0,
                    float(close),
                    f"close {self._price(symbol, close)} broke above the {L}-bar high "
                    f"{self._price(symbol, res)}",
                )
            elif close < sup:
                emit(
                    SignalType.BREAKOUT_DOWN,
                    (sup - close) / (cfg.breakout_full_fraction * width) if width else 1.0,
                    float(close),
                    f"close {self._price(symbol, close)} broke below the {L}-bar low "
                    f"{self._price(symbol, sup)}",
                )
        while highs and highs[-1][1] <= high:
            highs.pop()
        highs.append((n, high))
        while lows and lows[-1][1] >= low:
            lows.pop()
        lows.append((n, low))

        # RSI zone entries
        live = n >= cfg.indicator_warmup
        s.rsi.add(float(close))
        rsi = s.rsi[-1]
        prev = s.rsi_prev
        if live and rsi is not None and prev is not None:
            ob, os_ = cfg.rsi_overbought, cfg.rsi_oversold
            if rsi > ob >= prev:
                emit(
                    SignalType.RSI_OVERBOUGHT,
                    (rsi - ob) / (100.0 - ob),
                    rsi,
                    f"RSI({cfg.rsi_period}) rose to {rsi:.1f}, above {ob:g} (overbought)",
                )
            elif rsi < os_ <= prev:
                emit(
                    SignalType.RSI_OVERSOLD,
                    (os_ - rsi) / os_,
                    rsi,
                    f"RSI({cfg.rsi_period}) fell to {rsi:.1f}, below {os_:g} (oversold)",
                )
        s.rsi_prev = rsi

        # MACD histogram side flips
        s.macd.add(float(close))
        mv = s.macd[-1]
        if mv is not None and mv.histogram is not None:
            h = float(mv.histogram)
            side = 1 if h > cfg.macd_epsilon else -1 if h < -cfg.macd_epsilon else s.macd_side
            prev_h = s.macd_hist
            if live and prev_h is not None and s.macd_side and side == -s.macd_side:
                scale = cfg.macd_full_bps * close / 10_000
                bull = side > 0
                emit(
                    SignalType.MACD_BULLISH_CROSS if bull else SignalType.MACD_BEARISH_CROSS,
                    abs(h - prev_h) / scale if scale > 0 else 1.0,
                    h,
                    f"MACD({cfg.macd_fast},{cfg.macd_slow},{cfg.macd_signal}) crossed "
                    f"{'above' if bull else 'below'} its signal line (histogram {h:+.2f} ticks)",
                )
            s.macd_side = side
            s.macd_hist = h

        if s.bars % 1024 == 0:
            excess = len(s.rsi.input_values) - self._keep
            if excess > 0:
                s.rsi.purge_oldest(excess)
            excess = len(s.macd.input_values) - self._keep
            if excess > 0:
                s.macd.purge_oldest(excess)


# --------------------------------------------------------------------------- subscriptions
class SignalSubscription(msgspec.Struct, frozen=True, kw_only=True):
    """A user's wish to be alerted on signals.

    Attributes:
        id: subscription id (unique within a :class:`SignalSubscriptions`).
        user: user id.
        types: signal types wanted; empty means all.
        symbols: markets wanted; empty means all.
        intervals: candle intervals wanted; empty means all.
        min_score: only signals with ``score >= min_score`` (in ``[0, 1]``).
    """

    id: int
    user: str
    types: frozenset[SignalType] = frozenset()
    symbols: frozenset[str] = frozenset()
    intervals: frozenset[str] = frozenset()
    min_score: float = 0.0


class SignalMatch(msgspec.Struct, frozen=True):
    """One user to notify for a signal, with the ids of their matching subscriptions
    (ascending)."""

    user: str
    subscription_ids: tuple[int, ...]


class SignalSubscriptions:
    """Pure matching of signals to users' subscriptions.

    Subscriptions are bucketed by ``(symbol or any, type or any)``, so matching a signal
    looks at four buckets, not at every subscription.
    """

    def __init__(self) -> None:
        self._subs: dict[int, SignalSubscription] = {}
        self._buckets: dict[tuple[str | None, SignalType | None], set[int]] = {}

    def __len__(self) -> int:
        return len(self._subs)

    @staticmethod
    def _keys(sub: SignalSubscription) -> list[tuple[str | None, SignalType | None]]:
        symbols: list[str | None] = [*sorted(sub.symbols)] if sub.symbols else [None]
        types: list[SignalType | None] = [*sorted(sub.types)] if sub.types else [None]
        return [(s, t) for s in symbols for t in types]

    def add(self, sub: SignalSubscription) -> None:
        """Add (or replace, by id) a subscription.

        Raises:
            ValueError: ``min_score`` outside ``[0, 1]`` or an empty user.
        """
        if not 0.0 <= sub.min_score <= 1.0:
            raise ValueError("min_score must be in [0, 1]")
        if not sub.user:
            raise ValueError("user must not be empty")
        self.remove(sub.id)
        self._subs[sub.id] = sub
        for k in self._keys(sub):
            self._buckets.setdefault(k, set()).add(sub.id)

    def remove(self, sub_id: int) -> SignalSubscription | None:
        """Remove a subscription; returns it, or ``None`` if unknown."""
        sub = self._subs.pop(sub_id, None)
        if sub is not None:
            for k in self._keys(sub):
                bucket = self._buckets[k]
                bucket.discard(sub_id)
                if not bucket:
                    del self._buckets[k]
        return sub

    def match(self, signal: Signal) -> list[SignalMatch]:
        """The users to notify for ``signal``, ordered by user id."""
        found: dict[str, list[int]] = {}
        for k in (
            (signal.symbol, signal.type),
            (signal.symbol, None),
            (None, signal.type),
            (None, None),
        ):
            for sid in self._buckets.get(k, ()):
                sub = self._subs[sid]
                if sub.intervals and signal.interval not in sub.intervals:
                    continue
                if signal.score < sub.min_score:
                    continue
                found.setdefault(sub.user, []).append(sid)
        return [SignalMatch(u, tuple(sorted(found[u]))) for u in sorted(found)]
