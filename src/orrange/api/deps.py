"""What every route module shares: the context of a request, the authenticated principal (the
``principal`` dependency of :data:`API_DEPENDENCIES`, declared once on the ``/api/v1``
router) and the market of a path.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import Provide

from orrange.api.auth import AuthError, Principal, decode_token
from orrange.api.context import ApiContext
from orrange.api.errors import ApiError
from orrange.markets import MarketSpec

__all__ = ["API_DEPENDENCIES", "bearer_principal", "context", "market"]


def context(request: Request[Any, Any, Any]) -> ApiContext:
    """The :class:`ApiContext` of the application serving ``request``."""
    ctx: ApiContext = request.app.state["api"]
    return ctx


def bearer_principal(ctx: ApiContext, header: str | None) -> Principal:
    """The user of an ``Authorization: Bearer <JWT>`` header value.

    Raises:
        ApiError: 401 (``missing_token``, ``invalid_token``, ``expired_token`` ...) with a
            ``WWW-Authenticate`` challenge.
    """
    challenge = {"WWW-Authenticate": 'Bearer realm="orrange"'}
    if not header:
        raise ApiError(
            401,
            "authorization",
            "missing_token",
            "Authorization: Bearer <token> required",
            challenge,
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "authorization",
            "invalid_token",
            "expected Authorization: Bearer <token>",
            challenge,
        )
    try:
        return decode_token(ctx.jwt_secret, token.strip())
    except AuthError as exc:
        raise ApiError(401, "authorization", exc.reason, exc.message, challenge) from exc


def _principal(request: Request[Any, Any, Any]) -> Principal:
    return bearer_principal(context(request), request.headers.get("authorization"))


#: The dependencies of every ``/api/v1`` route: a handler taking ``principal`` requires a
#: bearer token.
API_DEPENDENCIES = {"principal": Provide(_principal, sync_to_thread=False)}


def market(ctx: ApiContext, symbol: str, status: int = 404) -> MarketSpec:
    """The market ``symbol``.

    Raises:
        ApiError: ``status`` (404 unless given) ``symbol``/``unknown_market``.
    """
    spec = ctx.markets.get(symbol)
    if spec is None:
        raise ApiError(status, "symbol", "unknown_market", f"no market {symbol!r}")
    return spec
