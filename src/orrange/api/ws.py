"""WebSocket ``/ws``: market data and private order events.

Client messages (JSON text frames):

* ``{"op": "subscribe", "channel": "book.BTC-USDT"}`` (also ``trades.<SYM>``, ``ticker.<SYM>``,
  ``candles.<IV>.<SYM>`` and, after ``auth``, ``orders``); ``{"op": "unsubscribe", "channel":
  ...}``;
* ``{"op": "auth", "token": "<JWT>"}`` authenticates the connection for ``orders``;
* ``{"op": "ping"}`` is answered ``{"type": "pong"}``.

Server messages carry ``type`` and ``channel``: ``subscribed`` / ``unsubscribed``,
``snapshot`` then ``delta`` (book: ``seq``, ``prev_seq``, ``[price, size]`` levels as decimal
strings, size ``"0"`` removes a level; see :mod:`orrange.api.subscriber` for the gap rule),
``trade``, ``ticker``, ``candle`` (fields of :class:`orrange.api._marketdata.CandleOut`),
``order`` (the user's own events: accepted, rejected, fill, canceled, expired, triggered,
amended), ``authenticated`` and ``error`` (``field``, ``reason``,
``message``).

Alerts (:mod:`orrange.api._alerts`): the public channel ``signals`` carries ``signal``
messages; the ``orders`` channel also carries the user's ``notification`` messages (alerts
that fired, signals they subscribed to).

Flow control: book deltas are conflated per client and sent at most every
``ws_conflation_ms`` (100 ms); other messages wait in a bounded per-client queue. A client
whose queue overflows, or whose socket does not accept a message within
``ws_send_timeout_s``, is closed with code 1008 and a reason starting ``slow consumer``. The
hub never waits for a client, so one slow client never delays the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from orrange.api.auth import AuthError, decode_token
from orrange.api.context import ApiContext
from orrange.api.subscriber import Subscriber
from orrange.logging import get_logger

__all__ = ["SLOW_CONSUMER_CODE", "ClientMessage", "ws_handler"]

#: Close code of a client that cannot keep up (policy violation).
SLOW_CONSUMER_CODE = 1008
_MAX_CHANNELS = 64
#: How long the close frame of a dropped client may wait for its socket to drain.
_CLOSE_WAIT_S = 60.0

_log = get_logger("orrange.api.ws")
_json = msgspec.json.Encoder()


class ClientMessage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A message from the client: ``op`` is subscribe, unsubscribe, auth or ping."""

    op: str
    channel: str | None = None
    token: str | None = None


_decoder = msgspec.json.Decoder(ClientMessage)


def _error(field: str, reason: str, message: str, channel: str | None = None) -> bytes:
    body: dict[str, Any] = {"type": "error", "field": field, "reason": reason, "message": message}
    if channel is not None:
        body["channel"] = channel
    return _json.encode(body)


class _Session:
    def __init__(self, socket: WebSocket[Any, Any, Any], ctx: ApiContext) -> None:
        self.socket = socket
        self.ctx = ctx
        self.sub = Subscriber(ctx.options.ws_queue_size)
        self.interval = ctx.options.ws_conflation_ms / 1000.0
        self.last_book: dict[str, float] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.sending_since: float | None = None

    async def send(self, data: bytes) -> None:
        """Send one frame (blocks while the client's socket does not drain)."""
        self.sending_since = asyncio.get_running_loop().time()
        await self.socket.send_data(data.decode(), mode="text")
        self.sending_since = None
        self.ctx.metrics.ws_messages_out.inc()

    async def watchdog(self) -> None:
        """Close the client when one send stays blocked longer than ``ws_send_timeout_s``."""
        limit = self.ctx.options.ws_send_timeout_s
        loop = asyncio.get_running_loop()
        while self.sub.closed is None:
            await asyncio.sleep(min(1.0, limit / 4))
            since = self.sending_since
            if since is not None and loop.time() - since > limit:
                self.sub.close(f"slow consumer: a send blocked more than {limit:g} s")

    async def writer(self) -> None:
        """Drain the subscriber: queued messages first, then conflated book deltas."""
        sub = self.sub
        loop = asyncio.get_running_loop()
        while sub.closed is None:
            await sub.wake.wait()
            sub.wake.clear()
            while sub.queue and sub.closed is None:
                await self.send(sub.queue.popleft())
            if sub.closed is not None:
                break
            now = loop.time()
            wait = None
            for symbol in list(sub.pending):
                due = self.last_book.get(symbol, 0.0) + self.interval
                if now < due:
                    wait = due - now if wait is None else min(wait, due - now)
                    continue
                data = sub.take_delta(symbol)
                if data is None:
                    continue
                self.last_book[symbol] = now
                await self.send(data)
                if sub.closed is not None:
                    break
                now = loop.time()
            if wait is not None and self.timer is None:
                self.timer = loop.call_later(wait, self._tick)

    def _tick(self) -> None:
        self.timer = None
        self.sub.wake.set()

    async def handle(self, raw: str | bytes) -> None:
        """Act on one client message."""
        sub, channels = self.sub, self.ctx.channels
        try:
            msg = _decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            sub.enqueue(_error("message", "invalid_message", str(exc)))
            return
        if msg.op == "ping":
            sub.enqueue(b'{"type":"pong"}')
        elif msg.op == "auth":
            try:
                principal = decode_token(self.ctx.jwt_secret, msg.token or "")
            except AuthError as exc:
                sub.enqueue(_error("token", exc.reason, exc.message))
                return
            if sub.user is not None and sub.user != principal.user:
                channels.unsubscribe(sub, "orders")
            sub.user = principal.user
            sub.enqueue(_json.encode({"type": "authenticated", "user": principal.user}))
        elif msg.op in ("subscribe", "unsubscribe"):
            channel = msg.channel
            if not channel:
                sub.enqueue(_error("channel", "missing", "give a channel"))
                return
            if msg.op == "unsubscribe":
                channels.unsubscribe(sub, channel)
                sub.enqueue(_json.encode({"type": "unsubscribed", "channel": channel}))
                return
            if len(sub.channels) >= _MAX_CHANNELS and channel not in sub.channels:
                sub.enqueue(_error("channel", "too_many_channels", f"at most {_MAX_CHANNELS}"))
                return
            sub.enqueue(_json.encode({"type": "subscribed", "channel": channel}))
            err = channels.subscribe(sub, channel)
            if err is not None:
                sub.channels.discard(channel)
                sub.enqueue(_error("channel", err, f"cannot subscribe to {channel!r}", channel))
        else:
            sub.enqueue(_error("op", "unknown_op", f"unknown op {msg.op!r}"))


@websocket("/ws")
async def ws_handler(socket: WebSocket[Any, Any, Any]) -> None:
    """The market-data and private-events WebSocket (see the module documentation)."""
    ctx: ApiContext = socket.app.state["api"]
    await socket.accept()
    session = _Session(socket, ctx)
    sub = session.sub
    closed = asyncio.Event()
    sub.on_close = lambda _s: closed.set()
    ctx.metrics.ws_clients.inc()
    writer = asyncio.create_task(session.writer(), name="ws-writer")

    async def reader() -> None:
        """Handle client messages until the client leaves or is closed."""
        while sub.closed is None:
            raw = await socket.receive_data(mode="text")
            await session.handle(raw)

    read_task = asyncio.create_task(reader(), name="ws-reader")
    watchdog = asyncio.create_task(session.watchdog(), name="ws-watchdog")
    closed_wait = asyncio.create_task(closed.wait())
    tasks = (read_task, writer, watchdog, closed_wait)
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ctx.channels.remove(sub)
        if session.timer is not None:
            session.timer.cancel()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        ctx.metrics.ws_clients.dec()
    if sub.closed is not None:
        if sub.closed.startswith("slow consumer"):
            ctx.metrics.ws_slow_closed.inc()
        _log.info("closing websocket", reason=sub.closed)
        # the close frame waits until the socket drains, for as long as the client stays
        with contextlib.suppress(WebSocketDisconnect, Exception):
            await asyncio.wait_for(
                socket.close(code=SLOW_CONSUMER_CODE, reason=sub.closed[:120]), _CLOSE_WAIT_S
            )
