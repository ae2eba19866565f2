"""The command-line surface every ``orrange actor NAME`` shares.

:func:`actor_parser` declares the common options (``--nats-url``, ``--config``, ``--name``,
``--metrics-port``, and optionally ``--database-url`` and ``--batch-size``); an actor adds its
own and calls :func:`actor_setup`, which loads the settings, configures logging and builds the
:class:`~orrange.runtime.ActorConfig`.
"""

from __future__ import annotations

import argparse
from typing import Any

from orrange.logging import configure_logging
from orrange.runtime import ActorConfig
from orrange.settings import Settings, SettingsError, load_settings

__all__ = ["actor_parser", "actor_setup"]


def actor_parser(
    name: str, description: str, *, database: bool = True, batch_size: bool = True
) -> argparse.ArgumentParser:
    """An argument parser for ``orrange actor NAME`` with the shared options."""
    p = argparse.ArgumentParser(prog=f"orrange actor {name}", description=description)
    if database:
        p.add_argument("--database-url", default=None, help="PostgreSQL URL (default: settings)")
    p.add_argument("--nats-url", default=None, help="NATS URL (default: settings)")
    p.add_argument("--config", default=None, help="settings TOML (default config/orrange.toml)")
    p.add_argument("--name", default=name, help="actor name (heartbeat, DLQ subject)")
    if batch_size:
        p.add_argument("--batch-size", type=int, default=None, help="messages per fetch")
    p.add_argument(
        "--metrics-port", type=int, default=0, help="metrics/probe port (0: any free one, -1: off)"
    )
    return p


def actor_setup(
    p: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[Settings, ActorConfig]:
    """Load the settings, configure logging for ``args.name`` and build its ActorConfig.

    Exits through ``p.error`` (status 2) on unreadable settings or a batch size below 1.
    """
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        p.error(str(exc))
    if getattr(args, "batch_size", None) is not None and args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    configure_logging(settings.log_format, settings.log_level, actor=args.name)
    overrides: dict[str, Any] = {"nats_url": args.nats_url} if args.nats_url else {}
    config = ActorConfig.from_settings(
        args.name,
        settings,
        metrics_port=None if args.metrics_port < 0 else args.metrics_port,
        **overrides,
    )
    return settings, config
