"""PostgreSQL queries of the vault watcher and the funds audit (migrations ``0008_ledger``,
``0009_vault_watcher``).

The watcher (:mod:`orrange.engine.vault_watcher`) writes ``vault_events`` (every vault log it
took at the confirmation depth), ``deposits`` (the credited ones, ``confirmed`` or
``reversed``) and ``vault_withdrawal_outcomes`` (what it published about each withdrawal);
its cursor is the vault address's row of ``settlement_cursor`` (:mod:`orrange.store.settlement`
``get_cursor``/``set_cursor``). It reads ``withdrawals`` (written by the persister). The audit
(``orrange audit``) reads :func:`audit_figures`.

Amounts are exact integers of base units (``numeric`` columns), times ms UTC, block numbers
and expiries as stored. Every function takes a connection (or pool) and runs one or a few
statements; callers wrap several in a transaction. Errors propagate as
``asyncpg.PostgresError``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from orrange.wire.funds import DepositConfirmed

__all__ = [
    "AssetFigures",
    "LiveLog",
    "audit_figures",
    "confirm_deposit",
    "due_expiries",
    "live_logs_after",
    "mark_reverted",
    "outcome_of",
    "record_log",
    "record_outcome",
    "reverse_deposit",
]

Conn = Any  # asyncpg.Connection, a pool connection or a pool


class LiveLog(msgspec.Struct, frozen=True):
    """A stored, not reverted vault log: ``event_id``, ``kind`` (``deposited``,
    ``withdrawn``, ``withdrawal_canceled``), ``block_number``, ``withdrawal_id`` ('' for a
    deposit), ``note`` ('' when it credited someone) and ``revision``."""

    event_id: str
    kind: str
    block_number: int
    withdrawal_id: str
    note: str
    revision: int


async def record_log(
    conn: Conn,
    *,
    event_id: str,
    kind: str,
    block_number: int,
    log_index: int,
    tx_hash: str,
    withdrawal_id: str,
    note: str,
    at_ms: int,
    payload: bytes,
) -> int | None:
    """Store a confirmed vault log (``payload``: its JSON). Returns its revision: 0 when new,
    one more than before when it was reverted and is back (its block is canonical again);
    None when it is already stored and live (nothing to do)."""
    got = await conn.fetchval(
        "INSERT INTO vault_events (event_id, kind, block_number, log_index, tx_hash,"
        " withdrawal_id, note, at_ms, payload) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9::jsonb)"
        " ON CONFLICT (event_id) DO UPDATE SET reverted = false,"
        " revision = vault_events.revision + 1 WHERE vault_events.reverted RETURNING revision",
        event_id,
        kind,
        block_number,
        log_index,
        tx_hash,
        withdrawal_id,
        note,
        at_ms,
        payload.decode(),
    )
    return None if got is None else int(got)


async def live_logs_after(conn: Conn, block_number: int) -> list[LiveLog]:
    """The live (not reverted) logs in blocks after ``block_number``, newest first."""
    rows = await conn.fetch(
        "SELECT event_id, kind, block_number, withdrawal_id, note, revision FROM vault_events"
        " WHERE NOT reverted AND block_number > $1 ORDER BY block_number DESC, log_index DESC",
        block_number,
    )
    return [LiveLog(*r.values()) for r in rows]


async def mark_reverted(conn: Conn, event_id: str) -> None:
    """Mark a vault log orphaned by a reorg."""
    await conn.execute("UPDATE vault_events SET reverted = true WHERE event_id = $1", event_id)


async def confirm_deposit(conn: Conn, d: DepositConfirmed) -> None:
    """Record the credited deposit ``d`` as ``confirmed`` (again, after a reversal)."""
    await conn.execute(
        "INSERT INTO deposits (event_id, account, asset, amount, sender, tx_hash, block_number,"
        " status, ts) VALUES ($1,$2,$3,$4,$5,$6,$7,'confirmed',$8)"
        " ON CONFLICT (event_id) DO UPDATE SET status = 'confirmed', ts = $8",
        d.event_id,
        d.account,
        d.asset,
        d.amount,
        d.sender,
        d.tx_hash,
        d.block_number,
        d.ts,
    )


async def reverse_deposit(conn: Conn, event_id: str, ts: int) -> None:
    """Mark the deposit ``event_id`` ``reversed`` (a reorg removed it)."""
    await conn.execute(
        "UPDATE deposits SET status = 'reversed', ts = $2 WHERE event_id = $1", event_id, ts
    )


async def outcome_of(conn: Conn, withdrawal_id: str) -> str | None:
    """``confirmed`` or ``expired``: what the watcher published about ``withdrawal_id``
    (None: nothing yet)."""
    got = await conn.fetchval(
        "SELECT outcome FROM vault_withdrawal_outcomes WHERE withdrawal_id = $1", withdrawal_id
    )
    return None if got is None else str(got)


async def record_outcome(
    conn: Conn, withdrawal_id: str, outcome: str, event_id: str, block_number: int, at_ms: int
) -> None:
    """Record that ``withdrawal_id`` is ``confirmed`` or ``expired`` (``event_id``: the log's,
    or '' for an expiry by time)."""
    await conn.execute(
        "INSERT INTO vault_withdrawal_outcomes (withdrawal_id, outcome, event_id, block_number,"
        " at_ms) VALUES ($1,$2,$3,$4,$5)",
        withdrawal_id,
        outcome,
        event_id,
        block_number,
        at_ms,
    )


async def due_expiries(conn: Conn, chain_time_s: int) -> list[str]:
    """Withdrawal ids that risk authorized (``withdrawals.status = 'authorized'``) whose
    ``expiry`` (unix s) is before ``chain_time_s`` and about which the watcher published
    nothing yet, by expiry."""
    rows = await conn.fetch(
        "SELECT w.withdrawal_id FROM withdrawals w WHERE w.status = 'authorized'"
        " AND w.expiry < $1 AND NOT EXISTS (SELECT 1 FROM vault_withdrawal_outcomes o"
        " WHERE o.withdrawal_id = w.withdrawal_id) ORDER BY w.expiry, w.withdrawal_id",
        chain_time_s,
    )
    return [str(r["withdrawal_id"]) for r in rows]


class AssetFigures(msgspec.Struct, kw_only=True):
    """One asset's figures in PostgreSQL, base units.

    Attributes:
        users: users' ``available + held`` (accounts not starting with ``@``).
        fees: ``@fees``; ``p2p``: every ``@p2p:*``; ``vault``: ``@vault`` (minus what came in
            through the chain and was not withdrawn); ``faucet``: ``@faucet``; ``loss``:
            ``@loss``; ``other``: any other ``@`` account.
        deposits: confirmed deposits (``deposits``); ``withdrawals``: confirmed withdrawals
            (``withdrawals``).
    """

    users: int = 0
    fees: int = 0
    p2p: int = 0
    vault: int = 0
    faucet: int = 0
    loss: int = 0
    other: int = 0
    deposits: int = 0
    withdrawals: int = 0


def _bucket(account: str) -> str:
    if not account.startswith("@"):
        return "users"
    if account.startswith("@p2p:"):
        return "p2p"
    name = account[1:]
    return name if name in ("fees", "vault", "faucet", "loss") else "other"


async def audit_figures(conn: Conn) -> dict[str, AssetFigures]:
    """Per asset: the ``balances`` summed by kind of account, and the confirmed deposits and
    withdrawals. Read in one repeatable-read snapshot when ``conn`` is a connection."""
    out: dict[str, AssetFigures] = {}

    def fig(asset: str) -> AssetFigures:
        return out.setdefault(asset, AssetFigures())

    balances = await conn.fetch(
        "SELECT account, asset, available + held AS total FROM balances ORDER BY asset, account"
    )
    for r in balances:
        f = fig(r["asset"])
        key = _bucket(r["account"])
        setattr(f, key, getattr(f, key) + int(r["total"]))
    for r in await conn.fetch(
        "SELECT asset, sum(amount) AS n FROM deposits WHERE status = 'confirmed' GROUP BY asset"
    ):
        fig(r["asset"]).deposits = int(r["n"])
    for r in await conn.fetch(
        "SELECT asset, sum(amount) AS n FROM withdrawals WHERE status = 'confirmed' GROUP BY asset"
    ):
        fig(r["asset"]).withdrawals = int(r["n"])
    return out
