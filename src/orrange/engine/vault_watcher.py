"""The vault watcher actor: vault logs at the confirmation depth become ``funds.chain`` messages.

Inputs and outputs:

* a JSON-RPC node (``ORRANGE_CHAIN_URL``) and the vault at ``ORRANGE_VAULT_ADDRESS``
  (:class:`~orrange.evm.vault.Vault`): every ``poll_interval_ms`` the watcher reads the
  vault's logs of the blocks that have ``confirmations`` blocks on top of them, at most
  ``max_range`` blocks per pass, and publishes on ``funds.chain`` (stream ``FUNDS``):

  - ``Deposited`` -> :class:`~orrange.wire.funds.DepositConfirmed`, ``amount`` base units of
    the asset whose ``token`` (``config/assets.toml``) the log names, for the ``account`` it
    names. A deposit of a token no asset lists, or for an account that is not a user id
    (``[A-Za-z0-9_-]{1,64}``), is recorded (``vault_events.note``: ``unknown_token``,
    ``bad_account``), logged and counted in :attr:`VaultWatcher.uncredited`, and credited
    to nobody;
  - ``Withdrawn`` -> :class:`~orrange.wire.funds.WithdrawalConfirmed`;
  - ``WithdrawalCanceled`` -> :class:`~orrange.wire.funds.WithdrawalExpired` with the log's
    event id;
  - every withdrawal risk authorized (``withdrawals.status = 'authorized'``) whose ``expiry``
    is before the time of the newest confirmed block read and that no ``Withdrawn`` paid ->
    :class:`~orrange.wire.funds.WithdrawalExpired` with an empty event id. (The vault refuses
    a withdrawal in a block later than its expiry and block times never decrease, so no
    later block can pay it.)

  At most one ``WithdrawalConfirmed`` or ``WithdrawalExpired`` is published per withdrawal
  (``vault_withdrawal_outcomes``).
* Reorgs: when the cursor block is no longer canonical the watcher walks back to the fork
  point and rolls back every log taken after it: a credited deposit is
  ``deposits.status = 'reversed'`` and :class:`~orrange.wire.funds.DepositReversed` is
  published; a confirmed withdrawal or cancel that a reorg orphans publishes nothing (the
  transaction is normally mined again on the new branch; crediting the funds back would let
  the user spend them while the signed authorization can still pay out), it is logged and
  counted in :attr:`VaultWatcher.orphaned`.
* ``Nats-Msg-Id``: :func:`~orrange.wire.funds.chain_funds_msg_id` of the message's tag and
  the log's event id (``<block_hash>:<log_index>``; ``:<revision>`` appended when a reverted
  log is confirmed again), or the withdrawal id for an expiry. Messages are published and
  acked before the transaction that records them and moves the cursor commits: a restart
  resumes after the cursor, and a crash between the two republishes the same ids, which
  JetStream drops.

Amounts are integers of base units; ``ts`` is the block's time in ms UTC (a reversal: the
newest block's). Without a chain URL or a vault address the watcher logs that it follows no
chain and idles. The process is ``orrange actor vault`` (:mod:`actors.vault`); the cursor and
reorg design is the escrow watcher's (``docs/actors.md``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence

import asyncpg
import msgspec

from orrange.engine._follow import FollowOptions, fork_point, get_block, is_canonical, read_blocks
from orrange.evm.chain import connect
from orrange.evm.vault import (
    Vault,
    VaultDeposited,
    VaultEvent,
    VaultWithdrawalCanceled,
    VaultWithdrawn,
)
from orrange.ledger.assets import AssetSpec
from orrange.runtime import Actor, ActorConfig
from orrange.settlement.events import ZERO_ADDRESS
from orrange.store import migrate
from orrange.store import settlement as cursor_db
from orrange.store import vault as db
from orrange.store.connect import connect_when_ready
from orrange.wire.funds import (
    FUNDS,
    FUNDS_CHAIN_SUBJECT,
    DepositConfirmed,
    DepositReversed,
    WithdrawalConfirmed,
    WithdrawalExpired,
    chain_funds_msg_id,
)
from orrange.wire.spec import StreamSpec

__all__ = ["USER_ID", "VaultOptions", "VaultWatcher", "token_address"]

#: A user id, the only account a deposit may credit.
USER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

_enc = msgspec.json.Encoder()

ChainMessage = DepositConfirmed | DepositReversed | WithdrawalConfirmed | WithdrawalExpired
#: A message to publish and the event-id part of its ``Nats-Msg-Id``.
_Out = tuple[ChainMessage, str]


def token_address(asset: AssetSpec) -> str:
    """The asset's token as the vault names it: the zero address for ``native``, else the
    ERC-20's address (lower-case ``0x`` hex)."""
    return ZERO_ADDRESS if asset.token == "native" else asset.token.lower()


class VaultOptions(FollowOptions, frozen=True, kw_only=True):
    """Tunables of the vault watcher: :class:`~orrange.engine._follow.FollowOptions` and
    ``vault_address``, the vault contract (None: follow no chain)."""

    vault_address: str | None = None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _event_key(event_id: str, revision: int) -> str:
    return event_id if revision == 0 else f"{event_id}:{revision}"


def _tag(msg: ChainMessage) -> str:
    return str(msg.__struct_config__.tag)


class VaultWatcher(Actor):
    """Follows the vault and publishes its confirmed logs (see the module docstring).

    Args:
        config: actor configuration (name normally ``vault``).
        database_url: PostgreSQL URL (migrated at start).
        assets: the vault assets by code (``orrange.ledger.load_assets``).
        options: chain and polling options.

    Attributes:
        cursor: the last processed block (None before the first pass).
        polls: completed passes; ``reorgs``: reorgs rolled back; ``uncredited``: deposits
            that credit nobody; ``orphaned``: confirmed withdrawals or cancels a reorg
            removed; ``published``: messages published (JetStream duplicates included).
    """

    def __init__(
        self,
        config: ActorConfig,
        database_url: str,
        assets: Mapping[str, AssetSpec],
        options: VaultOptions,
    ) -> None:
        super().__init__(config)
        self.database_url = database_url
        self.options = options
        self.tokens = {token_address(a): a.code for a in assets.values()}
        self.cursor: cursor_db.BlockRef | None = None
        self.polls = 0
        self.reorgs = 0
        self.uncredited = 0
        self.orphaned = 0
        self.published = 0
        self._conn: asyncpg.Connection | None = None
        self._vault: Vault | None = None

    def streams(self) -> Sequence[StreamSpec]:
        return (FUNDS,)

    async def on_start(self) -> None:
        self._conn = await connect_when_ready(
            self.database_url, self.options.db_connect_timeout_ms / 1000, self.log
        )
        await migrate(self._conn)
        opts = self.options
        if not (opts.chain_url and opts.vault_address):
            self.log.info(
                "no chain configured (ORRANGE_CHAIN_URL / ORRANGE_VAULT_ADDRESS unset): idle"
            )
            return
        self._vault = Vault(connect(opts.chain_url), opts.vault_address)
        self.log.info(
            "following the vault",
            chain=opts.chain_url,
            vault=self._vault.address,
            confirmations=opts.confirmations,
            assets=sorted(self.tokens.values()),
        )
        self.spawn(self._loop(), name=f"{self.name}:chain")

    async def on_stop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            await conn.close()

    @property
    def conn(self) -> asyncpg.Connection:
        """The watcher's database connection (after start)."""
        if self._conn is None:
            raise RuntimeError("vault watcher not started")
        return self._conn

    async def _loop(self) -> None:
        interval = self.options.poll_interval_ms / 1000
        while not self.stopping:
            try:
                async with self.lock:
                    await self.poll()
            except Exception as exc:  # a node or database hiccup: retry on the next poll
                self.log.warning("vault poll failed; retrying", error=repr(exc))
            await asyncio.sleep(interval)

    async def poll(self) -> int:
        """One pass: roll back a reorg, then take the confirmed logs after the cursor (at
        most ``max_range`` blocks) and the expiries they make due. Returns how many messages
        were published. Raises on a node, database or publish error (nothing of the pass is
        kept)."""
        vault = self._vault
        if vault is None:
            return 0
        head = await get_block(vault.w3, "latest")
        pending: list[_Out] = []
        async with self.conn.transaction():
            cursor = await cursor_db.get_cursor(self.conn, vault.address)
            if cursor is not None and not await is_canonical(vault.w3, cursor):
                cursor = await self._rollback(vault, int(head["timestamp"]) * 1000, pending)
            target = int(head["number"]) - self.options.confirmations
            start = self.options.start_block if cursor is None else cursor.number + 1
            if target >= start:
                end = min(target, start + self.options.max_range - 1)
                await self._read(vault, start, end, pending)
            await self._publish(pending)
        self.cursor = await cursor_db.get_cursor(self.conn, vault.address)
        self.polls += 1
        return len(pending)

    async def _publish(self, pending: Sequence[_Out]) -> None:
        for msg, key in pending:
            await self.publisher.submit(
                FUNDS_CHAIN_SUBJECT, msg, msg_id=chain_funds_msg_id(_tag(msg), key)
            )
        if pending:
            await self.publisher.flush()
            self.published += len(pending)
            self.log.info("vault messages published", messages=len(pending))

    async def _rollback(
        self, vault: Vault, now_ms: int, pending: list[_Out]
    ) -> cursor_db.BlockRef | None:
        """Find the fork point, roll back every log taken after it, move the cursor there."""
        fork = await fork_point(vault.w3, await cursor_db.block_hashes(self.conn, vault.address))
        after = fork.number if fork is not None else self.options.start_block - 1
        undone = await db.live_logs_after(self.conn, after)
        for log in undone:
            await db.mark_reverted(self.conn, log.event_id)
            if log.kind == "deposited":
                if log.note:
                    continue
                await db.reverse_deposit(self.conn, log.event_id, now_ms)
                rev = DepositReversed(
                    event_id=log.event_id, block_number=log.block_number, ts=now_ms
                )
                pending.append((rev, _event_key(log.event_id, log.revision)))
            else:
                self.orphaned += 1
                self.log.error(
                    "a reorg orphaned a confirmed withdrawal log; nothing credited back",
                    kind=log.kind,
                    withdrawal_id=log.withdrawal_id,
                    event_id=log.event_id,
                )
        self.reorgs += 1
        self.log.warning(
            "chain reorganisation rolled back",
            fork_block=None if fork is None else fork.number,
            logs_reverted=len(undone),
        )
        if fork is None:
            await cursor_db.clear_cursor(self.conn, vault.address)
            return None
        await cursor_db.set_cursor(self.conn, vault.address, fork, (), _now_ms())
        return fork

    async def _read(self, vault: Vault, start: int, end: int, pending: list[_Out]) -> None:
        events: list[VaultEvent] = await asyncio.to_thread(vault.events, start, end)
        blocks, seen = await read_blocks(vault.w3, events, end)
        for e in events:
            at_ms = int(blocks[e.block_number]["timestamp"]) * 1000
            if isinstance(e, VaultDeposited):
                await self._deposit(e, at_ms, pending)
            else:
                await self._withdrawal(e, at_ms, pending)
        end_s = int(blocks[end]["timestamp"])
        for wid in await db.due_expiries(self.conn, end_s):
            await db.record_outcome(self.conn, wid, "expired", "", end, _now_ms())
            due = WithdrawalExpired(
                withdrawal_id=wid, event_id="", block_number=end, ts=end_s * 1000
            )
            pending.append((due, wid))
        ref = cursor_db.BlockRef(end, next(r.hash for r in seen if r.number == end))
        await cursor_db.set_cursor(self.conn, vault.address, ref, seen, _now_ms())

    async def _record(self, e: VaultEvent, at_ms: int, withdrawal_id: str, note: str) -> int | None:
        return await db.record_log(
            self.conn,
            event_id=e.event_id,
            kind=str(e.__struct_config__.tag),
            block_number=e.block_number,
            log_index=e.log_index,
            tx_hash=e.tx_hash,
            withdrawal_id=withdrawal_id,
            note=note,
            at_ms=at_ms,
            payload=_enc.encode(e),
        )

    async def _deposit(self, e: VaultDeposited, at_ms: int, pending: list[_Out]) -> None:
        asset = self.tokens.get(e.token.lower())
        note = (
            "unknown_token"
            if asset is None
            else ("" if USER_ID.fullmatch(e.account) else "bad_account")
        )
        revision = await self._record(e, at_ms, "", note)
        if revision is None:
            return
        if asset is None or note:
            self.uncredited += 1
            self.log.error(
                "vault deposit credits nobody",
                reason=note,
                event_id=e.event_id,
                account=e.account,
                token=e.token,
                amount=e.amount,
                tx_hash=e.tx_hash,
            )
            return
        d = DepositConfirmed(
            event_id=e.event_id,
            account=e.account,
            asset=asset,
            amount=e.amount,
            sender=e.sender.lower(),
            tx_hash=e.tx_hash,
            block_number=e.block_number,
            ts=at_ms,
        )
        await db.confirm_deposit(self.conn, d)
        pending.append((d, _event_key(e.event_id, revision)))

    async def _withdrawal(
        self, e: VaultWithdrawn | VaultWithdrawalCanceled, at_ms: int, pending: list[_Out]
    ) -> None:
        wid = e.withdrawal_id
        if await self._record(e, at_ms, wid, "") is None:
            return
        outcome = "confirmed" if isinstance(e, VaultWithdrawn) else "expired"
        before = await db.outcome_of(self.conn, wid)
        if before is not None:
            if before != outcome:  # a reorg swapped a cancel for a payment, or the reverse
                self.log.error(
                    "withdrawal outcome changed on chain after it was published",
                    withdrawal_id=wid,
                    published=before,
                    now=outcome,
                    event_id=e.event_id,
                )
            return
        await db.record_outcome(self.conn, wid, outcome, e.event_id, e.block_number, _now_ms())
        msg: ChainMessage
        if isinstance(e, VaultWithdrawn):
            msg = WithdrawalConfirmed(
                withdrawal_id=wid,
                event_id=e.event_id,
                tx_hash=e.tx_hash,
                block_number=e.block_number,
                ts=at_ms,
            )
            pending.append((msg, e.event_id))
        else:
            msg = WithdrawalExpired(
                withdrawal_id=wid, event_id=e.event_id, block_number=e.block_number, ts=at_ms
            )
            pending.append((msg, wid))
