"""The order book and matching engine of one market.

:class:`OrderBook` is a deterministic state machine: :meth:`OrderBook.process` takes one
:mod:`~orrange.matching.commands` command and returns the list of
:mod:`~orrange.matching.events` it caused, in order, each with the next sequence number. It does
no I/O and reads no clock (time is the command's ``ts``), so the same command stream always
yields the same events; a snapshot (:meth:`OrderBook.snapshot`) restored with
:meth:`OrderBook.restore` continues exactly as the original would have.

Matching rules
--------------
* **Price-time priority**: a taker trades against the best price level first, and within a
  level in queue order (arrival time). Under the ``price-reputation-time`` policy a level's
  queue is ordered by reputation tier (``reputation // reputation_tier_size``, higher first),
  then time. Trades happen at the maker's price.
* **P2P constraints**: a maker and a taker trade only if their payment-method sets intersect
  (an empty set accepts any) and each one's reputation is at least the other's
  ``min_reputation``. An incompatible maker is skipped and keeps its place.
* **Time in force**: GTC rests; IOC cancels its unfilled rest; FOK is checked against the
  compatible liquidity before any fill and canceled whole if it cannot fill; DAY rests until
  ``expire_at``. Market orders never rest: they trade up to a protection price
  (``max_slippage_bps`` from the best opposite price at arrival, capped by the order's own
  ``price`` when it gives one: the tighter of the two) and the rest is canceled.
* **Stop / take-profit** orders wait in trigger-price order and enter the book when the last
  trade price (or the index price, per order) reaches their trigger; several triggered by one
  move enter in the order of their triggers (nearest first), ties by arrival.
* **Self-trade prevention** per the taker's :class:`~orrange.matching.enums.SelfTradePrevention`.
* **Fees**: see :mod:`orrange.matching.events` for the rounding rule.

Implementation: each side keeps ``dict[key, _Level]`` plus a binary heap of level keys with
lazy deletion (key = price for asks, -price for bids, so the best level is always the smallest
key); a level holds a list of orders in priority order, with canceled orders removed lazily
(those before ``head`` have all left, the others are skipped while dead).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from fractions import Fraction
from heapq import heappop, heappush
from typing import Any

import msgspec
from sortedcontainers import SortedList

try:
    import cython
except ImportError:  # pure Python without Cython installed
    from orrange.matching import _nocython as cython


from orrange.markets import MarketSpec
from orrange.matching import commands as _commands
from orrange.matching.commands import (
    AdvanceTime,
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    Halt,
    Resume,
    SetReferencePrice,
    SubmitOrder,
)
from orrange.matching.depth import (
    DEFAULT_BANDS_BPS,
    DepthBand,
    PriceImpact,
    depth_bands,
    price_impact,
)
from orrange.matching.enums import (
    CancelReason,
    OrderType,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
    TriggerSource,
)
from orrange.matching.events import (
    BookDelta,
    BookStatus,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderTriggered,
)

__all__ = [
    "BookSnapshot",
    "DepthBand",
    "L2Book",
    "L3Order",
    "OrderBook",
    "OrderState",
    "OrderView",
    "PriceImpact",
]

_BUY = Side.BUY
_SELL = Side.SELL
_LIMIT = OrderType.LIMIT
_MARKET = OrderType.MARKET
_STOP_MARKET = OrderType.STOP_MARKET
_STOP_LIMIT = OrderType.STOP_LIMIT
_TP_MARKET = OrderType.TAKE_PROFIT_MARKET
_TP_LIMIT = OrderType.TAKE_PROFIT_LIMIT
_GTC = TimeInForce.GTC
_IOC = TimeInForce.IOC
_FOK = TimeInForce.FOK
_DAY = TimeInForce.DAY
_LAST = TriggerSource.LAST
_INDEX = TriggerSource.INDEX
_STP_NONE = SelfTradePrevention.NONE
_STP_NEWEST = SelfTradePrevention.CANCEL_NEWEST
_STP_OLDEST = SelfTradePrevention.CANCEL_OLDEST
_STP_BOTH = SelfTradePrevention.CANCEL_BOTH
_STP_DC = SelfTradePrevention.DECREMENT_AND_CANCEL
_R = RejectReason
_C = CancelReason
# enum members as module constants: `CancelReason.USER` is a metaclass attribute lookup
_C_USER = _C.USER
_C_CANCEL_ALL = _C.CANCEL_ALL
_C_FOK = _C.FOK_UNFILLABLE
_C_IOC = _C.IOC_REMAINDER
_C_PROTECTION = _C.MARKET_PROTECTION
_C_NO_LIQUIDITY = _C.NO_LIQUIDITY
_C_STP = _C.SELF_TRADE_PREVENTION
_NEVER = 1 << 62  # "no expiry pending"

if not cython.compiled:
    # Compiled, book.pxd replaces these with C functions that allocate the event and fill its
    # fields directly (same struct, same values), after checking msgspec's struct layout.
    _ev_accepted = OrderAccepted
    _ev_filled = OrderFilled
    _ev_canceled = OrderCanceled
    _ev_delta = BookDelta

    def _check_layouts(s: type, c: type, a: type, f: type, x: type, d: type) -> int:
        return 1


_check_layouts(SubmitOrder, CancelOrder, OrderAccepted, OrderFilled, OrderCanceled, BookDelta)


class _Order:
    """A live order (resting, or pending its trigger). Mutable; engine-internal.

    ``leaves == 0`` marks an order that left the book; it may linger in a level's list until
    swept (lazy deletion). Holds no reference to its level. When the module is compiled, the
    attribute types come from ``book.pxd``.
    """

    def __init__(
        self,
        id: int,
        user: str,
        side: Side,
        price: int,
        qty: int,
        leaves: int,
        filled: int,
        cmd: SubmitOrder,
        constrained: bool,
        tier: int,
        market: bool,
        stop_no: int = 0,
        triggered: bool = False,
    ) -> None:
        self.id = id
        self.user = user
        self.side = side
        self.price = price  # limit or protection price in ticks; 0 when a market order has none
        self.qty = qty  # total quantity (lots), including what has filled
        self.leaves = leaves  # open quantity (lots)
        self.filled = filled
        self.cmd = cmd
        self.constrained = constrained  # carries payment methods or a reputation floor
        self.tier = tier
        self.market = market  # trades as a market order (market, or triggered *_market)
        self.stop_key: tuple[int, int, int] | None = None
        self.stop_no = stop_no
        self.triggered = triggered
        self.day = cmd.tif is _DAY  # expires at cmd.expire_at
        self.key = 0  # level key while resting (price for asks, -price for bids)


def _new_order(
    id: int,
    user: str,
    side: Side,
    price: int,
    qty: int,
    cmd: SubmitOrder,
    constrained: bool,
    tier: int,
) -> _Order:
    """A fresh, untriggered limit/market order with nothing filled (hot-path factory)."""
    o = _Order.__new__(_Order)
    o.id = id
    o.user = user
    o.side = side
    o.price = price
    o.qty = qty
    o.leaves = qty
    o.filled = 0
    o.cmd = cmd
    o.constrained = constrained
    o.tier = tier
    o.market = False
    o.stop_key = None
    o.stop_no = 0
    o.triggered = False
    o.day = cmd.tif is _DAY
    o.key = 0
    return o


class _Level:
    def __init__(self, price: int, key: int) -> None:
        self.price = price
        self.key = key
        self.size = 0  # aggregate open lots
        self.live = 0  # number of live orders
        self.orders: list[_Order] = []  # queue order; orders[:head] have all left the book
        self.head = 0


class _Side:
    def __init__(self, side: Side) -> None:
        self.side = side
        self.sign = 1 if side is _SELL else -1  # key = sign * price; best = smallest key
        self.levels: dict[int, _Level] = {}
        self.heap: list[int] = []
        self.inheap: set[int] = set()
        self.best: int | None = None  # best_key() while no level was deleted since; or None

    def best_key(self) -> int | None:
        k = self.best
        if k is not None:
            return k
        heap = self.heap
        levels = self.levels
        while heap:
            k = heap[0]
            if k in levels:
                self.best = k
                return k
            heappop(heap)
            self.inheap.discard(k)
        return None

    def sorted_keys(self) -> list[int]:
        return sorted(self.levels)


# ---------------------------------------------------------------------------------- views


class OrderState(msgspec.Struct, frozen=True, array_like=True):
    """A live order in a :class:`BookSnapshot` (prices ticks, quantities lots)."""

    submit: _commands.SubmitOrder  # compiled, the bare name is a C type, not a module global
    order_id: int
    price: int
    quantity: int
    leaves: int
    filled: int
    triggered: bool
    stop_no: int


class BookSnapshot(msgspec.Struct, frozen=True):
    """The whole state of a book: resting orders per side (best level first, each level in
    queue order), pending stop orders in arrival order, counters, last trade and reference
    price. Encode with :meth:`OrderBook.snapshot`, restore with :meth:`OrderBook.restore`."""

    symbol: str
    seq: int
    next_order_id: int
    stop_no: int
    last_price: int | None
    reference_price: int | None
    halted: bool
    bids: list[OrderState]
    asks: list[OrderState]
    stops: list[OrderState]


class L2Book(msgspec.Struct, frozen=True):
    """Aggregated depth: ``(price_ticks, size_lots)`` per level, best first, at ``seq``."""

    symbol: str
    seq: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]


class L3Order(msgspec.Struct, frozen=True):
    """One order of a level, in queue order."""

    order_id: int
    user: str
    leaves: int
    quantity: int


class OrderView(msgspec.Struct, frozen=True):
    """A live order as seen from outside (ticks, lots, ms UTC)."""

    order_id: int
    user: str
    client_order_id: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int | None
    trigger_price: int | None
    quantity: int
    leaves: int
    filled: int
    pending: bool
    ts: int


def _compatible(a: _Order, b: _Order) -> bool:
    ca = a.cmd
    cb = b.cmd
    if ca.reputation < cb.min_reputation or cb.reputation < ca.min_reputation:
        return False
    pa = ca.payment_methods
    pb = cb.payment_methods
    return not (pa and pb and set(pa).isdisjoint(pb))


def _common_methods(a: _Order, b: _Order) -> tuple[str, ...]:
    pa = a.cmd.payment_methods
    pb = b.cmd.payment_methods
    if pa and pb:
        return tuple(sorted(set(pa).intersection(pb)))
    return tuple(sorted(pa or pb))


class OrderBook:
    """One market's order book and matching engine.

    Args:
        spec: the market (tick and lot grid, limits, fees, priority policy).

    Use :meth:`process` for every state change; the ``best_*``, :meth:`depth`, :meth:`l3`,
    :meth:`depth_bands` and :meth:`price_impact` views never change the book.
    """

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.symbol = spec.symbol
        self._seq = 0
        self._next_id = 1
        self._stop_no = 0
        self._orders: dict[int, _Order] = {}
        self._pending: dict[int, _Order] = {}
        self._bids = _Side(_BUY)
        self._asks = _Side(_SELL)
        self._last: int | None = None
        self._ref: int | None = None
        self._halted = False
        self._out: list[Event] = []
        self._expiries: list[tuple[int, int]] = []
        self._next_expiry = _NEVER
        # pending stops: (k, stop_no, order_id) with k = trigger (rising) or -trigger (falling)
        self._rising: dict[TriggerSource, SortedList] = {_LAST: SortedList(), _INDEX: SortedList()}
        self._falling: dict[TriggerSource, SortedList] = {_LAST: SortedList(), _INDEX: SortedList()}
        self._min_lots = spec.min_lots
        self._max_lots = spec.max_lots
        self._min_notional = spec.min_notional_units
        # price >= 1 tick and quantity >= min_lots: a floor up to min_lots always holds
        self._need_notional = self._min_notional > self._min_lots
        self._maker_bps = spec.maker_fee_bps
        self._taker_bps = spec.taker_fee_bps
        self._protect_bps = spec.market_protection_bps
        self._tiered = spec.priority == "price-reputation-time"
        self._tier_size = spec.reputation_tier_size
        self._handlers: dict[type, Callable[[Any], None]] = {
            AmendOrder: self._amend,
            CancelAll: self._cancel_all,
            SetReferencePrice: self._set_reference,
            AdvanceTime: self._advance,
            Halt: self._halt,
            Resume: self._resume,
        }

    # ------------------------------------------------------------------------ public API
    @property
    def seq(self) -> int:
        """Sequence number of the last event emitted (0 before any)."""
        return self._seq

    @property
    def last_price(self) -> int | None:
        """Price (ticks) of the last trade, or None."""
        return self._last

    @property
    def reference_price(self) -> int | None:
        """Last index/reference price (ticks) given by :class:`SetReferencePrice`, or None."""
        return self._ref

    @property
    def halted(self) -> bool:
        return self._halted

    def process(self, cmd: Command) -> list[Event]:
        """Apply one command; return its events in order (empty only when the command had
        nothing to do: an :class:`AdvanceTime` with nothing due, a :class:`CancelAll` with no
        open order).

        Raises:
            TypeError: ``cmd`` is not one of the :data:`~orrange.matching.commands.Command`
                types (a bad *value* inside a command is an :class:`OrderRejected`, not an
                exception).
        """
        out: list[Event] = []
        self._out = out
        t = type(cmd)
        # submit and cancel run due expiries themselves (reading ts from the typed command)
        if t is SubmitOrder:
            self._submit(cmd)  # type: ignore[arg-type]
        elif t is CancelOrder:
            self._cancel(cmd)  # type: ignore[arg-type]
        else:
            handler = self._handlers.get(t)
            if handler is None:
                raise TypeError(f"not a book command: {t.__name__}")
            if cmd.ts >= self._next_expiry:
                self._expire_due(cmd.ts)
            handler(cmd)
        return out

    def process_many(self, cmds: Iterable[Command]) -> list[Event]:
        """Apply commands in order; return all their events concatenated."""
        events: list[Event] = []
        process = self.process
        for c in cmds:
            events += process(c)
        return events

    # ----------------------------------------------------------------------- emit helpers
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _reject(
        self,
        ts: int,
        order_id: int,
        user: str,
        client_order_id: str,
        command: str,
        reason: RejectReason,
        message: str,
    ) -> None:
        self._seq += 1
        self._out.append(
            OrderRejected(
                self.symbol,
                self._seq,
                ts,
                order_id,
                user,
                client_order_id,
                command,
                reason,
                message,
            )
        )

    def _emit_cancel(self, ts: int, o: _Order, reason: CancelReason, qty: int, leaves: int) -> None:
        self._seq += 1
        self._out.append(
            _ev_canceled(self.symbol, self._seq, ts, o.id, o.user, reason, qty, leaves)
        )

    def _emit_delta(self, ts: int, side: Side, price: int, size: int) -> None:
        self._seq += 1
        self._out.append(_ev_delta(self.symbol, self._seq, ts, side, price, size))

    # ---------------------------------------------------------------------------- submit
    def _submit(self, c: SubmitOrder) -> None:
        # compiled, `c` is typed by book.pxd: each field read is one load
        ts = c.ts
        if ts >= self._next_expiry:
            self._expire_due(ts)
        qty = c.quantity
        ot = c.order_type
        price = c.price
        if (
            ot is _LIMIT
            and c.tif is _GTC
            and price is not None
            and not self._halted
            and price > 0
            and self._min_lots <= qty <= self._max_lots
            and (not self._need_notional or price * qty >= self._min_notional)
            and c.order_id == 0
            and c.trigger_price is None
            and c.expire_at is None
            and not c.post_only
        ):
            # fast path: a plain GTC limit order (the bulk of any real flow)
            oid = self._next_id
            self._next_id = oid + 1
            user = c.user
            side = c.side
            o = _new_order(
                oid,
                user,
                side,
                price,
                qty,
                c,
                bool(c.payment_methods) or c.min_reputation > 0,
                c.reputation // self._tier_size if self._tiered else 0,
            )
            self._seq += 1
            self._out.append(
                _ev_accepted(
                    self.symbol,
                    self._seq,
                    ts,
                    oid,
                    user,
                    c.client_order_id,
                    side,
                    ot,
                    _GTC,
                    price,
                    None,
                    qty,
                    False,
                )
            )
            if side is _BUY:
                opp = self._asks
                limit_key = price
            else:
                opp = self._bids
                limit_key = -price
            k = opp.best_key()
            if k is None or k > limit_key:
                self._rest(o, ts)
                return
            last = self._last
            self._match(o, opp, limit_key, ts)
            if o.leaves != 0:
                self._rest(o, ts)
            if self._pending and self._last != last:
                self._run_triggers(ts)
            return
        reason = None
        if self._halted:
            reason, msg = _R.BOOK_HALTED, "the book is halted"
        elif qty <= 0:
            reason, msg = _R.INVALID_QUANTITY, f"quantity {qty} must be positive"
        elif qty < self._min_lots:
            reason, msg = _R.BELOW_MIN_QTY, f"quantity {qty} is below {self._min_lots} lots"
        elif qty > self._max_lots:
            reason, msg = _R.ABOVE_MAX_QTY, f"quantity {qty} is above {self._max_lots} lots"
        elif ot is _LIMIT or ot is _STOP_LIMIT or ot is _TP_LIMIT:
            if price is None:
                reason, msg = _R.MISSING_PRICE, f"a {ot} order needs a price"
            elif price <= 0:
                reason, msg = _R.INVALID_PRICE, f"price {price} must be positive"
            elif price * qty < self._min_notional:
                reason, msg = (
                    _R.BELOW_MIN_NOTIONAL,
                    f"notional {price * qty} is below {self._min_notional} quote units",
                )
        elif price is not None and price <= 0:
            reason, msg = _R.INVALID_PRICE, f"protection price {price} must be positive"
        if reason is None:
            trig = c.trigger_price
            if ot is _LIMIT or ot is _MARKET:
                if trig is not None:
                    reason, msg = _R.UNEXPECTED_TRIGGER_PRICE, f"a {ot} order takes no trigger"
            elif trig is None:
                reason, msg = _R.MISSING_TRIGGER_PRICE, f"a {ot} order needs a trigger price"
            elif trig <= 0:
                reason, msg = _R.INVALID_PRICE, f"trigger price {trig} must be positive"
            if reason is None:
                tif = c.tif
                if tif is _DAY:
                    if c.expire_at is None:
                        reason, msg = _R.MISSING_EXPIRY, "a DAY order needs expire_at"
                    elif c.expire_at <= ts:
                        reason, msg = _R.EXPIRY_IN_PAST, f"expire_at {c.expire_at} <= ts {ts}"
                elif c.expire_at is not None:
                    reason, msg = _R.UNEXPECTED_EXPIRY, "expire_at is only for DAY orders"
                if (
                    reason is None
                    and c.post_only
                    and (ot is not _LIMIT or tif is _IOC or tif is _FOK)
                ):
                    reason, msg = _R.POST_ONLY_NOT_LIMIT, "post-only needs a resting limit order"
                if reason is None and c.max_slippage_bps < 0:
                    reason, msg = _R.INVALID_SLIPPAGE, "max_slippage_bps must be >= 0"
        oid = c.order_id
        if reason is None and oid and (oid in self._orders or oid in self._pending):
            reason, msg = _R.DUPLICATE_ORDER_ID, f"order id {oid} is live"
        if reason is not None:
            self._reject(ts, oid, c.user, c.client_order_id, "submit", reason, msg)
            return
        side = c.side
        if ot is _LIMIT and c.post_only:
            assert price is not None
            opp = self._asks if side is _BUY else self._bids
            k = opp.best_key()
            if k is not None and k <= (price if side is _BUY else -price):
                self._reject(
                    ts,
                    oid,
                    c.user,
                    c.client_order_id,
                    "submit",
                    _R.POST_ONLY_WOULD_CROSS,
                    f"post-only price {price} would trade on arrival",
                )
                return
        pending = not (ot is _LIMIT or ot is _MARKET)
        if pending:
            src_price = self._last if c.trigger_source is _LAST else self._ref
            trig = c.trigger_price
            assert trig is not None
            if src_price is not None and self._is_triggered(side, ot, trig, src_price):
                self._reject(
                    ts,
                    oid,
                    c.user,
                    c.client_order_id,
                    "submit",
                    _R.WOULD_TRIGGER_IMMEDIATELY,
                    f"trigger {trig} is already reached by the {c.trigger_source} price "
                    f"{src_price}",
                )
                return
        if oid:
            if oid >= self._next_id:
                self._next_id = oid + 1
        else:
            oid = self._next_id
            self._next_id = oid + 1
        o = _new_order(
            oid,
            c.user,
            side,
            price or 0,
            qty,
            c,
            bool(c.payment_methods) or c.min_reputation > 0,
            c.reputation // self._tier_size if self._tiered else 0,
        )
        o.market = ot is _MARKET
        self._seq += 1
        self._out.append(
            _ev_accepted(
                self.symbol,
                self._seq,
                ts,
                oid,
                c.user,
                c.client_order_id,
                side,
                ot,
                c.tif,
                price,
                c.trigger_price,
                qty,
                pending,
            )
        )
        if pending:
            self._add_stop(o)
            if c.tif is _DAY:
                self._add_expiry(c.expire_at, oid)  # type: ignore[arg-type]
            return
        last = self._last
        self._execute(o, ts)
        if self._pending and self._last != last:
            self._run_triggers(ts)

    @staticmethod
    def _is_triggered(side: Side, ot: OrderType, trig: int, price: int) -> bool:
        rising = (side is _BUY) == (ot is _STOP_MARKET or ot is _STOP_LIMIT)
        return price >= trig if rising else price <= trig

    def _add_expiry(self, at: int, oid: int) -> None:
        heappush(self._expiries, (at, oid))
        if at < self._next_expiry:
            self._next_expiry = at

    # --------------------------------------------------------------------------- execute
    def _execute(self, o: _Order, ts: int) -> None:
        """Match an incoming order, then rest or cancel what is left."""
        if o.side is _BUY:
            opp = self._asks
            sign = 1
        else:
            opp = self._bids
            sign = -1
        best = opp.best_key()
        c = o.cmd
        if o.market:
            if best is None:
                self._emit_cancel(ts, o, _C_NO_LIQUIDITY, o.leaves, 0)
                o.leaves = 0
                return
            bps = c.max_slippage_bps or self._protect_bps
            best_price = best * sign
            if sign == 1:
                limit_key = best_price + best_price * bps // 10000
            else:
                limit_key = -(best_price - best_price * bps // 10000)
            if o.price:  # the order's own protection price, when tighter
                cap = o.price * sign
                if cap < limit_key:
                    limit_key = cap
        else:
            limit_key = o.price * sign
            if best is None or best > limit_key:
                if c.tif is _IOC or c.tif is _FOK:
                    reason = _C_IOC if c.tif is _IOC else _C_FOK
                    self._emit_cancel(ts, o, reason, o.leaves, 0)
                    o.leaves = 0
                else:
                    self._rest(o, ts)
                return
        if c.tif is _FOK and not self._fillable(o, opp, limit_key):
            self._emit_cancel(ts, o, _C_FOK, o.leaves, 0)
            o.leaves = 0
            return
        self._match(o, opp, limit_key, ts)
        if o.leaves == 0:
            return
        if o.market:
            k = opp.best_key()
            reason = _C_NO_LIQUIDITY if k is None or k <= limit_key else _C_PROTECTION
            self._emit_cancel(ts, o, reason, o.leaves, 0)
            o.leaves = 0
        elif c.tif is _IOC or c.tif is _FOK:
            reason = _C_IOC if c.tif is _IOC else _C_FOK
            self._emit_cancel(ts, o, reason, o.leaves, 0)
            o.leaves = 0
        else:
            self._rest(o, ts)

    def _rest(self, o: _Order, ts: int) -> None:
        if o.side is _BUY:
            own = self._bids
            key = -o.price
        else:
            own = self._asks
            key = o.price
        levels = own.levels
        lvl = levels.get(key)
        if lvl is None:
            o.key = key
            lvl = _Level(o.price, key)
            levels[key] = lvl
            if own.best is not None and key < own.best:
                own.best = key
            if key not in own.inheap:
                heappush(own.heap, key)
                own.inheap.add(key)
            lvl.orders.append(o)
        else:
            o.key = lvl.key  # the dict's own key object: later lookups match it by identity
            if self._tiered:
                q = lvl.orders
                tier = o.tier
                i = len(q)
                while i > lvl.head and q[i - 1].tier < tier:
                    i -= 1
                q.insert(i, o)
            else:
                lvl.orders.append(o)
        lvl.size += o.leaves
        lvl.live += 1
        self._orders[o.id] = o
        self._seq += 1
        self._out.append(_ev_delta(self.symbol, self._seq, ts, own.side, o.price, lvl.size))
        if o.day:
            self._add_expiry(o.cmd.expire_at, o.id)  # type: ignore[arg-type]

    def _remove_resting(self, o: _Order, ts: int) -> None:
        """Take a resting order out of the book (it stays in its level's list, dead) and emit the
        level's delta."""
        own = self._bids if o.side is _BUY else self._asks
        key = o.key
        lvl = own.levels[key]
        lvl.size -= o.leaves
        lvl.live -= 1
        o.leaves = 0
        del self._orders[o.id]
        if not lvl.live:
            del own.levels[key]
            own.best = None
        elif len(lvl.orders) > 2 * lvl.live + 16:
            lvl.orders = [x for x in lvl.orders if x.leaves]
            lvl.head = 0
        self._seq += 1
        self._out.append(_ev_delta(self.symbol, self._seq, ts, own.side, o.price, lvl.size))

    def _match(self, o: _Order, opp: _Side, limit_key: int, ts: int) -> None:
        levels = opp.levels
        heap = opp.heap
        while o.leaves != 0:
            while heap:
                k = heap[0]
                lvl = levels.get(k)
                if lvl is not None:
                    break
                heappop(heap)
                opp.inheap.discard(k)
            else:
                return
            if k > limit_key:
                return
            self._match_level(o, lvl, opp.side, ts)
            if not lvl.live:
                del levels[k]
                opp.best = None
                heappop(heap)
                opp.inheap.discard(k)
            elif o.leaves:
                # what is left at this level cannot trade with o: walk the deeper levels
                for k2 in sorted(x for x in levels if k < x <= limit_key):
                    lvl = levels[k2]
                    self._match_level(o, lvl, opp.side, ts)
                    if not lvl.live:
                        del levels[k2]
                        opp.best = None
                    if not o.leaves:
                        return
                return

    def _match_level(self, o: _Order, lvl: _Level, maker_side: Side, ts: int) -> None:
        q = lvl.orders
        out = self._out
        sym = self.symbol
        orders = self._orders
        taker_user = o.user
        tc = o.constrained
        stp = o.cmd.stp
        price = lvl.price
        aggressor = o.side
        mbps = self._maker_bps
        tbps = self._taker_bps
        mpos = mbps >= 0
        tpos = tbps >= 0
        mneg = -mbps
        tneg = -tbps
        leaves = o.leaves
        size0 = lvl.size
        head = lvl.head  # orders before it have left; it advances over those leaving at the front
        i = head
        while leaves != 0 and i < len(q):
            m = q[i]
            ml = m.leaves
            if ml == 0:
                if i == head:
                    head += 1
                i += 1
                continue
            methods: tuple[str, ...] = ()
            if tc or m.constrained:
                if not _compatible(o, m):
                    i += 1
                    continue
                methods = _common_methods(o, m)
            if stp is not _STP_NONE and m.user == taker_user:
                if stp is _STP_NEWEST or stp is _STP_BOTH:
                    self._emit_cancel(ts, o, _C_STP, leaves, 0)
                    leaves = 0
                    if stp is _STP_NEWEST:
                        break
                    d = ml
                elif stp is _STP_OLDEST:
                    d = ml
                else:  # decrement and cancel
                    d = ml if ml < leaves else leaves
                    leaves -= d
                    o.qty -= d  # canceled lots leave the total too (qty == filled + leaves)
                    self._emit_cancel(ts, o, _C_STP, d, leaves)
                ml -= d
                m.leaves = ml
                m.qty -= d
                lvl.size -= d
                self._emit_cancel(ts, m, _C_STP, d, ml)
                if ml == 0:
                    del orders[m.id]
                    lvl.live -= 1
                    if i == head:
                        head += 1
                    i += 1
                continue
            fill = ml if ml < leaves else leaves
            ml -= fill
            leaves -= fill
            m.leaves = ml
            m.filled += fill
            n = price * fill
            mf = (n * mbps + 9999) // 10000 if mpos else -((n * mneg) // 10000)
            tf = (n * tbps + 9999) // 10000 if tpos else -((n * tneg) // 10000)
            self._seq += 1
            out.append(
                _ev_filled(
                    sym,
                    self._seq,
                    ts,
                    m.id,
                    o.id,
                    m.user,
                    taker_user,
                    price,
                    fill,
                    aggressor,
                    mf,
                    tf,
                    ml,
                    leaves,
                    methods,
                )
            )
            o.filled += fill
            lvl.size -= fill
            self._last = price
            if ml == 0:
                del orders[m.id]
                lvl.live -= 1
                if i == head:
                    head += 1
                i += 1
        if head > 16 and 2 * head > len(q):
            del q[:head]
            head = 0
        lvl.head = head
        o.leaves = leaves
        if lvl.size != size0:
            self._seq += 1
            out.append(_ev_delta(sym, self._seq, ts, maker_side, price, lvl.size))

    def _fillable(self, o: _Order, opp: _Side, limit_key: int) -> bool:
        """FOK pre-check: can ``o`` fill completely against compatible makers now?"""
        need = o.leaves
        stp = o.cmd.stp
        for k in sorted(x for x in opp.levels if x <= limit_key):
            for m in opp.levels[k].orders:
                if not m.leaves:
                    continue
                if (o.constrained or m.constrained) and not _compatible(o, m):
                    continue
                if stp is not _STP_NONE and m.user == o.user:
                    if stp is _STP_OLDEST:
                        continue
                    return False
                need -= m.leaves
                if need <= 0:
                    return True
        return False

    # ------------------------------------------------------------------------------ stops
    def _add_stop(self, o: _Order) -> None:
        c = o.cmd
        trig = c.trigger_price
        assert trig is not None
        self._stop_no += 1
        o.stop_no = self._stop_no
        if self._is_rising(o):
            key = (trig, o.stop_no, o.id)
            self._rising[c.trigger_source].add(key)
        else:
            key = (-trig, o.stop_no, o.id)
            self._falling[c.trigger_source].add(key)
        o.stop_key = key
        self._pending[o.id] = o

    @staticmethod
    def _is_rising(o: _Order) -> bool:
        ot = o.cmd.order_type
        return (o.side is _BUY) == (ot is _STOP_MARKET or ot is _STOP_LIMIT)

    def _remove_stop(self, o: _Order) -> None:
        src = o.cmd.trigger_source
        lst = self._rising[src] if self._is_rising(o) else self._falling[src]
        lst.remove(o.stop_key)
        del self._pending[o.id]

    def _next_triggered(
        self, last: int | None, ref: int | None
    ) -> tuple[_Order, TriggerSource, int] | None:
        best: tuple[int, _Order, TriggerSource, int] | None = None
        for src, price in ((_LAST, last), (_INDEX, ref)):
            if price is None:
                continue
            r = self._rising[src]
            if r and r[0][0] <= price and (best is None or r[0][1] < best[0]):
                best = (r[0][1], self._pending[r[0][2]], src, price)
            f = self._falling[src]
            if f and f[0][0] <= -price and (best is None or f[0][1] < best[0]):
                best = (f[0][1], self._pending[f[0][2]], src, price)
        return None if best is None else (best[1], best[2], best[3])

    def _run_triggers(self, ts: int) -> None:
        # every stop the current prices reach enters, even if one entering before it moves the
        # price back; the prices its trades make are looked at once that batch is done
        last = self._last
        ref = self._ref
        while True:
            nxt = self._next_triggered(last, ref)
            if nxt is None:
                if last == self._last and ref == self._ref:
                    return
                last = self._last
                ref = self._ref
                continue
            o, src, observed = nxt
            self._remove_stop(o)
            c = o.cmd
            self._seq += 1
            self._out.append(
                OrderTriggered(
                    self.symbol,
                    self._seq,
                    ts,
                    o.id,
                    o.user,
                    c.trigger_price,  # type: ignore[arg-type]
                    src,
                    observed,
                )
            )
            o.triggered = True
            o.market = c.order_type is _STOP_MARKET or c.order_type is _TP_MARKET
            self._execute(o, ts)

    # ------------------------------------------------------------------ cancel and amend
    def _find(self, ts: int, order_id: int, user: str, command: str) -> tuple[_Order | None, bool]:
        o = self._orders.get(order_id)
        pending = False
        if o is None:
            o = self._pending.get(order_id)
            pending = True
        if o is None:
            self._reject(
                ts, order_id, user, "", command, _R.UNKNOWN_ORDER, f"order {order_id} is not open"
            )
            return None, False
        if o.user != user:
            self._reject(
                ts,
                order_id,
                user,
                "",
                command,
                _R.NOT_OWNER,
                f"order {order_id} belongs to another user",
            )
            return None, False
        return o, pending

    def _cancel(self, c: CancelOrder) -> None:
        ts = c.ts
        if ts >= self._next_expiry:
            self._expire_due(ts)
        order_id = c.order_id
        user = c.user
        o = self._orders.get(order_id)
        if o is not None and (o.user is user or o.user == user):
            # fast path: the owner cancels a resting order
            self._seq += 1
            self._out.append(
                _ev_canceled(self.symbol, self._seq, ts, o.id, o.user, _C_USER, o.leaves, 0)
            )
            self._remove_resting(o, ts)
            return
        found, pending = self._find(ts, order_id, user, "cancel")
        if found is not None:
            self._cancel_one(found, pending, _C_USER, ts)

    def _cancel_one(self, o: _Order, pending: bool, reason: CancelReason, ts: int) -> None:
        self._emit_cancel(ts, o, reason, o.leaves, 0)
        if pending:
            self._remove_stop(o)
            o.leaves = 0
        else:
            self._remove_resting(o, ts)

    def _cancel_all(self, c: CancelAll) -> None:
        user = c.user
        victims = sorted(
            [(o.id, False, o) for o in self._orders.values() if o.user == user]
            + [(o.id, True, o) for o in self._pending.values() if o.user == user],
            key=lambda t: t[0],
        )
        for _, pending, o in victims:
            self._cancel_one(o, pending, _C_CANCEL_ALL, c.ts)

    def _amend(self, c: AmendOrder) -> None:
        ts = c.ts
        o, pending = self._find(ts, c.order_id, c.user, "amend")
        if o is None:
            return
        reason = None
        new_qty = o.qty if c.quantity is None else c.quantity
        cmd = o.cmd
        has_price = (
            not o.market
            and cmd.order_type is not _STOP_MARKET
            and (cmd.order_type is not _TP_MARKET)
        )
        new_price = o.price if c.price is None else c.price
        if c.quantity is None and c.price is None:
            reason, msg = _R.INVALID_AMEND, "nothing to change: give quantity or price"
        elif c.price is not None and not has_price:
            reason, msg = _R.UNEXPECTED_PRICE, f"a {cmd.order_type} order has no limit price"
        elif has_price and new_price <= 0:
            reason, msg = _R.INVALID_PRICE, f"price {new_price} must be positive"
        elif new_qty <= o.filled:
            reason, msg = (
                _R.INVALID_AMEND,
                f"quantity {new_qty} must exceed the filled quantity {o.filled}",
            )
        elif c.quantity is not None and new_qty < self._min_lots:
            reason, msg = _R.BELOW_MIN_QTY, f"quantity {new_qty} is below {self._min_lots} lots"
        elif new_qty > self._max_lots:
            reason, msg = _R.ABOVE_MAX_QTY, f"quantity {new_qty} is above {self._max_lots} lots"
        elif has_price and new_price * new_qty < self._min_notional:
            reason, msg = _R.BELOW_MIN_NOTIONAL, "the amended order is below the min notional"
        if reason is None and cmd.post_only and not pending and new_price != o.price:
            opp = self._asks if o.side is _BUY else self._bids
            k = opp.best_key()
            if k is not None and k <= (new_price if o.side is _BUY else -new_price):
                reason, msg = _R.POST_ONLY_WOULD_CROSS, f"post-only price {new_price} would trade"
        if (
            reason is None
            and self._halted
            and not pending
            and (new_price != o.price or new_qty - o.filled > o.leaves)
        ):
            # a cancel-replace could trade: a halted book only takes size reductions
            reason, msg = _R.BOOK_HALTED, "the book is halted: only quantity reductions"
        if reason is not None:
            self._reject(ts, o.id, c.user, cmd.client_order_id, "amend", reason, msg)
            return
        new_leaves = new_qty - o.filled
        keep = pending or (new_price == o.price and new_leaves <= o.leaves)
        self._seq += 1
        self._out.append(
            OrderAmended(
                self.symbol,
                self._seq,
                ts,
                o.id,
                o.user,
                new_price if has_price else None,
                new_qty,
                new_leaves,
                keep,
            )
        )
        if pending:
            o.qty = new_qty
            o.leaves = new_leaves
            o.price = new_price
            return
        if keep:
            own = self._bids if o.side is _BUY else self._asks
            lvl = own.levels[o.price * own.sign]
            lvl.size -= o.leaves - new_leaves
            o.leaves = new_leaves
            o.qty = new_qty
            self._emit_delta(ts, own.side, o.price, lvl.size)
            return
        # cancel-replace: a fresh order object (the old one stays dead in its deque)
        self._remove_resting(o, ts)
        n = _Order(
            o.id,
            o.user,
            o.side,
            new_price,
            new_qty,
            new_leaves,
            o.filled,
            cmd,
            o.constrained,
            o.tier,
            False,
            triggered=o.triggered,
        )
        last = self._last
        self._execute(n, ts)
        if self._pending and self._last != last:
            self._run_triggers(ts)

    # ----------------------------------------------------------------- reference / time
    def _set_reference(self, c: SetReferencePrice) -> None:
        if c.price <= 0:
            self._reject(c.ts, 0, "", "", "reference_price", _R.INVALID_PRICE, "price must be > 0")
            return
        self._ref = c.price
        if self._pending and not self._halted:  # a halted book never trades: wait for resume
            self._run_triggers(c.ts)

    def _advance(self, c: AdvanceTime) -> None:
        return None  # expiry already ran in process()

    def _expire_due(self, ts: int) -> None:
        h = self._expiries
        while h and h[0][0] <= ts:
            at, oid = heappop(h)
            o = self._orders.get(oid)
            pending = False
            if o is None:
                o = self._pending.get(oid)
                pending = True
            if o is None or o.cmd.expire_at != at:
                continue
            self._seq += 1
            self._out.append(OrderExpired(self.symbol, self._seq, ts, o.id, o.user, o.leaves))
            if pending:
                self._remove_stop(o)
                o.leaves = 0
            else:
                self._remove_resting(o, ts)
        self._next_expiry = h[0][0] if h else _NEVER

    def _halt(self, c: Halt) -> None:
        self._halted = True
        self._seq += 1
        self._out.append(BookStatus(self.symbol, self._seq, c.ts, True))

    def _resume(self, c: Resume) -> None:
        self._halted = False
        self._seq += 1
        self._out.append(BookStatus(self.symbol, self._seq, c.ts, False))
        if self._pending:  # index moves seen while halted
            self._run_triggers(c.ts)

    # ------------------------------------------------------------------------------ views
    def best_bid(self) -> int | None:
        """Best bid price in ticks, or None."""
        k = self._bids.best_key()
        return None if k is None else -k

    def best_ask(self) -> int | None:
        """Best ask price in ticks, or None."""
        return self._asks.best_key()

    def spread(self) -> int | None:
        """Best ask minus best bid in ticks, or None when a side is empty."""
        b, a = self.best_bid(), self.best_ask()
        return None if b is None or a is None else a - b

    def mid(self) -> Fraction | None:
        """Mid price in ticks (exact; may be a half tick), or None when a side is empty."""
        b, a = self.best_bid(), self.best_ask()
        return None if b is None or a is None else Fraction(a + b, 2)

    def depth(self, n: int = 10) -> L2Book:
        """L2: the best ``n`` levels of each side as ``(price_ticks, size_lots)``."""
        bids = self._bids.levels
        asks = self._asks.levels
        return L2Book(
            self.symbol,
            self._seq,
            [(bids[k].price, bids[k].size) for k in heapq.nsmallest(n, bids)],
            [(asks[k].price, asks[k].size) for k in heapq.nsmallest(n, asks)],
        )

    def l3(self, side: Side, price: int) -> list[L3Order]:
        """L3: the live orders of one level in queue order (empty if no such level)."""
        s = self._bids if side is _BUY else self._asks
        lvl = s.levels.get(price * s.sign)
        if lvl is None:
            return []
        return [L3Order(o.id, o.user, o.leaves, o.qty) for o in lvl.orders if o.leaves]

    def order(self, order_id: int) -> OrderView | None:
        """A live (resting or pending) order, or None."""
        o = self._orders.get(order_id)
        pending = False
        if o is None:
            o = self._pending.get(order_id)
            pending = True
        return None if o is None else self._view(o, pending)

    def open_orders(self, user: str | None = None) -> list[OrderView]:
        """Live orders (optionally of one user), by order id."""
        views = [self._view(o, False) for o in self._orders.values() if user in (None, o.user)]
        views += [self._view(o, True) for o in self._pending.values() if user in (None, o.user)]
        views.sort(key=lambda v: v.order_id)
        return views

    @staticmethod
    def _view(o: _Order, pending: bool) -> OrderView:
        c = o.cmd
        return OrderView(
            o.id,
            o.user,
            c.client_order_id,
            o.side,
            c.order_type,
            c.tif,
            o.price or None,
            c.trigger_price,
            o.qty,
            o.leaves,
            o.filled,
            pending,
            c.ts,
        )

    @staticmethod
    def _levels(s: _Side) -> list[tuple[int, int]]:
        levels = s.levels
        return [(levels[k].price, levels[k].size) for k in s.sorted_keys()]

    def depth_bands(self, bands_bps: Iterable[int] = DEFAULT_BANDS_BPS) -> list[DepthBand]:
        """Resting size and notional within each band around mid (default 1 %, 5 %, 10 %);
        see :func:`~orrange.matching.depth.depth_bands`."""
        return depth_bands(self._levels(self._bids), self._levels(self._asks), bands_bps)

    def price_impact(self, side: Side, quote_units: int) -> PriceImpact:
        """Walk the opposite side as a market ``side`` order spending ``quote_units``
        (notional units, ``tick_size * lot_size`` quote) would, without changing the book.
        Ignores P2P constraints and self-trade prevention; see
        :func:`~orrange.matching.depth.price_impact`."""
        return price_impact(
            side, self._levels(self._asks if side is _BUY else self._bids), quote_units
        )

    # ---------------------------------------------------------------- snapshot / restore
    @staticmethod
    def _state(o: _Order) -> OrderState:
        return OrderState(o.cmd, o.id, o.price, o.qty, o.leaves, o.filled, o.triggered, o.stop_no)

    def snapshot_state(self) -> BookSnapshot:
        """The book's whole state as a :class:`BookSnapshot` struct."""

        def side_states(s: _Side) -> list[OrderState]:
            return [self._state(o) for k in s.sorted_keys() for o in s.levels[k].orders if o.leaves]

        return BookSnapshot(
            self.symbol,
            self._seq,
            self._next_id,
            self._stop_no,
            self._last,
            self._ref,
            self._halted,
            side_states(self._bids),
            side_states(self._asks),
            [self._state(o) for o in sorted(self._pending.values(), key=lambda o: o.stop_no)],
        )

    def snapshot(self) -> bytes:
        """Encode the whole book to bytes (msgspec MessagePack)."""
        return msgspec.msgpack.encode(self.snapshot_state())

    @classmethod
    def restore(cls, spec: MarketSpec, data: bytes | BookSnapshot) -> OrderBook:
        """Rebuild a book from :meth:`snapshot` bytes (or a :class:`BookSnapshot`).

        Raises:
            ValueError: the snapshot is of another symbol.
            msgspec.DecodeError: the bytes are not a snapshot.
        """
        snap = (
            data
            if isinstance(data, BookSnapshot)
            else msgspec.msgpack.decode(data, type=BookSnapshot)
        )
        if snap.symbol != spec.symbol:
            raise ValueError(f"snapshot of {snap.symbol} cannot restore {spec.symbol}")
        book = cls(spec)
        book._seq = snap.seq
        book._next_id = snap.next_order_id
        book._stop_no = snap.stop_no
        book._last = snap.last_price
        book._ref = snap.reference_price
        book._halted = snap.halted
        for st in snap.bids + snap.asks:
            o = book._from_state(st)
            own = book._bids if o.side is _BUY else book._asks
            key = o.price * own.sign
            o.key = key
            lvl = own.levels.get(key)
            if lvl is None:
                lvl = own.levels[key] = _Level(o.price, key)
                heappush(own.heap, key)
                own.inheap.add(key)
            lvl.orders.append(o)
            lvl.size += o.leaves
            lvl.live += 1
            book._orders[o.id] = o
            if st.submit.tif is _DAY:
                book._add_expiry(st.submit.expire_at, o.id)  # type: ignore[arg-type]
        for st in snap.stops:
            o = book._from_state(st)
            src = st.submit.trigger_source
            trig = st.submit.trigger_price
            assert trig is not None
            if book._is_rising(o):
                o.stop_key = (trig, o.stop_no, o.id)
                book._rising[src].add(o.stop_key)
            else:
                o.stop_key = (-trig, o.stop_no, o.id)
                book._falling[src].add(o.stop_key)
            book._pending[o.id] = o
            if st.submit.tif is _DAY:
                book._add_expiry(st.submit.expire_at, o.id)  # type: ignore[arg-type]
        return book

    def _from_state(self, st: OrderState) -> _Order:
        c = st.submit
        return _Order(
            st.order_id,
            c.user,
            c.side,
            st.price,
            st.quantity,
            st.leaves,
            st.filled,
            c,
            bool(c.payment_methods) or c.min_reputation > 0,
            c.reputation // self._tier_size if self._tiered else 0,
            False,
            stop_no=st.stop_no,
            triggered=st.triggered,
        )
