"""Index price: staleness, failover, MAD outlier rejection, weights, confidence; properties."""

from __future__ import annotations

import statistics

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orrange.marketdata.index import (
    VOLUME_STEPS,
    IndexCalculator,
    IndexConfig,
    IndexEngine,
    IndexPrice,
    SourceConfig,
)

T = 1_700_000_000_000


def cfg(*weights: int, fallback: int = 0, **kw: int) -> IndexConfig:
    srcs = [SourceConfig(name=f"s{i}", weight=w) for i, w in enumerate(weights)]
    srcs += [SourceConfig(name=f"f{i}", fallback=True) for i in range(fallback)]
    return IndexConfig(sources=tuple(srcs), **kw)


def test_single_source_is_the_index_with_partial_coverage() -> None:
    idx = IndexCalculator("BTC-USDT", cfg(2, 1, 1))
    assert idx.compute(T) is None
    idx.update("s0", T, 65_000_00, qty=3)
    ip = idx.compute(T + 10)
    assert isinstance(ip, IndexPrice)
    assert (ip.price, ip.sources, ip.fallback, ip.ts) == (65_000_00, ("s0",), False, T + 10)
    assert ip.confidence == pytest.approx(0.5)  # weight 2 of 4, no dispersion


def test_weighted_mean_rounds_half_up_to_ticks() -> None:
    idx = IndexCalculator("X", cfg(1, 1, volume_blend_bps=0))
    idx.update("s0", T, 100)
    idx.update("s1", T, 101)
    ip = idx.compute(T)
    assert ip is not None and ip.price == 101  # 100.5 -> 101
    idx2 = IndexCalculator("X", cfg(3, 1, volume_blend_bps=0))
    idx2.update("s0", T, 100)
    idx2.update("s1", T, 104)
    ip2 = idx2.compute(T)
    assert ip2 is not None and ip2.price == 101  # (300 + 104) / 4 = 101


def test_volume_share_blends_into_weights() -> None:
    idx = IndexCalculator("X", cfg(1, 1, volume_blend_bps=10_000, max_dispersion_bps=10_000))
    idx.update("s0", T, 100, qty=30)
    idx.update("s1", T, 200, qty=10)
    ip = idx.compute(T)
    assert ip is not None and ip.price == 125  # fully by volume: (30*100 + 10*200) / 40
    # volume leaves the window after volume_window_ms: weights fall back to configuration
    idx.update("s0", T + 60_000, 100)
    idx.update("s1", T + 60_000, 200)
    ip = idx.compute(T + 60_000)
    assert ip is not None and ip.price == 150


def test_stale_source_is_evicted_and_rejoins() -> None:
    idx = IndexCalculator("X", cfg(1, 1, stale_after_ms=5_000))
    idx.update("s0", T, 100)
    idx.update("s1", T + 4_000, 102)
    ip = idx.compute(T + 5_000)
    assert ip is not None and ip.sources == ("s0", "s1")
    ip = idx.compute(T + 5_001)
    assert ip is not None and (ip.sources, ip.stale, ip.price) == (("s1",), ("s0",), 102)
    assert idx.compute(T + 9_001) is None  # every source silent: no index
    idx.update("s0", T + 9_500, 101)
    ip = idx.compute(T + 9_600)
    assert ip is not None and ip.price == 101 and ip.stale == ("s1",)


def test_failover_to_fallback_sources() -> None:
    idx = IndexCalculator("X", cfg(1, 1, fallback=1, min_sources=2, stale_after_ms=1_000))
    idx.update("s0", T, 100)
    idx.update("s1", T, 100)
    idx.update("f0", T, 90)
    ip = idx.compute(T)
    assert ip is not None and ip.sources == ("s0", "s1") and not ip.fallback
    idx.update("s0", T + 900, 100)
    idx.update("f0", T + 900, 98)
    ip = idx.compute(T + 1_500)  # s1 went silent: below min_sources, fallback joins
    assert ip is not None and ip.fallback and ip.sources == ("s0", "f0") and ip.price == 99
    assert ip.stale == ("s1",)


def test_fallback_only_when_primaries_are_gone() -> None:
    idx = IndexCalculator("X", cfg(1, fallback=1))
    idx.update("f0", T, 50)
    ip = idx.compute(T)
    assert ip is not None and ip.fallback and ip.price == 50
    idx.update("s0", T + 1, 60)
    ip = idx.compute(T + 1)
    assert ip is not None and not ip.fallback and ip.sources == ("s0",)


def test_mad_rejects_outlier_and_lowers_coverage() -> None:
    idx = IndexCalculator("X", cfg(1, 1, 1, 1))
    for name, p in (("s0", 10_000), ("s1", 10_002), ("s2", 9_999), ("s3", 11_000)):
        idx.update(name, T, p)
    ip = idx.compute(T)
    assert ip is not None
    assert ip.rejected == ("s3",) and ip.sources == ("s0", "s1", "s2")
    assert ip.price == 10_000  # (10000 + 10002 + 9999) / 3 = 10000.33
    assert ip.confidence < 0.75  # coverage 3/4 times agreement < 1


def test_band_floor_keeps_one_tick_disagreement_when_mad_is_zero() -> None:
    idx = IndexCalculator("X", cfg(1, 1, 1, min_band_bps=5))
    for name, p in (("s0", 100_000), ("s1", 100_000), ("s2", 100_001)):
        idx.update(name, T, p)
    ip = idx.compute(T)
    assert ip is not None and ip.rejected == ()  # MAD = 0 but 1 tick is within 5 bps
    idx.update("s2", T, 100_100)  # 10 bps away: now an outlier
    ip = idx.compute(T)
    assert ip is not None and ip.rejected == ("s2",)


def test_agreement_falls_with_dispersion() -> None:
    idx = IndexCalculator("X", cfg(1, 1, max_dispersion_bps=100))
    idx.update("s0", T, 10_000)
    idx.update("s1", T, 10_100)  # MAD = 50 ticks ~ 49.75 bps of the index; x1.4826 ~ 73.8 bps
    ip = idx.compute(T)
    assert ip is not None
    assert ip.confidence == pytest.approx(1 - 1.4826 * 50 / 10_050 * 10_000 / 100, rel=1e-9)


def test_out_of_order_update_keeps_latest_price() -> None:
    idx = IndexCalculator("X", cfg(1))
    idx.update("s0", T + 10, 100)
    idx.update("s0", T, 90)
    ip = idx.compute(T + 10)
    assert ip is not None and ip.price == 100


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"sources": ()}, "primary"),
        ({"sources": (SourceConfig(name="a", fallback=True),)}, "primary"),
        ({"sources": (SourceConfig(name="a"), SourceConfig(name="a"))}, "duplicate"),
        ({"sources": (SourceConfig(name="a", weight=0),)}, "weights"),
        ({"sources": (SourceConfig(name="a"),), "volume_blend_bps": 10_001}, "blend"),
        ({"sources": (SourceConfig(name="a"),), "stale_after_ms": 0}, "positive"),
        ({"sources": (SourceConfig(name="a"),), "min_sources": 0}, "min_sources"),
    ],
)
def test_config_validation(kw: dict[str, object], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        IndexConfig(**kw)  # type: ignore[arg-type]


def test_bad_updates_raise() -> None:
    idx = IndexCalculator("X", cfg(1))
    with pytest.raises(KeyError):
        idx.update("nope", T, 1)
    with pytest.raises(ValueError):
        idx.update("s0", T, 0)
    with pytest.raises(ValueError):
        idx.update("s0", T, 1, qty=-1)


def test_engine_many_symbols_and_default() -> None:
    eng = IndexEngine({"A": cfg(1)}, default=cfg(1, 1))
    eng.update("A", "s0", T, 10)
    eng.update("B", "s1", T, 20)
    got = eng.compute_many(["A", "B", "C"], T)
    assert [(ip.symbol, ip.price) for ip in got] == [("A", 10), ("B", 20)]
    with pytest.raises(KeyError):
        IndexEngine({}).update("Z", "s0", T, 1)


# ------------------------------------------------------------------ properties
prices_st = st.lists(st.integers(1, 10**12), min_size=1, max_size=7)


def _calc(prices: list[int], weights: list[int], vols: list[int], **kw: int) -> IndexCalculator:
    srcs = tuple(SourceConfig(name=f"s{i}", weight=w) for i, w in enumerate(weights))
    idx = IndexCalculator("X", IndexConfig(sources=srcs, **kw))
    for i, (p, v) in enumerate(zip(prices, vols)):
        idx.update(f"s{i}", T, p, v)
    return idx


@settings(max_examples=200, deadline=None)
@given(st.data(), prices_st)
def test_index_is_within_accepted_prices_and_confidence_in_unit_interval(
    data: st.DataObject, prices: list[int]
) -> None:
    n = len(prices)
    weights = data.draw(st.lists(st.integers(1, 1000), min_size=n, max_size=n))
    vols = data.draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n))
    ip = _calc(prices, weights, vols).compute(T)
    assert ip is not None
    accepted = [prices[int(name[1:])] for name in ip.sources]
    assert min(accepted) <= ip.price <= max(accepted)
    assert 0.0 <= ip.confidence <= 1.0
    assert len(ip.sources) + len(ip.rejected) == n
    # the median itself is never rejected: at least half of the sources survive
    assert len(ip.sources) * 2 >= n
    med = statistics.median(prices)
    for name in ip.rejected:  # outside the default 5 bps band around the median
        assert abs(prices[int(name[1:])] - med) * 10_000 > med * 5


@settings(max_examples=150, deadline=None)
@given(st.data(), prices_st, st.integers(2, 50))
def test_invariant_to_update_order_and_weight_scale(
    data: st.DataObject, prices: list[int], scale: int
) -> None:
    n = len(prices)
    weights = data.draw(st.lists(st.integers(1, 100), min_size=n, max_size=n))
    vols = data.draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n))
    order = data.draw(st.permutations(range(n)))
    a = _calc(prices, weights, vols).compute(T)
    srcs = tuple(SourceConfig(name=f"s{i}", weight=w * scale) for i, w in enumerate(weights))
    b_idx = IndexCalculator("X", IndexConfig(sources=srcs))
    for i in order:
        b_idx.update(f"s{i}", T, prices[i], vols[i])
    b = b_idx.compute(T)
    assert a is not None and b is not None
    assert (a.price, a.sources, a.rejected) == (b.price, b.sources, b.rejected)
    assert a.confidence == pytest.approx(b.confidence)


@settings(max_examples=150, deadline=None)
@given(st.integers(3, 9), st.integers(10**4, 10**9), st.integers(2, 100))
def test_single_gross_outlier_is_rejected(n: int, base: int, factor: int) -> None:
    """n-1 sources agree within 1 tick; one is off by a factor: it is always rejected."""
    prices = [base + (i % 2) for i in range(n - 1)] + [base * factor]
    ip = _calc(prices, [1] * n, [0] * n).compute(T)
    assert ip is not None
    assert ip.rejected == (f"s{n - 1}",)
    assert base <= ip.price <= base + 1


@settings(max_examples=100, deadline=None)
@given(prices_st, st.integers(1, 20_000), st.integers(0, 40_000))
def test_stale_sources_never_contribute(prices: list[int], stale_ms: int, age: int) -> None:
    n = len(prices)
    idx = _calc(prices, [1] * n, [0] * n, stale_after_ms=stale_ms)
    ip = idx.compute(T + age)
    if age > stale_ms:
        assert ip is None
    else:
        assert ip is not None and ip.stale == () and len(ip.sources) + len(ip.rejected) == n


def test_index_price_round_trips_and_config_loads_from_toml_shape() -> None:
    raw = {
        "sources": [{"name": "binance", "weight": 3}, {"name": "own", "fallback": True}],
        "stale_after_ms": 5_000,
    }
    config = msgspec.convert(raw, IndexConfig)
    assert config.sources[1].fallback and config.stale_after_ms == 5_000
    idx = IndexCalculator("X", config)
    idx.update("binance", T, 100, 1)
    ip = idx.compute(T)
    assert ip is not None
    assert msgspec.json.decode(msgspec.json.encode(ip), type=IndexPrice) == ip


def test_volume_is_kept_in_bounded_steps_of_the_window() -> None:
    idx = IndexCalculator("X", cfg(1, 1, volume_blend_bps=10_000, max_dispersion_bps=10_000))
    step = 60_000 // VOLUME_STEPS
    for i in range(10_000):  # 10,000 trades within one step: one entry
        idx.update("s0", T + i % step, 100, qty=1)
    src = idx._sources["s0"]

    def steps() -> int:  # the finished steps kept and the current one
        return len(src.vol_ts) + (1 if src.step_qty else 0)

    assert steps() == 1 and src.vol == 10_000
    for i in range(3 * VOLUME_STEPS):  # three windows of steps: never more than a window
        idx.update("s0", T + 60_000 + i * step, 100, qty=1)
    assert steps() <= VOLUME_STEPS + 1 and src.vol == steps()
    # a step leaves the window with its last trade
    idx2 = IndexCalculator(
        "X", cfg(1, 1, volume_blend_bps=10_000, max_dispersion_bps=10_000, stale_after_ms=10**6)
    )
    idx2.update("s0", T, 100, qty=30)
    idx2.update("s0", T + step - 1, 100, qty=10)  # same step, later
    idx2.update("s1", T + 60_000, 200, qty=10)
    ip = idx2.compute(T + 60_000)  # the step's last trade is inside: 40 lots still count
    assert ip is not None and ip.price == 120  # (40*100 + 10*200) / 50
    ip = idx2.compute(T + 60_000 + step - 1)
    assert ip is not None and ip.price == 200  # the step left: only s1 has volume
