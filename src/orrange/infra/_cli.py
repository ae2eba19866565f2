"""``orrange infra nats`` and ``orrange infra postgres``: the embedded servers as Procfile lines."""

from __future__ import annotations

import argparse

import msgspec

from orrange.cli import CommandTree
from orrange.logging import configure_logging
from orrange.settings import Settings, load_settings

__all__ = ["register"]


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    if args.data_dir is not None:
        settings = msgspec.structs.replace(settings, data_dir=args.data_dir)
    configure_logging(settings.log_format, settings.log_level)
    return settings


def _nats(args: argparse.Namespace) -> int:
    from orrange.infra.run import run_nats

    return run_nats(_settings(args))


def _postgres(args: argparse.Namespace) -> int:
    from orrange.infra.run import run_postgres

    return run_postgres(_settings(args))


def _chain(args: argparse.Namespace) -> int:
    from orrange.infra.run import run_chain

    return run_chain(_settings(args))


def register(cli: CommandTree) -> None:
    """Add the ``infra`` command group."""
    for name, handler, text in (
        (
            "nats",
            _nats,
            "run the embedded nats-server with JetStream (store <data_dir>/nats) until "
            "SIGTERM/SIGINT; idles when ORRANGE_NATS_URL is set",
        ),
        (
            "postgres",
            _postgres,
            "run the embedded PostgreSQL (cluster <data_dir>/pg, database orrange) until "
            "SIGTERM/SIGINT; idles when ORRANGE_DATABASE_URL is set",
        ),
        (
            "chain",
            _chain,
            "with ORRANGE_ENV=dev: run a local anvil (state <data_dir>/chain) with the escrow "
            "deployed; idles otherwise (external ORRANGE_CHAIN_URL, or no chain)",
        ),
    ):
        p = cli.group_command("infra", name, handler, text)
        p.add_argument("--config", default=None, help="settings TOML (default config/orrange.toml)")
        p.add_argument("--data-dir", default=None, help="overrides ORRANGE_DATA_DIR")
