"""A deliberately simple reference matcher for differential testing.

Covers a subset of the engine: limit and market orders (with or without a protection price),
GTC/IOC/FOK, cancel, amend of the quantity downwards (keeps priority), price-time priority, no
self-trade prevention (a user may trade with itself), no P2P constraints. Everything is plain
lists and full scans: each side is a list of resting orders; the priority order is recomputed by
sorting on every submit.
"""

from __future__ import annotations

from dataclasses import dataclass

from orrange.matching import (
    AmendOrder,
    CancelOrder,
    Command,
    OrderType,
    SelfTradePrevention,
    Side,
    SubmitOrder,
    TimeInForce,
)

Fill = tuple[int, int, int, int]  # maker id, taker id, price, quantity


@dataclass
class RefOrder:
    id: int
    user: str
    side: Side
    price: int
    quantity: int
    filled: int
    arrival: int

    @property
    def leaves(self) -> int:
        return self.quantity - self.filled


class ReferenceBook:
    def __init__(self, protection_bps: int, min_qty: int = 1, max_qty: int = 10**9) -> None:
        self.protection_bps = protection_bps
        self.min_qty = min_qty
        self.max_qty = max_qty
        self.resting: list[RefOrder] = []  # both sides, in arrival order
        self.next_id = 1
        self.clock = 0

    # ---------------------------------------------------------------------------- helpers
    def _tick(self) -> int:
        self.clock += 1
        return self.clock

    def _find(self, order_id: int, user: str) -> RefOrder | None:
        for o in self.resting:
            if o.id == order_id and o.user == user:
                return o
        return None

    def _queue(self, side: Side) -> list[RefOrder]:
        """Resting orders of ``side`` best first, then by arrival."""
        orders = [o for o in self.resting if o.side is side]
        if side is Side.BUY:
            return sorted(orders, key=lambda o: (-o.price, o.arrival))
        return sorted(orders, key=lambda o: (o.price, o.arrival))

    # --------------------------------------------------------------------------- commands
    def process(self, cmd: Command) -> list[Fill]:
        if isinstance(cmd, SubmitOrder):
            return self.submit(cmd)
        if isinstance(cmd, CancelOrder):
            o = self._find(cmd.order_id, cmd.user)
            if o is not None:
                self.resting.remove(o)
            return []
        if isinstance(cmd, AmendOrder):
            o = self._find(cmd.order_id, cmd.user)
            assert cmd.price is None and cmd.quantity is not None
            assert o is not None and o.filled < cmd.quantity < o.quantity, "amend-down only"
            o.quantity = cmd.quantity  # keeps its arrival stamp
            return []
        raise NotImplementedError(type(cmd).__name__)

    def submit(self, c: SubmitOrder) -> list[Fill]:
        assert c.stp is SelfTradePrevention.NONE and not c.payment_methods
        assert c.order_type in (OrderType.LIMIT, OrderType.MARKET)
        assert self.min_qty <= c.quantity <= self.max_qty
        taker = RefOrder(self.next_id, c.user, c.side, c.price or 0, c.quantity, 0, 0)
        self.next_id += 1
        opposite = Side.SELL if c.side is Side.BUY else Side.BUY
        queue = self._queue(opposite)
        if c.order_type is OrderType.MARKET:
            if not queue:
                return []
            best = queue[0].price
            move = best * (c.max_slippage_bps or self.protection_bps) // 10000
            limit = best + move if c.side is Side.BUY else best - move
            if c.price is not None:  # the order's protection price, when tighter
                limit = min(limit, c.price) if c.side is Side.BUY else max(limit, c.price)
        else:
            limit = taker.price

        def crosses(maker: RefOrder) -> bool:
            return maker.price <= limit if c.side is Side.BUY else maker.price >= limit

        eligible = [m for m in queue if crosses(m)]
        if c.tif is TimeInForce.FOK and sum(m.leaves for m in eligible) < c.quantity:
            return []
        fills: list[Fill] = []
        for m in eligible:
            if taker.leaves == 0:
                break
            q = min(m.leaves, taker.leaves)
            m.filled += q
            taker.filled += q
            fills.append((m.id, taker.id, m.price, q))
            if m.leaves == 0:
                self.resting.remove(m)
        rests = c.order_type is OrderType.LIMIT and c.tif in (TimeInForce.GTC, TimeInForce.DAY)
        if taker.leaves and rests:
            taker.arrival = self._tick()
            self.resting.append(taker)
        return fills

    # ------------------------------------------------------------------------------ views
    def depth(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(bids, asks) as (price, total leaves), best first, like ``OrderBook.depth``."""
        out = []
        for side in (Side.BUY, Side.SELL):
            sizes: dict[int, int] = {}
            for o in self.resting:
                if o.side is side:
                    sizes[o.price] = sizes.get(o.price, 0) + o.leaves
            out.append(sorted(sizes.items(), reverse=side is Side.BUY))
        return out[0], out[1]
