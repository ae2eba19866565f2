"""The vault watcher process: ``orrange actor vault [--chain-url URL] [--vault-address A]``.

It follows the vault contract's deposits and withdrawals at a confirmation depth and publishes
them on ``funds.chain``; the assets (token -> asset) come from ``--assets`` or
``config_file("assets.toml")``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from actors._args import actor_parser, actor_setup
from orrange.engine.vault_watcher import VaultOptions, VaultWatcher
from orrange.ledger.assets import load_assets
from orrange.runtime import run_actor
from orrange.settings import config_file

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the vault watcher until SIGTERM/SIGINT.

    Options: the shared ones (``--config``, ``--nats-url``, ``--database-url``, ``--name``,
    ``--metrics-port``), ``--chain-url`` (default ``$ORRANGE_CHAIN_URL``),
    ``--vault-address`` (default ``$ORRANGE_VAULT_ADDRESS``), ``--assets`` (assets TOML),
    ``--confirmations`` (default ``$ORRANGE_VAULT_CONFIRMATIONS`` or 2) and
    ``--poll-interval-ms`` (1000).

    Returns the exit code: 0 after a clean stop, 2 for bad arguments or settings.
    """
    p = actor_parser("vault", "follow the vault's deposits and withdrawals onto funds.chain")
    p.add_argument("--chain-url", default=os.environ.get("ORRANGE_CHAIN_URL") or None)
    p.add_argument("--vault-address", default=os.environ.get("ORRANGE_VAULT_ADDRESS") or None)
    p.add_argument("--assets", default=None, help="assets TOML (default: assets.toml)")
    p.add_argument(
        "--confirmations",
        type=int,
        default=int(os.environ.get("ORRANGE_VAULT_CONFIRMATIONS", "2")),
        help="blocks on top before a log is taken",
    )
    p.add_argument("--poll-interval-ms", type=int, default=1000)
    args = p.parse_args(argv)
    if args.confirmations < 0 or args.poll_interval_ms < 1:
        p.error("--confirmations must be >= 0 and --poll-interval-ms >= 1")
    try:
        assets = load_assets(Path(args.assets or config_file("assets.toml")).read_text())
    except (OSError, ValueError) as exc:  # SettingsError is a ValueError
        p.error(str(exc))
    settings, config = actor_setup(p, args)
    options = VaultOptions(
        chain_url=args.chain_url,
        vault_address=args.vault_address,
        confirmations=args.confirmations,
        poll_interval_ms=args.poll_interval_ms,
    )
    return run_actor(VaultWatcher(config, settings.effective_database_url, assets, options))


if __name__ == "__main__":
    sys.exit(main())
