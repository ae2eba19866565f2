"""The API process's view of the engine: one event subscription, fanned out in memory.

:class:`EventHub` holds **one** JetStream ordered push subscription on ``evt.>`` (stream
``EVENTS``) and one on ``rej.>`` (``REJECTS``), both delivering only new messages, for the whole
process. Each event is dispatched synchronously (no awaiting per client) to:

* REST requests waiting for the outcome of a command they published: a submit waits on
  ``(user, client_order_id)`` for ``OrderAccepted``/``OrderRejected``, a cancel or an amend on
  ``(symbol, order_id)`` for ``OrderCanceled``/``OrderAmended``/``OrderRejected``;
  :class:`OrderTracker` collects the fills of an accepted order;
* per-symbol L2 **mirrors** (built from the matcher's ``book.query.<SYM>`` answer, then kept
  up to date with ``BookDelta`` events), which give WebSocket clients a snapshot and then
  deltas;
* WebSocket :class:`Subscriber` objects: public trades, 24 h tickers and private order events
  go to a bounded per-client queue; book deltas are conflated per client (last size per level).

A mirror starts from the matcher's best :data:`MIRROR_DEPTH` levels per side and then holds
every level changed since (a level deeper than that which never changes after the sync is not
in it). Events are de-duplicated on ``(symbol, seq)``; a gap in a book's sequence (events the
hub never saw) triggers a resynchronisation of the mirror and a fresh snapshot to its
subscribers.

Book message protocol: a ``snapshot`` carries ``seq``; each ``delta`` carries ``prev_seq`` and
``seq`` and applies to the book at ``prev_seq`` (levels are absolute sizes, ``"0"`` removes
the level). A client whose last ``seq`` differs from a delta's ``prev_seq`` has missed
something and resubscribes to get a new snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js import api as js_api

from orrange.api._marketdata import CandleFanout
from orrange.api._metrics import ApiMetrics
from orrange.api.schemas import (
    FillOut,
    OrderOut,
    TickerOut,
    fill_out,
    order_event_json,
    order_out,
)
from orrange.logging import get_logger
from orrange.markets import MarketSpec
from orrange.matching import (
    BookDelta,
    CancelReason,
    Event,
    L2Book,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    Side,
)
from orrange.matching.orders import apply as apply_order
from orrange.matching.orders import new_order, order_ids
from orrange.wire.engine import (
    EVENTS_PREFIX,
    REJECTS_PREFIX,
    EventPayload,
    book_query_subject,
)

__all__ = ["PRIVATE_PREFIX", "BookUnavailable", "EventHub", "OrderTracker", "Subscriber"]

#: Core NATS ``private.<user>``: a WebSocket message (JSON) for one user's ``orders`` channel.
PRIVATE_PREFIX = "private"

_log = get_logger("orrange.api.hub")
_event_decoder = msgspec.json.Decoder(EventPayload)
_reject_decoder = msgspec.json.Decoder(OrderRejected)
_l2_decoder = msgspec.json.Decoder(L2Book)
_json = msgspec.json.Encoder()

#: Events dispatched between two yields to the event loop (see ``_on_event_msg``).
_YIELD_EVERY = 32
#: Levels asked of the matcher when building a mirror (the matcher's maximum).
MIRROR_DEPTH = 1000

#: Computes the 24 h ticker of a market and the sequence number of the last fill it includes.
TickerSource = Callable[[MarketSpec], Awaitable[tuple[TickerOut, int]]]


#: orders whose last event seq the hub remembers for read-your-writes
_ORDER_SEQS_MAX = 200_000


class BookUnavailable(Exception):
    """The matcher of a symbol did not answer ``book.query.<SYM>`` (not running, or an error)."""


class OrderTracker:
    """An accepted order followed through its events: its :class:`OrderRecord` (the one fold of
    :mod:`orrange.matching.orders`) and its fills."""

    def __init__(self, spec: MarketSpec, accepted: OrderAccepted) -> None:
        self.spec = spec
        self.accepted = accepted
        self.record = new_order(accepted)
        self.fills: list[FillOut] = []

    def apply(self, ev: Event) -> None:
        """Fold one event about this order into the state."""
        apply_order(self.record, ev)
        if isinstance(ev, OrderFilled):
            self.fills.append(fill_out(self.spec, ev, self.accepted.order_id))

    def out(self) -> OrderOut:
        """The order as the API reports it."""
        return order_out(self.spec, self.record, list(self.fills))


def _levels(spec: MarketSpec, levels: dict[int, int], *, descending: bool) -> list[tuple[str, str]]:
    """``{ticks: lots}`` as sorted ``[(price, size), ...]`` decimal strings."""
    return [
        (spec.ticks_to_price(p), spec.lots_to_qty(q))
        for p, q in sorted(levels.items(), reverse=descending)
    ]


class _PendingBook:
    __slots__ = ("asks", "bids", "seq", "spec")

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.seq = 0


class Subscriber:
    """One WebSocket client's outgoing state (no I/O: the WebSocket handler drains it).

    Args:
        max_queue: queued messages (trades, tickers, order events, snapshots) allowed before
            the client is declared too slow and closed.

    Book deltas are not queued: :meth:`book_delta` merges them into a per-symbol pending set of
    levels (the newest size per level wins), so a slow reader receives fewer, larger deltas.
    """

    def __init__(self, max_queue: int) -> None:
        self.max_queue = max_queue
        self.queue: deque[bytes] = deque()
        self.pending: dict[str, _PendingBook] = {}
        self.book_seq: dict[str, int] = {}
        self.wake = asyncio.Event()
        self.closed: str | None = None
        self.user: str | None = None
        self.channels: set[str] = set()
        self.on_close: Callable[[Subscriber], None] | None = None

    def enqueue(self, data: bytes) -> None:
        """Queue one message; closes the client when its queue is full."""
        if self.closed is not None:
            return
        if len(self.queue) >= self.max_queue:
            self.close(f"slow consumer: more than {self.max_queue} messages queued")
            return
        self.queue.append(data)
        self.wake.set()

    def close(self, reason: str) -> None:
        """Mark the client closed with ``reason`` (the handler sends the close frame)."""
        if self.closed is not None:
            return
        self.closed = reason
        self.queue.clear()
        self.pending.clear()
        self.wake.set()
        if self.on_close is not None:
            self.on_close(self)

    def book_snapshot(self, channel: str, symbol: str, data: bytes, seq: int) -> None:
        """Queue a book snapshot at ``seq``, dropping deltas pending from before it."""
        if channel not in self.channels:
            return
        self.pending.pop(symbol, None)
        self.book_seq[symbol] = seq
        self.enqueue(data)

    def book_delta(self, spec: MarketSpec, side: Side, price: int, size: int, seq: int) -> None:
        """Merge one level change into the pending delta of ``spec.symbol``."""
        if self.closed is not None or spec.symbol not in self.book_seq:
            return
        pend = self.pending.get(spec.symbol)
        if pend is None:
            pend = self.pending[spec.symbol] = _PendingBook(spec)
        (pend.bids if side is Side.BUY else pend.asks)[price] = size
        pend.seq = seq
        self.wake.set()

    def take_delta(self, symbol: str) -> bytes | None:
        """The pending delta of ``symbol`` as a message (None when nothing is pending)."""
        pend = self.pending.pop(symbol, None)
        if pend is None:
            return None
        spec = pend.spec
        prev = self.book_seq.get(symbol, 0)
        self.book_seq[symbol] = pend.seq
        return _json.encode(
            {
                "type": "delta",
                "channel": f"book.{symbol}",
                "prev_seq": prev,
                "seq": pend.seq,
                "bids": _levels(spec, pend.bids, descending=True),
                "asks": _levels(spec, pend.asks, descending=False),
            }
        )


class _Mirror:
    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.seq = 0
        self.ready = False
        self.buffer: list[Event] | None = None
        self.task: asyncio.Task[None] | None = None
        self.subscribers: set[Subscriber] = set()

    def apply(self, ev: Event) -> bool:
        """Apply one event after the mirror's seq; True when it was a level change."""
        if ev.seq <= self.seq:
            return False
        self.seq = ev.seq
        if isinstance(ev, BookDelta):
            levels = self.bids if ev.side is Side.BUY else self.asks
            if ev.size:
                levels[ev.price] = ev.size
            else:
                levels.pop(ev.price, None)
            return True
        return False

    def snapshot(self) -> bytes:
        """The mirror as a ``snapshot`` message at its ``seq``."""
        spec = self.spec
        return _json.encode(
            {
                "type": "snapshot",
                "channel": f"book.{spec.symbol}",
                "seq": self.seq,
                "bids": _levels(spec, self.bids, descending=True),
                "asks": _levels(spec, self.asks, descending=False),
            }
        )


def _error_message(channel: str, reason: str, message: str) -> bytes:
    return _json.encode(
        {
            "type": "error",
            "channel": channel,
            "field": "channel",
            "reason": reason,
            "message": message,
        }
    )


class EventHub:
    """The process-wide event subscription and its in-memory fan-out.

    Args:
        nc: a connected NATS client (shared with the API's publisher).
        markets: the markets, keyed by symbol.
        metrics: the API's metrics.
        ticker_source: computes the 24 h ticker of a market (from PostgreSQL) and the seq of
            the last fill it covers; a ticker push waits until it covers the last fill seen.
        query_timeout_s: how long a ``book.query.<SYM>`` request waits.
        ticker_interval_s: at most one ticker push per symbol per interval.
    """

    def __init__(
        self,
        nc: NATS,
        markets: Mapping[str, MarketSpec],
        metrics: ApiMetrics,
        ticker_source: TickerSource,
        *,
        query_timeout_s: float = 2.0,
        ticker_interval_s: float = 1.0,
    ) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self._markets = markets
        self._metrics = metrics
        self._ticker_source = ticker_source
        self._query_timeout = query_timeout_s
        self._ticker_interval = ticker_interval_s
        self._subs: list[Any] = []
        self._last_seq: dict[str, int] = {}
        # (symbol, order id) -> seq of the last event about the order this hub dispatched, for
        # read-your-writes on PostgreSQL reads (bounded: the least recently touched go first)
        self._order_seqs: dict[tuple[str, int], int] = {}
        self._submit_waiters: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self._order_waiters: dict[tuple[str, str, int], list[asyncio.Future[Event]]] = {}
        self._trackers: dict[tuple[str, int], list[OrderTracker]] = {}
        self._seq_waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self._mirrors: dict[str, _Mirror] = {}
        self._trade_subs: dict[str, set[Subscriber]] = {}
        self._ticker_subs: dict[str, set[Subscriber]] = {}
        self._candles = CandleFanout(markets)  # candles.<IV>.<SYM>
        self._ticker_dirty: set[str] = set()
        self._last_fill: dict[str, int] = {}
        self._user_subs: dict[str, set[Subscriber]] = {}
        # notifications (private orders channel) and signals; imported here because
        # _alerts imports the routes, which import this module
        from orrange.api._alerts import AlertFanout

        self._alerts = AlertFanout(markets, lambda user: self._user_subs.get(user, ()))
        self._ticker_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
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
        # private pushes of other API processes (trade chat): core NATS private.<user>
        self._subs.append(await self._nc.subscribe(f"{PRIVATE_PREFIX}.*", cb=self._on_private_msg))
        await self._candles.start(self._nc)
        self._ticker_task = asyncio.create_task(self._ticker_loop(), name="api-ticker")
        await self._alerts.start(self._nc)
        self._started = True

    async def stop(self) -> None:
        """Unsubscribe and cancel background work; waiting requests get a cancellation."""
        self._started = False
        await self._alerts.stop()
        await self._candles.stop()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        tasks = [t for t in (self._ticker_task, *self._tasks) if t is not None]
        tasks += [m.task for m in self._mirrors.values() if m.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        for fut in self._submit_waiters.values():
            fut.cancel()
        for futs in self._order_waiters.values():
            for f in futs:
                f.cancel()

    # ------------------------------------------------------------------ command outcomes

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

    async def query_book(self, symbol: str, depth: int) -> L2Book:
        """The matcher's L2 book of ``symbol`` (``depth`` levels per side, 1..1000).

        Raises:
            BookUnavailable: no matcher answered in time, or it answered an error.
        """
        payload = _json.encode({"depth": depth})
        try:
            msg = await self._nc.request(
                book_query_subject(symbol), payload, timeout=self._query_timeout
            )
        except (NatsTimeoutError, NoRespondersError, TimeoutError) as exc:
            raise BookUnavailable(f"no matcher answered for {symbol}") from exc
        try:
            return _l2_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise BookUnavailable(f"matcher error for {symbol}: {msg.data[:200]!r}") from exc

    # ------------------------------------------------------------------ dispatch

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
        self._resolve_command(ev)
        self._private(ev)

    async def _on_private_msg(self, msg: Any) -> None:
        """A ready WebSocket message for the user of ``private.<user>``: queue it to that
        user's ``orders`` subscribers of this process."""
        user = msg.subject.partition(".")[2]
        for sub in list(self._user_subs.get(user, ())):
            sub.enqueue(msg.data)

    def dispatch(self, ev: Event) -> None:
        """Route one book event (from ``evt.<SYM>``) to waiters, mirrors and subscribers."""
        sym = ev.symbol
        last = self._last_seq.get(sym, 0)
        if ev.seq <= last:
            return  # a duplicate delivery
        if last and ev.seq != last + 1:
            self._metrics.event_gaps.inc()
            _log.warning("event gap", symbol=sym, seq=ev.seq, after=last)
            mirror = self._mirrors.get(sym)
            if mirror is not None and mirror.ready:
                self._start_sync(mirror)
        self._last_seq[sym] = ev.seq
        self._note_order_seq(ev)
        self._resolve_command(ev)
        self._track(ev)
        self._mirror(ev)
        if isinstance(ev, OrderFilled):
            self._trade(ev)
        self._private(ev)
        waiters = self._seq_waiters.get(sym)
        if waiters:
            for target, fut in list(waiters):
                if target <= ev.seq and not fut.done():
                    fut.set_result(None)

    def _note_order_seq(self, ev: Event) -> None:
        ids = order_ids(ev)  # the orders whose row the persister changes with ev
        if not ids:
            return
        seqs = self._order_seqs
        for oid in ids:
            key = (ev.symbol, oid)
            seqs.pop(key, None)
            seqs[key] = ev.seq
        while len(seqs) > _ORDER_SEQS_MAX:
            del seqs[next(iter(seqs))]

    def order_seq(self, symbol: str, order_id: int) -> int:
        """Seq of the last event about ``order_id`` this hub dispatched (0: none remembered;
        the most recently touched orders are kept, at most ``_ORDER_SEQS_MAX``)."""
        return self._order_seqs.get((symbol, order_id), 0)

    def _resolve_command(self, ev: Event) -> None:
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

    def _track(self, ev: Event) -> None:
        if not self._trackers:
            return
        for oid in order_ids(ev):
            for tracker in self._trackers.get((ev.symbol, oid), ()):
                tracker.apply(ev)

    # ------------------------------------------------------------------ book mirrors

    def _mirror(self, ev: Event) -> None:
        mirror = self._mirrors.get(ev.symbol)
        if mirror is None:
            return
        if mirror.buffer is not None:
            mirror.buffer.append(ev)
            return
        if not mirror.ready:
            return
        if mirror.apply(ev):
            assert isinstance(ev, BookDelta)
            for sub in mirror.subscribers:
                sub.book_delta(mirror.spec, ev.side, ev.price, ev.size, ev.seq)

    def _start_sync(self, mirror: _Mirror) -> None:
        if mirror.task is not None and not mirror.task.done():
            return
        mirror.ready = False
        mirror.buffer = []
        mirror.task = asyncio.create_task(self._sync(mirror), name=f"mirror-{mirror.spec.symbol}")

    async def _sync(self, mirror: _Mirror) -> None:
        sym = mirror.spec.symbol
        self._metrics.book_resyncs.inc()
        try:
            l2 = await self.query_book(sym, MIRROR_DEPTH)
        except BookUnavailable as exc:
            mirror.buffer = None
            data = _error_message(f"book.{sym}", "book_unavailable", str(exc))
            for sub in list(mirror.subscribers):
                sub.channels.discard(f"book.{sym}")
                sub.book_seq.pop(sym, None)
                sub.enqueue(data)
            mirror.subscribers.clear()
            return
        buffered = mirror.buffer or []
        mirror.buffer = None
        mirror.bids = dict(l2.bids)
        mirror.asks = dict(l2.asks)
        mirror.seq = l2.seq
        for ev in buffered:
            mirror.apply(ev)
        mirror.ready = True
        data = mirror.snapshot()
        for sub in list(mirror.subscribers):
            sub.book_snapshot(f"book.{sym}", sym, data, mirror.seq)

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, sub: Subscriber, channel: str) -> str | None:
        """Subscribe ``sub`` to a public channel (``book.<SYM>``, ``trades.<SYM>``,
        ``ticker.<SYM>``) or, when authenticated, ``orders``; returns an error reason or None.

        A book subscription's snapshot is queued as soon as the mirror is in sync.
        """
        if channel == "orders":
            if sub.user is None:
                return "auth_required"
            sub.channels.add(channel)
            self._user_subs.setdefault(sub.user, set()).add(sub)
            return None
        if channel == "signals":
            self._alerts.subscribe(sub)
            return None
        kind, _, sym = channel.partition(".")
        spec = self._markets.get(sym)
        if kind == "candles":
            return self._candles.subscribe(sub, channel)
        if kind not in ("book", "trades", "ticker"):
            return "unknown_channel"
        if spec is None:
            return "unknown_market"
        sub.channels.add(channel)
        if kind == "trades":
            self._trade_subs.setdefault(sym, set()).add(sub)
        elif kind == "ticker":
            self._ticker_subs.setdefault(sym, set()).add(sub)
            self._spawn(self._send_ticker(spec, (sub,)))
        else:
            mirror = self._mirrors.get(sym)
            if mirror is None:
                mirror = self._mirrors[sym] = _Mirror(spec)
            mirror.subscribers.add(sub)
            sub.pending.pop(sym, None)
            sub.book_seq.pop(sym, None)
            if mirror.ready:
                sub.book_snapshot(channel, sym, mirror.snapshot(), mirror.seq)
            else:
                self._start_sync(mirror)
        return None

    def unsubscribe(self, sub: Subscriber, channel: str) -> None:
        """Remove ``sub`` from ``channel`` (no-op when not subscribed)."""
        sub.channels.discard(channel)
        if channel == "orders":
            if sub.user is not None:
                self._discard(self._user_subs, sub.user, sub)
            return
        if channel == "signals":
            self._alerts.unsubscribe(sub)
            return
        kind, _, sym = channel.partition(".")
        if kind == "candles":
            self._candles.unsubscribe(sub, channel)
            return
        if kind == "trades":
            self._discard(self._trade_subs, sym, sub)
        elif kind == "ticker":
            self._discard(self._ticker_subs, sym, sub)
        elif kind == "book":
            mirror = self._mirrors.get(sym)
            if mirror is not None:
                mirror.subscribers.discard(sub)
            sub.pending.pop(sym, None)
            sub.book_seq.pop(sym, None)

    def remove(self, sub: Subscriber) -> None:
        """Drop every subscription of ``sub``."""
        for channel in list(sub.channels):
            self.unsubscribe(sub, channel)

    @staticmethod
    def _discard(index: dict[str, set[Subscriber]], key: str, sub: Subscriber) -> None:
        subs = index.get(key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del index[key]

    # ------------------------------------------------------------------ public/private fan-out

    def _trade(self, ev: OrderFilled) -> None:
        self._ticker_dirty.add(ev.symbol)
        self._last_fill[ev.symbol] = ev.seq
        subs = self._trade_subs.get(ev.symbol)
        if not subs:
            return
        spec = self._markets.get(ev.symbol)
        if spec is None:
            return
        data = _json.encode(
            {
                "type": "trade",
                "channel": f"trades.{ev.symbol}",
                "seq": ev.seq,
                "ts": ev.ts,
                "price": spec.ticks_to_price(ev.price),
                "quantity": spec.lots_to_qty(ev.quantity),
                "side": ev.aggressor,
            }
        )
        for sub in list(subs):
            sub.enqueue(data)

    def _private(self, ev: Event) -> None:
        if not self._user_subs:
            return
        if isinstance(ev, OrderFilled):
            users: tuple[str, ...] = (ev.maker_user, ev.taker_user)
            if ev.maker_user == ev.taker_user:
                users = (ev.maker_user,)
        else:
            user = getattr(ev, "user", None)
            if user is None:
                return
            users = (user,)
        spec = self._markets.get(ev.symbol)
        if spec is None:
            return
        for user in users:
            subs = self._user_subs.get(user)
            if not subs:
                continue
            body = order_event_json(spec, ev, user)
            if body is None:
                continue
            data = _json.encode({"type": "order", "channel": "orders", **body})
            for sub in list(subs):
                sub.enqueue(data)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_ticker(
        self, spec: MarketSpec, subs: tuple[Subscriber, ...], *, current: bool = False
    ) -> bool:
        """Push the ticker to ``subs``; with ``current``, only once it covers the last fill
        the hub has seen (else False: the persister is behind, try again later)."""
        try:
            ticker, covered = await self._ticker_source(spec)
        except Exception as exc:
            _log.warning("ticker query failed", symbol=spec.symbol, error=repr(exc))
            return False
        if current and covered < self._last_fill.get(spec.symbol, 0):
            return False
        data = _json.encode(
            {"type": "ticker", "channel": f"ticker.{spec.symbol}", **msgspec.to_builtins(ticker)}
        )
        for sub in subs:
            if f"ticker.{spec.symbol}" in sub.channels:
                sub.enqueue(data)
        return True

    async def _ticker_loop(self) -> None:
        while True:
            await asyncio.sleep(self._ticker_interval)
            dirty, self._ticker_dirty = self._ticker_dirty, set()
            for sym in dirty:
                subs = self._ticker_subs.get(sym)
                spec = self._markets.get(sym)
                if (
                    subs
                    and spec is not None
                    and not await self._send_ticker(spec, tuple(subs), current=True)
                ):
                    self._ticker_dirty.add(sym)
