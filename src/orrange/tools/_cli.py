"""``orrange replay lobster`` and ``orrange bench matcher``."""

from __future__ import annotations

import argparse

from orrange.cli import CommandTree


def _replay_lobster(args: argparse.Namespace) -> int:
    import orrange.tools.lobster as lobster

    return lobster.cli_main(args)


def _bench_matcher(args: argparse.Namespace) -> int:
    import orrange.tools.matcher_bench as bench

    return bench.cli_main(args)


def register(cli: CommandTree) -> None:
    p = cli.group_command(
        "replay",
        "lobster",
        _replay_lobster,
        "Replay a LOBSTER message file through the order book and compare every book row",
    )
    p.add_argument("--messages", required=True, help="LOBSTER *_message_N.csv")
    p.add_argument("--orderbook", required=True, help="LOBSTER *_orderbook_N.csv")
    p.add_argument("--levels", type=int, default=0, help="levels to compare (default: from file)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument(
        "--via",
        choices=["local", "nats"],
        default="local",
        help="local: in-process book; nats: drive a running `orrange up` over NATS",
    )
    p.add_argument("--limit", type=int, default=0, help="replay only the first N messages")

    b = cli.group_command(
        "bench",
        "matcher",
        _bench_matcher,
        "Benchmark the matching core on the seeded synthetic flow and the LOBSTER replay",
    )
    b.add_argument("--events", type=int, default=1_000_000, help="commands in the flow")
    b.add_argument("--runs", type=int, default=5, help="timed runs (the median is reported)")
    b.add_argument("--seed", type=int, default=42)
    b.add_argument("--json", action="store_true", help="print the results as one JSON object")
    b.add_argument("--out", default="", help="directory for results JSON and table")
