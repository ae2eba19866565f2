"""PostgreSQL store of the engine: schema migrations, the persister's writer, the API's queries.

* :mod:`orrange.store.migrate`: numbered SQL migrations applied at start (``schema_migrations``).
* :mod:`orrange.store.state`: an order's current state derived from its events.
* :mod:`orrange.store.writer`: :class:`EventWriter`, batched idempotent writes.
* :mod:`orrange.store.queries`: typed read queries (orders, trades, ticker) for the API.

Tables (ticks, lots, quote units and ms UTC as ``bigint``): ``orders`` (current state, key
``(symbol, order_id)``), ``order_events`` (every book event but L2 deltas, key
``(symbol, seq)``, the event's JSON as published in a ``text`` column), ``fills`` (key
``(symbol, seq)``), ``rejections`` (risk's and the book's, key = the ``Nats-Msg-Id``).
"""

from orrange.store.migrate import Migration, MigrationError, load_migrations, migrate
from orrange.store.state import OPEN_STATUSES, OrderRow, OrderStatus, apply_event
from orrange.store.writer import EventWriter, RiskRejection, WriteResult

__all__ = [
    "OPEN_STATUSES",
    "EventWriter",
    "Migration",
    "MigrationError",
    "OrderRow",
    "OrderStatus",
    "RiskRejection",
    "WriteResult",
    "apply_event",
    "load_migrations",
    "migrate",
]
