"""P2P settlement end to end on a real node: anvil, the escrow deployed on it, the real risk,
matcher, persister, escrow watcher and API (in-process actors, uvicorn) on a real nats-server
and PostgreSQL. Two users' crossing orders make a trade; the on-chain steps go through the
API with development signing; the watcher follows the escrow's logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from kit.api_stack import actor_config, engine_actors, running_api
from kit.wait import wait_for
from websockets.asyncio.client import connect as ws_connect

from orrange.api import issue_token
from orrange.engine.escrow import EscrowWatcher, WatcherOptions
from orrange.evm.chain import Escrow, connect
from orrange.infra.anvil import AnvilNode, ensure_anvil
from orrange.markets import MarketSpec
from orrange.settlement.config import SettlementConfig
from orrange.settlement.reputation import NEW_USER_SCORE
from orrange.store import settlement as db

pytestmark = [pytest.mark.slow, pytest.mark.chain]  # an anvil node

SYM = "USDT-NGN"
SPEC = MarketSpec(
    symbol=SYM,
    base="USDT",
    quote="NGN",
    tick_size="0.01",
    lot_size="0.01",
    min_qty="1",
    max_qty="100000",
    priority="price-reputation-time",
)
SECRET = "test-secret-settlement-0123456789abcdef"
WINDOW_S = 600  # payment window and funding timeout of the tests (s)
SETTLEMENT = SettlementConfig(
    funding_timeout_ms=WINDOW_S * 1000, default_payment_window_ms=WINDOW_S * 1000
)
WEI = 10**17


@dataclass
class Chain:
    node: AnvilNode
    escrow: Escrow
    seller: str
    buyer: str
    mediator: str


@dataclass
class Env:
    http: httpx.AsyncClient
    base: str
    chain: Chain
    watcher: EscrowWatcher
    database_url: str
    seq: int = 0

    @staticmethod
    def auth(user: str, role: str = "trader") -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(SECRET, user, role)}"}

    async def cross(self, seller: str, buyer: str) -> str:
        """The seller rests an ask, the buyer lifts it: returns the trade id."""
        self.seq += 1
        for user, side in ((seller, "sell"), (buyer, "buy")):
            r = await self.http.post(
                "/api/v1/orders",
                json={
                    "symbol": SYM,
                    "side": side,
                    "type": "limit",
                    "price": "1500.00",
                    "quantity": "10",
                    "client_order_id": f"{user}-{self.seq}",
                    "payment_methods": ["bank_transfer"],
                },
                headers=self.auth(user),
            )
            assert r.status_code == 201, r.text
        found: list[str] = []

        async def opened() -> bool:
            r = await self.http.get("/api/v1/trades", headers=self.auth(buyer))
            ids = [t["trade_id"] for t in r.json()["trades"] if t["state"] == "awaiting_funding"]
            found[:] = ids
            return bool(ids)

        await wait_for(opened, "the trade to open")
        return found[0]

    async def trade(self, tid: str, user: str) -> dict[str, Any]:
        r = await self.http.get(f"/api/v1/trades/{tid}", headers=self.auth(user))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def reach(self, tid: str, user: str, state: str) -> dict[str, Any]:
        got: dict[str, Any] = {}

        async def check() -> bool:
            got.update(await self.trade(tid, user))
            return got["state"] == state

        await wait_for(check, f"trade {tid[:10]} to reach {state}")
        return got

    async def step(
        self, tid: str, user: str, action: str, body: dict[str, Any], role: str = "trader"
    ) -> dict[str, Any]:
        r = await self.http.post(
            f"/api/v1/trades/{tid}/{action}?sign=dev", json=body, headers=self.auth(user, role)
        )
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        assert out["tx_hash"].startswith("0x") and out["transaction"]["from"] == body["from"]
        return out

    async def fund(self, tid: str, seller: str) -> None:
        c = self.chain
        body = {"from": c.seller, "buyer_address": c.buyer, "amount": str(WEI)}
        await self.step(tid, seller, "fund", body)

    async def reputation(self, user: str) -> Any:
        conn = await asyncpg.connect(self.database_url)
        try:
            return await db.reputation_of(conn, user)
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def stack(
    nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Env]:
    with AnvilNode(ensure_anvil()) as node:
        w3 = connect(node.url)
        accounts = w3.eth.accounts
        escrow = Escrow.deploy(
            w3, accounts[0], mediator=accounts[3], fee_recipient=accounts[4], fee_bps=100
        )
        chain = Chain(node, escrow, accounts[1], accounts[2], accounts[3])
        monkeypatch.setenv("ORRANGE_CHAIN_URL", node.url)
        monkeypatch.setenv("ORRANGE_ESCROW_ADDRESS", escrow.address)
        monkeypatch.setenv("ORRANGE_ENV", "dev")

        markets = {SYM: SPEC}
        watcher = EscrowWatcher(
            actor_config("escrow", nats_url),
            database_url,
            markets,
            SETTLEMENT,
            WatcherOptions(
                chain_url=node.url,
                escrow_address=escrow.address,
                confirmations=0,
                poll_interval_ms=50,
            ),
        )
        actors = [*engine_actors(nats_url, database_url, markets), watcher]
        async with running_api(
            nats_url, database_url, actors, markets=markets, secret=SECRET
        ) as api:
            yield Env(api.http, api.base, chain, watcher, database_url)


async def test_release_dispute_split_and_timeout_refund(
    nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with stack(nats_url, database_url, monkeypatch) as env:
        c = env.chain
        # --- happy path: funded, paid, released -------------------------------------------
        tid = await env.cross("sam", "bob")
        t = await env.trade(tid, "sam")
        assert (t["role"], t["buyer"], t["seller"]) == ("seller", "bob", "sam")
        assert (t["price"], t["quantity"], t["payment_method"]) == (
            "1500.00",
            "10.00",
            "bank_transfer",
        )
        assert t["escrow_address"] == c.escrow.address
        forbidden = await env.http.post(
            f"/api/v1/trades/{tid}/release?sign=dev",
            json={"from": c.buyer},
            headers=env.auth("bob"),
        )
        assert forbidden.status_code == 403
        unsigned = await env.http.post(
            f"/api/v1/trades/{tid}/fund",
            json={"from": c.seller, "buyer_address": c.buyer, "amount": str(WEI)},
            headers=env.auth("sam"),
        )
        assert unsigned.status_code == 200, unsigned.text
        tx = unsigned.json()
        assert tx["tx_hash"] is None and tx["transaction"]["value"] == WEI
        assert tx["transaction"]["to"] == c.escrow.address
        await env.fund(tid, "sam")
        t = await env.reach(tid, "bob", "funded")
        assert (t["amount"], t["seller_address"], t["buyer_address"]) == (
            str(WEI),
            c.seller,
            c.buyer,
        )
        assert "funded" in t["tx_hashes"] and t["payment_deadline"] is not None
        await env.step(tid, "bob", "paid", {"from": c.buyer})
        await env.reach(tid, "sam", "paid")
        await env.step(tid, "sam", "release", {"from": c.seller})
        t = await env.reach(tid, "bob", "released")
        assert t["to_buyer"] == str(WEI - WEI * 100 // 10_000) and t["fee"] == str(WEI // 100)
        assert set(t["tx_hashes"]) == {"funded", "paid", "released"}

        async def reputations() -> bool:
            for user in ("sam", "bob"):
                r = await env.reputation(user)
                if r is None or r[1].completed != 1:
                    return False
            return True

        await wait_for(reputations, "both reputations")
        score, stats = await env.reputation("sam")
        assert score > NEW_USER_SCORE and stats.median_release_ms is not None
        page = await env.http.get("/api/v1/trades?limit=1", headers=env.auth("bob"))
        assert [x["trade_id"] for x in page.json()["trades"]] == [tid]

        # --- dispute, chat, mediator split ------------------------------------------------
        tid2 = await env.cross("sam", "bob")
        async with ws_connect(env.base.replace("http://", "ws://") + "/ws") as ws:
            await ws.send(json.dumps({"op": "auth", "token": issue_token(SECRET, "sam")}))
            await ws.send(json.dumps({"op": "subscribe", "channel": "orders"}))
            while json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] != "subscribed":
                pass
            r = await env.http.post(
                f"/api/v1/trades/{tid2}/messages",
                json={"text": "sent 15000 NGN"},
                headers=env.auth("bob"),
            )
            assert r.status_code == 201, r.text
            while (msg := json.loads(await asyncio.wait_for(ws.recv(), 30)))[
                "type"
            ] != "trade_message":
                pass
            assert (msg["trade_id"], msg["sender"], msg["role"], msg["text"]) == (
                tid2,
                "bob",
                "buyer",
                "sent 15000 NGN",
            )
        early = await env.http.post(
            f"/api/v1/trades/{tid2}/messages",
            json={"text": "hello"},
            headers=env.auth("mia", "mediator"),
        )
        assert early.status_code == 403
        await env.fund(tid2, "sam")
        await env.reach(tid2, "bob", "funded")
        await env.step(tid2, "bob", "paid", {"from": c.buyer})
        await env.reach(tid2, "bob", "paid")
        await env.step(tid2, "bob", "dispute", {"from": c.buyer})
        await env.reach(tid2, "sam", "disputed")
        r = await env.http.post(
            f"/api/v1/trades/{tid2}/resolve?sign=dev",
            json={"buyer_bps": 5000, "from": c.mediator},
            headers=env.auth("bob"),
        )
        assert r.status_code == 403
        r = await env.http.post(
            f"/api/v1/trades/{tid2}/messages",
            json={"text": "please upload the receipt"},
            headers=env.auth("mia", "mediator"),
        )
        assert r.status_code == 201, r.text
        chat = await env.http.get(
            f"/api/v1/trades/{tid2}/messages", headers=env.auth("mia", "mediator")
        )
        assert [(m["sender"], m["role"]) for m in chat.json()] == [
            ("bob", "buyer"),
            ("mia", "mediator"),
        ]
        await env.step(
            tid2, "mia", "resolve", {"buyer_bps": 5000, "from": c.mediator}, role="mediator"
        )
        t = await env.reach(tid2, "sam", "resolved")
        assert (t["resolution"], t["buyer_bps"]) == ("split", 5000)

        # --- timeout: funded, never paid, the seller reclaims after the deadline ----------
        tid3 = await env.cross("sam", "bob")
        await env.fund(tid3, "sam")
        await env.reach(tid3, "bob", "funded")
        refused = await env.http.post(
            f"/api/v1/trades/{tid3}/reclaim?sign=dev",
            json={"from": c.seller},
            headers=env.auth("sam"),
        )
        assert refused.status_code == 409, refused.text
        c.node.rpc("evm_increaseTime", [WINDOW_S + 60])
        c.node.rpc("evm_mine")
        await env.reach(tid3, "bob", "expired")
        await env.step(tid3, "sam", "reclaim", {"from": c.seller})
        t = await env.reach(tid3, "bob", "refunded")
        assert t["to_seller"] == str(WEI)

        async def timed_out() -> bool:
            r = await env.reputation("bob")
            return r is not None and r[1].timed_out == 1

        await wait_for(timed_out, "bob's timeout")
        _, bob = await env.reputation("bob")
        assert (bob.completed, bob.disputes_lost) == (1, 0)


async def test_reorg_rolls_back_a_funding(
    nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with stack(nats_url, database_url, monkeypatch) as env:
        tid = await env.cross("sam", "bob")
        fork = env.chain.node.rpc("evm_snapshot")
        await env.fund(tid, "sam")
        t = await env.reach(tid, "bob", "funded")
        funded_tx = t["tx_hashes"]["funded"]
        reorgs = env.watcher.reorgs
        # the funding's block is orphaned; the new branch is longer and has no funding
        env.chain.node.rpc("evm_revert", [fork])
        for _ in range(3):
            env.chain.node.rpc("evm_mine")
        t = await env.reach(tid, "bob", "awaiting_funding")
        assert t["tx_hashes"] == {} and t["amount"] is None
        assert env.watcher.reorgs > reorgs
        conn = await asyncpg.connect(env.database_url)
        try:
            rows = await conn.fetch(
                "SELECT reverted FROM settlement_chain_events WHERE tx_hash = $1", funded_tx
            )
        finally:
            await conn.close()
        assert [r["reverted"] for r in rows] == [True]
        # funding again on the new branch is followed as usual
        await env.fund(tid, "sam")
        t = await env.reach(tid, "bob", "funded")
        assert t["amount"] == str(WEI) and "funded" in t["tx_hashes"]
