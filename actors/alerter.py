"""The alerter process: ``orrange actor alerter [--batch-size N]``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from actors._args import actor_parser, actor_setup
from orrange.engine.alerter import Alerter
from orrange.runtime import run_actor

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the alerter until SIGTERM/SIGINT.

    Options: the shared ones (``--config``, ``--nats-url``, ``--database-url``, ``--name``,
    ``--batch-size``, ``--metrics-port``).

    Returns the exit code: 0 after a clean stop, 1 when the alerter stopped because it could
    not store its work, 2 for bad arguments or settings.
    """
    p = actor_parser(
        "alerter",
        "evaluate price alerts and market signals; notify users exactly once",
        batch_size=True,
    )
    args = p.parse_args(argv)
    settings, config = actor_setup(p, args)
    actor = Alerter(config, settings.effective_database_url, batch_size=args.batch_size)
    code = run_actor(actor)
    return 1 if actor.failed is not None else code


if __name__ == "__main__":
    sys.exit(main())
