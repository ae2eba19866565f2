"""Per-symbol L2 book mirrors and the ``book.<SYM>`` WebSocket channel.

A mirror is built from the matcher's ``book.query.<SYM>`` answer (its best
:data:`MIRROR_DEPTH` levels per side) and then kept up to date with the ``BookDelta`` events
the hub dispatches; it holds every level changed since the sync (a level deeper than that which
never changes after the sync is not in it). Events arriving during a sync are buffered and
applied after it. A gap in a book's event sequence resynchronises the mirror and sends a fresh
snapshot to its subscribers; when no matcher answers, its subscribers get an ``error``
(``book_unavailable``) and are unsubscribed. Message protocol: :mod:`orrange.api.subscriber`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from orrange.api._metrics import ApiMetrics
from orrange.api.subscriber import Subscriber, error_message, levels_out
from orrange.markets import MarketSpec
from orrange.matching import BookDelta, Event, L2Book, Side
from orrange.wire.engine import book_query_subject

__all__ = ["MIRROR_DEPTH", "BookMirrors", "BookUnavailable"]

#: Levels asked of the matcher when building a mirror (the matcher's maximum).
MIRROR_DEPTH = 1000

_json = msgspec.json.Encoder()
_l2_decoder = msgspec.json.Decoder(L2Book)


class BookUnavailable(Exception):
    """The matcher of a symbol did not answer ``book.query.<SYM>`` (not running, or an error)."""


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
                "bids": levels_out(spec, self.bids, descending=True),
                "asks": levels_out(spec, self.asks, descending=False),
            }
        )


class BookMirrors:
    """The ``book.<SYM>`` channel: one mirror per followed symbol.

    Args:
        markets: the markets served, keyed by symbol.
        metrics: the API's metrics (``book_resyncs``).
        query_timeout_s: how long a ``book.query.<SYM>`` request waits.
    """

    def __init__(
        self, markets: Mapping[str, MarketSpec], metrics: ApiMetrics, query_timeout_s: float
    ) -> None:
        self._markets = markets
        self._metrics = metrics
        self._query_timeout = query_timeout_s
        self._nc: NATS | None = None
        self._mirrors: dict[str, _Mirror] = {}

    async def start(self, nc: NATS) -> None:
        """Use ``nc`` for the book queries."""
        self._nc = nc

    async def stop(self) -> None:
        """Cancel the syncs in progress."""
        tasks = [m.task for m in self._mirrors.values() if m.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t

    async def query(self, symbol: str, depth: int) -> L2Book:
        """The matcher's L2 book of ``symbol`` (``depth`` levels per side, 1..1000).

        Raises:
            BookUnavailable: no matcher answered in time, or it answered an error.
        """
        assert self._nc is not None, "the book mirrors are not started"
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

    def on_event(self, ev: Event) -> None:
        """Apply a dispatched event to the mirror of its symbol and pass a level change on."""
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

    def on_gap(self, symbol: str) -> None:
        """Events of ``symbol`` were missed: resynchronise its mirror if it is in sync."""
        mirror = self._mirrors.get(symbol)
        if mirror is not None and mirror.ready:
            self._start_sync(mirror)

    def subscribe(self, sub: Subscriber, channel: str) -> str | None:
        """Follow ``book.<SYM>``: the snapshot is queued as soon as the mirror is in sync."""
        sym = channel.partition(".")[2]
        spec = self._markets.get(sym)
        if spec is None:
            return "unknown_market"
        sub.channels.add(channel)
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
        """Stop following ``book.<SYM>``."""
        sym = channel.partition(".")[2]
        mirror = self._mirrors.get(sym)
        if mirror is not None:
            mirror.subscribers.discard(sub)
        sub.pending.pop(sym, None)
        sub.book_seq.pop(sym, None)

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
            l2 = await self.query(sym, MIRROR_DEPTH)
        except BookUnavailable as exc:
            mirror.buffer = None
            data = error_message(f"book.{sym}", "book_unavailable", str(exc))
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
