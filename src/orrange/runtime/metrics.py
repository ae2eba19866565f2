"""Prometheus metrics of an actor and its small HTTP server (``/metrics``, ``/live``, ``/ready``).

Each actor has its own ``CollectorRegistry`` so several actors can live in one process (tests,
benchmarks) without clashing. Metric names (all labelled ``actor``; per-input ones also
``consumer``):

* ``orrange_actor_messages_in_total``: input messages fetched.
* ``orrange_actor_messages_out_total``: messages published (acked by JetStream).
* ``orrange_actor_duplicates_total``: published messages JetStream dropped as repeats of their
  ``Nats-Msg-Id`` (replays after a crash or a failed batch).
* ``orrange_actor_dead_letters_total``: input messages sent to the dead-letter stream.
* ``orrange_actor_batch_failures_total``: batches not acked because publishing failed.
* ``orrange_actor_batch_seconds``: histogram of fetch-to-ack time of a batch (seconds, the
  Prometheus base unit).
* ``orrange_actor_batch_size``: histogram of messages per batch.
* ``orrange_actor_consumer_lag``: messages in the stream not yet delivered to the consumer
  (``num_pending`` of the last message of the last batch).
* ``orrange_actor_last_heartbeat_timestamp_seconds``: Unix time of the last heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import msgspec
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["ActorMetrics", "MetricsServer"]

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)


class ActorMetrics:
    """The metrics of one actor, in their own registry (:attr:`registry`)."""

    def __init__(self, actor: str) -> None:
        self.actor = actor
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        labels = ["actor", "consumer"]
        self.messages_in = Counter(
            "orrange_actor_messages_in", "Input messages fetched", labels, registry=r
        )
        self.messages_out = Counter(
            "orrange_actor_messages_out", "Messages published and acked", ["actor"], registry=r
        )
        self.duplicates = Counter(
            "orrange_actor_duplicates",
            "Published messages dropped by JetStream as repeats of their Nats-Msg-Id",
            ["actor"],
            registry=r,
        )
        self.dead_letters = Counter(
            "orrange_actor_dead_letters", "Input messages dead-lettered", labels, registry=r
        )
        self.batch_failures = Counter(
            "orrange_actor_batch_failures",
            "Batches left unacked because publishing failed",
            labels,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "orrange_actor_batch_seconds",
            "Fetch-to-ack time of a batch in seconds",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "orrange_actor_batch_size",
            "Messages per fetched batch",
            labels,
            buckets=_SIZE_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "orrange_actor_consumer_lag",
            "Messages of the stream not yet delivered to the consumer (num_pending)",
            labels,
            registry=r,
        )
        self.last_heartbeat = Gauge(
            "orrange_actor_last_heartbeat_timestamp_seconds",
            "Unix time of the last heartbeat",
            ["actor"],
            registry=r,
        )

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)


class _Probe(msgspec.Struct):
    status: str
    actor: str
    detail: str = ""


_probe_encoder = msgspec.json.Encoder()


class MetricsServer:
    """A minimal asyncio HTTP/1.1 server (one request per connection) for the probes.

    Routes: ``GET /metrics`` (Prometheus text), ``GET /live`` (200 while ``is_live()`` is
    True, else 503), ``GET /ready`` (200 while ``is_ready()`` is True, else 503); anything else
    is a 404. Probe bodies are JSON ``{"status": "ok"|"down", "actor": ..., "detail": ...}``.

    Args:
        metrics: whose registry ``/metrics`` serves.
        host, port: where to listen; port 0 picks a free one (see :attr:`port` after start).
        is_live, is_ready: probe callbacks returning ``(ok, detail)``.
    """

    def __init__(
        self,
        metrics: ActorMetrics,
        host: str,
        port: int,
        is_live: Callable[[], tuple[bool, str]],
        is_ready: Callable[[], tuple[bool, str]],
    ) -> None:
        self._metrics = metrics
        self._host = host
        self._port = port
        self._is_live = is_live
        self._is_ready = is_ready
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (valid after :meth:`start`)."""
        if self._server is None:
            return self._port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Bind and serve in the background.

        Raises:
            OSError: the port is taken.
        """
        self._server = await asyncio.start_server(self._handle, self._host, self._port)

    async def stop(self) -> None:
        """Stop listening and close the socket."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    def _probe(self, check: Callable[[], tuple[bool, str]]) -> tuple[int, bytes]:
        ok, detail = check()
        body = _Probe("ok" if ok else "down", self._metrics.actor, detail)
        return (200 if ok else 503), _probe_encoder.encode(body)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            parts = request.split(b"\r\n", 1)[0].split()
            method = parts[0] if parts else b""
            path = parts[1].split(b"?", 1)[0] if len(parts) > 1 else b""
            ctype = b"application/json"
            if method not in (b"GET", b"HEAD"):
                status, body = 405, b'{"status":"method not allowed"}'
            elif path == b"/metrics":
                status, body, ctype = 200, self._metrics.render(), CONTENT_TYPE_LATEST.encode()
            elif path == b"/live":
                status, body = self._probe(self._is_live)
            elif path == b"/ready":
                status, body = self._probe(self._is_ready)
            else:
                status, body = 404, b'{"status":"not found"}'
            reason = {200: b"OK", 404: b"Not Found", 405: b"Method Not Allowed"}.get(
                status, b"Service Unavailable"
            )
            head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (
                status,
                reason,
                ctype,
                len(body),
            )
            writer.write(head + b"Connection: close\r\n\r\n")
            if method != b"HEAD":
                writer.write(body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
