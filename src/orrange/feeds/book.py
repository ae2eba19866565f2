"""A local L2 order book of one exchange symbol (price level -> aggregate quantity).

Used by the exchange clients to keep the book in sync from a snapshot plus diffs. Prices and
quantities are exact :class:`~decimal.Decimal`; setting a level to quantity 0 removes it
(removing an unknown level is a no-op: Binance documents that this "can happen and is
normal").
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from itertools import islice

from sortedcontainers import SortedDict

from orrange.marketdata.ticks import Level

__all__ = ["BookReplica"]

_ZERO = Decimal(0)


class BookReplica:
    """Bids and asks as sorted dicts; optional ``max_depth`` truncation (Kraken).

    Args:
        max_depth: when set, :meth:`truncate` keeps only this many best levels per side.
    """

    __slots__ = ("asks", "bids", "max_depth")

    def __init__(self, max_depth: int | None = None) -> None:
        self.max_depth = max_depth
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()

    def reset(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Replace the whole book (levels with quantity 0 are skipped)."""
        self.bids = SortedDict({p: q for p, q in bids if q != _ZERO})
        self.asks = SortedDict({p: q for p, q in asks if q != _ZERO})

    def set_bid(self, price: Decimal, qty: Decimal) -> None:
        """Set (or with ``qty == 0`` remove) a bid level."""
        if qty == _ZERO:
            self.bids.pop(price, None)
        else:
            self.bids[price] = qty

    def set_ask(self, price: Decimal, qty: Decimal) -> None:
        """Set (or with ``qty == 0`` remove) an ask level."""
        if qty == _ZERO:
            self.asks.pop(price, None)
        else:
            self.asks[price] = qty

    def truncate(self) -> tuple[list[Decimal], list[Decimal]]:
        """Drop levels beyond ``max_depth`` on each side (the worst ones).

        Returns:
            ``(dropped_bid_prices, dropped_ask_prices)``; empty without ``max_depth``.
        """
        depth = self.max_depth
        dropped_bids: list[Decimal] = []
        dropped_asks: list[Decimal] = []
        if depth is None:
            return dropped_bids, dropped_asks
        while len(self.bids) > depth:
            dropped_bids.append(self.bids.popitem(0)[0])
        while len(self.asks) > depth:
            dropped_asks.append(self.asks.popitem(-1)[0])
        return dropped_bids, dropped_asks

    def bid_levels(self, n: int | None = None) -> tuple[Level, ...]:
        """Bids best (highest) first, at most ``n`` of them."""
        bids = self.bids
        return tuple((p, bids[p]) for p in islice(bids.irange(reverse=True), n))

    def ask_levels(self, n: int | None = None) -> tuple[Level, ...]:
        """Asks best (lowest) first, at most ``n`` of them."""
        asks = self.asks
        return tuple((p, asks[p]) for p in islice(asks.irange(), n))

    def best_bid(self) -> Level | None:
        """The highest bid, or ``None`` when the side is empty."""
        return self.bids.peekitem(-1) if self.bids else None

    def best_ask(self) -> Level | None:
        """The lowest ask, or ``None`` when the side is empty."""
        return self.asks.peekitem(0) if self.asks else None

    def as_dicts(self) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        """Plain ``(bids, asks)`` dict copies, for comparisons."""
        return dict(self.bids), dict(self.asks)
