"""Command/answer correlation and read-your-writes of the REST API (no I/O).

A REST request publishes a command and waits for the engine's answer among the events the hub
dispatches: a submit waits on ``(user, client_order_id)`` for ``OrderAccepted`` /
``OrderRejected``, a cancel or an amend on ``(symbol, order_id)`` for ``OrderCanceled`` /
``OrderAmended`` / ``OrderRejected``. An accepted order is answered from an
:class:`OrderTracker`, which folds the order's events with :mod:`orrange.matching.orders`
(the fold the persister stores), so the answer equals a later GET of the order.

Read-your-writes: :meth:`CommandWaiters.order_seq` is the seq of the last event about an order
this process dispatched; a GET waits until the stored row reflects it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from orrange.api.schemas import FillOut, OrderOut, fill_out, order_out
from orrange.markets import MarketSpec
from orrange.matching import (
    CancelReason,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
)
from orrange.matching.orders import apply, new_order, order_ids

__all__ = ["ORDER_SEQS_MAX", "CommandWaiters", "OrderTracker"]

#: Orders whose last event seq is remembered for read-your-writes.
ORDER_SEQS_MAX = 200_000


class OrderTracker:
    """An accepted order followed through its events: its
    :class:`~orrange.matching.orders.OrderRecord` and its fills."""

    def __init__(self, spec: MarketSpec, accepted: OrderAccepted) -> None:
        self.spec = spec
        self.accepted = accepted
        self.record = new_order(accepted)
        self.fills: list[FillOut] = []

    def apply(self, ev: Event) -> None:
        """Fold one event about this order into the state."""
        apply(self.record, ev)
        if isinstance(ev, OrderFilled):
            self.fills.append(fill_out(self.spec, ev, self.accepted.order_id))

    def out(self) -> OrderOut:
        """The order as the API reports it."""
        return order_out(self.spec, self.record, list(self.fills))


class CommandWaiters:
    """The requests waiting for the engine's answer, and the last event seq of each order.

    Args:
        markets: the markets served, keyed by symbol.
    """

    def __init__(self, markets: Mapping[str, MarketSpec]) -> None:
        self._markets = markets
        # (symbol, order id) -> seq of the last event about the order dispatched here
        # (bounded: the least recently touched go first)
        self._order_seqs: dict[tuple[str, int], int] = {}
        self._submit_waiters: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self._order_waiters: dict[tuple[str, str, int], list[asyncio.Future[Event]]] = {}
        self._trackers: dict[tuple[str, int], list[OrderTracker]] = {}

    def expect_submit(self, user: str, client_order_id: str) -> asyncio.Future[Any]:
        """A future resolved with an :class:`OrderTracker` (accepted; already tracking the
        order's events) or the :class:`OrderRejected` of ``(user, client_order_id)``.

        Call before publishing the command; :meth:`forget_submit` when done.
        """
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._submit_waiters[(user, client_order_id)] = fut
        return fut

    def submit_in_flight(self, user: str, client_order_id: str) -> bool:
        """True while a request waits for the outcome of ``(user, client_order_id)``."""
        return (user, client_order_id) in self._submit_waiters

    def forget_submit(self, user: str, client_order_id: str) -> None:
        """Stop waiting for ``(user, client_order_id)``."""
        self._submit_waiters.pop((user, client_order_id), None)

    def expect_order(self, kind: str, symbol: str, order_id: int) -> asyncio.Future[Event]:
        """A future resolved with the outcome of a ``cancel`` or ``amend`` of ``order_id``:
        ``OrderCanceled`` (cancel), ``OrderAmended`` (amend) or ``OrderRejected``."""
        fut: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._order_waiters.setdefault((kind, symbol, order_id), []).append(fut)
        return fut

    def forget_order(
        self, kind: str, symbol: str, order_id: int, fut: asyncio.Future[Event]
    ) -> None:
        """Stop waiting with ``fut``."""
        key = (kind, symbol, order_id)
        futs = self._order_waiters.get(key)
        if futs is not None:
            with contextlib.suppress(ValueError):
                futs.remove(fut)
            if not futs:
                del self._order_waiters[key]

    def untrack(self, tracker: OrderTracker) -> None:
        """Stop following the order of ``tracker``."""
        key = (tracker.accepted.symbol, tracker.accepted.order_id)
        lst = self._trackers.get(key)
        if lst is not None:
            with contextlib.suppress(ValueError):
                lst.remove(tracker)
            if not lst:
                del self._trackers[key]

    def order_seq(self, symbol: str, order_id: int) -> int:
        """Seq of the last event about ``order_id`` dispatched here (0: none remembered; the
        most recently touched orders are kept, at most :data:`ORDER_SEQS_MAX`)."""
        return self._order_seqs.get((symbol, order_id), 0)

    def cancel(self) -> None:
        """Cancel every waiting request (at shutdown)."""
        for fut in self._submit_waiters.values():
            fut.cancel()
        for futs in self._order_waiters.values():
            for f in futs:
                f.cancel()

    def on_event(self, ev: Event) -> None:
        """A dispatched book event: note its orders' seq, answer the requests it answers and
        fold it into the trackers of its orders."""
        ids = order_ids(ev)  # the orders whose row the persister changes with ev
        if ids:
            seqs = self._order_seqs
            for oid in ids:
                key = (ev.symbol, oid)
                seqs.pop(key, None)
                seqs[key] = ev.seq
            while len(seqs) > ORDER_SEQS_MAX:
                del seqs[next(iter(seqs))]
        self.on_answer(ev)
        if self._trackers and type(ev) is not OrderAccepted:  # acceptance created the tracker
            for oid in ids:
                for tracker in self._trackers.get((ev.symbol, oid), ()):
                    tracker.apply(ev)

    def on_answer(self, ev: Event) -> None:
        """Resolve the request ``ev`` answers (a book event or a risk rejection), if any."""
        if isinstance(ev, OrderAccepted):
            fut = self._submit_waiters.pop((ev.user, ev.client_order_id), None)
            if fut is not None and not fut.done():
                spec = self._markets.get(ev.symbol)
                if spec is not None:
                    tracker = OrderTracker(spec, ev)
                    self._trackers.setdefault((ev.symbol, ev.order_id), []).append(tracker)
                    fut.set_result(tracker)
        elif isinstance(ev, OrderRejected):
            if ev.command == "submit":
                fut = self._submit_waiters.pop((ev.user, ev.client_order_id), None)
                if fut is not None and not fut.done():
                    fut.set_result(ev)
            elif ev.command in ("cancel", "amend"):
                self._resolve_order(ev.command, ev.symbol, ev.order_id, ev)
        elif isinstance(ev, OrderCanceled):
            if ev.reason == CancelReason.USER:
                self._resolve_order("cancel", ev.symbol, ev.order_id, ev)
        elif isinstance(ev, OrderAmended):
            self._resolve_order("amend", ev.symbol, ev.order_id, ev)

    def _resolve_order(self, kind: str, symbol: str, order_id: int, ev: Event) -> None:
        futs = self._order_waiters.pop((kind, symbol, order_id), None)
        for fut in futs or ():
            if not fut.done():
                fut.set_result(ev)
