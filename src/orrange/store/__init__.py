"""PostgreSQL store of the engine: schema migrations, the persister's writer, the API's queries.

The ``orders`` table holds :class:`~orrange.matching.orders.OrderRecord`, folded by
:func:`~orrange.matching.orders.apply`.

* :mod:`orrange.store.migrate`: numbered SQL migrations applied at start (``schema_migrations``).
* :mod:`orrange.store.writer`: :class:`EventWriter`, batched idempotent writes.
* :mod:`orrange.store.queries`: typed read queries (orders, trades, ticker) for the API.

Tables (ticks, lots, quote units and ms UTC as ``bigint``): ``orders`` (current state, key
``(symbol, order_id)``), ``order_events`` (every book event but L2 deltas, key
``(symbol, seq)``, the event's JSON as published in a ``text`` column), ``fills`` (key
``(symbol, seq)``), ``rejections`` (risk's and the book's, key = the ``Nats-Msg-Id``).
"""

from orrange.store.migrate import Migration, MigrationError, load_migrations, migrate
from orrange.store.writer import EventWriter, RiskRejection, WriteResult

__all__ = [
    "EventWriter",
    "Migration",
    "MigrationError",
    "RiskRejection",
    "WriteResult",
    "load_migrations",
    "migrate",
]
