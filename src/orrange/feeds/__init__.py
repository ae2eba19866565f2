"""Exchange market-data sources, normalized to exact typed ticks.

Modules: :mod:`~orrange.marketdata.ticks` (the tick types), :mod:`~orrange.feeds.base` (source
interface, reconnect loop), :mod:`~orrange.feeds.binance`, :mod:`~orrange.feeds.coinbase`,
:mod:`~orrange.feeds.kraken` (live clients), :mod:`~orrange.feeds.replay` (file replay and
random walk), :mod:`~orrange.feeds.book` (local L2 book) and :mod:`~orrange.feeds.config`
(``config/sources.toml``). Nothing here touches NATS: the feed actor runs a source and
publishes its ticks.

Library evaluation (November 2026; why the live clients are our own code on ``websockets``)
-------------------------------------------------------------------------------------------

**cryptofeed** (bmoscon/cryptofeed; PyPI's newest release is 2.4.1, there is no 3.x on PyPI).
For: Decimal prices and quantities (exact), Binance U/u snapshot sync, Kraken v1 and Coinbase
Advanced Trade feeds, endpoints are class attributes (``websocket_endpoints``,
``rest_endpoints``) that a subclass can point at a local server. Against:

* Coinbase implements only ``level2`` and ``market_trades`` (no ``ticker``, no
  ``heartbeats``) and never checks ``sequence_num``, so a lost level2 frame silently corrupts
  the book; it reports the Advanced Trade trade ``side`` (the maker's, see
  :mod:`~orrange.feeds.coinbase`) as the taker's; listing Coinbase symbols raises
  ``ValueError`` without API keys.
* Constructing a feed fetches the exchange's symbol list synchronously with ``requests``
  (``exchangeInfo``, ``AssetPairs``, ``products``) from the hard-coded public REST hosts,
  which blocks the event loop and fails offline.
* Reconnect backoff is ``delay *= 2`` from 1 s without jitter or cap
  (``connection_handler.py``); a gap on Binance resets the book but keeps the connection.
* ``FeedHandler`` wants to own the loop and signal handlers; callbacks receive Cython objects
  that we would convert again; heavy native dependencies (``order_book``, ``yapic.json``) and
  ``requests``/``aiofile``/``pyyaml`` for three exchanges.

**ccxt / ccxt.pro** (``ccxt`` 4.5.x, WebSocket support included). For: one API for many
exchanges, ``exchange.urls['api']['ws']`` and the REST URLs can be overridden (so a local
server works), Binance ``watch_order_book`` does the U/u snapshot procedure. Against:

* numbers are **floats** (``Exchange.number = float``) and the WebSocket order book sides
  are bisected float lists; ``number = str`` breaks their ordering, so exactness is lost at
  the first parse;
* Coinbase ``sequence_num`` is not checked; Kraken checksums are optional; reconnect policy is
  internal; ``watch_*`` calls return accumulated caches that must be polled and de-duplicated
  per call, which fits an actor emitting one message per exchange event poorly.

**Decision.** Neither library meets exactness plus gap detection on all three exchanges, so
the three clients (200-400 lines each) are written on ``websockets`` (asyncio client, already a
project dependency) and ``httpx`` (REST snapshot, via Litestar): exact Decimals from the raw
strings, every URL configurable, exponential backoff with jitter, ping and idle timeouts,
resubscribe on reconnect, gap detection and resync as documented in each module. The protocol
references are cited in the module docstrings; the tests replay real captured traffic
(recorded by cryptofeed) through a local server.

Public API
----------
``load_sources(path)`` -> ``list[FeedConfig]``; ``build_sources(cfgs, markets)`` -> the enabled
:class:`Source` objects. A source either pushes into an async callback, ``await
source.run(emit)`` (runs until cancelled; a file replay returns at its end), or is iterated,
``async for tick in source.stream(): ...`` (``close()`` is called on exit). Ticks are
:data:`AnyTick` (``TradeTick | BestBidOffer | BookSnapshotTick | BookUpdate | CandleTick``),
each with ``source``, ``symbol`` (our market), ``exchange_ts_ms`` and ``recv_ts_ms``;
``encode_tick``/``decode_tick`` give their JSON. ``source.stats`` (:class:`FeedStats`) holds
the counters (messages, malformed, reconnects, gaps, resyncs ...). A minimal consumer::

    async def emit(tick: AnyTick) -> None:
        print(encode_tick(tick))

    markets = load_markets("config/markets.toml")
    for src in build_sources(load_sources("config/sources.toml"), markets):
        tasks.append(asyncio.create_task(src.run(emit)))

The feed actor (:mod:`orrange.engine.feed`) keeps ``emit`` synchronous work only (it buffers
the tick and updates the index and candles) and publishes batches (``md.ticks.<SRC>``, see
:mod:`orrange.wire.marketdata`). :class:`~orrange.feeds.grid.GridConverter` puts exchange
decimals onto our markets' integer grid.
"""

from orrange.feeds.base import Backoff, Emit, FeedStats, Liveness, Source, WsSource
from orrange.feeds.binance import BinanceSource
from orrange.feeds.book import BookReplica
from orrange.feeds.coinbase import CoinbaseSource
from orrange.feeds.config import (
    FeedConfig,
    build_source,
    build_sources,
    load_sources,
    parse_sources,
    shard_sources,
)
from orrange.feeds.kraken import KrakenSource
from orrange.feeds.replay import FileReplaySource, RandomWalkSource
from orrange.marketdata.ticks import (
    AnyTick,
    BestBidOffer,
    BookSnapshotTick,
    BookUpdate,
    CandleTick,
    Level,
    Tick,
    TickSide,
    TradeTick,
    decode_tick,
    encode_tick,
)

__all__ = [
    "AnyTick",
    "Backoff",
    "BestBidOffer",
    "BinanceSource",
    "BookReplica",
    "BookSnapshotTick",
    "BookUpdate",
    "CandleTick",
    "CoinbaseSource",
    "Emit",
    "FeedConfig",
    "FeedStats",
    "FileReplaySource",
    "KrakenSource",
    "Level",
    "Liveness",
    "RandomWalkSource",
    "Source",
    "Tick",
    "TickSide",
    "TradeTick",
    "WsSource",
    "build_source",
    "build_sources",
    "decode_tick",
    "encode_tick",
    "load_sources",
    "parse_sources",
    "shard_sources",
]
