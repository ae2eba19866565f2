"""The API process's view of the engine: one event subscription, dispatched in memory.

:class:`EventHub` holds **one** JetStream ordered push subscription on ``evt.>`` (stream
``EVENTS``) and one on ``rej.>`` (``REJECTS``), both delivering only new messages, for the whole
process. Events are de-duplicated on ``(symbol, seq)``; a gap in a book's sequence (events the
hub never saw) is counted and resynchronises that book's mirror. Each event is dispatched
synchronously (no awaiting per client), in this order, to:

* :class:`~orrange.api.commands.CommandWaiters`: the REST requests waiting for the outcome of a
  command, the trackers of accepted orders, the last event seq per order (read-your-writes);
* :class:`~orrange.api.mirrors.BookMirrors`: the L2 mirrors of the ``book.<SYM>`` channel;
* :class:`~orrange.api.fanout.TradeChannel` and :class:`~orrange.api.fanout.TickerChannel`
  (fills);
* :class:`~orrange.api.fanout.OrderChannel`: the users' private ``orders`` channel.

A rejection (``rej.>``) goes to the waiting requests and the ``orders`` channel only.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.js import api as js_api

from orrange.api._metrics import ApiMetrics
from orrange.api.commands import CommandWaiters
from orrange.api.fanout import OrderChannel, TickerChannel, TradeChannel
from orrange.api.mirrors import BookMirrors
from orrange.logging import get_logger
from orrange.matching import Event, OrderFilled, OrderRejected
from orrange.wire.engine import EVENTS_PREFIX, REJECTS_PREFIX, EventPayload

__all__ = ["EventHub"]

_log = get_logger("orrange.api.hub")
_event_decoder = msgspec.json.Decoder(EventPayload)
_reject_decoder = msgspec.json.Decoder(OrderRejected)

#: Events dispatched between two yields to the event loop (see ``_on_event_msg``).
_YIELD_EVERY = 32


class EventHub:
    """The process-wide event subscription and its dispatch.

    Args:
        nc: a connected NATS client (shared with the API's publisher).
        metrics: the API's metrics.
        commands, books, trades, tickers, orders: where events go (see the module docstring).
    """

    def __init__(
        self,
        nc: NATS,
        metrics: ApiMetrics,
        *,
        commands: CommandWaiters,
        books: BookMirrors,
        trades: TradeChannel,
        tickers: TickerChannel,
        orders: OrderChannel,
    ) -> None:
        self._js = nc.jetstream()
        self._metrics = metrics
        self._commands = commands
        self._books = books
        self._trades = trades
        self._tickers = tickers
        self._orders = orders
        self._subs: list[Any] = []
        self._last_seq: dict[str, int] = {}
        self._seq_waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self._started = False
        self._dispatched = 0

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._started

    async def start(self) -> None:
        """Subscribe to ``evt.>`` and ``rej.>`` (new messages only); the streams must exist."""
        for subject, cb in (
            (f"{EVENTS_PREFIX}.>", self._on_event_msg),
            (f"{REJECTS_PREFIX}.>", self._on_reject_msg),
        ):
            sub = await self._js.subscribe(
                subject,
                cb=cb,
                ordered_consumer=True,
                deliver_policy=js_api.DeliverPolicy.NEW,
                pending_msgs_limit=-1,
                pending_bytes_limit=-1,
            )
            self._subs.append(sub)
        self._started = True

    async def stop(self) -> None:
        """Unsubscribe; waiting requests get a cancellation."""
        self._started = False
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        self._commands.cancel()

    def seen_seq(self, symbol: str) -> int:
        """The last event sequence of ``symbol`` the hub has dispatched (0: none yet)."""
        return self._last_seq.get(symbol, 0)

    async def wait_seq(self, symbol: str, seq: int, timeout_s: float) -> bool:
        """Wait until the hub has dispatched event ``seq`` of ``symbol``; False on timeout."""
        if self._last_seq.get(symbol, 0) >= seq:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (seq, fut)
        self._seq_waiters.setdefault(symbol, []).append(entry)
        try:
            await asyncio.wait_for(fut, timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            lst = self._seq_waiters.get(symbol)
            if lst is not None and entry in lst:
                lst.remove(entry)

    async def _on_event_msg(self, msg: Any) -> None:
        self._metrics.event_in("events")
        self._dispatched += 1
        if self._dispatched % _YIELD_EVERY == 0:
            # a burst is dispatched without suspending: let the WebSocket writers drain their
            # queues now and then so that a burst longer than a queue closes no healthy client
            await asyncio.sleep(0)
        try:
            data = _event_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            _log.warning("undecodable event", subject=msg.subject, error=str(exc))
            return
        if isinstance(data, list):
            for ev in data:
                self.dispatch(ev)
        else:
            self.dispatch(data)

    async def _on_reject_msg(self, msg: Any) -> None:
        self._metrics.event_in("rejects")
        try:
            ev = _reject_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            _log.warning("undecodable rejection", subject=msg.subject, error=str(exc))
            return
        self._commands.on_answer(ev)
        self._orders.on_event(ev)

    def dispatch(self, ev: Event) -> None:
        """Route one book event (from ``evt.<SYM>``) to waiters, mirrors and channels."""
        sym = ev.symbol
        last = self._last_seq.get(sym, 0)
        if ev.seq <= last:
            return  # a duplicate delivery
        if last and ev.seq != last + 1:
            self._metrics.event_gaps.inc()
            _log.warning("event gap", symbol=sym, seq=ev.seq, after=last)
            self._books.on_gap(sym)
        self._last_seq[sym] = ev.seq
        self._commands.on_event(ev)
        self._books.on_event(ev)
        if isinstance(ev, OrderFilled):
            self._trades.on_fill(ev)
            self._tickers.on_fill(ev)
        self._orders.on_event(ev)
        waiters = self._seq_waiters.get(sym)
        if waiters:
            for target, fut in list(waiters):
                if target <= ev.seq and not fut.done():
                    fut.set_result(None)
