"""``orrange up`` as a real process: the repo's Procfile, Ctrl-C, restart with the same state.

The stack here is the Procfile's ``nats``, ``postgres`` and ``matcher`` lines (``--only``), on
free ports and a temporary data directory; an order placed on ``book.in.BTC-USDT`` must still
rest in the book after SIGINT and a second ``orrange up``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import msgspec
import nats
import pytest
from kit.wait import wait_for

from orrange.infra import free_port
from orrange.infra._proc import tcp_open
from orrange.infra.run import DEV_ESCROW_ADDRESS, dev_chain_env
from orrange.infra.up import ProcLine, plan, read_procfile
from orrange.matching import L2Book, Side, SubmitOrder
from orrange.runtime import Publisher
from orrange.settings import load_settings
from orrange.wire.engine import book_in_subject, book_query_subject

ROOT = Path(__file__).resolve().parents[2]
ORRANGE = str(Path(sys.executable).parent / "orrange")
SYM = "BTC-USDT"


def up_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORRANGE_")}
    env.update(
        ORRANGE_DATA_DIR=str(data_dir),
        ORRANGE_NATS_PORT=str(free_port()),
        ORRANGE_NATS_MONITOR_PORT=str(free_port()),
        ORRANGE_POSTGRES_PORT=str(free_port()),
        ORRANGE_API_PORT=str(free_port()),
        ORRANGE_LOG_FORMAT="json",
    )
    return env


def start_up(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [ORRANGE, "up", *args],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


async def query_book(url: str, proc: subprocess.Popen[bytes], limit_s: float = 90) -> L2Book:
    """The matcher's answer to ``book.query.BTC-USDT`` once the stack is up."""
    deadline = time.monotonic() + limit_s
    while True:
        assert proc.poll() is None, "orrange up exited"
        try:
            nc = await nats.connect(url, connect_timeout=1, max_reconnect_attempts=0)
        except Exception:
            nc = None
        if nc is not None:
            try:
                reply = await nc.request(book_query_subject(SYM), b"", timeout=1)
                return msgspec.json.decode(reply.data, type=L2Book)
            except Exception:
                pass
            finally:
                await nc.close()
        if time.monotonic() > deadline:
            pytest.fail("the stack did not answer book queries")
        await asyncio.sleep(0.2)


async def book_when(
    url: str, proc: subprocess.Popen[bytes], ready: Callable[[L2Book], bool], what: str
) -> L2Book:
    """Query the book (:func:`query_book`) until ``ready(book)``; returns that book."""
    got: list[L2Book] = []

    async def check() -> bool:
        got[:] = [await query_book(url, proc)]
        return ready(got[0])

    await wait_for(check, what)
    return got[0]


def stop_up(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=12)  # two stop stages of at most 5 s each, then SIGKILL
    return code, time.monotonic() - t0


def test_procfile_lines() -> None:
    lines = read_procfile(ROOT / "Procfile")
    names = [ln.name for ln in lines]
    assert names == [
        "nats",
        "postgres",
        "chain",
        "matcher",
        "risk",
        "persister",
        "feed",
        "escrow",
        "vault",
        "alerter",
        "api",
    ]
    assert [ln.name for ln in lines if ln.infra] == ["nats", "postgres", "chain"]
    external = load_settings(
        env={"ORRANGE_NATS_URL": "nats://10.0.0.1:4222", "ORRANGE_DATABASE_URL": "postgresql://x"}
    )
    assert [ln.name for ln in plan(lines, external)] == names[2:]
    embedded = load_settings(env={})
    assert [ln.name for ln in plan(lines, embedded, ["matcher", "nats"])] == ["nats", "matcher"]


@pytest.mark.nats
@pytest.mark.postgres
async def test_up_stops_on_ctrl_c_and_resumes_the_books(private_dir: Path) -> None:
    data = private_dir / "var"
    env = up_env(data)
    url = f"nats://127.0.0.1:{env['ORRANGE_NATS_PORT']}"
    log = private_dir / "up.log"
    only = ("--only", "nats,postgres,matcher")

    proc = start_up(env, log, *only)
    try:
        book = await query_book(url, proc)
        assert (book.bids, book.asks, book.seq) == ([], [], 0)
        nc = await nats.connect(url)
        bid = SubmitOrder(ts=1, user="alice", side=Side.BUY, quantity=100, price=3_000_000)
        await Publisher(nc).publish(book_in_subject(SYM), bid, msg_id="test:bid")
        await nc.close()
        book = await book_when(url, proc, lambda b: bool(b.bids), "the bid to rest")
        assert book.bids == [(3_000_000, 100)]
        code, took = stop_up(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"orrange up stopped in {took:.2f} s")
    assert code == 0
    # everything is down: the embedded servers' ports are closed
    assert not tcp_open("127.0.0.1", int(env["ORRANGE_NATS_PORT"]))
    assert not tcp_open("127.0.0.1", int(env["ORRANGE_POSTGRES_PORT"]))
    assert (data / "nats").is_dir() and (data / "pg").is_dir()

    proc = start_up(env, log, *only)
    try:
        again = await query_book(url, proc)
        assert again == book
        nc = await nats.connect(url)
        ask = SubmitOrder(ts=2, user="bob", side=Side.SELL, quantity=40, price=3_000_000)
        await Publisher(nc).publish(book_in_subject(SYM), ask, msg_id="test:ask")
        await nc.close()
        after = await book_when(url, proc, lambda b: b.seq != book.seq, "the ask to trade")
        assert after.bids == [(3_000_000, 60)] and after.asks == []
        code, took = stop_up(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"orrange up stopped in {took:.2f} s")
    assert code == 0
    text = log.read_text()
    assert text.count("matcher stopped (rc=0)") == 2


@pytest.mark.nats
def test_up_stops_everything_when_a_process_dies(private_dir: Path) -> None:
    procfile = private_dir / "Procfile"
    procfile.write_text(
        "nats: orrange infra nats\n"
        f"dies: {sys.executable} -c 'import sys; print(\"bye\"); sys.exit(3)'\n"
    )
    env = up_env(private_dir / "var")
    log = private_dir / "up.log"
    proc = start_up(env, log, "--procfile", str(procfile))
    try:
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert code == 1
    assert "dies exited with 3" in text and "bye" in text
    assert "nats stopped (rc=0)" in text
    assert not tcp_open("127.0.0.1", int(env["ORRANGE_NATS_PORT"]))


@pytest.mark.nats
def test_a_killed_supervisor_leaves_no_orphan(private_dir: Path) -> None:
    procfile = private_dir / "Procfile"
    procfile.write_text("nats: orrange infra nats\n")
    env = up_env(private_dir / "var")
    port = int(env["ORRANGE_NATS_PORT"])
    proc = start_up(env, private_dir / "up.log", "--procfile", str(procfile))
    try:
        deadline = time.monotonic() + 60
        while not tcp_open("127.0.0.1", port):
            assert proc.poll() is None and time.monotonic() < deadline, "nats never came up"
            time.sleep(0.2)
        proc.kill()  # SIGKILL: orrange up cannot stop its children itself
        proc.wait()
        deadline = time.monotonic() + 30
        while tcp_open("127.0.0.1", port):
            assert time.monotonic() < deadline, "nats-server outlived orrange up"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_plan_rejects_unknown_names() -> None:
    from orrange.infra.up import UpError

    lines = [ProcLine("nats", "orrange infra nats", True)]
    with pytest.raises(UpError, match="not in the Procfile: api"):
        plan(lines, load_settings(env={}), ["api"])


def test_actor_command_dispatch(capsys: pytest.CaptureFixture[str]) -> None:
    from orrange.cli import main

    assert main(["actor", "no_such_actor"]) == 2
    assert "no actor 'no_such_actor'" in capsys.readouterr().err
    assert main(["actor", "../matcher"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["actor", "matcher", "--symbols", "NOPE-USD"])
    assert exc.value.code == 2  # a usage error: config/markets.toml has no such market
    assert "no market spec for NOPE-USD" in capsys.readouterr().err


def _rpc(url: str, method: str, params: list[object]) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())["result"]


@pytest.mark.nats
@pytest.mark.postgres
@pytest.mark.chain
def test_dev_chain_has_the_escrow_and_keeps_it_across_restarts(private_dir: Path) -> None:
    env = up_env(private_dir / "var")
    env.update(ORRANGE_ENV="dev", ORRANGE_CHAIN_PORT=str(free_port()))
    rpc = dev_chain_env(env)["ORRANGE_CHAIN_URL"]
    log = private_dir / "up.log"
    heights = []
    for run in (1, 2):
        proc = start_up(env, log, "--only", "nats,postgres,chain")
        try:
            deadline = time.monotonic() + 180
            while log.read_text().count("infrastructure ready") < run:
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the dev chain never became ready"
                time.sleep(0.5)
            code = _rpc(rpc, "eth_getCode", [DEV_ESCROW_ADDRESS, "latest"])
            assert isinstance(code, str) and len(code) > 2  # the escrow is deployed
            heights.append(int(str(_rpc(rpc, "eth_blockNumber", [])), 16))
        finally:
            code_, _ = stop_up(proc)
        assert code_ == 0
    # the second start loaded the first one's chain instead of deploying on a fresh one
    assert log.read_text().count("escrow deployed") == 1
    assert heights[1] >= heights[0]
