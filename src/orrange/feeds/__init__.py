"""Exchange market-data sources, normalized to exact typed ticks.

Modules: :mod:`~orrange.marketdata.ticks` (the tick types), :mod:`~orrange.feeds.base` (source
interface, reconnect loop), :mod:`~orrange.feeds.binance`, :mod:`~orrange.feeds.coinbase`,
:mod:`~orrange.feeds.kraken` (live clients on ``websockets`` and ``httpx``; the protocol
references are cited in each module, the evaluation of cryptofeed and ccxt in
``docs/feeds.md``), :mod:`~orrange.feeds.replay` (file replay and random walk),
:mod:`~orrange.feeds.book` (local L2 book) and :mod:`~orrange.feeds.config`
(``config/sources.toml``). Nothing here touches NATS: the feed actor runs a source and
publishes its ticks.

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
