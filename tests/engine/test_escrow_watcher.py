"""The escrow watcher actor on a real nats-server, PostgreSQL and anvil: fills of P2P markets
open trades, the confirmation depth holds logs back, a restart neither misses nor repeats an
event, deadlines cancel unfunded trades without any chain."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
import msgspec
import nats
import pytest
from kit.wait import wait_for

from orrange.engine.escrow import EscrowWatcher, WatcherOptions
from orrange.evm.chain import Escrow, connect, send_dev
from orrange.infra.anvil import AnvilNode, ensure_anvil
from orrange.markets import MarketSpec
from orrange.matching.enums import Side
from orrange.matching.events import OrderFilled
from orrange.runtime import MSG_ID_HEADER, ActorConfig
from orrange.settlement.config import SettlementConfig
from orrange.settlement.lifecycle import trade_id_for_fill
from orrange.store import settlement as db
from orrange.wire.engine import events_subject
from orrange.wire.settlement import SETTLEMENT, is_p2p

P2P = MarketSpec(
    symbol="USDT-NGN",
    base="USDT",
    quote="NGN",
    tick_size="0.01",
    lot_size="0.01",
    min_qty="1",
    max_qty="100000",
    priority="price-reputation-time",
)
CEX = MarketSpec(
    symbol="BTC-USDT",
    base="BTC",
    quote="USDT",
    tick_size="0.01",
    lot_size="1",
    min_qty="1",
    max_qty="100",
)
MARKETS = {P2P.symbol: P2P, CEX.symbol: CEX}


def fill(symbol: str, seq: int, ts: int, methods: tuple[str, ...] = ()) -> OrderFilled:
    return OrderFilled(
        symbol=symbol,
        seq=seq,
        ts=ts,
        maker_order_id=1,
        taker_order_id=2,
        maker_user="sam",
        taker_user="bob",
        price=150_000,
        quantity=1_000,
        aggressor=Side.BUY,
        maker_fee=0,
        taker_fee=0,
        maker_leaves=0,
        taker_leaves=0,
        payment_methods=methods,
    )


@contextlib.asynccontextmanager
async def watching(
    nats_url: str, database_url: str, options: WatcherOptions, settlement: SettlementConfig
) -> AsyncIterator[EscrowWatcher]:
    cfg = ActorConfig(name="escrow", nats_url=nats_url, metrics_port=None, fetch_timeout_ms=50)
    w = EscrowWatcher(cfg, database_url, MARKETS, settlement, options)
    await w.start()
    try:
        yield w
    finally:
        await w.stop()


async def publish_fill(nats_url: str, f: OrderFilled) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(
            events_subject(f.symbol),
            msgspec.json.encode(f),
            headers={MSG_ID_HEADER: f"{f.symbol}:{f.seq}"},
        )
    finally:
        await nc.close()


async def settlement_messages(nats_url: str, trade_id: str) -> list[tuple[str, str]]:
    """(cause, state) of every message on settlement.<trade_id>, in stream order."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(f"settlement.{trade_id}", stream=SETTLEMENT.name)
        out: list[tuple[str, str]] = []
        while True:
            try:
                msgs = await sub.fetch(100, timeout=0.5)
            except nats.errors.TimeoutError:
                return out
            for m in msgs:
                body = msgspec.json.decode(m.data)
                out.append((body["cause"], body["state"]))
                await m.ack()
    finally:
        await nc.close()


def test_is_p2p() -> None:
    assert is_p2p(P2P, fill(P2P.symbol, 1, 0))
    assert not is_p2p(CEX, fill(CEX.symbol, 1, 0))
    assert is_p2p(CEX, fill(CEX.symbol, 1, 0, ("pix",)))


@pytest.mark.chain  # an anvil node
async def test_confirmations_and_restart_without_gaps_or_repeats(
    nats_url: str, database_url: str
) -> None:
    with AnvilNode(ensure_anvil()) as node:
        w3 = connect(node.url)
        a = w3.eth.accounts
        escrow = Escrow.deploy(w3, a[0], mediator=a[3], fee_recipient=a[4], fee_bps=0)
        options = WatcherOptions(
            chain_url=node.url, escrow_address=escrow.address, confirmations=1, poll_interval_ms=50
        )
        settlement = SettlementConfig(funding_timeout_ms=3_600_000)
        now_s = int(w3.eth.get_block("latest")["timestamp"])
        f = fill(P2P.symbol, 5, now_s * 1000)
        tid = trade_id_for_fill(f.symbol, f.seq)
        raw = bytes.fromhex(tid[2:])
        conn = await asyncpg.connect(database_url)
        try:
            async with watching(nats_url, database_url, options, settlement) as w:
                await publish_fill(nats_url, f)
                await publish_fill(nats_url, fill(CEX.symbol, 9, now_s * 1000))  # not P2P

                async def opened() -> bool:
                    return await db.get_trade(conn, tid) is not None

                await wait_for(opened, "the trade")
                receipt = send_dev(
                    w3,
                    escrow.fund_tx(
                        a[1], raw, buyer=a[2], amount=10**15, payment_deadline=now_s + 3600
                    ),
                )
                funded_block = int(receipt["blockNumber"])
                polls = w.polls

                async def polled_twice() -> bool:
                    return w.polls >= polls + 2

                await wait_for(polled_twice, "two polls")
                # one confirmation is missing: the funding is not applied yet
                assert w.cursor is not None and w.cursor.number < funded_block
                row = await db.get_trade(conn, tid)
                assert row is not None and row.trade.state == "awaiting_funding"
                node.rpc("evm_mine")

                async def funded() -> bool:
                    r = await db.get_trade(conn, tid)
                    return r is not None and r.trade.state == "funded"

                await wait_for(funded, "the funding")
            # while the watcher is down: paid and released
            send_dev(w3, escrow.mark_paid_tx(a[2], raw))
            send_dev(w3, escrow.release_tx(a[1], raw))
            node.rpc("evm_mine")
            async with watching(nats_url, database_url, options, settlement) as w:

                async def released() -> bool:
                    r = await db.get_trade(conn, tid)
                    return r is not None and r.trade.state == "released"

                await wait_for(released, "the release after a restart")
            count = await conn.fetchval(
                "SELECT count(*) FROM settlement_chain_events WHERE trade_id = $1", tid
            )
            assert count == 3
            assert await conn.fetchval("SELECT count(*) FROM settlement_trades") == 1
            rep = await db.reputation_of(conn, "sam")
            assert rep is not None and rep[1].completed == 1
        finally:
            await conn.close()
        assert await settlement_messages(nats_url, tid) == [
            ("opened", "awaiting_funding"),
            ("chain", "funded"),
            ("chain", "paid"),
            ("chain", "released"),
        ]


async def test_offline_deadline_cancels_an_unfunded_trade(nats_url: str, database_url: str) -> None:
    settlement = SettlementConfig(funding_timeout_ms=1)
    f = fill(P2P.symbol, 3, 1_000)  # long past: the funding deadline has passed
    tid = trade_id_for_fill(f.symbol, f.seq)
    conn = await asyncpg.connect(database_url)
    try:
        async with watching(
            nats_url, database_url, WatcherOptions(poll_interval_ms=50), settlement
        ):
            await publish_fill(nats_url, f)

            async def canceled() -> bool:
                r = await db.get_trade(conn, tid)
                return r is not None and r.trade.state == "canceled"

            await wait_for(canceled, "the funding deadline")
        rep = await db.reputation_of(conn, "sam")
        assert rep is not None and rep[1].timed_out == 1
    finally:
        await conn.close()
