"""Coinbase Advanced Trade market data (public WebSocket ``wss://advanced-trade-ws.coinbase.com``).

Channels (``channels``): ``market_trades`` -> :class:`TradeTick`, ``level2`` (frames arrive on
channel ``l2_data``) -> :class:`BookSnapshotTick` / :class:`BookUpdate`, ``ticker`` ->
:class:`BestBidOffer`; ``heartbeats`` is always subscribed so that quiet products keep the
connection alive (Coinbase closes idle connections). One ``subscribe`` message per channel
with all product ids, sent again after every reconnect. Source: Coinbase Developer Platform,
"Advanced Trade WebSocket Channels" and "WebSocket Overview" (sequence numbers).

**Gap detection.** Every frame of a connection carries ``sequence_num``, increasing by one
across all channels. A jump means frames were lost: the level2 books can no longer be trusted,
so they are discarded and ``level2`` is unsubscribed and subscribed again on the same
connection, which makes Coinbase send a fresh snapshot (``stats.gaps``/``stats.resyncs``); book
updates received before that snapshot are dropped. A malformed ``l2_data`` frame (counted in
``stats.malformed``) triggers the same resync. A reconnect restarts the numbering.

**Trades** are emitted once: the ``market_trades`` snapshot sent on subscribe repeats recent
trades, so per product only trade ids above the last emitted one pass (ids are increasing
integers). The ``side`` of a market trade is the **maker's** side (as in the Coinbase Exchange
``match`` channel, whose docs say so); it is flipped to the taker side of :class:`TradeTick`. In the
recorded capture 75 of the 76 trades that print at the best bid or ask carry the side of the
resting order there (a ``"SELL"`` trade at the best ask is a taker buy).

Timestamps: RFC 3339 with nanoseconds, truncated to ms UTC; book ticks use the frame's
``timestamp``, trades their ``time``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection

from orrange.feeds.base import Liveness, WsSource, iso_to_ms, json_decoder
from orrange.feeds.book import BookReplica
from orrange.marketdata.ticks import BestBidOffer, BookSnapshotTick, BookUpdate, Level, TradeTick

__all__ = ["DEFAULT_WS_URL", "CoinbaseSource"]

log = logging.getLogger("orrange.feeds.coinbase")

DEFAULT_WS_URL = "wss://advanced-trade-ws.coinbase.com"
_CHANNEL = {"trades": "market_trades", "book": "level2", "bbo": "ticker"}


class CoinbaseSource(WsSource):
    """Coinbase Advanced Trade client (see the module docstring).

    Args:
        name: source name. symbols: product id (``"BTC-USD"``) -> our market name.
        ws_url: endpoint. channels: any of ``"trades"``, ``"book"``, ``"bbo"``.
        live: :class:`Liveness`.

    Raises:
        ValueError: unknown channel or no symbols.
    """

    def __init__(
        self,
        name: str,
        symbols: Mapping[str, str],
        *,
        ws_url: str = DEFAULT_WS_URL,
        channels: Iterable[str] = ("trades", "book", "bbo"),
        live: Liveness | None = None,
    ) -> None:
        super().__init__(name, ws_url, symbols, channels, frozenset(_CHANNEL), live)
        self._ws: ClientConnection | None = None
        self._seq: int | None = None
        self._books: dict[str, BookReplica | None] = {}
        self._last_trade: dict[str, int] = {}

    def book(self, product_id: str) -> BookReplica | None:
        """The local book of a product while it is in sync, else ``None``."""
        return self._books.get(product_id)

    async def _send(self, kind: str, channel: str) -> None:
        assert self._ws is not None
        req = {"type": kind, "product_ids": list(self.symbols), "channel": channel}
        await self._ws.send(msgspec.json.encode(req).decode())

    async def on_connect(self, ws: ClientConnection) -> None:
        """Reset the sequence and books, then subscribe every channel plus heartbeats."""
        self._ws = ws
        self._seq = None
        self._books = dict.fromkeys(self.symbols)
        for ch in ("trades", "book", "bbo"):
            if ch in self.channels:
                await self._send("subscribe", _CHANNEL[ch])
        await self._send("subscribe", "heartbeats")

    async def _resync(self) -> None:
        self.stats.resyncs += 1
        self._books = dict.fromkeys(self.symbols)
        if "book" in self.channels:
            await self._send("unsubscribe", "level2")
            await self._send("subscribe", "level2")

    async def on_message(self, raw: str | bytes, recv_ms: int) -> None:
        """Check ``sequence_num`` and dispatch one frame by channel.

        Raises:
            KeyError, ValueError, TypeError, decimal.InvalidOperation: malformed frame or
                unknown product (counted by the caller).
        """
        msg = json_decoder.decode(raw)
        if msg.get("type") == "error":
            log.error("%s: server error: %s", self.name, msg.get("message"))
            return
        seq = msg.get("sequence_num")
        if seq is not None:
            seq = int(seq)
            if self._seq is not None and seq != self._seq + 1:
                if seq <= self._seq:
                    return  # duplicate or stale frame
                self.stats.gaps += 1
                log.warning("%s: sequence gap %d -> %d; resyncing books", self.name, self._seq, seq)
                self._seq = seq
                await self._resync()
            self._seq = seq
        channel = msg["channel"]
        if channel == "l2_data":
            try:
                await self._on_l2(msg, recv_ms, seq or 0)
            except (KeyError, ValueError, TypeError, ArithmeticError):
                await self._resync()  # the books missed this frame: get fresh snapshots
                raise
        elif channel == "market_trades":
            await self._on_trades(msg, recv_ms)
        elif channel == "ticker":
            await self._on_ticker(msg, recv_ms)
        elif channel not in ("heartbeats", "subscriptions", "candles"):
            raise ValueError(f"unknown channel {channel!r}")

    async def _on_l2(self, msg: dict[str, Any], recv_ms: int, seq: int) -> None:
        ts = iso_to_ms(msg["timestamp"])
        for ev in msg["events"]:
            product = ev["product_id"]
            symbol = self.symbols[product]
            bids: list[Level] = []
            asks: list[Level] = []
            for u in ev["updates"]:
                level = (Decimal(u["price_level"]), Decimal(u["new_quantity"]))
                side = u["side"]
                if side == "bid":
                    bids.append(level)
                elif side in ("offer", "ask"):
                    asks.append(level)
                else:
                    raise ValueError(f"unknown side {side!r}")
            if ev["type"] == "snapshot":
                book = BookReplica()
                book.reset(bids, asks)
                self._books[product] = book
                self.stats.snapshots += 1
                await self.emit(
                    BookSnapshotTick(
                        source=self.name,
                        symbol=symbol,
                        exchange_ts_ms=ts,
                        recv_ts_ms=recv_ms,
                        bids=book.bid_levels(),
                        asks=book.ask_levels(),
                        sequence=seq,
                    )
                )
                continue
            current = self._books[product]
            if current is None:
                continue  # waiting for the snapshot after a (re)subscribe
            for p, q in bids:
                current.set_bid(p, q)
            for p, q in asks:
                current.set_ask(p, q)
            await self.emit(
                BookUpdate(
                    source=self.name,
                    symbol=symbol,
                    exchange_ts_ms=ts,
                    recv_ts_ms=recv_ms,
                    bids=tuple(bids),
                    asks=tuple(asks),
                    sequence=seq,
                )
            )

    async def _on_trades(self, msg: dict[str, Any], recv_ms: int) -> None:
        for ev in msg["events"]:
            trades = sorted(ev["trades"], key=lambda t: int(t["trade_id"]))
            for t in trades:
                product = t["product_id"]
                symbol = self.symbols[product]
                tid = int(t["trade_id"])
                if tid <= self._last_trade.get(product, -1):
                    continue
                self._last_trade[product] = tid
                side = t["side"]
                if side not in ("BUY", "SELL"):
                    raise ValueError(f"unknown side {side!r}")
                await self.emit(
                    TradeTick(
                        source=self.name,
                        symbol=symbol,
                        exchange_ts_ms=iso_to_ms(t["time"]),
                        recv_ts_ms=recv_ms,
                        trade_id=t["trade_id"],
                        price=Decimal(t["price"]),
                        qty=Decimal(t["size"]),
                        side="sell" if side == "BUY" else "buy",  # maker side -> taker side
                    )
                )

    async def _on_ticker(self, msg: dict[str, Any], recv_ms: int) -> None:
        ts = iso_to_ms(msg["timestamp"])
        for ev in msg["events"]:
            for tk in ev["tickers"]:
                await self.emit(
                    BestBidOffer(
                        source=self.name,
                        symbol=self.symbols[tk["product_id"]],
                        exchange_ts_ms=ts,
                        recv_ts_ms=recv_ms,
                        bid_price=Decimal(tk["best_bid"]),
                        bid_qty=Decimal(tk["best_bid_quantity"]),
                        ask_price=Decimal(tk["best_ask"]),
                        ask_qty=Decimal(tk["best_ask_quantity"]),
                    )
                )
