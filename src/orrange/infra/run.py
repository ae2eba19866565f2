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
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from orrange.infra._proc import InfraError, ServerProcess, tcp_open, wait_until
from orrange.infra.nats import NatsServer
from orrange.infra.postgres import EmbeddedPostgres
from orrange.logging import get_logger
from orrange.settings import Settings

if TYPE_CHECKING:  # web3 loads only when the dev chain runs
    from web3 import Web3

__all__ = [
    "DEV_CHAIN_PORT",
    "DEV_ESCROW_ADDRESS",
    "DEV_TOKEN_ADDRESSES",
    "DEV_VAULT_ADDRESS",
    "DEV_VAULT_SIGNER_ADDRESS",
    "DEV_VAULT_SIGNER_KEY",
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
#: The development vault: CREATE(account 0, nonce 1), deployed right after the escrow; its
#: owner is account 0, its signer :data:`DEV_VAULT_SIGNER_ADDRESS`, its signer delay 2 days.
DEV_VAULT_ADDRESS = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
#: The development ERC-20s (``TestToken``, 18 decimals, minted by account 0): CREATE(account
#: 0, nonce 2) and (nonce 3), deployed after the vault.
DEV_TOKEN_ADDRESSES: dict[str, str] = {
    "USDT": "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
    "BTC": "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9",
}
#: The development vault's signer: anvil's well-known development account 3 and its private
#: key (public knowledge: development chains only).
DEV_VAULT_SIGNER_ADDRESS = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
DEV_VAULT_SIGNER_KEY = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"
_DEV_TOKEN_NAMES = {"USDT": "Tether USD (dev)", "BTC": "Bitcoin (dev)"}


def dev_chain_env(env: Mapping[str, str]) -> dict[str, str]:
    """The ``ORRANGE_CHAIN_URL`` / ``ORRANGE_ESCROW_ADDRESS`` / ``ORRANGE_VAULT_ADDRESS`` of
    the development chain that ``orrange infra chain`` runs, when ``ORRANGE_ENV=dev`` and no
    chain URL is configured; otherwise empty (an external chain, or no chain outside
    development)."""
    if env.get("ORRANGE_ENV", "").lower() != "dev" or env.get("ORRANGE_CHAIN_URL"):
        return {}
    port = int(env.get("ORRANGE_CHAIN_PORT", DEV_CHAIN_PORT))
    return {
        "ORRANGE_CHAIN_URL": f"http://127.0.0.1:{port}",
        "ORRANGE_ESCROW_ADDRESS": DEV_ESCROW_ADDRESS,
        "ORRANGE_VAULT_ADDRESS": DEV_VAULT_ADDRESS,
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


def _deploy_dev_contracts(w3: Web3, env: Mapping[str, str], chain_dir: Path, log: Any) -> None:
    """Deploy every development contract that has no code at its fixed address yet, in
    nonce order from account 0; raises ``RuntimeError`` when one lands elsewhere."""
    from web3 import Web3

    from orrange.evm.chain import Escrow, Token
    from orrange.evm.vault import SIGNER_DELAY_S, Vault

    accounts: list[str] = list(w3.eth.accounts)
    deployer = accounts[0]
    fee_bps = int(env.get("ORRANGE_ESCROW_FEE_BPS", "100"))

    def escrow() -> str:
        return Escrow.deploy(
            w3, deployer, mediator=accounts[1], fee_recipient=accounts[2], fee_bps=fee_bps
        ).address

    def vault() -> str:
        return Vault.deploy(
            w3, deployer, signer=DEV_VAULT_SIGNER_ADDRESS, signer_delay_s=SIGNER_DELAY_S
        ).address

    def token(symbol: str) -> Callable[[], str]:
        name = _DEV_TOKEN_NAMES[symbol]
        return lambda: Token.deploy(w3, deployer, name=name, symbol=symbol, decimals=18).address

    plan: list[tuple[str, str, Callable[[], str], dict[str, Any]]] = [
        ("escrow", DEV_ESCROW_ADDRESS, escrow, {"fee_bps": fee_bps}),
        ("vault", DEV_VAULT_ADDRESS, vault, {"signer": DEV_VAULT_SIGNER_ADDRESS}),
    ]
    plan += [
        ("token", address, token(symbol), {"symbol": symbol})
        for symbol, address in DEV_TOKEN_ADDRESSES.items()
    ]
    for what, expected, deploy, details in plan:
        if len(w3.eth.get_code(Web3.to_checksum_address(expected))) > 0:
            continue
        address = deploy()
        if address.lower() != expected.lower():
            raise RuntimeError(
                f"the {what} landed at {address}, not {expected}: the dev chain in "
                f"{chain_dir} has other transactions; delete it to start afresh"
            )
        log.info(f"{what} deployed", address=address, **details)


def run_chain(settings: Settings, env: Mapping[str, str] | None = None) -> int:
    """``orrange infra chain``: the development chain for P2P settlement.

    With ``ORRANGE_ENV=dev`` and no ``ORRANGE_CHAIN_URL``: runs anvil (installed from the npm
    registry on first use) on ``ORRANGE_CHAIN_PORT`` (8545) with one block a second, its state
    kept in ``<data_dir>/chain/state.json`` across restarts, and deploys from development
    account 0, each once and in this order (so at fixed addresses): the escrow at
    :data:`DEV_ESCROW_ADDRESS` (mediator: development account 1, fee recipient: account 2, fee
    ``ORRANGE_ESCROW_FEE_BPS``, default 100), the vault at :data:`DEV_VAULT_ADDRESS` (signer
    :data:`DEV_VAULT_SIGNER_ADDRESS`, owner account 0, signer delay 2 days), then the
    18-decimal test tokens of :data:`DEV_TOKEN_ADDRESSES` (``USDT``, ``BTC``; account 0
    mints). Otherwise it idles until signalled: the chain is external, or there is none
    outside development. Returns 0 after a clean stop, 1 when anvil or a deployment fails
    (a contract landing elsewhere than its address: the chain has other transactions).
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
    from orrange.evm.chain import connect
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
        _deploy_dev_contracts(connect(node.url), env, chain_dir, log)
    except Exception as exc:  # any deployment failure stops the chain line with a reason
        log.error("dev contract deployment failed", error=str(exc))
        node.stop()
        return 1
    log.info("dev chain ready", url=node.url, escrow=DEV_ESCROW_ADDRESS, vault=DEV_VAULT_ADDRESS)
    return _serve(node, stop, log)
