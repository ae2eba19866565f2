"""Market specs: decimal <-> ticks/lots conversion and loading config/markets.toml."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orrange.markets import InvalidValue, MarketSpec, ValueReason, load_markets, parse_markets

ROOT = Path(__file__).resolve().parents[1]
V = ValueReason


def spec(**kw: object) -> MarketSpec:
    base: dict[str, object] = {
        "symbol": "BTC-USDT",
        "base": "BTC",
        "quote": "USDT",
        "tick_size": "0.01",
        "lot_size": "0.001",
        "min_qty": "0.002",
        "max_qty": "100",
        "min_notional": "5",
    }
    base.update(kw)
    return MarketSpec(**base)  # type: ignore[arg-type]


def test_grid_and_derived_values() -> None:
    s = spec()
    assert (s.min_lots, s.max_lots) == (2, 100_000)
    assert s.quote_unit == Decimal("0.00001")
    assert s.min_notional_units == 500_000  # 5 / 0.00001
    assert s.priority == "price-time" and s.market_protection_bps == 500


def test_min_notional_units_rounds_up() -> None:
    s = spec(min_notional="0.000015")  # 1.5 quote units
    assert s.min_notional_units == 2
    with pytest.raises(InvalidValue):
        s.check_notional(1, 1)
    s.check_notional(1, 2)
    assert spec(min_notional="0").min_notional_units == 0


@pytest.mark.parametrize(
    ("value", "ticks"),
    [("0.01", 1), ("1", 100), ("12345.67", 1234567), ("  7.10 ", 710), ("1e2", 10000), (3, 300)],
)
def test_price_to_ticks(value: str, ticks: int) -> None:
    assert spec().price_to_ticks(value) == ticks


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0.001", V.OFF_TICK),
        ("100.005", V.OFF_TICK),
        ("0", V.NOT_POSITIVE),
        ("-0.00", V.NOT_POSITIVE),
        ("-1.00", V.NOT_POSITIVE),
        ("NaN", V.NOT_FINITE),
        ("sNaN", V.NOT_FINITE),
        ("Infinity", V.NOT_FINITE),
        ("-inf", V.NOT_FINITE),
        ("abc", V.NOT_A_NUMBER),
        ("", V.NOT_A_NUMBER),
        ("1,5", V.NOT_A_NUMBER),
        ("1e30", V.TOO_LARGE),
    ],
)
def test_price_rejections(value: str, reason: ValueReason) -> None:
    with pytest.raises(InvalidValue) as info:
        spec().price_to_ticks(value, field="limit")
    assert info.value.reason is reason and info.value.field == "limit"
    assert info.value.message and str(info.value).startswith("limit: ")


@pytest.mark.parametrize(
    ("value", "lots"), [("0.002", 2), ("1", 1000), ("100", 100_000), ("99.999", 99_999)]
)
def test_qty_to_lots(value: str, lots: int) -> None:
    assert spec().qty_to_lots(value) == lots


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0.0015", V.OFF_LOT),
        ("0.001", V.BELOW_MIN_QTY),
        ("100.001", V.ABOVE_MAX_QTY),
        ("1000", V.ABOVE_MAX_QTY),
        ("0", V.NOT_POSITIVE),
        ("-2", V.NOT_POSITIVE),
        ("nan", V.NOT_FINITE),
        ("inf", V.NOT_FINITE),
        ("one", V.NOT_A_NUMBER),
    ],
)
def test_qty_rejections(value: str, reason: ValueReason) -> None:
    with pytest.raises(InvalidValue) as info:
        spec().qty_to_lots(value)
    assert info.value.reason is reason and info.value.field == "quantity"


def test_min_notional_check() -> None:
    s = spec()  # 5 USDT = 500000 units
    s.check_notional(10_000, 50)  # 100.00 * 0.050 = 5.00: exactly the minimum
    with pytest.raises(InvalidValue) as info:
        s.check_notional(10_000, 49)
    assert info.value.reason is V.BELOW_MIN_NOTIONAL
    assert s.notional(10_000, 50) == 500_000
    assert s.units_to_quote(500_000) == "5.00000"


def test_formatting_and_quote_units() -> None:
    s = spec()
    assert s.ticks_to_price(1234567) == "12345.67"
    assert s.ticks_to_price(5) == "0.05"
    assert s.lots_to_qty(2) == "0.002"
    assert s.lots_to_qty(100_000) == "100.000"
    assert spec(tick_size="5", lot_size="10", min_qty="10").ticks_to_price(3) == "15"
    assert s.quote_to_units("1.000019") == 100_001  # rounds down to the unit grid
    with pytest.raises(InvalidValue) as info:
        s.quote_to_units("-1")
    assert info.value.reason is V.NOT_POSITIVE


@settings(max_examples=200, deadline=None)
@given(ticks=st.integers(1, 10**15), lots=st.integers(2, 100_000))
def test_round_trips(ticks: int, lots: int) -> None:
    s = spec()
    assert s.price_to_ticks(s.ticks_to_price(ticks)) == ticks
    assert s.qty_to_lots(s.lots_to_qty(lots)) == lots
    assert Decimal(s.ticks_to_price(ticks)) == ticks * Decimal("0.01")


@settings(max_examples=200, deadline=None)
@given(
    tick_exp=st.integers(-8, 2),
    tick_mant=st.sampled_from([1, 5, 25]),
    ticks=st.integers(1, 10**12),
)
def test_round_trip_on_other_grids(tick_exp: int, tick_mant: int, ticks: int) -> None:
    tick = Decimal(tick_mant).scaleb(tick_exp)
    s = spec(tick_size=str(tick))
    text = s.ticks_to_price(ticks)
    assert s.price_to_ticks(text) == ticks
    assert Decimal(text) == tick * ticks


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="multiples of lot_size"):
        spec(min_qty="0.0015")
    with pytest.raises(ValueError, match="min_qty <= max_qty"):
        spec(min_qty="2", max_qty="1")
    with pytest.raises(ValueError, match="positive"):
        spec(tick_size="0")
    with pytest.raises(ValueError):
        spec(reputation_tier_size=0)
    with pytest.raises(ValueError):
        spec(market_protection_bps=0)
    with pytest.raises(ValueError, match="maker rebate above the taker fee"):
        spec(settlement="vault", maker_fee_bps=-3, taker_fee_bps=2)
    assert spec(settlement="vault", maker_fee_bps=-2, taker_fee_bps=2).settlement == "vault"
    assert spec(settlement="none", maker_fee_bps=-3, taker_fee_bps=2).settlement == "none"
    assert spec().settlement == "none"
    with pytest.raises(ValueError, match="settlement"):
        parse_markets({"market": [{**msgspec.to_builtins(spec()), "settlement": "escrow"}]})


def test_load_markets_from_config() -> None:
    markets = load_markets(ROOT / "config" / "markets.toml")
    assert {"BTC-USDT", "ETH-USDT", "USDT-NGN", "AMZN-USD"} <= set(markets)
    for symbol, m in markets.items():
        assert m.symbol == symbol and symbol == f"{m.base}-{m.quote}"
        assert 0 < m.min_lots <= m.max_lots
    btc = markets["BTC-USDT"]
    assert btc.price_to_ticks("65000.01") == 6_500_001
    assert btc.qty_to_lots("0.00001") == 1
    assert (btc.maker_fee_bps, btc.taker_fee_bps, btc.price_band_bps) == (2, 5, 1000)
    assert btc.min_notional_units == 50_000_000  # 5 USDT in units of 0.01 * 0.00001
    ngn = markets["USDT-NGN"]
    assert ngn.priority == "price-reputation-time" and ngn.reputation_tier_size == 100
    with pytest.raises(InvalidValue) as info:
        ngn.qty_to_lots("9.99")
    assert info.value.reason is V.BELOW_MIN_QTY
    assert markets["AMZN-USD"].lots_to_qty(7) == "7"
    settlement = {symbol: m.settlement for symbol, m in markets.items()}
    assert settlement == {
        "BTC-USDT": "vault",
        "ETH-USDT": "vault",
        "USDT-NGN": "p2p",
        "AMZN-USD": "none",
    }


def test_duplicate_symbol_is_an_error(tmp_path: Path) -> None:
    one = (
        '[[market]]\nsymbol = "A-B"\nbase = "A"\nquote = "B"\ntick_size = "1"\n'
        'lot_size = "1"\nmin_qty = "1"\nmax_qty = "10"\n'
    )
    path = tmp_path / "markets.toml"
    path.write_text(one + one)
    with pytest.raises(ValueError, match="A-B"):
        load_markets(path)
    path.write_text(one)
    assert list(load_markets(path)) == ["A-B"]


def test_malformed_market_is_an_error() -> None:
    with pytest.raises(ValueError, match="X-Y"):
        parse_markets({"market": [{"symbol": "X-Y", "base": "X"}]})
    with pytest.raises(ValueError):
        parse_markets(
            {
                "market": [
                    {
                        "symbol": "X-Y",
                        "base": "X",
                        "quote": "Y",
                        "tick_size": "1",
                        "lot_size": "1",
                        "min_qty": "1",
                        "max_qty": "1",
                        "priority": "fifo",
                    }
                ]
            }
        )
    assert parse_markets({}) == {}
