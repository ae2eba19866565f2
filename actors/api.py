"""The API process: ``orrange actor api [--host H] [--port P] [--workers N]``.

The REST and WebSocket API (:func:`orrange.api.app.create_app`) on uvicorn with uvloop. With
several workers uvicorn starts one process per worker, each building its own app (its own NATS
connection and event subscription) with :func:`app_from_env` from the settings this process
exports into their environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec

from actors._args import actor_parser, process_settings
from orrange.logging import configure_logging
from orrange.runtime.actor import tune_gc
from orrange.settings import load_settings, settings_env

__all__ = ["app_from_env", "main"]

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
    """The app factory of each worker of ``--workers N``: the app of the settings in the
    environment (exported by :func:`main`)."""
    from orrange.api.app import create_app

    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level, actor="api")
    tune_gc()
    return create_app(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the API on ``api_host:api_port`` until SIGTERM/SIGINT.

    Options: the shared ones (``--config``, ``--nats-url``, ``--database-url``), ``--host`` /
    ``--port`` (override ``api_host`` / ``api_port``) and ``--workers`` (processes sharing the
    port; overrides ``api_workers``). Needs ``ORRANGE_JWT_SECRET`` (or ``ORRANGE_ENV=dev`` for
    the development secret).

    Returns the exit code: 0 after a clean stop, 1 when the server did not start, 2 for bad
    arguments, settings or a missing JWT secret.
    """
    import uvicorn

    from orrange.api.app import create_app
    from orrange.api.auth import AuthError, resolve_jwt_secret

    p = actor_parser(
        "api",
        "run the REST and WebSocket API (uvicorn + uvloop) on api_host:api_port; needs "
        "ORRANGE_JWT_SECRET (or ORRANGE_ENV=dev for the development secret)",
        actor=False,
    )
    p.add_argument("--host", default=None, help="overrides ORRANGE_API_HOST")
    p.add_argument("--port", type=int, default=None, help="overrides ORRANGE_API_PORT")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes sharing the port, each with its own event subscription "
        "(overrides ORRANGE_API_WORKERS, default 1)",
    )
    args = p.parse_args(argv)
    settings = process_settings(p, args)
    if args.host is not None:
        settings = msgspec.structs.replace(settings, api_host=args.host)
    if args.port is not None:
        settings = msgspec.structs.replace(settings, api_port=args.port)
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
            print(f"{p.prog}: {exc.message}", file=sys.stderr)
            return 2
        os.environ.update(settings_env(settings))
        uvicorn.run("actors.api:app_from_env", factory=True, workers=workers, **common)
        return 0
    try:
        app = create_app(settings)
    except AuthError as exc:
        print(f"{p.prog}: {exc.message}", file=sys.stderr)
        return 2
    server = _server_class()(uvicorn.Config(app, **common))
    tune_gc()
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
