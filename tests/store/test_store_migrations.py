"""Schema migrations on a real PostgreSQL: applied once, tracked, serialized, immutable."""

from __future__ import annotations

import asyncio
import hashlib

import asyncpg
import pytest

from orrange.store import Migration, MigrationError, load_migrations, migrate


def _mig(version: int, name: str, sql: str) -> Migration:
    return Migration(version, name, sql, hashlib.sha256(sql.encode()).hexdigest())


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r[0] for r in rows}


async def test_migrations_apply_once_and_are_tracked(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        files = load_migrations()
        assert [m.version for m in files] == sorted({m.version for m in files})
        assert await migrate(conn) == [m.version for m in files]
        assert await migrate(conn) == []
        assert {"orders", "order_events", "fills", "rejections", "schema_migrations"} <= (
            await _tables(conn)
        )
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        assert sorted(tuple(r.values()) for r in rows) == [
            (m.version, m.name, m.checksum) for m in files
        ]
    finally:
        await conn.close()


async def test_concurrent_starters_apply_each_migration_once(database_url: str) -> None:
    conns = [await asyncpg.connect(database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(results, key=len) == [[], [], [m.version for m in load_migrations()]]
    finally:
        for c in conns:
            await c.close()


async def test_a_changed_migration_is_refused(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, [_mig(1, "a", "CREATE TABLE a (x int)")])
        with pytest.raises(MigrationError, match="changed"):
            await migrate(conn, [_mig(1, "a", "CREATE TABLE a (x bigint)")])
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_nothing(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        good = _mig(1, "good", "CREATE TABLE good (x int)")
        bad = _mig(2, "bad", "CREATE TABLE bad (x int); SELECT 1 / 0")
        with pytest.raises(asyncpg.DivisionByZeroError):
            await migrate(conn, [good, bad])
        assert await _tables(conn) == set()
        assert await migrate(conn, [good]) == [1]
        assert await _tables(conn) == {"good", "schema_migrations"}
    finally:
        await conn.close()
