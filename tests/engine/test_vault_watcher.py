"""The vault watcher on a real anvil node, nats-server and PostgreSQL: deposits only at the
confirmation depth, a reorg reverses a confirmed deposit, withdrawals confirmed, canceled and
expired, and a restart publishes nothing twice."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import nats
import pytest
from kit.vault_chain import SIGNER_KEY, VaultChain, funds_messages, vault_chain
from kit.wait import wait_for

from orrange.engine.vault_watcher import VaultOptions, VaultWatcher
from orrange.evm.chain import Token, send_dev
from orrange.evm.vault import Withdrawal, sign_withdrawal
from orrange.infra.anvil import AnvilNode, ensure_anvil
from orrange.runtime import ActorConfig
from orrange.settlement.events import ZERO_ADDRESS
from orrange.store import migrate
from orrange.wire.funds import (
    FUNDS,
    DepositConfirmed,
    DepositReversed,
    WithdrawalConfirmed,
    WithdrawalExpired,
)

pytestmark = pytest.mark.chain


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[VaultChain]:
    with AnvilNode(ensure_anvil(), log_file=tmp_path / "anvil.log") as node:
        yield vault_chain(node, tmp_path)


@contextlib.asynccontextmanager
async def watching(
    nats_url: str, database_url: str, chain: VaultChain, confirmations: int = 2
) -> AsyncIterator[VaultWatcher]:
    cfg = ActorConfig(name="vault", nats_url=nats_url, metrics_port=None, fetch_timeout_ms=50)
    options = VaultOptions(
        chain_url=chain.node.url,
        vault_address=chain.vault.address,
        confirmations=confirmations,
        poll_interval_ms=50,
    )
    w = VaultWatcher(cfg, database_url, chain.assets, options)
    await w.start()
    try:
        yield w
    finally:
        await w.stop()


async def polls(w: VaultWatcher, n: int) -> None:
    target = w.polls + n

    async def done() -> bool:
        return w.polls >= target

    await wait_for(done, f"{n} polls")


async def messages_of(nats_url: str, kind: type) -> list:
    return [m for _, m in await funds_messages(nats_url) if isinstance(m, kind)]


async def test_deposits_wait_for_the_depth_and_a_reorg_reverses_one(
    chain: VaultChain, nats_url: str, database_url: str
) -> None:
    a = list(chain.w3.eth.accounts)
    conn = await asyncpg.connect(database_url)
    try:
        async with watching(nats_url, database_url, chain) as w:
            block = chain.deposit(a[1], "alice", "ETH", 10**18)
            await polls(w, 2)
            assert w.cursor is not None and w.cursor.number < block
            chain.mine()  # one block on top: not yet
            await polls(w, 2)
            assert await messages_of(nats_url, DepositConfirmed) == []
            chain.mine()  # two on top

            async def confirmed() -> bool:
                return len(await messages_of(nats_url, DepositConfirmed)) == 1

            await wait_for(confirmed, "the ETH deposit")
            (dep,) = await messages_of(nats_url, DepositConfirmed)
            assert (dep.account, dep.asset, dep.amount, dep.block_number) == (
                "alice",
                "ETH",
                10**18,
                block,
            )
            assert dep.sender == a[1].lower()

            # a token no asset lists: recorded, credited to nobody
            other = Token.deploy(chain.w3, a[0], name="Other", symbol="OTH")
            chain.deposit(a[2], "bob", other.address, 5)
            chain.mine(2)

            async def noted() -> bool:
                return w.uncredited == 1

            await wait_for(noted, "the unknown token's deposit")
            note = await conn.fetchval(
                "SELECT note FROM vault_events WHERE kind = 'deposited' AND note <> ''"
            )
            assert note == "unknown_token"

            # a reorg removes a confirmed USDT deposit
            snapshot = chain.node.rpc("evm_snapshot")
            usdt_block = chain.deposit(a[3], "carol", "USDT", 7 * 10**18)
            chain.mine(2)

            async def usdt_confirmed() -> bool:
                return any(d.asset == "USDT" for d in await messages_of(nats_url, DepositConfirmed))

            await wait_for(usdt_confirmed, "the USDT deposit")
            carol = next(
                d for d in await messages_of(nats_url, DepositConfirmed) if d.asset == "USDT"
            )
            assert carol.block_number == usdt_block
            assert chain.node.rpc("evm_revert", [snapshot]) is True
            chain.mine(6)  # the new branch is longer than the old one

            async def reversed_() -> bool:
                return len(await messages_of(nats_url, DepositReversed)) == 1

            await wait_for(reversed_, "the reversal")
            (rev,) = await messages_of(nats_url, DepositReversed)
            assert (rev.event_id, rev.block_number) == (carol.event_id, usdt_block)
            assert w.reorgs == 1
            rows = await conn.fetch("SELECT account, status FROM deposits ORDER BY account")
            assert [tuple(r.values()) for r in rows] == [
                ("alice", "confirmed"),
                ("carol", "reversed"),
            ]
        # no duplicate id on the stream, and alice's deposit was never reversed
        ids = [i for i, _ in await funds_messages(nats_url)]
        assert len(ids) == len(set(ids)) == 3
    finally:
        await conn.close()


async def authorize(
    conn: asyncpg.Connection, chain: VaultChain, wid: bytes, amount: int, to: str, expiry: int
) -> tuple[Withdrawal, bytes]:
    """What risk and the persister do for a withdrawal: the ``withdrawals`` row, authorized;
    returns the terms and the signer's EIP-712 signature."""
    await migrate(conn)
    await conn.execute(
        "INSERT INTO withdrawals (withdrawal_id, account, asset, amount, to_address, expiry,"
        " status, requested_ts, updated_ts) VALUES ($1, 'alice', 'ETH', $2, $3, $4,"
        " 'authorized', 0, 0)",
        "0x" + wid.hex(),
        amount,
        to.lower(),
        expiry,
    )
    w = Withdrawal(
        account="alice", token=ZERO_ADDRESS, amount=amount, to=to, withdrawal_id=wid, expiry=expiry
    )
    return w, sign_withdrawal(SIGNER_KEY, chain.w3.eth.chain_id, chain.vault.address, w)


async def test_withdrawals_confirmed_canceled_expired_and_a_restart_repeats_nothing(
    chain: VaultChain, nats_url: str, database_url: str
) -> None:
    a = list(chain.w3.eth.accounts)
    w1, w2, w3_ = (bytes([i]) * 32 for i in (1, 2, 3))
    now = int(chain.w3.eth.get_block("latest")["timestamp"])
    conn = await asyncpg.connect(database_url)
    try:
        chain.deposit(a[1], "alice", "ETH", 10**18)
        terms, sig = await authorize(conn, chain, w1, 4 * 10**17, a[5], now + 3_600)
        await authorize(conn, chain, w2, 10**17, a[5], now + 60)  # never executed
        await authorize(conn, chain, w3_, 10**17, a[5], now + 3_600)  # the signer cancels it
        send_dev(
            chain.w3,
            chain.vault.withdraw_tx(a[5], terms, sig),
        )
        chain.node.rpc("anvil_setBalance", [chain.signer, hex(10**18)])
        chain.node.rpc("anvil_impersonateAccount", [chain.signer])
        send_dev(chain.w3, chain.vault.cancel_withdrawal_tx(chain.signer, w3_))
        chain.mine(2)
        async with watching(nats_url, database_url, chain) as w:

            async def two() -> bool:
                m = await funds_messages(nats_url)
                return len(m) == 3  # the deposit, the withdrawal, the cancel

            await wait_for(two, "the withdrawal and the cancel")
            (paid,) = await messages_of(nats_url, WithdrawalConfirmed)
            assert paid.withdrawal_id == "0x" + w1.hex()
            (canceled,) = await messages_of(nats_url, WithdrawalExpired)
            assert canceled.withdrawal_id == "0x" + w3_.hex() and canceled.event_id != ""
            # the chain's time passes w2's expiry (and w1's, which was paid: not expired)
            chain.node.rpc("evm_increaseTime", [7_200])
            chain.mine(3)

            async def expired() -> bool:
                return len(await messages_of(nats_url, WithdrawalExpired)) == 2

            await wait_for(expired, "the expiry")
            await polls(w, 3)
            ex = await messages_of(nats_url, WithdrawalExpired)
            assert [(e.withdrawal_id, e.event_id) for e in ex] == [
                ("0x" + w3_.hex(), canceled.event_id),
                ("0x" + w2.hex(), ""),
            ]
            published = w.published
            assert published == 4
        before = await funds_messages(nats_url)
        # a restart resumes after the cursor: nothing is published again
        async with watching(nats_url, database_url, chain) as w:
            chain.mine(2)
            await polls(w, 3)
            assert w.published == 0
        # a crash after publishing and before the commit: the same pass again (cursor and
        # records gone) republishes the same ids, and JetStream drops them all
        await conn.execute(
            "DELETE FROM settlement_cursor; DELETE FROM settlement_blocks;"
            " DELETE FROM vault_events; DELETE FROM vault_withdrawal_outcomes;"
            " DELETE FROM deposits"
        )
        async with watching(nats_url, database_url, chain) as w:

            async def again() -> bool:
                return w.published >= 4

            await wait_for(again, "the replayed pass")
        assert await funds_messages(nats_url) == before
        nc = await nats.connect(nats_url)
        try:
            info = await nc.jetstream().stream_info(FUNDS.name)
            assert info.state.messages == len(before) == 4
        finally:
            await nc.close()
    finally:
        await conn.close()
