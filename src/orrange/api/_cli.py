"""``orrange token``: a development bearer token for the API (the API itself is the process
``orrange actor api``, :mod:`actors.api`)."""

from __future__ import annotations

import argparse
import sys

from orrange.cli import CommandTree
from orrange.settings import SettingsError, load_settings

__all__ = ["register"]


def _token(args: argparse.Namespace) -> int:
    from orrange.api.auth import AuthError, issue_token, resolve_jwt_secret

    try:
        settings = load_settings(args.config)
        secret = resolve_jwt_secret(settings)
        print(issue_token(secret, args.user, role=args.role, ttl_s=args.ttl))
    except (SettingsError, ValueError) as exc:
        print(f"orrange token: {exc}", file=sys.stderr)
        return 2
    except AuthError as exc:
        print(f"orrange token: {exc.message}", file=sys.stderr)
        return 2
    return 0


def register(cli: CommandTree) -> None:
    """Add ``orrange token``."""
    t = cli.command(
        "token",
        _token,
        "print a development HS256 JWT for USER, signed with ORRANGE_JWT_SECRET (with "
        "ORRANGE_ENV=dev and no secret: the public development secret)",
    )
    t.add_argument("user", metavar="USER", help="user id ([A-Za-z0-9_-], 1-64 characters)")
    t.add_argument("--role", default="trader", choices=["trader", "mediator"], help="token role")
    t.add_argument("--ttl", type=int, default=24 * 3600, help="validity in seconds (default 1 day)")
    t.add_argument("--config", default=None, help="settings TOML (default: orrange.toml)")
