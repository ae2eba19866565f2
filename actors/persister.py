"""The persister process: ``orrange actor persister [--batch-size N] [--linger-ms MS]``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from actors._args import actor_parser, actor_setup
from orrange.engine.persister import DEFAULT_LINGER_MS, Persister
from orrange.runtime import run_actor

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the persister until SIGTERM/SIGINT.

    Options: the shared ones (``--config``, ``--nats-url``, ``--database-url``, ``--name``,
    ``--batch-size``, ``--metrics-port``) and ``--linger-ms`` (how long a short fetch waits
    for a fuller batch).

    Returns the exit code: 0 after a clean stop, 2 for bad arguments or settings.
    """
    p = actor_parser(
        "persister", "write book events and risk rejections into PostgreSQL", batch_size=True
    )
    p.add_argument(
        "--linger-ms",
        type=int,
        default=DEFAULT_LINGER_MS,
        help=f"wait up to this long for a fuller batch (ms, default {DEFAULT_LINGER_MS})",
    )
    args = p.parse_args(argv)
    settings, config = actor_setup(p, args)
    if args.linger_ms < 0:
        p.error("--linger-ms must be >= 0")
    actor = Persister(
        config,
        settings.effective_database_url,
        batch_size=args.batch_size,
        linger_ms=args.linger_ms,
    )
    return run_actor(actor)


if __name__ == "__main__":
    sys.exit(main())
