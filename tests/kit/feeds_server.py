"""Local exchange servers that replay the real captures over real sockets.

Each server listens on ``127.0.0.1`` with a random port (``websockets`` asyncio server), waits
for the client's subscriptions, then sends the recorded frames in order from a cursor shared by
all connections, so a reconnecting client resumes where the previous connection stopped. Like
the exchange, a server keeps the "true" book of every symbol (recorded snapshot + every diff up
to the cursor, including diffs that were dropped on the wire), and serves fresh snapshots from
it: the Binance REST depth endpoint (the very first answer per symbol is the recorded
snapshot, byte for byte), a Coinbase ``level2`` (re)subscription, a Kraken ``book``
subscription on a new connection.

Fault injection: ``disconnect_at`` (close the connection, code 1012, once, before sending that
frame index) and ``drop`` (frame indices consumed by the exchange but never sent; Coinbase still
consumes their ``sequence_num``). When a frame was dropped before the disconnect point, the
disconnect waits until the client has asked for its resync (REST snapshot of that symbol, or
``level2`` resubscribe), so the two faults are seen in the same order however fast the client
reads: the outcome never depends on timing. This needs a frame that reveals the gap (a later
diff of the same Binance symbol, any later Coinbase frame) before the disconnect point.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Iterable
from decimal import Decimal
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from kit.feeds_captures import Frame

_ZERO = Decimal(0)
_PACE_S = 0.0005  # pause between frames: the client's REST snapshot interleaves with the stream


class ReplayServer:
    """Base: lifecycle, counters and fault-injection settings."""

    def __init__(
        self, frames: list[Frame], *, disconnect_at: int | None = None, drop: Iterable[int] = ()
    ) -> None:
        self.frames = frames
        self.disconnect_at = disconnect_at
        self.drop = frozenset(drop)
        self.cursor = 0
        self.connections = 0
        self.sent = 0  # frames sent (all connections)
        self.client_messages: list[Any] = []  # parsed frames received from clients
        self.finished = asyncio.Event()  # the whole script has been consumed
        self._disconnected = False
        self.dropped = False  # a dropped frame has been consumed ...
        self.resynced = asyncio.Event()  # ... and the client has asked for a resync since
        self._server: Server | None = None
        self.port = 0

    async def __aenter__(self) -> ReplayServer:
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            compression=None,
            max_size=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        raise NotImplementedError

    async def _send(self, ws: ServerConnection, text: str) -> None:
        await ws.send(text)
        self.sent += 1

    def _apply(self, frame: Frame) -> None:
        """Update the true state with a consumed frame."""

    async def _before_apply(self, frame: Frame) -> None:
        """Hook: wait for a client action before the state moves on."""

    async def _advance(self, ws: ServerConnection) -> tuple[int, Frame] | None:
        """Consume the next frame of the script (applied to the true state); ``None`` at the
        end of the script (``finished`` set) or when the connection was closed on purpose."""
        i = self.cursor
        if i >= len(self.frames):
            self.finished.set()
            return None
        if i == self.disconnect_at and not self._disconnected:
            if self.dropped:
                await self.resynced.wait()
            self._disconnected = True
            await ws.close(1012, "service restart")
            return None
        frame = self.frames[i]
        await self._before_apply(frame)
        self._apply(frame)
        self.cursor += 1
        if i in self.drop:
            self.dropped = True
        return i, frame


# --------------------------------------------------------------------------------- Binance
class _Side(dict[Decimal, tuple[str, str]]):
    """price -> (price string, quantity string) of one side of a true book."""

    def apply(self, levels: Iterable[list[str]]) -> None:
        for p, q in levels:
            if Decimal(q) == _ZERO:
                self.pop(Decimal(p), None)
            else:
                self[Decimal(p)] = (p, q)


class BinanceExchange(ReplayServer):
    """Binance spot: combined stream at ``/stream`` (``SUBSCRIBE``), REST ``/api/v3/depth``.

    The exchange state does not move past a symbol's recorded snapshot (``lastUpdateId``)
    until that snapshot has been served once, so the client's first REST answer is the
    recorded snapshot, byte for byte, and later diffs (a dropped one included) reach a book
    that is being kept in sync.

    Args:
        snapshots: recorded REST bodies per symbol.
    """

    def __init__(
        self,
        frames: list[Frame],
        snapshots: dict[str, str],
        *,
        disconnect_at: int | None = None,
        drop: Iterable[int] = (),
    ) -> None:
        super().__init__(frames, disconnect_at=disconnect_at, drop=drop)
        self.recorded = snapshots
        self.truth: dict[str, tuple[_Side, _Side]] = {}
        self.last_id: dict[str, int] = {}
        self.changed: set[str] = set()
        self.snapshot_requests: list[tuple[str, int, str]] = []  # symbol, lastUpdateId, body
        self._served: dict[str, asyncio.Event] = {s: asyncio.Event() for s in snapshots}
        dropped = [frames[i].msg["data"].get("s") for i in self.drop]
        self.dropped_symbol = dropped[0] if dropped else None
        for sym, body in snapshots.items():
            snap = json.loads(body)
            bids, asks = _Side(), _Side()
            bids.apply(snap["bids"])
            asks.apply(snap["asks"])
            self.truth[sym] = (bids, asks)
            self.last_id[sym] = snap["lastUpdateId"]
        self.recorded_id = dict(self.last_id)

    def _apply(self, frame: Frame) -> None:
        data = frame.msg["data"]
        if data.get("e") != "depthUpdate":
            return
        sym = data["s"]
        if data["u"] <= self.last_id[sym]:
            return
        bids, asks = self.truth[sym]
        bids.apply(data["b"])
        asks.apply(data["a"])
        self.last_id[sym] = data["u"]
        self.changed.add(sym)

    async def _before_apply(self, frame: Frame) -> None:
        data = frame.msg["data"]
        if data.get("e") == "depthUpdate" and data["u"] > self.recorded_id[data["s"]]:
            await self._served[data["s"]].wait()

    def snapshot_body(self, sym: str) -> str:
        if sym not in self.changed:
            return self.recorded[sym]
        bids, asks = self.truth[sym]
        return json.dumps(
            {
                "lastUpdateId": self.last_id[sym],
                "bids": [list(bids[p]) for p in sorted(bids, reverse=True)],
                "asks": [list(asks[p]) for p in sorted(asks)],
            }
        )

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path != "/api/v3/depth":
            return None
        sym = parse_qs(url.query)["symbol"][0]
        body = self.snapshot_body(sym)
        self.snapshot_requests.append((sym, json.loads(body)["lastUpdateId"], body))
        self._served[sym].set()
        if self.dropped and sym == self.dropped_symbol:
            self.resynced.set()
        resp = conn.respond(HTTPStatus.OK, body)
        resp.headers["Content-Type"] = "application/json"
        return resp

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        try:
            req = json.loads(await ws.recv())
            self.client_messages.append(req)
            streams = set(req["params"])
            await self._send(ws, json.dumps({"result": None, "id": req["id"]}))
            while (step := await self._advance(ws)) is not None:
                i, frame = step
                if i not in self.drop and frame.msg["stream"] in streams:
                    await self._send(ws, frame.raw)
                await asyncio.sleep(_PACE_S)
            if self.finished.is_set():
                await ws.wait_closed()
        except ConnectionClosed:
            return


# --------------------------------------------------------------------------------- Coinbase
_SEQ = re.compile(r'"sequence_num":\d+')
_CB_CHANNEL = {"l2_data": "level2", "market_trades": "market_trades", "ticker": "ticker"}
_CB_ALWAYS = {"heartbeats", "subscriptions"}


class CoinbaseExchange(ReplayServer):
    """Coinbase Advanced Trade: ``subscribe``/``unsubscribe`` per channel, per-connection
    ``sequence_num`` (renumbered, so dropped frames leave a hole), fresh ``l2_data`` snapshots
    on every ``level2`` subscription once the recorded snapshot has passed, and the recorded
    ``market_trades`` snapshot again on every ``market_trades`` subscription."""

    REQUIRED = frozenset({"market_trades", "level2", "ticker", "heartbeats"})

    def __init__(
        self, frames: list[Frame], *, disconnect_at: int | None = None, drop: Iterable[int] = ()
    ) -> None:
        super().__init__(frames, disconnect_at=disconnect_at, drop=drop)
        self.truth: dict[str, tuple[_Side, _Side]] = {}
        self.l2_timestamp = ""
        self.trade_snapshots = [
            f
            for f in frames
            if f.msg.get("channel") == "market_trades"
            and f.msg["events"][0].get("type") == "snapshot"
        ]
        self.generated_snapshots = 0

    def _apply(self, frame: Frame) -> None:
        msg = frame.msg
        if msg.get("channel") != "l2_data":
            return
        self.l2_timestamp = msg["timestamp"]
        for ev in msg["events"]:
            if ev["type"] == "snapshot":
                self.truth[ev["product_id"]] = (_Side(), _Side())
            bids, asks = self.truth[ev["product_id"]]
            for u in ev["updates"]:
                side = bids if u["side"] == "bid" else asks
                side.apply([[u["price_level"], u["new_quantity"]]])

    def _l2_snapshot(self, seq: int) -> str:
        events = []
        ts = self.l2_timestamp
        for product, (bids, asks) in self.truth.items():
            levels = [("bid", bids[k]) for k in sorted(bids, reverse=True)]
            levels += [("offer", asks[k]) for k in sorted(asks)]
            ups = [
                {"side": side, "event_time": ts, "price_level": p, "new_quantity": q}
                for side, (p, q) in levels
            ]
            events.append({"type": "snapshot", "product_id": product, "updates": ups})
        self.generated_snapshots += 1
        return json.dumps(
            {
                "channel": "l2_data",
                "timestamp": self.l2_timestamp,
                "sequence_num": seq,
                "events": events,
            }
        )

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        first_connection = self.connections == 1
        commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        subscribed: set[str] = set()
        seq = 0

        async def reader() -> None:
            try:
                async for text in ws:
                    msg = json.loads(text)
                    self.client_messages.append(msg)
                    await commands.put(msg)
            finally:
                await commands.put({"type": "closed"})

        async def handle(cmd: dict[str, Any]) -> None:
            nonlocal seq
            if cmd["type"] == "closed":
                raise ConnectionClosed(None, None)
            ch = cmd["channel"]
            if cmd["type"] == "unsubscribe":
                subscribed.discard(ch)
                return
            subscribed.add(ch)
            if ch == "level2" and self.dropped:
                self.resynced.set()
            if ch == "level2" and self.truth:
                await self._send(ws, self._l2_snapshot(seq))
                seq += 1
            elif ch == "market_trades" and not first_connection:
                for f in self.trade_snapshots:
                    await self._send(ws, _SEQ.sub(f'"sequence_num":{seq}', f.raw, count=1))
                    seq += 1

        read_task = asyncio.create_task(reader())
        try:
            while not subscribed >= self.REQUIRED:
                await handle(await commands.get())
            while True:
                while not commands.empty():
                    await handle(commands.get_nowait())
                at_disconnect = self.cursor == self.disconnect_at
                if at_disconnect and self.dropped and not self.resynced.is_set():
                    await handle(await commands.get())  # the resync request sets `resynced`
                    continue
                step = await self._advance(ws)
                if step is None:
                    break
                i, frame = step
                ch = frame.msg.get("channel")
                if ch in _CB_ALWAYS or _CB_CHANNEL.get(ch, "") in subscribed:
                    if i not in self.drop:
                        await self._send(ws, _SEQ.sub(f'"sequence_num":{seq}', frame.raw, count=1))
                    seq += 1  # a dropped frame still consumes its number
                await asyncio.sleep(_PACE_S)
            if not self.finished.is_set():
                return  # closed on purpose
            while True:
                await handle(await commands.get())
        except ConnectionClosed:
            return
        finally:
            read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await read_task


# --------------------------------------------------------------------------------- Kraken
class KrakenExchange(ReplayServer):
    """Kraken v1: the three recorded connections (trade, ticker, book-1000) merged by receive
    time into one stream; subscriptionStatus replies with the recorded channel ids; on a
    reconnect the ``book`` subscription gets a fresh depth-1000 snapshot of the true book."""

    DEPTH = 1000

    def __init__(self, frames: list[Frame], *, disconnect_at: int | None = None) -> None:
        self.channel_ids: dict[tuple[str, str], int] = {}
        data: list[Frame] = []
        for f in frames:
            m = f.msg
            if isinstance(m, dict) and m.get("event") == "subscriptionStatus":
                self.channel_ids[(m["channelName"], m["pair"])] = m["channelID"]
            elif isinstance(m, dict) and m.get("event") == "systemStatus":
                continue
            else:
                data.append(f)
        data.sort(key=lambda f: f.ts)  # stable: keeps each connection's order
        super().__init__(data, disconnect_at=disconnect_at)
        # pair -> side -> price -> [price, volume, timestamp] strings
        self.truth: dict[str, tuple[dict[Decimal, list[str]], dict[Decimal, list[str]]]] = {}
        self.generated_snapshots = 0

    def _apply(self, frame: Frame) -> None:
        m = frame.msg
        if not isinstance(m, list) or not m[-2].startswith("book"):
            return
        pair = m[-1]
        if "as" in m[1] or "bs" in m[1]:
            bids = {Decimal(lv[0]): lv[:3] for lv in m[1].get("bs", [])}
            asks = {Decimal(lv[0]): lv[:3] for lv in m[1].get("as", [])}
            self.truth[pair] = (bids, asks)
            return
        bids, asks = self.truth[pair]
        for part in m[1:-2]:
            for key, side in (("b", bids), ("a", asks)):
                for lv in part.get(key, []):
                    if Decimal(lv[1]) == _ZERO:
                        side.pop(Decimal(lv[0]), None)
                    else:
                        side[Decimal(lv[0])] = lv[:3]
        if len(bids) > self.DEPTH:
            for p in sorted(bids, reverse=True)[self.DEPTH :]:
                del bids[p]
        if len(asks) > self.DEPTH:
            for p in sorted(asks)[self.DEPTH :]:
                del asks[p]

    def _book_snapshot(self, pair: str) -> str:
        bids, asks = self.truth[pair]
        self.generated_snapshots += 1
        payload = {
            "as": [asks[p] for p in sorted(asks)],
            "bs": [bids[p] for p in sorted(bids, reverse=True)],
        }
        chid = self.channel_ids[("book-1000", pair)]
        return json.dumps([chid, payload, "book-1000", pair])

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        subscribed: set[str] = set()
        try:
            await self._send(ws, json.dumps({"event": "systemStatus", "status": "online"}))
            while not {"trade", "ticker", "book"} <= subscribed:
                req = json.loads(await ws.recv())
                self.client_messages.append(req)
                sub = req["subscription"]
                name = sub["name"]
                subscribed.add(name)
                channel = f"book-{sub['depth']}" if name == "book" else name
                for pair in req["pair"]:
                    status = {
                        "channelID": self.channel_ids[(channel, pair)],
                        "channelName": channel,
                        "event": "subscriptionStatus",
                        "pair": pair,
                        "status": "subscribed",
                        "subscription": sub,
                    }
                    await self._send(ws, json.dumps(status))
                    if name == "book" and pair in self.truth:
                        await self._send(ws, self._book_snapshot(pair))
            while (step := await self._advance(ws)) is not None:
                await self._send(ws, step[1].raw)
                await asyncio.sleep(_PACE_S / 4)
            if not self.finished.is_set():
                return
            await ws.wait_closed()
        except ConnectionClosed:
            return
