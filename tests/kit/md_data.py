"""Paths and loaders of the real Binance XRP/ETH data set used by the market-data tests.

The data lives outside the repository in ``../shared/data/binance/`` (see its README); it is
read in place, never copied.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from orrange.markets import MarketSpec

REPO = Path(__file__).resolve().parents[2]
BINANCE = (REPO / ".." / "shared" / "data" / "binance").resolve()
AGG_CSV = next(iter(sorted(BINANCE.glob("XRPETH-aggTrades-*.csv"))), BINANCE / "missing.csv")
TRADES_JSON = BINANCE / "XRP_ETH-trades.json.gz"
KLINES_1M_CSV = next(iter(sorted(BINANCE.glob("XRPETH-1m-*.csv"))), BINANCE / "missing.csv")
KLINES_JSON = {"1m": BINANCE / "XRP_ETH-1m.json", "5m": BINANCE / "XRP_ETH-5m.json"}

# (open_time, open, high, low, close, volume) in ms, ticks and lots
Kline = tuple[int, int, int, int, int, int]


def klines_json(interval: str, spec: MarketSpec) -> list[Kline]:
    """The exchange's klines (ccxt OHLCV lists) as exact integers (numbers read as decimals)."""
    rows = json.loads(KLINES_JSON[interval].read_text(), parse_float=Decimal)
    return [
        (
            int(r[0]),
            spec.price_to_ticks(r[1]),
            spec.price_to_ticks(r[2]),
            spec.price_to_ticks(r[3]),
            spec.price_to_ticks(r[4]),
            int(Decimal(r[5]) / Decimal(spec.lot_size)),
        )
        for r in rows
    ]


def klines_csv(spec: MarketSpec) -> list[Kline]:
    out: list[Kline] = []
    for line in KLINES_1M_CSV.read_text().splitlines():
        t, o, h, lo, c, v = line.split(",")
        out.append(
            (
                int(t),
                spec.price_to_ticks(o),
                spec.price_to_ticks(h),
                spec.price_to_ticks(lo),
                spec.price_to_ticks(c),
                int(Decimal(v) / Decimal(spec.lot_size)),
            )
        )
    return out
