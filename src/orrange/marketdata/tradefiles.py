"""Readers for recorded trade files, yielding exact integer trades (edge code: decimal strings
become ticks and lots here, through a :class:`~orrange.markets.MarketSpec`).

Supported layouts (detected per file):

* **Binance aggTrades CSV** (data.binance.vision spot layout, 8 columns, header optional):
  ``agg_trade_id, price, quantity, first_trade_id, last_trade_id, transact_time,
  is_buyer_maker, is_best_match``. ``trade_count`` is ``last_trade_id - first_trade_id + 1``.
* **Binance trades CSV** (7 columns): ``id, price, qty, quote_qty, time, is_buyer_maker,
  is_best_match``; ``trade_count`` is 1.
* **ccxt trades JSON**, optionally gzip-compressed (``.gz``): an array of ccxt trade objects.
  The raw Binance aggTrade in ``info`` (``p``, ``q``, ``T``, ``m``, ``f``, ``l``) is used when
  present, so prices stay the exchange's strings; otherwise ``timestamp``, ``price``,
  ``amount`` and ``side`` (``"buy"`` = taker buy), with JSON numbers read as exact decimals of
  their text (never through a float).

data.binance.vision spot files switched to microsecond timestamps in 2025; a time above
``10**14`` is taken as microseconds and truncated to ms.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from orrange.markets import MarketSpec

__all__ = ["FileTrade", "read_trades", "scale_spec"]

_US_THRESHOLD = 10**14


class FileTrade(NamedTuple):
    """One trade from a file: ``ts`` ms UTC, ``price`` ticks, ``qty`` lots, the Binance maker
    flag (true = taker sold) and the number of exchange trades it stands for."""

    ts: int
    price: int
    qty: int
    buyer_is_maker: bool
    trade_count: int


def scale_spec(tick_size: str, lot_size: str, symbol: str = "FILE") -> MarketSpec:
    """A permissive :class:`MarketSpec` for reading files: the given grid, no practical limits.

    Raises:
        ValueError: tick or lot size not a positive decimal.
    """
    try:
        tick, lot = Decimal(tick_size), Decimal(lot_size)
    except ArithmeticError:
        tick = lot = Decimal(0)
    if not (tick.is_finite() and tick > 0 and lot.is_finite() and lot > 0):
        raise ValueError(
            f"tick and lot size must be positive decimals: {tick_size!r}, {lot_size!r}"
        )
    max_qty = lot * (2**62)
    fields = {
        "symbol": symbol,
        "base": "BASE",
        "quote": "QUOTE",
        "tick_size": tick_size,
        "lot_size": lot_size,
        "min_qty": lot_size,
        "max_qty": f"{max_qty:f}",
    }
    return msgspec.convert(fields, MarketSpec)  # ValidationError is a ValueError


def _ms(t: int) -> int:
    return t // 1000 if t > _US_THRESHOLD else t


def _bool(s: str) -> bool:
    v = s.strip().lower()
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise ValueError(f"not a boolean: {s!r}")


def read_trades(path: str | Path, spec: MarketSpec) -> Iterator[FileTrade]:
    """Yield the trades of ``path`` in file order (layout detected as described above).

    Raises:
        ValueError: unrecognised layout, malformed row, or a price or quantity off the spec's
            grid (choose a finer ``tick_size``/``lot_size``); the message names the file line
            or JSON element, the cause is the original error (an
            :class:`~orrange.markets.InvalidValue` for an off-grid value).
        OSError: the file cannot be read.
    """
    p = Path(path)
    opener: Any = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rb") as fh:
        if fh.peek(4096).lstrip()[:1] == b"[":
            yield from _ccxt(json.loads(fh.read(), parse_float=Decimal), spec)
        else:
            yield from _csv(io.TextIOWrapper(fh, encoding="utf-8", newline=""), spec, str(p))


def _csv(text: io.TextIOBase, spec: MarketSpec, name: str) -> Iterator[FileTrade]:
    to_ticks = spec.price_to_ticks
    to_lots = spec.qty_to_lots
    for lineno, row in enumerate(csv.reader(text), 1):
        if not row:
            continue
        if lineno == 1 and not row[0].strip().isdigit():
            continue  # header line
        try:
            if len(row) == 8:
                yield FileTrade(
                    _ms(int(row[5])),
                    to_ticks(row[1]),
                    to_lots(row[2]),
                    _bool(row[6]),
                    int(row[4]) - int(row[3]) + 1,
                )
            elif len(row) == 7:
                yield FileTrade(
                    _ms(int(row[4])), to_ticks(row[1]), to_lots(row[2]), _bool(row[5]), 1
                )
            else:
                raise ValueError(f"expected 7 or 8 columns, got {len(row)}")
        except ValueError as exc:
            raise ValueError(f"{name}:{lineno}: {exc}") from exc


def _ccxt(data: Any, spec: MarketSpec) -> Iterator[FileTrade]:
    if not isinstance(data, list):
        raise ValueError("a trades JSON file must hold an array of ccxt trades")
    to_ticks = spec.price_to_ticks
    to_lots = spec.qty_to_lots
    for i, t in enumerate(data):
        info = t.get("info") if isinstance(t, dict) else None
        try:
            if isinstance(info, dict) and {"p", "q", "T", "m"} <= info.keys():
                count = int(info["l"]) - int(info["f"]) + 1 if "f" in info and "l" in info else 1
                yield FileTrade(
                    _ms(int(info["T"])),
                    to_ticks(str(info["p"])),
                    to_lots(str(info["q"])),
                    bool(info["m"]),
                    count,
                )
            elif isinstance(t, dict):
                yield FileTrade(
                    int(t["timestamp"]),
                    to_ticks(str(t["price"])),
                    to_lots(str(t["amount"])),
                    t.get("side") == "sell",
                    1,
                )
            else:
                raise ValueError("not a trade object")
        except KeyError as exc:
            raise ValueError(f"trade #{i}: missing field {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise ValueError(f"trade #{i}: {exc}") from exc
