"""Binance spot market data over one combined-stream WebSocket.

Streams per symbol (``channels``): ``<sym>@aggTrade`` -> :class:`TradeTick`,
``<sym>@depth@100ms`` -> :class:`BookSnapshotTick` / :class:`BookUpdate`, ``<sym>@bookTicker``
-> :class:`BestBidOffer`, ``<sym>@kline_<interval>`` -> :class:`CandleTick`. They are requested with
a ``SUBSCRIBE`` message on the combined endpoint (``wss://stream.binance.com:9443/stream``)
after every (re)connect; frames arrive as ``{"stream": ..., "data": {...}}``. Sources: Binance
spot API docs, "WebSocket Streams" (Live Subscribing/Unsubscribing to streams, Aggregate Trade,
Diff. Depth, Individual Symbol Book Ticker and Kline/Candlestick streams).

The depth book follows Binance's "How to manage a local order book correctly" (same page):

1. buffer the diff events of the stream, noting ``U`` of the first one;
2. get a REST snapshot ``GET /api/v3/depth?symbol=X&limit=1000`` (``lastUpdateId``);
3. if ``lastUpdateId < U`` of the first buffered event, fetch the snapshot again;
4. drop buffered events with ``u <= lastUpdateId``; the first remaining one must have
   ``U <= lastUpdateId + 1 <= u`` (otherwise start over);
5. apply the remaining events, then every new one: an event with ``u`` at or below the local
   update id is ignored, an event with ``U > local id + 1`` is a **gap**: the book is
   discarded and rebuilt from step 1 (counted in ``stats.gaps`` and ``stats.resyncs``);
   quantity 0 removes a level (removing an unknown level is normal).

A reconnect discards every book and resynchronises the same way. Ticks of one symbol keep
their order: a :class:`BookSnapshotTick` (after a sync) precedes the updates that follow it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

import httpx
import msgspec
from websockets.asyncio.client import ClientConnection

from orrange.feeds.base import Liveness, WsSource, json_decoder, now_ms
from orrange.feeds.book import BookReplica
from orrange.marketdata.ticks import (
    BestBidOffer,
    BookSnapshotTick,
    BookUpdate,
    CandleTick,
    Level,
    TradeTick,
)

__all__ = ["DEFAULT_REST_URL", "DEFAULT_WS_URL", "BinanceSource"]

log = logging.getLogger("orrange.feeds.binance")

DEFAULT_WS_URL = "wss://stream.binance.com:9443/stream"
DEFAULT_REST_URL = "https://api.binance.com"
_MAX_PARAMS = 1024  # streams per SUBSCRIBE message (one message: 5 messages/s limit)
_MAX_STREAMS = 1024  # Binance: at most 1024 streams per connection


def _levels(raw: Iterable[Any]) -> tuple[Level, ...]:
    return tuple((Decimal(p), Decimal(q)) for p, q in raw)


class _Diff(NamedTuple):
    """One parsed diff-depth event (``U``, ``u``, ``E``, levels) and its receive time."""

    first: int
    last: int
    ts: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    recv: int


class _Depth:
    __slots__ = ("book", "buffer", "last_u", "synced", "task")

    def __init__(self) -> None:
        self.book = BookReplica()
        self.synced = False
        self.last_u = 0
        self.buffer: list[_Diff] = []
        self.task: asyncio.Task[None] | None = None

    def apply(self, diff: _Diff) -> None:
        book = self.book
        for p, q in diff.bids:
            book.set_bid(p, q)
        for p, q in diff.asks:
            book.set_ask(p, q)
        self.last_u = diff.last


class BinanceSource(WsSource):
    """Binance spot client (see the module docstring).

    Args:
        name: source name. symbols: Binance symbol (``"BTCUSDT"``) -> our market name.
        ws_url: combined-stream endpoint. rest_url: REST base for depth snapshots.
        channels: any of ``"trades"``, ``"book"``, ``"bbo"``, ``"candles"``.
        candle_interval: kline interval (``"1m"`` ...). depth_limit: REST snapshot depth.
        http_timeout: seconds per snapshot request. live: :class:`Liveness`.

    Raises:
        ValueError: unknown channel, no symbols, or more than 1024 streams (Binance's limit
            per connection: split the symbols over several sources).
    """

    CHANNELS = frozenset({"trades", "book", "bbo", "candles"})

    def __init__(
        self,
        name: str,
        symbols: Mapping[str, str],
        *,
        ws_url: str = DEFAULT_WS_URL,
        rest_url: str = DEFAULT_REST_URL,
        channels: Iterable[str] = ("trades", "book", "bbo", "candles"),
        candle_interval: str = "1m",
        depth_limit: int = 1000,
        http_timeout: float = 10.0,
        live: Liveness | None = None,
    ) -> None:
        symbols = {k.upper(): v for k, v in symbols.items()}
        super().__init__(name, ws_url, symbols, channels, self.CHANNELS, live)
        if len(self.symbols) * len(self.channels) > _MAX_STREAMS:
            raise ValueError(f"{name}: more than {_MAX_STREAMS} streams on one connection")
        self.rest_url = rest_url.rstrip("/")
        self.candle_interval = candle_interval
        self.depth_limit = depth_limit
        self.http_timeout = http_timeout
        self._depth: dict[str, _Depth] = {}
        self._lock = asyncio.Lock()
        self._http: httpx.AsyncClient | None = None
        self._next_id = 1

    # ------------------------------------------------------------------ subscription
    def streams(self) -> list[str]:
        """The stream names subscribed on every connect."""
        suffix = {
            "trades": "@aggTrade",
            "book": "@depth@100ms",
            "bbo": "@bookTicker",
            "candles": f"@kline_{self.candle_interval}",
        }
        return [
            sym.lower() + suffix[ch]
            for sym in self.symbols
            for ch in ("book", "bbo", "candles", "trades")
            if ch in self.channels
        ]

    def book(self, exchange_symbol: str) -> BookReplica | None:
        """The local book of a symbol while it is in sync, else ``None``."""
        st = self._depth.get(exchange_symbol.upper())
        return st.book if st is not None and st.synced else None

    async def on_connect(self, ws: ClientConnection) -> None:
        """Reset every depth book and send ``SUBSCRIBE`` for :meth:`streams`."""
        await self._cancel_syncs()
        self._depth = {sym: _Depth() for sym in self.symbols}
        streams = self.streams()
        for i in range(0, len(streams), _MAX_PARAMS):
            req: dict[str, Any] = {
                "method": "SUBSCRIBE",
                "params": streams[i : i + _MAX_PARAMS],
                "id": self._next_id,
            }
            self._next_id += 1
            await ws.send(msgspec.json.encode(req).decode())

    async def on_disconnect(self) -> None:
        """Cancel snapshot fetches; books are rebuilt after the reconnect."""
        await self._cancel_syncs()
        for st in self._depth.values():
            st.synced = False

    async def _cancel_syncs(self) -> None:
        tasks = [st.task for st in self._depth.values() if st.task is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for st in self._depth.values():
            st.task = None

    async def close(self) -> None:
        """Close the HTTP client (the WebSocket closes when :meth:`run` is cancelled)."""
        await self._cancel_syncs()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # ------------------------------------------------------------------ frames
    async def on_message(self, raw: str | bytes, recv_ms: int) -> None:
        """Dispatch one frame (combined ``{"stream","data"}`` or a raw stream payload).

        Raises:
            KeyError, ValueError, TypeError, decimal.InvalidOperation: malformed frame or
                unknown symbol (counted by the caller).
        """
        msg = json_decoder.decode(raw)
        if "id" in msg and ("result" in msg or "error" in msg):
            if msg.get("error") is not None:
                log.error("%s: subscription refused: %s", self.name, msg["error"])
            return
        data = msg.get("data", msg)
        event = data.get("e")
        if event == "depthUpdate":
            async with self._lock:
                await self._on_depth(data, recv_ms)
        elif event == "aggTrade":
            await self.emit(
                TradeTick(
                    source=self.name,
                    symbol=self.symbols[data["s"]],
                    exchange_ts_ms=int(data["T"]),
                    recv_ts_ms=recv_ms,
                    trade_id=str(data["a"]),
                    price=Decimal(data["p"]),
                    qty=Decimal(data["q"]),
                    side="sell" if data["m"] else "buy",
                )
            )
        elif event == "kline":
            k = data["k"]
            await self.emit(
                CandleTick(
                    source=self.name,
                    symbol=self.symbols[data["s"]],
                    exchange_ts_ms=int(data["E"]),
                    recv_ts_ms=recv_ms,
                    interval=k["i"],
                    open_time_ms=int(k["t"]),
                    close_time_ms=int(k["T"]),
                    open=Decimal(k["o"]),
                    high=Decimal(k["h"]),
                    low=Decimal(k["l"]),
                    close=Decimal(k["c"]),
                    volume=Decimal(k["v"]),
                    quote_volume=Decimal(k["q"]),
                    trade_count=int(k["n"]),
                    closed=bool(k["x"]),
                )
            )
        elif event is None and "u" in data and "b" in data and "a" in data:  # bookTicker
            await self.emit(
                BestBidOffer(
                    source=self.name,
                    symbol=self.symbols[data["s"]],
                    exchange_ts_ms=int(data.get("E", recv_ms)),
                    recv_ts_ms=recv_ms,
                    bid_price=Decimal(data["b"]),
                    bid_qty=Decimal(data["B"]),
                    ask_price=Decimal(data["a"]),
                    ask_qty=Decimal(data["A"]),
                )
            )
        else:
            raise ValueError(f"unknown event {event!r}")

    async def _on_depth(self, data: dict[str, Any], recv_ms: int) -> None:
        sym = data["s"]
        st = self._depth[sym]
        # parse fully before touching any state: a malformed diff is dropped whole (and the
        # next one then shows up as a gap)
        diff = _Diff(
            int(data["U"]),
            int(data["u"]),
            int(data["E"]),
            _levels(data["b"]),
            _levels(data["a"]),
            recv_ms,
        )
        if not st.synced:
            st.buffer.append(diff)
            if st.task is None:
                st.task = asyncio.create_task(self._sync(sym, st))
            return
        if diff.last <= st.last_u:
            return  # already contained in the book
        if diff.first > st.last_u + 1:
            self.stats.gaps += 1
            log.warning("%s: %s depth gap: U=%d after u=%d", self.name, sym, diff.first, st.last_u)
            st.synced = False
            st.buffer = [diff]
            st.task = asyncio.create_task(self._sync(sym, st))
            return
        st.apply(diff)
        await self.emit(
            BookUpdate(
                source=self.name,
                symbol=self.symbols[sym],
                exchange_ts_ms=diff.ts,
                recv_ts_ms=recv_ms,
                bids=diff.bids,
                asks=diff.asks,
                sequence=diff.last,
            )
        )

    async def fetch_depth(self, symbol: str) -> dict[str, Any]:
        """``GET {rest_url}/api/v3/depth?symbol=..&limit=..`` decoded (exact decimals).

        Raises:
            httpx.HTTPError: transport error or non-2xx status.
            msgspec.DecodeError: body is not JSON.
        """
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.http_timeout)
        resp = await self._http.get(
            f"{self.rest_url}/api/v3/depth", params={"symbol": symbol, "limit": self.depth_limit}
        )
        resp.raise_for_status()
        body: dict[str, Any] = json_decoder.decode(resp.content)
        return body

    async def _sync(self, sym: str, st: _Depth) -> None:
        """Steps 2-5 of the procedure (module docstring), retried with backoff until a
        snapshot fits the buffered diffs; then emits one :class:`BookSnapshotTick`."""
        self.stats.resyncs += 1
        attempt = 0
        try:
            while not await self._try_snapshot(sym, st):
                await asyncio.sleep(self.live.backoff.delay(attempt))
                attempt += 1
        finally:
            st.task = None  # a later diff restarts the sync if this one did not finish

    async def _try_snapshot(self, sym: str, st: _Depth) -> bool:
        try:
            snap = await self.fetch_depth(sym)
            last_id = int(snap["lastUpdateId"])
            bids, asks = _levels(snap["bids"]), _levels(snap["asks"])
        except (httpx.HTTPError, msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning("%s: %s depth snapshot failed: %s", self.name, sym, exc)
            return False
        except ArithmeticError as exc:  # decimal.InvalidOperation
            log.warning("%s: %s depth snapshot malformed: %s", self.name, sym, exc)
            return False
        async with self._lock:
            if st.buffer and last_id < st.buffer[0].first:
                log.info("%s: %s snapshot older than the stream; refetching", self.name, sym)
                return False  # step 3
            pending = [d for d in st.buffer if d.last > last_id]  # step 4
            if pending and pending[0].first > last_id + 1:
                log.info("%s: %s snapshot does not reach the stream; refetching", self.name, sym)
                return False
            st.book.reset(bids, asks)
            st.last_u = last_id
            for i, diff in enumerate(pending):  # step 5
                if diff.first > st.last_u + 1:  # gap inside the buffer: start over from it
                    self.stats.gaps += 1
                    st.buffer = pending[i:]
                    return False
                st.apply(diff)
            if pending:
                ts, recv = pending[-1].ts, pending[-1].recv
            else:  # the snapshot has no time: stamp it with the last receive time
                ts = recv = st.buffer[-1].recv if st.buffer else now_ms()
            st.buffer = []
            st.synced = True
            self.stats.snapshots += 1
            await self.emit(
                BookSnapshotTick(
                    source=self.name,
                    symbol=self.symbols[sym],
                    exchange_ts_ms=ts,
                    recv_ts_ms=recv,
                    bids=st.book.bid_levels(),
                    asks=st.book.ask_levels(),
                    sequence=st.last_u,
                )
            )
            return True
