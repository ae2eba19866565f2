"""``orrange up``: every process of the ``Procfile``, started and stopped in order.

The ``Procfile`` (``name: command`` lines, parsed by honcho; the repository's ``Procfile``,
which ``config/Procfile`` links to, found by :func:`orrange.settings.config_file`) lists the
embedded servers (``orrange infra nats``, ``orrange infra postgres``) and the engine's processes
(``orrange actor NAME``).
:class:`Supervisor`:

1. starts the infrastructure lines (a command containing ``orrange infra``), skipping the nats
   line when ``ORRANGE_NATS_URL`` is set and the postgres line when ``ORRANGE_DATABASE_URL`` is
   set, and waits until NATS and PostgreSQL accept connections;
2. starts every other line;
3. multiplexes their output with honcho's printer (``name | line``);
4. on SIGINT/SIGTERM, or when any process exits, stops the engine processes first (SIGTERM, so
   actors finish their batch and snapshot), then the infrastructure, and SIGKILLs whatever is
   still running after ``stop_timeout_s`` per stage.

Children run in their own sessions, so a Ctrl-C in the terminal reaches only ``orrange up``,
which then stops them in that order. Every child inherits the environment plus
``ORRANGE_DATA_DIR`` (absolute), so all of them share the data directory and a second
``orrange up`` resumes the same JetStream store and database.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any
from urllib.parse import urlsplit

import asyncpg
from honcho.colour import get_colours
from honcho.environ import parse_procfile
from honcho.printer import Message, Printer

from orrange.infra._proc import tcp_open
from orrange.infra.run import DEV_TOKEN_ADDRESSES, dev_chain_env
from orrange.settings import Settings, config_file

__all__ = ["ProcLine", "Supervisor", "UpError", "plan", "read_procfile"]

_INFRA_MARK = "orrange infra"


class UpError(RuntimeError):
    """The Procfile is missing or malformed, or names an unknown process."""


@dataclass(frozen=True)
class ProcLine:
    """One Procfile line.

    Attributes:
        name: the process name (left of the colon).
        command: the shell command.
        infra: True for the embedded servers (started first, stopped last).
    """

    name: str
    command: str
    infra: bool


_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """In a child before exec: ask Linux to send SIGTERM when ``orrange up`` dies, so even a
    ``kill -9`` of the supervisor leaves no orphaned server or actor (prctl(2),
    ``PR_SET_PDEATHSIG``; a no-op elsewhere)."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _escrow_deployed(rpc_url: str) -> bool:
    """True when the node at ``rpc_url`` holds contract code at the address of the last
    contract the dev chain deploys (the BTC test token, after the escrow, the vault and
    USDT), so the whole development deployment is there."""
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_getCode",
            "params": [DEV_TOKEN_ADDRESSES["BTC"], "latest"],
        }
    ).encode()
    req = urllib.request.Request(rpc_url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=1) as resp:
            code = json.loads(resp.read()).get("result") or "0x"
    except (OSError, ValueError):
        return False
    return len(code) > 2


def read_procfile(path: str | Path) -> list[ProcLine]:
    """The lines of a Procfile, in file order.

    Raises:
        UpError: the file is unreadable or has no process line.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UpError(f"cannot read Procfile {path}: {exc}") from exc
    procs = parse_procfile(text).processes
    if not procs:
        raise UpError(f"no process in {path}")
    return [ProcLine(name, cmd, _INFRA_MARK in cmd) for name, cmd in procs.items()]


def plan(
    lines: Sequence[ProcLine], settings: Settings, only: Iterable[str] | None = None
) -> list[ProcLine]:
    """The lines to run: ``only`` those named (all when None), without the embedded server
    lines an external URL replaces (``infra nats`` / ``infra postgres``).

    Raises:
        UpError: ``only`` names a process the Procfile does not have.
    """
    selected = list(lines)
    if only is not None:
        wanted = list(only)
        known = {ln.name for ln in lines}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise UpError(f"not in the Procfile: {', '.join(unknown)}")
        selected = [ln for ln in lines if ln.name in wanted]
    out = []
    for ln in selected:
        if ln.infra and "infra nats" in ln.command and not settings.embedded_nats:
            continue
        if ln.infra and "infra postgres" in ln.command and not settings.embedded_postgres:
            continue
        out.append(ln)
    return out


def _host_port(url: str, default: int) -> tuple[str, int]:
    parts = urlsplit(url.split(",")[0])
    return parts.hostname or "127.0.0.1", parts.port or default


@dataclass
class _Child:
    line: ProcLine
    proc: subprocess.Popen[bytes]
    colour: Any
    reader: threading.Thread


class Supervisor:
    """Runs the planned Procfile lines (see the module docstring).

    Args:
        lines: what to run (see :func:`plan`).
        settings: process settings (data directory, NATS and PostgreSQL addresses).
        cwd: working directory of the children.
        out: where the multiplexed output goes (default stdout).
        ready_timeout_s: how long to wait for NATS/PostgreSQL to accept connections (s).
        stop_timeout_s: how long each stop stage waits before SIGKILL (s).
    """

    def __init__(
        self,
        lines: Sequence[ProcLine],
        settings: Settings,
        *,
        cwd: str | Path | None = None,
        out: IO[str] | None = None,
        ready_timeout_s: float = 120.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self.lines = list(lines)
        self.settings = settings
        self.cwd = Path(cwd) if cwd is not None else Path.cwd()
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._printer = Printer(out or sys.stdout)
        self._printer.width = max([len(ln.name) for ln in self.lines] + [len("up")])
        self._print_lock = threading.Lock()
        self._colours = get_colours()
        self._children: list[_Child] = []
        self._stop = threading.Event()
        self._reason = ""

    # -- output -------------------------------------------------------------------------------

    def _emit(self, name: str, text: str, colour: Any = None) -> None:
        msg = Message("line", text, datetime.datetime.now(), name, colour)
        with self._print_lock:
            self._printer.write(msg)

    def say(self, text: str) -> None:
        """Print a line of the supervisor itself (name ``up``)."""
        self._emit("up", text + "\n")

    def _pump(self, name: str, stream: IO[bytes], colour: Any) -> None:
        for raw in iter(stream.readline, b""):
            self._emit(name, raw.decode("utf-8", "replace"), colour)
        stream.close()

    # -- processes ----------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["ORRANGE_DATA_DIR"] = str(self.settings.data_path)
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _spawn(self, line: ProcLine, env: Mapping[str, str]) -> None:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", "exec " + line.command],
            cwd=self.cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        colour = next(self._colours)
        assert proc.stdout is not None
        reader = threading.Thread(
            target=self._pump, args=(line.name, proc.stdout, colour), daemon=True
        )
        reader.start()
        self._children.append(_Child(line, proc, colour, reader))
        self.say(f"{line.name} started (pid={proc.pid}): {line.command}")

    def _exited(self) -> _Child | None:
        for child in self._children:
            if child.proc.poll() is not None:
                return child
        return None

    @staticmethod
    def _reachable(target: str) -> bool:
        """``host:port`` accepts TCP, the ``postgresql://`` database accepts a session, or
        (``escrow@<rpc url>``) the development chain answers with the escrow's code."""
        if target.startswith("escrow@"):
            return _escrow_deployed(target.removeprefix("escrow@"))
        if not target.startswith("postgres"):
            host, _, port = target.rpartition(":")
            return tcp_open(host, int(port))
        if not tcp_open(*_host_port(target, 5432)):
            return False

        async def probe() -> bool:
            try:
                conn = await asyncpg.connect(target, timeout=2)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                return False
            await conn.close()
            return True

        return asyncio.run(probe())

    def _wait_ready(self) -> bool:
        """Wait until NATS accepts TCP and the embedded PostgreSQL's database accepts sessions;
        False on a stop request, a child's death or ``ready_timeout_s``."""
        nats_target = _host_port(self.settings.effective_nats_url, 4222)
        pg_url: str | None = None
        if any("infra postgres" in c.line.command for c in self._children):
            pg_url = self.settings.effective_database_url
        deadline = time.monotonic() + self.ready_timeout_s
        pending = [nats_target[0] + ":" + str(nats_target[1])]
        if pg_url is not None:
            pending.append(pg_url)
        dev_chain = dev_chain_env(os.environ)
        if dev_chain and any("infra chain" in c.line.command for c in self._children):
            pending.append("escrow@" + dev_chain["ORRANGE_CHAIN_URL"])
        while pending:
            pending = [t for t in pending if not self._reachable(t)]
            if not pending:
                break
            if self._stop.is_set():
                return False
            dead = self._exited()
            if dead is not None:
                self._reason = f"{dead.line.name} exited with {dead.proc.returncode}"
                return False
            if time.monotonic() > deadline:
                self._reason = "not reachable: " + ", ".join(pending)
                return False
            time.sleep(0.1)
        return True

    def _stop_group(self, children: Sequence[_Child]) -> None:
        alive = [c for c in children if c.proc.poll() is None]
        for c in alive:
            self.say(f"stopping {c.line.name} (SIGTERM)")
            c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for c in alive:
            try:
                c.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{c.line.name} still running; SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.proc.pid, signal.SIGKILL)
                c.proc.wait()
        for c in children:
            c.reader.join(timeout=2)
            self.say(f"{c.line.name} stopped (rc={c.proc.returncode})")

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask :meth:`run` to stop everything (thread- and signal-safe)."""
        if not self._stop.is_set():
            self._reason = reason
            self._stop.set()

    def run(self) -> int:
        """Start everything, wait for a stop request or a process exit, stop in order.

        Returns 0 after a requested stop (SIGINT/SIGTERM), 1 when a process exited by itself
        or the infrastructure did not become reachable.
        """
        env = self._env()
        self.settings.data_path.mkdir(parents=True, exist_ok=True)
        infra = [ln for ln in self.lines if ln.infra]
        apps = [ln for ln in self.lines if not ln.infra]
        failed = False
        try:
            for ln in infra:
                self._spawn(ln, env)
            if self._wait_ready():
                self.say("infrastructure ready")
                # the apps reach the development chain of `orrange infra chain`, if it runs
                # (ORRANGE_ENV=dev and no ORRANGE_CHAIN_URL)
                app_env = {**env, **dev_chain_env(env)}
                for ln in apps:
                    self._spawn(ln, app_env)
                while not self._stop.wait(0.1):
                    dead = self._exited()
                    if dead is not None:
                        self._reason = f"{dead.line.name} exited with {dead.proc.returncode}"
                        failed = True
                        break
            else:
                failed = not self._stop.is_set()
        finally:
            self.say(f"shutting down: {self._reason}")
            self._stop_group([c for c in self._children if not c.line.infra])
            self._stop_group([c for c in self._children if c.line.infra])
        return 1 if failed else 0


def run_up(
    settings: Settings,
    *,
    procfile: str | Path | None = None,
    only: Iterable[str] | None = None,
    stop_timeout_s: float = 5.0,
) -> int:
    """``orrange up``: run the Procfile until SIGINT/SIGTERM/SIGHUP; returns the exit code.

    The Procfile is ``procfile``, else ``config_file("Procfile")``; the processes run in the
    working directory (so they find the same configuration files).

    Raises:
        UpError: missing/malformed Procfile or an unknown name in ``only``.
        SettingsError: no ``procfile`` given and no Procfile found.
    """
    path = Path(procfile) if procfile is not None else config_file("Procfile")
    lines = plan(read_procfile(path), settings, only)
    sup = Supervisor(lines, settings, stop_timeout_s=stop_timeout_s)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        sup.request_stop(signal.Signals(signum).name + " received")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    sup.say(f"data directory {settings.data_path}")
    return sup.run()
