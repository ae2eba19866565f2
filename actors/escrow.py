"""The escrow watcher process: ``orrange actor escrow [--chain-url URL] [--escrow-address A]``.

It opens the P2P trades of fills and follows the escrow contract's events; the settlement
deadlines come from ``config_file("settlement.toml")`` and ``ORRANGE_SETTLEMENT_*``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from actors._args import actor_parser, actor_setup, markets_arg
from orrange.engine.escrow import EscrowWatcher, WatcherOptions
from orrange.runtime import run_actor
from orrange.settlement.config import load_settlement_config

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the escrow watcher until SIGTERM/SIGINT.

    Options: the shared ones (``--config``, ``--nats-url``, ``--database-url``,
    ``--markets``, ``--name``, ``--metrics-port``), ``--chain-url`` (default
    ``$ORRANGE_CHAIN_URL``), ``--escrow-address`` (default ``$ORRANGE_ESCROW_ADDRESS``),
    ``--confirmations`` (default ``$ORRANGE_ESCROW_CONFIRMATIONS`` or 2) and
    ``--poll-interval-ms`` (1000).

    Returns the exit code: 0 after a clean stop, 2 for bad arguments or settings.
    """
    p = actor_parser(
        "escrow", "open P2P trades from fills and follow the escrow contract's events", markets=True
    )
    p.add_argument("--chain-url", default=os.environ.get("ORRANGE_CHAIN_URL") or None)
    p.add_argument("--escrow-address", default=os.environ.get("ORRANGE_ESCROW_ADDRESS") or None)
    p.add_argument(
        "--confirmations",
        type=int,
        default=int(os.environ.get("ORRANGE_ESCROW_CONFIRMATIONS", "2")),
        help="blocks on top before a log is applied",
    )
    p.add_argument("--poll-interval-ms", type=int, default=1000)
    args = p.parse_args(argv)
    try:
        settlement = load_settlement_config()
    except ValueError as exc:  # SettlementConfigError, SettingsError
        p.error(str(exc))
    markets = markets_arg(p, args)
    if args.confirmations < 0 or args.poll_interval_ms < 1:
        p.error("--confirmations must be >= 0 and --poll-interval-ms >= 1")
    settings, config = actor_setup(p, args)
    options = WatcherOptions(
        chain_url=args.chain_url,
        escrow_address=args.escrow_address,
        confirmations=args.confirmations,
        poll_interval_ms=args.poll_interval_ms,
    )
    actor = EscrowWatcher(config, settings.effective_database_url, markets, settlement, options)
    return run_actor(actor)


if __name__ == "__main__":
    sys.exit(main())
