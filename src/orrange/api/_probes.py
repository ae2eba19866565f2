"""Probe routes of the API: ``/health``, ``/live``, ``/ready`` and ``/metrics`` (public)."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST

from orrange.api.deps import context
from orrange.api.errors import ApiError

__all__ = ["PROBE_HANDLERS"]


@get("/health", summary="Health", include_in_schema=True)
async def health() -> dict[str, str]:
    """The process serves HTTP."""
    return {"status": "ok"}


@get("/live", summary="Liveness")
async def live(request: Request[Any, Any, Any]) -> dict[str, str]:
    """200 while the event hub runs (else 503)."""
    if not context(request).hub.running:
        raise ApiError(503, "hub", "stopped", "the event hub is not running")
    return {"status": "ok"}


@get("/ready", summary="Readiness")
async def ready(request: Request[Any, Any, Any]) -> dict[str, str]:
    """200 when NATS and PostgreSQL are reachable (else 503 naming the one that is not)."""
    ctx = context(request)
    if not ctx.nc.is_connected:
        raise ApiError(503, "nats", "unreachable", "not connected to NATS")
    try:
        await asyncio.wait_for(ctx.nc.flush(), 2)
    except Exception as exc:
        raise ApiError(503, "nats", "unreachable", f"NATS did not answer: {exc!r}") from exc
    try:
        async with asyncio.timeout(2):
            await ctx.pool.fetchval("SELECT 1")
    except Exception as exc:  # any failure to answer SELECT 1 means not ready
        raise ApiError(503, "postgres", "unreachable", f"PostgreSQL: {exc!r}") from exc
    return {"status": "ok", "nats": "ok", "postgres": "ok"}


@get("/metrics", summary="Prometheus metrics", media_type=CONTENT_TYPE_LATEST)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus text exposition of the API's metrics."""
    body = context(request).metrics.render()
    return Response(body, media_type=CONTENT_TYPE_LATEST)


#: The route handlers of this module (mounted at the root).
PROBE_HANDLERS = [health, live, ready, metrics]
