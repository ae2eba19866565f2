"""LedgerWriter and the ledger queries on a real PostgreSQL: entries stored exactly once,
balances equal to the fold of the entries, keyset pagination and filters, withdrawals through
their decision and their end, one account never seeing another's."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import asyncpg
import pytest

from orrange.ledger import Entry, EntryKind, Posting
from orrange.store import migrate
from orrange.store.ledger import (
    LedgerWriter,
    balances,
    ledger_page,
    totals,
    withdrawal,
    withdrawals,
)
from orrange.store.queries import InvalidCursorError
from orrange.wire.funds import WithdrawalDecision

E18 = 10**18
T0 = 1_700_000_000_000
USERS = ("alice", "bob", "carol")
ASSETS = ("USDT", "BTC")
WID = "0x" + "ab" * 32
TX = "0x" + "cd" * 32


@pytest.fixture
async def writer(database_url: str) -> AsyncIterator[LedgerWriter]:
    """A writer on a migrated database; its ``conn`` serves the queries too."""
    w = LedgerWriter(await asyncpg.connect(database_url))
    await migrate(w.conn)
    yield w
    await w.conn.close()


def _entry(seq: int, kind: EntryKind, *postings: Posting, ref: str = "", detail: str = "") -> Entry:
    return Entry(
        id=f"funds:{seq}:0",
        kind=kind,
        source="funds",
        seq=seq,
        n=0,
        ts=T0 + seq,
        ref=ref,
        postings=postings,
        detail=detail,
    )


def _random_entries(n: int, seed: int = 1) -> list[Entry]:
    """Deposits, holds, releases, fills and fees among USERS, each conserving every asset;
    18-decimal amounts far above 2**63 (the numeric columns)."""
    rng = random.Random(seed)
    bal = {(u, a): [0, 0] for u in USERS for a in ASSETS}
    out: list[Entry] = []
    for seq in range(1, n + 1):
        u, a = rng.choice(USERS), rng.choice(ASSETS)
        avail, held = bal[(u, a)]
        step = rng.random()
        if step < 0.3 or avail == 0:
            x = rng.randint(1, 50) * E18 + rng.randint(0, E18)
            e = _entry(seq, EntryKind.DEPOSIT, Posting("@vault", a, -x, 0), Posting(u, a, x, 0))
            bal[(u, a)][0] += x
        elif step < 0.55:
            x = rng.randint(1, avail)
            e = _entry(seq, EntryKind.HOLD, Posting(u, a, -x, x), ref=f"BTC-USDT:{seq}")
            bal[(u, a)][0] -= x
            bal[(u, a)][1] += x
        elif step < 0.7 and held:
            x = rng.randint(1, held)
            e = _entry(seq, EntryKind.RELEASE, Posting(u, a, x, -x), ref=f"BTC-USDT:{seq}")
            bal[(u, a)][0] += x
            bal[(u, a)][1] -= x
        elif step < 0.9 and held:
            v = rng.choice([w for w in USERS if w != u])
            x = rng.randint(1, held)
            e = _entry(seq, EntryKind.FILL, Posting(u, a, 0, -x), Posting(v, a, x, 0))
            bal[(u, a)][1] -= x
            bal[(v, a)][0] += x
        else:
            x = rng.randint(1, avail)
            e = _entry(seq, EntryKind.FEE, Posting(u, a, -x, 0), Posting("@fees", a, x, 0))
            bal[(u, a)][0] -= x
        out.append(e)
    return out


def _fold(entries: list[Entry]) -> dict[tuple[str, str], tuple[int, int]]:
    acc: dict[tuple[str, str], list[int]] = {}
    for e in entries:
        for p in e.postings:
            b = acc.setdefault((p.account, p.asset), [0, 0])
            b[0] += p.available
            b[1] += p.held
    return {k: (v[0], v[1]) for k, v in acc.items()}


async def _stored(conn: asyncpg.Connection) -> dict[tuple[str, str], tuple[int, int]]:
    rows = await conn.fetch("SELECT account, asset, available, held FROM balances")
    return {(r["account"], r["asset"]): (int(r["available"]), int(r["held"])) for r in rows}


async def test_balances_are_the_fold_of_the_entries(writer: LedgerWriter) -> None:
    conn = writer.conn
    entries = _random_entries(600)
    written = 0
    for i in range(0, len(entries), 97):
        written += (await writer.write(entries[i : i + 97])).entries
    assert written == len(entries)
    assert await _stored(conn) == _fold(entries)
    assert max(a for a, _ in _fold(entries).values()) > 2**63  # numeric, not bigint
    n_postings = sum(len(e.postings) for e in entries)
    assert await conn.fetchval("SELECT count(*) FROM ledger_postings") == n_postings
    for asset in ASSETS:
        t = await totals(conn, asset)
        assert t.balanced
        assert t.deposits == -t.vault > 0 and t.withdrawals == 0 and t.fees >= 0


async def test_the_same_batches_again_change_nothing(writer: LedgerWriter) -> None:
    conn = writer.conn
    entries = _random_entries(400, seed=2)
    for i in range(0, len(entries), 50):
        await writer.write(entries[i : i + 50])
    before = await _stored(conn)
    # a restarted persister (a new writer), other batch boundaries, duplicates in a batch
    again = LedgerWriter(conn)
    for i in range(0, len(entries), 33):
        batch = entries[i : i + 33]
        res = await again.write(batch + batch[:5])
        assert (res.entries, res.postings, res.balances) == (0, 0, 0)
    assert await _stored(conn) == before == _fold(entries)
    # a batch half old, half new applies the new half only
    more = _random_entries(450, seed=2)[400:]
    res = await again.write(entries[-20:] + more)
    assert res.entries == len(more)
    assert await _stored(conn) == _fold(_random_entries(450, seed=2))


async def test_ledger_pages_newest_first_with_filters(writer: LedgerWriter) -> None:
    conn = writer.conn
    entries = _random_entries(300, seed=3)
    await writer.write(entries)
    mine = [e for e in entries if any(p.account == "alice" for p in e.postings)]
    seen: list[str] = []
    before = None
    while True:
        page = await ledger_page(conn, "alice", before=before, limit=17)
        seen += [e.id for e in page.items]
        for e in page.items:
            assert e.postings and all(p.asset in ASSETS for p in e.postings)
        if page.next_cursor is None:
            break
        before = page.next_cursor
    assert seen == [e.id for e in sorted(mine, key=lambda e: e.ts, reverse=True)]
    # only alice's postings of each entry, with their exact deltas
    by_id = {e.id: e for e in mine}
    page = await ledger_page(conn, "alice", limit=1000)
    for got in page.items:
        want = [p for p in by_id[got.id].postings if p.account == "alice"]
        assert [(p.asset, p.available, p.held) for p in got.postings] == [
            (p.asset, p.available, p.held) for p in want
        ]
    fills = await ledger_page(conn, "alice", kind="fill", limit=1000)
    assert {e.id for e in fills.items} == {e.id for e in mine if e.kind == EntryKind.FILL}
    btc = await ledger_page(conn, "alice", asset="BTC", kind="deposit", limit=1000)
    assert {e.id for e in btc.items} == {
        e.id
        for e in mine
        if e.kind == EntryKind.DEPOSIT and any(p.asset == "BTC" for p in e.postings)
    }
    assert (await ledger_page(conn, "nobody")).items == []
    with pytest.raises(InvalidCursorError):
        await ledger_page(conn, "alice", before="!!not-a-cursor")
    with pytest.raises(ValueError):
        await ledger_page(conn, "alice", limit=0)


async def test_accounts_see_only_their_own(writer: LedgerWriter) -> None:
    conn = writer.conn
    entries = _random_entries(200, seed=4)
    await writer.write(entries)
    for user in USERS:
        page = await ledger_page(conn, user, limit=1000)
        for got in page.items:
            src = next(e for e in entries if e.id == got.id)
            assert any(p.account == user for p in src.postings)
        assert {b.account for b in await balances(conn, user)} == {user}


def _decision(status: str, ts: int, **kw: object) -> WithdrawalDecision:
    args: dict[str, object] = {
        "withdrawal_id": WID,
        "user": "alice",
        "asset": "USDT",
        "amount": 3 * E18,
        "to": "0x" + "11" * 20,
        "expiry": 1_700_003_600,
        "status": status,
        "ts": ts,
    }
    args.update(kw)
    return WithdrawalDecision(**args)  # type: ignore[arg-type]


async def test_withdrawal_decision_then_confirmation(writer: LedgerWriter) -> None:
    conn = writer.conn
    deposit = _entry(
        1,
        EntryKind.DEPOSIT,
        Posting("@vault", "USDT", -5 * E18, 0),
        Posting("alice", "USDT", 5 * E18, 0),
    )
    requested = _entry(
        2, EntryKind.WITHDRAWAL_REQUESTED, Posting("alice", "USDT", -3 * E18, 3 * E18), ref=WID
    )
    authorized = _decision(
        "authorized",
        T0 + 2,
        token="0x" + "22" * 20,
        vault="0x" + "33" * 20,
        chain_id=31337,
        signature="0x" + "44" * 65,
    )
    res = await writer.write([deposit, requested], [authorized])
    assert (res.entries, res.decisions) == (2, 1)
    w = await withdrawal(conn, "alice", WID)
    assert w is not None and w.status == "authorized" and w.amount == 3 * E18
    assert w.signature == "0x" + "44" * 65 and w.chain_id == 31337
    assert await withdrawal(conn, "bob", WID) is None
    confirmed = _entry(
        3,
        EntryKind.WITHDRAWAL_CONFIRMED,
        Posting("alice", "USDT", 0, -3 * E18),
        Posting("@vault", "USDT", 3 * E18, 0),
        ref=WID,
        detail=TX,
    )
    assert (await writer.write([confirmed])).withdrawals_ended == 1
    # the decision redelivered after the confirmation does not reopen it
    await writer.write([deposit, requested, confirmed], [authorized])
    w = await withdrawal(conn, "alice", WID)
    assert w is not None and (w.status, w.tx_hash, w.updated_ts) == ("confirmed", TX, T0 + 3)
    assert [(b.asset, b.available, b.held) for b in await balances(conn, "alice")] == [
        ("USDT", 2 * E18, 0)
    ]
    t = await totals(conn, "USDT")
    assert (t.deposits, t.withdrawals, t.users_available, t.vault) == (
        5 * E18,
        3 * E18,
        2 * E18,
        -2 * E18,
    )
    assert t.balanced


async def test_withdrawal_lists_are_mine_and_paginated(writer: LedgerWriter) -> None:
    conn = writer.conn
    ids = [f"0x{i:064x}" for i in range(1, 8)]
    decisions = [
        _decision("rejected" if i % 3 == 0 else "authorized", T0 + i, withdrawal_id=wid)
        for i, wid in enumerate(ids)
    ]
    decisions.append(_decision("authorized", T0 + 99, withdrawal_id="0x" + "ee" * 32, user="bob"))
    await writer.write([], decisions)
    seen: list[str] = []
    before = None
    while True:
        page = await withdrawals(conn, "alice", before=before, limit=3)
        assert all(w.account == "alice" for w in page.items)
        seen += [w.withdrawal_id for w in page.items]
        if page.next_cursor is None:
            break
        before = page.next_cursor
    assert seen == ids[::-1]
    rejected = await withdrawals(conn, "alice", status="rejected")
    assert [w.withdrawal_id for w in rejected.items] == [ids[6], ids[3], ids[0]]
    assert [w.withdrawal_id for w in (await withdrawals(conn, "bob")).items] == ["0x" + "ee" * 32]
