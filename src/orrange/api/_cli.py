"""``orrange api`` (the HTTP/WebSocket API on uvicorn with uvloop) and ``orrange token``."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import msgspec

from orrange.cli import CommandTree
from orrange.runtime.actor import tune_gc
from orrange.settings import SettingsError, load_settings

__all__ = ["app_from_env", "register"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, exiting 0 after a graceful SIGTERM/SIGINT shutdown (uvicorn
        re-raises the signal after shutting down, which would end the process with -15)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def app_from_env() -> Any:
    """The app factory of ``orrange api --workers N``: each worker process builds its own app
    (its own NATS connection and event subscription) from ``ORRANGE_CONFIG`` and the
    environment."""
    from orrange.api.app import create_app
    from orrange.logging import configure_logging

    settings = load_settings(os.environ.get("ORRANGE_CONFIG") or None)
    configure_logging(settings.log_format, settings.log_level, actor="api")
    tune_gc()
    return create_app(settings)


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from orrange.api.app import create_app
    from orrange.api.auth import AuthError, resolve_jwt_secret
    from orrange.logging import configure_logging

    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"orrange api: {exc}", file=sys.stderr)
        return 2
    if args.host is not None:
        settings = msgspec.structs.replace(settings, api_host=args.host)
    if args.port is not None:
        settings = msgspec.structs.replace(settings, api_port=args.port)
    configure_logging(settings.log_format, settings.log_level, actor="api")
    common: dict[str, Any] = {
        "host": settings.api_host,
        "port": settings.api_port,
        "loop": "uvloop",
        "http": "httptools",
        "ws": "websockets-sansio",
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 5,
    }
    workers = args.workers if args.workers is not None else settings.api_workers
    if workers > 1:
        try:
            resolve_jwt_secret(settings)
        except AuthError as exc:
            print(f"orrange api: {exc.message}", file=sys.stderr)
            return 2
        if args.config is not None:
            os.environ["ORRANGE_CONFIG"] = str(args.config)
        os.environ["ORRANGE_API_HOST"] = settings.api_host
        os.environ["ORRANGE_API_PORT"] = str(settings.api_port)
        uvicorn.run("orrange.api._cli:app_from_env", factory=True, workers=workers, **common)
        return 0
    try:
        app = create_app(settings)
    except AuthError as exc:
        print(f"orrange api: {exc.message}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        app,
        **common,
    )
    server = _server_class()(config)
    tune_gc()
    server.run()
    return 0 if server.started else 1


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
    """Add ``orrange api`` and ``orrange token``."""
    p = cli.command(
        "api",
        _api,
        "run the REST and WebSocket API (uvicorn + uvloop) on api_host:api_port; needs "
        "ORRANGE_JWT_SECRET (or ORRANGE_ENV=dev for the development secret)",
    )
    p.add_argument("--config", default=None, help="settings TOML (default config/orrange.toml)")
    p.add_argument("--host", default=None, help="overrides ORRANGE_API_HOST")
    p.add_argument("--port", type=int, default=None, help="overrides ORRANGE_API_PORT")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes sharing the port, each with its own event subscription "
        "(overrides ORRANGE_API_WORKERS, default 1)",
    )
    t = cli.command(
        "token",
        _token,
        "print a development HS256 JWT for USER, signed with ORRANGE_JWT_SECRET (with "
        "ORRANGE_ENV=dev and no secret: the public development secret)",
    )
    t.add_argument("user", metavar="USER", help="user id ([A-Za-z0-9_-], 1-64 characters)")
    t.add_argument("--role", default="trader", choices=["trader", "mediator"], help="token role")
    t.add_argument("--ttl", type=int, default=24 * 3600, help="validity in seconds (default 1 day)")
    t.add_argument("--config", default=None, help="settings TOML (default config/orrange.toml)")
