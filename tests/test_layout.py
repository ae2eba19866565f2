"""docs/architecture.md opens with a layout table that matches the tree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "orrange"


def _layout_rows() -> dict[str, str]:
    """First-column paths of the Layout table -> the row's text."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        paths = re.findall(r"`([^`]+)`", first)
        base = paths[0].rsplit("/", 1)[0] + "/" if "/" in paths[0].rstrip("/") else ""
        for i, path in enumerate(paths):
            rows[path if i == 0 or "/" in path else base + path] = line
    return rows


def test_the_layout_table_is_the_first_section() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    assert text.split("\n## ", 2)[1].startswith("Layout")


def test_every_path_in_the_table_exists() -> None:
    missing = [p for p in _layout_rows() if not (ROOT / p).exists()]
    assert missing == []


def test_every_package_and_module_of_the_tree_is_in_the_table() -> None:
    rows = _layout_rows()
    tree = [
        f"src/orrange/{p.name}/" if p.is_dir() else f"src/orrange/{p.name}"
        for p in PKG.iterdir()
        if (p.is_dir() and (p / "__init__.py").exists())
        or (p.suffix == ".py" and p.name != "__init__.py")
    ]
    assert sorted(set(tree) - set(rows)) == []
    for top in ("actors/", "config/", "tests/", "bench/", "Procfile"):
        assert top in rows
    actors = rows["actors/"]
    for mod in (ROOT / "actors").glob("[a-z]*.py"):
        assert f"`{mod.stem}`" in actors, mod.stem
