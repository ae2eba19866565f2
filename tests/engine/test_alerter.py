"""The alerter actor in-process on real NATS and PostgreSQL: wall-clock expiry, and signal
state that survives a restart (primed from the candles still in stream ``MD``)."""

from __future__ import annotations

import time

import asyncpg
import nats
from kit.wait import wait_for

from orrange.alerts.rules import Condition, PriceAlert, TriggerSource
from orrange.engine.alerter import Alerter
from orrange.marketdata.candles import CandleClosed
from orrange.runtime import ActorConfig, Publisher
from orrange.store import migrate
from orrange.store.alerts import create_alert, list_signals
from orrange.wire.marketdata import candle_subject

SYM = "S-USD"
T0 = 1_700_000_040_000  # a minute boundary (ms UTC)


def _alerter(nats_url: str, database_url: str) -> Alerter:
    cfg = ActorConfig(name="alerter", nats_url=nats_url, metrics_port=None, fetch_timeout_ms=50)
    return Alerter(cfg, database_url, expiry_interval_ms=50)


def _candle(i: int, volume: int) -> CandleClosed:
    t = T0 + i * 60_000
    return CandleClosed(
        SYM, "1m", t, t + 59_999, 5000, 5000, 5000, 5000, volume, volume * 5000, 1, 0, 0,
        5000, t, t,
    )  # fmt: skip


async def test_alert_expires_without_price_updates(nats_url: str, database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    await migrate(conn)
    now = time.time_ns() // 1_000_000
    alert = PriceAlert(
        id=0,
        user="u",
        market=SYM,
        condition=Condition.ABOVE,
        reference=TriggerSource.INDEX,
        target=10,
        expires_at=now + 300,
    )
    aid = (await create_alert(conn, alert, now)).alert.id
    alerter = _alerter(nats_url, database_url)
    await alerter.start()
    try:

        async def expired() -> bool:
            status = await conn.fetchval("SELECT status FROM alerts WHERE id = $1", aid)
            return bool(status == "expired")

        await wait_for(expired, "the alert to expire")
        assert aid not in alerter.index
        assert await conn.fetchval("SELECT count(*) FROM notifications") == 0
    finally:
        await alerter.stop()
        await conn.close()


async def test_signal_state_survives_a_restart(nats_url: str, database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    await migrate(conn)
    nc = await nats.connect(nats_url)
    pub = Publisher(nc)
    first = _alerter(nats_url, database_url)
    await first.start()
    try:
        for i in range(20):
            await pub.submit(candle_subject("1m", SYM), _candle(i, 10), msg_id=f"c:{i}")
        await pub.flush()

        async def all_seen() -> bool:
            seq = await conn.fetchval(
                "SELECT seq FROM alerter_cursors WHERE consumer = 'alerter-candles'"
            )
            return bool(seq == 20)

        await wait_for(all_seen, "the first 20 candles")
    finally:
        await first.stop()
    second = _alerter(nats_url, database_url)
    await second.start()
    try:
        # the 21st bar's volume is 10x the 20 before it: a spike only if they were primed
        await pub.publish(candle_subject("1m", SYM), _candle(20, 100), msg_id="c:20")

        async def spiked() -> bool:
            return bool(await list_signals(conn, symbol=SYM))

        await wait_for(spiked, "the volume spike")
        [rec] = await list_signals(conn, symbol=SYM)
        assert (rec.signal.type, rec.signal.open_time) == ("volume_spike", T0 + 20 * 60_000)
    finally:
        await second.stop()
        await nc.close()
        await conn.close()
