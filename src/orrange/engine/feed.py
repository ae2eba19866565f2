"""The feed actor: outside market data into the engine (ticks, index price, candles).

Subjects, payloads and streams (``MD`` / ``MD_LIVE``) are in :mod:`orrange.wire.marketdata`;
everything is published in batches.

* **Ticks.** Runs the enabled sources of ``config/sources.toml`` (the seeded random walk by
  default). Each tick is normalized onto our market's grid (ticks and lots, rounded half even
  for the index and candles; the published ticks keep the exact values) and buffered; every
  ``flush_interval_ms`` the buffer of each source goes out as JSON arrays on
  ``md.ticks.<SRC>``.
* **Index price.** Trades and best bid/offer mids of each market feed an
  :class:`~orrange.marketdata.index.IndexEngine` (one source per configured feed with its
  ``weight``; our own fills join as the fallback source ``orrange``). Every
  ``index_interval_ms`` (a *round*) the index of every market with a usable source is published
  as one ``md.indexes`` message (a JSON array of ``IndexPrice``); the latest index of each
  market is also kept on ``md.index.<SYM>``. A changed index price is handed to the matcher as
  ``SetReferencePrice(ts, price)`` on ``book.in.<SYM>`` (``ref:<SYM>:<ts>``), at most once every
  ``reference_interval_ms`` per market: the reference price of index-driven stop orders.
* **Candles.** External trades and our own fills (``OrderFilled`` read from ``EVENTS``
  through the durable consumer named after the actor; see
  :func:`orrange.wire.engine.decode_events`) go into one
  :class:`~orrange.marketdata.candles.CandleAggregator` per process (1m ... 1d). Every flush
  publishes on ``md.candles`` the candles closed since the last flush and the open ones that
  changed; each closed candle also goes to ``md.candle.<IV>.<SYM>``. Windows close
  ``candle_lateness_ms`` after their end. The latest versions are upserted into PostgreSQL
  (:mod:`orrange.store.candles`) every ``persist_interval_ms`` and at stop; a batch of fills is
  stored with its candles before it is acked; at start the open windows of the day are
  restored from the stored 1m candles.

**Shards.** One feed process serves the markets it is given (``--symbols``: a subset of
``config/markets.toml``); several feeds with disjoint markets need distinct names (``--name
feed-b``), which their durable consumer and message ids carry.

Errors: ticks of markets not in ``config/markets.toml`` or with a non-positive price are
dropped and counted; a database that goes away is waited for (nothing acked meanwhile); a
source that fails is restarted; a flush or round whose publishes fail is logged and its
messages are lost; beyond :data:`MAX_BUFFERED_TICKS` buffered ticks per source the oldest are
dropped and counted.

Pacing, defaults and the reasons behind them: ``docs/actors.md`` (Feed). The process is
``orrange actor feed`` (:mod:`actors.feed`).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from orrange.feeds import AnyTick, BestBidOffer, FeedConfig, Source, TradeTick, build_sources
from orrange.feeds.grid import GridConverter
from orrange.marketdata.candles import (
    INTERVAL_MS,
    INTERVALS,
    Candle,
    CandleAggregator,
    CandleClosed,
    CandleUpdated,
)
from orrange.marketdata.index import (
    IndexCalculator,
    IndexConfig,
    IndexEngine,
    IndexPrice,
    SourceConfig,
)
from orrange.markets import MarketSpec
from orrange.matching import OrderFilled, SetReferencePrice
from orrange.matching.enums import Side
from orrange.runtime import (
    Actor,
    ActorConfig,
    Inbound,
    Input,
    Outbox,
    Publisher,
)
from orrange.store import migrate
from orrange.store.candles import fill_marks, query_candles, set_fill_marks, upsert_candles
from orrange.store.connect import TRANSIENT_ERRORS, connect_when_ready
from orrange.wire.engine import (
    BOOK_IN,
    EVENTS,
    EVENTS_PREFIX,
    EventPayload,
    book_in_subject,
    reference_msg_id,
)
from orrange.wire.marketdata import (
    INDEX_LATEST_PER_ROUND,
    MAX_CANDLES_PER_MSG,
    MAX_INDEXES_PER_MSG,
    MAX_TICKS_PER_MSG,
    MD,
    MD_CANDLES_SUBJECT,
    MD_INDEXES_SUBJECT,
    MD_LIVE,
    candle_msg_id,
    candle_subject,
    candles_msg_id,
    index_msg_id,
    index_subject,
    indexes_msg_id,
    ticks_msg_id,
    ticks_subject,
)
from orrange.wire.spec import ConsumerSpec, StreamSpec

__all__ = [
    "COARSE_STORE_EVERY",
    "FINALS_SLICE",
    "FLUSHES_IN_FLIGHT",
    "MAX_BUFFERED_TICKS",
    "OWN_SOURCE",
    "ROUND_PUBLISH_SLICE",
    "ROUND_SLICE",
    "STORE_SLICE",
    "Feed",
    "index_configs",
]

_SHARD_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Index source name of our own fills (a fallback source of every indexed market).
OWN_SOURCE = "orrange"
#: Ticks of one source waiting for publication at most (older ones are dropped beyond).
MAX_BUFFERED_TICKS = 500_000
#: A market's coarser open candles are stored every this many stores of the finest ones (the
#: markets take turns: each store upserts the coarser candles of a share of them).
COARSE_STORE_EVERY = 5
#: Markets whose index a round computes between two yields to the event loop.
ROUND_SLICE = 100
#: Markets collected, and candles upserted, between two yields of a store.
STORE_SLICE = 200
#: Flushes whose publish acks may be outstanding at once: a flush does not wait for the acks
#: of the previous ones (they come in the background), only for those of the flush this many
#: before it.
FLUSHES_IN_FLIGHT = 8
#: Closed candles published on ``md.candle.<IV>.<SYM>`` between two waits for their acks (a
#: minute's end closes a candle per market and interval: thousands of messages, which go out in
#: a task of their own so that they never hold up a flush).
FINALS_SLICE = 100
#: Messages a round submits between two yields to the event loop.
ROUND_PUBLISH_SLICE = 50

_json = msgspec.json.Encoder()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def index_configs(sources: Sequence[FeedConfig]) -> dict[str, IndexConfig]:
    """Per market, the index configuration of the enabled ``sources`` covering it: each
    source with its configured weight, plus :data:`OWN_SOURCE` (our fills) as a fallback.
    Markets no enabled source covers get no index."""
    by_market: dict[str, list[SourceConfig]] = {}
    for cfg in sources:
        if not cfg.enabled:
            continue
        for market in cfg.markets():
            by_market.setdefault(market, []).append(SourceConfig(name=cfg.name, weight=cfg.weight))
    return {
        m: IndexConfig(sources=(*srcs, SourceConfig(name=OWN_SOURCE, fallback=True)))
        for m, srcs in by_market.items()
    }


class _Market:
    """Per-market normalization state of the hot path (converters shared by every market
    with the same step: a smaller cache that hits more often)."""

    __slots__ = ("calc", "lots", "ticks")

    def __init__(
        self,
        spec: MarketSpec,
        calc: IndexCalculator | None,
        converters: dict[Decimal, GridConverter],
    ) -> None:
        tick, lot = Decimal(spec.tick_size), Decimal(spec.lot_size)
        self.ticks = converters.setdefault(tick, GridConverter(tick)).convert
        self.lots = converters.setdefault(lot, GridConverter(lot)).convert
        self.calc = calc


def _chunks(items: list[Any], size: int, limit: int) -> tuple[list[bytes], int]:
    """JSON arrays of ``items`` in order, at most ``size`` per array and under ``limit`` bytes
    each (halved until they fit); returns them and the number of items left out (an item alone
    over the limit). No closure: a recursive one is a reference cycle that kept every batch
    encoded alive until the garbage collector's next pass."""
    out: list[bytes] = []
    dropped = 0
    encode = _json.encode
    for i in range(0, len(items), size):
        parts = [items[i : i + size]]  # a stack, next part last
        while parts:
            part = parts.pop()
            data = encode(part)
            if len(data) <= limit:
                out.append(data)
            elif len(part) > 1:
                half = len(part) // 2
                parts.append(part[half:])
                parts.append(part[:half])
            else:
                dropped += 1
    return out, dropped


class Feed(Actor):
    """Market data into the engine (see the module docstring).

    Args:
        config: actor configuration (name normally ``feed``).
        database_url: PostgreSQL URL (migrated at start).
        markets: our markets.
        sources: the source configurations (the enabled ones run).
        index_interval_ms: period of rounds: index prices, reference prices, window closes
            (ms).
        flush_interval_ms: period of flushes: tick batches, closed and finest open candles (ms).
        reference_interval_ms: a market's reference price is sent at most this often (ms).
        coarse_interval_ms: period of the coarser open candles on ``md.candles`` (ms).
        candle_lateness_ms: how long after its end a candle window is closed (ms).
        persist_interval_ms: how often the candles changed by external trades are stored (ms).
        intervals: candle intervals built.
        db_connect_timeout_ms: how long :meth:`start` waits for PostgreSQL (ms).
        base_dir: directory relative replay paths are resolved against.
        source_objects: run these sources instead of those built from ``sources`` (benchmarks,
            tests); ``sources`` still define the index of each market.

    Attributes:
        counts: running totals (``ticks``, ``dropped``, ``fills``, ``index``, ``references``,
            ``candles``, ``messages``: market-data messages published).
    """

    def __init__(
        self,
        config: ActorConfig,
        database_url: str,
        markets: Mapping[str, MarketSpec],
        sources: Sequence[FeedConfig] = (),
        *,
        index_interval_ms: int = 100,
        flush_interval_ms: int = 20,
        reference_interval_ms: int = 1_000,
        coarse_interval_ms: int = 1_000,
        candle_lateness_ms: int = 2_000,
        persist_interval_ms: int = 1_000,
        intervals: Sequence[str] = INTERVALS,
        db_connect_timeout_ms: int = 60_000,
        base_dir: str | Path = ".",
        source_objects: Sequence[Source] | None = None,
    ) -> None:
        super().__init__(config)
        if not _SHARD_NAME.fullmatch(config.name):
            raise ValueError(
                f"feed name {config.name!r}: 1-64 of A-Z a-z 0-9 _ - (it names the durable "
                "consumer and the message ids)"
            )
        if index_interval_ms <= 0 or flush_interval_ms <= 0 or candle_lateness_ms < 0:
            raise ValueError(
                "index_interval_ms and flush_interval_ms must be positive, candle_lateness_ms >= 0"
            )
        self.database_url = database_url
        self.markets = dict(markets)
        self.index_interval_ms = index_interval_ms
        self.flush_interval_ms = min(flush_interval_ms, index_interval_ms)
        self.reference_interval_ms = reference_interval_ms
        self.coarse_interval_ms = coarse_interval_ms
        self.candle_lateness_ms = candle_lateness_ms
        self.persist_interval_ms = persist_interval_ms
        self.db_connect_timeout_ms = db_connect_timeout_ms
        self._sources = (
            list(source_objects)
            if source_objects is not None
            else build_sources(list(sources), self.markets, base_dir)
        )
        self.index = IndexEngine(index_configs(sources))
        self._indexed = sorted(m for m in self.markets if self._has_index(m))
        converters: dict[Decimal, GridConverter] = {}
        self._mkts = {
            sym: _Market(
                spec, self.index.calculator(sym) if sym in self._indexed else None, converters
            )
            for sym, spec in self.markets.items()
        }
        self.candles = CandleAggregator(intervals, emit_updates=False)
        self._coarser = len(self.candles.intervals) > 1
        self._ticks: dict[str, list[AnyTick]] = {}
        self._closed: list[CandleClosed] = []  # to publish
        self._finals: deque[CandleClosed] = deque()  # published on md.candles, not yet alone
        self._finals_due = asyncio.Event()
        self._dirty_fast: set[str] = set()  # traded since the last flush
        self._dirty_coarse: set[str] = set()  # coarser candles not published since
        self._dirty_store: set[str] = set()  # traded since the last store (but the last flush)
        self._dirty_store_coarse: set[str] = set()  # coarser candles not stored since
        self._unsaved: dict[tuple[str, str, int], Candle] = {}
        self._marks: dict[str, int] = {}
        self._last_ref: dict[str, tuple[int, int]] = {}  # symbol -> (price, sent at)
        self._rounds_done = 0
        self._flushes_done = 0
        self._index_position = {sym: i for i, sym in enumerate(self._indexed)}
        turns = max(1, coarse_interval_ms // self.flush_interval_ms)
        ordered = sorted(self.markets)
        self._coarse_shares = [ordered[k::turns] for k in range(turns)]
        every = COARSE_STORE_EVERY
        self._store_shares = [set(ordered[k::every]) for k in range(every)]
        self._run_id = 0
        self._msg_no = itertools.count(1)
        self._conn: asyncpg.Connection | None = None
        self._db_lock = asyncio.Lock()
        self._flush_publishers: list[Publisher] = []
        # per flush publisher, the task collecting the acks of its last flush
        self._flush_acks: list[asyncio.Task[None] | None] = [None] * FLUSHES_IN_FLIGHT
        self.counts: dict[str, int] = {
            "ticks": 0,
            "dropped": 0,
            "fills": 0,
            "index": 0,
            "references": 0,
            "candles": 0,
            "messages": 0,
        }

    def _has_index(self, market: str) -> bool:
        try:
            self.index.calculator(market)
        except KeyError:
            return False
        return True

    # ------------------------------------------------------------------ actor hooks

    def streams(self) -> Sequence[StreamSpec]:
        return (MD, MD_LIVE, EVENTS, BOOK_IN)

    def inputs(self) -> Sequence[Input[Any]]:
        spec = ConsumerSpec(
            stream=EVENTS.name,
            durable=self.name,
            filter_subjects=(f"{EVENTS_PREFIX}.>",),
            ack_wait_ms=self.config.ack_wait_ms,
            description="feed: own fills into candles and the index",
        )
        return (Input(spec, EventPayload, self._on_events),)

    async def on_start(self) -> None:
        self._run_id = _now_ms()
        self._conn = await self._connect_db(self.db_connect_timeout_ms / 1000)
        await migrate(self._conn)
        self._marks = await fill_marks(self._conn)
        await self._restore(_now_ms())
        for src in self._sources:
            self.spawn(self._run_source(src), name=f"{self.name}:{src.name}")
        self._round_publisher = self._new_publisher()
        self._flush_publishers = [self._new_publisher() for _ in range(FLUSHES_IN_FLIGHT)]
        self.spawn(
            self._every(self.flush_interval_ms, self._flush, "flush"), name=f"{self.name}:flushes"
        )
        self.spawn(
            self._every(self.index_interval_ms, self._round, "round"), name=f"{self.name}:rounds"
        )
        self.spawn(self._stores(), name=f"{self.name}:stores")
        self.spawn(self._publish_finals(), name=f"{self.name}:finals")
        self.log.info(
            "feed started",
            sources=[s.name for s in self._sources],
            indexed=len(self._indexed),
            intervals=list(self.candles.intervals),
        )

    def _new_publisher(self) -> Publisher:
        return Publisher(
            self.nc,
            timeout_ms=self.config.publish_timeout_ms,
            max_pending=self.config.max_publish_pending,
        )

    async def on_stop(self) -> None:
        acks = [t for t in self._flush_acks if t is not None]
        if acks:  # the acks of the last flushes (each bounded by publish_timeout_ms)
            await asyncio.gather(*acks, return_exceptions=True)
        for src in self._sources:
            try:
                await src.close()
            except Exception as exc:
                self.log.warning("source close failed", source=src.name, error=repr(exc))
        pending = self._collect(*self._take_store_dirty())
        if pending:  # the last second of external trades (at most 10 s of waiting for it)
            try:
                await asyncio.wait_for(self._save(pending, {}), 10)
            except TimeoutError:
                self.log.error("candles not stored at stop", candles=len(pending))
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            await conn.close()

    # ------------------------------------------------------------------ database

    async def _connect_db(self, timeout_s: float) -> asyncpg.Connection:
        return await connect_when_ready(self.database_url, timeout_s, self.log)

    async def _save(self, candles: Sequence[Candle], marks: Mapping[str, int]) -> None:
        """Upsert ``candles`` and raise ``marks`` in one transaction, retrying on a lost
        database until it succeeds."""
        delay = 0.2
        async with self._db_lock:
            while True:
                conn = self._conn
                try:
                    if conn is None or conn.is_closed():
                        conn = self._conn = await self._connect_db(0)
                    async with conn.transaction():
                        # in slices: the event loop runs between them (flushes go on)
                        for i in range(0, len(candles), STORE_SLICE):
                            await upsert_candles(conn, candles[i : i + STORE_SLICE])
                        await set_fill_marks(conn, marks)
                    for c in candles:
                        key = (c.symbol, c.interval, c.open_time)
                        if self._unsaved.get(key) is c:
                            del self._unsaved[key]
                    return
                except TRANSIENT_ERRORS as exc:
                    self.log.error("database unavailable; candles will be retried", error=repr(exc))
                    if conn is not None:
                        conn.terminate()
                    self._conn = None
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

    async def _restore(self, now: int) -> None:
        """Rebuild the open windows of the day from the stored finest candles."""
        assert self._conn is not None
        fine = self.candles.intervals[0]
        coarsest = INTERVAL_MS[self.candles.intervals[-1]]
        since = now - now % coarsest
        for sym in self.markets:
            rows = await query_candles(self._conn, sym, fine, since, now, 100_000)
            if not rows:
                continue
            fixed: list[Candle] = []
            for i, c in enumerate(rows):
                ended = c.close_time < now - self.candle_lateness_ms
                if isinstance(c, CandleUpdated) and (i < len(rows) - 1 or ended):
                    c = CandleClosed(*msgspec.structs.astuple(c))
                    self._closed_candle(c)
                fixed.append(c)
            self.candles.restore(sym, fixed)

    def _take_store_dirty(self, turn: int | None = None) -> tuple[set[str], set[str]]:
        """The markets whose finest open candle changed since the last store, and those whose
        coarser ones changed since they were last stored: all of them (``turn`` None), or those
        of store ``turn``'s share of the markets (each market's turn comes every
        :data:`COARSE_STORE_EVERY` stores, so that no store upserts every coarser candle at
        once)."""
        fine = self._dirty_store | self._dirty_fast
        self._dirty_store = set()
        dirty = self._dirty_store_coarse
        dirty |= fine
        if turn is None:
            self._dirty_store_coarse = set()
            return fine, dirty
        coarse = dirty & self._store_shares[turn % COARSE_STORE_EVERY]
        dirty -= coarse
        return fine, coarse

    def _collect(self, fine: set[str], coarse: set[str] | None = None) -> list[Candle]:
        """Add the open candles of ``fine`` (finest interval) and ``coarse`` (coarser
        intervals; default ``fine``) to the unsaved candles (a later version of a window
        replaces the earlier, a closed one is never replaced); returns every unsaved candle."""
        unsaved = self._unsaved
        coarse = fine if coarse is None else coarse
        for sym in sorted(fine | coarse):
            for c in self.candles.open_candles(sym, finest=sym in fine, coarser=sym in coarse):
                key = (sym, c.interval, c.open_time)
                if not isinstance(unsaved.get(key), CandleClosed):
                    unsaved[key] = c
        return list(unsaved.values())

    async def _collect_sliced(self, fine: set[str], coarse: set[str]) -> list[Candle]:
        """:meth:`_collect` in slices of :data:`STORE_SLICE` markets with a yield between
        them (the periodic store of 1,000 markets must not hold the event loop)."""
        symbols = sorted(fine | coarse)
        for start in range(0, len(symbols), STORE_SLICE):
            if start:
                await asyncio.sleep(0)
            part = set(symbols[start : start + STORE_SLICE])
            self._collect(fine & part, coarse & part)
        return list(self._unsaved.values())

    async def _stores(self) -> None:
        """Every ``persist_interval_ms``: store the finest open candles changed since the last
        time, and the coarser ones of this store's share of the markets (each market's every
        :data:`COARSE_STORE_EVERY` stores; a restart rebuilds the coarser windows from the
        finest candles, so only the API's view of them lags)."""
        period = self.persist_interval_ms / 1000
        n = 0
        while not self.stopping:
            await asyncio.sleep(period)
            n += 1
            try:
                fine, coarse = self._take_store_dirty(n)
                pending = await self._collect_sliced(fine, coarse)
                if pending:  # never interrupted halfway: a stop waits for it (on_stop)
                    await asyncio.shield(self._save(pending, {}))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.error("storing candles failed", error=repr(exc))

    # ------------------------------------------------------------------ inputs

    async def _run_source(self, src: Source) -> None:
        while not self.stopping:
            try:
                await src.run(self._emit)
                return  # a finite source (file replay) ended
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.error("source failed; restarting", source=src.name, error=repr(exc))
                await asyncio.sleep(1.0)

    async def _emit(self, tick: AnyTick) -> None:
        """The sources' callback: :meth:`ingest`."""
        self.ingest(tick)

    def ingest(self, tick: AnyTick) -> None:
        """Take one tick: buffer it for ``md.ticks.<SRC>`` and feed it to the index and (a
        trade) the candles. Synchronous and cheap: publishing happens at the next flush."""
        sym = tick.symbol
        m = self._mkts.get(sym)
        counts = self.counts
        if m is None:
            counts["dropped"] += 1
            return
        buf = self._ticks.get(tick.source)
        if buf is None:
            buf = self._ticks[tick.source] = []
        elif len(buf) >= MAX_BUFFERED_TICKS:
            del buf[: len(buf) // 2]
            counts["dropped"] += MAX_BUFFERED_TICKS - len(buf)
        buf.append(tick)  # counted in "ticks" at the flush
        kind = type(tick)
        if kind is TradeTick:
            price = m.ticks(tick.price)  # type: ignore[union-attr]
            if price <= 0:
                counts["dropped"] += 1
                return
            lots = m.lots(tick.qty)  # type: ignore[union-attr]
            if m.calc is not None:
                m.calc.update(tick.source, tick.recv_ts_ms, price, lots if lots > 0 else 0)
            if lots > 0:
                closed = self.candles.add_trade(
                    sym,
                    tick.exchange_ts_ms,
                    price,
                    lots,
                    tick.side == "sell",  # type: ignore[union-attr]
                )
                if closed:
                    for c in closed:
                        self._closed_candle(c)  # type: ignore[arg-type]
                self._dirty_fast.add(sym)
        elif kind is BestBidOffer and m.calc is not None:
            bid, ask = tick.bid_price, tick.ask_price  # type: ignore[union-attr]
            if bid > 0 and ask >= bid:
                mid = m.ticks((bid + ask) / 2)
                if mid > 0:
                    m.calc.update(tick.source, tick.recv_ts_ms, mid)

    def _add_trade(self, symbol: str, ts: int, price: int, lots: int, taker_sold: bool) -> None:
        closed = self.candles.add_trade(symbol, ts, price, lots, taker_sold)
        if closed:
            for c in closed:
                self._closed_candle(c)  # type: ignore[arg-type]
        self._dirty_fast.add(symbol)

    def _closed_candle(self, c: CandleClosed) -> None:
        self._closed.append(c)
        self._unsaved[(c.symbol, c.interval, c.open_time)] = c

    async def _on_events(self, batch: Sequence[Inbound[Any]], out: Outbox) -> None:
        """Own fills into the candles and the index; stored before the batch is acked."""
        marks: dict[str, int] = {}
        for m in batch:
            data = m.data
            for ev in data if isinstance(data, list) else (data,):
                if not isinstance(ev, OrderFilled) or ev.symbol not in self.markets:
                    continue
                if ev.seq <= self._marks.get(ev.symbol, 0):
                    continue  # already counted (redelivery, or a batch published twice)
                self._add_trade(ev.symbol, ev.ts, ev.price, ev.quantity, ev.aggressor is Side.SELL)
                calc = self._mkts[ev.symbol].calc
                if calc is not None:
                    calc.update(OWN_SOURCE, _now_ms(), ev.price, ev.quantity)
                marks[ev.symbol] = self._marks[ev.symbol] = ev.seq
                self.counts["fills"] += 1
        if marks:
            await self._save(self._collect(set(marks)), marks)

    # ------------------------------------------------------------------ flushes and rounds

    async def _every(self, period_ms: int, work: Any, what: str) -> None:
        """Call ``work(now)`` every ``period_ms`` on a fixed schedule (no catch-up burst when
        late); a failure is logged and the next call comes as planned."""
        loop = asyncio.get_running_loop()
        period = period_ms / 1000
        due = loop.time()
        while not self.stopping:
            due += period
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                due = loop.time()
                await asyncio.sleep(0)
            try:
                await work(_now_ms())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.error(f"feed {what} failed", error=repr(exc))

    async def _flush(self, now: int) -> None:
        """One flush at ``now`` (ms UTC); see the module docstring. The candle updates go
        first (the latency that counts), then the ticks, then, after a yield that lets the
        connection send them, this flush's share of the coarser candles (each market's turn
        comes once every ``coarse_interval_ms``). Flushes run in a task of their own, beside the
        rounds and the stores, and take no lock: a database write of fills or a round never
        holds up the candle updates. The acks are collected in the background (each flush's
        own publisher, :data:`FLUSHES_IN_FLIGHT` of them in turn): a flush waits only for
        those of the flush that used its publisher last."""
        limit = max(1024, self.nc.max_payload - 4096)
        turn = self._flushes_done % FLUSHES_IN_FLIGHT
        previous = self._flush_acks[turn]
        if previous is not None and not previous.done():
            await previous  # backpressure: FLUSHES_IN_FLIGHT flushes wait for acks already
        pub = self._flush_publishers[turn]
        # candles: closed since the last flush, then the finest open ones
        closed, self._closed = self._closed, []
        fast, self._dirty_fast = self._dirty_fast, set()
        self._dirty_store |= fast
        if self._coarser:
            self._dirty_coarse |= fast
        candles: list[Candle] = list(closed)
        candles += self.candles.open_finest(sorted(fast))
        sent = await self._submit_candles(pub, candles, limit)
        await asyncio.sleep(0)  # the connection sends the candles before the ticks are encoded
        # ticks, per source
        buffers, self._ticks = self._ticks, {}
        for source, ticks in buffers.items():
            self.counts["ticks"] += len(ticks)
            sent += await self._submit_batches(
                pub,
                ticks_subject(source),
                ticks,
                functools.partial(ticks_msg_id, source, self.name, self._run_id),
                limit,
            )
        await asyncio.sleep(0)
        # the coarser open candles of this flush's share of the markets that traded
        self._flushes_done += 1
        if self._coarser and self._dirty_coarse:
            share = self._coarse_shares[self._flushes_done % len(self._coarse_shares)]
            dirty = self._dirty_coarse
            coarse: list[Candle] = []
            open_candles = self.candles.open_candles
            for sym in share:
                if sym in dirty:
                    dirty.discard(sym)
                    coarse += open_candles(sym, finest=False)
            sent += await self._submit_candles(pub, coarse, limit)
        if closed:
            self._finals.extend(closed)
            self._finals_due.set()
        self.counts["messages"] += sent
        if pub.pending:
            self._flush_acks[turn] = asyncio.create_task(self._acked(pub))

    async def _publish_finals(self) -> None:
        """Each closed candle on ``md.candle.<IV>.<SYM>``, after the flush that put it on
        ``md.candles``: :data:`FINALS_SLICE` at a time, waiting for their acks between slices
        (a task of its own: the thousands closed at a minute's end never delay a flush)."""
        pub = self._new_publisher()
        finals = self._finals
        while not self.stopping:
            await self._finals_due.wait()
            self._finals_due.clear()
            while finals:
                for _ in range(min(FINALS_SLICE, len(finals))):
                    c = finals.popleft()
                    await pub.submit(
                        candle_subject(c.interval, c.symbol),
                        c,
                        msg_id=candle_msg_id(c.interval, c.symbol, c.open_time),
                    )
                    self.counts["messages"] += 1
                await self._acked(pub, "publishing closed candles failed")

    async def _acked(self, pub: Publisher, failure: str = "feed flush failed") -> None:
        """Collect the acks of what was submitted to ``pub``; a failure is logged (market
        data is a live view: lost messages are not retried). For a flush, this runs in the
        background: the next flush goes on meanwhile."""
        try:
            await pub.flush()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.error(failure, error=repr(exc))

    async def _submit_candles(self, pub: Publisher, candles: list[Candle], limit: int) -> int:
        self.counts["candles"] += len(candles)
        msg_id = functools.partial(candles_msg_id, self.name, self._run_id)
        return await self._submit_batches(pub, MD_CANDLES_SUBJECT, candles, msg_id, limit)

    async def _submit_batches(
        self,
        pub: Publisher,
        subject: str,
        items: list[Any],
        msg_id: Callable[[int], str],
        limit: int,
    ) -> int:
        """Submit ``items`` as JSON arrays on ``subject`` (``Nats-Msg-Id`` ``msg_id(n)``, ``n``
        counting this run's messages); returns the number of messages."""
        if not items:
            return 0
        size = MAX_CANDLES_PER_MSG if subject == MD_CANDLES_SUBJECT else MAX_TICKS_PER_MSG
        datas, dropped = _chunks(items, size, limit)
        self.counts["dropped"] += dropped
        for data in datas:
            n = next(self._msg_no)
            await pub.submit(subject, data, msg_id=msg_id(n))
        return len(datas)

    async def _round(self, now: int) -> None:
        """One round at ``now`` (ms UTC), in a task of its own with its own publisher: index
        prices (``md.indexes``, this round's share of ``md.index.<SYM>``), the reference prices
        due, window closes. The indexes are computed in slices with a yield between them, so a
        flush never waits long behind a round."""
        pub = self._round_publisher
        sent = 0
        ips: list[IndexPrice] = []
        compute = self.index.compute_many
        indexed = self._indexed
        for start in range(0, len(indexed), ROUND_SLICE):
            if start:
                await asyncio.sleep(0)
            ips += compute(indexed[start : start + ROUND_SLICE], now)
        self.counts["index"] += len(ips)
        for part, start in enumerate(range(0, len(ips), MAX_INDEXES_PER_MSG)):
            await pub.submit(
                MD_INDEXES_SUBJECT,
                _json.encode(ips[start : start + MAX_INDEXES_PER_MSG]),
                msg_id=indexes_msg_id(self.name, now, part),
            )
            sent += 1
        rounds = self._rounds_done
        self._rounds_done += 1
        turns = -(-len(self._indexed) // INDEX_LATEST_PER_ROUND) or 1
        ref_turns = max(1, self.reference_interval_ms // self.index_interval_ms)
        position = self._index_position
        next_yield = sent + ROUND_PUBLISH_SLICE
        for ip in ips:
            if sent >= next_yield:  # a flush may be due: let it run between the slices
                next_yield = sent + ROUND_PUBLISH_SLICE
                await asyncio.sleep(0)
            sym = ip.symbol
            i = position[sym]
            if i % turns == rounds % turns:
                await pub.submit(index_subject(sym), ip, msg_id=index_msg_id(sym, ip.ts))
                sent += 1
            last = self._last_ref.get(sym)
            if last is None or (last[0] != ip.price and i % ref_turns == rounds % ref_turns):
                await pub.submit(
                    book_in_subject(sym),
                    SetReferencePrice(ts=now, price=ip.price),
                    msg_id=reference_msg_id(sym, now),
                )
                self._last_ref[sym] = (ip.price, now)
                self.counts["references"] += 1
                sent += 1
        for c in self.candles.advance(now - self.candle_lateness_ms):
            self._closed_candle(c)
        self.counts["messages"] += sent
        try:
            await pub.flush()
        except Exception:
            self._last_ref.clear()  # the next round sends every reference price again
            raise
