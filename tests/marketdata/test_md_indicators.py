"""Indicators: talipp-backed IndicatorSet against straightforward reference formulas, on
Binance's real XRP/ETH 1m klines (3,560 bars, empty minutes included)."""

from __future__ import annotations

import math

import pytest
from kit.md_data import Kline

from orrange.marketdata.candles import (
    CandleAggregator,
    CandleClosed,
    CandleUpdated,
    build_candles,
    fill_gaps,
)
from orrange.marketdata.indicators import IndicatorConfig, IndicatorSet, IndicatorValues
from orrange.marketdata.tradefiles import FileTrade

GRID = "0.00000001"
SCALE = 1e-8


# ------------------------------------------------------------------ reference implementations
def ref_sma(xs: list[float], n: int) -> list[float | None]:
    return [None if i + 1 < n else sum(xs[i + 1 - n : i + 1]) / n for i in range(len(xs))]


def ref_ema(xs: list[float | None], n: int) -> list[float | None]:
    """EMA seeded with the SMA of the first n defined values; None before."""
    out: list[float | None] = []
    vals: list[float] = []
    prev: float | None = None
    a = 2 / (n + 1)
    for x in xs:
        if x is None:
            out.append(None)
            continue
        vals.append(x)
        if len(vals) < n:
            out.append(None)
        elif len(vals) == n:
            prev = sum(vals) / n
            out.append(prev)
        else:
            assert prev is not None
            prev = a * x + (1 - a) * prev
            out.append(prev)
    return out


def ref_rsi_wilder(xs: list[float], n: int) -> list[float | None]:
    """Textbook Wilder RSI: seed = mean gain/loss of the first n changes, then smoothing."""
    out: list[float | None] = [None] * len(xs)
    changes = [xs[i] - xs[i - 1] for i in range(1, len(xs))]
    ag = sum(max(c, 0) for c in changes[:n]) / n
    al = sum(max(-c, 0) for c in changes[:n]) / n
    for i in range(n, len(xs)):
        if i > n:
            c = changes[i - 1]
            ag = (ag * (n - 1) + max(c, 0)) / n
            al = (al * (n - 1) + max(-c, 0)) / n
        out[i] = 100.0 if al == 0 else 100 - 100 / (1 + ag / al)
    return out


def ref_bb(xs: list[float], n: int, k: float) -> list[tuple[float, float, float] | None]:
    out: list[tuple[float, float, float] | None] = []
    for i in range(len(xs)):
        if i + 1 < n:
            out.append(None)
            continue
        w = xs[i + 1 - n : i + 1]
        m = sum(w) / n
        sd = math.sqrt(sum((x - m) ** 2 for x in w) / n)  # population (Bollinger's definition)
        out.append((m - k * sd, m, m + k * sd))
    return out


def ref_atr(bars: list[Kline], n: int) -> list[float | None]:
    trs = []
    for i, b in enumerate(bars):
        h, lo = b[2] * SCALE, b[3] * SCALE
        if i == 0:
            trs.append(h - lo)
        else:
            pc = bars[i - 1][4] * SCALE
            trs.append(max(h - lo, abs(h - pc), abs(lo - pc)))
    out: list[float | None] = [None] * len(bars)
    atr = sum(trs[:n]) / n
    out[n - 1] = atr
    for i in range(n, len(bars)):
        atr = (atr * (n - 1) + trs[i]) / n
        out[i] = atr
    return out


def ref_vwap_daily(bars: list[Kline]) -> list[float | None]:
    out: list[float | None] = []
    day = -1
    pv = vol = 0.0
    for b in bars:
        d = b[0] // 86_400_000
        if d != day:
            day, pv, vol = d, 0.0, 0.0
        tp = (b[2] + b[3] + b[4]) * SCALE / 3
        v = b[5] * SCALE
        pv += tp * v
        vol += v
        out.append(pv / vol if vol else None)
    return out


def close_enough(a: float | None, b: float | None, rel: float = 1e-9, abs_: float = 1e-12) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def series(
    agg_trades: list[FileTrade], exchange_klines: dict[str, list[Kline]]
) -> list[IndicatorValues]:
    """Indicator values after each bar, fed with candles built from the trades (non-empty
    windows only; the set inserts the carry-forward bars itself)."""
    ind = IndicatorSet("XRP-ETH", "1m", GRID, GRID)
    out: list[IndicatorValues] = []
    built = list(build_candles(agg_trades, "1m", "XRP-ETH"))
    for c in built:
        ind.update(c)
        out.append(ind.latest)  # type: ignore[arg-type]
    assert ind.bars == len(exchange_klines["1m"])
    full = []
    ind2 = IndicatorSet("XRP-ETH", "1m", GRID, GRID)
    for c in fill_gaps(built):
        ind2.update(c)
        full.append(ind2.latest)
    # feeding only non-empty candles reaches the same final state as the full series
    assert out[-1] == full[-1]
    return full  # type: ignore[return-value]


@pytest.fixture(scope="module")
def closes(exchange_klines: dict[str, list[Kline]]) -> list[float]:
    return [k[4] * SCALE for k in exchange_klines["1m"]]


# ------------------------------------------------------------------ tests
def test_series_covers_every_exchange_bar(
    series: list[IndicatorValues], exchange_klines: dict[str, list[Kline]]
) -> None:
    assert [v.open_time for v in series] == [k[0] for k in exchange_klines["1m"]]
    assert all(v.final for v in series)


def test_sma_and_ema_match_reference(series: list[IndicatorValues], closes: list[float]) -> None:
    sma = ref_sma(closes, 20)
    ema = ref_ema(list(closes), 20)
    assert all(close_enough(v.sma, s) for v, s in zip(series, sma))
    assert all(close_enough(v.ema, e) for v, e in zip(series, ema))
    assert series[18].sma is None and series[19].sma is not None


def test_rsi_matches_textbook_wilder(series: list[IndicatorValues], closes: list[float]) -> None:
    ref = ref_rsi_wilder(closes, 14)
    assert series[13].rsi is None and series[14].rsi is not None
    assert all(close_enough(v.rsi, r, rel=1e-9, abs_=1e-9) for v, r in zip(series, ref))
    assert all(0.0 <= v.rsi <= 100.0 for v in series if v.rsi is not None)
    assert (
        min(v.rsi for v in series if v.rsi is not None)
        < 30
        < 70
        < max(v.rsi for v in series if v.rsi is not None)
    )


def test_macd_matches_reference(series: list[IndicatorValues], closes: list[float]) -> None:
    fast, slow = ref_ema(list(closes), 12), ref_ema(list(closes), 26)
    macd = [f - s if f is not None and s is not None else None for f, s in zip(fast, slow)]
    signal = ref_ema(macd, 9)
    for v, m, s in zip(series, macd, signal):
        assert close_enough(v.macd, m, abs_=1e-15)
        assert close_enough(v.macd_signal, s, abs_=1e-15)
        if v.macd is not None and v.macd_signal is not None:
            assert close_enough(v.macd_histogram, v.macd - v.macd_signal, abs_=1e-15)
    assert series[-1].macd_signal is not None


def test_bollinger_matches_reference(series: list[IndicatorValues], closes: list[float]) -> None:
    ref = ref_bb(closes, 20, 2.0)
    for v, r in zip(series, ref):
        if r is None:
            assert v.bb_middle is None
        else:
            assert close_enough(v.bb_lower, r[0], abs_=1e-11)
            assert close_enough(v.bb_middle, r[1], abs_=1e-11)
            assert close_enough(v.bb_upper, r[2], abs_=1e-11)


def test_atr_and_vwap_match_reference(
    series: list[IndicatorValues], exchange_klines: dict[str, list[Kline]]
) -> None:
    bars = exchange_klines["1m"]
    atr = ref_atr(bars, 14)
    vwap = ref_vwap_daily(bars)
    assert all(close_enough(v.atr, a) for v, a in zip(series, atr))
    assert all(close_enough(v.vwap, w) for v, w in zip(series, vwap))
    # the session VWAP restarts at 00:00 UTC
    day2 = next(i for i, b in enumerate(bars) if b[0] % 86_400_000 == 0 and i > 0)
    assert series[day2].vwap != series[day2 - 1].vwap


def test_provisional_updates_end_where_closed_candles_do(agg_trades: list[FileTrade]) -> None:
    """Feeding every CandleUpdated (then the close) equals feeding only closed candles."""
    trades = agg_trades[:3000]
    agg = CandleAggregator(("1m",))
    live = IndicatorSet("XRP-ETH", "1m", GRID, GRID)
    final = IndicatorSet("XRP-ETH", "1m", GRID, GRID)
    provisional_seen = False
    for t in trades:
        for ev in agg.add_trade("XRP-ETH", t.ts, t.price, t.qty, t.buyer_is_maker, t.trade_count):
            values = live.update(ev)
            if isinstance(ev, CandleClosed):
                final.update(ev)
                assert values.final
            else:
                assert isinstance(ev, CandleUpdated) and not values.final
                provisional_seen = True
    for ev in agg.close_all():
        live.update(ev)
        final.update(ev)
    assert provisional_seen
    a, b = live.latest, final.latest
    assert a is not None and b is not None
    for field in a.__struct_fields__:
        x, y = getattr(a, field), getattr(b, field)
        if isinstance(x, float):
            assert close_enough(x, y, rel=1e-9), field
        else:
            assert x == y, field


def test_purging_history_changes_no_value(agg_trades: list[FileTrade]) -> None:
    cfg_small = IndicatorConfig(history=200)  # purges several times over 3,560 bars
    small = IndicatorSet("XRP-ETH", "1m", GRID, GRID, cfg_small)
    big = IndicatorSet("XRP-ETH", "1m", GRID, GRID, IndicatorConfig(history=100_000))
    for c in build_candles(agg_trades, "1m", "XRP-ETH"):
        a, b = small.update(c), big.update(c)
        for field in ("sma", "ema", "rsi", "macd", "macd_signal", "bb_upper", "atr", "vwap"):
            assert close_enough(getattr(a, field), getattr(b, field), rel=1e-9), field
    assert small.bars == big.bars == 3560
    assert small.held <= 400 < big.held


def test_select_and_errors() -> None:
    ind = IndicatorSet("A", "1m", "0.01", "1")
    c = CandleClosed("A", "1m", 60_000, 119_999, 100, 110, 90, 105, 3, 315, 1, 0, 0, 105, 0, 0)
    v = ind.update(c)
    assert v.select(["rsi", "macd"]) == {
        "rsi": None,
        "macd": None,
        "macd_signal": None,
        "macd_histogram": None,
    }
    assert v.vwap == pytest.approx((1.10 + 0.90 + 1.05) / 3)
    with pytest.raises(KeyError):
        v.select(["nope"])
    with pytest.raises(ValueError, match="older"):
        ind.update(CandleClosed("A", "1m", 0, 59_999, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0))
    with pytest.raises(ValueError, match="fed to"):
        ind.update(CandleClosed("B", "1m", 0, 59_999, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0))
    with pytest.raises(ValueError, match="macd_fast"):
        IndicatorConfig(macd_fast=30)
    with pytest.raises(ValueError, match="history"):
        IndicatorConfig(history=50)
    with pytest.raises(ValueError, match="interval"):
        IndicatorSet("A", "2m", "0.01", "1")
