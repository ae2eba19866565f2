"""What importing the pure core and the wire contract loads at run time.

``lint-imports`` (``.importlinter``) reads import statements; Python also runs every package's
``__init__`` on the way to a module (``from orrange.feeds.book import X`` runs
``orrange/feeds/__init__.py`` and whatever it imports). Here a fresh interpreter imports every
module of each package and lists the I/O libraries and adapter packages that ended up loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PURE = [
    "orrange.markets",
    "orrange.matching",
    "orrange.marketdata",
    "orrange.alerts",
    "orrange.risk",
    "orrange.settlement",
    "orrange.wire",
]

# the forbidden_modules of .importlinter's pure-core contract
BANNED = [
    "nats",
    "asyncpg",
    "litestar",
    "uvicorn",
    "web3",
    "eth_utils",
    "eth_tester",
    "vyper",
    "websockets",
    "httpx",
    "orrange.engine",
    "orrange.store",
    "orrange.runtime",
    "orrange.api",
    "orrange.infra",
    "orrange.feeds",
    "orrange.evm",
    "orrange.tools",
    "orrange.cli",
    "actors",
]

_PROBE = """
import importlib, json, pkgutil, sys
root = importlib.import_module(sys.argv[1])
for info in pkgutil.walk_packages(getattr(root, "__path__", []), root.__name__ + "."):
    importlib.import_module(info.name)
loaded = [b for b in sys.argv[2:] if any(m == b or m.startswith(b + ".") for m in sys.modules)]
print(json.dumps(sorted(loaded)))
"""


@pytest.mark.process
@pytest.mark.parametrize("package", PURE)
def test_importing_a_pure_package_loads_no_adapter(package: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, package, *BANNED],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(proc.stdout) == []
