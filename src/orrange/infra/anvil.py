"""A local EVM node for development and tests: foundry's ``anvil``, from the npm registry.

The binary ships inside the npm package ``@foundry-rs/anvil-<os>-<arch>`` (no download at
install or run time, so it works offline once installed)::

    npm install --prefix var/tools --no-audit --no-fund @foundry-rs/anvil-linux-amd64@1.7.1

which puts it at ``var/tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil``.
:func:`ensure_anvil` finds it (``$ORRANGE_ANVIL_BIN``, then ``anvil`` on ``PATH``, then the
tools directory) or runs that install; ``python -m orrange.infra.anvil install`` does
the same from a shell and prints the path.

:class:`AnvilNode` runs it on a free port with the well-known development accounts
(unlocked, 10,000 ETH each), instant mining, and JSON-RPC at :attr:`AnvilNode.url`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orrange.infra._proc import InfraError, ServerProcess, free_port, wait_until

__all__ = [
    "ANVIL_VERSION",
    "AnvilError",
    "AnvilNode",
    "anvil_package",
    "default_tools_dir",
    "ensure_anvil",
    "find_anvil",
    "install_anvil",
    "main",
]

ANVIL_VERSION = "1.7.1"
TOOLS_DIR_ENV = "ORRANGE_TOOLS_DIR"
ANVIL_BIN_ENV = "ORRANGE_ANVIL_BIN"

_PLATFORMS = {
    ("linux", "x86_64"): "linux-amd64",
    ("linux", "amd64"): "linux-amd64",
    ("linux", "aarch64"): "linux-arm64",
    ("linux", "arm64"): "linux-arm64",
    ("darwin", "x86_64"): "darwin-amd64",
    ("darwin", "arm64"): "darwin-arm64",
}


class AnvilError(InfraError):
    """anvil could not be found, installed, started or reached."""


def anvil_package() -> str:
    """The npm package holding this platform's binary, e.g.
    ``@foundry-rs/anvil-linux-amd64``. Raises :class:`AnvilError` on an unsupported one."""
    key = (sys.platform, platform.machine().lower())
    suffix = _PLATFORMS.get(key)
    if suffix is None:
        raise AnvilError(f"no anvil npm package for {key[0]}/{key[1]}")
    return f"@foundry-rs/anvil-{suffix}"


def default_tools_dir() -> Path:
    """``$ORRANGE_TOOLS_DIR``, else ``var/tools`` under the working directory."""
    return Path(os.environ.get(TOOLS_DIR_ENV, "var/tools"))


def _installed_path(tools_dir: Path) -> Path:
    return tools_dir / "node_modules" / anvil_package() / "bin" / "anvil"


def find_anvil(tools_dir: str | Path | None = None) -> Path | None:
    """The anvil binary to use, or None: ``$ORRANGE_ANVIL_BIN``, ``anvil`` on ``PATH``, or
    the npm install under ``tools_dir`` (:func:`default_tools_dir` when None)."""
    explicit = os.environ.get(ANVIL_BIN_ENV)
    if explicit:
        return Path(explicit)
    on_path = shutil.which("anvil")
    if on_path:
        return Path(on_path)
    candidate = _installed_path(Path(tools_dir) if tools_dir is not None else default_tools_dir())
    return candidate if candidate.is_file() else None


def install_anvil(tools_dir: str | Path | None = None, timeout_s: float = 600.0) -> Path:
    """``npm install`` this platform's anvil package (version :data:`ANVIL_VERSION`) under
    ``tools_dir``; returns the binary's path. Raises :class:`AnvilError` when npm is missing
    or fails."""
    target = Path(tools_dir) if tools_dir is not None else default_tools_dir()
    npm = shutil.which("npm")
    if npm is None:
        raise AnvilError("npm not found: install Node.js/npm to fetch anvil")
    target.mkdir(parents=True, exist_ok=True)
    cmd = [
        npm,
        "install",
        "--prefix",
        str(target),
        "--no-audit",
        "--no-fund",
        f"{anvil_package()}@{ANVIL_VERSION}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    binary = _installed_path(target)
    if proc.returncode != 0 or not binary.is_file():
        raise AnvilError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return binary


def ensure_anvil(tools_dir: str | Path | None = None) -> Path:
    """:func:`find_anvil`, else :func:`install_anvil`; returns the binary's path."""
    return find_anvil(tools_dir) or install_anvil(tools_dir)


class AnvilNode(ServerProcess):
    """One anvil process serving JSON-RPC on ``host:port`` (0 picks a free port).

    ``chain_id`` defaults to anvil's 31337; ``block_time_s`` None mines a block per
    transaction (else one block every that many seconds); ``accounts`` development
    accounts are unlocked with ``balance_eth`` each; ``state_file`` (optional) keeps the chain
    across restarts (loaded at start, written at a clean stop). Use as a context manager or
    call :meth:`start` / :meth:`stop`.
    """

    name = "anvil"

    def __init__(
        self,
        binary: str | Path | None = None,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        chain_id: int = 31337,
        block_time_s: int | None = None,
        accounts: int = 10,
        balance_eth: int = 10_000,
        log_file: str | Path | None = None,
        state_file: str | Path | None = None,
    ) -> None:
        super().__init__(log_file)
        self.state_file = Path(state_file) if state_file is not None else None
        self.binary = Path(binary) if binary is not None else None
        self.host = host
        self.port = port or free_port(host)
        self.chain_id = chain_id
        self.block_time_s = block_time_s
        self.accounts = accounts
        self.balance_eth = balance_eth

    @property
    def url(self) -> str:
        """JSON-RPC endpoint, ``http://HOST:PORT``."""
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        """The command line used to start the node."""
        binary = self.binary or ensure_anvil()
        cmd = [
            str(binary),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--chain-id",
            str(self.chain_id),
            "--accounts",
            str(self.accounts),
            "--balance",
            str(self.balance_eth),
        ]
        if self.block_time_s is not None:
            cmd += ["--block-time", str(self.block_time_s)]
        if self.state_file is not None:
            # loads the chain from the file when it exists and writes it back on exit
            cmd += ["--state", str(self.state_file)]
        if self.log_file is None:
            cmd.append("--silent")
        return cmd

    def rpc(self, method: str, params: list[Any] | None = None, timeout_s: float = 10.0) -> Any:
        """One raw JSON-RPC call (e.g. ``evm_increaseTime``, ``evm_snapshot``); returns its
        ``result``. Raises :class:`AnvilError` for a JSON-RPC error or no answer."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
        req = urllib.request.Request(
            self.url, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                answer = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise AnvilError(f"{method}: {exc}") from exc
        if "error" in answer:
            raise AnvilError(f"{method}: {answer['error']}")
        return answer.get("result")

    def _ready(self) -> bool:
        try:
            return int(self.rpc("eth_chainId", timeout_s=1.0), 16) == self.chain_id
        except AnvilError:
            return False

    def start(self, timeout_s: float = 30.0) -> AnvilNode:
        """Start anvil and wait until it answers ``eth_chainId``; returns self. Raises
        :class:`AnvilError` when it cannot be found or installed, exits, or is not ready
        within ``timeout_s`` seconds."""
        if self.running:
            return self
        proc = self._spawn(self.command())
        try:
            wait_until(self._ready, timeout_s=timeout_s, what="anvil", proc=proc)
        except InfraError as exc:
            self.stop()
            raise AnvilError(str(exc)) from exc
        return self


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m orrange.infra.anvil install|path [--tools-dir DIR]``: install (if
    needed) and print the binary's path, or only print it (exit 1 when absent)."""
    parser = argparse.ArgumentParser(prog="python -m orrange.infra.anvil")
    parser.add_argument("action", choices=["install", "path"])
    parser.add_argument("--tools-dir", default=None)
    args = parser.parse_args(argv)
    if args.action == "install":
        print(ensure_anvil(args.tools_dir))
        return 0
    found = find_anvil(args.tools_dir)
    if found is None:
        print("anvil not found", file=sys.stderr)
        return 1
    print(found)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
