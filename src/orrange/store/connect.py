"""Connecting the actors to PostgreSQL, and the errors they wait out.

Under ``orrange up`` PostgreSQL starts beside the actors, and a database can drop a connection
at any time; every actor that writes uses these definitions rather than its own.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

__all__ = ["CONNECT_WAIT_ERRORS", "TRANSIENT_ERRORS", "connect_when_ready"]

#: Errors after which a write is retried on a new connection instead of dead-lettered.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)

#: Errors a start waits out: the transient ones, and a database not created yet.
CONNECT_WAIT_ERRORS: tuple[type[BaseException], ...] = (
    *TRANSIENT_ERRORS,
    asyncpg.InvalidCatalogNameError,
)


async def connect_when_ready(url: str, timeout_s: float, log: Any) -> asyncpg.Connection:
    """Connect to ``url``, retrying every 0.5 s while the server or database is not there yet.

    Args:
        url: a ``postgresql://`` URL.
        timeout_s: how long to keep retrying (s).
        log: a structlog logger; each retry logs a warning.

    Raises:
        One of :data:`CONNECT_WAIT_ERRORS`: still failing after ``timeout_s``; any other
        asyncpg error (bad credentials, say) at once.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn: asyncpg.Connection = await asyncpg.connect(url, timeout=10)
            return conn
        except CONNECT_WAIT_ERRORS as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("waiting for PostgreSQL", error=repr(exc))
            await asyncio.sleep(0.5)
