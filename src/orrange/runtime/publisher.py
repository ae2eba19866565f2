"""Asynchronous JetStream publishing with ``Nats-Msg-Id`` de-duplication.

One JetStream publish costs a network round trip when awaited alone. :class:`Publisher` sends
each message as a core NATS publish with a reply subject on its own inbox and collects the
JetStream acks in one callback subscription, so hundreds of publishes are in flight at once
(nats-py's ``publish_async`` does the same but with a task, a semaphore wait and a future per
message, about three times slower). Payloads are msgspec structs encoded as JSON, or ready-made
bytes. Every publish should carry a ``Nats-Msg-Id`` so that a repeated publish (a retry, or a
replay after a crash) within the stream's duplicate window is stored once.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

__all__ = ["MSG_ID_HEADER", "PubAck", "PublishError", "Publisher", "encode"]

MSG_ID_HEADER = "Nats-Msg-Id"

_encoder = msgspec.json.Encoder()


def encode(msg: msgspec.Struct | bytes) -> bytes:
    """JSON bytes of a msgspec struct (bytes pass through unchanged)."""
    if isinstance(msg, bytes | bytearray | memoryview):
        return bytes(msg)
    return _encoder.encode(msg)


class PubAck(msgspec.Struct, frozen=True, gc=False):
    """JetStream's acknowledgement of one publish.

    Attributes:
        stream: the stream that stored it.
        seq: its sequence in that stream (for a duplicate: the original's sequence).
        duplicate: True when JetStream dropped it as a repeat of its ``Nats-Msg-Id``.
    """

    stream: str = ""
    seq: int = 0
    duplicate: bool = False


class _ApiError(msgspec.Struct, gc=False):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _AckResponse(msgspec.Struct, gc=False):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _ApiError | None = None


_ack_decoder = msgspec.json.Decoder(_AckResponse)


class PublishError(RuntimeError):
    """One or more publishes were not acknowledged by JetStream (error reply or timeout).

    Attributes:
        failures: ``(subject, msg_id, reason)`` for each failed publish.
    """

    def __init__(self, failures: Sequence[tuple[str, str | None, str]]) -> None:
        self.failures = list(failures)
        subject, msg_id, reason = self.failures[0]
        super().__init__(
            f"{len(self.failures)} publish(es) failed; first: {subject} (msg id {msg_id}): {reason}"
        )


def _headers(msg_id: str | None, headers: Mapping[str, str] | None) -> dict[str, str] | None:
    if msg_id is None:
        return headers if headers is None or isinstance(headers, dict) else dict(headers)
    if not headers:
        return {MSG_ID_HEADER: msg_id}
    hdrs = dict(headers)
    hdrs[MSG_ID_HEADER] = msg_id
    return hdrs


class _Batch:
    __slots__ = ("acks", "done", "failures", "remaining")

    def __init__(self) -> None:
        self.acks: list[PubAck | None] = []
        self.failures: list[tuple[int, str]] = []
        self.remaining = 0
        self.done = asyncio.Event()


class Publisher:
    """Pipelined JetStream publisher for producers (API handlers, feeds, replays) and actors.

    Args:
        nc: a connected NATS client.
        timeout_ms: how long :meth:`flush` and :meth:`publish` wait for acks (ms).
        max_pending: publishes in flight before :meth:`submit` first collects acks (the bulk
            path flushes by itself at this size).

    Two ways to use it:

    * ``await publisher.publish(subject, msg, msg_id=...)`` returns the :class:`PubAck` of one
      message. Concurrent callers (many HTTP requests) share the connection without waiting for
      each other's round trips.
    * ``await publisher.submit(...)`` for many messages, then ``await publisher.flush()``: the
      bulk path (hundreds of messages per round trip). ``submit``/``flush`` belong to one task
      at a time; ``publish`` may be called from any number of tasks concurrently.
    """

    def __init__(self, nc: NATS, *, timeout_ms: int = 10_000, max_pending: int = 20_000) -> None:
        self._nc = nc
        self._timeout_s = timeout_ms / 1000.0
        self._max_pending = max_pending
        self._prefix = ""
        self._prefix_len = 0
        self._started = False
        self._start_lock = asyncio.Lock()
        self._tokens = itertools.count(1)
        self._waiters: dict[int, tuple[_Batch, int]] = {}
        # single publishes (publish, publish_future): token -> (future, subject, msg id, timer)
        self._singles: dict[int, tuple[asyncio.Future[PubAck], str, str | None, Any]] = {}
        self._batch = _Batch()
        self._meta: list[tuple[str, str | None]] = []

    async def _ensure_started(self) -> None:
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            self._prefix = self._nc.new_inbox() + "."
            self._prefix_len = len(self._prefix)
            await self._nc.subscribe(
                self._prefix + "*",
                cb=self._on_ack,
                pending_msgs_limit=-1,
                pending_bytes_limit=-1,
            )
            self._started = True

    @staticmethod
    def _ack_of(msg: Msg) -> PubAck | str:
        """The PubAck of an ack message, or the reason it is a failure."""
        hdrs = msg.headers
        if hdrs is not None and hdrs.get("Status") == "503":
            return "no stream captures this subject"
        try:
            resp = _ack_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            return f"bad ack: {exc}"
        if resp.error is not None:
            return f"{resp.error.err_code}: {resp.error.description}"
        return PubAck(resp.stream, resp.seq, resp.duplicate)

    async def _on_ack(self, msg: Msg) -> None:
        try:
            token = int(msg.subject[self._prefix_len :])
        except ValueError:
            return
        single = self._singles.pop(token, None)
        if single is not None:
            fut, subject, msg_id, timer = single
            timer.cancel()
            if not fut.done():
                ack = self._ack_of(msg)
                if isinstance(ack, str):
                    fut.set_exception(PublishError([(subject, msg_id, ack)]))
                else:
                    fut.set_result(ack)
            return
        waiter = self._waiters.pop(token, None)
        if waiter is None:
            return
        batch, index = waiter
        ack = self._ack_of(msg)
        if isinstance(ack, str):
            batch.failures.append((index, ack))
        else:
            batch.acks[index] = ack
        batch.remaining -= 1
        if batch.remaining == 0:
            batch.done.set()

    async def _send(
        self,
        batch: _Batch,
        subject: str,
        payload: bytes,
        msg_id: str | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        token = next(self._tokens)
        index = len(batch.acks)
        batch.acks.append(None)
        batch.remaining += 1
        self._waiters[token] = (batch, index)
        await self._nc.publish(
            subject, payload, reply=f"{self._prefix}{token}", headers=_headers(msg_id, headers)
        )

    async def _collect(self, batch: _Batch, meta: Sequence[tuple[str, str | None]]) -> list[PubAck]:
        if batch.remaining > 0:
            try:
                await asyncio.wait_for(batch.done.wait(), self._timeout_s)
            except TimeoutError:
                for token, (b, index) in list(self._waiters.items()):
                    if b is batch:
                        del self._waiters[token]
                        batch.failures.append((index, "no publish ack in time"))
        if batch.failures:
            raise PublishError(
                [(meta[i][0], meta[i][1], reason) for i, reason in sorted(batch.failures)]
            )
        return [a for a in batch.acks if a is not None]

    @property
    def pending(self) -> int:
        """Submitted publishes whose acks :meth:`flush` has not collected yet."""
        return len(self._meta)

    async def submit(
        self,
        subject: str,
        msg: msgspec.Struct | bytes,
        *,
        msg_id: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Send one message without waiting for its ack; :meth:`flush` collects the acks.

        ``msg_id`` is the de-duplication key (None only for messages that may be stored twice).

        Raises:
            PublishError: ``max_pending`` was reached and the automatic flush found failures.
        """
        await self._ensure_started()
        if len(self._meta) >= self._max_pending:
            await self.flush()
        self._meta.append((subject, msg_id))
        await self._send(self._batch, subject, encode(msg), msg_id, headers)

    async def flush(self) -> list[PubAck]:
        """Wait for the acks of every submitted message; returns them in submission order.

        Raises:
            PublishError: some publishes failed or were not acked within ``timeout_ms``; the
                others are stored (retrying all of them with the same ``msg_id``s is safe).
        """
        batch, meta = self._batch, self._meta
        self._batch, self._meta = _Batch(), []
        if not meta:
            return []
        return await self._collect(batch, meta)

    async def publish(
        self,
        subject: str,
        msg: msgspec.Struct | bytes,
        *,
        msg_id: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> PubAck:
        """Publish one message and wait for its ack (other callers' publishes stay in flight).

        Raises:
            PublishError: JetStream answered with an error (e.g. no stream captures
                ``subject``), or no ack came within ``timeout_ms``.
        """
        return await (await self.publish_future(subject, msg, msg_id=msg_id, headers=headers))

    async def publish_future(
        self,
        subject: str,
        msg: msgspec.Struct | bytes,
        *,
        msg_id: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> asyncio.Future[PubAck]:
        """Send one message now; the returned future resolves with its :class:`PubAck`.

        For callers that wait for something else as well (the API waits for the engine's
        answer, which may come before the ack): no task, no event, one timer per message.
        The future fails with :class:`PublishError` on an error ack or when no ack came
        within ``timeout_ms``.
        """
        await self._ensure_started()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[PubAck] = loop.create_future()
        token = next(self._tokens)
        timer = loop.call_later(self._timeout_s, self._expire, token)
        self._singles[token] = (fut, subject, msg_id, timer)
        try:
            await self._nc.publish(
                subject,
                encode(msg),
                reply=f"{self._prefix}{token}",
                headers=_headers(msg_id, headers),
            )
        except BaseException:
            self._singles.pop(token, None)
            timer.cancel()
            raise
        return fut

    def _expire(self, token: int) -> None:
        single = self._singles.pop(token, None)
        if single is not None and not single[0].done():
            single[0].set_exception(
                PublishError([(single[1], single[2], "no publish ack in time")])
            )
