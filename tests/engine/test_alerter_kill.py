"""``kill -9`` of a real alerter process under load loses no notification and duplicates none.

PostgreSQL and nats-server (fixtures) and the alerter as a subprocess (``orrange actor
alerter``). 1,500 seeded alerts (above / below / crosses, one-shot and re-arming, on the index
price of one market and the last trade of another) watch two seeded random walks of 4,000
updates each, published as the feed and the matcher do: ``md.indexes`` arrays of index prices
and ``evt.<SYM>`` arrays of fills (some fills published a second time inside batches with other
boundaries, which the alerter must skip by their ``seq``), while the alerter is killed with
SIGKILL six times and restarted. Afterwards PostgreSQL and the ``notifications`` messages must
each hold exactly the notifications of one uninterrupted pure :class:`AlertIndex` run: same
ids, each once, same prices and times.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import msgspec
import nats
from kit.wait import wait_for
from nats.js.errors import NotFoundError

from orrange.alerts.index import AlertIndex
from orrange.alerts.rules import AlertFired, Condition, PriceAlert
from orrange.marketdata.index import IndexPrice
from orrange.matching.enums import Side, TriggerSource
from orrange.matching.events import OrderFilled
from orrange.runtime import MSG_ID_HEADER, Publisher, ensure_stream
from orrange.store import migrate
from orrange.store.alerts import create_alert
from orrange.wire.alerts import (
    ALERTS,
    CMD_DURABLE,
    EVENTS_DURABLE,
    INDEX_DURABLE,
    NOTIFICATIONS_SUBJECT,
    Notification,
    alert_notification_id,
    notifications_msg_id,
)
from orrange.wire.engine import EVENTS, events_subject
from orrange.wire.marketdata import MD_INDEXES_SUBJECT

ROOT = Path(__file__).resolve().parents[2]
N_ALERTS = 1_500
N_UPDATES = 4_000
T0 = 1_700_000_000_000
INDEX_SYM = "BTC-USDT"
LAST_SYM = "ETH-USDT"


def make_alerts(rng: random.Random) -> list[PriceAlert]:
    out = []
    for i in range(N_ALERTS):
        rearm = rng.random() < 0.4
        ref = TriggerSource.INDEX if i % 2 else TriggerSource.LAST
        out.append(
            PriceAlert(
                id=0,
                user=f"u{i % 7}",
                market=INDEX_SYM if ref is TriggerSource.INDEX else LAST_SYM,
                condition=rng.choice(list(Condition)),
                reference=ref,
                target=rng.randint(9_000, 11_000),
                rearm=rearm,
                hysteresis=rng.randint(1, 40) if rearm else 0,
            )
        )
    return out


def walk(rng: random.Random) -> list[int]:
    p, out = 10_000, []
    for _ in range(N_UPDATES):
        p = min(max(p + rng.randint(-60, 60), 8_500), 11_500)
        out.append(p)
    return out


def start_alerter(nats_url: str, database_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        ORRANGE_NATS_URL=nats_url,
        ORRANGE_DATABASE_URL=database_url,
        ORRANGE_RUNTIME_BATCH_SIZE="40",
        ORRANGE_LOG_FORMAT="json",
    )
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "orrange.cli", "actor", "alerter", "--metrics-port", "-1"],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


async def test_kill_9_loses_and_duplicates_no_notification(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    rng = random.Random(55)
    conn = await asyncpg.connect(database_url)
    await migrate(conn)
    alerts = [(await create_alert(conn, a, T0)).alert for a in make_alerts(rng)]
    index_path, last_path = walk(rng), walk(rng)

    # the pure reference: one uninterrupted index
    pure = AlertIndex()
    for a in alerts:
        pure.add(a)
    fires: dict[int, int] = {}
    expected: dict[str, tuple[str, int, int]] = {}
    for i in range(N_UPDATES):
        for sym, ref, price in (
            (INDEX_SYM, TriggerSource.INDEX, index_path[i]),
            (LAST_SYM, TriggerSource.LAST, last_path[i]),
        ):
            for ev in pure.update(sym, ref, price, T0 + i):
                if isinstance(ev, AlertFired):
                    fires[ev.alert_id] = fires.get(ev.alert_id, 0) + 1
                    nid = alert_notification_id(ev.alert_id, fires[ev.alert_id])
                    expected[nid] = (ev.user, ev.price, ev.ts)
    assert len(expected) > 3_000

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_stream(js, EVENTS)
    log = tmp_path / "alerter.log"
    proc = start_alerter(nats_url, database_url, log)

    async def consumers_ready() -> bool:
        try:
            await js.consumer_info(EVENTS.name, EVENTS_DURABLE)
            await js.consumer_info("MD", INDEX_DURABLE)
            await js.consumer_info("ALERT_CMD", CMD_DURABLE)
        except NotFoundError:
            return False
        return True

    await wait_for(consumers_ready, "the alerter's consumers", timeout_s=60)
    pub = Publisher(nc)

    def fill(i: int) -> OrderFilled:
        return OrderFilled(
            LAST_SYM, i + 1, T0 + i, 1, 2, "m", "t", last_path[i], 1, Side.BUY, 0, 0, 0, 0, (),
        )  # fmt: skip

    async def feed() -> None:
        for start in range(0, N_UPDATES, 50):
            for i in range(start, start + 50, 5):
                ixs = [
                    IndexPrice(INDEX_SYM, T0 + j, index_path[j], 1.0, ("a",), (), (), False)
                    for j in range(i, i + 5)
                ]
                await pub.submit(MD_INDEXES_SUBJECT, msgspec.json.encode(ixs), msg_id=f"ix:{i}")
                fills = [fill(j) for j in range(i, i + 5)]
                await pub.submit(
                    events_subject(LAST_SYM), msgspec.json.encode(fills), msg_id=f"{LAST_SYM}:{i}"
                )
                if i % 20 == 10:  # fills i-3 .. i+1 again, as a late second copy would be
                    again = [fill(j) for j in range(max(0, i - 3), i + 2)]
                    await pub.submit(
                        events_subject(LAST_SYM),
                        msgspec.json.encode(again),
                        msg_id=f"{LAST_SYM}:again:{i}",
                    )
            await pub.flush()
            await asyncio.sleep(0.3)

    async def stored() -> int:
        n: int = await conn.fetchval("SELECT count(*) FROM notifications")
        return n

    async def restarted() -> bool:  # the last one installed its SIGTERM handler
        with log.open("rb") as fh:
            fh.seek(last_start)
            return b"alerter ready" in fh.read()

    feeder = asyncio.create_task(feed())
    at_kill: list[int] = []
    last_start = 0
    try:
        for fraction in (0.1, 0.25, 0.4, 0.55, 0.7, 0.85):

            async def reached(target: int = int(len(expected) * fraction)) -> bool:
                return await stored() >= target

            await wait_for(restarted, "the alerter to be ready", timeout_s=60)
            await wait_for(reached, f"{fraction:.0%} of the notifications", timeout_s=90)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            at_kill.append(await stored())
            last_start = log.stat().st_size
            proc = start_alerter(nats_url, database_url, log)
        await feeder

        async def all_stored() -> bool:
            return await stored() >= len(expected)

        await wait_for(all_stored, "every notification in PostgreSQL", timeout_s=90)

        async def drained() -> bool:
            ev = await js.consumer_info(EVENTS.name, EVENTS_DURABLE)
            ix = await js.consumer_info("MD", INDEX_DURABLE)
            return (
                ev.num_pending == 0
                and ev.num_ack_pending == 0
                and ix.num_pending == 0
                and ix.num_ack_pending == 0
            )

        await wait_for(drained, "the alerter to ack every update", timeout_s=90)

        await wait_for(restarted, "the last alerter to be ready", timeout_s=60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        feeder.cancel()
    again = log.read_text().count("its notifications published again")
    print(f"killed at {at_kill} of {len(expected)} notifications; {again} batches published again")
    assert all(0 < k < len(expected) for k in at_kill), at_kill

    # PostgreSQL: exactly the expected notifications
    rows = await conn.fetch("SELECT id, user_id, price, ts FROM notifications")
    assert len(rows) == len(expected)
    assert {r["id"]: (r["user_id"], r["price"], r["ts"]) for r in rows} == expected
    # alert states agree with the pure index
    live = {r["id"] for r in await conn.fetch("SELECT id FROM alerts WHERE status = 'active'")}
    assert live == {a.id for a in pure.alerts()}
    await conn.close()

    # notifications: every notification exactly once, each message the notes of one input
    total = (await js.stream_info(ALERTS.name)).state.messages
    sub = await js.subscribe(NOTIFICATIONS_SUBJECT, ordered_consumer=True)
    seen: dict[str, int] = {}
    try:
        for _ in range(total):
            msg = await sub.next_msg(timeout=10)
            notes = msgspec.json.decode(msg.data, type=list[Notification])
            assert notes
            source, seq = notes[0].source, notes[0].source_seq
            assert (msg.headers or {}).get(MSG_ID_HEADER) == notifications_msg_id(source, seq)
            for note in notes:
                assert (note.source, note.source_seq) == (source, seq)
                assert expected[note.id] == (note.user, note.price, note.ts)
                seen[note.id] = seen.get(note.id, 0) + 1
    finally:
        await sub.unsubscribe()
    assert set(seen) == set(expected)
    assert set(seen.values()) == {1}
    await nc.close()
