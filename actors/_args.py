"""The command line every ``orrange actor NAME`` shares: one argument parser, one setup.

:func:`actor_parser` declares the common options: ``--config`` (settings TOML), ``--nats-url``,
and, as the process needs them, ``--database-url``, ``--markets`` (markets TOML),
``--batch-size``, and for an :class:`~orrange.runtime.Actor` ``--name`` and
``--metrics-port``. A process adds its own options, then :func:`process_settings` (or
:func:`actor_setup` for an actor) loads the settings with the URL options applied and
configures logging. Bad arguments and unreadable configuration end the process through
``parser.error`` (exit status 2).
"""

from __future__ import annotations

import argparse

import msgspec

from orrange.logging import configure_logging
from orrange.markets import MarketSpec, load_markets
from orrange.runtime import ActorConfig
from orrange.settings import Settings, SettingsError, config_file, load_settings

__all__ = ["actor_parser", "actor_setup", "markets_arg", "process_settings", "symbols_arg"]


def actor_parser(
    name: str,
    description: str,
    *,
    database: bool = True,
    batch_size: bool = False,
    markets: bool = False,
    actor: bool = True,
) -> argparse.ArgumentParser:
    """The parser of ``orrange actor NAME`` with the shared options.

    Args:
        name: the process name (``prog`` and the default ``--name``).
        description: what the process does (``--help``).
        database: add ``--database-url``.
        batch_size: add ``--batch-size`` (messages per fetch, >= 1).
        markets: add ``--markets`` (see :func:`markets_arg`).
        actor: add ``--name`` and ``--metrics-port`` (processes built on the actor runtime).
    """
    p = argparse.ArgumentParser(prog=f"orrange actor {name}", description=description)
    p.add_argument("--config", default=None, help="settings TOML (default: orrange.toml)")
    p.add_argument("--nats-url", default=None, help="NATS URL (default: settings)")
    if database:
        p.add_argument("--database-url", default=None, help="PostgreSQL URL (default: settings)")
    if markets:
        p.add_argument("--markets", default=None, help="markets TOML (default: markets.toml)")
    if batch_size:
        p.add_argument("--batch-size", type=int, default=None, help="messages per fetch")
    if actor:
        p.add_argument("--name", default=name, help="actor name (heartbeat, DLQ subject)")
        p.add_argument(
            "--metrics-port",
            type=int,
            default=0,
            help="metrics/probe port (0: any free one, -1: off)",
        )
    p.set_defaults(process=name)
    return p


def process_settings(p: argparse.ArgumentParser, args: argparse.Namespace) -> Settings:
    """The settings of ``--config`` (default :func:`~orrange.settings.config_file`) and the
    environment, with ``--nats-url`` / ``--database-url`` applied; configures logging for
    ``--name`` (else the process name).

    Exits through ``p.error`` on unreadable settings or a ``--batch-size`` below 1.
    """
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        p.error(str(exc))
    if getattr(args, "batch_size", None) is not None and args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    if args.nats_url:
        settings = msgspec.structs.replace(settings, nats_url=args.nats_url)
    if getattr(args, "database_url", None):
        settings = msgspec.structs.replace(settings, database_url=args.database_url)
    configure_logging(
        settings.log_format, settings.log_level, actor=getattr(args, "name", args.process)
    )
    return settings


def actor_setup(
    p: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[Settings, ActorConfig]:
    """:func:`process_settings` and the :class:`~orrange.runtime.ActorConfig` of ``--name``
    (metrics on ``--metrics-port``, none for -1)."""
    settings = process_settings(p, args)
    config = ActorConfig.from_settings(
        args.name, settings, metrics_port=None if args.metrics_port < 0 else args.metrics_port
    )
    return settings, config


def markets_arg(p: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, MarketSpec]:
    """The markets of ``--markets``, else of ``config_file("markets.toml")``, by symbol.

    Exits through ``p.error`` when the file is missing or invalid.
    """
    try:
        return load_markets(args.markets or config_file("markets.toml"))
    except (OSError, ValueError) as exc:
        p.error(str(exc))


def symbols_arg(
    p: argparse.ArgumentParser, raw: str | None, markets: dict[str, MarketSpec]
) -> list[str] | None:
    """The comma-separated ``--symbols`` of a shard, in order; None when ``raw`` is None (the
    process then serves every market).

    Exits through ``p.error`` when a symbol has no market spec or the list is empty.
    """
    if raw is None:
        return None
    symbols = [s.strip() for s in raw.split(",") if s.strip()]
    missing = [s for s in symbols if s not in markets]
    if missing:
        p.error(f"no market spec for {', '.join(missing)}")
    if not symbols:
        p.error("--symbols: no symbol given")
    return symbols
