"""The wire contract is declared once: every stream an actor provisions is a spec of
:mod:`orrange.wire`, no ``StreamSpec`` is built anywhere else in ``src/orrange``, and the stream
table of ``docs/architecture.md`` names exactly the wire's streams and subjects.

Pure: the actors are constructed (no server is started) and asked for their streams.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable
from pathlib import Path

import pytest

import orrange.engine
from orrange import wire
from orrange.engine.alerter import Alerter
from orrange.engine.escrow import EscrowWatcher, WatcherOptions
from orrange.engine.feed import Feed
from orrange.engine.matcher import Matcher
from orrange.engine.persister import Persister
from orrange.engine.risk import FundsOptions, RiskActor
from orrange.engine.vault_watcher import VaultOptions, VaultWatcher
from orrange.ledger import load_assets
from orrange.markets import MarketSpec, load_markets
from orrange.runtime import Actor, ActorConfig
from orrange.settings import config_file
from orrange.settlement.config import SettlementConfig
from orrange.wire.dlq import dlq_stream_spec
from orrange.wire.spec import StreamSpec

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "orrange"
DB = "postgresql://unused/none"

MARKETS: dict[str, MarketSpec] = dict(load_markets(config_file("markets.toml")))
ASSETS = load_assets(Path(config_file("assets.toml")).read_text())
CONFIG = ActorConfig(name="wire-test", nats_url="nats://unused:4222", metrics_port=None)

#: One way to build each actor class of ``orrange.engine`` (a new actor class must be added).
FACTORIES: dict[type[Actor], Callable[[], Actor]] = {
    Matcher: lambda: Matcher(CONFIG, MARKETS, sorted(MARKETS)[:1]),
    RiskActor: lambda: RiskActor(CONFIG, MARKETS, funds=FundsOptions(assets=ASSETS)),
    Persister: lambda: Persister(CONFIG, DB),
    Feed: lambda: Feed(CONFIG, DB, MARKETS),
    Alerter: lambda: Alerter(CONFIG, DB),
    EscrowWatcher: lambda: EscrowWatcher(CONFIG, DB, MARKETS, SettlementConfig(), WatcherOptions()),
    VaultWatcher: lambda: VaultWatcher(CONFIG, DB, ASSETS, VaultOptions()),
}


def engine_actor_classes() -> set[type[Actor]]:
    """Every :class:`Actor` subclass defined in a module of :mod:`orrange.engine`."""
    found: set[type[Actor]] = set()
    for info in pkgutil.iter_modules(orrange.engine.__path__, "orrange.engine."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Actor) and obj is not Actor and obj.__module__ == info.name:
                found.add(obj)
    return found


def test_every_engine_actor_has_a_factory() -> None:
    assert engine_actor_classes() == set(FACTORIES)


@pytest.mark.parametrize(
    "cls", sorted(FACTORIES, key=lambda c: c.__name__), ids=lambda c: c.__name__
)
def test_actor_streams_are_wire_streams(cls: type[Actor]) -> None:
    actor = FACTORIES[cls]()
    streams = list(actor.streams())
    assert streams, f"{cls.__name__} provisions no stream"
    for spec in streams:
        assert spec in wire.STREAMS, f"{cls.__name__} provisions {spec.name}, not a wire spec"


def test_dead_letter_stream_is_the_wire_one() -> None:
    """The runtime provisions ``DLQ`` with the actor's duplicate window; only that differs."""
    spec = dlq_stream_spec(CONFIG.duplicate_window_ms)
    default = next(s for s in wire.STREAMS if s.name == spec.name)
    assert (spec.name, spec.subjects, spec.max_age_ms) == (
        default.name,
        default.subjects,
        default.max_age_ms,
    )


def _stream_spec_calls(path: Path) -> list[int]:
    """Lines of ``path`` that call ``StreamSpec(...)``."""
    tree = ast.parse(path.read_text(), str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = (
                f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            )
            if name == StreamSpec.__name__:
                lines.append(node.lineno)
    return lines


def test_no_stream_spec_outside_wire() -> None:
    outside = {
        f"{path.relative_to(ROOT)}:{line}"
        for path in SRC.rglob("*.py")
        if SRC / "wire" not in path.parents
        for line in _stream_spec_calls(path)
    }
    assert not outside, f"StreamSpec built outside src/orrange/wire: {sorted(outside)}"


def _doc_stream_table() -> dict[str, set[str]]:
    """Stream name -> subject patterns of the table under the wire section of
    ``docs/architecture.md`` (``a.<X>.b`` written as the wildcard ``a.>``)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Subjects, streams and consumers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    table: dict[str, set[str]] = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        name = re.match(r"`([A-Z_]+)`", cells[0])
        assert name, row
        subjects = set()
        for subject in re.findall(r"`([^`]+)`", cells[1]):
            head = subject.split(".<", 1)
            subjects.add(head[0] + ".>" if len(head) == 2 else subject)
        table[name.group(1)] = subjects
    return table


def test_architecture_table_lists_the_wire_streams() -> None:
    assert _doc_stream_table() == {s.name: set(s.subjects) for s in wire.STREAMS}
