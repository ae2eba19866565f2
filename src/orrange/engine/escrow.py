"""The escrow watcher actor: P2P fills become trades, escrow logs move them on.

Inputs and outputs:

* ``EVENTS`` (``evt.>``), durable ``escrow``: every :class:`OrderFilled` of a P2P market
  (:func:`~orrange.wire.settlement.is_p2p`) opens a trade
  (:func:`orrange.settlement.lifecycle.open_trade`) in PostgreSQL (``settlement_trades``,
  idempotent on the trade id);
* a JSON-RPC node (``ORRANGE_CHAIN_URL``) and the escrow contract at
  ``ORRANGE_ESCROW_ADDRESS``: every ``poll_interval_ms`` the watcher reads the escrow's logs
  of the blocks that have ``confirmations`` blocks on top of them and applies them
  (:func:`~orrange.settlement.lifecycle.apply_event`, at the block's time), moving its cursor
  (``settlement_cursor``) in the same transaction; on a reorg the events after the fork point
  are reverted (:func:`~orrange.settlement.lifecycle.revert_event`);
* deadlines: after each poll :func:`~orrange.settlement.lifecycle.tick` runs on the open trades
  with ``now`` = the later of the wall clock and the newest block's time (ms UTC);
* every change is published as a :class:`~orrange.wire.settlement.SettlementEvent` on
  ``settlement.<trade_id>`` (stream ``SETTLEMENT``) with a ``Nats-Msg-Id`` derived from its
  cause (:func:`~orrange.wire.settlement.settlement_msg_id`);
* reputation facts of each transition go to ``reputation_facts`` and refresh the users'
  ``reputations`` scores, which the API stamps into their P2P orders.

Without ``ORRANGE_CHAIN_URL`` (or without an escrow address) the watcher opens trades and
applies deadlines only, and logs once that it follows no chain.

Cursor, reorg handling and the publish-before-commit order: ``docs/actors.md`` (Escrow
watcher). The process is ``orrange actor escrow`` (:mod:`actors.escrow`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from orrange.engine._follow import FollowOptions, fork_point, get_block, is_canonical, read_blocks
from orrange.evm.chain import Escrow, connect
from orrange.markets import MarketSpec
from orrange.matching.events import Event, OrderFilled
from orrange.runtime import (
    Actor,
    ActorConfig,
    Inbound,
    Input,
    Outbox,
)
from orrange.settlement.config import SettlementConfig
from orrange.settlement.events import ChainEvent
from orrange.settlement.lifecycle import (
    LifecycleError,
    ReputationEvent,
    Transition,
    apply_event,
    open_trade,
    revert_event,
    tick,
)
from orrange.store import migrate
from orrange.store import settlement as db
from orrange.store.connect import connect_when_ready
from orrange.wire.engine import EVENTS, EVENTS_PREFIX, EventPayload
from orrange.wire.settlement import (
    ESCROW_DURABLE,
    SETTLEMENT,
    SettlementCause,
    SettlementEvent,
    is_p2p,
    settlement_msg_id,
    settlement_subject,
)
from orrange.wire.spec import ConsumerSpec, StreamSpec

__all__ = [
    "EscrowWatcher",
    "WatcherOptions",
]


class WatcherOptions(FollowOptions, frozen=True, kw_only=True):
    """Tunables of the watcher: :class:`~orrange.engine._follow.FollowOptions` and
    ``escrow_address``, the escrow contract (checksummed or not; None: follow no chain)."""

    escrow_address: str | None = None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Pending:
    """What one transaction publishes once the trades are written."""

    def __init__(self) -> None:
        self.items: list[tuple[str, SettlementEvent, str]] = []
        self.facts: list[ReputationEvent] = []

    def add(self, t: Transition, cause: SettlementCause, event_id: str | None, msg_id: str) -> None:
        tr = t.trade
        ev = SettlementEvent(
            trade_id=tr.trade_id,
            symbol=tr.symbol,
            buyer=tr.buyer,
            seller=tr.seller,
            state=str(tr.state),
            cause=cause,
            event_id=event_id,
            tx_hashes=tr.tx_hashes,
            reputation=t.reputation,
            ts=_now_ms(),
        )
        self.items.append((settlement_subject(tr.trade_id), ev, msg_id))
        self.facts.extend(t.reputation)


class EscrowWatcher(Actor):
    """Opens trades from P2P fills and follows the escrow (see the module docstring).

    Args:
        config: actor configuration (name normally ``escrow``).
        database_url: PostgreSQL URL (migrated at start).
        markets: the markets, keyed by symbol (fills of unknown markets are dead-lettered).
        settlement: deadlines per payment method.
        options: chain and polling options.

    Attributes:
        cursor: the last processed block (None before the first poll).
        polls: completed chain polls; ``reorgs``: reorgs rolled back.
    """

    def __init__(
        self,
        config: ActorConfig,
        database_url: str,
        markets: Mapping[str, MarketSpec],
        settlement: SettlementConfig,
        options: WatcherOptions,
    ) -> None:
        super().__init__(config)
        self.database_url = database_url
        self.markets = dict(markets)
        self.settlement = settlement
        self.options = options
        self.cursor: db.BlockRef | None = None
        self.polls = 0
        self.reorgs = 0
        self._conn: asyncpg.Connection | None = None
        self._escrow: Escrow | None = None
        self._chain_time_ms = 0

    @property
    def escrow_address(self) -> str | None:
        """The followed contract's checksummed address (None without a chain)."""
        return self._escrow.address if self._escrow is not None else None

    def streams(self) -> Sequence[StreamSpec]:
        return (EVENTS, SETTLEMENT)

    def inputs(self) -> Sequence[Input[Any]]:
        spec = ConsumerSpec(
            stream=EVENTS.name,
            durable=ESCROW_DURABLE,
            filter_subjects=(f"{EVENTS_PREFIX}.>",),
            ack_wait_ms=self.config.ack_wait_ms,
            description="escrow watcher: P2P fills open trades",
        )
        return (Input(spec, EventPayload, self._on_events),)

    async def on_start(self) -> None:
        self._conn = await self._connect_db(self.options.db_connect_timeout_ms / 1000)
        await migrate(self._conn)
        opts = self.options
        if opts.chain_url and opts.escrow_address:
            w3 = connect(opts.chain_url)
            self._escrow = Escrow(w3, opts.escrow_address)
            self.log.info(
                "following the escrow",
                chain=opts.chain_url,
                escrow=self._escrow.address,
                confirmations=opts.confirmations,
            )
        else:
            self.log.info(
                "no chain configured (ORRANGE_CHAIN_URL / ORRANGE_ESCROW_ADDRESS unset): "
                "opening trades and applying deadlines only"
            )
        self.spawn(self._loop(), name=f"{self.name}:chain")

    async def on_stop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            await conn.close()

    async def _connect_db(self, timeout_s: float) -> asyncpg.Connection:
        return await connect_when_ready(self.database_url, timeout_s, self.log)

    @property
    def conn(self) -> asyncpg.Connection:
        """The watcher's database connection (after start)."""
        if self._conn is None:
            raise RuntimeError("escrow watcher not started")
        return self._conn

    # -- fills ------------------------------------------------------------------------------

    async def _on_events(self, batch: Sequence[Inbound[Event | list[Event]]], out: Outbox) -> None:
        fills: list[tuple[Inbound[Any], OrderFilled]] = []
        for m in batch:
            for ev in m.data if isinstance(m.data, list) else (m.data,):
                if (
                    isinstance(ev, OrderFilled)
                    and is_p2p(self.markets.get(ev.symbol), ev)
                    and ev.maker_user != ev.taker_user
                ):
                    fills.append((m, ev))
        if not fills:
            return
        pending = _Pending()
        async with self.conn.transaction():
            for m, ev in fills:
                spec = self.markets.get(ev.symbol)
                if spec is None:
                    out.dead_letter(m, f"fill of unknown market {ev.symbol!r}")
                    continue
                try:
                    trade = open_trade(ev, spec, self.settlement)
                except LifecycleError as exc:
                    out.dead_letter(m, exc)
                    continue
                inserted = await db.insert_trade(self.conn, trade, self.escrow_address, _now_ms())
                # published again on a redelivery (same id: JetStream drops the duplicate)
                pending.add(
                    Transition(trade, True, ()),
                    "opened",
                    None,
                    settlement_msg_id(trade.trade_id, "opened"),
                )
                if not inserted:
                    continue
                # chain events that arrived before the fill
                for stored in await db.pending_events(self.conn, trade.trade_id):
                    t = apply_event(trade, stored.event, stored.at_ms)
                    trade = t.trade
                    eid = stored.event.event_id
                    pending.add(t, "chain", eid, settlement_msg_id(trade.trade_id, "chain", eid))
                await db.save_trade(self.conn, trade, _now_ms())
            await self._flush(pending, out)

    async def _flush(self, pending: _Pending, out: Outbox | None) -> None:
        """Record the reputation facts, then publish (through ``out`` when given, else at
        once and waiting for the acks): the caller commits afterwards."""
        if pending.facts:
            await db.apply_reputation(self.conn, pending.facts, _now_ms())
        for subject, ev, msg_id in pending.items:
            if out is not None:
                out.publish(subject, ev, msg_id=msg_id)
            else:
                await self.publisher.submit(subject, ev, msg_id=msg_id)
        if out is None and pending.items:
            await self.publisher.flush()

    # -- the chain --------------------------------------------------------------------------

    async def _loop(self) -> None:
        interval = self.options.poll_interval_ms / 1000
        while not self.stopping:
            try:
                async with self.lock:
                    if self._escrow is not None:
                        await self.poll()
                    await self.apply_deadlines()
            except Exception as exc:  # a node or database hiccup: retry on the next poll
                self.log.warning("escrow poll failed; retrying", error=repr(exc))
            await asyncio.sleep(interval)

    async def poll(self) -> int:
        """One pass over the chain: roll back a reorg, then apply the confirmed logs after
        the cursor (at most ``max_range`` blocks). Returns how many events were applied.
        Raises on a node or database error (nothing of the pass is kept)."""
        escrow = self._escrow
        if escrow is None:
            return 0
        address = escrow.address
        head = await get_block(escrow.w3, "latest")
        self._chain_time_ms = max(self._chain_time_ms, int(head["timestamp"]) * 1000)
        head_number = int(head["number"])
        applied = 0
        async with self.conn.transaction():
            cursor = await db.get_cursor(self.conn, address)
            pending = _Pending()
            if cursor is not None and not await is_canonical(escrow.w3, cursor):
                cursor = await self._rollback(address, pending)
            target = head_number - self.options.confirmations
            start = self.options.start_block if cursor is None else cursor.number + 1
            if target >= start:
                end = min(target, start + self.options.max_range - 1)
                applied = await self._read(escrow, start, end, pending)
            await self._flush(pending, None)
            if applied or pending.items:
                self.log.info("escrow events applied", events=applied, changes=len(pending.items))
        self.cursor = await db.get_cursor(self.conn, address)
        self.polls += 1
        return applied

    async def _rollback(self, address: str, pending: _Pending) -> db.BlockRef | None:
        """Find the fork point, revert every event applied after it, move the cursor there."""
        assert self._escrow is not None
        fork = await fork_point(self._escrow.w3, await db.block_hashes(self.conn, address))
        after = fork.number if fork is not None else self.options.start_block - 1
        undone = await db.live_events_after(self.conn, after)
        for event_id, trade_id in undone:
            await db.mark_reverted(self.conn, event_id)
            row = await db.get_trade(self.conn, trade_id, for_update=True)
            if row is None:
                continue
            t = revert_event(row.trade, event_id)
            if t.changed:
                await db.save_trade(self.conn, t.trade, _now_ms())
                pending.add(
                    t, "reverted", event_id, settlement_msg_id(trade_id, "reverted", event_id)
                )
        self.reorgs += 1
        self.log.warning(
            "chain reorganisation rolled back",
            fork_block=None if fork is None else fork.number,
            events_reverted=len(undone),
        )
        if fork is None:
            await db.clear_cursor(self.conn, address)
            return None
        await db.set_cursor(self.conn, address, fork, (), _now_ms())
        return fork

    async def _read(self, escrow: Escrow, start: int, end: int, pending: _Pending) -> int:
        events: list[ChainEvent] = await asyncio.to_thread(escrow.events, start, end)
        blocks, seen = await read_blocks(escrow.w3, events, end)
        hashes = {r.number: r.hash for r in seen}
        applied = 0
        for e in events:
            at_ms = int(blocks[e.block_number]["timestamp"]) * 1000
            if not await db.record_chain_event(self.conn, e, at_ms):
                continue
            applied += 1
            row = await db.get_trade(self.conn, e.trade_id, for_update=True)
            if row is None:
                continue  # applied when the fill opens the trade
            t = apply_event(row.trade, e, at_ms)
            if t.changed:
                await db.save_trade(self.conn, t.trade, _now_ms())
                pending.add(
                    t, "chain", e.event_id, settlement_msg_id(e.trade_id, "chain", e.event_id)
                )
        await db.set_cursor(
            self.conn, escrow.address, db.BlockRef(end, hashes[end]), seen, _now_ms()
        )
        return applied

    async def apply_deadlines(self) -> int:
        """Tick every open trade to now (the later of the wall clock and the newest block's
        time seen); returns how many changed state."""
        now = max(_now_ms(), self._chain_time_ms)
        changed = 0
        async with self.conn.transaction():
            pending = _Pending()
            for trade in await db.due_trades(self.conn, now):
                t = tick(trade, now)
                if t.trade.state == trade.state:
                    continue
                changed += 1
                await db.save_trade(self.conn, t.trade, _now_ms())
                tid = trade.trade_id
                pending.add(t, "deadline", None, settlement_msg_id(tid, "deadline", t.trade.state))
            await self._flush(pending, None)
        return changed
