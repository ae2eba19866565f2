"""The ledger in PostgreSQL: risk's entries, the balances they add up to, the withdrawals.

:meth:`LedgerWriter.write` stores one batch of ``LEDGER`` messages in **one** transaction,
exactly once: entries (:class:`orrange.ledger.Entry`) are keyed by their ``id``
(``<source>:<seq>:<n>``) and only those actually inserted (``ON CONFLICT (id) DO NOTHING
RETURNING``) add their postings to ``ledger_postings`` and their summed deltas to
``balances``, so writing a batch again changes nothing. Withdrawal decisions
(:class:`orrange.wire.funds.WithdrawalDecision`) upsert ``withdrawals`` (``authorized`` or
``rejected``); a new ``withdrawal_confirmed`` or ``withdrawal_returned`` entry (``ref`` = the
withdrawal id) moves its authorized withdrawal to ``confirmed`` or ``returned``, which a
redelivered decision never undoes; a confirmation whose ``detail`` is a transaction hash
(``0x`` + 64 hex) stores it as the withdrawal's ``tx_hash``.

The read queries take a pool or a connection (:data:`orrange.store.queries.Db`). Amounts are
integers of the asset's base units, times ms UTC (``expiry``: chain time, s since the epoch).
Lists are newest first with keyset pagination: a :class:`~orrange.store.queries.Page` carries
``next_cursor``, opaque, to pass back as ``before``.

Errors: :class:`~orrange.store.queries.InvalidCursorError` and :class:`ValueError` (a
``limit`` outside 1..1000) are the caller's mistakes; database errors are asyncpg's.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from orrange.ledger import Entry
from orrange.store.queries import MAX_LIMIT, Db, InvalidCursorError, Page
from orrange.wire.funds import WithdrawalDecision

__all__ = [
    "AccountEntry",
    "AccountPosting",
    "BalanceRecord",
    "LedgerTotals",
    "LedgerWriteResult",
    "LedgerWriter",
    "WithdrawalRecord",
    "balances",
    "ledger_page",
    "totals",
    "withdrawal",
    "withdrawals",
]

_ENTRY_COLUMNS = ("id", "kind", "source", "seq", "n", "ts", "ref", "detail")
_POSTING_COLUMNS = ("entry_id", "idx", "account", "asset", "available", "held", "ts", "kind")

_PREPARE = (
    "CREATE TEMP TABLE IF NOT EXISTS tmp_ledger_entries (LIKE ledger_entries) "
    "ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS tmp_ledger_postings (LIKE ledger_postings) "
    "ON COMMIT DELETE ROWS",
)

# One statement: the new entries, their postings, and the balances moved by their summed
# deltas. The postings' foreign key is checked at the end of the statement, when the entries
# of the first step are there.
_INSERT = """
WITH new AS (
    INSERT INTO ledger_entries SELECT * FROM tmp_ledger_entries
    ON CONFLICT (id) DO NOTHING
    RETURNING id, kind, ref, ts, detail
), posted AS (
    INSERT INTO ledger_postings
    SELECT p.* FROM tmp_ledger_postings p JOIN new ON p.entry_id = new.id
    RETURNING account, asset, available, held, ts
), moved AS (
    INSERT INTO balances (account, asset, available, held, updated_ts)
    SELECT account, asset, sum(available), sum(held), max(ts) FROM posted
    GROUP BY account, asset
    ON CONFLICT (account, asset) DO UPDATE SET
        available = balances.available + EXCLUDED.available,
        held = balances.held + EXCLUDED.held,
        updated_ts = greatest(balances.updated_ts, EXCLUDED.updated_ts)
    RETURNING 1
)
SELECT id, kind, ref, ts, detail, (SELECT count(*) FROM posted) AS postings,
       (SELECT count(*) FROM moved) AS balances
FROM new
"""

_UPSERT_DECISION = """
INSERT INTO withdrawals (withdrawal_id, account, asset, amount, to_address, expiry, status,
    token, vault, chain_id, signature, reason, message, requested_ts, updated_ts)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)
ON CONFLICT (withdrawal_id) DO UPDATE SET
    status = EXCLUDED.status, token = EXCLUDED.token, vault = EXCLUDED.vault,
    chain_id = EXCLUDED.chain_id, signature = EXCLUDED.signature, reason = EXCLUDED.reason,
    message = EXCLUDED.message, updated_ts = EXCLUDED.updated_ts
WHERE withdrawals.status NOT IN ('confirmed', 'returned')
"""

#: entry kind -> the withdrawal status it ends in
_WITHDRAWAL_ENDS = {"withdrawal_confirmed": "confirmed", "withdrawal_returned": "returned"}
_END_WITHDRAWAL = """
UPDATE withdrawals SET status = $2, updated_ts = greatest(updated_ts, $3), tx_hash = $4
WHERE withdrawal_id = $1 AND status = 'authorized'
"""
_TX_HASH = re.compile(r"0x[0-9a-f]{64}")


class LedgerWriteResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one :meth:`LedgerWriter.write` stored (0 everywhere for a pure redelivery).

    Attributes:
        entries: new rows of ``ledger_entries``.
        postings: new rows of ``ledger_postings``.
        balances: rows of ``balances`` inserted or moved.
        decisions: rows of ``withdrawals`` inserted or updated by decisions.
        withdrawals_ended: withdrawals moved to ``confirmed`` or ``returned``.
    """

    entries: int = 0
    postings: int = 0
    balances: int = 0
    decisions: int = 0
    withdrawals_ended: int = 0


def _entry_row(e: Entry) -> tuple[object, ...]:
    return (e.id, str(e.kind), e.source, e.seq, e.n, e.ts, e.ref, e.detail)


class LedgerWriter:
    """Writes batches of ledger entries and withdrawal decisions over one connection.

    Args:
        conn: a connection to a migrated database (:func:`orrange.store.migrate`), used only
            by this writer (it holds temporary tables).
    """

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._prepared = False

    async def write(
        self, entries: Sequence[Entry], decisions: Sequence[WithdrawalDecision] = ()
    ) -> LedgerWriteResult:
        """Store ``entries`` and ``decisions`` atomically and exactly once.

        Decisions are applied first, so a batch holding a decision and the end of its
        withdrawal ends it.

        Raises:
            asyncpg.PostgresError, OSError: the database refused or the connection broke;
                nothing of the batch is stored.
            asyncpg.DataError: a value does not fit its column (bad input).
        """
        conn = self.conn
        if not self._prepared:
            for sql in _PREPARE:
                await conn.execute(sql)
            self._prepared = True
        unique: dict[str, Entry] = {}
        for e in entries:
            unique.setdefault(e.id, e)
        async with conn.transaction():
            n_decisions = 0
            for d in decisions:
                status = await conn.execute(
                    _UPSERT_DECISION,
                    d.withdrawal_id,
                    d.user,
                    d.asset,
                    d.amount,
                    d.to,
                    d.expiry,
                    d.status,
                    d.token,
                    d.vault,
                    d.chain_id,
                    d.signature,
                    d.reason,
                    d.message,
                    d.ts,
                )
                n_decisions += int(status.rsplit(" ", 1)[1])
            if not unique:
                return LedgerWriteResult(decisions=n_decisions)
            await conn.copy_records_to_table(
                "tmp_ledger_entries",
                records=[_entry_row(e) for e in unique.values()],
                columns=_ENTRY_COLUMNS,
            )
            postings = [
                (e.id, i, p.account, p.asset, p.available, p.held, e.ts, str(e.kind))
                for e in unique.values()
                for i, p in enumerate(e.postings)
            ]
            if postings:
                await conn.copy_records_to_table(
                    "tmp_ledger_postings", records=postings, columns=_POSTING_COLUMNS
                )
            new = await conn.fetch(_INSERT)
            ended = 0
            for r in new:
                end = _WITHDRAWAL_ENDS.get(r["kind"])
                if end is not None:
                    detail = r["detail"]
                    tx_hash = detail if _TX_HASH.fullmatch(detail) else ""
                    status = await conn.execute(_END_WITHDRAWAL, r["ref"], end, r["ts"], tx_hash)
                    ended += int(status.rsplit(" ", 1)[1])
        return LedgerWriteResult(
            entries=len(new),
            postings=new[0]["postings"] if new else 0,
            balances=new[0]["balances"] if new else 0,
            decisions=n_decisions,
            withdrawals_ended=ended,
        )


# --------------------------------------------------------------------------------- queries


class BalanceRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A row of ``balances``: ``available`` and ``held`` base units of ``asset``, last moved
    at ``updated_ts`` (ms UTC)."""

    account: str
    asset: str
    available: int
    held: int
    updated_ts: int


class AccountPosting(msgspec.Struct, frozen=True, kw_only=True):
    """One account's change in one entry: ``available`` and ``held`` deltas, base units."""

    asset: str
    available: int
    held: int


class AccountEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A ledger entry as one account sees it: the entry's fields and that account's
    postings only (the other side of a transfer is not shown)."""

    id: str
    kind: str
    source: str
    seq: int
    n: int
    ts: int
    ref: str
    detail: str
    postings: list[AccountPosting]


class WithdrawalRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A row of ``withdrawals``.

    ``status``: ``authorized``, ``rejected``, ``confirmed`` or ``returned``;
    ``amount`` base units; ``expiry`` chain time (s); ``requested_ts``/``updated_ts`` ms UTC;
    ``signature`` the EIP-712 authorization as 0x hex (empty unless authorized).
    """

    withdrawal_id: str
    account: str
    asset: str
    amount: int
    to_address: str
    expiry: int
    status: str
    token: str
    vault: str
    chain_id: int
    signature: str
    reason: str
    message: str
    tx_hash: str
    requested_ts: int
    updated_ts: int


class LedgerTotals(msgspec.Struct, frozen=True, kw_only=True):
    """The audit figures of one asset in PostgreSQL, base units.

    Attributes:
        asset: the asset code.
        users_available, users_held: sums over the users' (non-``@``) accounts.
        fees: the ``@fees`` balance.
        p2p_escrow: the sum of the ``@p2p:*`` balances.
        loss: the ``@loss`` balance (the exchange's loss on reorged deposits).
        vault: the ``@vault`` balance (minus what the chain holds for the ledger).
        faucet: the ``@faucet`` balance (minus the development credits).
        deposits: confirmed deposits net of reversed ones (``deposit`` and
            ``deposit_reversed`` postings of ``@vault``).
        withdrawals: confirmed withdrawals (``withdrawal_confirmed`` postings of ``@vault``).
        entries: ledger entries with a posting in the asset.
    """

    asset: str
    users_available: int
    users_held: int
    fees: int
    p2p_escrow: int
    loss: int
    vault: int
    faucet: int
    deposits: int
    withdrawals: int
    entries: int

    @property
    def balanced(self) -> bool:
        """Conservation: the users' funds, fees, escrows and the loss account equal what
        came in minus what went out (``-(vault + faucet)``), and the vault's balance equals
        its deposit and withdrawal postings."""
        inside = self.users_available + self.users_held + self.fees + self.p2p_escrow + self.loss
        return inside == -(self.vault + self.faucet) and -self.vault == (
            self.deposits - self.withdrawals
        )


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")


def _cursor(ts: int, key: str) -> str:
    return base64.urlsafe_b64encode(f"{ts}.{key}".encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, key = raw.split(".", 1)
        return int(ts), key
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursorError(f"invalid cursor {cursor!r}") from exc


def _keyset(
    account: str,
    equal: dict[str, str | None],
    order: tuple[str, str],
    before: str | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """The WHERE clause and arguments of a page of ``account``'s rows, newest first by the
    ``order`` columns (a time and a unique key): the ``equal`` columns that are not None, the
    rows before the cursor ``before``, and ``limit + 1`` as the last argument."""
    _check_limit(limit)
    where = ["account = $1"]
    args: list[Any] = [account]
    for column, value in equal.items():
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    if before is not None:
        ts, key = _uncursor(before)
        args += [ts, key]
        where.append(f"({order[0]}, {order[1]}) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    return " AND ".join(where), args


async def balances(db: Db, account: str) -> list[BalanceRecord]:
    """Every balance of ``account``, by asset code."""
    rows = await db.fetch(
        "SELECT account, asset, available, held, updated_ts FROM balances "
        "WHERE account = $1 ORDER BY asset",
        account,
    )
    return [
        BalanceRecord(
            account=r["account"],
            asset=r["asset"],
            available=int(r["available"]),
            held=int(r["held"]),
            updated_ts=r["updated_ts"],
        )
        for r in rows
    ]


async def ledger_page(
    db: Db,
    account: str,
    *,
    asset: str | None = None,
    kind: str | None = None,
    before: str | None = None,
    limit: int = 100,
) -> Page[AccountEntry]:
    """The entries with a posting of ``account``, newest first (``ts``, then ``id``).

    Args:
        asset: only entries moving ``account``'s balance of this asset (all of the account's
            postings of such an entry are returned).
        kind: only entries of this kind.
        before: ``next_cursor`` of the previous page.
        limit: 1..1000 entries.

    Raises:
        ValueError: ``limit`` out of range. InvalidCursorError: a malformed ``before``.
    """
    where, args = _keyset(
        account, {"asset": asset, "kind": kind}, ("ts", "entry_id"), before, limit
    )
    ids = await db.fetch(
        f"SELECT entry_id, ts FROM ledger_postings WHERE {where} "
        f"GROUP BY ts, entry_id ORDER BY ts DESC, entry_id DESC LIMIT ${len(args)}",
        *args,
    )
    more = len(ids) > limit
    ids = ids[:limit]
    if not ids:
        return Page([], None)
    rows = await db.fetch(
        "SELECT e.id, e.kind, e.source, e.seq, e.n, e.ts, e.ref, e.detail, "
        "p.asset, p.available, p.held "
        "FROM ledger_entries e JOIN ledger_postings p ON p.entry_id = e.id "
        "WHERE e.id = ANY($1::text[]) AND p.account = $2 "
        "ORDER BY e.ts DESC, e.id DESC, p.idx",
        [r["entry_id"] for r in ids],
        account,
    )
    out: list[AccountEntry] = []
    for r in rows:
        if not out or out[-1].id != r["id"]:
            out.append(
                AccountEntry(
                    id=r["id"],
                    kind=r["kind"],
                    source=r["source"],
                    seq=r["seq"],
                    n=r["n"],
                    ts=r["ts"],
                    ref=r["ref"],
                    detail=r["detail"],
                    postings=[],
                )
            )
        out[-1].postings.append(
            AccountPosting(asset=r["asset"], available=int(r["available"]), held=int(r["held"]))
        )
    last = out[-1]
    return Page(out, _cursor(last.ts, last.id) if more else None)


_WITHDRAWAL_SELECT = (
    "SELECT withdrawal_id, account, asset, amount, to_address, expiry, status, token, vault, "
    "chain_id, signature, reason, message, tx_hash, requested_ts, updated_ts FROM withdrawals"
)


def _withdrawal(r: Any) -> WithdrawalRecord:
    d = dict(r)
    d["amount"] = int(d["amount"])
    return msgspec.convert(d, WithdrawalRecord)


async def withdrawals(
    db: Db,
    account: str,
    *,
    status: str | None = None,
    before: str | None = None,
    limit: int = 100,
) -> Page[WithdrawalRecord]:
    """The withdrawals of ``account``, newest first (``requested_ts``, then id); ``status``
    keeps one status only; ``before`` is the previous page's ``next_cursor``.

    Raises:
        ValueError: ``limit`` out of range. InvalidCursorError: a malformed ``before``.
    """
    order = ("requested_ts", "withdrawal_id")
    where, args = _keyset(account, {"status": status}, order, before, limit)
    rows = await db.fetch(
        f"{_WITHDRAWAL_SELECT} WHERE {where} "
        f"ORDER BY requested_ts DESC, withdrawal_id DESC LIMIT ${len(args)}",
        *args,
    )
    out = [_withdrawal(r) for r in rows[:limit]]
    if len(rows) > limit:
        return Page(out, _cursor(out[-1].requested_ts, out[-1].withdrawal_id))
    return Page(out, None)


async def withdrawal(db: Db, account: str, withdrawal_id: str) -> WithdrawalRecord | None:
    """The withdrawal ``withdrawal_id`` of ``account``; None if there is none or it belongs
    to another account (callers answer both alike)."""
    r = await db.fetchrow(
        f"{_WITHDRAWAL_SELECT} WHERE withdrawal_id = $1 AND account = $2",
        withdrawal_id,
        account,
    )
    return None if r is None else _withdrawal(r)


_TOTALS = """
SELECT
    coalesce(sum(available) FILTER (WHERE account NOT LIKE '@%'), 0) AS users_available,
    coalesce(sum(held) FILTER (WHERE account NOT LIKE '@%'), 0) AS users_held,
    coalesce(sum(available + held) FILTER (WHERE account = '@fees'), 0) AS fees,
    coalesce(sum(available + held) FILTER (WHERE account LIKE '@p2p:%'), 0) AS p2p_escrow,
    coalesce(sum(available + held) FILTER (WHERE account = '@loss'), 0) AS loss,
    coalesce(sum(available + held) FILTER (WHERE account = '@vault'), 0) AS vault,
    coalesce(sum(available + held) FILTER (WHERE account = '@faucet'), 0) AS faucet
FROM balances WHERE asset = $1
"""
_VAULT_FLOWS = """
SELECT
    coalesce(-sum(available) FILTER (WHERE kind IN ('deposit', 'deposit_reversed')), 0)
        AS deposits,
    coalesce(sum(available) FILTER (WHERE kind = 'withdrawal_confirmed'), 0) AS withdrawals
FROM ledger_postings WHERE account = '@vault' AND asset = $1
"""


async def totals(db: Db, asset: str) -> LedgerTotals:
    """The audit figures of ``asset`` (:class:`LedgerTotals`; zeros for an unknown asset)."""
    t = await db.fetchrow(_TOTALS, asset)
    f = await db.fetchrow(_VAULT_FLOWS, asset)
    n = await db.fetchval(
        "SELECT count(DISTINCT entry_id) FROM ledger_postings WHERE asset = $1", asset
    )
    assert t is not None and f is not None
    return LedgerTotals(
        asset=asset,
        **{k: int(v) for k, v in dict(t).items()},
        **{k: int(v) for k, v in dict(f).items()},
        entries=n,
    )
