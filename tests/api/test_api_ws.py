"""WebSocket /ws end to end: book snapshot + deltas follow the real matcher's book exactly,
trades / ticker / private order channels, and a client that does not read is closed with a
reason without slowing a healthy client."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from typing import Any

import nats
import pytest
import websockets
from kit.api_stack import SYM, Stack, api_stack
from kit.wait import wait_for
from websockets.asyncio.client import ClientConnection, connect

from orrange.api import ApiOptions
from orrange.matching import Side, SubmitOrder
from orrange.runtime import Publisher
from orrange.wire.engine import book_in_subject

pytestmark = pytest.mark.timeout(120)


class BookClient:
    """Follows ``book.<SYM>`` from its snapshot, checking the ``prev_seq`` chain."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.seq = -1
        self.snapshots = 0
        self.deltas = 0

    def apply(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "snapshot":
            self.bids = dict(msg["bids"])
            self.asks = dict(msg["asks"])
            self.seq = msg["seq"]
            self.snapshots += 1
        elif msg["type"] == "delta":
            assert msg["prev_seq"] == self.seq, "gap in the book stream"
            assert msg["seq"] > msg["prev_seq"]
            for side, levels in ((self.bids, msg["bids"]), (self.asks, msg["asks"])):
                for price, size in levels:
                    if float(size) == 0:
                        side.pop(price, None)
                    else:
                        side[price] = size
            self.seq = msg["seq"]
            self.deltas += 1

    def book(self) -> tuple[list[list[str]], list[list[str]]]:
        bids = sorted(self.bids.items(), key=lambda kv: -float(kv[0]))
        asks = sorted(self.asks.items(), key=lambda kv: float(kv[0]))
        return [list(kv) for kv in bids], [list(kv) for kv in asks]

    async def follow_until(self, bids: Any, asks: Any) -> None:
        while self.book() != (bids, asks):
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if msg.get("channel") == f"book.{SYM}":
                self.apply(msg)


async def _subscribe(ws: ClientConnection, channel: str) -> None:
    await ws.send(json.dumps({"op": "subscribe", "channel": channel}))


async def _next(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        msg: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if msg["type"] == kind:
            return msg


async def _flow(s: Stack, n: int, seed: int) -> None:
    """``n`` random limit orders (and a few cancels) through REST, 20 at a time."""
    rng = random.Random(seed)
    placed: list[tuple[str, int]] = []

    async def one(i: int) -> None:
        user = f"u{i % 7}"
        side = rng.choice(["buy", "sell"])
        price = rng.randint(9_900, 10_100) if side == "buy" else rng.randint(9_950, 10_150)
        r = await s.place(
            user, side=side, quantity=str(rng.randint(1, 20)), price=f"{price / 100:.2f}"
        )
        assert r.status_code == 201, r.text
        body = r.json()
        if body["status"] in ("new", "partially_filled"):
            placed.append((user, body["order_id"]))

    for start in range(0, n, 20):
        await asyncio.gather(*(one(i) for i in range(start, min(n, start + 20))))
        for user, oid in placed[: rng.randint(0, 2)]:
            await s.http.delete(f"/api/v1/orders/{SYM}/{oid}", headers=s.auth(user))
        placed = placed[2:]


async def test_book_snapshot_and_deltas_equal_the_book(nats_url: str, database_url: str) -> None:
    async with api_stack(nats_url, database_url) as s, connect(s.ws_url) as early_ws:
        early = BookClient(early_ws)
        await _subscribe(early_ws, f"book.{SYM}")
        assert (await _next(early_ws, "subscribed"))["channel"] == f"book.{SYM}"
        early.apply(await _next(early_ws, "snapshot"))
        assert (early.bids, early.asks, early.seq) == ({}, {}, 0)
        await _flow(s, 120, seed=1)
        async with connect(s.ws_url) as late_ws:
            late = BookClient(late_ws)
            await _subscribe(late_ws, f"book.{SYM}")
            late.apply(await _next(late_ws, "snapshot"))
            await _flow(s, 120, seed=2)
            r = await s.http.get(f"/api/v1/markets/{SYM}/book", params={"depth": 1000})
            book = r.json()
            assert book["bids"] and book["asks"]
            await early.follow_until(book["bids"], book["asks"])
            await late.follow_until(book["bids"], book["asks"])
            assert early.seq <= book["seq"] and late.seq <= book["seq"]
            assert early.snapshots == 1 and late.snapshots == 1
            assert early.deltas > 0 and late.deltas > 0


async def test_trades_ticker_and_private_orders(nats_url: str, database_url: str) -> None:
    async with (
        api_stack(nats_url, database_url) as s,
        connect(s.ws_url) as alice,
        connect(s.ws_url) as bob,
    ):
        await _subscribe(alice, "orders")
        err = await _next(alice, "error")
        assert (err["field"], err["reason"]) == ("channel", "auth_required")
        await alice.send(json.dumps({"op": "auth", "token": "not-a-jwt"}))
        assert (await _next(alice, "error"))["reason"] == "invalid_token"
        for ws, user in ((alice, "alice"), (bob, "bob")):
            await ws.send(json.dumps({"op": "auth", "token": s.token(user)}))
            assert (await _next(ws, "authenticated"))["user"] == user
            await _subscribe(ws, "orders")
            await _next(ws, "subscribed")
        await _subscribe(alice, "nonsense.X")
        assert (await _next(alice, "error"))["reason"] == "unknown_channel"
        await _subscribe(alice, "trades.NOPE-USD")
        assert (await _next(alice, "error"))["reason"] == "unknown_market"
        await alice.send(b"{bad")
        assert (await _next(alice, "error"))["reason"] == "invalid_message"
        await _subscribe(bob, f"trades.{SYM}")
        await _next(bob, "subscribed")
        await _subscribe(bob, f"ticker.{SYM}")
        first = await _next(bob, "ticker")
        assert (first["last"], first["trades"]) == (None, 0)

        r = await s.place("alice", side="sell", quantity="4", price="50.00", client_order_id="x")
        oid = r.json()["order_id"]
        r = await s.place("bob", side="buy", quantity="1", price="50.00")
        assert r.json()["status"] == "filled"

        accepted = await _next(alice, "order")
        assert (accepted["event"], accepted["order_id"]) == ("accepted", oid)
        assert (accepted["client_order_id"], accepted["price"]) == ("x", "50.00")
        fill = await _next(alice, "order")
        assert (fill["event"], fill["liquidity"], fill["quantity"]) == ("fill", "maker", "1")
        assert fill["leaves_quantity"] == "3"
        # bob sees his own events only (his acceptance and his taker fill), the public
        # trade, and a ticker once the trade is in PostgreSQL
        orders: list[dict[str, Any]] = []
        trades: list[dict[str, Any]] = []
        while not (len(orders) == 2 and trades):
            msg = json.loads(await asyncio.wait_for(bob.recv(), 30))
            {"order": orders, "trade": trades}.get(msg["type"], []).append(msg)
        assert [m["event"] for m in orders] == ["accepted", "fill"]
        assert orders[1]["liquidity"] == "taker" and orders[1]["order_id"] != oid
        [trade] = trades
        assert (trade["price"], trade["quantity"], trade["side"]) == ("50.00", "1", "buy")
        ticker = await _next(bob, "ticker")
        assert (ticker["last"], ticker["volume"], ticker["trades"]) == ("50.00", "1", 1)
        await bob.send(json.dumps({"op": "unsubscribe", "channel": f"trades.{SYM}"}))
        await _next(bob, "unsubscribed")
        await bob.send(json.dumps({"op": "ping"}))
        await _next(bob, "pong")


async def _metric(s: Stack, name: str) -> float:
    text = (await s.http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def test_slow_client_is_closed_and_never_slows_others(
    nats_url: str, database_url: str
) -> None:
    options = ApiOptions(ws_queue_size=64, ws_send_timeout_s=600)
    async with api_stack(nats_url, database_url, options=options) as s:
        # a deep book (1000 levels a side) straight into the matcher's input: big snapshots
        nc = await nats.connect(nats_url)
        pub = Publisher(nc)
        for i in range(1000):
            for side, price in ((Side.BUY, 50_000 - i), (Side.SELL, 60_000 + i)):
                cmd = SubmitOrder(ts=1, user="mm", side=side, quantity=1000, price=price)
                await pub.submit(book_in_subject(SYM), cmd, msg_id=f"mm:{side}:{i}")
        await pub.flush()
        await nc.drain()

        async def deep() -> bool:
            r = await s.http.get(f"/api/v1/markets/{SYM}/book", params={"depth": 1000})
            return len(r.json()["asks"]) == 1000

        await wait_for(deep, "the deep book")

        # the slow client: a tiny receive buffer, and it never reads
        host, port = s.base.removeprefix("http://").split(":")
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.setblocking(False)
        await asyncio.get_running_loop().sock_connect(raw, (host, int(port)))
        slow = await connect(s.ws_url, sock=raw, max_queue=1)
        fast = await connect(s.ws_url)
        await _subscribe(fast, f"trades.{SYM}")
        await _next(fast, "subscribed")
        received: list[dict[str, Any]] = []

        async def read_fast() -> None:
            async for raw_msg in fast:
                msg = json.loads(raw_msg)
                if msg["type"] == "trade":
                    received.append(msg)

        reader = asyncio.create_task(read_fast())
        rounds = 0
        try:
            # the slow client asks for snapshot after snapshot (about 30 kB each) while a
            # trade happens every round, until the API gives up on it
            while await _metric(s, "orrange_api_ws_slow_closed_total") < 1:
                assert rounds < 500, "the slow client was never closed"
                rounds += 1
                for _ in range(10):
                    for op in ("subscribe", "unsubscribe"):
                        await slow.send(json.dumps({"op": op, "channel": f"book.{SYM}"}))
                r = await s.place("taker", side="sell", quantity="1", price="1.00")
                assert r.status_code == 201 and r.json()["status"] == "filled", r.text

            # the healthy client got every trade of the period, in order
            await wait_for(lambda: _true(len(received) == rounds), "the fast client's trades")
            seqs = [m["seq"] for m in received]
            assert seqs == sorted(seqs)
            # the slow one, once it reads, finds the close frame with its reason
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(slow.recv(), 30)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008
            assert closed.value.rcvd.reason.startswith("slow consumer")
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await fast.send(json.dumps({"op": "ping"}))
            await _next(fast, "pong")
        finally:
            reader.cancel()
            await fast.close()
            await slow.close()


async def _true(value: bool) -> bool:
    return value
