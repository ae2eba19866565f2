"""``orrange candles build``: candles from a recorded trades file, as Binance kline CSV.

Output: no header, one row per non-empty window in time order (``--fill-empty`` adds Binance's
carry-forward rows for empty windows between them), columns in Binance kline order::

    open time (ms UTC), open, high, low, close, volume, close time (ms UTC), quote volume,
    trade count, taker buy base volume, taker buy quote volume, ignore (always 0)

Prices are printed with the decimals of ``--tick-size``, volumes with those of
``--lot-size``, quote volumes exactly (at least the price's decimals, more only when needed).
The default grid, 1e-8 for both, is Binance's string precision.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, TextIO

from orrange.marketdata.candles import INTERVALS, Candle, build_candles, fill_gaps
from orrange.marketdata.tradefiles import read_trades, scale_spec
from orrange.markets import MarketSpec

if TYPE_CHECKING:
    from orrange.cli import CommandTree

__all__ = ["kline_row", "register"]


def kline_row(c: Candle, spec: MarketSpec) -> list[str]:
    """A candle as the 12 Binance kline columns (decimal strings per ``spec``'s grid)."""
    px = spec.ticks_to_price
    qty = spec.lots_to_qty
    min_places = _places(spec.tick_size)

    def quote(units: int) -> str:
        # exact, trailing zeros trimmed down to the price's decimals (Binance prints 8)
        text = spec.units_to_quote(units)
        if "." in text:
            whole, frac = text.split(".")
            frac = frac.rstrip("0").ljust(min_places, "0")
            text = f"{whole}.{frac}" if frac else whole
        return text

    return [
        str(c.open_time),
        px(c.open),
        px(c.high),
        px(c.low),
        px(c.close),
        qty(c.volume),
        str(c.close_time),
        quote(c.quote_volume),
        str(c.trades),
        qty(c.taker_buy_volume),
        quote(c.taker_buy_quote_volume),
        "0",
    ]


def _places(step: str) -> int:
    exp = Decimal(step).as_tuple().exponent
    return -exp if isinstance(exp, int) and exp < 0 else 0


def _build(args: argparse.Namespace) -> int:
    try:
        spec = scale_spec(args.tick_size, args.lot_size)
    except ValueError as exc:
        print(f"orrange candles build: invalid --tick-size/--lot-size: {exc}", file=sys.stderr)
        return 2
    candles: Iterator[Candle] = build_candles(read_trades(args.trades, spec), args.interval)
    if args.fill_empty:
        candles = fill_gaps(candles)
    try:
        with contextlib.ExitStack() as stack:
            out: TextIO = sys.stdout
            if args.output != "-":
                out = stack.enter_context(open(args.output, "w", newline=""))
            writer = csv.writer(out, lineterminator="\n")
            for c in candles:
                writer.writerow(kline_row(c, spec))
            out.flush()
    except BrokenPipeError:  # reader closed the pipe (e.g. ``| head``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError) as exc:
        print(f"orrange candles build: {exc}", file=sys.stderr)
        return 1
    return 0


def register(cli: CommandTree) -> None:
    """Add ``orrange candles build`` to the console command."""
    p = cli.group_command(
        "candles",
        "build",
        _build,
        help="build OHLCV candles from a trades file and write Binance kline CSV (no header)",
    )
    p.add_argument(
        "--trades",
        required=True,
        help="Binance aggTrades/trades CSV or ccxt trades JSON (.gz allowed)",
    )
    p.add_argument("--interval", default="1m", choices=INTERVALS, help="candle interval")
    p.add_argument("--output", "-o", default="-", help="output CSV file (default stdout)")
    p.add_argument("--tick-size", default="0.00000001", help="price grid (default 1e-8)")
    p.add_argument("--lot-size", default="0.00000001", help="quantity grid (default 1e-8)")
    p.add_argument(
        "--fill-empty",
        action="store_true",
        help="also write carry-forward rows (O=H=L=C=previous close, volume 0) for empty "
        "windows between trades, like Binance's kline endpoint",
    )
