"""``orrange replay lobster --via nats`` publishes the pure replay's commands to a real server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import msgspec
import nats
import pytest

from orrange.matching import lobster
from orrange.matching.commands import Command
from orrange.runtime import ensure_stream
from orrange.wire.engine import CMD, ENGINE_STREAMS, cmd_subject

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "lobster"
AAPL_MSG = DATA / "AAPL_2012-06-21_34200000_57600000_message_10.csv"
AAPL_BOOK = DATA / "AAPL_2012-06-21_34200000_57600000_orderbook_10.csv"


def run_cli(nats_url: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORRANGE_NATS_URL": nats_url}
    cmd = [sys.executable, "-m", "orrange.cli", "replay", "lobster", "--via", "nats"]
    return subprocess.run(
        [*cmd, *map(str, args)], capture_output=True, text=True, timeout=300, env=env, check=False
    )


async def test_via_nats_publishes_the_replay_commands_once(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for spec in ENGINE_STREAMS:
        await ensure_stream(js, spec)
    expected = lobster.replay(AAPL_MSG, AAPL_BOOK).commands

    first = run_cli(nats_url, "--messages", AAPL_MSG, "--orderbook", AAPL_BOOK, "--json")
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert out["commands"] == len(expected) == out["published_new"]
    sym = out["symbol"]

    info = await js.stream_info(CMD.name)
    assert info.state.messages == len(expected)
    sub = await js.pull_subscribe(cmd_subject(sym), durable="check", stream=CMD.name)
    got: list[Command] = []
    while len(got) < len(expected):
        for m in await sub.fetch(500, timeout=5):
            got.append(msgspec.json.decode(m.data, type=Command))
            await m.ack()
    assert got == list(expected)

    # the same run again is de-duplicated by Nats-Msg-Id: nothing new is stored
    again = run_cli(nats_url, "--messages", AAPL_MSG, "--orderbook", AAPL_BOOK, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["published_new"] == 0
    assert (await js.stream_info(CMD.name)).state.messages == len(expected)
    await nc.drain()


@pytest.mark.process
def test_via_nats_without_a_server_fails_clearly() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    proc = run_cli(f"nats://127.0.0.1:{port}", "--messages", AAPL_MSG, "--orderbook", AAPL_BOOK)
    assert proc.returncode == 2
    assert "cannot publish" in proc.stderr
