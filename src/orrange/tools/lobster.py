"""``orrange replay lobster``: the LOBSTER replay of :mod:`orrange.matching.lobster` as a command.

``--via local`` (default) replays through an in-process book and prints the comparison;
``--via nats`` replays locally, then publishes the same command stream to a running engine
where clients' commands enter, on ``cmd.order.<SYM>`` (through risk), each with
``Nats-Msg-Id`` ``lobster:<SYM>:<index>``: running the command again within the streams'
de-duplication window publishes nothing new, and an engine that applies the stream ends with
the same book and the same fills as the local replay.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import msgspec
import nats

from orrange.matching import lobster
from orrange.matching.commands import Command
from orrange.runtime.publisher import Publisher
from orrange.settings import load_settings
from orrange.wire.engine import cmd_subject, lobster_msg_id

__all__ = ["cli_main", "publish_commands"]


async def publish_commands(
    nats_url: str, symbol: str, commands: Sequence[Command], *, window: int = 5_000
) -> int:
    """Publish ``commands`` in order to ``cmd.order.<symbol>`` and wait for every ack.

    Publishes are pipelined, at most ``window`` awaiting their acks. Returns how many the
    stream stored as new (not de-duplicated).

    Raises:
        orrange.runtime.PublishError: some publish was not acked (retrying is safe).
        OSError / nats errors: the server cannot be reached.
    """
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        pub = Publisher(nc, max_pending=window * 2)
        subject = cmd_subject(symbol)
        stored = 0
        for i, cmd in enumerate(commands):
            await pub.submit(subject, cmd, msg_id=lobster_msg_id(symbol, i))
            if pub.pending >= window:
                stored += sum(not a.duplicate for a in await pub.flush())
        stored += sum(not a.duplicate for a in await pub.flush())
        return stored
    finally:
        await nc.drain()


def cli_main(args: argparse.Namespace) -> int:
    """``orrange replay lobster``: print the summary; exit 0 only without any mismatch or
    wrong fill (1), 2 for unusable input; ``--via nats``: see :func:`_via_nats`."""
    if getattr(args, "via", "local") == "nats":
        return _via_nats(args)
    try:
        res = lobster.replay(
            args.messages,
            args.orderbook,
            levels=args.levels or 0,
            limit=args.limit or None,
            keep=False,
        )
    except (OSError, ValueError) as exc:
        print(f"orrange replay lobster: {exc}", file=sys.stderr)
        return 2
    s = res.summary
    if args.json:
        sys.stdout.write(msgspec.json.encode(s).decode() + "\n")
    else:
        print(f"messages:          {s.messages}")
        print(f"rows compared:     {s.rows_compared} ({res.levels} level(s) per side)")
        print(f"mismatches:        {s.mismatches}")
        print(f"wrong fills:       {s.wrong_fills} (executions that filled a different id)")
        print(f"seed orders:       {res.seeds}")
        print(
            f"out of sight:      {res.presumed_gone} known orders presumed canceled, "
            f"{res.resized} resized, {res.requeued} seed moves"
        )
        print(f"messages/s:        {s.messages_per_s:,.0f}")
        for m in res.mismatch_rows[:5]:
            print(
                f"  mismatch at line {m.row + 1}: file bids {m.expected_bids} asks "
                f"{m.expected_asks}; engine bids {m.engine_bids} asks {m.engine_asks}"
            )
        if res.wrong_fill_rows:
            lines = ", ".join(str(i + 1) for i in res.wrong_fill_rows[:10])
            print(f"  wrong fills at message line(s): {lines}")
    return 0 if res.ok else 1


def _via_nats(args: argparse.Namespace) -> int:
    """``orrange replay lobster --via nats``: replay locally, then send the same commands to
    the engine at ``ORRANGE_NATS_URL`` (or the embedded server's address). Exit 0 when every
    command was acked, 1 when the local replay itself mismatched, 2 on unusable input or an
    unreachable server."""
    try:
        res = lobster.replay(
            args.messages, args.orderbook, levels=args.levels or 0, limit=args.limit or None
        )
    except (OSError, ValueError) as exc:
        print(f"orrange replay lobster: {exc}", file=sys.stderr)
        return 2
    url = load_settings().effective_nats_url
    symbol = res.book.symbol
    try:
        stored = asyncio.run(publish_commands(url, symbol, res.commands))
    except Exception as exc:  # any connection or publish failure: report it, exit 2
        print(f"orrange replay lobster: cannot publish to {url}: {exc}", file=sys.stderr)
        return 2
    summary = {
        "messages": res.summary.messages,
        "commands": len(res.commands),
        "published_new": stored,
        "symbol": symbol,
        "nats_url": url,
        "local_mismatches": res.summary.mismatches,
        "local_wrong_fills": res.summary.wrong_fills,
    }
    if args.json:
        sys.stdout.write(msgspec.json.encode(summary).decode() + "\n")
    else:
        for k, v in summary.items():
            print(f"{k + ':':<19}{v}")
    return 0 if res.summary.mismatches == 0 else 1
