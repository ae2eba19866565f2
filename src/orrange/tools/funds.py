"""``orrange faucet USER ASSET AMOUNT`` and ``orrange audit``: test money in, the books checked.

``orrange faucet`` (development only: refuses unless ``ORRANGE_ENV=dev``) makes a real vault
deposit on the development chain for ``USER``: for an ERC-20 asset the chain's first
node-held account mints ``AMOUNT`` of the test token to itself, approves the vault and calls
``deposit_token``; for ETH it calls ``deposit`` with the value from that account. It prints
the deposit's transaction hash; the vault watcher credits it once it is confirmed.

``orrange audit`` reads PostgreSQL (:func:`orrange.store.vault.audit_figures`) and the chain
and checks, per asset (amounts in base units):

* ``ledger``: ``users + fees + p2p + loss + other = -(vault + faucet)`` (the balances of all
  accounts sum to zero; users' ``available + held``, ``@fees``, every ``@p2p:*``, ``@loss``
  and other ``@`` accounts against the outside world);
* ``chain``: ``-vault = confirmed deposits - confirmed withdrawals`` (``deposits``,
  ``withdrawals``);
* ``reserves``: the vault's balance of the asset's token on chain >= ``users + fees + p2p``,
  what the ledger owes (skipped, and said so, without ``--chain-url`` and ``--vault-address``).

It prints one row of figures per asset and one line per failed check naming the asset and
the check; exit status 0 when every check holds, 1 on any difference, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from orrange.cli import CommandTree

if TYPE_CHECKING:
    from orrange.ledger.assets import AssetSpec
    from orrange.store.vault import AssetFigures

__all__ = ["register"]


def _assets(path: str | None) -> dict[str, AssetSpec]:
    from orrange.ledger.assets import load_assets
    from orrange.settings import config_file

    return load_assets(Path(path or config_file("assets.toml")).read_text())


def _chain_defaults() -> tuple[str | None, str | None]:
    from orrange.infra.run import dev_chain_env

    env = {**dev_chain_env(os.environ), **os.environ}
    return env.get("ORRANGE_CHAIN_URL") or None, env.get("ORRANGE_VAULT_ADDRESS") or None


def _faucet(args: argparse.Namespace) -> int:
    from orrange.engine.vault_watcher import USER_ID, token_address
    from orrange.evm.chain import ChainError, Token, connect, send_dev
    from orrange.evm.vault import Vault
    from orrange.ledger.assets import from_decimal
    from orrange.settings import SettingsError
    from orrange.settlement.events import ZERO_ADDRESS

    if os.environ.get("ORRANGE_ENV", "").lower() != "dev":
        print("orrange faucet: development only (set ORRANGE_ENV=dev)", file=sys.stderr)
        return 2
    if not USER_ID.fullmatch(args.user):
        print(f"orrange faucet: {args.user!r} is not a user id", file=sys.stderr)
        return 2
    try:
        assets = _assets(args.assets)
        spec = assets.get(args.asset)
        if spec is None:
            raise ValueError(f"unknown asset {args.asset!r} (assets: {', '.join(assets)})")
        amount = from_decimal(spec, args.amount)
        if amount <= 0:
            raise ValueError("AMOUNT must be positive")
    except (OSError, ValueError, SettingsError) as exc:
        print(f"orrange faucet: {exc}", file=sys.stderr)
        return 2
    chain_url, vault_address = _chain_defaults()
    chain_url, vault_address = args.chain_url or chain_url, args.vault_address or vault_address
    if not chain_url or not vault_address:
        print("orrange faucet: no chain (--chain-url, --vault-address)", file=sys.stderr)
        return 2
    try:
        w3 = connect(chain_url)
        vault = Vault(w3, vault_address)
        funder = str(w3.eth.accounts[0])
        token = token_address(spec)
        if token == ZERO_ADDRESS:
            receipt = send_dev(w3, vault.deposit_tx(funder, args.user, amount))
        else:
            erc20 = Token(w3, token)
            send_dev(w3, erc20.mint_tx(funder, funder, amount))
            send_dev(w3, erc20.approve_tx(funder, vault.address, amount))
            receipt = send_dev(w3, vault.deposit_token_tx(funder, token, amount, args.user))
    except (ChainError, OSError, ValueError) as exc:
        print(f"orrange faucet: {exc}", file=sys.stderr)
        return 1
    print("0x" + bytes(receipt["transactionHash"]).hex())
    return 0


_COLUMNS = ("asset", "users", "fees", "p2p", "loss", "vault", "faucet", "deposits", "withdrawn")


async def _figures(database_url: str) -> dict[str, AssetFigures]:
    import asyncpg

    from orrange.store import vault as db

    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await db.audit_figures(conn)
    finally:
        await conn.close()


def _audit(args: argparse.Namespace) -> int:
    from orrange.engine.vault_watcher import token_address
    from orrange.evm.chain import ChainError, connect
    from orrange.evm.vault import Vault
    from orrange.settings import SettingsError, load_settings
    from orrange.store.vault import AssetFigures

    try:
        assets = _assets(args.assets)
        database_url = args.database_url or load_settings(None).effective_database_url
    except (OSError, ValueError, SettingsError) as exc:
        print(f"orrange audit: {exc}", file=sys.stderr)
        return 2
    chain_url, vault_address = _chain_defaults()
    chain_url, vault_address = args.chain_url or chain_url, args.vault_address or vault_address
    figures = asyncio.run(_figures(database_url))
    codes = sorted(set(figures) | set(assets))
    failures: list[str] = []
    reserves: dict[str, int] = {}
    if chain_url and vault_address:
        try:
            vault = Vault(connect(chain_url), vault_address)
            for code in codes:
                if code in assets:
                    reserves[code] = vault.reserves(token_address(assets[code]))
        except (ChainError, OSError, ValueError) as exc:
            print(f"orrange audit: chain: {exc}", file=sys.stderr)
            return 1
    rows = [(*_COLUMNS, "reserves")]
    for code in codes:
        f = figures.get(code) or AssetFigures()
        inside = f.users + f.fees + f.p2p + f.loss + f.other
        owed = f.users + f.fees + f.p2p
        if inside != -(f.vault + f.faucet):
            failures.append(f"{code} ledger: accounts {inside} != outside {-(f.vault + f.faucet)}")
        if -f.vault != f.deposits - f.withdrawals:
            failures.append(
                f"{code} chain: -@vault {-f.vault} != deposits - withdrawals "
                f"{f.deposits - f.withdrawals}"
            )
        if code not in assets:
            failures.append(f"{code} assets: not a vault asset")
        reserve = reserves.get(code)
        if reserve is not None and reserve < owed:
            failures.append(f"{code} reserves: vault holds {reserve} < ledger owes {owed}")
        rows.append(
            (
                code,
                str(f.users),
                str(f.fees),
                str(f.p2p),
                str(f.loss),
                str(f.vault),
                str(f.faucet),
                str(f.deposits),
                str(f.withdrawals),
                "-" if reserve is None else str(reserve),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    if not reserves:
        print("reserves: not checked (no --chain-url / --vault-address)")
    for line in failures:
        print(f"DIFF {line}")
    print("audit: " + ("FAILED" if failures else "ok"))
    return 1 if failures else 0


def register(cli: CommandTree) -> None:
    """Add ``orrange faucet`` and ``orrange audit`` to the console command."""

    def chain_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--chain-url", default=None, help="JSON-RPC URL (default: the dev chain)")
        p.add_argument("--vault-address", default=None, help="vault (default: the dev chain's)")
        p.add_argument("--assets", default=None, help="assets TOML (default: assets.toml)")

    f = cli.command(
        "faucet",
        _faucet,
        help="development only: deposit AMOUNT of ASSET for USER into the dev chain's vault",
    )
    f.add_argument("user", metavar="USER")
    f.add_argument("asset", metavar="ASSET")
    f.add_argument("amount", metavar="AMOUNT", help="decimal units of ASSET (e.g. 1000)")
    chain_options(f)
    a = cli.command(
        "audit",
        _audit,
        help="check the ledger in PostgreSQL against deposits, withdrawals and the vault",
    )
    a.add_argument("--database-url", default=None, help="PostgreSQL URL (default: settings)")
    chain_options(a)
