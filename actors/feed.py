"""The feed process: ``orrange actor feed [--symbols A,B --name feed-b] [--sources FILE]``.

With ``--symbols`` it is a shard: only those markets and the sources that quote them; shards
with disjoint markets need distinct ``--name``s (the name is their durable consumer).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from actors._args import actor_parser, actor_setup, markets_arg, symbols_arg
from orrange.engine.feed import Feed
from orrange.feeds import load_sources, shard_sources
from orrange.runtime import run_actor
from orrange.settings import config_file

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the feed until SIGTERM/SIGINT.

    Options: the shared ones (``--config``, ``--nats-url``, ``--database-url``,
    ``--markets``, ``--name``, ``--metrics-port``), ``--sources`` (default
    ``config_file("sources.toml")``; relative replay paths are resolved against the directory
    above the file's), ``--symbols`` (this shard's markets, comma-separated; default all),
    ``--index-interval-ms`` (100) and ``--candle-lateness-ms`` (2000).

    Returns the exit code: 0 after a clean stop, 2 for bad arguments, settings or source
    configuration.
    """
    p = actor_parser(
        "feed", "market data: ticks, index price, reference prices and candles", markets=True
    )
    p.add_argument("--sources", default=None, help="sources TOML (default: sources.toml)")
    p.add_argument(
        "--symbols",
        default=None,
        help="this feed shard's markets, comma-separated (default: every market); run shards "
        "with distinct --name",
    )
    p.add_argument("--index-interval-ms", type=int, default=100, help="round period (ms)")
    p.add_argument("--candle-lateness-ms", type=int, default=2_000, help="close delay (ms)")
    args = p.parse_args(argv)
    settings, config = actor_setup(p, args)
    markets = markets_arg(p, args)
    symbols = symbols_arg(p, args.symbols, markets)
    try:
        sources_path = Path(args.sources) if args.sources else config_file("sources.toml")
        sources = load_sources(sources_path)
        if symbols is not None:  # a shard: its markets and only their sources
            markets = {s: markets[s] for s in symbols}
            sources = shard_sources(sources, markets)
        actor = Feed(
            config,
            settings.effective_database_url,
            markets,
            sources,
            index_interval_ms=args.index_interval_ms,
            candle_lateness_ms=args.candle_lateness_ms,
            base_dir=sources_path.parent.parent,
        )
    except (OSError, ValueError) as exc:
        p.error(str(exc))
    return run_actor(actor)


if __name__ == "__main__":
    sys.exit(main())
