"""Source interface, the reconnecting WebSocket loop and small parsing helpers.

A :class:`Source` produces normalized ticks (:mod:`orrange.marketdata.ticks`) by calling an async
``emit`` callback; :meth:`Source.stream` wraps that in an async iterator. Exchange clients
derive from :class:`WsSource`, which owns the connection life cycle:

* connect (``websockets`` asyncio client) and call :meth:`WsSource.on_connect` to
  (re)subscribe, so every reconnect resubscribes;
* WebSocket ping every ``ping_interval`` s, connection dropped when the pong is later than
  ``ping_timeout`` s; and an application-level idle timeout: no frame for ``idle_timeout`` s
  (exchange heartbeats included) drops the connection too;
* reconnect with exponential backoff and jitter (:class:`Backoff`);
* a frame that fails to parse is logged and counted in :attr:`FeedStats.malformed`, never
  fatal; socket errors raised while handling a frame (e.g. a resubscribe on a closing
  connection) lead to a reconnect instead.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from orrange.marketdata.ticks import AnyTick

__all__ = [
    "Backoff",
    "Emit",
    "FeedStats",
    "Liveness",
    "Source",
    "WsSource",
    "iso_to_ms",
    "now_ms",
    "seconds_str_to_ms",
]

log = logging.getLogger("orrange.feeds")

Emit = Callable[[AnyTick], Awaitable[None]]
"""Async callback receiving every normalized tick, in order."""

json_decoder = msgspec.json.Decoder(float_hook=Decimal)
"""Generic JSON decoder: any JSON number with a fraction becomes an exact Decimal."""


def now_ms() -> int:
    """Wall-clock time in ms since the Unix epoch (UTC)."""
    return time.time_ns() // 1_000_000


@lru_cache(maxsize=8192)
def _epoch_seconds(prefix: str) -> int:
    return int(datetime.fromisoformat(prefix).replace(tzinfo=UTC).timestamp())


def iso_to_ms(value: str) -> int:
    """An RFC 3339 UTC timestamp (``2026-08-09T21:05:48.228568804Z``, any number of fraction
    digits, ``Z`` or ``+00:00``) to ms since the epoch, truncating below the millisecond.

    Raises:
        ValueError: not of that form, or not UTC.
    """
    if len(value) < 20 or value[10] not in "T ":
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    if value.endswith("Z"):
        body = value[:-1]
    elif value.endswith("+00:00"):
        body = value[:-6]
    else:
        raise ValueError(f"timestamp is not UTC: {value!r}")
    seconds = _epoch_seconds(body[:10] + "T" + body[11:19])
    frac = body[20:] if len(body) > 19 and body[19] == "." else ""
    if len(body) > 19 and body[19] != ".":
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    if frac and not frac.isdigit():
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    return seconds * 1000 + int((frac + "000")[:3])


def seconds_str_to_ms(value: str) -> int:
    """A decimal seconds string (Kraken ``"1618678132.214235"``) to ms, truncated, exactly.

    Raises:
        ValueError: not a non-negative decimal number.
    """
    whole, _, frac = value.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(f"not a seconds timestamp: {value!r}")
    return int(whole) * 1000 + int((frac + "000")[:3])


class Backoff:
    """Exponential backoff with "equal jitter".

    The ``n``-th consecutive retry (from 0) waits ``d/2 + uniform(0, d/2)`` seconds with
    ``d = min(maximum, initial * factor**n)``; the caller resets ``n`` after a healthy
    message. Source: Marc Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog,
    2015 (jitter spreads the reconnects of many clients after an outage).

    Raises:
        ValueError: non-positive ``initial``/``maximum`` or ``factor < 1``.
    """

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 30.0,
        factor: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or maximum <= 0 or factor < 1:
            raise ValueError("backoff needs initial > 0, maximum > 0 and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        d = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return d / 2 + self._rng.uniform(0, d / 2)


@dataclass(frozen=True)
class Liveness:
    """Connection liveness and reconnect policy of a WebSocket source (seconds).

    Attributes:
        backoff: reconnect delays. ping_interval: WebSocket ping period (``None``: off).
        ping_timeout: pong deadline. idle_timeout: longest silence (no frame at all) before
            the connection is considered dead. open_timeout: connect + handshake deadline.
    """

    backoff: Backoff = field(default_factory=Backoff)
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    idle_timeout: float = 30.0
    open_timeout: float = 10.0


class FeedStats(msgspec.Struct, kw_only=True):
    """Counters of one source (monotonic, for metrics).

    Attributes:
        connects: successful connections. reconnects: connection losses followed by a retry.
        messages: frames received. malformed: frames that failed to parse (dropped).
        ticks: ticks emitted. gaps: sequence gaps detected. resyncs: book resynchronisations
            (snapshot re-fetch or resubscribe). snapshots: book snapshots applied.
    """

    connects: int = 0
    reconnects: int = 0
    messages: int = 0
    malformed: int = 0
    ticks: int = 0
    gaps: int = 0
    resyncs: int = 0
    snapshots: int = 0


_DONE = object()


class Source(abc.ABC):
    """A producer of normalized ticks.

    Attributes:
        name: the configured source name (the ``source`` of its ticks).
        stats: its :class:`FeedStats`.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.stats = FeedStats()

    @abc.abstractmethod
    async def run(self, emit: Emit) -> None:
        """Produce ticks into ``emit`` until cancelled (live sources) or exhausted (files)."""

    async def close(self) -> None:
        """Release resources after :meth:`run` was cancelled (HTTP clients); idempotent."""
        return None

    async def stream(self, maxsize: int = 10_000) -> AsyncIterator[AnyTick]:
        """Run the source in a task and yield its ticks; ends when :meth:`run` returns.

        Raises:
            Exception: whatever :meth:`run` raised (live sources only raise on bad
                configuration).
        """
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        failure: list[Exception] = []

        async def produce() -> None:
            try:
                await self.run(queue.put)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure.append(exc)
            await queue.put(_DONE)  # after every tick: the queue is FIFO

        task = asyncio.create_task(produce())
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    if failure:
                        raise failure[0]
                    return
                yield item
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await self.close()


class WsSource(Source):
    """Base of the exchange WebSocket clients (see the module docstring).

    Args:
        name: source name. url: WebSocket endpoint (configurable, e.g. a local test server).
        symbols: exchange symbol -> our market name; only these are subscribed.
        channels: requested channels, a subset of ``allowed``. live: :class:`Liveness`.

    Raises:
        ValueError: no symbols, or a channel outside ``allowed``.
    """

    def __init__(
        self,
        name: str,
        url: str,
        symbols: Mapping[str, str],
        channels: Iterable[str],
        allowed: frozenset[str],
        live: Liveness | None = None,
    ) -> None:
        super().__init__(name)
        if not symbols:
            raise ValueError(f"{name}: no symbols configured")
        self.channels = frozenset(channels)
        if not self.channels <= allowed:
            raise ValueError(f"{name}: unknown channels {sorted(self.channels - allowed)}")
        self.url = url
        self.symbols = dict(symbols)
        self.live = live or Liveness()
        self._emit: Emit | None = None
        self.connected = asyncio.Event()

    async def emit(self, tick: AnyTick) -> None:
        """Pass one tick to the consumer and count it."""
        self.stats.ticks += 1
        assert self._emit is not None
        await self._emit(tick)

    @abc.abstractmethod
    async def on_connect(self, ws: ClientConnection) -> None:
        """Reset per-connection state and send the subscriptions."""

    @abc.abstractmethod
    async def on_message(self, raw: str | bytes, recv_ms: int) -> None:
        """Handle one frame; any exception except socket errors counts it as malformed."""

    async def on_disconnect(self) -> None:
        """Called after every connection loss (cancel helper tasks here)."""
        return None

    async def run(self, emit: Emit) -> None:
        """Connect, subscribe and dispatch frames forever, reconnecting as documented."""
        self._emit = emit
        attempt = 0
        while True:
            try:
                async with connect(
                    self.url,
                    ping_interval=self.live.ping_interval,
                    ping_timeout=self.live.ping_timeout,
                    open_timeout=self.live.open_timeout,
                    max_size=2**24,
                    compression=None,
                ) as ws:
                    self.stats.connects += 1
                    await self.on_connect(ws)
                    self.connected.set()
                    while True:
                        async with asyncio.timeout(self.live.idle_timeout):
                            raw = await ws.recv()
                        self.stats.messages += 1
                        try:
                            await self.on_message(raw, now_ms())
                        except (WebSocketException, OSError):
                            raise  # connection-level: handled below, not a bad frame
                        except Exception as exc:  # a bad frame must never stop the feed
                            self.stats.malformed += 1
                            log.warning(
                                "%s: dropped malformed frame (%s: %s): %.200r",
                                self.name,
                                type(exc).__name__,
                                exc,
                                raw,
                            )
                        attempt = 0
            except (OSError, TimeoutError, WebSocketException) as exc:
                log.warning("%s: connection lost: %s: %s", self.name, type(exc).__name__, exc)
            finally:
                self.connected.clear()
                await self.on_disconnect()
            self.stats.reconnects += 1
            await asyncio.sleep(self.live.backoff.delay(attempt))
            attempt += 1
