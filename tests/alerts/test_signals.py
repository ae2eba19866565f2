"""Signals on real Binance XRP/ETH klines, checked against a straightforward recomputation.

The reference below works on whole lists with plain loops (no rolling state, no talipp):
trailing sums by slicing, rolling high/low by ``max``/``min`` over slices, Wilder's RSI seeded
with the simple mean of the first ``period`` changes (the textbook convention, different from
talipp's seed: the engine's warmup makes that difference vanish) and EMAs seeded with an SMA.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orrange.alerts.signals import (
    Signal,
    SignalConfig,
    SignalEngine,
    SignalMatch,
    SignalSubscription,
    SignalSubscriptions,
    SignalType,
)
from orrange.marketdata.candles import INTERVAL_MS, Candle, CandleUpdated
from orrange.markets import MarketSpec

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance"
SYMBOL = "XRP-ETH"
SPEC = MarketSpec(
    symbol=SYMBOL, base="XRP", quote="ETH", tick_size="0.00000001", lot_size="1",
    min_qty="1", max_qty="100000000",
)  # fmt: skip

Bar = tuple[int, int, int, int, int]  # open_time, high, low, close, volume (ticks, lots)


def load(interval: str) -> list[Bar]:
    rows = json.loads((DATA / f"XRP_ETH-{interval}.json").read_text())
    out: list[Bar] = []
    for t, _o, h, lo, c, v in rows:
        assert float(v).is_integer()
        out.append(
            (t, SPEC.price_to_ticks(Decimal(str(h))), SPEC.price_to_ticks(Decimal(str(lo))),
             SPEC.price_to_ticks(Decimal(str(c))), int(v))
        )  # fmt: skip
    return out


def candles(interval: str, bars: list[Bar]) -> list[Candle]:
    ms = INTERVAL_MS[interval]
    return [
        Candle(SYMBOL, interval, t, t + ms - 1, c, h, lo, c, v, 0, 0, 0, 0, c, t, t)
        for t, h, lo, c, v in bars
    ]


def ema(values: list[float], period: int) -> list[float | None]:
    out: list[float | None] = [None] * len(values)
    if len(values) < period:
        return out
    e = sum(values[:period]) / period
    out[period - 1] = e
    k = 2.0 / (period + 1)
    for i in range(period, len(values)):
        e = k * values[i] + (1 - k) * e
        out[i] = e
    return out


def wilder_rsi(closes: list[int], period: int) -> list[float | None]:
    out: list[float | None] = [None] * len(closes)
    gains = [0.0] + [float(max(closes[i] - closes[i - 1], 0)) for i in range(1, len(closes))]
    losses = [0.0] + [float(max(closes[i - 1] - closes[i], 0)) for i in range(1, len(closes))]
    if len(closes) <= period:
        return out
    g = sum(gains[1 : period + 1]) / period
    lo = sum(losses[1 : period + 1]) / period
    for i in range(period, len(closes)):
        if i > period:
            g = (g * (period - 1) + gains[i]) / period
            lo = (lo * (period - 1) + losses[i]) / period
        out[i] = 100.0 if lo == 0 else 100.0 - 100.0 / (1.0 + g / lo)
    return out


def reference_signals(bars: list[Bar], cfg: SignalConfig) -> list[tuple[SignalType, int, float]]:
    """(type, open_time, score) of every signal, recomputed from the definitions."""
    T = [b[0] for b in bars]
    H = [b[1] for b in bars]
    Lo = [b[2] for b in bars]
    C = [b[3] for b in bars]
    V = [b[4] for b in bars]
    n = len(bars)
    found: list[tuple[int, int, SignalType, float]] = []  # (bar, type order, type, score)
    order = {t: i for i, t in enumerate(SignalType)}

    def add(i: int, kind: SignalType, score: float) -> None:
        found.append((i, order[kind], kind, min(1.0, max(0.0, score))))

    W = cfg.volume_window
    for i in range(W, n):
        s = sum(V[i - W : i])
        if s > 0 and Fraction(V[i] * W, s) >= Fraction(cfg.volume_spike_ratio):
            r = V[i] * W / s
            lo_, hi_ = cfg.volume_spike_ratio, cfg.volume_full_ratio
            add(i, SignalType.VOLUME_SPIKE, (r - lo_) / (hi_ - lo_))

    M = cfg.move_window

    def move(i: int) -> int:
        if i < M:
            return 0
        base = C[i - M]
        if (C[i] - base) * 10_000 >= cfg.move_bps * base:
            return 1
        if (C[i] - base) * 10_000 <= -cfg.move_bps * base:
            return -1
        return 0

    for i in range(M, n):
        d, before = move(i), move(i - 1)
        if d != 0 and d != before:
            pct = abs(C[i] - C[i - M]) / C[i - M] * 10_000
            kind = SignalType.MOVE_UP if d > 0 else SignalType.MOVE_DOWN
            add(i, kind, (pct - cfg.move_bps) / (cfg.move_full_bps - cfg.move_bps))

    B = cfg.breakout_window
    for i in range(B, n):
        res, sup = max(H[i - B : i]), min(Lo[i - B : i])
        full = cfg.breakout_full_fraction * (res - sup)
        if C[i] > res:
            add(i, SignalType.BREAKOUT_UP, (C[i] - res) / full if full else 1.0)
        elif C[i] < sup:
            add(i, SignalType.BREAKOUT_DOWN, (sup - C[i]) / full if full else 1.0)

    rsi = wilder_rsi(C, cfg.rsi_period)
    ob, os_ = cfg.rsi_overbought, cfg.rsi_oversold
    for i in range(max(cfg.indicator_warmup, 1), n):
        r, p = rsi[i], rsi[i - 1]
        if r is None or p is None:
            continue
        if r > ob >= p:
            add(i, SignalType.RSI_OVERBOUGHT, (r - ob) / (100 - ob))
        elif r < os_ <= p:
            add(i, SignalType.RSI_OVERSOLD, (os_ - r) / os_)

    closes = [float(c) for c in C]
    fast, slow = ema(closes, cfg.macd_fast), ema(closes, cfg.macd_slow)
    start = cfg.macd_slow - 1
    macd = [f - s for f, s in zip(fast[start:], slow[start:])]  # type: ignore[operator]
    sig = ema(macd, cfg.macd_signal)
    hist: list[float | None] = [None] * n
    for j, (m, s) in enumerate(zip(macd, sig)):
        if s is not None:
            hist[start + j] = m - s
    side = 0
    for i in range(n):
        h = hist[i]
        if h is None:
            continue
        new = 1 if h > cfg.macd_epsilon else -1 if h < -cfg.macd_epsilon else side
        prev_h = hist[i - 1] if i > 0 else None
        if i >= cfg.indicator_warmup and prev_h is not None and side != 0 and new == -side:
            kind = SignalType.MACD_BULLISH_CROSS if new > 0 else SignalType.MACD_BEARISH_CROSS
            add(i, kind, abs(h - prev_h) / (cfg.macd_full_bps * C[i] / 10_000))
        side = new

    found.sort(key=lambda f: (f[0], f[1]))
    return [(kind, T[i], score) for i, _, kind, score in found]


CONFIGS = {
    "default": SignalConfig(),
    "tight": SignalConfig(
        volume_window=10, volume_spike_ratio=2.5, volume_full_ratio=6.0, move_window=5,
        move_bps=40, move_full_bps=120, breakout_window=8, rsi_period=9, rsi_overbought=65.0,
        rsi_oversold=35.0, macd_fast=5, macd_slow=13, macd_signal=4, indicator_warmup=200,
    ),
}  # fmt: skip


@pytest.mark.parametrize("interval", ["1m", "5m"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_signals_match_independent_computation(interval: str, config: str) -> None:
    cfg = CONFIGS[config]
    bars = load(interval)
    got = SignalEngine(cfg).on_candles(candles(interval, bars))
    want = reference_signals(bars, cfg)
    assert [(s.type, s.open_time) for s in got] == [(k, t) for k, t, _ in want]
    for s, (_, _, score) in zip(got, want):
        assert s.symbol == SYMBOL and s.interval == interval
        assert 0.0 <= s.score <= 1.0
        assert math.isclose(s.score, score, rel_tol=1e-6, abs_tol=1e-6), s
        assert s.explanation and "\n" not in s.explanation
    # the real data exercises every detector in both directions somewhere
    kinds = {s.type for s in got}
    assert {SignalType.VOLUME_SPIKE, SignalType.BREAKOUT_UP, SignalType.BREAKOUT_DOWN} <= kinds
    assert {SignalType.MOVE_UP, SignalType.RSI_OVERBOUGHT, SignalType.MACD_BULLISH_CROSS} <= kinds
    assert SignalType.MACD_BEARISH_CROSS in kinds


def test_rsi_values_agree_with_wilder_after_warmup() -> None:
    cfg = SignalConfig()
    bars = load("1m")
    rsi = wilder_rsi([b[3] for b in bars], cfg.rsi_period)
    at = {b[0]: i for i, b in enumerate(bars)}
    got = [
        s
        for s in SignalEngine(cfg).on_candles(candles("1m", bars))
        if s.type in (SignalType.RSI_OVERBOUGHT, SignalType.RSI_OVERSOLD)
    ]
    assert len(got) > 20
    for s in got:
        assert abs(s.value - rsi[at[s.open_time]]) < 1e-6  # type: ignore[operator]


def test_missing_windows_are_carried_forward() -> None:
    """Binance's empty 1m bars are exactly carry-forward bars: dropping them changes nothing."""
    bars = load("1m")
    full = SignalEngine().on_candles(candles("1m", bars))
    sparse_bars = [b for b in bars if b[4] > 0]
    assert len(sparse_bars) < len(bars) - 1000
    sparse = SignalEngine().on_candles(candles("1m", sparse_bars))
    assert sparse == full


def test_duplicates_ignored_series_separate_and_prices_formatted() -> None:
    bars = load("5m")
    cs = candles("5m", bars)
    engine = SignalEngine(specs={SYMBOL: SPEC})
    first = engine.on_candles(cs[:300])
    assert engine.on_candle(cs[299]) == []  # same open time again
    assert engine.on_candle(cs[10]) == []  # late
    other = [msgspec.structs.replace(c, symbol="XRP-ETH2") for c in cs[:300]]
    second = engine.on_candles(other)
    assert [(s.type, s.open_time) for s in second] == [(s.type, s.open_time) for s in first]
    with pytest.raises(ValueError):
        engine.on_candle(CandleUpdated(*msgspec.structs.astuple(cs[300])))
    breakout = next(s for s in first if s.type is SignalType.BREAKOUT_UP)
    assert "0.00" in breakout.explanation and "ticks" not in breakout.explanation


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        SignalConfig(volume_spike_ratio=5.0, volume_full_ratio=4.0)
    with pytest.raises(ValueError):
        SignalConfig(rsi_oversold=80.0)
    with pytest.raises(ValueError):
        SignalConfig(macd_fast=26, macd_slow=12)
    with pytest.raises(ValueError):
        SignalConfig(move_window=0)


# ----------------------------------------------------------------------------- subscriptions
TYPES = list(SignalType)
SYMS = ["A", "B", "C"]
IVS = ["1m", "5m"]

sub_st = st.builds(
    lambda i, u, t, s, iv, m: SignalSubscription(
        id=i,
        user=f"u{u}",
        types=frozenset(t),
        symbols=frozenset(s),
        intervals=frozenset(iv),
        min_score=m,
    ),
    st.integers(0, 30),
    st.integers(0, 5),
    st.sets(st.sampled_from(TYPES), max_size=3),
    st.sets(st.sampled_from(SYMS), max_size=2),
    st.sets(st.sampled_from(IVS), max_size=1),
    st.sampled_from([0.0, 0.3, 0.7]),
)
signal_st = st.builds(
    lambda t, s, iv, score: Signal(t, s, iv, 0, score, 0.0, "x"),
    st.sampled_from(TYPES),
    st.sampled_from(SYMS),
    st.sampled_from(IVS),
    st.sampled_from([0.0, 0.3, 0.5, 1.0]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(sub_st, max_size=25), st.lists(st.integers(0, 30), max_size=5), signal_st)
def test_subscription_matching_matches_a_filter(
    subs: list[SignalSubscription], removed: list[int], signal: Signal
) -> None:
    book = SignalSubscriptions()
    live: dict[int, SignalSubscription] = {}
    for sub in subs:
        book.add(sub)
        live[sub.id] = sub
    for i in removed:
        assert book.remove(i) == live.pop(i, None)
    assert len(book) == len(live)
    want: dict[str, list[int]] = {}
    for sub in live.values():
        if (
            (not sub.types or signal.type in sub.types)
            and (not sub.symbols or signal.symbol in sub.symbols)
            and (not sub.intervals or signal.interval in sub.intervals)
            and signal.score >= sub.min_score
        ):
            want.setdefault(sub.user, []).append(sub.id)
    assert book.match(signal) == [SignalMatch(u, tuple(sorted(want[u]))) for u in sorted(want)]
