"""One WebSocket client's outgoing state: a bounded queue and conflated book deltas (no I/O).

:class:`Subscriber` is what every channel of :mod:`orrange.api.channels` writes to; the
handler of :mod:`orrange.api.ws` drains it. Book message protocol: a ``snapshot`` carries
``seq``; each ``delta`` carries ``prev_seq`` and ``seq`` and applies to the book at
``prev_seq`` (levels are absolute sizes, ``"0"`` removes the level). A client whose last
``seq`` differs from a delta's ``prev_seq`` has missed something and resubscribes to get a new
snapshot.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import msgspec

from orrange.markets import MarketSpec
from orrange.matching import Side

__all__ = ["Subscriber", "error_message", "levels_out"]

_json = msgspec.json.Encoder()


def levels_out(
    spec: MarketSpec, levels: dict[int, int], *, descending: bool
) -> list[tuple[str, str]]:
    """``{ticks: lots}`` as sorted ``[(price, size), ...]`` decimal strings."""
    return [
        (spec.ticks_to_price(p), spec.lots_to_qty(q))
        for p, q in sorted(levels.items(), reverse=descending)
    ]


def error_message(channel: str, reason: str, message: str) -> bytes:
    """An ``error`` message about ``channel`` (the client is no longer subscribed to it)."""
    return _json.encode(
        {
            "type": "error",
            "channel": channel,
            "field": "channel",
            "reason": reason,
            "message": message,
        }
    )


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
                "bids": levels_out(spec, pend.bids, descending=True),
                "asks": levels_out(spec, pend.asks, descending=False),
            }
        )
