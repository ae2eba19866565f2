"""Process helpers shared by the embedded servers: free ports, readiness polling, stopping."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = [
    "InfraError",
    "ServerProcess",
    "free_port",
    "stop_process",
    "tcp_open",
    "wait_until",
]


class InfraError(RuntimeError):
    """An embedded server failed to start, become ready or stop."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free when asked (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    check: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    interval_s: float = 0.05,
) -> None:
    """Poll ``check`` until it returns True.

    Raises:
        InfraError: after ``timeout_s`` seconds, or at once if ``proc`` exits meanwhile.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise InfraError(f"{what}: process exited with code {proc.returncode}")
        if check():
            return
        if time.monotonic() > deadline:
            raise InfraError(f"{what}: not ready after {timeout_s:.0f} s")
        time.sleep(interval_s)


def tcp_open(host: str, port: int) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def stop_process(proc: subprocess.Popen[bytes], sig: int, timeout_s: float) -> int:
    """Send ``sig`` to ``proc``, wait up to ``timeout_s`` s, then kill it; returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class ServerProcess(ABC):
    """A supervised child server process: log file handling, stop, wait, context manager.

    Subclasses set :attr:`name` and :attr:`stop_signal` and call :meth:`_spawn` from their
    ``start``.
    """

    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(self, log_file: str | Path | None) -> None:
        self.log_file = Path(log_file) if log_file is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the running server, or None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def exit_code(self) -> int | None:
        """The exit code if the started server has exited by itself, else None."""
        return self._proc.poll() if self._proc is not None else None

    def _spawn(self, cmd: list[str], user: str | None = None) -> subprocess.Popen[bytes]:
        out: IO[bytes] | None = None
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log = out = self.log_file.open("ab")
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=out, user=user)
        return self._proc

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """Send :attr:`stop_signal`, kill after ``timeout_s`` s; returns the exit code, or None
        if the server was not started."""
        code = None
        if self._proc is not None:
            code = stop_process(self._proc, self.stop_signal, timeout_s)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def wait(self) -> int:
        """Block until the server exits; returns its exit code.

        Raises:
            InfraError: the server was not started.
        """
        if self._proc is None:
            raise InfraError(f"{self.name} not started")
        return self._proc.wait()

    @abstractmethod
    def start(self, timeout_s: float = 60.0) -> Self:
        """Start the server and wait until it is ready; returns self.

        Raises:
            InfraError: the server exited or was not ready within ``timeout_s`` seconds.
        """

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
