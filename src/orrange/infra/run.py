"""Foreground runners of the embedded servers, for Procfile lines (``orrange infra nats``).

Each runner starts its server unless an external URL is configured, then blocks until SIGTERM
or SIGINT (or the server exits) and stops it cleanly. With an external URL it idles until
signalled instead of exiting, because a Procfile runner (honcho) stops every process when one
exits.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from orrange.infra._proc import InfraError, ServerProcess, tcp_open, wait_until
from orrange.infra.nats import NatsServer
from orrange.infra.postgres import EmbeddedPostgres
from orrange.logging import get_logger
from orrange.settings import Settings

__all__ = ["run_nats", "run_postgres", "wait_for_url"]


def _install_stop_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _serve(server: ServerProcess, stop: threading.Event, log: Any) -> int:
    """Block until ``stop`` is set or the server dies; stop it; returns the exit code to use."""
    while not stop.wait(0.2):
        code = server.exit_code()
        if code is not None:
            log.error(f"{server.name} exited", code=code)
            server.stop()
            return code or 1
    server.stop()
    log.info(f"{server.name} stopped")
    return 0


def wait_for_url(url: str, timeout_s: float = 60.0) -> None:
    """Block until the host:port of ``url`` (``nats://`` or ``postgresql://``) accepts TCP.

    Raises:
        InfraError: not reachable within ``timeout_s`` seconds.
        ValueError: the URL has no host.
    """
    first = url.split(",")[0]
    parts = urlsplit(first)
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    default = 4222 if parts.scheme.startswith("nats") else 5432
    host, port = parts.hostname, parts.port or default
    wait_until(lambda: tcp_open(host, port), timeout_s=timeout_s, what=f"{host}:{port}")


def run_nats(settings: Settings) -> int:
    """Run the embedded nats-server (store ``<data_dir>/nats``) until signalled.

    Returns 0 after a clean stop, the server's exit code if it died, 1 if it did not start.
    """
    log = get_logger("orrange.infra", component="nats")
    stop = _install_stop_signals()
    if not settings.embedded_nats:
        log.info("external NATS configured; embedded server not started", url=settings.nats_url)
        stop.wait()
        return 0
    server = NatsServer(
        settings.data_path / "nats",
        host=settings.nats_host,
        port=settings.nats_port,
        monitor_port=settings.nats_monitor_port,
    )
    started = time.monotonic()
    try:
        server.start()
    except InfraError as exc:
        log.error("nats-server failed to start", error=str(exc))
        return 1
    log.info(
        "nats-server ready",
        url=server.url,
        store_dir=str(server.store_dir),
        ms=round((time.monotonic() - started) * 1000),
    )
    return _serve(server, stop, log)


def run_postgres(settings: Settings) -> int:
    """Run the embedded PostgreSQL (cluster ``<data_dir>/pg``, database ``database_name``)
    until signalled.

    Returns 0 after a clean stop, the server's exit code if it died, 1 if it did not start.
    """
    log = get_logger("orrange.infra", component="postgres")
    stop = _install_stop_signals()
    if not settings.embedded_postgres:
        log.info("external PostgreSQL configured; embedded server not started")
        stop.wait()
        return 0
    server = EmbeddedPostgres(
        settings.data_path / "pg", host=settings.postgres_host, port=settings.postgres_port
    )
    started = time.monotonic()
    try:
        server.start()
        created = server.create_database(settings.database_name)
    except InfraError as exc:
        log.error("postgres failed to start", error=str(exc))
        server.stop()
        return 1
    log.info(
        "postgres ready",
        url=server.url(settings.database_name),
        pgdata=str(server.pgdata),
        database_created=created,
        ms=round((time.monotonic() - started) * 1000),
    )
    return _serve(server, stop, log)
