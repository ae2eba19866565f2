"""Kraken spot market data over the public WebSocket API v1 (``wss://ws.kraken.com``).

Subscriptions (``channels``), sent after every (re)connect with all pairs (``"XBT/USD"``
style WebSocket names): ``trade`` -> :class:`TradeTick`, ``book`` with ``depth`` ->
:class:`BookSnapshotTick` / :class:`BookUpdate`, ``ticker`` -> :class:`BestBidOffer`. Kraken sends
``{"event":"heartbeat"}`` about once a second when a connection is otherwise idle, which feeds
the idle timeout. Source: Kraken WebSocket API v1 documentation (Public Feeds: trade, ticker,
book; "How to maintain a valid order book").

**Book sequencing without checksums.** API v1 book frames carry no sequence number; the
``c`` CRC32 checksum is the only integrity check and this client does not verify it. The book
is rebuilt from the snapshot (``as``/``bs``) sent on every subscribe (so every reconnect
resynchronises), updates (``a``/``b``, possibly both in one frame, republished levels marked
``"r"``) are applied in frame order, quantity 0 deletes a level, and after each frame the book
is truncated to the subscribed depth as Kraken's guide requires; the truncated levels appear in
the emitted :class:`BookUpdate` with quantity 0, so consumers stay identical. A lost update
is therefore not detected until the next reconnect. A malformed book frame (counted in
``stats.malformed``) drops that pair's book and resubscribes its ``book`` channel
(``unsubscribe`` + ``subscribe``, ``stats.resyncs``); its updates are ignored until the new
snapshot arrives.

Timestamps: the book's per-level times (decimal seconds, the latest in the frame), a trade's
own time; the ticker has none (``exchange_ts_ms = recv_ts_ms``). v1 trades have no id:
``trade_id`` is ``"<time>-<index in frame>"``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection

from orrange.feeds.base import Liveness, WsSource, json_decoder, seconds_str_to_ms
from orrange.feeds.book import BookReplica
from orrange.marketdata.ticks import BestBidOffer, BookSnapshotTick, BookUpdate, Level, TradeTick

__all__ = ["DEFAULT_WS_URL", "KrakenSource"]

log = logging.getLogger("orrange.feeds.kraken")

DEFAULT_WS_URL = "wss://ws.kraken.com"
_CHANNELS = frozenset({"trades", "book", "bbo"})
_ZERO = Decimal(0)


class KrakenSource(WsSource):
    """Kraken v1 client (see the module docstring).

    Args:
        name: source name. symbols: WebSocket pair name (``"XBT/USD"``) -> our market name.
        ws_url: endpoint. channels: any of ``"trades"``, ``"book"``, ``"bbo"``.
        book_depth: one of Kraken's depths (10, 25, 100, 500, 1000).
        live: :class:`Liveness`.

    Raises:
        ValueError: unknown channel or depth, or no symbols.
    """

    def __init__(
        self,
        name: str,
        symbols: Mapping[str, str],
        *,
        ws_url: str = DEFAULT_WS_URL,
        channels: Iterable[str] = ("trades", "book", "bbo"),
        book_depth: int = 1000,
        live: Liveness | None = None,
    ) -> None:
        super().__init__(name, ws_url, symbols, channels, _CHANNELS, live)
        if book_depth not in (10, 25, 100, 500, 1000):
            raise ValueError(f"{name}: unsupported book depth {book_depth}")
        self.book_depth = book_depth
        self._books: dict[str, BookReplica] = {}
        self._awaiting: set[str] = set()  # pairs resubscribed, waiting for their snapshot
        self._ws: ClientConnection | None = None

    def book(self, pair: str) -> BookReplica | None:
        """The local book of a pair once its snapshot arrived, else ``None``."""
        return self._books.get(pair)

    async def on_connect(self, ws: ClientConnection) -> None:
        """Forget the books and subscribe every channel for all pairs."""
        self._ws = ws
        self._books = {}
        self._awaiting = set()
        subs: list[dict[str, Any]] = []
        if "trades" in self.channels:
            subs.append({"name": "trade"})
        if "bbo" in self.channels:
            subs.append({"name": "ticker"})
        if "book" in self.channels:
            subs.append({"name": "book", "depth": self.book_depth})
        for sub in subs:
            req = {"event": "subscribe", "pair": list(self.symbols), "subscription": sub}
            await ws.send(msgspec.json.encode(req).decode())

    async def on_message(self, raw: str | bytes, recv_ms: int) -> None:
        """Dispatch one frame (event objects or ``[channelID, payload..., name, pair]``).

        Raises:
            KeyError, ValueError, TypeError, IndexError, decimal.InvalidOperation: malformed
                frame or unknown pair (counted by the caller).
        """
        msg = json_decoder.decode(raw)
        if isinstance(msg, dict):
            event = msg.get("event")
            if event == "subscriptionStatus" and msg.get("status") == "error":
                log.error("%s: subscription refused: %s", self.name, msg.get("errorMessage"))
            elif event not in ("heartbeat", "systemStatus", "subscriptionStatus", "pong"):
                raise ValueError(f"unknown event {event!r}")
            return
        name, pair = msg[-2], msg[-1]
        symbol = self.symbols[pair]
        if name == "trade":
            for i, t in enumerate(msg[1]):
                side = t[3]
                if side not in ("b", "s"):
                    raise ValueError(f"unknown side {side!r}")
                await self.emit(
                    TradeTick(
                        source=self.name,
                        symbol=symbol,
                        exchange_ts_ms=seconds_str_to_ms(t[2]),
                        recv_ts_ms=recv_ms,
                        trade_id=f"{t[2]}-{i}",
                        price=Decimal(t[0]),
                        qty=Decimal(t[1]),
                        side="buy" if side == "b" else "sell",
                    )
                )
        elif name == "ticker":
            d = msg[1]
            await self.emit(
                BestBidOffer(
                    source=self.name,
                    symbol=symbol,
                    exchange_ts_ms=recv_ms,
                    recv_ts_ms=recv_ms,
                    bid_price=Decimal(d["b"][0]),
                    bid_qty=Decimal(d["b"][2]),
                    ask_price=Decimal(d["a"][0]),
                    ask_qty=Decimal(d["a"][2]),
                )
            )
        elif name.startswith("book"):
            try:
                await self._on_book(pair, symbol, msg[1:-2], recv_ms)
            except (KeyError, ValueError, TypeError, IndexError, ArithmeticError):
                await self._resubscribe_book(pair)
                raise
        else:
            raise ValueError(f"unknown channel {name!r}")

    async def _resubscribe_book(self, pair: str) -> None:
        self.stats.resyncs += 1
        self._books.pop(pair, None)
        self._awaiting.add(pair)
        assert self._ws is not None
        sub = {"name": "book", "depth": self.book_depth}
        for event in ("unsubscribe", "subscribe"):
            req = {"event": event, "pair": [pair], "subscription": sub}
            await self._ws.send(msgspec.json.encode(req).decode())

    async def _on_book(
        self, pair: str, symbol: str, payloads: list[dict[str, Any]], recv_ms: int
    ) -> None:
        first = payloads[0]
        ts = 0
        if "as" in first or "bs" in first:
            bids = [(Decimal(p), Decimal(q)) for p, q, *_ in first.get("bs", ())]
            asks = [(Decimal(p), Decimal(q)) for p, q, *_ in first.get("as", ())]
            for lvl in (*first.get("bs", ()), *first.get("as", ())):
                ts = max(ts, seconds_str_to_ms(lvl[2]))
            book = BookReplica(self.book_depth)
            book.reset(bids, asks)
            book.truncate()
            self._books[pair] = book
            self._awaiting.discard(pair)
            self.stats.snapshots += 1
            await self.emit(
                BookSnapshotTick(
                    source=self.name,
                    symbol=symbol,
                    exchange_ts_ms=ts or recv_ms,
                    recv_ts_ms=recv_ms,
                    bids=book.bid_levels(),
                    asks=book.ask_levels(),
                    sequence=0,
                )
            )
            return
        if pair in self._awaiting:
            return  # resubscribed: the snapshot will replace the book
        current = self._books.get(pair)
        if current is None:
            raise ValueError(f"book update for {pair} before its snapshot")
        ubids: list[Level] = []
        uasks: list[Level] = []
        for part in payloads:  # parse everything first: a bad level leaves the book untouched
            for lvl in part.get("b", ()):
                ubids.append((Decimal(lvl[0]), Decimal(lvl[1])))
                ts = max(ts, seconds_str_to_ms(lvl[2]))
            for lvl in part.get("a", ()):
                uasks.append((Decimal(lvl[0]), Decimal(lvl[1])))
                ts = max(ts, seconds_str_to_ms(lvl[2]))
        for p, q in ubids:
            current.set_bid(p, q)
        for p, q in uasks:
            current.set_ask(p, q)
        dropped_bids, dropped_asks = current.truncate()
        ubids.extend((p, _ZERO) for p in dropped_bids)
        uasks.extend((p, _ZERO) for p in dropped_asks)
        await self.emit(
            BookUpdate(
                source=self.name,
                symbol=symbol,
                exchange_ts_ms=ts or recv_ms,
                recv_ts_ms=recv_ms,
                bids=tuple(ubids),
                asks=tuple(uasks),
                sequence=0,
            )
        )
