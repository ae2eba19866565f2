"""The ``orrange`` console command.

Each domain module that offers a sub-command exposes ``register(cli: CommandTree) -> None`` and
is listed in :data:`_MODULES`; its handlers receive the parsed ``argparse.Namespace`` and return
the process exit code. Modules are imported only when the command line is parsed, so
``orrange --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["CommandTree", "main"]

Handler = Callable[[argparse.Namespace], int]

# Modules that register sub-commands (each defines ``register(cli: CommandTree)``).
_MODULES: tuple[str, ...] = (
    "orrange.tools._cli",
    "orrange.tools.candles",
    "orrange.tools.funds",
    "orrange.infra._cli",
    "actors._cli",
    "orrange.api._cli",
)


class CommandTree:
    """Builder handed to each module's ``register``: top-level commands and command groups."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._sub = parser.add_subparsers(dest="command", metavar="COMMAND")
        self._groups: dict[str, Any] = {}

    def command(self, name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        """Add ``orrange NAME``; returns its parser for arguments."""
        p = self._sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    def group_command(
        self, group: str, name: str, handler: Handler, help: str
    ) -> argparse.ArgumentParser:
        """Add ``orrange GROUP NAME`` (e.g. ``orrange replay lobster``)."""
        sub = self._groups.get(group)
        if sub is None:
            gp = self._sub.add_parser(group, help=f"{group} commands")
            sub = gp.add_subparsers(dest=f"{group}_command", metavar="COMMAND", required=True)
            self._groups[group] = sub
        p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orrange", description="Orrange trading engine")
    tree = CommandTree(parser)
    for mod in _MODULES:
        importlib.import_module(mod).register(tree)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``orrange`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
