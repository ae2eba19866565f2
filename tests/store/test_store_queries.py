"""The API's read queries on a real PostgreSQL, over events of real books."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import msgspec
import pytest

from orrange.matching.book import OrderBook
from orrange.matching.commands import CancelOrder, Command, SubmitOrder
from orrange.matching.enums import RejectReason, Side
from orrange.matching.events import Event, OrderAccepted, OrderFilled, OrderRejected
from orrange.matching.flow import BENCH_SPEC
from orrange.matching.orders import OrderStatus
from orrange.store import EventWriter, RiskRejection, migrate
from orrange.store.queries import (
    DAY_MS,
    AmbiguousOrderError,
    InvalidCursorError,
    NotOwnerError,
    client_order_status,
    get_order,
    list_open_orders,
    list_order_history,
    order_fills,
    recent_trades,
    ticker_24h,
)

A = BENCH_SPEC.symbol
B = "OTHER-USD"
T0 = 1_700_000_000_000


@dataclass
class World:
    conn: asyncpg.Connection
    books: dict[str, OrderBook]
    events: list[Event]
    ids: dict[str, int]  # client order id -> order id (book A unless noted)


def _run(book: OrderBook, cmds: list[Command], events: list[Event]) -> None:
    for c in cmds:
        events += book.process(c)


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    books = {A: OrderBook(BENCH_SPEC), B: OrderBook(msgspec.structs.replace(BENCH_SPEC, symbol=B))}
    events: list[Event] = []
    # alice: 25 bids 9000..9024, one a second apart
    _run(
        books[A],
        [
            SubmitOrder(
                ts=T0 + i * 1000,
                user="alice",
                side=Side.BUY,
                quantity=10,
                price=9000 + i,
                client_order_id=f"a{i}",
            )
            for i in range(25)
        ],
        events,
    )
    ids = {e.client_order_id: e.order_id for e in events if isinstance(e, OrderAccepted)}
    # bob sells 15: a24 filled (10 @ 9024), a23 partially (5 @ 9023); alice cancels a0
    _run(
        books[A],
        [
            SubmitOrder(ts=T0 + 100_000, user="bob", side=Side.SELL, quantity=15, price=9000),
            CancelOrder(ts=T0 + 200_000, user="alice", order_id=ids["a0"]),
            SubmitOrder(
                ts=T0 + 300_000,
                user="carol",
                side=Side.SELL,
                quantity=1,
                price=9000,
                post_only=True,
                client_order_id="p1",
            ),
            # a day later: 3 more @ 9023 from a23
            SubmitOrder(
                ts=T0 + DAY_MS + 50_000, user="bob", side=Side.SELL, quantity=3, price=9000
            ),
        ],
        events,
    )
    # alice in market B: order id 1 there too
    _run(
        books[B],
        [
            SubmitOrder(
                ts=T0 + 400_000,
                user="alice",
                side=Side.SELL,
                quantity=2,
                price=20_000,
                client_order_id="b0",
            )
        ],
        events,
    )
    conn = await asyncpg.connect(database_url)
    await migrate(conn)
    writer = EventWriter(conn)
    await writer.write([(e, msgspec.json.encode(e)) for e in events])
    risk = OrderRejected(
        A, 0, T0 + 500_000, 0, "alice", "r1", "submit", RejectReason.RATE_LIMITED, ""
    )
    await writer.write((), [RiskRejection("rej:alice:r1", risk)])
    try:
        yield World(conn, books, events, ids)
    finally:
        await conn.close()


async def test_open_orders_paginate_newest_first(world: World) -> None:
    db = world.conn
    seen = []
    cursor = None
    sizes = []
    while True:
        page = await list_open_orders(db, "alice", limit=10, cursor=cursor)
        sizes.append(len(page.items))
        seen += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sizes == [10, 10, 4]
    keys = [(o.created_ts, o.symbol, o.order_id) for o in seen]
    assert keys == sorted(keys, reverse=True)
    live = {(s, v.order_id): v for s, b in world.books.items() for v in b.open_orders("alice")}
    assert {(o.symbol, o.order_id) for o in seen} == set(live)
    for o in seen:
        v = live[(o.symbol, o.order_id)]
        assert (o.price, o.quantity, o.leaves, o.filled) == (
            v.price,
            v.quantity,
            v.leaves,
            v.filled,
        )
        assert o.status is (OrderStatus.PARTIALLY_FILLED if v.filled else OrderStatus.NEW)
    only_b = await list_open_orders(db, "alice", symbol=B)
    assert [(o.symbol, o.client_order_id) for o in only_b.items] == [(B, "b0")]
    assert (await list_open_orders(db, "bob")).items == []


async def test_history_filters_and_pages(world: World) -> None:
    db = world.conn
    everything = await list_order_history(db, "alice", symbol=A, limit=1000)
    assert len(everything.items) == 25 and everything.next_cursor is None
    first = await list_order_history(db, "alice", symbol=A, limit=20)
    rest = await list_order_history(db, "alice", symbol=A, limit=20, cursor=first.next_cursor)
    assert first.items + rest.items == everything.items
    assert rest.next_cursor is None
    filled = await list_order_history(db, "alice", statuses=[OrderStatus.FILLED])
    assert [o.client_order_id for o in filled.items] == ["a24"]
    assert filled.items[0].filled == filled.items[0].quantity == 10
    canceled = await list_order_history(db, "alice", statuses=["canceled"])  # type: ignore[list-item]
    assert [(o.client_order_id, o.reason, o.leaves) for o in canceled.items] == [("a0", "user", 0)]
    with pytest.raises(InvalidCursorError):
        await list_order_history(db, "alice", cursor="not a cursor")
    with pytest.raises(ValueError):
        await list_open_orders(db, "alice", limit=0)


async def test_get_order_checks_the_owner(world: World) -> None:
    db = world.conn
    a23 = await get_order(db, world.ids["a23"], user="alice", symbol=A)
    assert a23 is not None
    assert (a23.status, a23.filled, a23.leaves, a23.price) == (
        OrderStatus.PARTIALLY_FILLED,
        8,
        2,
        9023,
    )
    with pytest.raises(NotOwnerError):
        await get_order(db, world.ids["a23"], user="mallory", symbol=A)
    with pytest.raises(NotOwnerError):
        await get_order(db, world.ids["a23"], user="mallory")
    assert await get_order(db, 10**9, user="alice", symbol=A) is None
    assert await get_order(db, 10**9, user="alice") is None
    with pytest.raises(AmbiguousOrderError):
        await get_order(db, 1, user="alice")  # alice's order 1 of A and of B
    only_a = await get_order(db, world.ids["a20"], user="alice")
    assert only_a is not None and only_a.client_order_id == "a20"
    fills = await order_fills(db, A, world.ids["a23"], user="alice")
    assert [(f.price, f.quantity, f.taker_user) for f in fills] == [
        (9023, 5, "bob"),
        (9023, 3, "bob"),
    ]
    with pytest.raises(NotOwnerError):
        await order_fills(db, A, world.ids["a23"], user="bob")


async def test_recent_trades_and_ticker(world: World) -> None:
    db = world.conn
    fills = [e for e in world.events if isinstance(e, OrderFilled)]
    assert [(f.price, f.quantity) for f in fills] == [(9024, 10), (9023, 5), (9023, 3)]
    newest = await recent_trades(db, A, limit=2)
    assert [t.seq for t in newest] == [fills[2].seq, fills[1].seq]
    assert all(t.aggressor is Side.SELL for t in newest)
    older = await recent_trades(db, A, limit=2, before_seq=newest[-1].seq)
    assert [t.seq for t in older] == [fills[0].seq]
    assert await recent_trades(db, B) == []

    t = await ticker_24h(db, A, T0 + DAY_MS + 60_000)
    assert (t.open, t.high, t.low, t.last, t.volume, t.count) == (9024, 9024, 9023, 9023, 18, 3)
    assert t.quote_volume == 9024 * 10 + 9023 * 8
    assert (t.from_ts, t.to_ts) == (T0 + 60_000, T0 + DAY_MS + 60_000)
    later = await ticker_24h(db, A, T0 + DAY_MS + 200_000)
    assert (later.open, later.last, later.volume, later.quote_volume, later.count) == (
        9023,
        9023,
        3,
        9023 * 3,
        1,
    )
    empty = await ticker_24h(db, B, T0 + DAY_MS)
    assert (empty.open, empty.high, empty.low, empty.last) == (None, None, None, None)
    assert (empty.volume, empty.quote_volume, empty.count) == (0, 0, 0)


async def test_client_order_status(world: World) -> None:
    db = world.conn
    filled = await client_order_status(db, "alice", "a24")
    assert filled is not None and filled.status is OrderStatus.FILLED
    assert filled.order is not None and filled.order.order_id == world.ids["a24"]
    risk = await client_order_status(db, "alice", "r1")
    assert risk is not None and risk.status is OrderStatus.REJECTED and risk.order is None
    assert risk.rejection is not None
    assert (risk.rejection.source, risk.rejection.reason) == ("risk", RejectReason.RATE_LIMITED)
    book = await client_order_status(db, "carol", "p1", symbol=A)
    assert book is not None and book.rejection is not None
    assert (book.rejection.source, book.rejection.reason) == (
        "book",
        RejectReason.POST_ONLY_WOULD_CROSS,
    )
    assert await client_order_status(db, "carol", "p1", symbol=B) is None
    assert await client_order_status(db, "alice", "nope") is None
