"""Fixtures for the market-data tests: the real Binance XRP/ETH data set (see kit.md_data)."""

from __future__ import annotations

import pytest
from kit.md_data import AGG_CSV, BINANCE, Kline, klines_csv, klines_json

from orrange.marketdata.tradefiles import FileTrade, read_trades, scale_spec
from orrange.markets import MarketSpec


@pytest.fixture(scope="session")
def spec() -> MarketSpec:
    """The grid of the data set: Binance's 8-decimal strings."""
    return scale_spec("0.00000001", "0.00000001", "XRP-ETH")


@pytest.fixture(scope="session")
def agg_trades(spec: MarketSpec) -> list[FileTrade]:
    if not AGG_CSV.exists():
        pytest.skip(f"data set not found: {BINANCE}")
    return list(read_trades(AGG_CSV, spec))


@pytest.fixture(scope="session")
def exchange_klines(spec: MarketSpec) -> dict[str, list[Kline]]:
    """The exchange's own klines: ``"1m"`` and ``"5m"`` from the JSON files, ``"1m-csv"``."""
    if not AGG_CSV.exists():
        pytest.skip(f"data set not found: {BINANCE}")
    return {
        "1m": klines_json("1m", spec),
        "5m": klines_json("5m", spec),
        "1m-csv": klines_csv(spec),
    }
