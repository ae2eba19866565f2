"""The WebSocket channel registry: which fan-out serves a channel name.

A channel name's first dot-separated part is its kind (``book.BTC-USDT`` is a ``book``
channel, ``candles.1m.BTC-USDT`` a ``candles`` one, ``orders`` and ``signals`` have no
argument). Each kind is served by one registered :class:`Channel`; the API registers ``book``,
``trades``, ``ticker`` and ``orders`` (:mod:`orrange.api.mirrors`, :mod:`orrange.api.fanout`)
and, in :func:`~orrange.api.app.create_app`, ``candles`` and ``signals``.
"""

from __future__ import annotations

from typing import Protocol

from nats.aio.client import Client as NATS

from orrange.api.subscriber import Subscriber

__all__ = ["Channel", "ChannelRegistry"]


class Channel(Protocol):
    """A fan-out serving one kind of channel to :class:`~orrange.api.subscriber.Subscriber`
    objects (started once NATS is connected, stopped at shutdown)."""

    async def start(self, nc: NATS) -> None:
        """Begin following its sources."""

    async def stop(self) -> None:
        """Stop following its sources (no-op when not started)."""

    def subscribe(self, sub: Subscriber, channel: str) -> str | None:
        """Add ``sub`` to ``channel`` (adding it to ``sub.channels``); an error reason (such
        as ``unknown_market``) or None."""

    def unsubscribe(self, sub: Subscriber, channel: str) -> None:
        """Remove ``sub`` from ``channel`` (no-op when not subscribed)."""


class ChannelRegistry:
    """The channels of the process, by kind."""

    def __init__(self) -> None:
        self._kinds: dict[str, Channel] = {}

    def register(self, kind: str, channel: Channel) -> None:
        """Serve the channels of ``kind`` with ``channel``.

        Raises:
            ValueError: ``kind`` is already registered.
        """
        if kind in self._kinds:
            raise ValueError(f"channel kind {kind!r} is already registered")
        self._kinds[kind] = channel

    async def start(self, nc: NATS) -> None:
        """Start every channel, in registration order."""
        for channel in self._kinds.values():
            await channel.start(nc)

    async def stop(self) -> None:
        """Stop every channel, in reverse registration order."""
        for channel in reversed(self._kinds.values()):
            await channel.stop()

    def subscribe(self, sub: Subscriber, channel: str) -> str | None:
        """Subscribe ``sub`` to ``channel``; an error reason (``unknown_channel`` for a kind
        nobody serves) or None."""
        served = self._kinds.get(channel.partition(".")[0])
        if served is None:
            return "unknown_channel"
        return served.subscribe(sub, channel)

    def unsubscribe(self, sub: Subscriber, channel: str) -> None:
        """Remove ``sub`` from ``channel`` (no-op when not subscribed)."""
        sub.channels.discard(channel)
        served = self._kinds.get(channel.partition(".")[0])
        if served is not None:
            served.unsubscribe(sub, channel)

    def remove(self, sub: Subscriber) -> None:
        """Drop every subscription of ``sub``."""
        for channel in list(sub.channels):
            self.unsubscribe(sub, channel)
