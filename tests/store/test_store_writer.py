"""EventWriter on a real PostgreSQL: a real book's events stored exactly, idempotently, and
correctly even when batches arrive out of order."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import asyncpg
import pytest
from kit.store_expect import BookRun, book_run, check_matches_book, dump

from orrange.matching.enums import RejectReason
from orrange.matching.events import Event, OrderRejected
from orrange.store import EventWriter, RiskRejection, migrate


@pytest.fixture(scope="module")
def run() -> BookRun:
    return book_run(4000)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(database_url)
    await migrate(c)
    try:
        yield c
    finally:
        await c.close()


def _batches(run: BookRun, size: int) -> list[list[tuple[Event, bytes]]]:
    pairs = run.pairs()
    return [pairs[i : i + size] for i in range(0, len(pairs), size)]


async def test_a_book_run_is_stored_exactly(conn: asyncpg.Connection, run: BookRun) -> None:
    writer = EventWriter(conn)
    totals = [0, 0]
    for batch in _batches(run, 500):
        res = await writer.write(batch)
        totals[0] += res.events
        totals[1] += res.fills
        assert (res.rebuilt, res.orphans) == (0, 0)
    await check_matches_book(conn, run)
    n_fills = await conn.fetchval("SELECT count(*) FROM fills")
    assert totals == [await conn.fetchval("SELECT count(*) FROM order_events"), n_fills]


async def test_writing_everything_again_changes_nothing(
    conn: asyncpg.Connection, run: BookRun
) -> None:
    writer = EventWriter(conn)
    for batch in _batches(run, 700):
        await writer.write(batch)
    before = await dump(conn)
    # a fresh writer (a restarted persister), other batch boundaries, duplicates inside a batch
    again = EventWriter(conn)
    for batch in _batches(run, 333):
        res = await again.write(batch + batch[:10])
        assert (res.events, res.fills, res.orders, res.rejections) == (0, 0, 0, 0)
    assert await dump(conn) == before


async def test_batches_out_of_order_converge(conn: asyncpg.Connection, run: BookRun) -> None:
    writer = EventWriter(conn)
    for batch in _batches(run, 400):
        await writer.write(batch)
    expected = await dump(conn)
    await conn.execute("TRUNCATE orders, order_events, fills, rejections")

    shuffled = _batches(run, 250)
    random.Random(3).shuffle(shuffled)
    rebuilt = 0
    for batch in shuffled:
        rebuilt += (await writer.write(batch)).rebuilt
    assert rebuilt > 0
    assert await dump(conn) == expected
    await check_matches_book(conn, run)


async def test_risk_rejections_are_keyed_by_message_id(conn: asyncpg.Connection) -> None:
    writer = EventWriter(conn)
    rej = OrderRejected(
        "BTC-USD", 0, 1_700_000_000_000, 0, "alice", "c1", "submit", RejectReason.RATE_LIMITED, "x"
    )
    res = await writer.write((), [RiskRejection("rej:alice:c1", rej)])
    assert res.rejections == 1
    res = await writer.write((), [RiskRejection("rej:alice:c1", rej)] * 2)
    assert res.rejections == 0
    rows = await conn.fetch("SELECT id, source, user_id, client_order_id, reason FROM rejections")
    assert [tuple(r.values()) for r in rows] == [
        ("rej:alice:c1", "risk", "alice", "c1", "rate_limited")
    ]


async def test_a_bad_value_fails_the_whole_batch(conn: asyncpg.Connection, run: BookRun) -> None:
    writer = EventWriter(conn)
    good = run.pairs()[:50]
    bad = OrderRejected("BTC-USD", 1, 2**70, 0, "a", "", "submit", RejectReason.RATE_LIMITED, "")
    with pytest.raises((OverflowError, asyncpg.DataError)):
        await writer.write([*good, (bad, b"{}")])
    assert await conn.fetchval("SELECT count(*) FROM order_events") == 0
    await writer.write(good)
    assert await conn.fetchval("SELECT count(*) FROM order_events") > 0


async def test_a_fast_path_copy_that_collides_is_written_again_the_slow_way(
    conn: asyncpg.Connection, database_url: str, run: BookRun
) -> None:
    """Two writers on one database: the second one's watermark is stale, its straight COPY
    hits rows the first one stored, and the batch is written again without duplicates."""
    batches = _batches(run, 400)
    first = EventWriter(conn)
    other_conn = await asyncpg.connect(database_url)
    try:
        second = EventWriter(other_conn)
        await second.write(batches[0])  # second's watermark: the end of batch 0
        await first.write(batches[1])
        res = await second.write(batches[1] + batches[2])  # above its watermark: fast path
        stored_2 = await first.write(batches[2])
        assert res.events > 0 and stored_2.events == 0
        for batch in batches[3:]:
            await second.write(batch)
    finally:
        await other_conn.close()
    await check_matches_book(conn, run)
