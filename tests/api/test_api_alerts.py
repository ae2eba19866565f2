"""Alerts, notifications, signals and signal subscriptions through the API, with the real
alerter, matcher, risk and persister on real NATS and PostgreSQL.

Trades through REST move the last price; the alerter fires the alerts they cross; the
notification arrives on the owner's WebSocket ``orders`` channel and in
``GET /api/v1/notifications``. Closed candles on ``md.candle.1m.<SYM>`` make a volume-spike
signal, stored, listed by ``GET /api/v1/signals``, pushed on the public ``signals`` channel and
notified to the subscribed user only.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats
import pytest
from kit.api_stack import SYM, Stack, api_stack, error_of
from kit.wait import wait_for
from websockets.asyncio.client import ClientConnection, connect

from orrange.engine.alerter import Alerter
from orrange.marketdata.candles import CandleClosed
from orrange.runtime import ActorConfig, Publisher

pytestmark = pytest.mark.timeout(120)

T0 = 1_700_000_040_000  # a minute boundary (ms UTC)


async def _next(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        msg: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if msg["type"] == kind:
            return msg


async def _authed(s: Stack, ws: ClientConnection, user: str, *channels: str) -> None:
    await ws.send(json.dumps({"op": "auth", "token": s.token(user)}))
    await _next(ws, "authenticated")
    for ch in channels:
        await ws.send(json.dumps({"op": "subscribe", "channel": ch}))
        assert (await _next(ws, "subscribed"))["channel"] == ch


def _candle(i: int, volume: int) -> CandleClosed:
    t = T0 + i * 60_000
    return CandleClosed(
        SYM, "1m", t, t + 59_999, 5000, 5000, 5000, 5000, volume, volume * 5000, 1, 0, 0,
        5000, t, t,
    )  # fmt: skip


async def test_alerts_crud_validation_and_ownership(nats_url: str, database_url: str) -> None:
    async with api_stack(nats_url, database_url, engine=False) as s:
        a = s.auth("alice")
        url = "/api/v1/alerts"
        r = await s.http.post(url, json={"market": SYM, "condition": "above", "target": "1"})
        assert r.status_code == 401
        base = {"market": SYM, "condition": "above", "target": "1"}
        for extra, field in (
            ({"market": "NOPE-USD"}, "market"),
            ({"target": "1.001"}, "target"),
            ({"target": "-1"}, "target"),
            ({"rearm": True}, "hysteresis"),
            ({"hysteresis": "0.5"}, "hysteresis"),
            ({"expires_at": 1}, "expires_at"),
        ):
            r = await s.http.post(url, json={**base, **extra}, headers=a)
            assert r.status_code == 400, (extra, r.text)
            assert error_of(r)["field"] == field, r.text
        for extra in ({"condition": "sideways"}, {"x": 1}):
            r = await s.http.post(url, json={**base, **extra}, headers=a)
            assert r.status_code == 400, (extra, r.text)

        r = await s.http.post(
            url,
            json={
                "market": SYM,
                "condition": "crosses",
                "target": "12.34",
                "reference": "index",
                "rearm": True,
                "hysteresis": "0.10",
            },
            headers=a,
        )
        assert r.status_code == 201, r.text
        mine = r.json()
        assert (mine["target"], mine["hysteresis"], mine["status"], mine["armed"]) == (
            "12.34",
            "0.10",
            "active",
            True,
        )
        r = await s.http.post(
            url, json={"market": SYM, "condition": "below", "target": "5"}, headers=s.auth("bob")
        )
        theirs = r.json()
        assert [x["id"] for x in (await s.http.get(url, headers=a)).json()] == [mine["id"]]
        r = await s.http.get(f"{url}/{theirs['id']}", headers=a)
        assert r.status_code == 404
        r = await s.http.delete(f"{url}/{theirs['id']}", headers=a)
        assert r.status_code == 404
        r = await s.http.delete(f"{url}/{mine['id']}", headers=a)
        assert (r.status_code, r.json()["status"]) == (200, "deleted")
        r = await s.http.get(url, params={"status": "active"}, headers=a)
        assert r.json() == []
        r = await s.http.get(url, params={"status": "bogus"}, headers=a)
        assert r.status_code == 400

        r = await s.http.post("/api/v1/signal-subscriptions", json={"intervals": ["7m"]}, headers=a)
        assert (r.status_code, error_of(r)["field"]) == (400, "intervals")
        r = await s.http.post("/api/v1/signal-subscriptions", json={"min_score": 2}, headers=a)
        assert (r.status_code, error_of(r)["field"]) == (400, "min_score")
        r = await s.http.get("/api/v1/signals", params={"type": "nope"})
        assert r.status_code == 400


async def test_alert_fires_once_to_its_owner_and_signals_reach_subscribers(
    nats_url: str, database_url: str
) -> None:
    cfg = ActorConfig(name="alerter", nats_url=nats_url, metrics_port=None, fetch_timeout_ms=50)
    async with (
        api_stack(nats_url, database_url) as s,
        connect(s.ws_url) as alice,
        connect(s.ws_url) as bob,
        connect(s.ws_url) as watcher,
    ):
        a, b = s.auth("alice"), s.auth("bob")
        # created before the alerter starts: loaded from PostgreSQL at its start
        r = await s.http.post(
            "/api/v1/alerts",
            json={"market": SYM, "condition": "above", "target": "50.05"},
            headers=a,
        )
        early = r.json()["id"]
        alerter = Alerter(cfg, database_url)
        await alerter.start()
        try:
            # created while it runs: reaches it through alerts.cmd
            late = []
            for body in (
                {"market": SYM, "condition": "crosses", "target": "50.08"},
                {"market": SYM, "condition": "below", "target": "40"},
            ):
                r = await s.http.post("/api/v1/alerts", json=body, headers=a)
                late.append(r.json()["id"])
            r = await s.http.post(
                "/api/v1/alerts",
                json={"market": SYM, "condition": "above", "target": "50.01"},
                headers=b,
            )
            deleted = r.json()["id"]
            r = await s.http.delete(f"/api/v1/alerts/{deleted}", headers=b)
            assert r.json()["status"] == "deleted"

            async def known() -> bool:
                return {early, *late} <= {x.id for x in alerter.index.alerts()} and (
                    deleted not in alerter.index
                )

            await wait_for(known, "the alerter to hold the API's alerts")
            await _authed(s, alice, "alice", "orders")
            await _authed(s, bob, "bob", "orders")

            r = await s.place("bob", side="sell", quantity="5", price="50.00")
            assert r.status_code == 201
            r = await s.place("alice", side="buy", quantity="1", price="50.00")
            assert r.json()["status"] == "filled"  # last = 50.00: the crosses alert takes a side
            r = await s.place("bob", side="sell", quantity="5", price="50.10")
            r = await s.place("alice", side="buy", quantity="5", price="50.10")
            assert r.json()["status"] == "filled"  # last 50.00 -> 50.10: both alerts fire

            got = [await _next(alice, "notification"), await _next(alice, "notification")]
            assert [(n["alert_id"], n["target"], n["price"]) for n in got] == [
                (early, "50.05", "50.10"),
                (late[0], "50.08", "50.10"),
            ]
            assert got[0]["channel"] == "orders" and got[0]["final"] is True
            assert got[1]["condition"] == "crosses" and got[1]["direction"] == "up"
            listed = (await s.http.get("/api/v1/notifications", headers=a)).json()
            assert sorted(n["id"] for n in listed) == sorted(n["id"] for n in got)
            assert (await s.http.get("/api/v1/notifications", headers=b)).json() == []
            r = await s.http.get(f"/api/v1/alerts/{early}", headers=a)
            assert (r.json()["status"], r.json()["fire_count"]) == ("fired", 1)
            r = await s.http.get(f"/api/v1/alerts/{late[1]}", headers=a)
            assert (r.json()["status"], r.json()["fire_count"]) == ("active", 0)

            # signals: alice subscribes to volume spikes; a watcher follows the public channel
            r = await s.http.post(
                "/api/v1/signal-subscriptions",
                json={"types": ["volume_spike"], "symbols": [SYM], "min_score": 0.5},
                headers=a,
            )
            assert r.status_code == 201, r.text
            sub_id = r.json()["id"]
            listed_subs = (await s.http.get("/api/v1/signal-subscriptions", headers=a)).json()
            assert [x["id"] for x in listed_subs] == [sub_id]

            async def subscribed() -> bool:
                return len(alerter.subscriptions) == 1

            await wait_for(subscribed, "the alerter to hold the subscription")
            await watcher.send(json.dumps({"op": "subscribe", "channel": "signals"}))
            await _next(watcher, "subscribed")
            nc = await nats.connect(nats_url)
            pub = Publisher(nc)
            for i in range(21):
                c = _candle(i, 100 if i == 20 else 10)
                await pub.submit(f"md.candle.1m.{SYM}", c, msg_id=f"c:{i}")
            await pub.flush()
            await nc.close()

            pushed = await _next(watcher, "signal")
            assert pushed["channel"] == "signals"
            sig = pushed["signal"]
            assert (sig["type"], sig["symbol"], sig["interval"]) == ("volume_spike", SYM, "1m")
            assert sig["open_time"] == T0 + 20 * 60_000 and sig["score"] == 1.0
            note = await _next(alice, "notification")
            assert (note["kind"], note["signal"]["id"]) == ("signal", sig["id"])
            r = await s.http.get(
                "/api/v1/signals", params={"symbol": SYM, "type": "volume_spike", "since": T0}
            )
            assert [x["id"] for x in r.json()] == [sig["id"]]
            r = await s.http.get("/api/v1/signals", params={"since": T0 + 21 * 60_000})
            assert r.json() == []
            r = await s.http.delete(f"/api/v1/signal-subscriptions/{sub_id}", headers=a)
            assert r.status_code == 204
            r = await s.http.delete(f"/api/v1/signal-subscriptions/{sub_id}", headers=a)
            assert r.status_code == 404
            # bob got no notification of either kind
            assert (await s.http.get("/api/v1/notifications", headers=b)).json() == []
        finally:
            await alerter.stop()
