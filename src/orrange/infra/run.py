"""Foreground runners of the embedded servers, for Procfile lines (``orrange infra nats``).

Each runner starts its server unless an external URL is configured, then blocks until SIGTERM
or SIGINT (or the server exits) and stops it cleanly. With an external URL it idles until
signalled instead of exiting, because a Procfile runner (honcho) stops every process when one
exits.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Mapping
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from orrange.infra._proc import InfraError, ServerProcess, tcp_open, wait_until
from orrange.infra.nats import NatsServer
from orrange.infra.postgres import EmbeddedPostgres
from orrange.logging import get_logger
from orrange.settings import Settings

__all__ = [
    "DEV_CHAIN_PORT",
    "DEV_ESCROW_ADDRESS",
    "dev_chain_env",
    "run_chain",
    "run_nats",
    "run_postgres",
    "wait_for_url",
]

#: JSON-RPC port of the development chain (``ORRANGE_CHAIN_PORT`` overrides).
DEV_CHAIN_PORT = 8545
#: Where the development chain's escrow lives: the first contract anvil's first development
#: account (0xf39F...2266) creates, CREATE(sender, nonce 0), so every fresh dev chain agrees.
DEV_ESCROW_ADDRESS = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def dev_chain_env(env: Mapping[str, str]) -> dict[str, str]:
    """The ``ORRANGE_CHAIN_URL`` / ``ORRANGE_ESCROW_ADDRESS`` of the development chain that
    ``orrange infra chain`` runs, when ``ORRANGE_ENV=dev`` and no chain URL is configured;
    otherwise empty (an external chain, or no chain outside development)."""
    if env.get("ORRANGE_ENV", "").lower() != "dev" or env.get("ORRANGE_CHAIN_URL"):
        return {}
    port = int(env.get("ORRANGE_CHAIN_PORT", DEV_CHAIN_PORT))
    return {
        "ORRANGE_CHAIN_URL": f"http://127.0.0.1:{port}",
        "ORRANGE_ESCROW_ADDRESS": DEV_ESCROW_ADDRESS,
    }


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


def run_chain(settings: Settings, env: Mapping[str, str] | None = None) -> int:
    """``orrange infra chain``: the development chain for P2P settlement.

    With ``ORRANGE_ENV=dev`` and no ``ORRANGE_CHAIN_URL``: runs anvil (installed from the npm
    registry on first use) on ``ORRANGE_CHAIN_PORT`` (8545) with one block a second, its state
    kept in ``<data_dir>/chain/state.json`` across restarts, and deploys the escrow once, at
    :data:`DEV_ESCROW_ADDRESS` (mediator: development account 1, fee recipient: account 2, fee
    ``ORRANGE_ESCROW_FEE_BPS``, default 100). Otherwise it idles until signalled: the chain is
    external, or there is none outside development. Returns 0 after a clean stop, 1 when
    anvil or the deployment fails.
    """
    env = os.environ if env is None else env
    log = get_logger("orrange.infra", component="chain")
    stop = _install_stop_signals()
    dev = dev_chain_env(env)
    if not dev:
        if env.get("ORRANGE_CHAIN_URL"):
            log.info("external chain configured; no local chain", url=env["ORRANGE_CHAIN_URL"])
        else:
            log.info("no chain: set ORRANGE_CHAIN_URL, or ORRANGE_ENV=dev for a local anvil")
        stop.wait()
        return 0
    from web3 import Web3

    from orrange.evm.chain import Escrow, connect
    from orrange.infra.anvil import AnvilError, AnvilNode, ensure_anvil

    chain_dir = settings.data_path / "chain"
    chain_dir.mkdir(parents=True, exist_ok=True)
    port = int(dev["ORRANGE_CHAIN_URL"].rsplit(":", 1)[1])
    try:
        node = AnvilNode(
            ensure_anvil(),
            port=port,
            block_time_s=1,
            state_file=chain_dir / "state.json",
            log_file=chain_dir / "anvil.log",
        )
        node.start(timeout_s=60)
    except (AnvilError, InfraError, OSError) as exc:
        log.error("anvil failed to start", error=str(exc))
        return 1
    try:
        w3 = connect(node.url)
        if len(w3.eth.get_code(Web3.to_checksum_address(DEV_ESCROW_ADDRESS))) == 0:
            accounts: list[str] = list(w3.eth.accounts)
            fee_bps = int(env.get("ORRANGE_ESCROW_FEE_BPS", "100"))
            escrow = Escrow.deploy(
                w3, accounts[0], mediator=accounts[1], fee_recipient=accounts[2], fee_bps=fee_bps
            )
            if escrow.address.lower() != DEV_ESCROW_ADDRESS.lower():
                raise RuntimeError(
                    f"the escrow landed at {escrow.address}, not {DEV_ESCROW_ADDRESS}: the dev "
                    f"chain in {chain_dir} has other transactions; delete it to start afresh"
                )
            log.info("escrow deployed", address=escrow.address, fee_bps=fee_bps)
    except Exception as exc:  # any deployment failure stops the chain line with a reason
        log.error("escrow deployment failed", error=str(exc))
        node.stop()
        return 1
    log.info("dev chain ready", url=node.url, escrow=DEV_ESCROW_ADDRESS)
    return _serve(node, stop, log)
