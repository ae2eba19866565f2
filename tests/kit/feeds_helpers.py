"""A tick collector that rebuilds books from the emitted ticks."""

from __future__ import annotations

from decimal import Decimal

from orrange.feeds import AnyTick, BookSnapshotTick, BookUpdate

Book = tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]


class Collector:
    """An ``emit`` callback recording every tick and replaying book ticks into plain dicts."""

    def __init__(self) -> None:
        self.ticks: list[AnyTick] = []
        self.books: dict[str, Book] = {}

    async def __call__(self, tick: AnyTick) -> None:
        self.ticks.append(tick)
        if isinstance(tick, BookSnapshotTick):
            self.books[tick.symbol] = (dict(tick.bids), dict(tick.asks))
        elif isinstance(tick, BookUpdate):
            bids, asks = self.books[tick.symbol]  # a snapshot always comes first
            for side, levels in ((bids, tick.bids), (asks, tick.asks)):
                for p, q in levels:
                    if q == 0:
                        side.pop(p, None)
                    else:
                        side[p] = q

    def of(self, kind: type) -> list:
        return [t for t in self.ticks if isinstance(t, kind)]
