"""Helpers of the store and persister tests: a real book run, table dumps, and the checks that
the tables say exactly what the book said.

The expectations are derived from the book itself (its fill events and its final open orders),
not from :mod:`orrange.matching.orders`, so they check the persister's derivation independently.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from orrange.matching.book import OrderBook
from orrange.matching.commands import AmendOrder, CancelOrder, Command, SubmitOrder
from orrange.matching.enums import OrderType, SelfTradePrevention, Side, TimeInForce
from orrange.matching.events import (
    BookDelta,
    Event,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
)
from orrange.matching.flow import BENCH_SPEC, synthetic_flow

SYMBOL = BENCH_SPEC.symbol
TABLES = ("orders", "order_events", "fills", "rejections")


@dataclass
class BookRun:
    """A synthetic flow run through a real book: its events (with their JSON) and the book."""

    book: OrderBook
    events: list[Event]
    payloads: list[bytes]

    def pairs(self) -> list[tuple[Event, bytes]]:
        return list(zip(self.events, self.payloads))


def _extra(book: OrderBook, rng: random.Random, ts: int, k: int) -> Command:
    """A command of a kind the synthetic flow lacks: amend, stop / take-profit, DAY order,
    decrement-and-cancel self-trade, post-only cross, client order ids."""
    live = book.open_orders()
    kind = rng.randrange(7)
    side = Side.BUY if rng.random() < 0.5 else Side.SELL
    ref = book.last_price or 10_000
    coid = f"x{k}"
    if kind == 0 and live:
        o = live[rng.randrange(len(live))]
        if o.price is not None and rng.random() < 0.5:
            return AmendOrder(ts=ts, user=o.user, order_id=o.order_id, price=o.price + 1)
        return AmendOrder(ts=ts, user=o.user, order_id=o.order_id, quantity=o.filled + 1)
    if kind == 1:
        up = side is Side.BUY
        limit = rng.random() < 0.5
        return SubmitOrder(
            ts=ts,
            user=f"u{rng.randrange(50)}",
            side=side,
            quantity=rng.randint(1, 5),
            order_type=OrderType.STOP_LIMIT if limit else OrderType.STOP_MARKET,
            price=ref + (3 if up else -3) if limit else None,
            trigger_price=ref + (2 if up else -2),
            client_order_id=coid,
        )
    if kind == 2:
        dist = rng.randint(1, 30)
        return SubmitOrder(
            ts=ts,
            user=f"u{rng.randrange(50)}",
            side=side,
            quantity=rng.randint(1, 5),
            price=ref - dist if side is Side.BUY else ref + dist,
            tif=TimeInForce.DAY,
            expire_at=ts + rng.randint(1, 40),
            client_order_id=coid,
        )
    if kind == 3 and live:
        o = live[rng.randrange(len(live))]
        if o.price is not None and not o.pending:
            return SubmitOrder(
                ts=ts,
                user=o.user,
                side=Side.SELL if o.side is Side.BUY else Side.BUY,
                quantity=rng.randint(1, max(1, o.leaves - 1)),
                price=o.price,
                stp=SelfTradePrevention.DECREMENT_AND_CANCEL,
                client_order_id=coid,
            )
    if kind == 4:
        best = book.best_ask() if side is Side.BUY else book.best_bid()
        if best is not None:
            return SubmitOrder(
                ts=ts,
                user="poster",
                side=side,
                quantity=1,
                price=best,
                post_only=True,
                client_order_id=coid,
            )
    if kind == 5:
        return SubmitOrder(
            ts=ts,
            user=f"u{rng.randrange(50)}",
            side=side,
            quantity=rng.randint(1, 3),
            order_type=OrderType.MARKET,
            tif=TimeInForce.IOC,
            client_order_id=coid,
        )
    return CancelOrder(ts=ts, user="nobody", order_id=10**9 + k)


def book_run(n: int, seed: int = 7) -> BookRun:
    """Run ``n`` commands of :func:`synthetic_flow` on a book, then ``n // 4`` of
    :func:`_extra` (so amends, triggers, expiries, decrements and rejections occur too)."""
    book = OrderBook(BENCH_SPEC)
    rng = random.Random(seed)
    events: list[Event] = []
    ts = 0
    for cmd in synthetic_flow(n, seed):
        events += book.process(cmd)
        ts = cmd.ts
    for k in range(n // 4):
        ts += 1
        events += book.process(_extra(book, rng, ts, k))
    payloads = [msgspec.json.encode(e) for e in events]
    return BookRun(book, events, payloads)


async def dump(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the engine's tables, sorted (for before/after equality)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table in TABLES:
        rows = await conn.fetch(f"SELECT * FROM {table}")
        out[table] = sorted(tuple(r.values()) for r in rows)
    return out


async def check_matches_book(conn: asyncpg.Connection, run: BookRun) -> None:
    """The tables hold exactly what ``run``'s book said (AssertionError otherwise)."""
    events = run.events
    fills = [e for e in events if isinstance(e, OrderFilled)]
    rows = await conn.fetch(
        "SELECT symbol, seq, ts, maker_order_id, taker_order_id, maker_user, taker_user, price,"
        " quantity, aggressor, maker_fee, taker_fee, payment_methods FROM fills ORDER BY seq"
    )
    assert [tuple(r.values()) for r in rows] == [
        (
            f.symbol,
            f.seq,
            f.ts,
            f.maker_order_id,
            f.taker_order_id,
            f.maker_user,
            f.taker_user,
            f.price,
            f.quantity,
            f.aggressor.value,
            f.maker_fee,
            f.taker_fee,
            list(f.payment_methods),
        )
        for f in fills
    ]

    stored = await conn.fetch("SELECT symbol, seq, type, payload::text FROM order_events")
    expected_events = {(e.symbol, e.seq): e for e in events if not isinstance(e, BookDelta)}
    assert len(stored) == len(expected_events)
    for r in stored:
        assert msgspec.json.decode(r[3], type=Event) == expected_events[(r[0], r[1])]
        # the audit trail holds the event's JSON exactly as encoded (not a normalised form)
        assert r[3] == msgspec.json.encode(expected_events[(r[0], r[1])]).decode()
        assert r[2] == type(expected_events[(r[0], r[1])]).__struct_config__.tag

    book_rejections = [e for e in events if isinstance(e, OrderRejected)]
    rej = await conn.fetch("SELECT id, reason FROM rejections WHERE source = 'book' ORDER BY seq")
    assert [(r[0], r[1]) for r in rej] == [
        (f"{e.symbol}:{e.seq}", e.reason) for e in book_rejections
    ]

    accepted = {e.order_id: e for e in events if isinstance(e, OrderAccepted)}
    filled: dict[int, int] = defaultdict(int)
    for f in fills:
        filled[f.maker_order_id] += f.quantity
        filled[f.taker_order_id] += f.quantity
    ended: dict[int, str] = {}
    for e in events:
        if isinstance(e, OrderCanceled) and e.leaves == 0:
            ended[e.order_id] = "canceled"
        elif isinstance(e, OrderExpired):
            ended[e.order_id] = "expired"
    orders = {
        r["order_id"]: r
        for r in await conn.fetch("SELECT * FROM orders WHERE symbol = $1", run.book.symbol)
    }
    assert set(orders) == set(accepted)
    live = {v.order_id: v for v in run.book.open_orders()}
    for oid, r in orders.items():
        a = accepted[oid]
        assert (r["user_id"], r["client_order_id"], r["side"], r["order_type"], r["tif"]) == (
            a.user,
            a.client_order_id,
            a.side.value,
            a.order_type.value,
            a.tif.value,
        )
        assert r["created_ts"] == a.ts
        assert r["filled"] == filled[oid]
        v = live.get(oid)
        if v is not None:
            assert (r["price"], r["trigger_price"], r["quantity"], r["leaves"]) == (
                v.price,
                v.trigger_price,
                v.quantity,
                v.leaves,
            )
            want = "pending" if v.pending else ("partially_filled" if v.filled else "new")
            assert r["status"] == want
        else:
            assert r["leaves"] == 0
            assert r["status"] == ended.get(oid, "filled")
            if r["status"] == "filled":
                assert r["filled"] == r["quantity"]
