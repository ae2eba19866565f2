"""Prometheus metrics of the API process (its own registry, served at ``/metrics``)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ApiMetrics"]

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    """Counters and gauges of the HTTP API, the event hub and the WebSocket fan-out."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_responses = Counter(
            "orrange_api_http_responses", "HTTP responses", ["method", "status"], registry=r
        )
        self.order_roundtrip = Histogram(
            "orrange_api_order_roundtrip_seconds",
            "Command publish to engine answer (accepted/rejected/canceled/amended)",
            ["command"],
            buckets=_LATENCY,
            registry=r,
        )
        self.order_entry = Counter(
            "orrange_api_order_entry",
            "POST /api/v1/orders bodies by path: 'fast' (strictly valid JSON, read by the route "
            "middleware) or 'handler' (passed on to Litestar's validation)",
            ["path"],
            registry=r,
        )
        self.order_timeouts = Counter(
            "orrange_api_order_timeouts", "Commands not answered in time", ["command"], registry=r
        )
        self.events_in = Counter(
            "orrange_api_events_in",
            "Events and rejections received by the hub",
            ["stream"],
            registry=r,
        )
        self.event_gaps = Counter(
            "orrange_api_event_gaps", "Gaps seen in a book's event sequence", registry=r
        )
        self.ws_clients = Gauge("orrange_api_ws_clients", "Connected WebSocket clients", registry=r)
        self.ws_messages_out = Counter(
            "orrange_api_ws_messages_out", "WebSocket messages sent", registry=r
        )
        self.ws_slow_closed = Counter(
            "orrange_api_ws_slow_closed",
            "WebSocket clients closed because they could not keep up",
            registry=r,
        )
        self.book_resyncs = Counter(
            "orrange_api_book_resyncs", "Book mirror (re)synchronisations", registry=r
        )

        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached (``labels()`` costs microseconds per call)."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def http_response(self, method: str, status: int) -> None:
        """Count one HTTP response."""
        self._child(self.http_responses, method, str(status)).inc()

    def order_entry_path(self, path: str) -> None:
        """Count one order-entry body by the path that read it (``fast`` or ``handler``)."""
        self._child(self.order_entry, path).inc()

    def roundtrip(self, command: str, seconds: float) -> None:
        """Observe one command's publish-to-answer time (s)."""
        self._child(self.order_roundtrip, command).observe(seconds)

    def event_in(self, stream: str) -> None:
        """Count one message received by the hub (``events`` or ``rejects``)."""
        self._child(self.events_in, stream).inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)
