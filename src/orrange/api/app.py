"""The Litestar application: :func:`create_app` wires NATS, PostgreSQL and the event hub.

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
``GET    /api/v1/trades``, ``/trades/{id}``    my P2P trades; ``POST`` ``fund``, ``paid``,
                                               ``release``, ``dispute``, ``reclaim``,
                                               ``resolve`` and ``messages`` (chat): see
                                               :mod:`orrange.api._trades`
``GET    /health``, ``/live``, ``/ready``      probes (``/ready``: NATS and PostgreSQL)
``GET    /metrics``                            Prometheus
``GET    /schema``                             OpenAPI document
``WS     /ws``                                 see :mod:`orrange.api.ws`
============================================= ===============================================

Order routes need ``Authorization: Bearer <JWT>`` (see :mod:`orrange.api.auth`); market data
and probes are public.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

import asyncpg
import msgspec
import nats
from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.types import Message, Scope
from nats.aio.client import Client as NATS

from orrange.api import _routes, _trades, ws
from orrange.api._alerts import ALERT_HANDLERS
from orrange.api._marketdata import MARKETDATA_HANDLERS
from orrange.api._metrics import ApiMetrics
from orrange.api.auth import resolve_jwt_secret
from orrange.api.errors import exception_handlers
from orrange.api.hub import EventHub
from orrange.api.schemas import TickerOut
from orrange.logging import get_logger
from orrange.markets import MarketSpec, load_markets
from orrange.runtime import Publisher, ensure_stream
from orrange.settings import Settings, config_file
from orrange.store import migrate
from orrange.store.queries import recent_trades, ticker_24h
from orrange.wire.engine import ENGINE_STREAMS

__all__ = ["ApiContext", "ApiOptions", "create_app"]

_log = get_logger("orrange.api")


class ApiOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Tunables of the API process.

    Attributes:
        order_timeout_s: how long a command waits for the engine's answer (then 504).
        book_query_timeout_s: how long a ``book.query.<SYM>`` request waits (then 503).
        ws_queue_size: messages queued per WebSocket client before it is closed as too slow.
        ws_conflation_ms: book deltas to one client at most this often (ms), conflated.
        ws_send_timeout_s: a WebSocket send blocked this long closes the client as too slow.
        ticker_interval_s: at most one ``ticker.<SYM>`` push per symbol per interval.
        db_pool_size: maximum PostgreSQL connections.
        migrate: apply the store's schema migrations at start.
        connect_timeout_s: how long startup retries reaching NATS and PostgreSQL.
    """

    order_timeout_s: float = 5.0
    book_query_timeout_s: float = 2.0
    ws_queue_size: int = 1024
    ws_conflation_ms: int = 100
    ws_send_timeout_s: float = 10.0
    ticker_interval_s: float = 1.0
    db_pool_size: int = 10
    migrate: bool = True
    connect_timeout_s: float = 60.0


class ApiContext:
    """What request handlers use: markets, NATS, publisher, hub, database pool, metrics.

    Available as ``request.app.state.api``; the connections exist between startup and
    shutdown of the application.
    """

    def __init__(
        self,
        settings: Settings,
        markets: Mapping[str, MarketSpec],
        options: ApiOptions,
        jwt_secret: str,
    ) -> None:
        self.settings = settings
        self.markets = dict(markets)
        self.options = options
        self.jwt_secret = jwt_secret
        self.metrics = ApiMetrics()
        self._nc: NATS | None = None
        self._publisher: Publisher | None = None
        self._hub: EventHub | None = None
        self._pool: asyncpg.Pool | None = None

    @property
    def nc(self) -> NATS:
        """The NATS connection."""
        assert self._nc is not None, "the API is not started"
        return self._nc

    @property
    def publisher(self) -> Publisher:
        """The JetStream publisher of commands."""
        assert self._publisher is not None, "the API is not started"
        return self._publisher

    @property
    def hub(self) -> EventHub:
        """The process's event hub."""
        assert self._hub is not None, "the API is not started"
        return self._hub

    @property
    def pool(self) -> asyncpg.Pool:
        """The PostgreSQL pool."""
        assert self._pool is not None, "the API is not started"
        return self._pool

    async def ticker(self, spec: MarketSpec) -> TickerOut:
        """The 24 h ticker of ``spec`` from PostgreSQL, as decimal strings."""
        t = await ticker_24h(self.pool, spec.symbol, _routes.now_ms())
        return _routes.ticker_out(spec, t)

    async def _hub_ticker(self, spec: MarketSpec) -> tuple[TickerOut, int]:
        # the last persisted fill first: the ticker computed after it covers at least that fill
        last = await recent_trades(self.pool, spec.symbol, limit=1)
        return await self.ticker(spec), (last[0].seq if last else 0)

    async def start(self) -> None:
        """Connect to NATS and PostgreSQL (retrying for ``connect_timeout_s``), provision the
        engine streams, apply the store's migrations, start the hub.

        Raises:
            OSError, nats.errors.NoServersError, asyncpg.PostgresError: a server stayed
                unreachable for ``connect_timeout_s``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.connect_timeout_s
        while True:
            try:
                self._nc = await nats.connect(
                    self.settings.effective_nats_url,
                    name="orrange-api",
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                )
                break
            except Exception as exc:
                if loop.time() > deadline:
                    raise
                _log.warning("waiting for NATS", error=repr(exc))
                await asyncio.sleep(0.5)
        js = self._nc.jetstream()
        for spec in ENGINE_STREAMS:
            await ensure_stream(js, spec)
        self._publisher = Publisher(self._nc, timeout_ms=int(self.options.order_timeout_s * 1000))
        self._pool = await asyncpg.create_pool(
            self.settings.effective_database_url,
            min_size=0,
            max_size=self.options.db_pool_size,
        )
        while True:
            try:
                async with self._pool.acquire() as conn:
                    if self.options.migrate:
                        await migrate(conn)
                break
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if loop.time() > deadline:
                    raise
                _log.warning("waiting for PostgreSQL", error=repr(exc))
                await asyncio.sleep(0.5)
        self._hub = EventHub(
            self._nc,
            self.markets,
            self.metrics,
            self._hub_ticker,
            query_timeout_s=self.options.book_query_timeout_s,
            ticker_interval_s=self.options.ticker_interval_s,
        )
        await self._hub.start()
        _log.info("api started", markets=sorted(self.markets))

    async def stop(self) -> None:
        """Stop the hub, close PostgreSQL and drain NATS."""
        if self._hub is not None:
            await self._hub.stop()
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 5)
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.drain()


def create_app(
    settings: Settings,
    *,
    markets: Mapping[str, MarketSpec] | None = None,
    options: ApiOptions | None = None,
    jwt_secret: str | None = None,
) -> Litestar:
    """The API application.

    Args:
        settings: process settings (NATS and PostgreSQL URLs, JWT secret).
        markets: the markets served; None loads ``config_file("markets.toml")``.
        options: tunables (:class:`ApiOptions`).
        jwt_secret: overrides :func:`~orrange.api.auth.resolve_jwt_secret`.

    Raises:
        orrange.api.auth.AuthError: no JWT secret is configured (outside ``ORRANGE_ENV=dev``).
    """
    if markets is None:
        markets = load_markets(config_file("markets.toml"))
    secret = jwt_secret or resolve_jwt_secret(settings)
    ctx = ApiContext(settings, markets, options or ApiOptions(), secret)

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        """Connections and the hub live from startup to shutdown."""
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
            *_routes.ORDER_HANDLERS,
            *_routes.MARKET_HANDLERS,
            *_trades.TRADE_HANDLERS,
            *MARKETDATA_HANDLERS,
        ],
    )
    return Litestar(
        route_handlers=[
            api_v1,
            Router(path="/api/v1", route_handlers=ALERT_HANDLERS),
            *_routes.PROBE_HANDLERS,
            ws.ws_handler,
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
