"""The matcher actor on a real nats-server: events, book queries, dead letters, snapshot/restore.

The matcher runs in the test's event loop here; ``test_matcher_kill.py`` runs it as a real
process and kills it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import dataclasses

import msgspec
import nats
from kit.matcher_events import SYM, last_seq, pure_events, read_events
from kit.wait import wait_for
from nats.aio.client import Client as NATS
from nats.js.api import DiscardPolicy

from orrange.engine.matcher import BookQuery, Matcher, MatcherSnapshot
from orrange.matching import Command, L2Book, OrderBook, Side, SubmitOrder
from orrange.matching.flow import BENCH_SPEC, synthetic_flow
from orrange.runtime import ActorConfig, Publisher, ensure_stream
from orrange.wire.engine import (
    BOOK_IN,
    EVENTS,
    SNAPSHOT_BUCKET,
    book_in_messages,
    book_in_subject,
    book_query_subject,
    decode_book_in,
)

MARKETS = {SYM: BENCH_SPEC}


async def publish_commands(nc: NATS, cmds: list[Command], first_id: int = 0) -> None:
    pub = Publisher(nc)
    for i, c in enumerate(cmds):
        await pub.submit(book_in_subject(SYM), c, msg_id=f"test:{first_id + i}")
    await pub.flush()


def make_matcher(url: str, **kw: int) -> Matcher:
    cfg = ActorConfig(name="matcher", nats_url=url, metrics_port=None, batch_size=200)
    return Matcher(cfg, MARKETS, [SYM], **kw)


async def test_events_queries_and_dead_letters(nats_url: str) -> None:
    cmds = synthetic_flow(2_000, seed=7)
    expected = pure_events(cmds)
    nc = await nats.connect(nats_url)
    matcher = make_matcher(nats_url)
    try:
        await matcher.start()
        await publish_commands(nc, cmds[:1000])
        # bad input in the middle: undecodable, and a decodable command of an unknown shape
        await nc.jetstream().publish(book_in_subject(SYM), b"{not json", headers=None)
        await nc.jetstream().publish(book_in_subject(SYM), b'{"type":"submit","ts":"x"}')
        await publish_commands(nc, cmds[1000:], first_id=1000)
        n = len(expected)

        async def done() -> bool:
            return await last_seq(nc) >= n

        await wait_for(done, "all events")
        assert await read_events(nc) == expected
        dlq = await nc.jetstream().stream_info("DLQ")
        assert dlq.state.messages == 2

        pure = OrderBook(BENCH_SPEC)
        pure.process_many(cmds)
        reply = await nc.request(book_query_subject(SYM), msgspec.json.encode(BookQuery(5)))
        book = msgspec.json.decode(reply.data, type=L2Book)
        assert book == pure.depth(5)
        assert book.seq == n and len(book.bids) == 5
        reply = await nc.request(book_query_subject(SYM), b"")
        assert msgspec.json.decode(reply.data, type=L2Book) == pure.depth(10)
        reply = await nc.request(book_query_subject(SYM), b'{"depth": 0}')
        assert "depth" in msgspec.json.decode(reply.data)["error"]
        reply = await nc.request(book_query_subject(SYM), b"[1,")
        assert "error" in msgspec.json.decode(reply.data)
    finally:
        await matcher.stop()
        await nc.close()


async def test_snapshot_restore_and_resume(nats_url: str) -> None:
    cmds = synthetic_flow(3_000, seed=11)
    expected = pure_events(cmds)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        first = make_matcher(nats_url, snapshot_every=400)
        await first.start()
        await publish_commands(nc, cmds[:2000])
        n_first = len(pure_events(cmds[:2000]))

        async def first_done() -> bool:
            return await last_seq(nc) >= n_first

        await wait_for(first_done, "events of the first 2000 commands")
        await first.stop()  # a clean stop snapshots the book as applied
        assert first.snapshots_written >= 2

        kv = await js.key_value(SNAPSHOT_BUCKET)
        entry = await kv.get(SYM)
        assert entry.value is not None
        snap = msgspec.msgpack.decode(entry.value, type=MatcherSnapshot)
        bi = await js.stream_info(BOOK_IN.name)
        assert snap.in_seq == bi.state.last_seq
        assert snap.book_seq == n_first
        pure = OrderBook(BENCH_SPEC)
        pure.process_many(cmds[:2000])
        assert snap.restore(BENCH_SPEC).snapshot_state() == pure.snapshot_state()

        second = make_matcher(nats_url, snapshot_every=400)
        await second.start()
        try:
            # resumed from the snapshot: nothing before it is applied again
            assert second.applied_seq(SYM) == snap.in_seq
            assert second.book(SYM).snapshot_state() == pure.snapshot_state()
            await publish_commands(nc, cmds[2000:], first_id=2000)

            async def done() -> bool:
                return await last_seq(nc) >= len(expected)

            await wait_for(done, "all events")

            async def counted() -> bool:  # the counter moves after the batch's publishes
                return second.messages_in >= 1000

            await wait_for(counted, "the last batch to be counted")
            assert second.messages_in == 1000  # only the commands after the snapshot
        finally:
            await second.stop()
        assert await read_events(nc) == expected
    finally:
        await nc.close()


async def test_restore_ignores_a_snapshot_ahead_of_events(nats_url: str) -> None:
    """A snapshot newer than the last stored event (its events were lost) is not used."""
    cmds = synthetic_flow(500, seed=3)
    expected = pure_events(cmds)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        await ensure_stream(js, BOOK_IN)
        await ensure_stream(js, EVENTS)
        await publish_commands(nc, cmds)
        ahead = OrderBook(BENCH_SPEC)
        ahead.process_many(cmds[:300])
        kv = await js.create_key_value(bucket=SNAPSHOT_BUCKET, history=5)
        await kv.put(
            SYM,
            msgspec.msgpack.encode(
                MatcherSnapshot(SYM, 300, ahead.seq, 0, "none", ahead.snapshot())
            ),
        )
        matcher = make_matcher(nats_url)
        await matcher.start()
        try:
            assert matcher.applied_seq(SYM) < 300

            async def done() -> bool:
                return await last_seq(nc) >= len(expected)

            await wait_for(done, "all events")
        finally:
            await matcher.stop()
        assert await read_events(nc) == expected
    finally:
        await nc.close()


async def test_orders_rest_across_symbols(nats_url: str) -> None:
    """Two books in one shard stay independent (sequences, subjects)."""
    other = msgspec.structs.replace(BENCH_SPEC, symbol="OTHER-USD")
    cfg = ActorConfig(name="matcher", nats_url=nats_url, metrics_port=None)
    matcher = Matcher(cfg, {SYM: BENCH_SPEC, "OTHER-USD": other}, [SYM, "OTHER-USD"])
    nc = await nats.connect(nats_url)
    try:
        await matcher.start()
        pub = Publisher(nc)
        for sym, price in ((SYM, 100), ("OTHER-USD", 200)):
            cmd = SubmitOrder(ts=1, user="u", side=Side.BUY, quantity=3, price=price)
            await pub.publish(book_in_subject(sym), cmd, msg_id=f"{sym}:1")

        async def done() -> bool:
            return await last_seq(nc, "OTHER-USD") >= 2 and await last_seq(nc) >= 2

        await wait_for(done, "events of both books")
        for sym, price in ((SYM, 100), ("OTHER-USD", 200)):
            reply = await nc.request(book_query_subject(sym), b"")
            book = msgspec.json.decode(reply.data, type=L2Book)
            assert (book.symbol, book.bids, book.asks) == (sym, [(price, 3)], [])
    finally:
        await matcher.stop()
        await nc.close()


async def test_idle_book_is_snapshotted_by_the_timer(nats_url: str) -> None:
    cmds = synthetic_flow(30, seed=5)
    nc = await nats.connect(nats_url)
    matcher = make_matcher(nats_url, snapshot_every=1_000_000, snapshot_interval_ms=100)
    try:
        await matcher.start()
        await publish_commands(nc, cmds)
        kv = await nc.jetstream().key_value(SNAPSHOT_BUCKET)

        async def snapshotted() -> bool:
            try:
                entry = await kv.get(SYM)
            except nats.js.errors.KeyNotFoundError:
                return False
            snap = msgspec.msgpack.decode(entry.value or b"", type=MatcherSnapshot)
            return snap.in_seq == len(cmds)

        await wait_for(snapshotted, "a snapshot of the idle book")
        assert matcher.snapshots_written >= 1
        assert await last_seq(nc) == matcher.book(SYM).seq
    finally:
        await matcher.stop()
        await nc.close()


async def test_a_stop_requested_while_starting_is_kept(nats_url: str) -> None:
    """SIGTERM during start (e.g. a Ctrl-C of ``orrange up`` right after launch) stops the
    matcher once started instead of being forgotten."""
    matcher = make_matcher(nats_url)
    run = asyncio.create_task(matcher.run())
    matcher.request_stop()
    await asyncio.wait_for(run, 60)  # a hang guard: without the stop, run() never returns
    assert matcher.stopping
    matcher2 = make_matcher(nats_url)
    await matcher2.start()
    await matcher2.stop()
    await matcher2.start()  # a restart after stop() runs again
    assert not matcher2.stopping
    await matcher2.stop()


async def test_failed_publishes_are_retried_in_order(nats_url: str) -> None:
    """While EVENTS refuses writes the batches are nak'ed; once it accepts them again every
    event is stored once, in sequence order, and no command is applied twice."""
    cmds = synthetic_flow(1_000, seed=9)
    expected = pure_events(cmds)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    matcher = make_matcher(nats_url)
    try:
        await matcher.start()
        info = await js.stream_info(EVENTS.name)
        cfg = info.config
        await js.update_stream(dataclasses.replace(cfg, max_msgs=150, discard=DiscardPolicy.NEW))
        await publish_commands(nc, cmds)
        failures = matcher.metrics.batch_failures.labels("matcher", f"matcher-{SYM}")

        async def refused_twice() -> bool:
            return failures._value.get() >= 2

        await wait_for(refused_twice, "two refused batches")
        await js.update_stream(cfg)  # accept writes again

        async def done() -> bool:
            return await last_seq(nc) >= len(expected)

        await wait_for(done, "all events")
        assert await read_events(nc) == expected
        pure = OrderBook(BENCH_SPEC)
        pure.process_many(cmds)
        assert matcher.book(SYM).snapshot_state() == pure.snapshot_state()
    finally:
        await matcher.stop()
        await nc.close()


async def test_restore_skips_corrupt_and_ahead_revisions(nats_url: str) -> None:
    """The newest usable revision is restored: not a corrupt one, not one ahead of EVENTS."""
    cmds = synthetic_flow(700, seed=21)
    expected = pure_events(cmds)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        first = make_matcher(nats_url)
        await first.start()
        await publish_commands(nc, cmds[:500])
        n500 = len(pure_events(cmds[:500]))

        async def first_done() -> bool:
            return await last_seq(nc) >= n500

        await wait_for(first_done, "events of 500 commands")
        await first.stop()  # snapshot at in_seq 500
        kv = await js.key_value(SNAPSHOT_BUCKET)
        ahead = OrderBook(BENCH_SPEC)
        ahead.process_many(cmds[:600])
        await kv.put(
            SYM,
            msgspec.msgpack.encode(
                MatcherSnapshot(SYM, 600, ahead.seq, 0, "none", ahead.snapshot())
            ),
        )
        await kv.put(SYM, b"\x93garbage")
        await kv.put(
            SYM, msgspec.msgpack.encode(MatcherSnapshot(SYM, 400, 1, 0, "zlib", b"not zlib"))
        )
        second = make_matcher(nats_url)
        await second.start()
        try:
            assert second.applied_seq(SYM) == 500
            await publish_commands(nc, cmds[500:], first_id=500)

            async def done() -> bool:
                return await last_seq(nc) >= len(expected)

            await wait_for(done, "all events")
        finally:
            await second.stop()
        assert await read_events(nc) == expected
    finally:
        await nc.close()


def test_book_in_messages_split_by_size_and_decode_back() -> None:
    cmds = synthetic_flow(300, seed=3)
    items = [(i + 10, msgspec.json.encode(c)) for i, c in enumerate(cmds)]
    whole = book_in_messages(items)
    assert len(whole) == 1 and whole[0][1:] == (10, 309)
    assert decode_book_in(whole[0][0]) == [(i + 10, c) for i, c in enumerate(cmds)]
    parts = book_in_messages(items, max_bytes=2_000)
    assert len(parts) > 1 and all(len(p) <= 2_000 for p, _, _ in parts)
    assert [pair for p, _, _ in parts for pair in decode_book_in(p)] == decode_book_in(whole[0][0])
    assert [(a, b) for _, a, b in parts] == [
        (decode_book_in(p)[0][0], decode_book_in(p)[-1][0]) for p, _, _ in parts
    ]
    big = [(1, b'{"type":"clock","ts":' + b"1" * 50 + b"}")]
    assert book_in_messages(big, max_bytes=10)[0][1:] == (1, 1)  # too large alone: still sent
