"""Guard against testing a stale compiled core.

``pip install -e .`` compiles ``orrange/matching/book.py`` in place (see setup.py); Python then
imports the extension module, not the source. If the source changed after the build, the tests
would exercise old code, so stop with a clear message instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import orrange.matching.book as _book


def pytest_configure(config: pytest.Config) -> None:
    built = Path(_book.__file__)
    if built.suffix == ".py":
        return
    src = built.with_name("book.py")
    pxd = built.with_name("book.pxd")
    newest = max(src.stat().st_mtime, pxd.stat().st_mtime)
    if built.stat().st_mtime < newest:
        pytest.exit(
            f"{built.name} is older than book.py/book.pxd: rebuild with "
            "`.venv/bin/pip install -e .` (or delete the .so to test the pure-Python module)",
            returncode=3,
        )
