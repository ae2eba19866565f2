"""The fan-out pieces alone: per-client conflation and queue bound, the hub's de-duplication
and gap handling (a real nats-server; no matcher answers, so a resync reports the book
unavailable to its subscribers)."""

from __future__ import annotations

import json

import nats
from kit.api_stack import SPEC, SYM
from kit.wait import wait_for

from orrange.api._metrics import ApiMetrics
from orrange.api.commands import CommandWaiters
from orrange.api.fanout import OrderChannel, TickerChannel, TradeChannel
from orrange.api.hub import EventHub
from orrange.api.mirrors import BookMirrors
from orrange.api.schemas import TickerOut
from orrange.api.subscriber import Subscriber
from orrange.markets import MarketSpec
from orrange.matching import BookDelta, OrderAccepted, OrderType, Side, TimeInForce


def test_book_deltas_are_conflated_per_level_with_a_seq_chain() -> None:
    sub = Subscriber(max_queue=8)
    sub.channels.add(f"book.{SYM}")
    sub.book_snapshot(f"book.{SYM}", SYM, b"{}", 10)
    for seq, (side, price, size) in enumerate(
        [(Side.BUY, 100, 5), (Side.BUY, 100, 7), (Side.SELL, 110, 1), (Side.BUY, 99, 0)], 11
    ):
        sub.book_delta(SPEC, side, price, size, seq)
    first = sub.take_delta(SYM)
    assert first is not None
    msg = json.loads(first)
    assert (msg["prev_seq"], msg["seq"]) == (10, 14)
    assert msg["bids"] == [["1.00", "7"], ["0.99", "0"]]
    assert msg["asks"] == [["1.10", "1"]]
    assert sub.take_delta(SYM) is None
    sub.book_delta(SPEC, Side.SELL, 110, 0, 20)
    second = json.loads(sub.take_delta(SYM) or b"")
    assert (second["prev_seq"], second["seq"], second["asks"]) == (14, 20, [["1.10", "0"]])


def test_a_full_queue_closes_the_client_with_a_reason() -> None:
    closed: list[str] = []
    sub = Subscriber(max_queue=3)
    sub.on_close = lambda s: closed.append(s.closed or "")
    for i in range(3):
        sub.enqueue(b"%d" % i)
    assert sub.closed is None and len(sub.queue) == 3
    sub.enqueue(b"one too many")
    assert sub.closed is not None and sub.closed.startswith("slow consumer")
    assert closed == [sub.closed] and not sub.queue
    sub.enqueue(b"ignored")
    assert not sub.queue


def _accepted(seq: int, user: str = "u", cid: str = "c") -> OrderAccepted:
    return OrderAccepted(
        symbol=SYM,
        seq=seq,
        ts=seq,
        order_id=seq,
        user=user,
        client_order_id=cid,
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        tif=TimeInForce.GTC,
        price=100,
        trigger_price=None,
        quantity=1,
        pending=False,
    )


async def _no_ticker(spec: MarketSpec) -> tuple[TickerOut, int]:
    raise LookupError("no ticker in this test")


async def test_hub_dedups_and_resyncs_on_a_gap(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    metrics = ApiMetrics()
    markets = {SYM: SPEC}
    commands = CommandWaiters(markets)
    books = BookMirrors(markets, metrics, query_timeout_s=0.5)
    await books.start(nc)
    hub = EventHub(
        nc,
        metrics,
        commands=commands,
        books=books,
        trades=TradeChannel(markets),
        tickers=TickerChannel(markets, _no_ticker, 1.0),
        orders=OrderChannel(markets),
    )
    try:
        fut = commands.expect_submit("u", "c")
        hub.dispatch(_accepted(1))
        tracker = fut.result()
        assert tracker.accepted.order_id == 1 and tracker.record.status == "new"
        # a redelivered event is dropped: no second resolution, no sequence change
        fut2 = commands.expect_submit("u", "c")
        hub.dispatch(_accepted(1))
        assert not fut2.done() and hub.seen_seq(SYM) == 1
        commands.forget_submit("u", "c")

        # a client following the book: the mirror cannot sync (no matcher) -> an error
        sub = Subscriber(max_queue=16)
        assert books.subscribe(sub, f"book.{SYM}") is None
        await wait_for(lambda: bool(sub.queue), "the book_unavailable error")
        err = json.loads(sub.queue.popleft())
        assert (err["type"], err["reason"]) == ("error", "book_unavailable")
        assert f"book.{SYM}" not in sub.channels

        # a gap in the sequence is counted (and would resync a ready mirror)
        hub.dispatch(BookDelta(symbol=SYM, seq=5, ts=5, side=Side.BUY, price=1, size=1))
        assert hub.seen_seq(SYM) == 5
        assert b"orrange_api_event_gaps_total 1.0" in metrics.render()
        assert await hub.wait_seq(SYM, 5, 0.1)
    finally:
        await hub.stop()
        await books.stop()
        await nc.close()
