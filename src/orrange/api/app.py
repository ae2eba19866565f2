"""The Litestar application: :func:`create_app` wires the context, the channels and the routes.

Routes (JSON bodies are msgspec structs of :mod:`orrange.api.schemas`):

============================================= ===============================================
``POST   /api/v1/orders``                      submit; answers the order once the engine
                                               accepted (201) or rejected it (4xx)
``GET    /api/v1/orders``                      my orders: ``status=open`` (default), ``all``
                                               or a status; ``symbol``, ``limit``, ``cursor``
``GET    /api/v1/orders/{symbol}/{id}``        one of my orders with its fills
``PATCH  /api/v1/orders/{symbol}/{id}``        amend quantity and/or price
``DELETE /api/v1/orders/{symbol}/{id}``        cancel
``DELETE /api/v1/orders/{symbol}``             cancel all my orders in a market (202)
``GET    /api/v1/orders/by-client-id/{cid}``   my order by client order id
``GET    /api/v1/markets``                     markets and their specs
``GET    /api/v1/markets/{symbol}``            one market's spec
``GET    /api/v1/markets/{symbol}/book``       L2 book (``depth``) with its sequence number
``GET    /api/v1/markets/{symbol}/trades``     recent trades (``limit``, ``before_seq``)
``GET    /api/v1/markets/{symbol}/ticker``     24 h ticker
``GET    /api/v1/markets/{symbol}/candles``    candles; also ``/indicators``, ``/snapshot``
``GET    /api/v1/markets/snapshots``           every market's snapshot (see ``_marketdata``)
``GET    /api/v1/balances``                    my balances per asset
``GET    /api/v1/ledger``                      my ledger entries (``asset``, ``kind``,
                                               ``before``, ``limit``)
``POST   /api/v1/withdrawals``                 withdraw: answers the signed authorization
``GET    /api/v1/withdrawals``, ``/{id}``      my withdrawals
``POST   /api/v1/deposits/address``            how to deposit (vault, account, transactions)
``GET    /api/v1/trades``, ``/trades/{id}``    my P2P trades; ``POST`` ``fund``, ``paid``,
                                               ``release``, ``dispute``, ``reclaim``,
                                               ``resolve`` and ``messages`` (chat): see
                                               :mod:`orrange.api._trades`
``GET    /health``, ``/live``, ``/ready``      probes (``/ready``: NATS and PostgreSQL)
``GET    /metrics``                            Prometheus
``GET    /schema``                             OpenAPI document
``WS     /ws``                                 see :mod:`orrange.api.ws`
============================================= ===============================================

Order and funds routes need ``Authorization: Bearer <JWT>`` (see :mod:`orrange.api.auth`);
market data and probes are public. Route modules by resource: :mod:`~orrange.api._orders`,
:mod:`~orrange.api._markets`, :mod:`~orrange.api._marketdata`, :mod:`~orrange.api._trades`,
:mod:`~orrange.api._funds`, :mod:`~orrange.api._alerts`, :mod:`~orrange.api._probes`; the
``principal`` dependency is declared once, on the ``/api/v1`` router (:mod:`orrange.api.deps`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.types import Message, Scope

from orrange.api._alerts import ALERT_HANDLERS, AlertFanout
from orrange.api._funds import FUNDS_HANDLERS
from orrange.api._marketdata import MARKETDATA_HANDLERS, CandleFanout
from orrange.api._markets import MARKET_HANDLERS
from orrange.api._orders import ORDER_HANDLERS
from orrange.api._probes import PROBE_HANDLERS
from orrange.api._trades import TRADE_HANDLERS
from orrange.api.auth import resolve_jwt_secret
from orrange.api.context import ApiContext, ApiOptions
from orrange.api.deps import API_DEPENDENCIES
from orrange.api.errors import exception_handlers
from orrange.api.ws import ws_handler
from orrange.ledger import AssetSpec, load_assets
from orrange.markets import MarketSpec, load_markets
from orrange.settings import Settings, config_file

__all__ = ["create_app"]


def create_app(
    settings: Settings,
    *,
    markets: Mapping[str, MarketSpec] | None = None,
    options: ApiOptions | None = None,
    jwt_secret: str | None = None,
    assets: Mapping[str, AssetSpec] | None = None,
) -> Litestar:
    """The API application.

    Args:
        settings: process settings (NATS and PostgreSQL URLs, JWT secret).
        markets: the markets served; None loads ``config_file("markets.toml")``.
        options: tunables (:class:`ApiOptions`).
        jwt_secret: overrides :func:`~orrange.api.auth.resolve_jwt_secret`.
        assets: the ledger's assets; None loads ``config_file("assets.toml")``.

    Raises:
        orrange.api.auth.AuthError: no JWT secret is configured (outside ``ORRANGE_ENV=dev``).
        ValueError: a malformed ``assets.toml``.
    """
    if markets is None:
        markets = load_markets(config_file("markets.toml"))
    if assets is None:
        assets = load_assets(config_file("assets.toml").read_text())
    secret = jwt_secret or resolve_jwt_secret(settings)
    ctx = ApiContext(settings, markets, options or ApiOptions(), secret, assets)
    ctx.channels.register("candles", CandleFanout(ctx.markets))
    ctx.channels.register("signals", AlertFanout(ctx.markets, ctx.orders.subscribers))

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        """Connections, channels and the hub live from startup to shutdown."""
        await ctx.start()
        try:
            yield
        finally:
            await ctx.stop()

    async def count_response(message: Message, scope: Scope) -> None:
        """Count every HTTP response by method and status."""
        if message["type"] == "http.response.start":
            method: str = scope.get("method", "")  # type: ignore[assignment]
            ctx.metrics.http_response(method, message["status"])

    api_v1 = Router(
        path="/api/v1",
        route_handlers=[
            *ORDER_HANDLERS,
            *MARKET_HANDLERS,
            *TRADE_HANDLERS,
            *MARKETDATA_HANDLERS,
            *ALERT_HANDLERS,
            *FUNDS_HANDLERS,
        ],
        dependencies=API_DEPENDENCIES,
    )
    return Litestar(
        route_handlers=[
            api_v1,
            *PROBE_HANDLERS,
            ws_handler,
        ],
        state=State({"api": ctx}),
        lifespan=[lifespan],
        before_send=[count_response],
        exception_handlers=exception_handlers,
        openapi_config=OpenAPIConfig(
            title="Orrange API",
            version="1",
            path="/schema",
            description="Real-time P2P trading engine: orders, markets, books, trades.",
        ),
        debug=False,
        logging_config=None,
    )
