"""The REST and WebSocket API of the engine (Litestar on uvicorn with uvloop).

* :mod:`orrange.api.app`: :func:`create_app` and the route table.
* :mod:`orrange.api.auth`: HS256 JWT bearer tokens (``orrange token USER``).
* :mod:`orrange.api.schemas`: request/response bodies, decimal strings at the edge.
* :mod:`orrange.api.errors`: the ``{"error": {"field", "reason", "message"}}`` bodies.
* :mod:`orrange.api.hub`: the one event subscription of the process and its fan-out.
* :mod:`orrange.api.ws`: the ``/ws`` WebSocket protocol.

Run it with ``orrange actor api`` (:mod:`actors.api`; settings from ``orrange.toml`` and
``ORRANGE_*``).
"""

from orrange.api.app import ApiContext, ApiOptions, create_app
from orrange.api.auth import Principal, decode_token, issue_token

__all__ = ["ApiContext", "ApiOptions", "Principal", "create_app", "decode_token", "issue_token"]
