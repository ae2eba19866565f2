"""The feed actor: outside market data into the engine (ticks, index price, candles).

What it does (subjects and stream ``MD`` in :mod:`orrange.engine.md_streams`):

* **Ticks.** Runs the enabled sources of ``config/sources.toml`` (the seeded random walk by
  default) and publishes every normalized tick on ``md.tick.<SRC>.<SYM>`` (``Nats-Msg-Id``
  ``tick:<SRC>:<SYM>:<kind>:<exchange ts>:<trade id or counter>``). Ticks of markets not in
  ``config/markets.toml`` are counted and dropped.
* **Index price.** Trades (price and quantity) and best bid/offer mids of each market feed an
  :class:`~orrange.marketdata.index.IndexEngine` (one source per configured feed, its ``weight``
  from the configuration; our own fills join as the fallback source ``orrange``). Every
  ``index_interval_ms`` (100 ms) the index of each market with a usable source is published on
  ``md.index.<SYM>`` (``index:<SYM>:<ts>``) and, when its price changed, handed to the matcher
  as ``SetReferencePrice(ts, price)`` on ``book.in.<SYM>`` (``ref:<SYM>:<ts>``): the reference
  price of index-driven stop orders. Exchange prices off our market's grid are rounded half
  even to the nearest tick (and lot) for the index and candles; the ticks keep the exact
  values.
* **Candles.** External trades and our own fills (``OrderFilled`` read from ``EVENTS``
  through the durable consumer ``feed``) go into one
  :class:`~orrange.marketdata.candles.CandleAggregator` per process (1m ... 1d). Every
  ``index_interval_ms`` the candles closed since the last round and the open candles of the
  markets that traded are published on ``md.candle.<IV>.<SYM>``; their latest versions are
  upserted into PostgreSQL (:mod:`orrange.store.candles`) every ``persist_interval_ms`` (1 s)
  and at stop; windows close ``candle_lateness_ms`` (2 s) after their end. A batch of fills is
  stored at once, with every pending candle and the per-market seq of its last fill, before it
  is acked, so a redelivered fill is never counted twice (a crash loses at most the last
  second of external trades from the stored candles, never a fill); at start the open windows
  of the day are restored from the stored 1m candles.

Failures: a database that goes away is waited for (writes retried with backoff, nothing acked
meanwhile); a source that fails is restarted after 1 s (the live clients reconnect by
themselves); a tick of an unknown market or with a non-positive price is dropped and counted.

Run it with :func:`main` (``orrange actor feed``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from orrange.engine.md_streams import MD, candle_subject, index_subject, tick_subject
from orrange.engine.streams import BOOK_IN, EVENTS, EVENTS_PREFIX, book_in_subject
from orrange.feeds import (
    AnyTick,
    BestBidOffer,
    FeedConfig,
    Source,
    Trade,
    build_sources,
    encode_tick,
)
from orrange.marketdata.candles import (
    INTERVAL_MS,
    INTERVALS,
    Candle,
    CandleAggregator,
    CandleClosed,
    CandleUpdated,
)
from orrange.marketdata.index import IndexConfig, IndexEngine, SourceConfig
from orrange.markets import MarketSpec
from orrange.matching import Event, OrderFilled, SetReferencePrice
from orrange.matching.enums import Side
from orrange.runtime import Actor, ActorConfig, ConsumerSpec, Inbound, Input, Outbox, StreamSpec
from orrange.store import migrate
from orrange.store.candles import fill_marks, query_candles, set_fill_marks, upsert_candles
from orrange.store.connect import TRANSIENT_ERRORS, connect_when_ready

__all__ = ["FEED_DURABLE", "OWN_SOURCE", "Feed", "index_configs", "main"]

#: Durable consumer of the feed on ``EVENTS``.
FEED_DURABLE = "feed"
#: Index source name of our own fills (a fallback source of every indexed market).
OWN_SOURCE = "orrange"


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


def _to_grid(value: Decimal, step: Decimal) -> int:
    """``value / step`` rounded half even to an integer (exchange values off our grid)."""
    return int((value / step).to_integral_value(rounding=ROUND_HALF_EVEN))


class Feed(Actor):
    """Market data into the engine (see the module docstring).

    Args:
        config: actor configuration (name normally ``feed``).
        database_url: PostgreSQL URL (migrated at start).
        markets: our markets.
        sources: the source configurations (the enabled ones run).
        index_interval_ms: period of index, reference-price and candle rounds (ms).
        candle_lateness_ms: how long after its end a candle window is closed (ms).
        persist_interval_ms: how often the candles changed by external trades are stored (ms).
        intervals: candle intervals built.
        db_connect_timeout_ms: how long :meth:`start` waits for PostgreSQL (ms).
        base_dir: directory relative replay paths are resolved against.

    Attributes:
        counts: running totals (``ticks``, ``dropped``, ``fills``, ``index``, ``references``,
            ``candles``).
    """

    def __init__(
        self,
        config: ActorConfig,
        database_url: str,
        markets: Mapping[str, MarketSpec],
        sources: Sequence[FeedConfig] = (),
        *,
        index_interval_ms: int = 100,
        candle_lateness_ms: int = 2_000,
        persist_interval_ms: int = 1_000,
        intervals: Sequence[str] = INTERVALS,
        db_connect_timeout_ms: int = 60_000,
        base_dir: str | Path = ".",
    ) -> None:
        super().__init__(config)
        if index_interval_ms <= 0 or candle_lateness_ms < 0:
            raise ValueError("index_interval_ms must be positive, candle_lateness_ms >= 0")
        self.database_url = database_url
        self.markets = dict(markets)
        self.index_interval_ms = index_interval_ms
        self.candle_lateness_ms = candle_lateness_ms
        self.persist_interval_ms = persist_interval_ms
        self._unsaved: dict[tuple[str, str, int], Candle] = {}
        self._saved_at = 0.0
        self.db_connect_timeout_ms = db_connect_timeout_ms
        self._sources = build_sources(list(sources), self.markets, base_dir)
        self.index = IndexEngine(index_configs(sources))
        self._indexed = {m for m in self.markets if self._has_index(m)}
        self.candles = CandleAggregator(intervals, emit_updates=False)
        self._fine_ms = INTERVAL_MS[self.candles.intervals[0]]
        self._closed: list[Candle] = []
        self._dirty: set[str] = set()
        self._marks: dict[str, int] = {}
        self._last_ref: dict[str, int] = {}
        self._tick_no = 0
        self._conn: asyncpg.Connection | None = None
        self._db_lock = asyncio.Lock()
        self.counts: dict[str, int] = {
            "ticks": 0,
            "dropped": 0,
            "fills": 0,
            "index": 0,
            "references": 0,
            "candles": 0,
        }

    def _has_index(self, market: str) -> bool:
        try:
            self.index.calculator(market)
        except KeyError:
            return False
        return True

    # ------------------------------------------------------------------ actor hooks

    def streams(self) -> Sequence[StreamSpec]:
        return (MD, EVENTS, BOOK_IN)

    def inputs(self) -> Sequence[Input[Any]]:
        spec = ConsumerSpec(
            stream=EVENTS.name,
            durable=FEED_DURABLE,
            filter_subjects=(f"{EVENTS_PREFIX}.>",),
            ack_wait_ms=self.config.ack_wait_ms,
            description="feed: own fills into candles and the index",
        )
        return (Input(spec, Event, self._on_events),)

    async def on_start(self) -> None:
        self._conn = await self._connect_db(self.db_connect_timeout_ms / 1000)
        await migrate(self._conn)
        self._marks = await fill_marks(self._conn)
        await self._restore(_now_ms())
        for src in self._sources:
            self.spawn(self._run_source(src), name=f"{self.name}:{src.name}")
        self.spawn(self._rounds(), name=f"{self.name}:rounds")
        self.log.info(
            "feed started",
            sources=[s.name for s in self._sources],
            indexed=sorted(self._indexed),
            intervals=list(self.candles.intervals),
        )

    async def on_stop(self) -> None:
        for src in self._sources:
            try:
                await src.close()
            except Exception as exc:
                self.log.warning("source close failed", source=src.name, error=repr(exc))
        pending = self._pending(self._take_candles())
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
                        await upsert_candles(conn, candles)
                        await set_fill_marks(conn, marks)
                    for c in candles:
                        key = (c.symbol, c.interval, c.open_time)
                        if self._unsaved.get(key) is c:
                            del self._unsaved[key]
                    self._saved_at = time.monotonic()
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
        finalized: list[Candle] = []
        for sym in self.markets:
            rows = await query_candles(self._conn, sym, fine, since, now, 100_000)
            if not rows:
                continue
            fixed: list[Candle] = []
            for i, c in enumerate(rows):
                ended = c.close_time < now - self.candle_lateness_ms
                if isinstance(c, CandleUpdated) and (i < len(rows) - 1 or ended):
                    c = CandleClosed(*msgspec.structs.astuple(c))
                    finalized.append(c)
                fixed.append(c)
            self.candles.restore(sym, fixed)
        self._closed.extend(finalized)

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
        """Publish one tick and feed it to the index and the candles."""
        spec = self.markets.get(tick.symbol)
        if spec is None:
            self.counts["dropped"] += 1
            return
        self._tick_no += 1
        ident = tick.trade_id if isinstance(tick, Trade) else str(self._tick_no)
        kind = type(tick).__name__
        await self.publisher.submit(
            tick_subject(tick.source, tick.symbol),
            encode_tick(tick),
            msg_id=f"tick:{tick.source}:{tick.symbol}:{kind}:{tick.exchange_ts_ms}:{ident}",
        )
        self.counts["ticks"] += 1
        tick_step = Decimal(spec.tick_size)
        if isinstance(tick, Trade):
            price = _to_grid(tick.price, tick_step)
            lots = _to_grid(tick.qty, Decimal(spec.lot_size))
            if price <= 0:
                self.counts["dropped"] += 1
                return
            if tick.symbol in self._indexed:
                self.index.update(tick.symbol, tick.source, tick.recv_ts_ms, price, max(lots, 0))
            if lots > 0:
                self._add_trade(tick.symbol, tick.exchange_ts_ms, price, lots, tick.side == "sell")
        elif isinstance(tick, BestBidOffer) and tick.symbol in self._indexed:
            mid = _to_grid((tick.bid_price + tick.ask_price) / 2, tick_step)
            if mid > 0 and tick.bid_price > 0 and tick.ask_price >= tick.bid_price:
                self.index.update(tick.symbol, tick.source, tick.recv_ts_ms, mid)

    def _add_trade(self, symbol: str, ts: int, price: int, lots: int, taker_sold: bool) -> None:
        self._closed.extend(self.candles.add_trade(symbol, ts, price, lots, taker_sold))
        self._dirty.add(symbol)

    async def _on_events(self, batch: Sequence[Inbound[Event]], out: Outbox) -> None:
        """Own fills into the candles and the index; stored before the batch is acked."""
        marks: dict[str, int] = {}
        for m in batch:
            ev = m.data
            if not isinstance(ev, OrderFilled) or ev.symbol not in self.markets:
                continue
            if ev.seq <= self._marks.get(ev.symbol, 0):
                continue  # already counted (redelivery after a crash)
            self._add_trade(ev.symbol, ev.ts, ev.price, ev.quantity, ev.aggressor is Side.SELL)
            if ev.symbol in self._indexed:
                self.index.update(ev.symbol, OWN_SOURCE, _now_ms(), ev.price, ev.quantity)
            marks[ev.symbol] = self._marks[ev.symbol] = ev.seq
            self.counts["fills"] += 1
        if marks:
            candles = self._take_candles()
            await self._save(self._pending(candles), marks)
            for subject, c, msg_id in self._candle_messages(candles):
                out.publish(subject, c, msg_id=msg_id)

    # ------------------------------------------------------------------ rounds

    def _pending(self, candles: Sequence[Candle]) -> list[Candle]:
        """Add ``candles`` to the unsaved ones (a later version of a window replaces the
        earlier); returns every unsaved candle."""
        unsaved = self._unsaved
        for c in candles:
            key = (c.symbol, c.interval, c.open_time)
            if not isinstance(unsaved.get(key), CandleClosed):
                unsaved[key] = c
        return list(unsaved.values())

    def _take_candles(self) -> list[Candle]:
        """Closed candles since the last call, then the open candles of markets that traded."""
        candles, self._closed = self._closed, []
        dirty, self._dirty = self._dirty, set()
        for sym in sorted(dirty):
            candles.extend(self.candles.open_candles(sym))
        return candles

    def _candle_messages(self, candles: Sequence[Candle]) -> list[tuple[str, Candle, str]]:
        """``(subject, candle, Nats-Msg-Id)`` of each candle (ids derived from its content)."""
        msgs = []
        for c in candles:
            if isinstance(c, CandleClosed):
                msg_id = f"candle:{c.interval}:{c.symbol}:{c.open_time}:final"
            else:
                msg_id = (
                    f"candle:{c.interval}:{c.symbol}:{c.open_time}:{c.trades}:{c.last_trade_time}"
                )
            msgs.append((candle_subject(c.interval, c.symbol), c, msg_id))
        self.counts["candles"] += len(candles)
        return msgs

    async def _rounds(self) -> None:
        """Every ``index_interval_ms``: index, reference prices, candles; flush the ticks."""
        period = self.index_interval_ms / 1000
        while not self.stopping:
            await asyncio.sleep(period)
            try:
                async with self.lock:
                    await self._round(_now_ms())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.error("feed round failed", error=repr(exc))

    async def _round(self, now: int) -> None:
        """One round at ``now`` (ms UTC); see :meth:`_rounds`."""
        pub = self.publisher
        for ip in self.index.compute_many(sorted(self._indexed), now):
            await pub.submit(index_subject(ip.symbol), ip, msg_id=f"index:{ip.symbol}:{ip.ts}")
            self.counts["index"] += 1
            if self._last_ref.get(ip.symbol) != ip.price:
                await pub.submit(
                    book_in_subject(ip.symbol),
                    SetReferencePrice(ts=now, price=ip.price),
                    msg_id=f"ref:{ip.symbol}:{now}",
                )
                self._last_ref[ip.symbol] = ip.price
                self.counts["references"] += 1
        self._closed.extend(self.candles.advance(now - self.candle_lateness_ms))
        candles = self._take_candles()
        pending = self._pending(candles)
        if pending and time.monotonic() - self._saved_at >= self.persist_interval_ms / 1000:
            await self._save(pending, {})
        for subject, c, msg_id in self._candle_messages(candles):
            await pub.submit(subject, c, msg_id=msg_id)
        try:
            await pub.flush()
        except Exception:
            self._last_ref.clear()  # the next round sends every reference price again
            raise


def main(argv: Sequence[str] | None = None) -> int:
    """``orrange actor feed``: run the feed actor until SIGTERM/SIGINT.

    Options: ``--sources`` (default ``config/sources.toml`` of the working directory, else of
    the checkout), ``--markets``, ``--database-url`` / ``--nats-url`` (default: the
    settings'), ``--config``, ``--name``, ``--index-interval-ms`` (100),
    ``--candle-lateness-ms`` (2000), ``--metrics-port`` (0: any free port; -1: none). Returns
    the exit code: 0 after a clean stop, 2 for bad arguments, settings or source configuration.
    """
    from orrange.engine._main import actor_parser, actor_setup
    from orrange.engine.matcher import default_markets_path
    from orrange.feeds import load_sources
    from orrange.markets import load_markets
    from orrange.runtime import run_actor

    p = actor_parser(
        "feed", "market data: ticks, index price, reference prices and candles", batch_size=False
    )
    p.add_argument("--sources", default=None, help="sources TOML (default config/sources.toml)")
    p.add_argument("--markets", default=None, help="markets TOML (default config/markets.toml)")
    p.add_argument("--index-interval-ms", type=int, default=100, help="round period (ms)")
    p.add_argument("--candle-lateness-ms", type=int, default=2_000, help="close delay (ms)")
    args = p.parse_args(argv)
    settings, config = actor_setup(p, args)
    markets_path = Path(args.markets) if args.markets else default_markets_path()
    sources_path = Path(args.sources) if args.sources else markets_path.parent / "sources.toml"
    try:
        markets = load_markets(markets_path)
        sources = load_sources(sources_path)
        actor = Feed(
            config,
            args.database_url or settings.effective_database_url,
            markets,
            sources,
            index_interval_ms=args.index_interval_ms,
            candle_lateness_ms=args.candle_lateness_ms,
            base_dir=sources_path.parent.parent,
        )
    except (OSError, ValueError) as exc:
        p.error(str(exc))
    return run_actor(actor)
