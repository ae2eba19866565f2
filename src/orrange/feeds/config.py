"""The source set, from configuration (``config/sources.toml``).

Each ``[[source]]`` table is a :class:`FeedConfig`; ``kind`` selects the implementation and
``[source.symbols]`` maps the exchange's symbols to our market names::

    [[source]]
    name = "binance"
    kind = "binance"            # binance | coinbase | kraken | replay | random_walk
    enabled = true
    ws_url = "wss://stream.binance.com:9443/stream"   # optional: defaults per kind
    rest_url = "https://api.binance.com"
    channels = ["trades", "book", "bbo", "candles"]
    [source.symbols]
    BTCUSDT = "BTC-USDT"

Durations are seconds (``*_s``) or milliseconds (``*_ms``); money fields are decimal strings.
:func:`build_sources` turns the enabled entries into :class:`~orrange.feeds.base.Source`
objects.
"""

from __future__ import annotations

import random
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from orrange.feeds.base import Backoff, Liveness, Source
from orrange.feeds.binance import DEFAULT_REST_URL as BINANCE_REST
from orrange.feeds.binance import DEFAULT_WS_URL as BINANCE_WS
from orrange.feeds.binance import BinanceSource
from orrange.feeds.coinbase import DEFAULT_WS_URL as COINBASE_WS
from orrange.feeds.coinbase import CoinbaseSource
from orrange.feeds.kraken import DEFAULT_WS_URL as KRAKEN_WS
from orrange.feeds.kraken import KrakenSource
from orrange.feeds.replay import FileReplaySource, RandomWalkSource
from orrange.markets import MarketSpec

__all__ = [
    "FeedConfig",
    "build_source",
    "build_sources",
    "load_sources",
    "parse_sources",
    "shard_sources",
]

SourceKind = Literal["binance", "coinbase", "kraken", "replay", "random_walk"]
_EXCHANGES = ("binance", "coinbase", "kraken")


class FeedConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One configured source.

    Attributes:
        name: unique source name (the ``source`` of its ticks, the ``<SRC>`` of
            ``md.ticks.<SRC>``). kind: implementation. enabled: built or skipped.
        symbols: exchange symbol -> our market (exchange kinds).
        channels: subset of ``trades``, ``book``, ``bbo`` (+ ``candles`` on Binance);
            ``None`` = all the kind supports.
        ws_url, rest_url: endpoints (``None`` = the exchange's public endpoint).
        book_depth: REST snapshot limit (Binance) or subscribed depth (Kraken).
        candle_interval: Binance kline interval.
        backoff_initial_s, backoff_max_s: reconnect backoff bounds (seconds).
        ping_interval_s, ping_timeout_s, idle_timeout_s: liveness (seconds).
        path, market, speed, tick_size, lot_size: ``replay``: file, our market, pace
            (1 = real time, 0 = flat out); the grid defaults to the market's.
        start_prices, seed, interval_ms, max_step_ticks: ``random_walk`` (market -> decimal
            price string; markets are the keys).
        weight: relative weight of the source in the index price (read by the index).
    """

    name: str
    kind: SourceKind
    enabled: bool = True
    symbols: dict[str, str] = msgspec.field(default_factory=dict)
    channels: list[str] | None = None
    ws_url: str | None = None
    rest_url: str | None = None
    book_depth: int = 1000
    candle_interval: str = "1m"
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    idle_timeout_s: float = 30.0
    path: str | None = None
    market: str | None = None
    speed: float = 1.0
    start_prices: dict[str, str] = msgspec.field(default_factory=dict)
    seed: int = 0
    interval_ms: int = 250
    max_step_ticks: int = 5
    weight: int = 1

    def __post_init__(self) -> None:
        if self.kind in _EXCHANGES and not self.symbols:
            raise ValueError(f"source {self.name}: an exchange source needs [source.symbols]")
        if self.kind == "replay" and (not self.path or not self.market):
            raise ValueError(f"source {self.name}: a replay source needs path and market")
        if self.kind == "random_walk" and not self.start_prices:
            raise ValueError(f"source {self.name}: a random walk needs [source.start_prices]")
        if self.weight <= 0:
            raise ValueError(f"source {self.name}: weight must be positive")

    def markets(self) -> list[str]:
        """Our market names this source produces ticks for."""
        if self.kind == "replay":
            return [self.market] if self.market else []
        if self.kind == "random_walk":
            return sorted(self.start_prices)
        return sorted(set(self.symbols.values()))


def parse_sources(data: Mapping[str, Any]) -> list[FeedConfig]:
    """Source configs from a parsed TOML document with a ``source`` array of tables.

    Raises:
        ValueError: a malformed entry (message names it) or a duplicate name.
    """
    out: list[FeedConfig] = []
    for i, raw in enumerate(data.get("source", [])):
        try:
            out.append(msgspec.convert(raw, FeedConfig))
        except (msgspec.ValidationError, ValueError) as exc:
            raise ValueError(f"source #{i + 1}: {exc}") from exc
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate source names in {names}")
    return out


def load_sources(path: str | Path) -> list[FeedConfig]:
    """Read and parse ``config/sources.toml`` (see :func:`parse_sources`).

    Raises:
        OSError: unreadable file. ValueError: invalid TOML or entries.
    """
    with open(path, "rb") as fh:
        try:
            data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: {exc}") from exc
    return parse_sources(data)


def build_source(
    cfg: FeedConfig, markets: Mapping[str, MarketSpec], base_dir: str | Path = "."
) -> Source:
    """Instantiate one configured source (enabled or not).

    Args:
        markets: our markets (needed by ``replay`` and ``random_walk``).
        base_dir: directory a relative replay ``path`` is resolved against.

    Raises:
        ValueError: a market the source needs is not configured.
    """
    live = Liveness(
        Backoff(cfg.backoff_initial_s, cfg.backoff_max_s, rng=random.Random()),
        cfg.ping_interval_s,
        cfg.ping_timeout_s,
        cfg.idle_timeout_s,
    )
    if cfg.kind == "binance":
        return BinanceSource(
            cfg.name,
            cfg.symbols,
            ws_url=cfg.ws_url or BINANCE_WS,
            rest_url=cfg.rest_url or BINANCE_REST,
            channels=cfg.channels or BinanceSource.CHANNELS,
            candle_interval=cfg.candle_interval,
            depth_limit=cfg.book_depth,
            live=live,
        )
    if cfg.kind == "coinbase":
        return CoinbaseSource(
            cfg.name,
            cfg.symbols,
            ws_url=cfg.ws_url or COINBASE_WS,
            channels=cfg.channels or ("trades", "book", "bbo"),
            live=live,
        )
    if cfg.kind == "kraken":
        return KrakenSource(
            cfg.name,
            cfg.symbols,
            ws_url=cfg.ws_url or KRAKEN_WS,
            channels=cfg.channels or ("trades", "book", "bbo"),
            book_depth=cfg.book_depth,
            live=live,
        )
    missing = [m for m in cfg.markets() if m not in markets]
    if missing:
        raise ValueError(f"source {cfg.name}: unknown markets {missing}")
    if cfg.kind == "replay":
        assert cfg.path is not None and cfg.market is not None  # checked in __post_init__
        path = Path(cfg.path)
        if not path.is_absolute():
            path = Path(base_dir) / path
        return FileReplaySource(cfg.name, path, cfg.market, markets[cfg.market], speed=cfg.speed)
    return RandomWalkSource(
        cfg.name,
        {m: markets[m] for m in cfg.start_prices},
        cfg.start_prices,
        seed=cfg.seed,
        interval_ms=cfg.interval_ms,
        max_step_ticks=cfg.max_step_ticks,
    )


def build_sources(
    cfgs: list[FeedConfig], markets: Mapping[str, MarketSpec], base_dir: str | Path = "."
) -> list[Source]:
    """The enabled sources of ``cfgs``, in order (see :func:`build_source`).

    Raises:
        ValueError: as :func:`build_source`.
    """
    return [build_source(c, markets, base_dir) for c in cfgs if c.enabled]


def shard_sources(cfgs: list[FeedConfig], markets: Mapping[str, MarketSpec]) -> list[FeedConfig]:
    """The sources of a feed shard serving ``markets`` (a subset of the configured markets):
    each source keeps only its markets in the shard (an exchange source subscribes to those
    symbols only, a random walk walks those prices only) and a source with none left is left
    out, so that each market's sources run in the one shard that serves it."""
    out: list[FeedConfig] = []
    for cfg in cfgs:
        if not any(m in markets for m in cfg.markets()):
            continue
        if cfg.kind == "random_walk":
            prices = {m: p for m, p in cfg.start_prices.items() if m in markets}
            cfg = msgspec.structs.replace(cfg, start_prices=prices)
        elif cfg.kind in _EXCHANGES:
            symbols = {x: m for x, m in cfg.symbols.items() if m in markets}
            cfg = msgspec.structs.replace(cfg, symbols=symbols)
        out.append(cfg)
    return out
