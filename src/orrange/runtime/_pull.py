"""A pipelined pull-consumer client (callback subscription, no per-message tasks).

nats-py's ``PullSubscription.fetch`` spawns a task and a ``wait_for`` per message, which caps a
Python consumer well below what JetStream delivers. :class:`PullConsumer` keeps pull requests
outstanding on ``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>``, collects deliveries in a
callback into a buffer, and hands out up to ``batch`` buffered messages per :meth:`fetch`. It
re-requests when fewer than half a batch is outstanding, so the server delivers the next batch
while the current one is being handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

__all__ = ["PullConsumer"]

_STATUS = "Status"
_PENDING_MSGS = "Nats-Pending-Messages"


class PullConsumer:
    """Buffered pull client of one durable consumer.

    Args:
        nc: connection.
        stream, consumer: the durable pull consumer (must exist).
        batch: messages per pull request (and at most per :meth:`fetch`).
        expires_ms: lifetime of one pull request (ms); bounds how long :meth:`close` waits.
        api_prefix: JetStream API prefix.
    """

    def __init__(
        self,
        nc: NATS,
        stream: str,
        consumer: str,
        *,
        batch: int,
        expires_ms: int,
        api_prefix: str = "$JS.API",
    ) -> None:
        self._nc = nc
        self._next_subject = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._batch = batch
        self._expires_ns = max(expires_ms, 10) * 1_000_000
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._buffer: list[Msg] = []
        self._event = asyncio.Event()
        self._outstanding = 0
        self._closing = False
        self._last_activity = 0.0
        #: Last error status of a pull request (e.g. ``409 Consumer Deleted``); None once
        #: messages flow again.
        self.last_error: str | None = None

    async def start(self) -> None:
        """Subscribe the delivery inbox."""
        self._sub = await self._nc.subscribe(
            self._inbox, cb=self._on_msg, pending_msgs_limit=-1, pending_bytes_limit=-1
        )

    async def _on_msg(self, msg: Msg) -> None:
        self._last_activity = asyncio.get_running_loop().time()
        hdrs = msg.headers
        if hdrs is not None and not msg.reply and _STATUS in hdrs:
            status = hdrs[_STATUS]
            if status == "100":  # idle heartbeat / flow control
                return
            pending = hdrs.get(_PENDING_MSGS)
            if pending is not None:
                self._outstanding = max(0, self._outstanding - int(pending))
            else:
                self._outstanding = 0
            if status not in ("404", "408"):  # not just "nothing (more) to deliver"
                self.last_error = f"{status} {hdrs.get('Description', '')}".strip()
            self._event.set()
            return
        self.last_error = None
        self._outstanding -= 1
        self._buffer.append(msg)
        self._event.set()

    async def _request(self) -> None:
        req = {"batch": self._batch, "expires": self._expires_ns}
        self._outstanding += self._batch
        self._last_activity = asyncio.get_running_loop().time()
        await self._nc.publish(self._next_subject, json.dumps(req).encode(), reply=self._inbox)

    async def _top_up(self) -> None:
        if not self._closing and self._outstanding < self._batch // 2 + 1:
            await self._request()

    async def fetch(self, timeout_s: float, limit: int | None = None) -> list[Msg]:
        """Up to ``batch`` (or ``limit``, if smaller) delivered messages; empty when none
        arrived within ``timeout_s``."""
        await self._top_up()
        if not self._buffer:
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), timeout_s)
            except TimeoutError:
                # Requests lost to a reconnect never end with a status: forget them once they
                # must have expired, so the next fetch asks again.
                idle = asyncio.get_running_loop().time() - self._last_activity
                if idle > 2 * self._expires_ns / 1e9 + 1:
                    self._outstanding = 0
        n = self._batch if limit is None else min(limit, self._batch)
        out = self._buffer[:n]
        del self._buffer[:n]
        if out:
            await self._top_up()
        return out

    async def close(self, timeout_s: float) -> list[Msg]:
        """Stop requesting, wait (up to ``timeout_s``) for outstanding requests to end, then
        unsubscribe; returns the messages delivered meanwhile (still to be handled and acked)."""
        self._closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._outstanding > 0 and self._nc.is_connected:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), remaining)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        out, self._buffer = self._buffer, []
        return out
