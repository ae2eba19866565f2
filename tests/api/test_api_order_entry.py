"""``POST /api/v1/orders`` has two readers of the body: the route's order-entry middleware (the
hot path, strictly valid JSON) and Litestar's handler (everything else). The same orders and the
same mistakes must get the same answers from both; the ``orrange_api_order_entry`` counter
shows which path served each request."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from kit.api_stack import SYM, Stack, api_stack, error_of

pytestmark = pytest.mark.timeout(120)

#: fields that differ between two otherwise identical orders
_VARYING = {"order_id", "client_order_id", "created_at", "updated_at"}


async def _paths(s: Stack) -> dict[str, float]:
    text = (await s.http.get("/metrics")).text
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'orrange_api_order_entry_total\{path="(\w+)"\} (\S+)', text)
    }


async def _post(s: Stack, content: bytes | AsyncIterator[bytes], **headers: str) -> httpx.Response:
    hdrs = {"content-type": "application/json", **headers}
    return await s.http.post("/api/v1/orders", content=content, headers=hdrs)


async def _served_by(s: Stack, path: str, req: Any) -> httpx.Response:
    """Await the request ``req`` and check that ``path`` (fast or handler) read its body."""
    before = await _paths(s)
    r: httpx.Response = await req
    after = await _paths(s)
    assert after.get(path, 0) == before.get(path, 0) + 1, (path, before, after)
    other = "handler" if path == "fast" else "fast"
    assert after.get(other, 0) == before.get(other, 0), (path, before, after)
    return r


def _stable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in _VARYING}


async def test_fast_path_and_handler_answer_alike(nats_url: str, database_url: str) -> None:
    async with api_stack(nats_url, database_url) as s:
        alice = s.auth("alice")
        order = {"symbol": SYM, "side": "sell", "quantity": "5", "price": "10.00"}
        strict = json.dumps(order).encode()
        # "min_reputation": "0" is valid only under Litestar's lenient conversion
        lenient = json.dumps({**order, "min_reputation": "0"}).encode()

        fast = await _served_by(s, "fast", _post(s, strict, **alice))
        slow = await _served_by(s, "handler", _post(s, lenient, **alice))
        assert fast.status_code == slow.status_code == 201, (fast.text, slow.text)
        assert fast.headers["content-type"] == slow.headers["content-type"]
        assert fast.headers["content-type"] == "application/json"
        assert int(fast.headers["content-length"]) == len(fast.content)
        assert _stable(fast.json()) == _stable(slow.json())
        assert fast.json()["status"] == "new" and fast.json()["leaves_quantity"] == "5"
        assert fast.json()["order_id"] != slow.json()["order_id"]

        # bob's taker through the fast path sees its fills (against alice's two makers)
        taker = json.dumps({"symbol": SYM, "side": "buy", "quantity": "7", "price": "10.00"})
        r = await _served_by(s, "fast", _post(s, taker.encode(), **s.auth("bob")))
        assert r.status_code == 201, r.text
        body = r.json()
        assert (body["status"], body["filled_quantity"]) == ("filled", "7")
        assert [(f["quantity"], f["liquidity"]) for f in body["fills"]] == [
            ("5", "taker"),
            ("2", "taker"),
        ]

        # the same mistakes, once through each reader: same status, same error body and headers
        cases: list[tuple[dict[str, Any], dict[str, str], int, str]] = [
            ({**order, "price": "10.001"}, alice, 400, "off_tick"),
            ({**order, "symbol": "NOPE-USD"}, alice, 400, "unknown_market"),
            ({**order, "trigger_price": "9.00"}, alice, 422, "unexpected_trigger_price"),
            ({**order, "client_order_id": "has space"}, alice, 400, "invalid_format"),
            (order, {}, 401, "missing_token"),
            (order, {"Authorization": "Basic abc"}, 401, "invalid_token"),
            (
                order,
                {"Authorization": f"Bearer {s.token('alice', ttl_s=-10)}"},
                401,
                "expired_token",
            ),
        ]
        for body_in, headers, status, reason in cases:
            one = await _served_by(s, "fast", _post(s, json.dumps(body_in).encode(), **headers))
            lax = json.dumps({**body_in, "min_reputation": "0"}).encode()
            two = await _served_by(s, "handler", _post(s, lax, **headers))
            assert one.status_code == two.status_code == status, (one.text, two.text)
            assert error_of(one) == error_of(two), (one.text, two.text)
            assert error_of(one)["reason"] == reason
            assert one.headers.get("www-authenticate") == two.headers.get("www-authenticate")
            if status == 401:
                assert one.headers["www-authenticate"].startswith("Bearer")

        # bodies the fast path does not take go to Litestar's validation
        for content, field, reason in [
            (b"{not json", "body", "malformed_json"),
            (json.dumps({**order, "quantity": 3}).encode(), "quantity", "invalid_type"),
            (json.dumps({**order, "colour": "red"}).encode(), "colour", "unknown_field"),
        ]:
            r = await _served_by(s, "handler", _post(s, content, **alice))
            assert r.status_code == 400, r.text
            assert (error_of(r)["field"], error_of(r)["reason"]) == (field, reason)

        # a body sent in chunks (Transfer-Encoding: chunked) is read whole by the fast path
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(strict), 7):
                yield strict[i : i + 7]

        r = await _served_by(s, "fast", _post(s, chunks(), **alice))
        assert r.status_code == 201, r.text
        assert _stable(r.json()) == _stable(fast.json())

        # a body past the fast path's 64 KiB limit (JSON whitespace) is passed on unread-again:
        # Litestar reads the rest and the order is placed
        big = b" " * 100_000 + strict
        r = await _served_by(s, "handler", _post(s, big, **alice))
        assert r.status_code == 201, r.text
        assert _stable(r.json()) == _stable(fast.json())

        # every response was counted by the app's before_send hook, both paths alike
        text = (await s.http.get("/metrics")).text
        m = re.search(r'orrange_api_http_responses_total\{method="POST",status="201"\} (\S+)', text)
        assert m is not None and float(m.group(1)) == 5.0, text


async def test_market_order_price_is_its_protection_price(nats_url: str, database_url: str) -> None:
    """Through either reader, a market order's ``price`` is the worst price it may trade at:
    it fills up to it and the rest is canceled (the market's 5 % bound alone would reach
    10.50)."""
    async with api_stack(nats_url, database_url) as s:
        alice, bob = s.auth("alice"), s.auth("bob")
        r = await s.place("alice", side="sell", quantity="4", price="10.50")
        assert r.status_code == 201, r.text
        buy = {"symbol": SYM, "side": "buy", "type": "market", "quantity": "4", "price": "10.20"}
        answers = []
        for path, extra in (("fast", {}), ("handler", {"min_reputation": "0"})):
            r = await s.place("alice", side="sell", quantity="2", price="10.00")
            assert r.status_code == 201, r.text
            content = json.dumps({**buy, **extra}).encode()
            r = await _served_by(s, path, _post(s, content, **bob))
            assert r.status_code == 201, r.text
            answers.append(_stable(r.json()))
        for body in answers:
            assert (body["status"], body["price"]) == ("canceled", "10.20"), body
            assert (body["filled_quantity"], body["leaves_quantity"]) == ("2", "0"), body
            assert [(f["price"], f["quantity"]) for f in body["fills"]] == [("10.00", "2")]
        assert answers[0] == {**answers[1], "fills": answers[0]["fills"]}
        r = await s.http.get(f"/api/v1/markets/{SYM}/book", headers=alice)
        assert r.status_code == 200, r.text
        assert r.json()["asks"] == [["10.50", "4"]], r.text
        # a protection price follows the price rules: on the tick grid and positive
        for bad, reason in (("10.001", "off_tick"), ("0", "not_positive")):
            r = await s.place("bob", **{**buy, "price": bad})
            assert (r.status_code, error_of(r)["field"], error_of(r)["reason"]) == (
                400,
                "price",
                reason,
            )
