"""``orrange faucet`` and ``orrange audit`` on a real anvil node, nats-server and PostgreSQL: a
faucet deposit is a real vault deposit the watcher confirms; the audit passes on consistent
books and names the asset and the check on a tampered balance or missing reserves."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from kit.vault_chain import VaultChain, funds_messages, vault_chain
from kit.wait import wait_for

from orrange.cli import main
from orrange.engine.vault_watcher import VaultOptions, VaultWatcher
from orrange.infra.anvil import AnvilNode, ensure_anvil
from orrange.runtime import ActorConfig
from orrange.wire.funds import DepositConfirmed

pytestmark = pytest.mark.chain

USDT = 10**18


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[VaultChain]:
    with AnvilNode(ensure_anvil(), log_file=tmp_path / "anvil.log") as node:
        yield vault_chain(node, tmp_path)


def _chain_args(chain: VaultChain) -> list[str]:
    return [
        "--chain-url",
        chain.node.url,
        "--vault-address",
        chain.vault.address,
        "--assets",
        str(chain.assets_toml),
    ]


def test_the_faucet_is_development_only(
    chain: VaultChain, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ORRANGE_ENV", raising=False)
    assert main(["faucet", "alice", "USDT", "1", *_chain_args(chain)]) == 2
    assert "development only" in capsys.readouterr().err
    assert chain.vault.reserves(chain.usdt.address) == 0


async def _balance(conn: asyncpg.Connection, account: str, asset: str, available: int) -> None:
    await conn.execute(
        "INSERT INTO balances (account, asset, available, held, updated_ts)"
        " VALUES ($1, $2, $3, 0, 0) ON CONFLICT (account, asset) DO UPDATE SET available = $3",
        account,
        asset,
        available,
    )


async def test_faucet_deposit_confirmed_then_the_audit_passes_and_fails(
    chain: VaultChain,
    nats_url: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ORRANGE_ENV", "dev")
    cfg = ActorConfig(name="vault", nats_url=nats_url, metrics_port=None)
    options = VaultOptions(
        chain_url=chain.node.url,
        vault_address=chain.vault.address,
        confirmations=1,
        poll_interval_ms=50,
    )
    w = VaultWatcher(cfg, database_url, chain.assets, options)
    await w.start()
    try:
        assert main(["faucet", "alice", "USDT", "1000.5", *_chain_args(chain)]) == 0
        tx_hash = capsys.readouterr().out.split()[-1]  # after the actor's log lines
        assert main(["faucet", "alice", "ETH", "2", *_chain_args(chain)]) == 0
        eth_tx = capsys.readouterr().out.split()[-1]
        chain.mine()

        async def confirmed() -> bool:
            return len(await funds_messages(nats_url)) == 2

        await wait_for(confirmed, "the faucet deposits")
    finally:
        await w.stop()
    deps = [m for _, m in await funds_messages(nats_url) if isinstance(m, DepositConfirmed)]
    assert [(d.tx_hash, d.account, d.asset, d.amount) for d in deps] == [
        (tx_hash, "alice", "USDT", 1000 * USDT + USDT // 2),
        (eth_tx, "alice", "ETH", 2 * 10**18),
    ]
    assert chain.vault.reserves(chain.usdt.address) == 1000 * USDT + USDT // 2

    audit = ["audit", "--database-url", database_url, *_chain_args(chain)]
    conn = await asyncpg.connect(database_url)
    try:
        # the balances the persister writes for the two deposit entries
        for d in deps:
            await _balance(conn, "alice", d.asset, d.amount)
            await _balance(conn, "@vault", d.asset, -d.amount)
        assert await asyncio.to_thread(main, audit) == 0
        out = capsys.readouterr().out
        assert "audit: ok" in out and "DIFF" not in out
        assert str(1000 * USDT + USDT // 2) in out

        # a tampered balance: one base unit from nowhere
        await _balance(conn, "alice", "USDT", 1000 * USDT + USDT // 2 + 1)
        assert await asyncio.to_thread(main, audit) == 1
        out = capsys.readouterr().out
        assert "DIFF USDT ledger" in out and "audit: FAILED" in out
        assert "DIFF ETH" not in out
        await _balance(conn, "alice", "USDT", 1000 * USDT + USDT // 2)

        # books that balance but a deposit the vault never received: reserves fall short
        await conn.execute(
            "INSERT INTO deposits (event_id, account, asset, amount, sender, tx_hash,"
            " block_number, status, ts) VALUES ('0xfake:0', 'bob', 'ETH', $1, '0x', '0x', 1,"
            " 'confirmed', 0)",
            10**18,
        )
        await _balance(conn, "bob", "ETH", 10**18)
        await _balance(conn, "@vault", "ETH", -3 * 10**18)
        assert await asyncio.to_thread(main, audit) == 1
        out = capsys.readouterr().out
        assert "DIFF ETH reserves" in out
        assert "DIFF ETH ledger" not in out and "DIFF ETH chain" not in out
    finally:
        await conn.close()
