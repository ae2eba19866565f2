"""The API process's shared state: :class:`ApiContext` (connections, hub, channels) and its
:class:`ApiOptions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping

import asyncpg
import msgspec
import nats
from nats.aio.client import Client as NATS

from orrange.api._metrics import ApiMetrics
from orrange.api.channels import ChannelRegistry
from orrange.api.commands import CommandWaiters
from orrange.api.fanout import LedgerChannel, OrderChannel, TickerChannel, TradeChannel
from orrange.api.hub import EventHub
from orrange.api.mirrors import BookMirrors
from orrange.api.schemas import TickerOut, ticker_out
from orrange.ledger import AssetSpec
from orrange.logging import get_logger
from orrange.markets import MarketSpec
from orrange.runtime import Publisher, ensure_stream
from orrange.settings import Settings
from orrange.store import migrate
from orrange.store.queries import recent_trades, ticker_24h
from orrange.wire.engine import ENGINE_STREAMS

__all__ = ["ApiContext", "ApiOptions", "now_ms"]

_log = get_logger("orrange.api")


def now_ms() -> int:
    """Wall-clock ms since the Unix epoch (UTC)."""
    return time.time_ns() // 1_000_000


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
        withdrawal_expiry_s: how long a withdrawal authorization stays valid unless the
            request names its own ``expiry_s`` (s of chain time).
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
    withdrawal_expiry_s: int = 3_600


class ApiContext:
    """What request handlers use: markets, assets, NATS, publisher, hub, channels, database
    pool, metrics.

    Available as ``request.app.state.api``; the connections exist between startup and
    shutdown of the application. ``commands``, ``books`` and ``channels`` exist from the
    start: ``book``, ``trades``, ``ticker``, ``orders`` and ``balances`` (``ledger``, which
    also answers withdrawal requests) are registered; register other channel kinds before
    :meth:`start`. ``assets`` are the ledger's assets by code.
    """

    def __init__(
        self,
        settings: Settings,
        markets: Mapping[str, MarketSpec],
        options: ApiOptions,
        jwt_secret: str,
        assets: Mapping[str, AssetSpec] | None = None,
    ) -> None:
        self.settings = settings
        self.markets = dict(markets)
        self.assets = dict(assets or {})
        self.options = options
        self.jwt_secret = jwt_secret
        self.metrics = ApiMetrics()
        self.commands = CommandWaiters(self.markets)
        self.books = BookMirrors(self.markets, self.metrics, options.book_query_timeout_s)
        self.trades = TradeChannel(self.markets)
        self.tickers = TickerChannel(self.markets, self._hub_ticker, options.ticker_interval_s)
        self.orders = OrderChannel(self.markets)
        self.ledger = LedgerChannel(self.assets)
        self.channels = ChannelRegistry()
        for kind, channel in (
            ("book", self.books),
            ("trades", self.trades),
            ("ticker", self.tickers),
            ("orders", self.orders),
            ("balances", self.ledger),
        ):
            self.channels.register(kind, channel)
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
        t = await ticker_24h(self.pool, spec.symbol, now_ms())
        return ticker_out(spec, t)

    async def _hub_ticker(self, spec: MarketSpec) -> tuple[TickerOut, int]:
        # the last persisted fill first: the ticker computed after it covers at least that fill
        last = await recent_trades(self.pool, spec.symbol, limit=1)
        return await self.ticker(spec), (last[0].seq if last else 0)

    async def start(self) -> None:
        """Connect to NATS and PostgreSQL (retrying for ``connect_timeout_s``), provision the
        engine streams, apply the store's migrations, start the channels and the hub.

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
        await self.channels.start(self._nc)
        self._hub = EventHub(
            self._nc,
            self.metrics,
            commands=self.commands,
            books=self.books,
            trades=self.trades,
            tickers=self.tickers,
            orders=self.orders,
        )
        await self._hub.start()
        _log.info("api started", markets=sorted(self.markets))

    async def stop(self) -> None:
        """Stop the hub and the channels, close PostgreSQL and drain NATS."""
        if self._hub is not None:
            await self._hub.stop()
        await self.channels.stop()
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 5)
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.drain()
