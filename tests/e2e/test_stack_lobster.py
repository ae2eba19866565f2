"""The whole engine as real processes, fed real Nasdaq order flow.

``orrange up`` runs with its own data directory and ports: embedded nats-server and PostgreSQL,
matcher, risk, persister and the API. ``orrange replay lobster --via nats`` pushes the first
``ORRANGE_E2E_MESSAGES`` (default: all 57,515) AMZN LOBSTER messages through risk into the book.
Then:

* the L2 book the API serves equals the LOBSTER book row after the last message;
* the fills in PostgreSQL are exactly those of the pure replay of the same messages;
* a WebSocket client that followed ``book.AMZN-USD`` from its snapshot holds the same book.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest
import websockets
from kit.wait import wait_for

from orrange.markets import load_markets
from orrange.matching import lobster

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data" / "lobster"
AMZN_MSG = DATA / "AMZN_2012-06-21_34200000_57600000_message_1.csv"
AMZN_BOOK = DATA / "AMZN_2012-06-21_34200000_57600000_orderbook_1.csv"
SYMBOL = "AMZN-USD"
MESSAGES = int(os.environ.get("ORRANGE_E2E_MESSAGES", "57515"))  # the whole day
SECRET = "e2e-test-secret"

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.postgres]  # `orrange up` runs both


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Stack:
    env: dict[str, str]
    api: str
    ws: str
    nats_url: str
    database_url: str
    log: Path


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    ports = {k: _free_port() for k in ("nats", "mon", "pg", "api")}
    env = {
        k: v for k, v in os.environ.items() if k not in ("ORRANGE_NATS_URL", "ORRANGE_DATABASE_URL")
    }
    env.update(
        ORRANGE_DATA_DIR=str(tmp_path / "var"),
        ORRANGE_NATS_PORT=str(ports["nats"]),
        ORRANGE_NATS_MONITOR_PORT=str(ports["mon"]),
        ORRANGE_POSTGRES_PORT=str(ports["pg"]),
        ORRANGE_API_PORT=str(ports["api"]),
        ORRANGE_JWT_SECRET=SECRET,
        ORRANGE_LOG_FORMAT="json",
    )
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orrange.cli", "up"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = f"http://127.0.0.1:{ports['api']}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, f"orrange up exited: {log.read_text()[-4000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api}/ready", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"not ready: {log.read_text()[-4000:]}"
            time.sleep(0.5)
        yield Stack(
            env=env,
            api=api,
            ws=f"ws://127.0.0.1:{ports['api']}/ws",
            nats_url=f"nats://127.0.0.1:{ports['nats']}",
            database_url=f"postgresql://postgres@127.0.0.1:{ports['pg']}/orrange",
            log=log,
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class WsBook:
    """A client-side L2 book kept from ``book.<SYM>`` snapshot + deltas (decimal strings)."""

    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.seq = -1
        self.gaps = 0

    def apply(self, msg: dict[str, object]) -> None:
        kind = msg.get("type")
        if kind == "snapshot":
            self.bids = {p: s for p, s in msg["bids"]}  # type: ignore[union-attr, misc]
            self.asks = {p: s for p, s in msg["asks"]}  # type: ignore[union-attr, misc]
            self.seq = int(msg["seq"])  # type: ignore[call-overload]
        elif kind == "delta":
            if int(msg["prev_seq"]) != self.seq:  # type: ignore[call-overload]
                self.gaps += 1
            for side, book in (("bids", self.bids), ("asks", self.asks)):
                for p, s in msg.get(side, []):  # type: ignore[attr-defined]
                    if Decimal(s) == 0:
                        book.pop(p, None)
                    else:
                        book[p] = s
            self.seq = int(msg["seq"])  # type: ignore[call-overload]

    def levels(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        bids = sorted(self.bids.items(), key=lambda kv: -Decimal(kv[0]))
        asks = sorted(self.asks.items(), key=lambda kv: Decimal(kv[0]))
        return bids, asks


async def _follow(ws_url: str, book: WsBook, ready: asyncio.Event) -> None:
    async with websockets.connect(ws_url, max_size=2**24) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channel": f"book.{SYMBOL}"}))
        async for raw in ws:
            msg = json.loads(raw)
            if msg.get("channel") == f"book.{SYMBOL}":
                book.apply(msg)
                if msg.get("type") == "snapshot":
                    ready.set()


async def test_lobster_flow_through_the_whole_stack(stack: Stack) -> None:
    pure = lobster.replay(AMZN_MSG, AMZN_BOOK, limit=MESSAGES)
    assert pure.summary.mismatches == 0
    spec = load_markets(ROOT / "config" / "markets.toml")[SYMBOL]
    final = pure.book.depth(1000)

    ws_book = WsBook()
    snapshot_seen = asyncio.Event()
    follower = asyncio.create_task(_follow(stack.ws, ws_book, snapshot_seen))
    await asyncio.wait_for(snapshot_seen.wait(), 60)

    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orrange.cli",
        "replay",
        "lobster",
        "--via",
        "nats",
        "--messages",
        str(AMZN_MSG),
        "--orderbook",
        str(AMZN_BOOK),
        "--limit",
        str(MESSAGES),
        "--json",
        env={**stack.env, "ORRANGE_NATS_URL": stack.nats_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(cli.communicate(), 600)
    assert cli.returncode == 0, err.decode()
    assert json.loads(out)["commands"] == len(pure.commands)

    async with httpx.AsyncClient(base_url=stack.api, timeout=10) as http:

        async def book_done() -> bool:
            r = await http.get(f"/api/v1/markets/{SYMBOL}/book", params={"depth": 1000})
            return r.status_code == 200 and r.json()["seq"] == pure.book.seq

        await wait_for(
            book_done, "the matcher to apply every command", timeout_s=600, interval_s=0.5
        )
        served = (await http.get(f"/api/v1/markets/{SYMBOL}/book", params={"depth": 1000})).json()

    def fmt(levels: list[tuple[int, int]]) -> list[list[str]]:
        return [[spec.ticks_to_price(p), spec.lots_to_qty(s)] for p, s in levels]

    # the served book is the engine's book, and its top equals the LOBSTER row
    assert served["bids"] == fmt(final.bids)
    assert served["asks"] == fmt(final.asks)
    row = lobster.parse_orderbook(AMZN_BOOK)[MESSAGES - 1]
    assert pure.book.depth(1).bids[:1] == [(row.bids[0][0], row.bids[0][1])]
    assert pure.book.depth(1).asks[:1] == [(row.asks[0][0], row.asks[0][1])]

    # the fills in PostgreSQL are exactly the pure replay's
    expected = [
        (f.seq, f.maker_order_id, f.taker_order_id, f.price, f.quantity) for f in pure.fills
    ]
    conn = await asyncpg.connect(stack.database_url)
    try:

        async def fills_done() -> bool:
            n = await conn.fetchval("SELECT count(*) FROM fills WHERE symbol = $1", SYMBOL)
            return bool(n >= len(expected))

        await wait_for(
            fills_done, "the persister to store every fill", timeout_s=600, interval_s=0.5
        )
        rows = await conn.fetch(
            "SELECT seq, maker_order_id, taker_order_id, price, quantity FROM fills "
            "WHERE symbol = $1 ORDER BY seq",
            SYMBOL,
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == expected

    # the WebSocket follower ends with the same book, without a gap
    async def ws_done() -> bool:
        bids, asks = ws_book.levels()
        return [list(x) for x in bids] == served["bids"] and [list(x) for x in asks] == served[
            "asks"
        ]

    await wait_for(ws_done, "the WebSocket book to converge", timeout_s=60, interval_s=0.5)
    assert ws_book.gaps == 0
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await follower
