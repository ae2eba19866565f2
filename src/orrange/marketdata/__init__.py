"""Market data core (pure, no I/O): candles, indicators and the index price.

* :mod:`orrange.marketdata.candles`: incremental OHLCV candles from trades (exact integers).
* :mod:`orrange.marketdata.indicators`: SMA, EMA, RSI, MACD, Bollinger Bands, VWAP, ATR per
  symbol and interval (talipp; float outputs).
* :mod:`orrange.marketdata.index`: multi-source index price with MAD outlier rejection,
  staleness eviction, failover and a confidence score (exact integer ticks).
"""
