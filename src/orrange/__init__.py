"""Orrange: a real-time P2P crypto trading engine.

The package is split into a pure core (markets, the order book and matching, risk rules,
candles, indicators, alert rules, the settlement state machine, msgspec message types) and the
I/O shells around it (the actor runtime on NATS JetStream, the Litestar API, PostgreSQL, the
EVM escrow watcher). The core never performs I/O and never reads a wall clock: time arrives in
the commands it is given.
"""

__version__ = "0.1.0"
