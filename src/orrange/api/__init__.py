"""The REST and WebSocket API of the engine (Litestar on uvicorn with uvloop).

* :mod:`orrange.api.app`: :func:`create_app` and the route table.
* :mod:`orrange.api.auth`: HS256 JWT bearer tokens (``orrange token USER``).
* :mod:`orrange.api.schemas`: request/response bodies, decimal strings at the edge.
* :mod:`orrange.api.errors`: the ``{"error": {"field", "reason", "message"}}`` bodies.
* :mod:`orrange.api.context`: :class:`ApiContext` (connections, hub, channels) and its options.
* :mod:`orrange.api.hub`: the one event subscription of the process and its dispatch to
  :mod:`~orrange.api.commands` (command/answer correlation, read-your-writes),
  :mod:`~orrange.api.mirrors` (L2 book mirrors) and :mod:`~orrange.api.fanout` (trades,
  ticker, private orders).
* :mod:`orrange.api.channels`: the registry of WebSocket channels; each client is a
  :class:`~orrange.api.subscriber.Subscriber`.
* :mod:`orrange.api.ws`: the ``/ws`` WebSocket protocol.

Run it with ``orrange actor api`` (:mod:`actors.api`; settings from ``orrange.toml`` and
``ORRANGE_*``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orrange.api.app import create_app
    from orrange.api.auth import Principal, decode_token, issue_token
    from orrange.api.context import ApiContext, ApiOptions

__all__ = ["ApiContext", "ApiOptions", "Principal", "create_app", "decode_token", "issue_token"]

# Imported on first use, so that ``orrange token`` and the other commands that only reach
# ``orrange.api.auth`` or ``orrange.api._cli`` do not load Litestar, web3 and the routes.
_HOME = {
    "create_app": "orrange.api.app",
    "Principal": "orrange.api.auth",
    "decode_token": "orrange.api.auth",
    "issue_token": "orrange.api.auth",
    "ApiContext": "orrange.api.context",
    "ApiOptions": "orrange.api.context",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
