"""``orrange up`` and ``orrange actor NAME``: the processes from the command line."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from orrange.cli import CommandTree

__all__ = ["actor_main", "register"]


def _up(args: argparse.Namespace) -> int:
    from orrange.infra.up import UpError, run_up
    from orrange.logging import configure_logging
    from orrange.settings import SettingsError, load_settings

    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"orrange up: {exc}", file=sys.stderr)
        return 2
    if args.data_dir is not None:
        settings = msgspec.structs.replace(settings, data_dir=args.data_dir)
    configure_logging(settings.log_format, settings.log_level)
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    try:
        return run_up(settings, procfile=args.procfile, only=only, stop_timeout_s=args.stop_timeout)
    except (UpError, SettingsError) as exc:
        print(f"orrange up: {exc}", file=sys.stderr)
        return 2


def actor_main(name: str) -> Callable[[list[str]], int] | None:
    """``main(argv)`` of the process module ``actors.<name>``; None when there is none (or
    ``name`` is not a process name: letters, digits and ``_``, not starting with ``_``)."""
    if name.startswith("_") or not name.replace("_", "").isalnum():
        return None
    module = f"actors.{name}"
    try:
        mod: Any = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise
    main = getattr(mod, "main", None)
    return main if callable(main) else None


def _actor(args: argparse.Namespace) -> int:
    if not args.name.replace("_", "").isalnum():
        print(f"orrange actor: bad actor name {args.name!r}", file=sys.stderr)
        return 2
    main = actor_main(args.name)
    if main is None:
        print(
            f"orrange actor: no actor {args.name!r} (actors.{args.name} with a main(argv) "
            "function)",
            file=sys.stderr,
        )
        return 2
    return main(list(args.args))


def register(cli: CommandTree) -> None:
    """Add ``orrange up`` and ``orrange actor``."""
    p = cli.command(
        "up",
        _up,
        "run every process of the Procfile (embedded NATS and PostgreSQL unless "
        "ORRANGE_NATS_URL / ORRANGE_DATABASE_URL are set, the actors, the API) until Ctrl-C",
    )
    p.add_argument("--procfile", default=None, help="Procfile (default: config_file('Procfile'))")
    p.add_argument("--only", default=None, help="comma-separated Procfile names to run")
    p.add_argument("--config", default=None, help="settings TOML (default: orrange.toml)")
    p.add_argument("--data-dir", default=None, help="overrides ORRANGE_DATA_DIR (default ./var)")
    p.add_argument(
        "--stop-timeout",
        type=float,
        default=5.0,
        help="seconds each shutdown stage waits before SIGKILL",
    )
    a = cli.command(
        "actor",
        _actor,
        "run one process of the engine until SIGTERM/SIGINT: orrange actor NAME [ARGS...] "
        "calls main(ARGS) of actors.NAME (matcher, risk, persister, feed, alerter, escrow, api)",
    )
    a.add_argument("name", help="process name, e.g. matcher")
    a.add_argument("args", nargs=argparse.REMAINDER, help="the process's own arguments")
