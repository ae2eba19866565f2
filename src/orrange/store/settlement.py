"""PostgreSQL queries of P2P settlement (tables of migration ``0005_settlement``).

Writers are the escrow watcher (:mod:`orrange.engine.escrow`: trades, chain events, cursor,
reputations) and the API (:mod:`orrange.api._trades`: chat messages); readers the API.
A trade is stored as its whole lifecycle :class:`~orrange.settlement.lifecycle.P2PTrade`
(msgspec JSON in ``doc``) plus the columns the API filters on. Every function takes a
connection (or pool) and runs one or a few statements; callers that need several to be
atomic wrap them in a transaction. Times are ms UTC, volumes quote cents, amounts exact
integers. Database errors propagate as ``asyncpg.PostgresError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from orrange.settlement.events import ChainEvent
from orrange.settlement.lifecycle import P2PTrade, ReputationEvent
from orrange.settlement.reputation import NEW_USER_SCORE, ReputationStats, median, score

__all__ = [
    "BlockRef",
    "MessageRecord",
    "StoredEvent",
    "TradeRow",
    "add_message",
    "apply_reputation",
    "block_hashes",
    "clear_cursor",
    "due_trades",
    "get_cursor",
    "get_trade",
    "insert_trade",
    "list_messages",
    "list_trades",
    "live_events_after",
    "mark_reverted",
    "pending_events",
    "record_chain_event",
    "reputation_of",
    "save_trade",
    "set_cursor",
    "user_reputation",
]

_trade_dec = msgspec.json.Decoder(P2PTrade)
_event_dec: msgspec.json.Decoder[Any] = msgspec.json.Decoder(ChainEvent)
_enc = msgspec.json.Encoder()

#: Processed block hashes kept per escrow for the reorg check (deeper reorgs are not followed).
BLOCK_HISTORY = 256

Conn = Any  # asyncpg.Connection, a pool connection or a pool (all have execute/fetch*)


class BlockRef(msgspec.Struct, frozen=True):
    """A block: ``number`` and ``hash`` (``0x`` hex)."""

    number: int
    hash: str


class StoredEvent(msgspec.Struct, frozen=True):
    """A chain event as stored: the event and ``at_ms``, its block's time (ms UTC)."""

    event: ChainEvent
    at_ms: int


class TradeRow(msgspec.Struct, frozen=True):
    """A stored trade: the lifecycle ``trade``, the ``escrow_address`` that follows it (None
    before the watcher has a chain) and ``updated_ms``."""

    trade: P2PTrade
    escrow_address: str | None
    updated_ms: int


class MessageRecord(msgspec.Struct, frozen=True):
    """One chat message: ``id`` (increasing), ``trade_id``, ``sender`` user id, their ``role``
    (``buyer``, ``seller``, ``mediator``), ``body`` text, ``ts`` ms UTC."""

    id: int
    trade_id: str
    sender: str
    role: str
    body: str
    ts: int


def _row(r: Any) -> TradeRow:
    doc = r["doc"]
    raw = doc.encode() if isinstance(doc, str) else doc
    return TradeRow(_trade_dec.decode(raw), r["escrow_address"], r["updated_ms"])


async def insert_trade(
    conn: Conn, trade: P2PTrade, escrow_address: str | None, now_ms: int
) -> bool:
    """Store a newly opened trade; False (nothing written) when ``trade_id`` exists."""
    status: str = await conn.execute(
        "INSERT INTO settlement_trades (trade_id, symbol, fill_seq, buyer, seller, state,"
        " created_ms, funding_deadline_ms, payment_deadline_ms, updated_ms, escrow_address,"
        " tx_hashes, doc) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12::jsonb,$13::jsonb)"
        " ON CONFLICT DO NOTHING",
        trade.trade_id,
        trade.symbol,
        trade.fill_seq,
        trade.buyer,
        trade.seller,
        str(trade.state),
        trade.created_ms,
        trade.funding_deadline_ms,
        trade.payment_deadline_ms,
        now_ms,
        escrow_address,
        _enc.encode(trade.tx_hashes).decode(),
        _enc.encode(trade).decode(),
    )
    return status.endswith(" 1")


async def save_trade(conn: Conn, trade: P2PTrade, now_ms: int) -> None:
    """Overwrite the derived state of a stored trade with ``trade``."""
    await conn.execute(
        "UPDATE settlement_trades SET state = $2, payment_deadline_ms = $3, updated_ms = $4,"
        " tx_hashes = $5::jsonb, doc = $6::jsonb WHERE trade_id = $1",
        trade.trade_id,
        str(trade.state),
        trade.payment_deadline_ms,
        now_ms,
        _enc.encode(trade.tx_hashes).decode(),
        _enc.encode(trade).decode(),
    )


_COLS = "doc::text AS doc, escrow_address, updated_ms"


async def get_trade(conn: Conn, trade_id: str, *, for_update: bool = False) -> TradeRow | None:
    """The trade ``trade_id`` (row-locked with ``for_update``, inside a transaction), or None."""
    lock = " FOR UPDATE" if for_update else ""
    r = await conn.fetchrow(
        f"SELECT {_COLS} FROM settlement_trades WHERE trade_id = $1{lock}", trade_id
    )
    return None if r is None else _row(r)


async def due_trades(conn: Conn, now_ms: int, limit: int = 10_000) -> list[P2PTrade]:
    """Trades a deadline before ``now_ms`` moves on: unfunded past the funding deadline,
    funded (never marked paid) past the payment deadline; oldest first, at most ``limit``."""
    rows = await conn.fetch(
        f"SELECT {_COLS} FROM settlement_trades WHERE"
        " (state = 'awaiting_funding' AND funding_deadline_ms < $1)"
        " OR (state = 'funded' AND payment_deadline_ms < $1)"
        " ORDER BY created_ms, trade_id LIMIT $2",
        now_ms,
        limit,
    )
    return [_row(r).trade for r in rows]


async def list_trades(
    conn: Conn, user: str, *, limit: int, before: tuple[int, str] | None = None
) -> list[TradeRow]:
    """``user``'s trades (as buyer or seller), newest first: at most ``limit``, strictly
    before the keyset ``before`` = ``(created_ms, trade_id)`` of the previous page's last."""
    b_ms, b_id = before if before is not None else (2**62, "")
    rows = await conn.fetch(
        f"SELECT {_COLS}, created_ms, trade_id FROM settlement_trades"
        " WHERE (buyer = $1 OR seller = $1)"
        " AND ($4 OR (created_ms, trade_id) < ($2, $3))"
        " ORDER BY created_ms DESC, trade_id DESC LIMIT $5",
        user,
        b_ms,
        b_id,
        before is None,
        limit,
    )
    return [_row(r) for r in rows]


async def record_chain_event(conn: Conn, event: ChainEvent, at_ms: int) -> bool:
    """Store a chain event seen at ``at_ms``; True when it is new, or was reverted and is
    back (its block is canonical again), False when it is already applied."""
    got = await conn.fetchval(
        "INSERT INTO settlement_chain_events (event_id, trade_id, kind, block_number,"
        " block_hash, log_index, tx_hash, at_ms, payload)"
        " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9::jsonb)"
        " ON CONFLICT (event_id) DO UPDATE SET reverted = false"
        " WHERE settlement_chain_events.reverted RETURNING event_id",
        event.event_id,
        event.trade_id,
        str(event.__struct_config__.tag),
        event.block_number,
        event.block_hash,
        event.log_index,
        event.tx_hash,
        at_ms,
        _enc.encode(event).decode(),
    )
    return got is not None


async def mark_reverted(conn: Conn, event_id: str) -> None:
    """Mark a chain event orphaned by a reorg."""
    await conn.execute(
        "UPDATE settlement_chain_events SET reverted = true WHERE event_id = $1", event_id
    )


async def live_events_after(conn: Conn, block_number: int) -> list[tuple[str, str]]:
    """``(event_id, trade_id)`` of the applied (not reverted) events in blocks after
    ``block_number``, newest first."""
    rows = await conn.fetch(
        "SELECT event_id, trade_id FROM settlement_chain_events"
        " WHERE NOT reverted AND block_number > $1 ORDER BY block_number DESC, log_index DESC",
        block_number,
    )
    return [(r["event_id"], r["trade_id"]) for r in rows]


async def pending_events(conn: Conn, trade_id: str) -> list[StoredEvent]:
    """The applied (not reverted) chain events of ``trade_id``, in chain order."""
    rows = await conn.fetch(
        "SELECT payload::text AS payload, at_ms FROM settlement_chain_events"
        " WHERE trade_id = $1 AND NOT reverted ORDER BY block_number, log_index",
        trade_id,
    )
    return [StoredEvent(_event_dec.decode(r["payload"].encode()), r["at_ms"]) for r in rows]


async def get_cursor(conn: Conn, escrow_address: str) -> BlockRef | None:
    """The last processed block for ``escrow_address``, or None before the first."""
    r = await conn.fetchrow(
        "SELECT block_number, block_hash FROM settlement_cursor WHERE escrow_address = $1",
        escrow_address,
    )
    return None if r is None else BlockRef(r["block_number"], r["block_hash"])


async def set_cursor(
    conn: Conn, escrow_address: str, block: BlockRef, seen: Iterable[BlockRef], now_ms: int
) -> None:
    """Move the cursor to ``block``; remember the hashes of ``seen`` blocks (and ``block``),
    forget those above ``block`` (a rollback) and those older than :data:`BLOCK_HISTORY`."""
    await conn.execute(
        "INSERT INTO settlement_cursor (escrow_address, block_number, block_hash, updated_ms)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (escrow_address) DO UPDATE SET"
        " block_number = $2, block_hash = $3, updated_ms = $4",
        escrow_address,
        block.number,
        block.hash,
        now_ms,
    )
    await conn.execute(
        "DELETE FROM settlement_blocks WHERE escrow_address = $1"
        " AND (block_number > $2 OR block_number <= $2 - $3)",
        escrow_address,
        block.number,
        BLOCK_HISTORY,
    )
    refs = {b.number: b.hash for b in seen}
    refs[block.number] = block.hash
    await conn.executemany(
        "INSERT INTO settlement_blocks (escrow_address, block_number, block_hash)"
        " VALUES ($1, $2, $3) ON CONFLICT (escrow_address, block_number)"
        " DO UPDATE SET block_hash = $3",
        [(escrow_address, n, h) for n, h in refs.items() if n > block.number - BLOCK_HISTORY],
    )


async def clear_cursor(conn: Conn, escrow_address: str) -> None:
    """Forget the cursor and the remembered blocks of ``escrow_address`` (a reorg deeper than
    every remembered block: the next pass starts again from the first block)."""
    await conn.execute("DELETE FROM settlement_cursor WHERE escrow_address = $1", escrow_address)
    await conn.execute("DELETE FROM settlement_blocks WHERE escrow_address = $1", escrow_address)


async def block_hashes(conn: Conn, escrow_address: str) -> list[BlockRef]:
    """The remembered processed blocks of ``escrow_address``, newest first."""
    rows = await conn.fetch(
        "SELECT block_number, block_hash FROM settlement_blocks WHERE escrow_address = $1"
        " ORDER BY block_number DESC",
        escrow_address,
    )
    return [BlockRef(r["block_number"], r["block_hash"]) for r in rows]


async def apply_reputation(conn: Conn, facts: Sequence[ReputationEvent], now_ms: int) -> set[str]:
    """Record (or, for retractions, delete) reputation facts and refresh the score of every
    user they concern (see :mod:`orrange.settlement.reputation`; the account's age counts
    from the user's first stored trade). Returns those users."""
    users: set[str] = set()
    for f in facts:
        users.add(f.user)
        if f.retract:
            await conn.execute(
                "DELETE FROM reputation_facts WHERE user_id = $1 AND trade_id = $2 AND kind = $3",
                f.user,
                f.trade_id,
                f.kind,
            )
        else:
            await conn.execute(
                "INSERT INTO reputation_facts (user_id, trade_id, kind, volume, at_ms, release_ms)"
                " VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (user_id, trade_id, kind) DO UPDATE"
                " SET volume = $4, at_ms = $5, release_ms = $6",
                f.user,
                f.trade_id,
                f.kind,
                f.volume,
                f.at_ms,
                f.release_ms,
            )
    for user in sorted(users):
        await _refresh(conn, user, now_ms)
    return users


async def _refresh(conn: Conn, user: str, now_ms: int) -> None:
    rows = await conn.fetch(
        "SELECT kind, volume, release_ms FROM reputation_facts WHERE user_id = $1", user
    )
    completed = [r for r in rows if r["kind"] == "completed"]
    stats = ReputationStats(
        completed=len(completed),
        volume=sum(r["volume"] for r in completed),
        disputes_lost=sum(1 for r in rows if r["kind"] == "dispute_lost"),
        timed_out=sum(1 for r in rows if r["kind"] == "timed_out"),
        median_release_ms=median(r["release_ms"] for r in completed if r["release_ms"] is not None),
    )
    created = await conn.fetchval(
        "SELECT min(created_ms) FROM settlement_trades WHERE buyer = $1 OR seller = $1", user
    )
    created_ms = now_ms if created is None else int(created)
    await conn.execute(
        "INSERT INTO reputations (user_id, score, completed, volume, disputes_lost, timed_out,"
        " median_release_ms, account_created_ms, updated_ms) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"
        " ON CONFLICT (user_id) DO UPDATE SET score = $2, completed = $3, volume = $4,"
        " disputes_lost = $5, timed_out = $6, median_release_ms = $7, account_created_ms = $8,"
        " updated_ms = $9",
        user,
        score(stats, now_ms - created_ms),
        stats.completed,
        stats.volume,
        stats.disputes_lost,
        stats.timed_out,
        stats.median_release_ms,
        created_ms,
        now_ms,
    )


async def reputation_of(conn: Conn, user: str) -> tuple[int, ReputationStats] | None:
    """``user``'s stored ``(score, stats)``, or None for a user without settled trades."""
    r = await conn.fetchrow("SELECT * FROM reputations WHERE user_id = $1", user)
    if r is None:
        return None
    stats = ReputationStats(
        completed=r["completed"],
        volume=r["volume"],
        disputes_lost=r["disputes_lost"],
        timed_out=r["timed_out"],
        median_release_ms=r["median_release_ms"],
    )
    return r["score"], stats


async def user_reputation(conn: Conn, user: str) -> int:
    """``user``'s stored score, or :data:`~orrange.settlement.reputation.NEW_USER_SCORE`."""
    got = await conn.fetchval("SELECT score FROM reputations WHERE user_id = $1", user)
    return NEW_USER_SCORE if got is None else int(got)


async def add_message(
    conn: Conn, trade_id: str, sender: str, role: str, body: str, ts: int
) -> MessageRecord:
    """Append a chat message to ``trade_id`` (which must exist) and return it."""
    r = await conn.fetchrow(
        "INSERT INTO trade_messages (trade_id, sender, role, body, ts) VALUES ($1,$2,$3,$4,$5)"
        " RETURNING id",
        trade_id,
        sender,
        role,
        body,
        ts,
    )
    return MessageRecord(r["id"], trade_id, sender, role, body, ts)


async def list_messages(
    conn: Conn, trade_id: str, *, after_id: int = 0, limit: int = 100
) -> list[MessageRecord]:
    """The chat of ``trade_id`` in order: at most ``limit`` messages with id > ``after_id``."""
    rows = await conn.fetch(
        "SELECT id, trade_id, sender, role, body, ts FROM trade_messages"
        " WHERE trade_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        trade_id,
        after_id,
        limit,
    )
    return [MessageRecord(*r.values()) for r in rows]
