"""PostgreSQL queries of price alerts, notifications, signals and signal subscriptions.

Tables of migration ``0004_alerts``. Prices are integer **ticks**, times integer **ms UTC**;
decimal conversion is the API's job. ``db`` is an ``asyncpg`` pool or connection.

The alerter's writes go through :func:`write_alerter_batch`: notifications, signals, alert
states, the last price per book and the input cursors in **one** transaction. Notification and
signal ids are deterministic (:mod:`orrange.wire.alerts`) and inserted with ``ON CONFLICT DO
NOTHING``, so writing a redelivered input again changes nothing.

Errors: :class:`AlertNotFound` means the alert (or subscription) does not exist or belongs to
another user (the API answers 404 either way, not leaking existence).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from orrange.alerts.rules import Condition, PriceAlert, TriggerSource
from orrange.alerts.signals import Signal, SignalSubscription, SignalType
from orrange.wire.alerts import Notification, SignalRecord

__all__ = [
    "MAX_LIMIT",
    "AlertNotFound",
    "AlertRow",
    "AlertState",
    "BookPrice",
    "Db",
    "SubscriptionRow",
    "create_alert",
    "create_subscription",
    "delete_alert",
    "delete_subscription",
    "get_alert",
    "list_alerts",
    "list_notifications",
    "list_signals",
    "list_subscriptions",
    "load_alert",
    "load_books",
    "load_cursors",
    "load_live_alerts",
    "load_subscription",
    "load_subscriptions",
    "notifications_by_source",
    "signals_by_source",
    "write_alerter_batch",
]

Db = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy

#: Largest ``limit`` of the list queries.
MAX_LIMIT = 1000

AlertStatusName = Literal["active", "fired", "expired", "deleted"]


class AlertNotFound(LookupError):
    """No such alert or subscription for this user."""


class AlertRow(msgspec.Struct, frozen=True, kw_only=True):
    """A stored alert: the :class:`PriceAlert` and its state.

    Attributes:
        alert: the rule (ticks, ms UTC).
        status: ``active``, ``fired`` (a one-shot alert that fired), ``expired`` or
            ``deleted``.
        rearm_after: direction of the last fire of a re-arming alert waiting for its band
            (``"up"``/``"down"``), ``None`` while armed.
        fire_count: how many times it fired.
        created_at, updated_at: ms UTC.
    """

    alert: PriceAlert
    status: str
    rearm_after: Literal["up", "down"] | None
    fire_count: int
    created_at: int
    updated_at: int


class AlertState(msgspec.Struct, frozen=True, kw_only=True):
    """The alerter's new state of one alert after a batch.

    Attributes:
        alert_id: the alert.
        status: ``active``, ``fired`` or ``expired``.
        rearm_after: as in :class:`AlertRow`.
        fire_count: total fires so far.
    """

    alert_id: int
    status: str
    rearm_after: str | None
    fire_count: int


class BookPrice(msgspec.Struct, frozen=True):
    """The last price (ticks) the alerter saw for ``(market, reference)``, at ``ts`` (ms)."""

    market: str
    reference: TriggerSource
    price: int
    ts: int


class SubscriptionRow(msgspec.Struct, frozen=True, kw_only=True):
    """A stored signal subscription (``active`` false once deleted); ``created_at`` ms UTC."""

    subscription: SignalSubscription
    active: bool
    created_at: int


# ------------------------------------------------------------------------------ alerts
_ALERT_COLS = (
    "id, user_id, market, condition, reference, target, expires_at, rearm, hysteresis,"
    " status, rearm_after, fire_count, created_at, updated_at"
)


def _alert_row(r: asyncpg.Record) -> AlertRow:
    return AlertRow(
        alert=PriceAlert(
            id=r["id"],
            user=r["user_id"],
            market=r["market"],
            condition=Condition(r["condition"]),
            reference=TriggerSource(r["reference"]),
            target=r["target"],
            expires_at=r["expires_at"],
            rearm=r["rearm"],
            hysteresis=r["hysteresis"],
        ),
        status=r["status"],
        rearm_after=r["rearm_after"],
        fire_count=r["fire_count"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


async def create_alert(db: Db, alert: PriceAlert, now_ms: int) -> AlertRow:
    """Insert ``alert`` (its ``id`` is ignored; the store assigns one); returns the row."""
    r = await db.fetchrow(
        f"INSERT INTO alerts (user_id, market, condition, reference, target, expires_at, rearm,"
        f" hysteresis, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)"
        f" RETURNING {_ALERT_COLS}",
        alert.user,
        alert.market,
        str(alert.condition),
        str(alert.reference),
        alert.target,
        alert.expires_at,
        alert.rearm,
        alert.hysteresis,
        now_ms,
    )
    assert r is not None  # INSERT ... RETURNING returns the row
    return _alert_row(r)


async def get_alert(db: Db, user: str, alert_id: int) -> AlertRow:
    """One of ``user``'s alerts.

    Raises:
        AlertNotFound: no such alert, or it belongs to another user.
    """
    r = await db.fetchrow(
        f"SELECT {_ALERT_COLS} FROM alerts WHERE id = $1 AND user_id = $2", alert_id, user
    )
    if r is None:
        raise AlertNotFound(alert_id)
    return _alert_row(r)


async def list_alerts(
    db: Db, user: str, *, status: str | None = None, limit: int = 100, before_id: int | None = None
) -> list[AlertRow]:
    """``user``'s alerts, newest (highest id) first, optionally of one ``status``.

    Raises:
        ValueError: ``limit`` outside ``[1, MAX_LIMIT]``.
    """
    _check_limit(limit)
    rows = await db.fetch(
        f"SELECT {_ALERT_COLS} FROM alerts WHERE user_id = $1"
        " AND ($2::text IS NULL OR status = $2) AND ($3::bigint IS NULL OR id < $3)"
        " ORDER BY id DESC LIMIT $4",
        user,
        status,
        before_id,
        limit,
    )
    return [_alert_row(r) for r in rows]


async def delete_alert(db: Db, user: str, alert_id: int, now_ms: int) -> AlertRow:
    """Mark one of ``user``'s alerts ``deleted`` (a no-op when it is no longer active).

    Returns:
        the alert's row after the call.

    Raises:
        AlertNotFound: no such alert, or it belongs to another user.
    """
    r = await db.fetchrow(
        f"UPDATE alerts SET status = 'deleted', rearm_after = NULL, updated_at = $3"
        f" WHERE id = $1 AND user_id = $2 AND status = 'active' RETURNING {_ALERT_COLS}",
        alert_id,
        user,
        now_ms,
    )
    if r is None:
        return await get_alert(db, user, alert_id)
    return _alert_row(r)


async def load_alert(db: Db, alert_id: int) -> AlertRow | None:
    """An alert by id (any user, any status), or ``None``."""
    r = await db.fetchrow(f"SELECT {_ALERT_COLS} FROM alerts WHERE id = $1", alert_id)
    return _alert_row(r) if r is not None else None


async def load_live_alerts(db: Db) -> list[AlertRow]:
    """Every ``active`` alert, by id (what the alerter loads at start)."""
    rows = await db.fetch(f"SELECT {_ALERT_COLS} FROM alerts WHERE status = 'active' ORDER BY id")
    return [_alert_row(r) for r in rows]


_snapshot_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(list[tuple[str, TriggerSource, int, int]])


async def load_books(db: Db) -> list[BookPrice]:
    """The alerter's last price per ``(market, reference)``: the stored snapshot, else the
    rows of ``alerter_books``."""
    snap = await db.fetchval("SELECT books FROM alerter_book_snapshot WHERE id = 1")
    if snap is not None:
        return [BookPrice(*b) for b in _snapshot_decoder.decode(snap)]
    rows = await db.fetch("SELECT market, reference, last_price, ts FROM alerter_books")
    return [
        BookPrice(r["market"], TriggerSource(r["reference"]), r["last_price"], r["ts"])
        for r in rows
    ]


async def load_cursors(db: Db) -> dict[str, int]:
    """The last applied stream sequence per alerter consumer (and the other rows of
    ``alerter_cursors``: ``evt:<SYM>`` is the last applied event ``seq`` of a book)."""
    rows = await db.fetch("SELECT consumer, seq FROM alerter_cursors")
    return {r["consumer"]: r["seq"] for r in rows}


# ------------------------------------------------------------------------------ the batch
_NOTE_INSERT = """
INSERT INTO notifications (id, user_id, kind, market, ts, alert_id, condition, reference,
                           target, price, direction, final, signal_id, source, source_seq)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                     $6::bigint[], $7::text[], $8::text[], $9::bigint[], $10::bigint[],
                     $11::text[], $12::boolean[], $13::text[], $14::text[], $15::bigint[])
ON CONFLICT (id) DO NOTHING
"""
_NOTE_COPY_COLS = (
    "id",
    "user_id",
    "kind",
    "market",
    "ts",
    "alert_id",
    "condition",
    "reference",
    "target",
    "price",
    "direction",
    "final",
    "signal_id",
    "source",
    "source_seq",
)

_BATCH_SQL = """
WITH sig AS (
    INSERT INTO signals (id, symbol, interval, type, open_time, score, value, explanation,
                         source, source_seq)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                         $6::float8[], $7::float8[], $8::text[], $9::text[], $10::bigint[])
    ON CONFLICT (id) DO NOTHING
), st AS (
    UPDATE alerts AS a
    SET status = u.status, rearm_after = u.rearm_after, fire_count = u.fire_count,
        updated_at = $15
    FROM unnest($11::bigint[], $12::text[], $13::text[], $14::bigint[])
        AS u(id, status, rearm_after, fire_count)
    WHERE a.id = u.id AND a.status = 'active'
), bk AS (
    INSERT INTO alerter_books (market, reference, last_price, ts)
    SELECT * FROM unnest($16::text[], $17::text[], $18::bigint[], $19::bigint[])
    ON CONFLICT (market, reference)
    DO UPDATE SET last_price = EXCLUDED.last_price, ts = EXCLUDED.ts
), snap AS (
    INSERT INTO alerter_book_snapshot (id, books) SELECT 1, $22::bytea WHERE $22 IS NOT NULL
    ON CONFLICT (id) DO UPDATE SET books = EXCLUDED.books
)
INSERT INTO alerter_cursors (consumer, seq)
SELECT * FROM unnest($20::text[], $21::bigint[])
ON CONFLICT (consumer) DO UPDATE SET seq = GREATEST(alerter_cursors.seq, EXCLUDED.seq)
"""


def _note_record(n: Notification) -> tuple[Any, ...]:
    return (
        n.id,
        n.user,
        n.kind,
        n.market,
        n.ts,
        n.alert_id,
        n.condition,
        n.reference,
        n.target,
        n.price,
        n.direction,
        n.final,
        n.signal_id,
        n.source,
        n.source_seq,
    )


async def write_alerter_batch(
    conn: asyncpg.Connection | PoolConnectionProxy[Any],
    *,
    notifications: Sequence[Notification] = (),
    signals: Sequence[SignalRecord] = (),
    states: Iterable[AlertState] = (),
    books: Iterable[BookPrice] = (),
    cursors: Iterable[tuple[str, int]] = (),
    book_snapshot: Sequence[BookPrice] | None = None,
    now_ms: int,
) -> None:
    """Store one alerter batch atomically, in one transaction: the notifications by binary
    ``COPY`` (a tenth of the client CPU of array parameters), everything else in **one** SQL
    statement (data-modifying CTEs over arrays).

    Args:
        conn: a connection (not a pool: the transaction needs one session).
        notifications: inserted unless their id exists (the ``COPY`` fast path assumes new ids,
            as the alerter's are; on a conflict the batch is written again with
            ``INSERT ... ON CONFLICT DO NOTHING``).
        signals: inserted unless their id exists.
        states: alert states to set, at most one per alert; an alert that is no longer
            ``active`` (deleted meanwhile) keeps its status.
        books: last prices to upsert, at most one per ``(market, reference)``.
        book_snapshot: every last price, stored as one row (replaces the previous snapshot;
            :func:`load_books` prefers it to ``books``).
        cursors: ``(key, seq)`` rows of ``alerter_cursors``, only raised, never lowered: a
            consumer's last applied input sequence (key = durable name) or the last applied
            event ``seq`` of a book (key ``evt:<SYM>``).
        now_ms: ``updated_at`` of the changed alerts.
    """
    ns = list(notifications)
    snap = None
    if book_snapshot is not None:
        snap = _snapshot_encoder.encode(
            [(b.market, b.reference, b.price, b.ts) for b in book_snapshot]
        )
    try:
        async with conn.transaction():
            if ns:
                await conn.copy_records_to_table(
                    "notifications", records=[_note_record(n) for n in ns], columns=_NOTE_COPY_COLS
                )
            await _write_rest(conn, signals, states, books, cursors, snap, now_ms)
    except asyncpg.UniqueViolationError:
        async with conn.transaction():
            await conn.execute(_NOTE_INSERT, *(list(col) for col in zip(*map(_note_record, ns))))
            await _write_rest(conn, signals, states, books, cursors, snap, now_ms)


async def _write_rest(
    conn: asyncpg.Connection | PoolConnectionProxy[Any],
    sg: Sequence[SignalRecord],
    states: Iterable[AlertState],
    books: Iterable[BookPrice],
    cursors: Iterable[tuple[str, int]],
    snap: bytes | None,
    now_ms: int,
) -> None:
    st = list(states)
    bs = list(books)
    cs = list(cursors)
    if not (sg or st or bs or cs or snap is not None):
        return
    await conn.execute(
        _BATCH_SQL,
        [x.id for x in sg],
        [x.signal.symbol for x in sg],
        [x.signal.interval for x in sg],
        [str(x.signal.type) for x in sg],
        [x.signal.open_time for x in sg],
        [x.signal.score for x in sg],
        [x.signal.value for x in sg],
        [x.signal.explanation for x in sg],
        [x.source for x in sg],
        [x.source_seq for x in sg],
        [x.alert_id for x in st],
        [x.status for x in st],
        [x.rearm_after for x in st],
        [x.fire_count for x in st],
        now_ms,
        [b.market for b in bs],
        [str(b.reference) for b in bs],
        [b.price for b in bs],
        [b.ts for b in bs],
        [c[0] for c in cs],
        [c[1] for c in cs],
        snap,
    )


_NOTE_COLS = (
    "n.id, n.user_id, n.kind, n.market, n.ts, n.alert_id, n.condition, n.reference, n.target,"
    " n.price, n.direction, n.final, n.signal_id, n.source, n.source_seq,"
    " s.symbol AS s_symbol, s.interval AS s_interval, s.type AS s_type,"
    " s.open_time AS s_open_time, s.score AS s_score, s.value AS s_value,"
    " s.explanation AS s_explanation"
)


def _note(r: asyncpg.Record) -> Notification:
    sig = None
    if r["s_symbol"] is not None:
        sig = Signal(
            SignalType(r["s_type"]),
            r["s_symbol"],
            r["s_interval"],
            r["s_open_time"],
            r["s_score"],
            r["s_value"],
            r["s_explanation"],
        )
    return Notification(
        id=r["id"],
        user=r["user_id"],
        kind=r["kind"],
        market=r["market"],
        ts=r["ts"],
        alert_id=r["alert_id"],
        condition=r["condition"],
        reference=r["reference"],
        target=r["target"],
        price=r["price"],
        direction=r["direction"],
        final=r["final"],
        signal_id=r["signal_id"],
        signal=sig,
        source=r["source"],
        source_seq=r["source_seq"],
    )


async def notifications_by_source(
    db: Db, source: str, first_seq: int, last_seq: int
) -> list[Notification]:
    """Notifications produced by inputs ``first_seq..last_seq`` (inclusive) of consumer
    ``source``, by input sequence then id (what a redelivered batch publishes again)."""
    rows = await db.fetch(
        f"SELECT {_NOTE_COLS} FROM notifications n LEFT JOIN signals s ON s.id = n.signal_id"
        " WHERE n.source = $1 AND n.source_seq BETWEEN $2 AND $3 ORDER BY n.source_seq, n.id",
        source,
        first_seq,
        last_seq,
    )
    return [_note(r) for r in rows]


async def list_notifications(
    db: Db, user: str, *, limit: int = 100, before_ts: int | None = None
) -> list[Notification]:
    """``user``'s notifications, newest first (``ts`` then id, descending), those with
    ``ts < before_ts`` when given.

    Raises:
        ValueError: ``limit`` outside ``[1, MAX_LIMIT]``.
    """
    _check_limit(limit)
    rows = await db.fetch(
        f"SELECT {_NOTE_COLS} FROM notifications n LEFT JOIN signals s ON s.id = n.signal_id"
        " WHERE n.user_id = $1 AND ($2::bigint IS NULL OR n.ts < $2)"
        " ORDER BY n.ts DESC, n.id DESC LIMIT $3",
        user,
        before_ts,
        limit,
    )
    return [_note(r) for r in rows]


# ------------------------------------------------------------------------------ signals
async def list_signals(
    db: Db,
    *,
    symbol: str | None = None,
    type: str | None = None,
    since: int | None = None,
    limit: int = 100,
) -> list[SignalRecord]:
    """Stored signals, newest bar first, filtered by ``symbol``, ``type`` and
    ``open_time >= since`` (ms UTC).

    Raises:
        ValueError: ``limit`` outside ``[1, MAX_LIMIT]``.
    """
    _check_limit(limit)
    rows = await db.fetch(
        "SELECT id, symbol, interval, type, open_time, score, value, explanation, source,"
        " source_seq FROM signals WHERE ($1::text IS NULL OR symbol = $1)"
        " AND ($2::text IS NULL OR type = $2) AND ($3::bigint IS NULL OR open_time >= $3)"
        " ORDER BY open_time DESC, id DESC LIMIT $4",
        symbol,
        type,
        since,
        limit,
    )
    return [_signal_record(r) for r in rows]


def _signal_record(r: asyncpg.Record) -> SignalRecord:
    return SignalRecord(
        id=r["id"],
        signal=Signal(
            SignalType(r["type"]),
            r["symbol"],
            r["interval"],
            r["open_time"],
            r["score"],
            r["value"],
            r["explanation"],
        ),
        source=r["source"],
        source_seq=r["source_seq"],
    )


_SUB_COLS = "id, user_id, types, symbols, intervals, min_score, active, created_at"


def _sub_row(r: asyncpg.Record) -> SubscriptionRow:
    return SubscriptionRow(
        subscription=SignalSubscription(
            id=r["id"],
            user=r["user_id"],
            types=frozenset(SignalType(t) for t in r["types"]),
            symbols=frozenset(r["symbols"]),
            intervals=frozenset(r["intervals"]),
            min_score=r["min_score"],
        ),
        active=r["active"],
        created_at=r["created_at"],
    )


async def create_subscription(db: Db, sub: SignalSubscription, now_ms: int) -> SubscriptionRow:
    """Insert ``sub`` (its ``id`` is ignored; the store assigns one); returns the row."""
    r = await db.fetchrow(
        f"INSERT INTO signal_subscriptions (user_id, types, symbols, intervals, min_score,"
        f" created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_SUB_COLS}",
        sub.user,
        sorted(str(t) for t in sub.types),
        sorted(sub.symbols),
        sorted(sub.intervals),
        sub.min_score,
        now_ms,
    )
    assert r is not None  # INSERT ... RETURNING returns the row
    return _sub_row(r)


async def list_subscriptions(db: Db, user: str) -> list[SubscriptionRow]:
    """``user``'s active signal subscriptions, by id."""
    rows = await db.fetch(
        f"SELECT {_SUB_COLS} FROM signal_subscriptions WHERE user_id = $1 AND active ORDER BY id",
        user,
    )
    return [_sub_row(r) for r in rows]


async def delete_subscription(db: Db, user: str, sub_id: int) -> None:
    """Deactivate one of ``user``'s subscriptions.

    Raises:
        AlertNotFound: no such active subscription of ``user``.
    """
    r = await db.fetchrow(
        "UPDATE signal_subscriptions SET active = false WHERE id = $1 AND user_id = $2"
        " AND active RETURNING id",
        sub_id,
        user,
    )
    if r is None:
        raise AlertNotFound(sub_id)


async def load_subscription(db: Db, sub_id: int) -> SubscriptionRow | None:
    """A subscription by id (any user, active or not), or ``None``."""
    r = await db.fetchrow(f"SELECT {_SUB_COLS} FROM signal_subscriptions WHERE id = $1", sub_id)
    return _sub_row(r) if r is not None else None


async def load_subscriptions(db: Db) -> list[SubscriptionRow]:
    """Every active subscription, by id (what the alerter loads at start)."""
    rows = await db.fetch(f"SELECT {_SUB_COLS} FROM signal_subscriptions WHERE active ORDER BY id")
    return [_sub_row(r) for r in rows]


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be in [1, {MAX_LIMIT}]")


async def signals_by_source(
    db: Db, source: str, first_seq: int, last_seq: int
) -> list[SignalRecord]:
    """Signals produced by inputs ``first_seq..last_seq`` (inclusive) of consumer ``source``,
    by input sequence then id (what a redelivered candle batch publishes again)."""
    rows = await db.fetch(
        "SELECT id, symbol, interval, type, open_time, score, value, explanation, source,"
        " source_seq FROM signals WHERE source = $1 AND source_seq BETWEEN $2 AND $3"
        " ORDER BY source_seq, id",
        source,
        first_seq,
        last_seq,
    )
    return [_signal_record(r) for r in rows]
