"""Offline sources: a recorded trade file replayed at real or accelerated speed, and a seeded
random walk on integer ticks. Both emit the same :class:`~orrange.marketdata.ticks.TradeTick`
(and, for the walk, :class:`~orrange.marketdata.ticks.BestBidOffer`) ticks as the live clients.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from pathlib import Path

from orrange.feeds.base import Emit, Source, now_ms
from orrange.marketdata.ticks import BestBidOffer, TickSide, TradeTick
from orrange.marketdata.tradefiles import read_trades
from orrange.markets import MarketSpec

__all__ = ["FileReplaySource", "RandomWalkSource"]

log = logging.getLogger("orrange.feeds.replay")

_YIELD_EVERY = 1000  # ticks between event-loop yields when replaying as fast as possible


class FileReplaySource(Source):
    """Replay a trade file as :class:`TradeTick` ticks of one market.

    Formats are those of :func:`orrange.marketdata.tradefiles.read_trades`: Binance aggTrades
    or trades CSV (data.binance.vision layout) and ccxt trades JSON, optionally ``.gz``.
    ``exchange_ts_ms`` is the recorded trade time; ``recv_ts_ms`` the wall clock at emission.
    ``trade_id`` is the trade's 0-based position in the file (the readers keep no id); the
    side is the taker's (Binance ``is_buyer_maker`` true -> ``"sell"``).

    Args:
        name: source name. path: the file. symbol: our market name.
        spec: grid used to read the file exactly (prices must be on its tick, quantities on
            its lot; see :func:`orrange.marketdata.tradefiles.scale_spec` for a file-only grid).
        speed: 1.0 = recorded pace, 10.0 = ten times faster, 0 = as fast as possible.
        clock, sleep: monotonic clock (s) and async sleep used for pacing (injectable).

    Trade ``i`` is emitted ``(ts_i - ts_0) / 1000 / speed`` seconds after the start (a
    schedule, so delays do not accumulate). A malformed row ends the replay: it is logged and
    counted in ``stats.malformed``.

    Raises:
        ValueError: negative ``speed``.
    """

    def __init__(
        self,
        name: str,
        path: str | Path,
        symbol: str,
        spec: MarketSpec,
        *,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(name)
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.path = Path(path)
        self.symbol = symbol
        self.spec = spec
        self.speed = speed
        self._clock = clock
        self._sleep = sleep

    async def run(self, emit: Emit) -> None:
        """Emit every trade of the file, paced by ``speed``; returns at the end of the file."""
        spec = self.spec
        start = self._clock()
        first_ts: int | None = None
        try:
            for i, ft in enumerate(read_trades(self.path, spec)):
                if first_ts is None:
                    first_ts = ft.ts
                if self.speed > 0:
                    delay = start + (ft.ts - first_ts) / 1000 / self.speed - self._clock()
                    if delay > 0:
                        await self._sleep(delay)
                elif i % _YIELD_EVERY == 0:
                    await self._sleep(0)
                self.stats.messages += 1
                self.stats.ticks += 1
                await emit(
                    TradeTick(
                        source=self.name,
                        symbol=self.symbol,
                        exchange_ts_ms=ft.ts,
                        recv_ts_ms=now_ms(),
                        trade_id=str(i),
                        price=Decimal(spec.ticks_to_price(ft.price)),
                        qty=Decimal(spec.lots_to_qty(ft.qty)),
                        side="sell" if ft.buyer_is_maker else "buy",
                    )
                )
        except ValueError as exc:
            self.stats.malformed += 1
            log.error("%s: replay of %s stopped: %s", self.name, self.path, exc)


class RandomWalkSource(Source):
    """Synthetic trades and top of book: a seeded random walk in integer ticks per market.

    Every step (``interval_ms`` of simulated time) and for each market, in sorted symbol order:
    the price moves by a uniform integer in ``[-max_step_ticks, max_step_ticks]`` ticks (never
    below 2 ticks), a :class:`TradeTick` of a uniform ``[min_lots, 100 * min_lots]`` lots (capped at
    ``max_lots``) with a random taker side prints at that price, and a :class:`BestBidOffer`
    one tick either side follows. The same seed gives the same ticks (timestamps included
    when ``start_ms`` is given and ``realtime`` is false).

    Args:
        name: source name. markets: our markets. start_prices: market -> decimal price string
            (on the market's tick). seed: RNG seed. interval_ms: simulated ms per step.
        max_step_ticks: largest move per step. count: number of steps (``None`` = forever).
        realtime: sleep ``interval_ms`` between steps and stamp ``recv_ts_ms`` with the wall
            clock; otherwise run flat out with ``recv_ts_ms = exchange_ts_ms``.
        start_ms: simulated start time, ms UTC (default: now).

    Raises:
        ValueError: a start price is missing for a market or off its grid.
    """

    def __init__(
        self,
        name: str,
        markets: Mapping[str, MarketSpec],
        start_prices: Mapping[str, str],
        *,
        seed: int = 0,
        interval_ms: int = 250,
        max_step_ticks: int = 5,
        count: int | None = None,
        realtime: bool = True,
        start_ms: int | None = None,
    ) -> None:
        super().__init__(name)
        if interval_ms <= 0 or max_step_ticks < 0:
            raise ValueError("interval_ms must be positive and max_step_ticks non-negative")
        missing = sorted(set(markets) - set(start_prices))
        if missing:
            raise ValueError(f"{name}: no start price for {missing}")
        self.markets = dict(sorted(markets.items()))
        self.start_ticks = {s: m.price_to_ticks(start_prices[s]) for s, m in self.markets.items()}
        self.seed = seed
        self.interval_ms = interval_ms
        self.max_step_ticks = max_step_ticks
        self.count = count
        self.realtime = realtime
        self.start_ms = start_ms

    async def run(self, emit: Emit) -> None:
        """Emit ``count`` steps (or forever) of ticks for every market."""
        rng = random.Random(self.seed)
        prices = dict(self.start_ticks)
        ts = self.start_ms if self.start_ms is not None else now_ms()
        step = 0
        while self.count is None or step < self.count:
            for symbol, spec in self.markets.items():
                p = max(2, prices[symbol] + rng.randint(-self.max_step_ticks, self.max_step_ticks))
                prices[symbol] = p
                hi = min(spec.max_lots, 100 * spec.min_lots)
                lots = rng.randint(spec.min_lots, hi)
                side: TickSide = "buy" if rng.random() < 0.5 else "sell"
                recv = now_ms() if self.realtime else ts
                price = Decimal(spec.ticks_to_price(p))
                self.stats.ticks += 2
                await emit(
                    TradeTick(
                        source=self.name,
                        symbol=symbol,
                        exchange_ts_ms=ts,
                        recv_ts_ms=recv,
                        trade_id=str(step),
                        price=price,
                        qty=Decimal(spec.lots_to_qty(lots)),
                        side=side,
                    )
                )
                top = Decimal(spec.lots_to_qty(spec.min_lots))
                await emit(
                    BestBidOffer(
                        source=self.name,
                        symbol=symbol,
                        exchange_ts_ms=ts,
                        recv_ts_ms=recv,
                        bid_price=Decimal(spec.ticks_to_price(p - 1)),
                        bid_qty=top,
                        ask_price=Decimal(spec.ticks_to_price(p + 1)),
                        ask_qty=top,
                    )
                )
            step += 1
            ts += self.interval_ms
            await asyncio.sleep(self.interval_ms / 1000 if self.realtime else 0)
