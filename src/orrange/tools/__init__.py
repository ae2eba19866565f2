"""Operator and developer commands over the pure core, outside it.

- :mod:`.lobster`: ``orrange replay lobster`` (in-process, or ``--via nats`` into a running
  engine);
- :mod:`.matcher_bench`: ``orrange bench matcher``;
- :mod:`.candles`: ``orrange candles build`` (Binance kline CSV from a recorded trades file).
"""
