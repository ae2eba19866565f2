"""``actors/`` is the composition root: every process line of the Procfile is ``orrange actor
NAME`` for exactly one module ``actors/NAME.py`` with a ``main``, and each answers ``--help``."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import actors
from actors._cli import actor_main
from orrange.infra.up import read_procfile

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = [ln for ln in read_procfile(ROOT / "Procfile") if not ln.infra]


def test_every_procfile_process_is_one_actor_module() -> None:
    names = []
    for line in PROCESSES:
        argv = shlex.split(line.command)
        assert argv[:2] == ["orrange", "actor"], line
        assert argv[2] == line.name, line
        assert callable(actor_main(line.name)), line
        names.append(line.name)
    modules = sorted(
        p.stem for p in Path(actors.__file__).parent.glob("*.py") if not p.stem.startswith("_")
    )
    assert (
        sorted(names)
        == modules
        == [
            "alerter",
            "api",
            "escrow",
            "feed",
            "matcher",
            "persister",
            "risk",
            "vault",
        ]
    )


@pytest.mark.process
@pytest.mark.parametrize("name", [ln.name for ln in PROCESSES])
def test_orrange_actor_help_exits_0(name: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "orrange.cli", "actor", name, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert f"orrange actor {name}" in out.stdout
    for option in ("--config", "--nats-url"):
        assert option in out.stdout


def test_only_actors_modules_are_actors() -> None:
    assert actor_main("_args") is None and actor_main("_cli") is None
    assert actor_main("no_such_actor") is None
    assert actor_main("../matcher") is None
