"""``kill -9`` of a real matcher process under load loses no event and duplicates none.

A nats-server (fixture) and the matcher as a subprocess (``python -m actors.matcher``); 30,000
seeded synthetic commands flow into ``book.in.BENCH-USD`` while the matcher is killed with
SIGKILL three times at different points of the run and restarted. They come as risk forwards
them (batches of ``[cmd_seq, command]``, some forwarded twice with other boundaries) with a few
bare commands between. ``evt.BENCH-USD`` must then
hold exactly the events of one uninterrupted pure :class:`OrderBook` run: same count, seqs
1..n in order, same bytes.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import nats
from kit.matcher_events import SYM, last_seq, pure_events, read_events
from kit.wait import wait_for

from orrange.matching import Event
from orrange.matching.flow import BENCH_SPEC, synthetic_flow
from orrange.runtime import Publisher, ensure_stream
from orrange.wire.engine import BOOK_IN, EVENTS, SNAPSHOT_BUCKET, book_in_subject, encode_book_in

ROOT = Path(__file__).resolve().parents[2]
N_COMMANDS = 30_000

BENCH_MARKET_TOML = f"""
[[market]]
symbol = "{SYM}"
base = "BENCH"
quote = "USD"
tick_size = "{BENCH_SPEC.tick_size}"
lot_size = "{BENCH_SPEC.lot_size}"
min_qty = "{BENCH_SPEC.min_qty}"
max_qty = "{BENCH_SPEC.max_qty}"
maker_fee_bps = {BENCH_SPEC.maker_fee_bps}
taker_fee_bps = {BENCH_SPEC.taker_fee_bps}
"""


def start_matcher(nats_url: str, markets: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        ORRANGE_NATS_URL=nats_url,
        ORRANGE_RUNTIME_BATCH_SIZE="100",
        ORRANGE_LOG_FORMAT="json",
    )
    with log.open("ab") as fh:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "actors.matcher",
                "--symbols",
                SYM,
                "--markets",
                str(markets),
                "--snapshot-every",
                "2000",
                "--metrics-port",
                "0",
            ],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


def restored_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if '"book restored"' in line]


async def test_kill_9_under_load_loses_and_duplicates_nothing(
    nats_url: str, tmp_path: Path
) -> None:
    markets = tmp_path / "markets.toml"
    markets.write_text(BENCH_MARKET_TOML)
    log = tmp_path / "matcher.log"
    cmds = synthetic_flow(N_COMMANDS, seed=2024)
    expected = pure_events(cmds)
    n = len(expected)

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_stream(js, BOOK_IN)
    await ensure_stream(js, EVENTS)
    pub = Publisher(nc)

    rng = random.Random(5)

    async def feed() -> None:
        # The first third at once (a backlog), the rest paced while the matcher is killed.
        # Messages are what risk forwards: batches of [cmd_seq, command] of varying size, and
        # now and then a batch forwarded again with other boundaries (risk after a crash),
        # which the matcher must not apply twice. Every 50th command goes bare.
        i = 0
        while i < N_COMMANDS:
            if i % 50 == 0:
                await pub.submit(book_in_subject(SYM), cmds[i], msg_id=f"bare:{i}")
                i += 1
                continue
            back = rng.randint(1, 20) if i > 20 and rng.random() < 0.15 else 0
            start = max(i - back, i // 50 * 50 + 1)  # never back over a bare command
            end = min(i + rng.randint(1, 60), N_COMMANDS, (i // 50 + 1) * 50)
            pairs = [(k + 1, cmds[k]) for k in range(start, end)]
            await pub.submit(
                book_in_subject(SYM), encode_book_in(pairs), msg_id=f"in:{start + 1}-{end}"
            )
            i = end
            if i // 500 != (i - (end - start)) // 500:
                await pub.flush()
                if i >= N_COMMANDS // 3:
                    await asyncio.sleep(0.1)
        await pub.flush()

    proc = start_matcher(nats_url, markets, log)
    feeder = asyncio.create_task(feed())
    seen_at_kill: list[int] = []
    try:
        for fraction in (0.15, 0.45, 0.75):
            target = int(n * fraction)

            async def reached(target: int = target) -> bool:
                return await last_seq(nc) >= target

            await wait_for(reached, f"{fraction:.0%} of the events", timeout_s=90)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            seen_at_kill.append(await last_seq(nc))
            proc = start_matcher(nats_url, markets, log)
        await feeder

        async def done() -> bool:
            return await last_seq(nc) >= n

        await wait_for(done, "every event", timeout_s=90)

        async def last_one_started() -> bool:  # its signal handlers are in place
            return log.read_text().count('"actor started"') == 4

        await wait_for(last_one_started, "the last matcher started")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        feeder.cancel()

    print(f"killed at events {seen_at_kill} of {n}; restarts:", *restored_lines(log), sep="\n")
    # every kill happened in the middle of the flow
    assert all(0 < s < n for s in seen_at_kill), seen_at_kill
    stored = await read_events(nc)
    assert len(stored) == n
    seqs = [msgspec.json.decode(b, type=Event).seq for b in stored]
    assert seqs == list(range(1, n + 1))
    assert stored == expected
    # the restarts resumed from snapshots (not from the start of BOOK_IN)
    kv = await js.key_value(SNAPSHOT_BUCKET)
    assert len(await kv.history(SYM)) >= 2
    restored = restored_lines(log)
    assert len(restored) == 4
    assert any('"snapshot_in_seq":0' not in line for line in restored[1:])
    await nc.close()
