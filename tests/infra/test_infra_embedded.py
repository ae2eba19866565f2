"""The embedded servers: start, readiness, clean stop, persistence across restarts, CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import nats
import pytest

from orrange.infra import (
    EmbeddedPostgres,
    NatsServer,
    free_port,
    nats_server_binary,
    wait_for_url,
)
from orrange.runtime import Publisher, ensure_stream
from orrange.wire.spec import StreamSpec

ORRANGE = str(Path(sys.executable).parent / "orrange")


@pytest.mark.nats
def test_nats_server_binary_comes_from_the_wheel() -> None:
    path = nats_server_binary()
    assert path.name == "nats-server"
    out = subprocess.run([str(path), "--version"], capture_output=True, check=True, text=True)
    assert "nats-server" in out.stdout


@pytest.mark.nats
async def test_jetstream_data_persists_across_nats_restart(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "store", log_file=tmp_path / "nats.log").start()
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_stream(js, StreamSpec(name="KEEP", subjects=("keep.>",)))
        pub = Publisher(nc)
        for i in range(3):
            await pub.submit("keep.a", b"x%d" % i, msg_id=f"k{i}")
        await pub.flush()
        await nc.close()
    finally:
        assert server.stop() == 0
    server.start()
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        info = await js.stream_info("KEEP")
        assert info.state.messages == 3
        msg = await js.get_msg("KEEP", 3)
        assert msg.data == b"x2"
        # the de-duplication window survives the restart too
        ack = await Publisher(nc).publish("keep.a", b"again", msg_id="k2")
        assert ack.duplicate
        await nc.close()
    finally:
        server.stop()


@pytest.mark.postgres
async def test_postgres_data_persists_across_restart(private_dir: Path) -> None:
    pg = EmbeddedPostgres(private_dir / "pg", log_file=private_dir / "pg.log").start()
    try:
        assert pg.create_database("orrange") is True
        assert pg.create_database("orrange") is False
        conn = await asyncpg.connect(pg.url("orrange"))
        await conn.execute("CREATE TABLE t (k int PRIMARY KEY, v text)")
        await conn.executemany("INSERT INTO t VALUES ($1, $2)", [(1, "a"), (2, "b")])
        await conn.close()
    finally:
        assert pg.stop() == 0
    assert pg.initialized
    pg.start()
    try:
        conn = await asyncpg.connect(pg.url("orrange"))
        rows = await conn.fetch("SELECT k, v FROM t ORDER BY k")
        await conn.close()
        assert [tuple(r) for r in rows] == [(1, "a"), (2, "b")]
    finally:
        pg.stop()


def test_database_names_are_validated(postgres_server: EmbeddedPostgres | None) -> None:
    if postgres_server is None:
        pytest.skip("external test database server")
    with pytest.raises(ValueError):
        postgres_server.create_database('x"; DROP DATABASE postgres; --')


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORRANGE_")}
    env["ORRANGE_DATA_DIR"] = str(tmp_path / "var")
    env["ORRANGE_LOG_FORMAT"] = "json"
    env.update(extra)
    return env


@pytest.mark.nats
def test_cli_infra_nats_runs_until_sigterm(tmp_path: Path) -> None:
    port, mport = free_port(), free_port()
    env = _env(tmp_path, ORRANGE_NATS_PORT=str(port), ORRANGE_NATS_MONITOR_PORT=str(mport))
    proc = subprocess.Popen(
        [ORRANGE, "infra", "nats"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_for_url(f"nats://127.0.0.1:{port}", timeout_s=60)
        assert (tmp_path / "var" / "nats" / "jetstream").is_dir()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out.decode()
    assert b'"event":"nats-server stopped"' in out


def test_cli_infra_nats_idles_when_an_external_url_is_set(tmp_path: Path) -> None:
    env = _env(tmp_path, ORRANGE_NATS_URL="nats://127.0.0.1:1")
    proc = subprocess.Popen(
        [ORRANGE, "infra", "nats"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert b"external NATS configured" in line
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert not (tmp_path / "var" / "nats").exists()


@pytest.mark.postgres
async def test_cli_infra_postgres_creates_the_database_and_stops(private_dir: Path) -> None:
    tmp_path = private_dir
    port = free_port()
    env = _env(tmp_path, ORRANGE_POSTGRES_PORT=str(port))
    proc = await asyncio.create_subprocess_exec(
        ORRANGE,
        "infra",
        "postgres",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            if b'"event":"postgres ready"' in raw:
                break
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/orrange")
        assert await conn.fetchval("SELECT current_database()") == "orrange"
        await conn.close()
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, out.decode()
    assert b'"event":"postgres stopped"' in out
    assert (tmp_path / "var" / "pg" / "PG_VERSION").exists()


async def test_database_url_fixture_gives_an_empty_database(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        assert tables == 0
        await conn.execute("CREATE TABLE mine (x int)")
    finally:
        await conn.close()
