"""The matcher process: ``orrange actor matcher [--symbols BTC-USDT,ETH-USDT]``.

Without ``--symbols`` it hosts every market of the markets file; with it, that shard.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from actors._args import actor_parser, actor_setup, markets_arg, symbols_arg
from orrange.engine.matcher import Matcher
from orrange.runtime import run_actor

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the matcher until SIGTERM/SIGINT.

    Options: the shared ones (``--config``, ``--nats-url``, ``--markets``, ``--name``,
    ``--metrics-port``), ``--symbols`` (comma-separated; default every market),
    ``--snapshot-every`` (commands between snapshots, 10,000) and ``--snapshot-interval-ms``
    (10,000).

    Returns the exit code: 0 after a clean stop, 2 for bad arguments or configuration.
    """
    p = actor_parser("matcher", "run the matcher of a symbol shard", database=False, markets=True)
    p.add_argument(
        "--symbols", default=None, help="comma-separated symbols, e.g. BTC-USDT (default: all)"
    )
    p.add_argument("--snapshot-every", type=int, default=10_000, help="commands between snapshots")
    p.add_argument("--snapshot-interval-ms", type=int, default=10_000, help="ms between snapshots")
    args = p.parse_args(argv)
    markets = markets_arg(p, args)
    symbols = symbols_arg(p, args.symbols, markets) or list(markets)
    # before the actor exists: its logger binds the configuration in force
    _, config = actor_setup(p, args)
    try:
        matcher = Matcher(
            config,
            markets,
            symbols,
            snapshot_every=args.snapshot_every,
            snapshot_interval_ms=args.snapshot_interval_ms,
        )
    except ValueError as exc:
        p.error(str(exc))
    return run_actor(matcher)


if __name__ == "__main__":
    sys.exit(main())
