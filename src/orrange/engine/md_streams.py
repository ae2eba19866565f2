"""The market-data stream and subjects of the feed actor (``docs/architecture.md``).

Stream ``MD`` captures ``md.>`` (msgspec JSON; prices in ticks unless said otherwise):

* ``md.tick.<SRC>.<SYM>``: normalized ticks of source ``SRC`` (:mod:`orrange.feeds.ticks`, exact
  decimal strings as the exchange sent them);
* ``md.index.<SYM>``: :class:`~orrange.marketdata.index.IndexPrice` (ticks);
* ``md.candle.<IV>.<SYM>``: :class:`~orrange.marketdata.candles.CandleUpdated` /
  :class:`~orrange.marketdata.candles.CandleClosed` (ticks, lots, quote units).

Market data is a live view, not a ledger: the stream keeps a day (``max_age_ms``) and at most
:data:`MD_MAX_PER_SUBJECT` messages per subject, so the last index of a market is always one
direct get away (``allow_direct``).
"""

from __future__ import annotations

from orrange.runtime import StreamSpec

__all__ = [
    "MD",
    "MD_CANDLE_PREFIX",
    "MD_INDEX_PREFIX",
    "MD_MAX_PER_SUBJECT",
    "MD_TICK_PREFIX",
    "candle_subject",
    "index_subject",
    "tick_subject",
]

MD_TICK_PREFIX = "md.tick"
MD_INDEX_PREFIX = "md.index"
MD_CANDLE_PREFIX = "md.candle"
#: Messages kept per subject of stream ``MD``.
MD_MAX_PER_SUBJECT = 10_000

MD = StreamSpec(
    name="MD",
    subjects=("md.>",),
    max_age_ms=86_400_000,
    max_msgs_per_subject=MD_MAX_PER_SUBJECT,
    duplicate_window_ms=120_000,
    description="market data: ticks per source, index prices, candles",
)


def tick_subject(source: str, symbol: str) -> str:
    """``md.tick.<SRC>.<SYM>``: the normalized ticks of ``source`` for market ``symbol``."""
    return f"{MD_TICK_PREFIX}.{source}.{symbol}"


def index_subject(symbol: str) -> str:
    """``md.index.<SYM>``: the index price of ``symbol``."""
    return f"{MD_INDEX_PREFIX}.{symbol}"


def candle_subject(interval: str, symbol: str) -> str:
    """``md.candle.<IV>.<SYM>``: candle updates and closes of ``symbol`` at ``interval``."""
    return f"{MD_CANDLE_PREFIX}.{interval}.{symbol}"
