"""The market-data streams, subjects, message ids and batch encodings of the feed actor.

One NATS message costs about the same whatever its size, so the feed publishes market data in
**batches**: a JSON array per source per flush for ticks, one array of coalesced candles per
flush, one array of index prices per round. All payloads are msgspec JSON; prices in ticks,
quantities in lots, times in ms UTC unless said otherwise.

Stream ``MD`` (history: a day, at most :data:`MD_MAX_PER_SUBJECT` messages per subject, direct
get allowed):

======================== ======================================================================
Subject                  Payload
======================== ======================================================================
``md.indexes``           every index price of one feed round: a JSON array of
                         :class:`~orrange.marketdata.index.IndexPrice` (each names its
                         ``symbol``), one message per round (every ``index_interval_ms``,
                         100 ms; split into several only past :data:`MAX_INDEXES_PER_MSG`
                         markets). ``Nats-Msg-Id`` :func:`indexes_msg_id`. Decode with
                         :func:`decode_indexes`.
``md.index.<SYM>``       the latest :class:`~orrange.marketdata.index.IndexPrice` of one
                         market, one object, so the last one is a direct get away (the API's
                         snapshot reads it). Not every value: each round publishes it for at
                         most :data:`INDEX_LATEST_PER_ROUND` markets, taking turns (up to 100
                         markets every round; 1,000 markets each once a second at the default
                         100 ms round). Follow ``md.indexes`` for every value. ``Nats-Msg-Id``
                         :func:`index_msg_id`.
``md.candle.<IV>.<SYM>`` one :class:`~orrange.marketdata.candles.CandleClosed` per message:
                         the final candle of each window (the alerter's signals, history).
                         ``Nats-Msg-Id`` :func:`candle_msg_id`.
======================== ======================================================================

Stream ``MD_LIVE`` (the live view: :data:`MD_LIVE_MAX_AGE_MS`, at most :data:`MD_LIVE_MAX_BYTES`
bytes; nothing reads it durably):

======================== ======================================================================
Subject                  Payload
======================== ======================================================================
``md.ticks.<SRC>``       the normalized ticks of source ``SRC`` received since the previous
                         flush, in arrival order: a JSON array of
                         :data:`~orrange.marketdata.ticks.AnyTick` (tag ``kind``; exact decimal
                         strings as the exchange sent them; each names its ``symbol``), at
                         most :data:`MAX_TICKS_PER_MSG` per message. ``Nats-Msg-Id``
                         :func:`ticks_msg_id`. Decode with :func:`decode_ticks`.
``md.candles``           the candles changed since the previous flush, coalesced (the latest
                         version of each window only): a JSON array of
                         :class:`~orrange.marketdata.candles.CandleClosed` (windows that ended,
                         in the order they ended) followed by
                         :class:`~orrange.marketdata.candles.CandleUpdated` (open windows, by
                         symbol); at most :data:`MAX_CANDLES_PER_MSG` per message. Every flush
                         (``flush_interval_ms``, 20 ms) sends the closed candles and the finest
                         interval's open candle of each market that traded, first thing; the
                         coarser open candles of a market that traded follow in messages of
                         their own once every ``coarse_interval_ms`` (1 s; the markets take
                         turns over the flushes). ``Nats-Msg-Id``
                         :func:`candles_msg_id`. Decode with :func:`decode_candles`.
======================== ======================================================================

A consumer that needs every candle version of a channel reads ``md.candles``; a consumer of
final candles only reads ``md.candle.>`` (which also keeps a day of history).

The feed also reads ``EVENTS`` (durable :data:`FEED_DURABLE`, or a shard's actor name) for
its own fills, and publishes ``SetReferencePrice`` on ``book.in.<SYM>``
(:func:`orrange.wire.engine.reference_msg_id`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from orrange.marketdata.candles import CandleEvent
from orrange.marketdata.index import IndexPrice
from orrange.marketdata.ticks import AnyTick
from orrange.wire.spec import StreamSpec

__all__ = [
    "FEED_DURABLE",
    "INDEX_LATEST_PER_ROUND",
    "MAX_CANDLES_PER_MSG",
    "MAX_INDEXES_PER_MSG",
    "MAX_TICKS_PER_MSG",
    "MD",
    "MD_CANDLES_SUBJECT",
    "MD_CANDLE_PREFIX",
    "MD_INDEXES_SUBJECT",
    "MD_INDEX_PREFIX",
    "MD_LIVE",
    "MD_LIVE_MAX_AGE_MS",
    "MD_LIVE_MAX_BYTES",
    "MD_MAX_PER_SUBJECT",
    "MD_TICKS_PREFIX",
    "candle_msg_id",
    "candle_subject",
    "candles_msg_id",
    "decode_candles",
    "decode_indexes",
    "decode_ticks",
    "index_msg_id",
    "index_subject",
    "indexes_msg_id",
    "ticks_msg_id",
    "ticks_subject",
]

#: Durable consumer of the feed on ``EVENTS`` (the default actor name; a feed shard's durable
#: consumer is its actor name, e.g. ``feed-b``).
FEED_DURABLE = "feed"

MD_TICKS_PREFIX = "md.ticks"
MD_INDEX_PREFIX = "md.index"
MD_INDEXES_SUBJECT = "md.indexes"
MD_CANDLE_PREFIX = "md.candle"
MD_CANDLES_SUBJECT = "md.candles"
#: Messages kept per subject of stream ``MD``.
MD_MAX_PER_SUBJECT = 10_000
#: How long stream ``MD_LIVE`` keeps ticks and candle updates (ms).
MD_LIVE_MAX_AGE_MS = 900_000
#: Size cap of stream ``MD_LIVE`` (bytes; the oldest messages go first).
MD_LIVE_MAX_BYTES = 2 * 1024**3
#: Ticks per ``md.ticks.<SRC>`` message at most (also split further to stay under the
#: server's maximum payload).
MAX_TICKS_PER_MSG = 2_000
#: Candles per ``md.candles`` message at most.
MAX_CANDLES_PER_MSG = 2_000
#: Index prices per ``md.indexes`` message at most.
MAX_INDEXES_PER_MSG = 5_000
#: ``md.index.<SYM>`` messages per round at most (markets beyond take turns).
INDEX_LATEST_PER_ROUND = 100

MD = StreamSpec(
    name="MD",
    subjects=(f"{MD_INDEX_PREFIX}.>", MD_INDEXES_SUBJECT, f"{MD_CANDLE_PREFIX}.>"),
    max_age_ms=86_400_000,
    max_msgs_per_subject=MD_MAX_PER_SUBJECT,
    duplicate_window_ms=120_000,
    description="market data: index prices (per round and latest per market), final candles",
)
MD_LIVE = StreamSpec(
    name="MD_LIVE",
    subjects=(f"{MD_TICKS_PREFIX}.>", MD_CANDLES_SUBJECT),
    max_age_ms=MD_LIVE_MAX_AGE_MS,
    max_bytes=MD_LIVE_MAX_BYTES,
    duplicate_window_ms=120_000,
    description="live market data: tick batches per source, coalesced candle updates",
)

_ticks_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(list[AnyTick])
_candles_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(list[CandleEvent])
_indexes_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(list[IndexPrice])


def ticks_subject(source: str) -> str:
    """``md.ticks.<SRC>``: the batches of normalized ticks of ``source``."""
    return f"{MD_TICKS_PREFIX}.{source}"


def index_subject(symbol: str) -> str:
    """``md.index.<SYM>``: the latest index price of ``symbol``."""
    return f"{MD_INDEX_PREFIX}.{symbol}"


def candle_subject(interval: str, symbol: str) -> str:
    """``md.candle.<IV>.<SYM>``: the final candles of ``symbol`` at ``interval``."""
    return f"{MD_CANDLE_PREFIX}.{interval}.{symbol}"


def ticks_msg_id(source: str, feed: str, run: int, n: int) -> str:
    """``ticks:<SRC>:<feed>:<run>:<n>``: the ``Nats-Msg-Id`` of the ``n``-th message of feed
    actor ``feed``'s run ``run`` (its start time, ms), a batch of ticks of ``source``."""
    return f"ticks:{source}:{feed}:{run}:{n}"


def candles_msg_id(feed: str, run: int, n: int) -> str:
    """``candles:<feed>:<run>:<n>``: the ``Nats-Msg-Id`` of the ``n``-th message of feed actor
    ``feed``'s run ``run`` (its start time, ms), a batch of candles on ``md.candles``."""
    return f"candles:{feed}:{run}:{n}"


def candle_msg_id(interval: str, symbol: str, open_time: int) -> str:
    """``candle:<IV>:<SYM>:<open_time>:final``: the ``Nats-Msg-Id`` of the final candle of the
    window opening at ``open_time`` (ms UTC) on ``md.candle.<IV>.<SYM>``."""
    return f"candle:{interval}:{symbol}:{open_time}:final"


def indexes_msg_id(feed: str, ts: int, part: int) -> str:
    """``indexes:<feed>:<ts>:<part>``: the ``Nats-Msg-Id`` of part ``part`` (0-based) of feed
    actor ``feed``'s round at ``ts`` (ms UTC) on ``md.indexes``."""
    return f"indexes:{feed}:{ts}:{part}"


def index_msg_id(symbol: str, ts: int) -> str:
    """``index:<SYM>:<ts>``: the ``Nats-Msg-Id`` of the index price of ``symbol`` at ``ts``
    (ms UTC) on ``md.index.<SYM>``."""
    return f"index:{symbol}:{ts}"


def decode_ticks(data: bytes) -> list[AnyTick]:
    """The ticks of one ``md.ticks.<SRC>`` message.

    Raises:
        msgspec.DecodeError, msgspec.ValidationError: not an array of ticks.
    """
    value: list[AnyTick] = _ticks_decoder.decode(data)
    return value


def decode_candles(data: bytes) -> list[CandleEvent]:
    """The candles of one ``md.candles`` message.

    Raises:
        msgspec.DecodeError, msgspec.ValidationError: not an array of candles.
    """
    value: list[CandleEvent] = _candles_decoder.decode(data)
    return value


def decode_indexes(data: bytes) -> list[IndexPrice]:
    """The index prices of one ``md.indexes`` message.

    Raises:
        msgspec.DecodeError, msgspec.ValidationError: not an array of index prices.
    """
    value: list[IndexPrice] = _indexes_decoder.decode(data)
    return value
