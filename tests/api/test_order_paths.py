"""The API's answer to a submit and a later GET of the same order agree, for every event type.

A real book runs commands that produce every event type (fills, user, IOC, self-trade
decrement and cancel, expiry, trigger, amend, rejection, deltas, halt/resume). Each command's
events are one ``evt.<SYM>`` message: the API path gives them to its
:class:`~orrange.api.commands.CommandWaiters` (a submit waits for its answer, an
:class:`~orrange.api.commands.OrderTracker`) and the persister path writes them with the
:class:`~orrange.store.EventWriter`; after every command each order's representation from its
tracker equals the one built from its row and fills read back through the store's queries.
"""

from __future__ import annotations

import asyncpg
import msgspec

from orrange.api.commands import CommandWaiters, OrderTracker
from orrange.api.schemas import OrderOut, fill_out, order_out
from orrange.matching import (
    AdvanceTime,
    AmendOrder,
    BookDelta,
    BookStatus,
    CancelOrder,
    Command,
    Event,
    Halt,
    OrderAccepted,
    OrderAmended,
    OrderBook,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderTriggered,
    OrderType,
    Resume,
    SelfTradePrevention,
    Side,
    SubmitOrder,
    TimeInForce,
)
from orrange.matching.flow import BENCH_SPEC
from orrange.store import EventWriter, migrate
from orrange.store.queries import get_order, order_fills

SPEC = BENCH_SPEC
T0 = 1_700_000_000_000
BUY, SELL = Side.BUY, Side.SELL
DC = SelfTradePrevention.DECREMENT_AND_CANCEL


def _commands() -> list[Command]:
    def sub(i: int, user: str, side: Side, qty: int, price: int | None, **kw: object) -> Command:
        return SubmitOrder(
            ts=T0 + i,
            user=user,
            side=side,
            quantity=qty,
            price=price,
            client_order_id=f"c{i}",
            **kw,
        )

    return [
        sub(1, "m", SELL, 10, 100),  # order 1 rests
        sub(2, "t", BUY, 4, 100),  # 2 fills 4 of 1
        sub(3, "m", BUY, 4, 100, stp=DC),  # decrement: 3 canceled (leaves 0), 1 open with 2
        sub(4, "s", SELL, 3, 101),  # 4 rests
        sub(5, "s", BUY, 8, 101, stp=DC),  # 5 fills 2 of 1, decrements 4 by 3, rests 3 @ 101
        sub(6, "d", SELL, 5, 110, tif=TimeInForce.DAY, expire_at=T0 + 1000),  # 6 rests
        AmendOrder(ts=T0 + 7, user="d", order_id=6, quantity=7, price=111),
        sub(8, "x", SELL, 6, 90, order_type=OrderType.STOP_LIMIT, trigger_price=95),  # 7 pending
        sub(9, "y", BUY, 2, 90),  # 8 rests
        sub(10, "z", SELL, 1, 90),  # 9 fills 1 of 5
        CancelOrder(ts=T0 + 11, user="s", order_id=5),
        sub(12, "w", SELL, 3, 95),  # 10 rests
        sub(13, "v", BUY, 5, 95),  # 11 fills 10, triggers 7, which fills 11 and 8 and rests
        sub(14, "i", BUY, 50, 200, tif=TimeInForce.IOC),  # 12 fills 7 and 6, IOC remainder
        sub(15, "r", BUY, 0, 100),  # rejected
        Halt(ts=T0 + 16),
        Resume(ts=T0 + 17),
        sub(18, "e", BUY, 2, 50, tif=TimeInForce.DAY, expire_at=T0 + 2000),  # 13 rests
        AdvanceTime(ts=T0 + 5000),  # 13 expires
    ]


async def _stored(conn: asyncpg.Connection, symbol: str, order_id: int) -> object:
    rec = await get_order(conn, order_id, user=(await _owner(conn, symbol, order_id)))
    assert rec is not None
    fills = await order_fills(conn, symbol, order_id, user=rec.user)
    return order_out(SPEC, rec, [fill_out(SPEC, f, order_id) for f in fills])


async def _owner(conn: asyncpg.Connection, symbol: str, order_id: int) -> str:
    user: str = await conn.fetchval(
        "SELECT user_id FROM orders WHERE symbol = $1 AND order_id = $2", symbol, order_id
    )
    return user


async def test_submit_answer_and_get_agree_for_every_event_type(database_url: str) -> None:
    book = OrderBook(SPEC)
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn)
        writer = EventWriter(conn)
        waiters = CommandWaiters({SPEC.symbol: SPEC})
        trackers: dict[int, OrderTracker] = {}
        answers: dict[int, OrderOut] = {}  # what a submit answers
        seen: set[type] = set()
        for cmd in _commands():
            submit = None
            if isinstance(cmd, SubmitOrder):
                submit = waiters.expect_submit(cmd.user, cmd.client_order_id)
            events: list[Event] = book.process(cmd)
            seen.update(type(ev) for ev in events)
            for ev in events:  # what the event hub does with one evt.<SYM> message
                waiters.on_event(ev)
            if submit is not None:
                outcome = submit.result()
                if isinstance(outcome, OrderTracker):
                    trackers[outcome.accepted.order_id] = outcome
                    answers[outcome.accepted.order_id] = outcome.out()
            # the persister
            await writer.write([(e, msgspec.json.encode(e)) for e in events])
            for oid, tracker in trackers.items():
                assert tracker.out() == await _stored(conn, SPEC.symbol, oid), (cmd, oid)
        assert sorted(trackers) == list(range(1, 14))  # every accepted order answered
        assert seen == {
            OrderAccepted,
            OrderRejected,
            OrderFilled,
            OrderCanceled,
            OrderExpired,
            OrderTriggered,
            OrderAmended,
            BookDelta,
            BookStatus,
        }
        # the two cases where the folds once differed: a submit answered after a self-trade
        # decrement of the new order (8 lots, 2 filled, 3 decremented: 5 in total, 3 open) and
        # an expiry (reason ``expired``)
        decremented = answers[5]
        assert (decremented.quantity, decremented.filled_quantity) == ("5", "2")
        assert (decremented.leaves_quantity, decremented.status) == ("3", "partially_filled")
        assert (trackers[13].out().status, trackers[13].out().reason) == ("expired", "expired")
    finally:
        await conn.close()
