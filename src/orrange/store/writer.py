"""Batched, idempotent writes of book events and rejections into PostgreSQL.

:meth:`EventWriter.write` stores one batch in **one** transaction:

1. the events (all but ``delta``, which only describe the L2 book) are COPYed into a temporary
   table and inserted into ``order_events`` with ``ON CONFLICT DO NOTHING``; the rows actually
   inserted (``RETURNING``) are the batch's *new* events; an event already stored (a redelivery
   after a crash) is ignored from here on, so writing the same batch twice changes nothing.
   Fast path: the writer remembers the highest ``seq`` stored per symbol (read once per symbol);
   when every event of the batch is above it (the normal in-order flow) they are COPYed
   straight into ``order_events``. Should another writer have stored one of them meanwhile, the
   unique key refuses the COPY, the transaction rolls back and the batch is written again the
   slow way;
2. the new fills are COPYed into ``fills``, the rejections (new book rejections plus the given
   risk rejections) inserted into ``rejections`` with ``ON CONFLICT DO NOTHING``;
3. the orders the new events touch are read, advanced with :func:`~orrange.matching.orders.apply`
   in sequence order, and upserted into ``orders`` (COPY into a temporary table, then
   ``INSERT ... ON CONFLICT DO UPDATE``). The writer keeps the committed rows of the open
   orders it wrote in memory and reads only the others back (one writer per database, the
   persister, owns ``orders``).

Events of one symbol normally arrive in sequence order. If a new event is older than an order's
``last_seq``, or names an order whose ``accepted`` is not stored yet, the order is rebuilt from
every stored event of it instead (a redelivery that overtook later events).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import get_args

import asyncpg
import msgspec

from orrange.matching.events import (
    BookDelta,
    BookStatus,
    Event,
    OrderAccepted,
    OrderFilled,
    OrderRejected,
)
from orrange.matching.orders import OPEN_STATUSES, OrderRecord, apply, order_ids
from orrange.store.queries import order_record

__all__ = ["EventWriter", "RiskRejection", "WriteResult"]

_ORDER_COLUMNS = (
    "symbol, order_id, user_id, client_order_id, side, order_type, tif, price, trigger_price, "
    "quantity, leaves, filled, status, reason, created_ts, updated_ts, last_seq"
)
_EVENT_COLUMNS = ("symbol", "seq", "type", "order_id", "ts", "payload")
_FILL_COLUMNS = (
    "symbol",
    "seq",
    "ts",
    "maker_order_id",
    "taker_order_id",
    "maker_user",
    "taker_user",
    "price",
    "quantity",
    "aggressor",
    "maker_fee",
    "taker_fee",
    "payment_methods",
)
_REJECTION_COLUMNS = (
    "id",
    "source",
    "symbol",
    "seq",
    "order_id",
    "user_id",
    "client_order_id",
    "command",
    "reason",
    "message",
    "ts",
)

_PREPARE = (
    "CREATE TEMP TABLE IF NOT EXISTS tmp_order_events (LIKE order_events) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS tmp_orders (LIKE orders) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS tmp_rejections (LIKE rejections) ON COMMIT DELETE ROWS",
)

_INSERT_EVENTS = (
    "INSERT INTO order_events SELECT * FROM tmp_order_events "
    "ON CONFLICT DO NOTHING RETURNING symbol, seq"
)
_INSERT_REJECTIONS = (
    "INSERT INTO rejections SELECT * FROM tmp_rejections ON CONFLICT DO NOTHING RETURNING id"
)
_UPSERT_ORDERS = (
    f"INSERT INTO orders ({_ORDER_COLUMNS}) SELECT {_ORDER_COLUMNS} FROM tmp_orders "
    "ON CONFLICT (symbol, order_id) DO UPDATE SET "
    "price = EXCLUDED.price, trigger_price = EXCLUDED.trigger_price, "
    "quantity = EXCLUDED.quantity, leaves = EXCLUDED.leaves, filled = EXCLUDED.filled, "
    "status = EXCLUDED.status, reason = EXCLUDED.reason, updated_ts = EXCLUDED.updated_ts, "
    "last_seq = EXCLUDED.last_seq"
)
_SELECT_ORDERS = (
    'SELECT symbol, order_id, user_id AS "user", client_order_id, side, order_type, tif, price, '
    "trigger_price, quantity, leaves, filled, status, reason, created_ts, updated_ts, last_seq "
    "FROM orders "
    "WHERE (symbol, order_id) IN (SELECT * FROM unnest($1::text[], $2::bigint[]))"
)
_ORDER_HISTORY = (
    "SELECT payload::text FROM order_events WHERE symbol = $1 AND seq IN ("
    " SELECT seq FROM order_events WHERE symbol = $1 AND order_id = $2"
    " UNION SELECT seq FROM fills WHERE symbol = $1 AND maker_order_id = $2"
    ") ORDER BY seq"
)

_event_decoder = msgspec.json.Decoder(Event)
#: Open order rows a writer keeps in memory at most (the oldest go first).
_OPEN_ROWS_MAX = 1_000_000
#: event class -> its ``type`` tag (``accepted``, ``fill`` ...)
_TAGS: dict[type, str] = {cls: cls.__struct_config__.tag for cls in get_args(Event)}


@dataclass(frozen=True, slots=True)
class RiskRejection:
    """A rejection published by risk on ``rej.<SYM>``.

    Attributes:
        id: its key in ``rejections``: the message's ``Nats-Msg-Id`` (``rej:<input id>``).
        event: the rejection (``seq`` is 0).
    """

    id: str
    event: OrderRejected


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one :meth:`EventWriter.write` stored (0 everywhere for a pure redelivery).

    Attributes:
        events: new rows of ``order_events``.
        fills: new rows of ``fills``.
        rejections: new rows of ``rejections``.
        orders: rows of ``orders`` inserted or updated.
        rebuilt: orders rebuilt from their stored events (out-of-order delivery).
        orphans: events of orders whose ``accepted`` is not stored (their order rows wait).
    """

    events: int = 0
    fills: int = 0
    rejections: int = 0
    orders: int = 0
    rebuilt: int = 0
    orphans: int = 0


def _event_row(e: Event, payload: str) -> tuple[object, ...]:
    t = type(e)
    if t is OrderFilled:
        oid: int | None = e.taker_order_id  # type: ignore[union-attr]
    elif t is BookStatus:
        oid = None
    else:
        oid = e.order_id or None  # type: ignore[union-attr]
    return (e.symbol, e.seq, _TAGS[t], oid, e.ts, payload)


def _fill_row(f: OrderFilled) -> tuple[object, ...]:
    return (
        f.symbol,
        f.seq,
        f.ts,
        f.maker_order_id,
        f.taker_order_id,
        f.maker_user,
        f.taker_user,
        f.price,
        f.quantity,
        f.aggressor.value,
        f.maker_fee,
        f.taker_fee,
        list(f.payment_methods),
    )


def _rejection_row(rid: str, source: str, r: OrderRejected) -> tuple[object, ...]:
    return (
        rid,
        source,
        r.symbol,
        r.seq,
        r.order_id,
        r.user,
        r.client_order_id,
        r.command,
        r.reason.value,
        r.message,
        r.ts,
    )


class EventWriter:
    """Writes batches of events into the tables of :mod:`orrange.store` over one connection.

    Args:
        conn: a connection to a migrated database (see :func:`orrange.store.migrate`), used
            only by this writer (it holds temporary tables).
    """

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._prepared = False
        #: highest order_events seq per symbol known to be stored (fast-path watermark)
        self._stored_seq: dict[str, int] = {}
        #: committed rows of open orders this writer wrote (saves reading them back)
        self._open_rows: dict[tuple[str, int], OrderRecord] = {}
        #: rows written by the transaction in progress; cached once it committed
        self._written: list[OrderRecord] = []
        # orders with stored events but no stored ``accepted`` yet: rebuilt when it arrives
        self._orphans: set[tuple[str, int]] = set()

    async def _prepare(self) -> None:
        for sql in _PREPARE:
            await self.conn.execute(sql)
        self._prepared = True

    async def write(
        self,
        events: Sequence[tuple[Event, bytes | str]],
        rejections: Sequence[RiskRejection] = (),
    ) -> WriteResult:
        """Store ``events`` (each with its JSON encoding) and risk ``rejections`` atomically.

        Idempotent: events are keyed by ``(symbol, seq)``, rejections by their id; writing
        anything already stored changes nothing.

        Raises:
            asyncpg.PostgresError, OSError: the database refused or the connection broke;
                nothing of the batch is stored.
            OverflowError, asyncpg.DataError: a value does not fit its column (bad input).
        """
        if not self._prepared:
            await self._prepare()
        # de-duplicate within the batch, keep sequence order per symbol
        by_key: dict[tuple[str, int], tuple[Event, str]] = {}
        for e, payload in events:
            if type(e) is BookDelta:
                continue
            text = payload.decode() if isinstance(payload, bytes) else payload
            by_key.setdefault((e.symbol, e.seq), (e, text))
        low: dict[str, int] = {}
        high: dict[str, int] = {}
        for sym, seq in by_key:
            if seq < low.get(sym, seq + 1):
                low[sym] = seq
            if seq > high.get(sym, 0):
                high[sym] = seq
        for sym in low:
            if sym not in self._stored_seq:
                stored = await self.conn.fetchval(
                    "SELECT max(seq) FROM order_events WHERE symbol = $1", sym
                )
                self._stored_seq[sym] = stored or 0
        fast = all(low[sym] > self._stored_seq[sym] for sym in low)
        try:
            result = await self._write(by_key, rejections, fast)
        except asyncpg.UniqueViolationError:
            if not fast:
                raise
            # another writer stored some of these: forget what this one believed
            self._stored_seq.clear()
            self._open_rows.clear()
            result = await self._write(by_key, rejections, False)
        cache = self._open_rows
        for row in self._written:
            key = (row.symbol, row.order_id)
            if row.status in OPEN_STATUSES:
                if key not in cache and len(cache) >= _OPEN_ROWS_MAX:
                    del cache[next(iter(cache))]
                cache[key] = row
            else:
                cache.pop(key, None)
        for sym, seq in high.items():
            if seq > self._stored_seq.get(sym, 0):
                self._stored_seq[sym] = seq
        return result

    async def _write(
        self,
        by_key: dict[tuple[str, int], tuple[Event, str]],
        rejections: Sequence[RiskRejection],
        fast: bool,
    ) -> WriteResult:
        conn = self.conn
        async with conn.transaction():
            new: list[Event] = []
            if by_key and fast:
                await conn.copy_records_to_table(
                    "order_events",
                    records=[_event_row(e, p) for e, p in by_key.values()],
                    columns=_EVENT_COLUMNS,
                )
                new = [by_key[k][0] for k in sorted(by_key)]
            elif by_key:
                await conn.copy_records_to_table(
                    "tmp_order_events",
                    records=[_event_row(e, p) for e, p in by_key.values()],
                    columns=_EVENT_COLUMNS,
                )
                inserted = await conn.fetch(_INSERT_EVENTS)
                keys = sorted((r["symbol"], r["seq"]) for r in inserted)
                new = [by_key[k][0] for k in keys]
            fills = [e for e in new if isinstance(e, OrderFilled)]
            if fills:
                await conn.copy_records_to_table(
                    "fills",
                    records=[_fill_row(f) for f in fills],
                    columns=_FILL_COLUMNS,
                )
            rej_rows = [
                _rejection_row(f"{e.symbol}:{e.seq}", "book", e)
                for e in new
                if isinstance(e, OrderRejected)
            ]
            rej_rows += [_rejection_row(r.id, "risk", r.event) for r in rejections]
            n_rej = 0
            if rej_rows:
                await conn.copy_records_to_table(
                    "tmp_rejections", records=rej_rows, columns=_REJECTION_COLUMNS
                )
                n_rej = len(await conn.fetch(_INSERT_REJECTIONS))
            n_orders, rebuilt, orphans = await self._orders(new)
        return WriteResult(len(new), len(fills), n_rej, n_orders, rebuilt, orphans)

    async def _orders(self, new: Iterable[Event]) -> tuple[int, int, int]:
        self._written = []
        touched: dict[tuple[str, int], list[Event]] = {}
        for e in new:
            for oid in order_ids(e):
                touched.setdefault((e.symbol, oid), []).append(e)
        if not touched:
            return 0, 0, 0
        conn = self.conn
        rows: dict[tuple[str, int], OrderRecord] = {}
        lookup: list[tuple[str, int]] = []
        cache = self._open_rows
        for k, evs in touched.items():
            if type(evs[0]) is not OrderAccepted:
                cached = cache.get(k)
                if cached is None:
                    lookup.append(k)
                else:
                    rows[k] = cached
        if lookup:
            for r in await conn.fetch(
                _SELECT_ORDERS, [k[0] for k in lookup], [k[1] for k in lookup]
            ):
                stored = order_record(r)
                rows[(stored.symbol, stored.order_id)] = stored
        out: list[OrderRecord] = []
        rebuilt = orphans = 0
        for key, evs in touched.items():
            row: OrderRecord | None = rows.get(key)
            first = evs[0]
            if (
                (row is not None and first.seq <= row.last_seq)
                or (row is None and type(first) is not OrderAccepted)
                or key in self._orphans
            ):
                row = await self._rebuild(key)
                rebuilt += 1
            else:
                for e in evs:
                    row = apply(row, e)
            if row is None:
                orphans += len(evs)
                self._orphans.add(key)
                continue
            self._orphans.discard(key)
            out.append(row)
        if out:
            await conn.copy_records_to_table(
                "tmp_orders", records=[msgspec.structs.astuple(r) for r in out]
            )
            await conn.execute(_UPSERT_ORDERS)
        self._written = out
        return len(out), rebuilt, orphans

    async def _rebuild(self, key: tuple[str, int]) -> OrderRecord | None:
        row: OrderRecord | None = None
        for r in await self.conn.fetch(_ORDER_HISTORY, key[0], key[1]):
            row = apply(row, _event_decoder.decode(r[0]))
        return row
