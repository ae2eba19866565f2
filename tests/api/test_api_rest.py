"""REST API end to end: the real matcher, risk and persister actors on a real nats-server and
PostgreSQL, the API on uvicorn; auth and ownership, error shapes, the order round trip, book,
trades, ticker, listing, probes and OpenAPI."""

from __future__ import annotations

import time

import pytest
from kit.api_stack import SPEC, SYM, Stack, api_stack, error_of
from kit.wait import wait_for

from orrange.api import ApiOptions
from orrange.api.auth import issue_token
from orrange.risk import is_generated_client_order_id

pytestmark = pytest.mark.timeout(120)


async def _order_status(stack: Stack, user: str, order_id: int, status: str) -> dict[str, object]:
    """GET the order until the persister has stored ``status`` (returns the last body)."""
    body: dict[str, object] = {}

    async def stored() -> bool:
        nonlocal body
        r = await stack.http.get(f"/api/v1/orders/{SYM}/{order_id}", headers=stack.auth(user))
        if r.status_code != 200:
            return False
        body = r.json()
        return body["status"] == status

    await wait_for(stored, f"order {order_id} to be {status}")
    return body


async def test_auth_errors_and_validation(nats_url: str, database_url: str) -> None:
    async with api_stack(nats_url, database_url) as s:
        # no token, a forged token, an expired token, a wrong scheme
        r = await s.http.get("/api/v1/orders")
        assert r.status_code == 401
        assert error_of(r)["reason"] == "missing_token"
        assert r.headers["www-authenticate"].startswith("Bearer")
        forged = issue_token("another-secret-0123456789abcdef-01234", "alice")
        r = await s.http.get("/api/v1/orders", headers={"Authorization": f"Bearer {forged}"})
        assert (r.status_code, error_of(r)["reason"]) == (401, "invalid_token")
        expired = s.token("alice", ttl_s=-10)
        r = await s.http.get("/api/v1/orders", headers={"Authorization": f"Bearer {expired}"})
        assert (r.status_code, error_of(r)["reason"]) == (401, "expired_token")
        r = await s.http.get("/api/v1/orders", headers={"Authorization": "Basic abc"})
        assert (r.status_code, error_of(r)["field"]) == (401, "authorization")

        async def bad(body: dict[str, object], status: int, field: str, reason: str) -> None:
            r = await s.http.post("/api/v1/orders", json=body, headers=s.auth("alice"))
            assert r.status_code == status, r.text
            err = error_of(r)
            assert (err["field"], err["reason"]) == (field, reason), err

        ok = {"symbol": SYM, "side": "buy", "quantity": "3", "price": "10.00"}
        await bad({**ok, "price": "10.001"}, 400, "price", "off_tick")
        await bad({**ok, "price": "-1"}, 400, "price", "not_positive")
        await bad({**ok, "price": "abc"}, 400, "price", "not_a_number")
        await bad({**ok, "quantity": "1.5"}, 400, "quantity", "off_lot")
        await bad({**ok, "quantity": "100001"}, 400, "quantity", "above_max_qty")
        await bad({**ok, "quantity": 3}, 400, "quantity", "invalid_type")
        await bad({**ok, "trigger_price": "1.234"}, 400, "trigger_price", "off_tick")
        await bad({k: v for k, v in ok.items() if k != "side"}, 400, "side", "missing")
        await bad({**ok, "colour": "red"}, 400, "colour", "unknown_field")
        await bad({**ok, "side": "hold"}, 400, "side", "invalid")
        await bad({**ok, "symbol": "NOPE-USD"}, 400, "symbol", "unknown_market")
        await bad({**ok, "client_order_id": "has space"}, 400, "client_order_id", "invalid_format")
        r = await s.http.post(
            "/api/v1/orders",
            content=b"{not json",
            headers={**s.auth("alice"), "content-type": "application/json"},
        )
        assert (r.status_code, error_of(r)["field"]) == (400, "body")
        # engine rejections name the field too (a limit order with a trigger: the book refuses)
        await bad({**ok, "trigger_price": "9.00"}, 422, "trigger_price", "unexpected_trigger_price")
        # query parameters, unknown routes and markets
        r = await s.http.get(f"/api/v1/markets/{SYM}/book", params={"depth": 0})
        assert (r.status_code, error_of(r)["field"]) == (400, "depth")
        r = await s.http.get(f"/api/v1/markets/{SYM}/book", params={"depth": "many"})
        assert (r.status_code, error_of(r)["field"]) == (400, "depth")
        r = await s.http.get("/api/v1/markets/NOPE-USD/book")
        assert (r.status_code, error_of(r)["reason"]) == (404, "unknown_market")
        r = await s.http.get("/api/v1/nothing-here")
        assert (r.status_code, error_of(r)["reason"]) == (404, "not_found")
        r = await s.http.get("/api/v1/orders", params={"status": "sleepy"}, headers=s.auth("a"))
        assert (r.status_code, error_of(r)["field"]) == (400, "status")
        r = await s.http.get("/api/v1/orders", params={"cursor": "!!"}, headers=s.auth("a"))
        assert (r.status_code, error_of(r)["field"]) == (400, "cursor")


async def test_order_round_trip_and_ownership(nats_url: str, database_url: str) -> None:
    async with api_stack(nats_url, database_url) as s:
        r = await s.place("alice", side="sell", quantity="5", price="100.25", client_order_id="a-1")
        assert r.status_code == 201, r.text
        sell = r.json()
        assert sell["status"] == "new"
        assert (sell["price"], sell["quantity"], sell["leaves_quantity"]) == ("100.25", "5", "5")
        assert sell["client_order_id"] == "a-1"
        oid = sell["order_id"]

        # the same client order id again: a duplicate, never executed twice
        r = await s.place("alice", side="sell", quantity="5", price="100.25", client_order_id="a-1")
        assert (r.status_code, error_of(r)["reason"]) == (409, "duplicate_client_order_id")

        # bob's buy trades on arrival: the answer carries the fill
        r = await s.place("bob", side="buy", quantity="3", price="101.00")
        assert r.status_code == 201, r.text
        buy = r.json()
        assert buy["status"] == "filled"
        assert buy["filled_quantity"] == "3" and buy["leaves_quantity"] == "0"
        assert is_generated_client_order_id(buy["client_order_id"])  # the API made one
        [fill] = buy["fills"]
        # taker fee: ceil(10025 * 3 * 5 / 10000) = 16 units of 0.01 USD
        assert fill == {
            "seq": fill["seq"],
            "ts": fill["ts"],
            "price": "100.25",
            "quantity": "3",
            "fee": "0.16",
            "liquidity": "taker",
        }

        # alice sees her order (as persisted), with her maker fill and rebate
        mine = await _order_status(s, "alice", oid, "partially_filled")
        assert (mine["filled_quantity"], mine["leaves_quantity"]) == ("3", "2")
        assert mine["fills"] == [
            {
                "seq": fill["seq"],
                "ts": fill["ts"],
                "price": "100.25",
                "quantity": "3",
                "fee": "-0.06",
                "liquidity": "maker",
            }
        ]
        r = await s.http.get("/api/v1/orders/by-client-id/a-1", headers=s.auth("alice"))
        assert r.status_code == 200 and r.json()["order_id"] == oid
        generated = buy["client_order_id"]
        await _order_status(s, "bob", buy["order_id"], "filled")
        r = await s.http.get(f"/api/v1/orders/by-client-id/{generated}", headers=s.auth("bob"))
        assert r.status_code == 200 and r.json()["order_id"] == buy["order_id"]

        # bob may not see, amend or cancel alice's order; unknown orders are 404
        url = f"/api/v1/orders/{SYM}/{oid}"
        r = await s.http.get(url, headers=s.auth("bob"))
        assert (r.status_code, error_of(r)["reason"]) == (403, "not_owner")
        r = await s.http.patch(url, json={"quantity": "4"}, headers=s.auth("bob"))
        assert (r.status_code, error_of(r)["reason"]) == (403, "not_owner")
        r = await s.http.delete(url, headers=s.auth("bob"))
        assert (r.status_code, error_of(r)["reason"]) == (403, "not_owner")
        r = await s.http.get(f"/api/v1/orders/{SYM}/999999", headers=s.auth("bob"))
        assert (r.status_code, error_of(r)["reason"]) == (404, "unknown_order")
        r = await s.http.delete(f"/api/v1/orders/{SYM}/999999", headers=s.auth("bob"))
        assert (r.status_code, error_of(r)["reason"]) == (404, "unknown_order")
        r = await s.http.patch(url, json={}, headers=s.auth("alice"))
        assert (r.status_code, error_of(r)["field"]) == (400, "body")
        r = await s.http.patch(url, json={"price": "1.001"}, headers=s.auth("alice"))
        assert (r.status_code, error_of(r)["reason"]) == (400, "off_tick")

        # alice amends her order (total 4 of which 3 filled: 1 open), then cancels it
        r = await s.http.patch(url, json={"quantity": "4"}, headers=s.auth("alice"))
        assert r.status_code == 200, r.text
        assert r.json() == {
            "order_id": oid,
            "symbol": SYM,
            "price": "100.25",
            "quantity": "4",
            "leaves_quantity": "1",
            "priority_kept": True,
        }
        r = await s.http.delete(url, headers=s.auth("alice"))
        assert r.status_code == 200, r.text
        assert r.json() == {
            "order_id": oid,
            "symbol": SYM,
            "status": "canceled",
            "canceled_quantity": "1",
            "leaves_quantity": "0",
        }
        await _order_status(s, "alice", oid, "canceled")
        r = await s.http.delete(url, headers=s.auth("alice"))
        assert (r.status_code, error_of(r)["reason"]) == (409, "order_closed")

        # cancel-all: every open order of the caller in the market, nobody else's
        for price in ("1.00", "2.00"):
            assert (await s.place("gina", side="buy", quantity="1", price=price)).status_code == 201
        await s.place("hank", side="buy", quantity="1", price="1.50")
        r = await s.http.delete(f"/api/v1/orders/{SYM}", headers=s.auth("gina"))
        assert (r.status_code, r.json()["status"]) == (202, "submitted")

        async def gina_done() -> bool:
            r = await s.http.get(f"/api/v1/markets/{SYM}/book", params={"depth": 10})
            return r.json()["bids"] == [["1.50", "1"]]

        await wait_for(gina_done, "gina's orders to leave the book")

        # post-only crossing is refused by the book, naming the price
        await s.place("carol", side="sell", quantity="2", price="105.00")
        r = await s.place("dave", side="buy", quantity="1", price="105.00", post_only=True)
        assert (r.status_code, error_of(r)["field"], error_of(r)["reason"]) == (
            422,
            "price",
            "post_only_would_cross",
        )


async def test_listing_market_data_probes(nats_url: str, database_url: str) -> None:
    async with api_stack(nats_url, database_url) as s:
        ids = []
        for i in range(5):
            r = await s.place("erin", side="buy", quantity=str(i + 1), price=f"9{i}.00")
            assert r.status_code == 201, r.text
            ids.append(r.json()["order_id"])
        r = await s.place("frank", side="sell", quantity="2", price="94.00")
        assert r.json()["status"] == "filled"

        # the L2 book from the matcher, with its sequence number
        r = await s.http.get(f"/api/v1/markets/{SYM}/book", params={"depth": 3})
        assert r.status_code == 200
        book = r.json()
        assert book["seq"] > 0
        assert book["bids"] == [["94.00", "3"], ["93.00", "4"], ["92.00", "3"]]
        assert book["asks"] == []

        async def persisted() -> bool:
            r = await s.http.get("/api/v1/orders", params={"limit": 10}, headers=s.auth("erin"))
            return len(r.json()["orders"]) == 5

        await wait_for(persisted, "erin's open orders in PostgreSQL")
        # paginated open orders, newest first
        seen: list[int] = []
        cursor = None
        while True:
            params: dict[str, object] = {"status": "open", "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (
                await s.http.get("/api/v1/orders", params=params, headers=s.auth("erin"))
            ).json()
            seen += [o["order_id"] for o in page["orders"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ids[::-1]

        async def frank_filled() -> bool:
            r = await s.http.get(
                "/api/v1/orders", params={"status": "all"}, headers=s.auth("frank")
            )
            return [o["status"] for o in r.json()["orders"]] == ["filled"]

        await wait_for(frank_filled, "frank's filled order in PostgreSQL")
        r = await s.http.get("/api/v1/orders", headers=s.auth("frank"))
        assert r.json() == {"orders": [], "next_cursor": None}

        async def traded() -> bool:
            r = await s.http.get(f"/api/v1/markets/{SYM}/trades")
            return len(r.json()) == 1

        await wait_for(traded, "the trade in PostgreSQL")
        [trade] = (await s.http.get(f"/api/v1/markets/{SYM}/trades")).json()
        assert (trade["price"], trade["quantity"], trade["side"]) == ("94.00", "2", "sell")
        ticker = (await s.http.get(f"/api/v1/markets/{SYM}/ticker")).json()
        assert ticker["last"] == ticker["open"] == ticker["high"] == "94.00"
        assert (ticker["volume"], ticker["quote_volume"], ticker["trades"]) == ("2", "188.00", 1)
        assert ticker["to_ts"] - ticker["from_ts"] == 86_400_000
        assert ticker["to_ts"] <= time.time() * 1000 + 1

        markets = (await s.http.get("/api/v1/markets")).json()
        assert [m["symbol"] for m in markets] == [SYM]
        assert markets[0]["tick_size"] == SPEC.tick_size and markets[0]["lot_size"] == "1"

        for path in ("/health", "/live", "/ready"):
            r = await s.http.get(path)
            assert r.status_code == 200 and r.json()["status"] == "ok", path
        metrics = (await s.http.get("/metrics")).text
        assert 'orrange_api_order_roundtrip_seconds_count{command="submit"} 6.0' in metrics
        schema = (await s.http.get("/schema/openapi.json")).json()
        assert "/api/v1/orders" in schema["paths"]
        submit_doc = schema["paths"]["/api/v1/orders"]["post"]
        assert submit_doc["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/OrderIn"
        }
        assert submit_doc["responses"]["201"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/OrderOut"
        }
        assert "/api/v1/markets/{symbol}/book" in schema["paths"]


async def test_engine_down_is_504_and_503(nats_url: str, database_url: str) -> None:
    options = ApiOptions(order_timeout_s=0.5, book_query_timeout_s=0.5)
    async with api_stack(nats_url, database_url, engine=False, options=options) as s:
        r = await s.place("ivan", side="buy", quantity="1", price="1.00", client_order_id="i-1")
        assert r.status_code == 504
        err = error_of(r)
        assert (err["field"], err["reason"]) == ("engine", "timeout")
        assert "/api/v1/orders/by-client-id/i-1" in err["message"]
        r = await s.http.delete(f"/api/v1/orders/{SYM}/1", headers=s.auth("ivan"))
        assert (r.status_code, error_of(r)["reason"]) == (504, "timeout")
        r = await s.http.get(f"/api/v1/markets/{SYM}/book")
        assert (r.status_code, error_of(r)["reason"]) == (503, "book_unavailable")
        r = await s.http.get("/api/v1/orders/by-client-id/i-1", headers=s.auth("ivan"))
        assert (r.status_code, error_of(r)["reason"]) == (404, "unknown_order")
        metrics = (await s.http.get("/metrics")).text
        assert 'orrange_api_order_timeouts_total{command="submit"} 1.0' in metrics


async def test_submit_without_a_command_stream_is_503(nats_url: str, database_url: str) -> None:
    """The JetStream ack resolves in the background: when it is an error (no stream captures
    the command subject) the request fails at once with 503, not after the 5 s timeout."""
    import nats

    async with api_stack(nats_url, database_url, engine=False) as s:
        nc = await nats.connect(nats_url)
        try:
            await nc.jetstream().delete_stream("CMD")
        finally:
            await nc.close()
        started = time.monotonic()
        r = await s.place("ivan", side="buy", quantity="1", price="1.00")
        assert time.monotonic() - started < 2.0
        assert r.status_code == 503
        err = error_of(r)
        assert (err["field"], err["reason"]) == ("engine", "unavailable")
        assert "no stream captures" in err["message"]


async def test_get_after_my_command_reads_its_result(nats_url: str, database_url: str) -> None:
    """Read-your-writes: GET of an order right after the API answered a submit or cancel of it
    shows that result, although the persister stores it asynchronously (it lingers for
    fuller batches)."""
    async with api_stack(nats_url, database_url) as s:
        for i in range(5):
            r = await s.place("gina", side="buy", quantity="1", price=f"{10 + i}.00")
            assert r.status_code == 201, r.text
            oid = r.json()["order_id"]
            got = await s.http.get(f"/api/v1/orders/{SYM}/{oid}", headers=s.auth("gina"))
            assert (got.status_code, got.json()["status"]) == (200, "new"), got.text
            r = await s.http.delete(f"/api/v1/orders/{SYM}/{oid}", headers=s.auth("gina"))
            assert r.json()["status"] == "canceled"
            got = await s.http.get(f"/api/v1/orders/{SYM}/{oid}", headers=s.auth("gina"))
            assert got.json()["status"] == "canceled", got.text
