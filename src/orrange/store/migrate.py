"""Schema migrations: numbered ``NNNN_<name>.sql`` files of ``orrange/store/migrations``.

:func:`migrate` applies, in version order, every file not yet recorded in the table
``schema_migrations`` (version, name, sha256 checksum, applied_at), all in **one** transaction
under a transaction-scoped advisory lock, so concurrent starters (several persisters, the API)
serialize and the second one finds nothing to do. Running it again is a no-op. A recorded
migration whose file changed since is an error: applied migrations are immutable, changes go
into a new file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg
from asyncpg.pool import PoolConnectionProxy

__all__ = ["MIGRATION_LOCK_KEY", "Migration", "MigrationError", "load_migrations", "migrate"]

#: Key of the ``pg_advisory_xact_lock`` held while migrating ("orrange" in ASCII, as a bigint).
MIGRATION_LOCK_KEY = 0x6F7272616E6765

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """A migration file is misnamed, duplicated, or differs from the applied version."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file.

    Attributes:
        version: its number (the ``NNNN`` prefix).
        name: the rest of the file name, without ``.sql``.
        sql: its content.
        checksum: sha256 hex digest of ``sql`` (UTF-8).
    """

    version: int
    name: str
    sql: str
    checksum: str


def load_migrations() -> list[Migration]:
    """The packaged migration files, by version.

    Raises:
        MigrationError: a ``.sql`` file does not match ``NNNN_name.sql`` or two share a version.
    """
    root = resources.files("orrange.store").joinpath("migrations")
    found: dict[int, Migration] = {}
    for entry in root.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        m = _NAME.match(entry.name)
        if m is None:
            raise MigrationError(f"migration file {entry.name!r} is not NNNN_name.sql")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(f"two migrations with version {version}")
        sql = entry.read_text(encoding="utf-8")
        found[version] = Migration(
            version, m.group(2), sql, hashlib.sha256(sql.encode()).hexdigest()
        )
    return [found[v] for v in sorted(found)]


async def migrate(
    conn: asyncpg.Connection | PoolConnectionProxy, migrations: list[Migration] | None = None
) -> list[int]:
    """Apply the migrations not applied yet; returns their versions (empty when up to date).

    Args:
        conn: a connection (or a pool's connection) that is not inside a transaction.
        migrations: what to apply; None means :func:`load_migrations`.

    Raises:
        MigrationError: an applied migration's checksum differs from its file.
        asyncpg.PostgresError: a migration failed (nothing of this call is kept).
    """
    todo = load_migrations() if migrations is None else migrations
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        for mig in todo:
            if mig.version in done:
                if done[mig.version] != mig.checksum:
                    raise MigrationError(
                        f"migration {mig.version:04d}_{mig.name} changed after it was applied"
                    )
                continue
            await conn.execute(mig.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                mig.version,
                mig.name,
                mig.checksum,
            )
            applied.append(mig.version)
    return applied
