"""Trade routes without a chain: who may read a trade, pagination, the chat's permissions,
and the answers of on-chain steps when no chain is configured or dev signing is refused."""

from __future__ import annotations

import asyncpg
import pytest
from kit.api_stack import SPEC, SYM, api_stack, error_of

from orrange.matching.enums import Side
from orrange.matching.events import OrderFilled
from orrange.settlement.config import SettlementConfig
from orrange.settlement.lifecycle import open_trade
from orrange.store import migrate
from orrange.store import settlement as db


def _fill(seq: int, ts: int) -> OrderFilled:
    return OrderFilled(
        symbol=SYM,
        seq=seq,
        ts=ts,
        maker_order_id=1,
        taker_order_id=2,
        maker_user="sam",
        taker_user="bob",
        price=12_345,
        quantity=7,
        aggressor=Side.BUY,
        maker_fee=0,
        taker_fee=0,
        maker_leaves=0,
        taker_leaves=0,
        payment_methods=("pix",),
    )


async def test_trade_reads_chat_and_chain_answers(
    nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORRANGE_CHAIN_URL", raising=False)
    monkeypatch.delenv("ORRANGE_ESCROW_ADDRESS", raising=False)
    monkeypatch.setenv("ORRANGE_ENV", "prod")
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn)
        trades = [
            open_trade(_fill(seq, 1_000 * seq), SPEC, SettlementConfig()) for seq in (1, 2, 3)
        ]
        for t in trades:
            assert await db.insert_trade(conn, t, None, 0)
        assert not await db.insert_trade(conn, trades[0], None, 0)
    finally:
        await conn.close()
    tid = trades[0].trade_id
    async with api_stack(nats_url, database_url, engine=False) as s:
        r = await s.http.get(f"/api/v1/trades/{tid}", headers=s.auth("sam"))
        assert r.status_code == 200, r.text
        t = r.json()
        assert (t["role"], t["state"], t["price"], t["quantity"]) == (
            "seller",
            "awaiting_funding",
            "123.45",
            "7",
        )
        assert (t["payment_method"], t["tx_hashes"], t["amount"]) == ("pix", {}, None)
        assert (await s.http.get(f"/api/v1/trades/{tid}", headers=s.auth("eve"))).status_code == 404
        mediator = {"Authorization": f"Bearer {s.token('mia', role='mediator')}"}
        r = await s.http.get(f"/api/v1/trades/{tid}", headers=mediator)
        assert r.json()["role"] == "mediator"

        # my trades, newest first, two per page
        seen: list[str] = []
        cursor: str | None = None
        while True:
            url = "/api/v1/trades?limit=2" + (f"&cursor={cursor}" if cursor else "")
            page = (await s.http.get(url, headers=s.auth("bob"))).json()
            seen += [x["trade_id"] for x in page["trades"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [t.trade_id for t in reversed(trades)]
        bad = await s.http.get("/api/v1/trades?cursor=x", headers=s.auth("bob"))
        assert error_of(bad)["reason"] == "invalid_cursor"
        assert (await s.http.get("/api/v1/trades", headers=s.auth("eve"))).json() == {
            "trades": [],
            "next_cursor": None,
        }

        # chat: parties talk; a mediator reads, but speaks only after a dispute
        r = await s.http.post(
            f"/api/v1/trades/{tid}/messages", json={"text": " paid via pix "}, headers=s.auth("bob")
        )
        assert r.status_code == 201 and r.json()["text"] == "paid via pix"
        r = await s.http.post(
            f"/api/v1/trades/{tid}/messages", json={"text": "hi"}, headers=mediator
        )
        assert error_of(r)["reason"] == "not_disputed"
        r = await s.http.post(
            f"/api/v1/trades/{tid}/messages", json={"text": " "}, headers=s.auth("sam")
        )
        assert error_of(r)["field"] == "text"
        r = await s.http.post(
            f"/api/v1/trades/{tid}/messages", json={"text": "x"}, headers=s.auth("eve")
        )
        assert r.status_code == 404
        msgs = (await s.http.get(f"/api/v1/trades/{tid}/messages", headers=mediator)).json()
        assert [(m["sender"], m["role"], m["text"]) for m in msgs] == [
            ("bob", "buyer", "paid via pix")
        ]

        # on-chain steps: the right party, a configured chain, dev signing only in dev
        r = await s.http.post(
            f"/api/v1/trades/{tid}/paid", json={"from": "0x" + "11" * 20}, headers=s.auth("sam")
        )
        assert (r.status_code, error_of(r)["reason"]) == (403, "forbidden")
        r = await s.http.post(
            f"/api/v1/trades/{tid}/paid", json={"from": "0x" + "11" * 20}, headers=s.auth("bob")
        )
        assert (r.status_code, error_of(r)["field"]) == (503, "chain")
        r = await s.http.post(f"/api/v1/trades/{tid}/paid?sign=dev", headers=s.auth("bob"))
        assert (r.status_code, error_of(r)["reason"]) == (403, "not_dev")
        r = await s.http.post(
            f"/api/v1/trades/{tid}/resolve", json={"buyer_bps": 5000}, headers=s.auth("bob")
        )
        assert r.status_code == 403
        r = await s.http.post(
            f"/api/v1/trades/{tid}/resolve", json={"buyer_bps": 10_001}, headers=mediator
        )
        assert error_of(r)["field"] == "buyer_bps"
        r = await s.http.post(
            f"/api/v1/trades/{tid}/fund",
            json={"buyer_address": "0x" + "22" * 20, "amount": "-5"},
            headers=s.auth("sam"),
        )
        assert error_of(r)["field"] == "amount"
