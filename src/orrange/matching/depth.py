"""Depth bands and price impact over L2 levels (pure, exact integer arithmetic).

Levels are ``(price_ticks, size_lots)`` pairs, best first (bids descending, asks ascending),
as in :class:`~orrange.matching.book.L2Book`; notionals are quote units
(``tick_size * lot_size`` of quote, see :mod:`orrange.markets`). The order book's
:meth:`~orrange.matching.OrderBook.depth_bands` and
:meth:`~orrange.matching.OrderBook.price_impact` and the API's market snapshot (over the
matcher's L2 answer) are these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from orrange.matching.enums import Side

__all__ = ["DEFAULT_BANDS_BPS", "DepthBand", "Level", "PriceImpact", "depth_bands", "price_impact"]

#: ``(price_ticks, size_lots)`` of one level.
Level = tuple[int, int]

#: Depth bands reported by default: 1 %, 5 % and 10 % of mid, in basis points.
DEFAULT_BANDS_BPS = (100, 500, 1000)


@dataclass(frozen=True, slots=True)
class DepthBand:
    """Liquidity within ``band_bps`` of mid: sizes in lots, notional in quote units."""

    band_bps: int
    bid_size: int
    ask_size: int
    bid_notional: int
    ask_notional: int


@dataclass(frozen=True, slots=True)
class PriceImpact:
    """What a market order spending ``quote_units`` would do now.

    ``avg_price`` is in ticks (exact); ``slippage_bps`` is the distance of the average price
    from the best price in basis points (exact, >= 0); ``levels_consumed`` counts levels
    touched; ``complete`` is false when the book ran out first.
    """

    side: Side
    quote_units: int
    filled_lots: int
    spent_units: int
    avg_price: Fraction | None
    slippage_bps: Fraction | None
    levels_consumed: int
    complete: bool


def depth_bands(
    bids: Sequence[Level], asks: Sequence[Level], bands_bps: Iterable[int] = DEFAULT_BANDS_BPS
) -> list[DepthBand]:
    """Resting size and notional within each band around mid (``bands_bps`` basis points).

    A bid at price p counts when ``p >= mid * (1 - band)``; an ask when
    ``p <= mid * (1 + band)``. Empty bands when a side is empty (no mid).
    """
    out = []
    for band in bands_bps:
        bs = asz = bn = an = 0
        if bids and asks:
            mid2 = asks[0][0] + bids[0][0]  # twice the mid, keeps the test exact
            for price, size in bids:
                if 20000 * price >= mid2 * (10000 - band):
                    bs += size
                    bn += size * price
            for price, size in asks:
                if 20000 * price <= mid2 * (10000 + band):
                    asz += size
                    an += size * price
        out.append(DepthBand(band, bs, asz, bn, an))
    return out


def price_impact(side: Side, opposite: Iterable[Level], quote_units: int) -> PriceImpact:
    """Walk ``opposite`` (the asks for a buy, the bids for a sell, best first) as a market
    ``side`` order spending ``quote_units`` would, taking whole lots."""
    remaining = quote_units
    lots = spent = used = 0
    best: int | None = None
    complete = False
    for p, size in opposite:
        if best is None:
            best = p
        take = min(size, remaining // p)
        if take <= 0:
            complete = True
            break
        used += 1
        lots += take
        spent += take * p
        remaining -= take * p
        if take < size:
            complete = True
            break
    else:
        complete = remaining < (best or 1) and lots > 0
    if not lots or best is None:
        return PriceImpact(side, quote_units, 0, 0, None, None, used, False)
    avg = Fraction(spent, lots)
    slip = (avg - best) / best * 10000
    return PriceImpact(side, quote_units, lots, spent, avg, abs(slip), used, complete)
