"""An actor as a real process: SIGTERM drains it; SIGKILL mid-stream loses nothing and
duplicates nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import nats
from kit.runtime_actors import (
    IN,
    Echo,
    PassThrough,
    publish_orders,
    read_stream,
    stream_count,
)
from kit.wait import wait_for

from orrange.runtime import ActorConfig, ensure_stream

SCRIPT = str(Path(__file__).parents[1] / "kit" / "runtime_actors.py")


def _spawn(
    url: str, batch: int, delay_s: float, ack_wait_ms: int, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, SCRIPT, url, str(batch), str(delay_s), str(ack_wait_ms)],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


async def _finish_in_process(url: str, js: nats.js.JetStreamContext, total: int) -> list[Echo]:
    actor = PassThrough(
        ActorConfig(name="pass", nats_url=url, metrics_port=None), ack_wait_ms=1_000
    )
    await actor.start()

    async def drained() -> bool:
        info = await js.consumer_info("IN", "pass")
        return info.num_pending == 0 and info.num_ack_pending == 0

    await wait_for(drained, "all inputs acked")
    await actor.stop()
    outs = await read_stream(js, "OUT")
    return [msgspec.json.decode(d, type=Echo) for _, d, _ in outs]


async def test_sigterm_drains_the_batch_in_hand(nats_url: str, tmp_path: Path) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_stream(js, IN)
    await publish_orders(nc, 2000)
    log = tmp_path / "actor.log"
    proc = _spawn(nats_url, 50, 0.05, 1_000, log)
    try:
        await wait_for(lambda: _at_least(js, 100), "the actor to be mid-stream")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, log.read_text()
    assert '"event":"actor stopped"' in log.read_text()

    info = await js.consumer_info("IN", "pass")
    assert info.num_ack_pending == 0  # nothing delivered was left unacked
    assert info.num_pending > 0  # it stopped early, by the signal
    # every acked input has its output, and no output exists for an unacked input
    assert await stream_count(js, "OUT") == info.ack_floor.stream_seq

    echoes = await _finish_in_process(nats_url, js, 2000)
    assert [e.src_seq for e in echoes] == list(range(1, 2001))
    await nc.close()


async def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    nats_url: str, tmp_path: Path
) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_stream(js, IN)
    await publish_orders(nc, 3000)
    proc = _spawn(nats_url, 100, 0.02, 1_000, tmp_path / "actor.log")
    try:
        await wait_for(lambda: _at_least(js, 300), "the actor to be mid-stream")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (await js.consumer_info("IN", "pass")).num_pending > 0

    echoes = await _finish_in_process(nats_url, js, 3000)
    # exactly one output per input; the crashed instance's unacked inputs come back after
    # ack_wait, so outputs are not in input order (ordered resumption: ConsumerSpec.start_seq)
    assert sorted(e.src_seq for e in echoes) == list(range(1, 3001))
    assert sorted(e.qty for e in echoes) == list(range(3000))
    await nc.close()


async def _at_least(js: nats.js.JetStreamContext, n: int) -> bool:
    try:
        return await stream_count(js, "OUT") >= n
    except nats.js.errors.NotFoundError:
        return False
