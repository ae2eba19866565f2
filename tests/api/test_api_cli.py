"""``orrange token`` and ``orrange actor api`` as the console command runs them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from orrange.api.auth import DEV_JWT_SECRET, decode_token
from orrange.cli import main

pytestmark = pytest.mark.timeout(120)


def test_token_dev_secret_and_refusal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ORRANGE_JWT_SECRET", raising=False)
    monkeypatch.setenv("ORRANGE_ENV", "dev")
    assert main(["token", "alice", "--role", "mediator"]) == 0
    token = capsys.readouterr().out.strip()
    principal = decode_token(DEV_JWT_SECRET, token)
    assert (principal.user, principal.role) == ("alice", "mediator")

    monkeypatch.setenv("ORRANGE_JWT_SECRET", "s3cret-s3cret-s3cret-s3cret-s3cret")
    assert main(["token", "bob"]) == 0
    assert decode_token("s3cret-s3cret-s3cret-s3cret-s3cret", capsys.readouterr().out.strip())

    monkeypatch.delenv("ORRANGE_JWT_SECRET")
    monkeypatch.delenv("ORRANGE_ENV")
    assert main(["token", "bob"]) == 2
    assert "ORRANGE_JWT_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("ORRANGE_ENV", "dev")
    assert main(["token", "not a user!"]) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize(("workers", "via"), [(1, "flag"), (2, "flag"), (2, "env")])
def test_orrange_api_process_serves_and_stops(
    nats_url: str, database_url: str, workers: int, via: str
) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "ORRANGE_NATS_URL": nats_url,
        "ORRANGE_DATABASE_URL": database_url,
        "ORRANGE_JWT_SECRET": "process-secret-process-secret-0123",
        "ORRANGE_API_PORT": str(port),
    }
    args = ["--workers", str(workers)] if via == "flag" else []
    if via == "env":
        env["ORRANGE_API_WORKERS"] = str(workers)
    proc = subprocess.Popen(
        [sys.executable, "-m", "orrange.cli", "actor", "api", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("orrange actor api did not become ready")
            time.sleep(0.1)
        assert r.json() == {"status": "ok", "nats": "ok", "postgres": "ok"}
        if workers > 1:  # uvicorn's supervisor and one process per worker
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            assert len(children) >= workers
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/markets", timeout=5)
        assert "BTC-USDT" in [m["symbol"] for m in r.json()]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        assert "Application shutdown complete" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
