"""The risk actor on a real nats-server: forwarding, every rejection, client order id
idempotency across restarts, rate limit, open-order cap driven by real ``evt.<SYM>`` events.

The actor runs in the test's event loop, except in the last test, which runs
``python -m actors.risk`` as a real process and stops it with SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import nats
import pytest
from kit.wait import wait_for
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import KeyNotFoundError

from actors.risk import load_risk_limits
from orrange.engine.risk import RiskActor
from orrange.markets import MarketSpec
from orrange.matching.commands import CancelOrder, Command, SubmitOrder
from orrange.matching.enums import CancelReason, OrderType, RejectReason, Side, TimeInForce
from orrange.matching.events import (
    Event,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
)
from orrange.risk import RiskLimits, client_order_key, generate_client_order_id
from orrange.runtime import ActorConfig, Publisher, ensure_stream
from orrange.settings import SettingsError
from orrange.wire.dlq import DLQ_STREAM
from orrange.wire.engine import (
    BOOK_IN,
    CLIENT_ORDERS_BUCKET,
    CMD,
    EVENTS,
    REJECTS,
    RISK_DURABLE,
    RISK_EVENTS_DURABLE,
    cmd_subject,
    events_subject,
)

ROOT = Path(__file__).resolve().parents[2]
SYM = "T-USD"
# tick 0.01 USD, lot 1 T: notional unit 0.01 USD; min notional 100 USD = 10000 units
SPEC = MarketSpec(
    symbol=SYM,
    base="T",
    quote="USD",
    tick_size="0.01",
    lot_size="1",
    min_qty="2",
    max_qty="1000",
    min_notional="100",
    price_band_bps=1000,
)
MARKETS = {SYM: SPEC}
T0 = 1_700_000_000_000

Msg = tuple[str, bytes, dict[str, str]]


@asynccontextmanager
async def running_risk(url: str, limits: RiskLimits | None = None) -> AsyncIterator[RiskActor]:
    actor = RiskActor(
        ActorConfig(name="risk", nats_url=url, metrics_port=None, fetch_timeout_ms=100),
        MARKETS,
        limits=limits,
    )
    await actor.start()
    try:
        yield actor
    finally:
        await actor.stop()


_pairs = msgspec.json.Decoder(list[tuple[int, msgspec.Raw]])


async def _applied(js: JetStreamContext) -> list[tuple[str, int, bytes]]:
    """``(subject, cmd_seq, command bytes)`` of every ``BOOK_IN`` pair the matcher would apply
    (a pair whose ``cmd_seq`` is not above the last one of its subject is skipped)."""
    info = await js.stream_info(BOOK_IN.name)
    out: list[tuple[str, int, bytes]] = []
    if info.state.messages == 0:
        return out
    last: dict[str, int] = {}
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        m = await js.get_msg(BOOK_IN.name, seq)
        subject = m.subject or ""
        for cmd_seq, raw in _pairs.decode(m.data or b""):
            if cmd_seq > last.get(subject, 0):
                last[subject] = cmd_seq
                out.append((subject, cmd_seq, bytes(raw)))
    return out


async def read_stream(nc: NATS, stream: str) -> list[Msg]:
    """Every message of ``stream`` as (subject, data, headers), in stream order.

    For ``BOOK_IN`` (batches of ``[cmd_seq, command]``), each command the matcher would apply
    is one entry, its data the command's exact bytes, its ``Nats-Msg-Id`` the one of the
    ``CMD`` message it came from (read back by ``cmd_seq``).
    """
    js = nc.jetstream()
    if stream == BOOK_IN.name:
        return [
            (subject, raw, dict((await js.get_msg(CMD.name, cmd_seq)).headers or {}))
            for subject, cmd_seq, raw in await _applied(js)
        ]
    info = await js.stream_info(stream)
    out: list[Msg] = []
    if info.state.messages == 0:
        return out
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        m = await js.get_msg(stream, seq)
        out.append((m.subject or "", m.data or b"", dict(m.headers or {})))
    return out


async def count(nc: NATS, stream: str) -> int:
    """Messages in ``stream``; for ``BOOK_IN``, the commands the matcher would apply."""
    js = nc.jetstream()
    if stream == BOOK_IN.name:
        return len(await _applied(js))
    return int((await js.stream_info(stream)).state.messages)


async def outputs(nc: NATS) -> int:
    return await count(nc, BOOK_IN.name) + await count(nc, REJECTS.name)


async def send(nc: NATS, items: list[tuple[Command | bytes, str]], symbol: str = SYM) -> list[Msg]:
    """Publish (command, msg id) pairs on ``cmd.order.<symbol>`` and wait until risk answered
    each one (a forward on BOOK_IN or a rejection on REJECTS, or a dead letter); returns the
    new outputs of BOOK_IN and REJECTS, in that order."""
    before_in = await count(nc, BOOK_IN.name)
    before_rej = await count(nc, REJECTS.name)
    before_dlq = await count(nc, DLQ_STREAM)
    pub = Publisher(nc)
    for cmd, msg_id in items:
        await pub.submit(cmd_subject(symbol), cmd, msg_id=msg_id)
    await pub.flush()
    target = before_in + before_rej + before_dlq + len(items)

    async def answered() -> bool:
        return await outputs(nc) + await count(nc, DLQ_STREAM) >= target

    await wait_for(answered, f"risk's answers to {len(items)} commands")
    book_in = (await read_stream(nc, BOOK_IN.name))[before_in:]
    rejects = (await read_stream(nc, REJECTS.name))[before_rej:]
    return book_in + rejects


async def publish_events(nc: NATS, events: list[Event]) -> None:
    """Publish book events on ``evt.<SYM>`` and wait until risk's consumer applied them."""
    js = nc.jetstream()
    await ensure_stream(js, EVENTS)
    pub = Publisher(nc)
    for e in events:
        await pub.submit(events_subject(e.symbol), e, msg_id=f"{e.symbol}:{e.seq}")
    await pub.flush()

    async def applied() -> bool:
        info = await js.consumer_info(EVENTS.name, RISK_EVENTS_DURABLE)
        return info.num_pending == 0 and info.num_ack_pending == 0

    await wait_for(applied, "risk-events drained")


def submit(
    cid: str = "", user: str = "alice", qty: int = 10, price: int | None = 10_000, ts: int = T0
) -> SubmitOrder:
    return SubmitOrder(
        ts=ts, user=user, side=Side.BUY, quantity=qty, price=price, client_order_id=cid
    )


def rejection(m: Msg) -> OrderRejected:
    subject, data, _ = m
    assert subject.startswith("rej.")
    rej = msgspec.json.decode(data, type=OrderRejected)
    assert rej.seq == 0 and rej.message
    return rej


def accepted(order_id: int, seq: int, user: str = "alice") -> OrderAccepted:
    return OrderAccepted(
        symbol=SYM,
        seq=seq,
        ts=T0,
        order_id=order_id,
        user=user,
        client_order_id=f"c{order_id}",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        tif=TimeInForce.GTC,
        price=10_000,
        trigger_price=None,
        quantity=10,
        pending=False,
    )


def canceled(order_id: int, seq: int, user: str = "alice") -> OrderCanceled:
    return OrderCanceled(
        symbol=SYM,
        seq=seq,
        ts=T0,
        order_id=order_id,
        user=user,
        reason=CancelReason.USER,
        canceled_qty=10,
        leaves=0,
    )


def filled(seq: int, price: int, maker: int = 99, taker: int = 98) -> OrderFilled:
    return OrderFilled(
        symbol=SYM,
        seq=seq,
        ts=T0,
        maker_order_id=maker,
        taker_order_id=taker,
        maker_user="mm",
        taker_user="tt",
        price=price,
        quantity=1,
        aggressor=Side.BUY,
        maker_fee=0,
        taker_fee=0,
        maker_leaves=0,
        taker_leaves=0,
        payment_methods=(),
    )


async def test_passes_through_and_rejects_each_reason(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        async with running_risk(nats_url):
            good = submit("c1")
            cancel = CancelOrder(ts=T0, user="alice", order_id=5)
            out = await send(nc, [(good, "alice:c1"), (cancel, "alice:r1")])
            assert [(s, h["Nats-Msg-Id"]) for s, _, h in out] == [
                ("book.in.T-USD", "alice:c1"),
                ("book.in.T-USD", "alice:r1"),
            ]
            assert out[0][1] == msgspec.json.encode(good)  # the original bytes, unchanged
            assert msgspec.json.decode(out[1][1], type=Command) == cancel

            bad = [
                (submit("q0", qty=0), RejectReason.INVALID_QUANTITY),
                (submit("q1", qty=1), RejectReason.BELOW_MIN_QTY),
                (submit("q2", qty=1001), RejectReason.ABOVE_MAX_QTY),
                (submit("p0", price=0), RejectReason.INVALID_PRICE),
                (submit("n0", qty=2, price=4_999), RejectReason.BELOW_MIN_NOTIONAL),
            ]
            out = await send(nc, [(c, f"alice:{c.client_order_id}") for c, _ in bad])
            assert [rejection(m).reason for m in out] == [r for _, r in bad]
            assert [m[2]["Nats-Msg-Id"] for m in out] == [
                f"rej:alice:{c.client_order_id}" for c, _ in bad
            ]
            assert [rejection(m).client_order_id for m in out] == ["q0", "q1", "q2", "p0", "n0"]

            (unknown,) = await send(nc, [(submit("u1"), "alice:u1")], symbol="NOPE-USD")
            rej = rejection(unknown)
            assert (unknown[0], rej.symbol, rej.reason) == (
                "rej.NOPE-USD",
                "NOPE-USD",
                RejectReason.UNKNOWN_MARKET,
            )

            # price band: none before the first trade, 1000 bps around it after
            (far,) = await send(nc, [(submit("b0", price=50_000), "alice:b0")])
            assert far[0] == "book.in.T-USD"
            await publish_events(nc, [filled(seq=1, price=10_000)])
            out = await send(
                nc,
                [
                    (submit("b1", price=11_001), "alice:b1"),
                    (submit("b2", price=11_000), "alice:b2"),
                ],
            )
            assert out[0][0] == "book.in.T-USD" and out[0][2]["Nats-Msg-Id"] == "alice:b2"
            assert rejection(out[1]).reason is RejectReason.PRICE_OUT_OF_BAND
            assert rejection(out[1]).client_order_id == "b1"

            # bad input goes to the DLQ and the actor keeps going
            before = await count(nc, DLQ_STREAM)
            await send(nc, [(b'{"type": "submit", "ts": "soon"}', "junk:1"), (b"\xff", "junk:2")])
            assert await count(nc, DLQ_STREAM) == before + 2
            (after,) = await send(nc, [(submit("ok"), "alice:ok")])
            assert after[0] == "book.in.T-USD"
            dead = await read_stream(nc, DLQ_STREAM)
            assert {h["Orrange-Source-Subject"] for _, _, h in dead} == {"cmd.order.T-USD"}
    finally:
        await nc.close()


async def test_duplicate_client_order_id_is_refused_even_after_a_restart(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        async with running_risk(nats_url):
            out = await send(
                nc,
                [
                    (submit("c1"), "alice:c1"),
                    # same pair beyond CMD's de-dup window (another Nats-Msg-Id)
                    (submit("c1", ts=T0 + 5), "alice:c1:again"),
                    (submit("c1", user="bob"), "bob:c1"),
                    # keys are escaped injectively: these two pairs do not collide
                    (submit("c", user="a.b"), "a.b:c"),
                    (submit("b.c", user="a"), "a:b.c"),
                    # twice in a row (likely one batch): the first wins
                    (submit("c2"), "alice:c2"),
                    (submit("c2"), "alice:c2:x"),
                    (submit(""), "alice:anon1"),
                    (submit(""), "alice:anon2"),  # no client order id: no idempotency check
                ],
            )
            forwarded = [h["Nats-Msg-Id"] for s, _, h in out if s.startswith("book.in.")]
            assert forwarded == [
                "alice:c1",
                "bob:c1",
                "a.b:c",
                "a:b.c",
                "alice:c2",
                "alice:anon1",
                "alice:anon2",
            ]
            rejected = [(m[2]["Nats-Msg-Id"], rejection(m)) for m in out if m[0].startswith("rej")]
            assert [(i, r.reason, r.client_order_id) for i, r in rejected] == [
                ("rej:alice:c1:again", RejectReason.DUPLICATE_CLIENT_ORDER_ID, "c1"),
                ("rej:alice:c2:x", RejectReason.DUPLICATE_CLIENT_ORDER_ID, "c2"),
            ]
        # a new process: the claims live in the client_orders KV bucket
        async with running_risk(nats_url) as actor:
            assert actor.engine.open_orders("alice") == 0  # no events: nothing open
            out = await send(
                nc, [(submit("c1", ts=T0 + 9), "alice:c1:third"), (submit("c3"), "alice:c3")]
            )
            assert rejection(out[1]).reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID
            assert out[0][2]["Nats-Msg-Id"] == "alice:c3"
        stored = await read_stream(nc, BOOK_IN.name)
        book_in = [msgspec.json.decode(d, type=SubmitOrder) for _, d, _ in stored]
        assert [(o.user, o.client_order_id) for o in book_in].count(("alice", "c1")) == 1
        kv = await nc.jetstream().key_value(CLIENT_ORDERS_BUCKET)
        assert (await kv.get(client_order_key("a.b", "c"))).value is not None
    finally:
        await nc.close()


async def test_an_engine_generated_client_order_id_is_not_claimed(nats_url: str) -> None:
    """Ids the API generates (``~`` + UUID4) are unique by construction: forwarded without a
    claim in ``client_orders``; a look-alike that is not one is claimed like any other."""
    generated = generate_client_order_id()
    lookalike = "~" + "Z" * 32
    nc = await nats.connect(nats_url)
    try:
        async with running_risk(nats_url):
            out = await send(nc, [(submit(generated), "alice:g1"), (submit(lookalike), "alice:g2")])
            assert [m[0] for m in out] == ["book.in.T-USD", "book.in.T-USD"]
        kv = await nc.jetstream().key_value(CLIENT_ORDERS_BUCKET)
        with pytest.raises(KeyNotFoundError):
            await kv.get(client_order_key("alice", generated))
        assert (await kv.get(client_order_key("alice", lookalike))).value is not None
    finally:
        await nc.close()


async def test_a_redelivered_command_that_claimed_its_id_is_forwarded(nats_url: str) -> None:
    """A crash after the claim but before the ack redelivers the command: the key holds its own
    CMD sequence, so it is forwarded again (BOOK_IN drops the repeat by its Nats-Msg-Id)."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        kv = await js.create_key_value(
            js_api.KeyValueConfig(bucket=CLIENT_ORDERS_BUCKET, history=1)
        )
        await kv.create(client_order_key("alice", "c1"), b"1")  # claimed by CMD seq 1
        await kv.create(client_order_key("alice", "c2"), b"7")  # claimed by another command
        async with running_risk(nats_url):
            out = await send(nc, [(submit("c1"), "alice:c1"), (submit("c2"), "alice:c2")])
        assert out[0][:1] == ("book.in.T-USD",) and out[0][2]["Nats-Msg-Id"] == "alice:c1"
        assert rejection(out[1]).reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID
    finally:
        await nc.close()


async def test_rate_limit_per_user_by_command_time(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        async with running_risk(nats_url, RiskLimits(rate_per_s=2, burst=3)):
            items: list[tuple[Command | bytes, str]] = [
                (submit(f"r{i}"), f"alice:r{i}") for i in range(5)
            ]
            items.append((submit("b0", user="bob"), "bob:b0"))
            items.append((CancelOrder(ts=T0, user="alice", order_id=1), "alice:cancel"))
            items.append((submit("r5", ts=T0 + 499), "alice:r5"))  # 0.998 token: still short
            items.append((submit("r6", ts=T0 + 500), "alice:r6"))  # 2/s: one token per 500 ms
            out = await send(nc, items)
            forwarded = [h["Nats-Msg-Id"] for s, _, h in out if s.startswith("book.in.")]
            assert forwarded == [
                "alice:r0",
                "alice:r1",
                "alice:r2",
                "bob:b0",
                "alice:cancel",
                "alice:r6",
            ]
            limited = [rejection(m) for m in out if m[0].startswith("rej.")]
            assert [(r.client_order_id, r.reason) for r in limited] == [
                ("r3", RejectReason.RATE_LIMITED),
                ("r4", RejectReason.RATE_LIMITED),
                ("r5", RejectReason.RATE_LIMITED),
            ]
            # a refused submit did not burn its client order id
            (again,) = await send(nc, [(submit("r3", ts=T0 + 10_000), "alice:r3:retry")])
            assert again[0] == "book.in.T-USD"
    finally:
        await nc.close()


async def test_open_order_cap_follows_real_events_and_survives_a_restart(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    limits = RiskLimits(max_open_orders=2)
    try:
        async with running_risk(nats_url, limits) as actor:
            await publish_events(nc, [accepted(1, seq=1), accepted(2, seq=2)])
            assert actor.engine.open_orders("alice") == 2
            (full,) = await send(nc, [(submit("x1"), "alice:x1")])
            assert rejection(full).reason is RejectReason.TOO_MANY_OPEN_ORDERS
            (other,) = await send(nc, [(submit("y1", user="bob"), "bob:y1")])
            assert other[0] == "book.in.T-USD"  # the cap is per user

            await publish_events(nc, [canceled(1, seq=3), filled(seq=4, price=10_000)])
            out = await send(nc, [(submit("x2"), "alice:x2"), (submit("x3"), "alice:x3")])
            assert out[0][2]["Nats-Msg-Id"] == "alice:x2"  # 1 open + 1 in flight now
            assert rejection(out[1]).reason is RejectReason.TOO_MANY_OPEN_ORDERS
            # the book accepts x2: still 2 open, no longer in flight
            await publish_events(nc, [accepted(3, seq=5)])
            assert (actor.engine.open_orders("alice"), actor.engine.in_flight("alice")) == (2, 0)
            # an undecodable event is dead-lettered live and skipped by the replay below
            dlq_before = await count(nc, DLQ_STREAM)
            await Publisher(nc).publish(events_subject(SYM), b"{not json", msg_id="junk")

            async def dead_lettered() -> bool:
                return await count(nc, DLQ_STREAM) > dlq_before

            await wait_for(dead_lettered, "the bad event in the DLQ")

        # restart: open orders (2 and 3) and the last price (10000) come back from EVENTS
        async with running_risk(nats_url, limits) as actor:
            assert actor.engine.open_orders("alice") == 2
            assert actor.engine.last_price == {SYM: 10_000}
            out = await send(
                nc,
                [(submit("x4"), "alice:x4"), (submit("b9", user="bob", price=12_000), "bob:b9")],
            )
            assert rejection(out[0]).reason is RejectReason.TOO_MANY_OPEN_ORDERS
            assert rejection(out[1]).reason is RejectReason.PRICE_OUT_OF_BAND
            # events published after the restart are consumed live
            await publish_events(nc, [canceled(2, seq=6), canceled(3, seq=7)])
            assert actor.engine.open_orders("alice") == 0
            (ok,) = await send(nc, [(submit("x5"), "alice:x5")])
            assert ok[0] == "book.in.T-USD"
            info = await nc.jetstream().consumer_info(CMD.name, RISK_DURABLE)
            assert info.num_ack_pending == 0
    finally:
        await nc.close()


async def test_actor_process_runs_and_stops_on_sigterm(nats_url: str, tmp_path: Path) -> None:
    log = tmp_path / "risk.log"
    markets = write_markets(tmp_path / "markets.toml")
    proc = start_risk_process(nats_url, markets, log, "--max-open-orders", "1")
    nc = await nats.connect(nats_url)
    try:
        await wait_ready(nc, proc, log)
        out = await send(nc, [(submit("p1"), "alice:p1"), (submit("p2"), "alice:p2")])
        assert out[0][2]["Nats-Msg-Id"] == "alice:p1"
        assert rejection(out[1]).reason is RejectReason.TOO_MANY_OPEN_ORDERS  # --max-open-orders
    finally:
        await nc.close()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
    assert code == 0, log.read_text()
    assert '"actor stopped"' in log.read_text()


def start_risk_process(
    nats_url: str, markets: Path, log: Path, *args: str
) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        ORRANGE_NATS_URL=nats_url,
        ORRANGE_LOG_FORMAT="json",
        ORRANGE_RUNTIME_BATCH_SIZE="100",
    )
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "actors.risk", "--markets", str(markets), *args],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


async def wait_ready(nc: NATS, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until the risk process created its ``CMD`` consumer (fails if it exited)."""
    js = nc.jetstream()

    async def consumer_ready() -> bool:
        if proc.poll() is not None:
            text = await asyncio.to_thread(log.read_text)
            pytest.fail(f"risk exited with {proc.returncode}: {text}")
        try:
            await js.consumer_info(CMD.name, RISK_DURABLE)
        except nats.js.errors.NotFoundError:
            return False
        return True

    await wait_for(consumer_ready, "the risk process's consumer")


def write_markets(path: Path) -> Path:
    path.write_text(
        "[[market]]\n"
        + "".join(
            f'{k} = "{getattr(SPEC, k)}"\n'
            for k in ("symbol", "base", "quote", "tick_size", "lot_size", "min_qty", "max_qty")
        )
        + f'min_notional = "{SPEC.min_notional}"\nprice_band_bps = {SPEC.price_band_bps}\n'
    )
    return path


async def test_kill_9_forwards_each_client_order_id_once(nats_url: str, tmp_path: Path) -> None:
    """SIGKILL the risk process under load, restart it: every command is answered exactly once
    and every (user, client order id) reaches BOOK_IN once, duplicates are refused."""
    markets = write_markets(tmp_path / "markets.toml")
    log = tmp_path / "risk.log"
    limits = ("--max-open-orders", "1000000", "--rate", "1000000", "--burst", "1000000")
    n = 6000
    items: list[tuple[Command | bytes, str]] = []
    expected_forward: set[str] = set()
    for i in range(n):
        user = f"u{i % 50}"
        # one in 20 repeats the id of the user's order 50 commands earlier (never a repeat)
        repeat = i % 10 == 9 and i % 100 >= 50
        cid = f"c{i - 50}" if repeat else f"c{i}"
        msg_id = f"{user}:{cid}:{i}"
        items.append((submit(cid, user=user, ts=T0 + i), msg_id))
        if not repeat:
            expected_forward.add(msg_id)
    proc = start_risk_process(nats_url, markets, log, *limits)
    nc = await nats.connect(nats_url)
    try:
        await wait_ready(nc, proc, log)
        pub = Publisher(nc)
        for cmd, msg_id in items:
            await pub.submit(cmd_subject(SYM), cmd, msg_id=msg_id)
        await pub.flush()

        async def some_done() -> bool:
            return await outputs(nc) >= n // 4

        await wait_for(some_done, "a quarter of the commands handled")
        proc.kill()
        await asyncio.to_thread(proc.wait, 30)
        handled_before = await outputs(nc)
        assert handled_before < n, "the kill came too late to test anything"

        proc = start_risk_process(nats_url, markets, log, *limits)

        async def all_done() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"risk exited with {proc.returncode}: {log.read_text()}")
            return await outputs(nc) >= n

        await wait_for(all_done, "every command answered after the restart")
        forwarded = [h["Nats-Msg-Id"] for _, _, h in await read_stream(nc, BOOK_IN.name)]
        rejected = await read_stream(nc, REJECTS.name)
        assert len(forwarded) + len(rejected) == n
        assert sorted(forwarded) == sorted(expected_forward)
        assert len(rejected) == n - len(expected_forward)
        assert {rejection(m).reason for m in rejected} == {RejectReason.DUPLICATE_CLIENT_ORDER_ID}
        book_in = [
            msgspec.json.decode(d, type=SubmitOrder)
            for _, d, _ in await read_stream(nc, BOOK_IN.name)
        ]
        pairs = [(o.user, o.client_order_id) for o in book_in]
        assert len(pairs) == len(set(pairs))
    finally:
        await nc.close()
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 30)


def test_limits_from_the_risk_table_and_the_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "orrange.toml"
    cfg.write_text(
        'data_dir = "./var"\n[risk]\nmax_open_orders = 7\nburst = 9\n'
        'exempt_users = ["lobster", "lobster-taker"]\nunrelated = 1\n'
    )
    assert load_risk_limits(cfg, env={}) == RiskLimits(
        max_open_orders=7, burst=9, exempt_users=frozenset({"lobster", "lobster-taker"})
    )
    env = {"ORRANGE_RISK_RATE_PER_S": "3", "ORRANGE_RISK_EXEMPT_USERS": "a, b,"}
    assert load_risk_limits(cfg, env=env) == RiskLimits(
        max_open_orders=7, rate_per_s=3, burst=9, exempt_users=frozenset({"a", "b"})
    )
    assert load_risk_limits(cfg, env={}).rate_per_s == 50  # the default
    with pytest.raises(SettingsError):
        load_risk_limits(cfg, env={"ORRANGE_RISK_BURST": "0"})
    with pytest.raises(SettingsError):
        load_risk_limits(cfg, env={"ORRANGE_RISK_BURST": "many"})
    with pytest.raises(SettingsError):
        load_risk_limits(tmp_path / "missing.toml", env={})
