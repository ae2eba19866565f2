"""Price alerts, notifications, signals and signal subscriptions over HTTP and WebSocket.

Routes (under ``/api/v1``; all but ``/signals`` need ``Authorization: Bearer <JWT>`` and act on
the caller's own rows only; others' ids answer 404):

================================================ ===========================================
``POST   /alerts``                               create (body :class:`AlertIn`; 201)
``GET    /alerts``                               my alerts, newest first (``status``,
                                                 ``limit``, ``before_id``)
``GET    /alerts/{id}``                          one of my alerts
``DELETE /alerts/{id}``                          delete (200 with the alert, status
                                                 ``deleted``; a fired or expired alert keeps
                                                 its status)
``GET    /notifications``                        my notifications, newest first (``limit``,
                                                 ``before_ts``)
``GET    /signals``                              market signals (``symbol``, ``type``,
                                                 ``since`` ms UTC, ``limit``); public
``POST   /signal-subscriptions``                 subscribe (body :class:`SubscriptionIn`; 201)
``GET    /signal-subscriptions``                 my active subscriptions
``DELETE /signal-subscriptions/{id}``            unsubscribe (204)
================================================ ===========================================

Prices are decimal strings on the market's tick grid in and out; times are ms UTC. A created or
deleted alert (or subscription) is stored in PostgreSQL, then announced to the alerter on
``alerts.cmd`` (:class:`orrange.wire.alerts.AlertCommand`); when that publish fails the
change is undone and the answer is 503.

WebSocket (:class:`AlertFanout`, the ``signals`` channel registered by
:func:`~orrange.api.app.create_app`): a user's
notifications arrive on their private ``orders`` channel as ``{"type": "notification",
"channel": "orders", ...}`` (fields of :class:`NotificationOut`), and the public channel
``signals`` carries ``{"type": "signal", "channel": "signals", "signal": {...}}`` (a
:class:`SignalOut`). Both come from ordered JetStream consumers on stream ``ALERTS`` that start
at new messages, so a batch the alerter publishes again after a crash (same ``Nats-Msg-Id``) is
not delivered twice. The alerter publishes the notifications of one input message as one
``notifications`` message (a JSON array, any users); each API process decodes it and pushes
to the users it has subscribers for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from nats.aio.client import Client as NATS
from nats.js import api as js_api

from orrange.alerts.rules import AlertRequest, InvalidAlert, alert_from_request
from orrange.alerts.signals import SignalSubscription, SignalType
from orrange.api.auth import Principal
from orrange.api.context import ApiContext, now_ms
from orrange.api.deps import context
from orrange.api.errors import ApiError
from orrange.api.subscriber import Subscriber
from orrange.logging import get_logger
from orrange.marketdata.candles import INTERVAL_MS
from orrange.markets import InvalidValue, MarketSpec
from orrange.runtime import PublishError, ensure_stream
from orrange.store.alerts import (
    AlertNotFound,
    AlertRow,
    SubscriptionRow,
    create_alert,
    create_subscription,
    delete_alert,
    delete_subscription,
    get_alert,
    list_alerts,
    list_notifications,
    list_signals,
    list_subscriptions,
)
from orrange.wire.alerts import (
    ALERT_CMD,
    ALERT_CMD_SUBJECT,
    ALERTS,
    NOTIFICATIONS_SUBJECT,
    SIGNALS_SUBJECT,
    AlertCommand,
    Notification,
    SignalRecord,
    alert_command_msg_id,
    decode_notifications,
    decode_signal,
)

__all__ = [
    "ALERT_HANDLERS",
    "AlertFanout",
    "AlertIn",
    "AlertOut",
    "NotificationOut",
    "SignalOut",
    "SubscriptionIn",
    "SubscriptionOut",
]

_log = get_logger("orrange.api.alerts")
_json = msgspec.json.Encoder()
_STATUSES = ("active", "fired", "expired", "deleted")

#: The request body of ``POST /alerts`` (see :class:`orrange.alerts.rules.AlertRequest`).
AlertIn = AlertRequest


class AlertOut(msgspec.Struct, frozen=True, kw_only=True):
    """An alert as the API shows it.

    Attributes:
        id, market, condition, reference: the alert's.
        target: decimal price string.
        hysteresis: decimal price distance (re-arming alerts), else ``None``.
        expires_at: ms UTC, or ``None``.
        rearm: re-arming or one-shot.
        status: ``active``, ``fired``, ``expired`` (also an active alert past ``expires_at``)
            or ``deleted``.
        armed: ``False`` while a re-arming alert waits for the price to leave its band.
        fire_count: how many times it fired.
        created_at, updated_at: ms UTC.
    """

    id: int
    market: str
    condition: str
    reference: str
    target: str
    hysteresis: str | None
    expires_at: int | None
    rearm: bool
    status: str
    armed: bool
    fire_count: int
    created_at: int
    updated_at: int


class SignalOut(msgspec.Struct, frozen=True, kw_only=True):
    """A market signal (see :mod:`orrange.alerts.signals` for each type's value and score).

    Attributes:
        id: ``<symbol>:<interval>:<type>:<open_time>``.
        type, symbol, interval: what and where.
        open_time: open time of the candle that produced it, ms UTC.
        score: strength in ``[0, 1]``.
        value: the measured quantity (a float: analytics, not money).
        explanation: one line for humans.
    """

    id: str
    type: str
    symbol: str
    interval: str
    open_time: int
    score: float
    value: float
    explanation: str


class NotificationOut(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A notification: an alert that fired (``kind = "alert"``) or a subscribed signal
    (``kind = "signal"``).

    Attributes:
        id: ``alert:<alert id>:<fire number>`` or ``signal:<signal id>:<user>``.
        kind, market: what and where.
        ts: ms UTC of the price update (alerts) or the signal's bar.
        alert_id, condition, reference: of the alert.
        target, price: the alert's target and the observed price, decimal strings.
        direction: ``up`` (price reached ``>= target``) or ``down``.
        final: ``True`` when the alert is done (one-shot), ``False`` when it will re-arm.
        signal: the signal (signal notifications).
    """

    id: str
    kind: str
    market: str
    ts: int
    alert_id: int | None = None
    condition: str | None = None
    reference: str | None = None
    target: str | None = None
    price: str | None = None
    direction: str | None = None
    final: bool | None = None
    signal: SignalOut | None = None


class SubscriptionIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /signal-subscriptions``; empty lists mean "all".

    Attributes:
        types: signal types (:class:`~orrange.alerts.signals.SignalType` names).
        symbols: markets.
        intervals: candle intervals (``1m 5m 15m 1h 4h 1d``).
        min_score: only signals scoring at least this, in ``[0, 1]``.
    """

    types: list[SignalType] = []
    symbols: list[str] = []
    intervals: list[str] = []
    min_score: float = 0.0


class SubscriptionOut(msgspec.Struct, frozen=True, kw_only=True):
    """A signal subscription (fields as in :class:`SubscriptionIn`; ``created_at`` ms UTC)."""

    id: int
    types: list[str]
    symbols: list[str]
    intervals: list[str]
    min_score: float
    created_at: int


# ------------------------------------------------------------------------------ conversions
def _ticks(spec: MarketSpec | None, v: int | None) -> str | None:
    if v is None:
        return None
    return spec.ticks_to_price(v) if spec is not None else str(v)


def _alert_out(ctx: ApiContext, row: AlertRow, now: int) -> AlertOut:
    a = row.alert
    spec = ctx.markets.get(a.market)
    status = row.status
    if status == "active" and a.expires_at is not None and a.expires_at <= now:
        status = "expired"
    return AlertOut(
        id=a.id,
        market=a.market,
        condition=str(a.condition),
        reference=str(a.reference),
        target=_ticks(spec, a.target) or "",
        hysteresis=_ticks(spec, a.hysteresis) if a.rearm else None,
        expires_at=a.expires_at,
        rearm=a.rearm,
        status=status,
        armed=row.rearm_after is None,
        fire_count=row.fire_count,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def signal_out(rec: SignalRecord) -> SignalOut:
    """A stored or published :class:`~orrange.wire.alerts.SignalRecord` for clients."""
    s = rec.signal
    return SignalOut(
        id=rec.id,
        type=str(s.type),
        symbol=s.symbol,
        interval=s.interval,
        open_time=s.open_time,
        score=s.score,
        value=s.value,
        explanation=s.explanation,
    )


def notification_out(markets: Mapping[str, MarketSpec], n: Notification) -> NotificationOut:
    """A :class:`~orrange.wire.alerts.Notification` (ticks) as decimal strings."""
    spec = markets.get(n.market)
    sig = None
    if n.signal is not None and n.signal_id is not None:
        sig = signal_out(SignalRecord(id=n.signal_id, signal=n.signal, source="", source_seq=0))
    return NotificationOut(
        id=n.id,
        kind=n.kind,
        market=n.market,
        ts=n.ts,
        alert_id=n.alert_id,
        condition=n.condition,
        reference=n.reference,
        target=_ticks(spec, n.target),
        price=_ticks(spec, n.price),
        direction=n.direction,
        final=n.final,
        signal=sig,
    )


def _sub_out(row: SubscriptionRow) -> SubscriptionOut:
    s = row.subscription
    return SubscriptionOut(
        id=s.id,
        types=sorted(str(t) for t in s.types),
        symbols=sorted(s.symbols),
        intervals=sorted(s.intervals),
        min_score=s.min_score,
        created_at=row.created_at,
    )


async def _announce(
    ctx: ApiContext, cmd: AlertCommand, action: Literal["create", "delete"]
) -> None:
    """Tell the alerter that ``cmd``'s row was created or deleted; :class:`PublishError`
    propagates."""
    await ctx.publisher.publish(ALERT_CMD_SUBJECT, cmd, msg_id=alert_command_msg_id(cmd, action))


def _unavailable(exc: Exception) -> ApiError:
    return ApiError(503, "alerter", "unavailable", f"cannot reach the alerter: {exc}")


# ------------------------------------------------------------------------------ alerts
@post("/alerts", status_code=201, summary="Create a price alert")
async def create_alert_route(
    request: Request[Any, Any, Any],
    data: JSONBody[AlertIn],
    principal: NamedDependency[Principal],
) -> AlertOut:
    """Create a price alert (400 naming the field when invalid: unknown market, target or
    hysteresis off the tick grid or not positive, a band without ``rearm``, ``rearm`` without a
    band, an expiry not in the future; 503 when the alerter cannot be told)."""
    ctx = context(request)
    spec = ctx.markets.get(data.market)
    if spec is None:
        raise ApiError(400, "market", "unknown_market", f"no market {data.market!r}")
    now = now_ms()
    try:
        alert = alert_from_request(data, spec, 0, principal.user, now)
    except InvalidValue as exc:
        raise ApiError.from_invalid_value(exc) from exc
    except InvalidAlert as exc:
        raise ApiError(400, exc.field, "invalid_alert", exc.message) from exc
    row = await create_alert(ctx.pool, alert, now)
    aid = row.alert.id
    try:
        await _announce(ctx, AlertCommand("alert", aid), "create")
    except PublishError as exc:
        await delete_alert(ctx.pool, principal.user, aid, now)
        raise _unavailable(exc) from exc
    return _alert_out(ctx, row, now)


@get("/alerts", summary="List my price alerts")
async def list_alerts_route(
    request: Request[Any, Any, Any],
    principal: NamedDependency[Principal],
    status: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    before_id: FromQuery[int | None] = None,
) -> list[AlertOut]:
    """My alerts, newest first; ``status`` one of ``active fired expired deleted``; page with
    ``before_id`` (the last id of the previous page)."""
    ctx = context(request)
    if status is not None and status not in _STATUSES:
        raise ApiError(400, "status", "invalid_status", f"status must be one of {_STATUSES}")
    rows = await list_alerts(
        ctx.pool, principal.user, status=status, limit=limit, before_id=before_id
    )
    now = now_ms()
    return [_alert_out(ctx, r, now) for r in rows]


@get("/alerts/{alert_id:int}", summary="One of my price alerts")
async def get_alert_route(
    request: Request[Any, Any, Any], alert_id: FromPath[int], principal: NamedDependency[Principal]
) -> AlertOut:
    """One of my alerts (404 when unknown or not mine)."""
    ctx = context(request)
    try:
        row = await get_alert(ctx.pool, principal.user, alert_id)
    except AlertNotFound as exc:
        raise ApiError(404, "alert_id", "unknown_alert", f"no alert {alert_id}") from exc
    return _alert_out(ctx, row, now_ms())


@delete("/alerts/{alert_id:int}", status_code=200, summary="Delete an alert")
async def delete_alert_route(
    request: Request[Any, Any, Any], alert_id: FromPath[int], principal: NamedDependency[Principal]
) -> AlertOut:
    """Delete one of my alerts; answers it (404 when unknown or not mine, 503 when the
    alerter cannot be told: the alert is then deleted in PostgreSQL and leaves the alerter at
    its next start)."""
    ctx = context(request)
    now = now_ms()
    try:
        row = await delete_alert(ctx.pool, principal.user, alert_id, now)
    except AlertNotFound as exc:
        raise ApiError(404, "alert_id", "unknown_alert", f"no alert {alert_id}") from exc
    try:
        await _announce(ctx, AlertCommand("alert", alert_id), "delete")
    except PublishError as exc:
        raise _unavailable(exc) from exc
    return _alert_out(ctx, row, now)


@get("/notifications", summary="My notifications")
async def list_notifications_route(
    request: Request[Any, Any, Any],
    principal: NamedDependency[Principal],
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    before_ts: FromQuery[int | None] = None,
) -> list[NotificationOut]:
    """My notifications, newest first; page with ``before_ts`` (ms UTC)."""
    ctx = context(request)
    notes = await list_notifications(ctx.pool, principal.user, limit=limit, before_ts=before_ts)
    return [notification_out(ctx.markets, n) for n in notes]


# ------------------------------------------------------------------------------ signals
@get("/signals", summary="Market signals")
async def list_signals_route(
    request: Request[Any, Any, Any],
    symbol: FromQuery[str | None] = None,
    type: FromQuery[str | None] = None,
    since: FromQuery[int | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
) -> list[SignalOut]:
    """Signals, newest bar first: of ``symbol``, of ``type`` (a signal type), from bars opened
    at or after ``since`` (ms UTC)."""
    ctx = context(request)
    if type is not None and type not in {str(t) for t in SignalType}:
        raise ApiError(400, "type", "invalid_type", f"no signal type {type!r}")
    rows = await list_signals(ctx.pool, symbol=symbol, type=type, since=since, limit=limit)
    return [signal_out(r) for r in rows]


@post("/signal-subscriptions", status_code=201, summary="Subscribe to signals")
async def create_subscription_route(
    request: Request[Any, Any, Any],
    data: JSONBody[SubscriptionIn],
    principal: NamedDependency[Principal],
) -> SubscriptionOut:
    """Be notified of signals (400 on an unknown market or interval, or a ``min_score``
    outside ``[0, 1]``; 503 when the alerter cannot be told)."""
    ctx = context(request)
    for sym in data.symbols:
        if sym not in ctx.markets:
            raise ApiError(400, "symbols", "unknown_market", f"no market {sym!r}")
    for iv in data.intervals:
        if iv not in INTERVAL_MS:
            raise ApiError(400, "intervals", "invalid_interval", f"no interval {iv!r}")
    if not 0.0 <= data.min_score <= 1.0:
        raise ApiError(400, "min_score", "invalid_score", "min_score must be in [0, 1]")
    sub = SignalSubscription(
        id=0,
        user=principal.user,
        types=frozenset(data.types),
        symbols=frozenset(data.symbols),
        intervals=frozenset(data.intervals),
        min_score=data.min_score,
    )
    row = await create_subscription(ctx.pool, sub, now_ms())
    sid = row.subscription.id
    try:
        await _announce(ctx, AlertCommand("subscription", sid), "create")
    except PublishError as exc:
        await delete_subscription(ctx.pool, principal.user, sid)
        raise _unavailable(exc) from exc
    return _sub_out(row)


@get("/signal-subscriptions", summary="My signal subscriptions")
async def list_subscriptions_route(
    request: Request[Any, Any, Any], principal: NamedDependency[Principal]
) -> list[SubscriptionOut]:
    """My active signal subscriptions, by id."""
    ctx = context(request)
    return [_sub_out(r) for r in await list_subscriptions(ctx.pool, principal.user)]


@delete(
    "/signal-subscriptions/{sub_id:int}",
    status_code=204,
    summary="Unsubscribe from signals",
)
async def delete_subscription_route(
    request: Request[Any, Any, Any], sub_id: FromPath[int], principal: NamedDependency[Principal]
) -> None:
    """End one of my subscriptions (404 when unknown, not mine or already ended)."""
    ctx = context(request)
    try:
        await delete_subscription(ctx.pool, principal.user, sub_id)
    except AlertNotFound as exc:
        raise ApiError(404, "sub_id", "unknown_subscription", f"no subscription {sub_id}") from exc
    try:
        await _announce(ctx, AlertCommand("subscription", sub_id), "delete")
    except PublishError as exc:
        raise _unavailable(exc) from exc


ALERT_HANDLERS = [
    create_alert_route,
    list_alerts_route,
    get_alert_route,
    delete_alert_route,
    list_notifications_route,
    list_signals_route,
    create_subscription_route,
    list_subscriptions_route,
    delete_subscription_route,
]


# ------------------------------------------------------------------------------ WebSocket
class AlertFanout:
    """WebSocket fan-out of notifications (to the user's ``orders`` subscribers) and of the
    public ``signals`` channel, from ordered JetStream consumers on stream ``ALERTS``.

    Args:
        markets: the API's markets (decimal conversion).
        user_subs: the subscribers of a user's private ``orders`` channel
            (:meth:`orrange.api.fanout.OrderChannel.subscribers`).
    """

    def __init__(
        self,
        markets: Mapping[str, MarketSpec],
        user_subs: Callable[[str], Iterable[Subscriber]],
    ) -> None:
        self._markets = markets
        self._user_subs = user_subs
        self._signal_subs: set[Subscriber] = set()
        self._subs: list[Any] = []

    async def start(self, nc: NATS) -> None:
        """Provision ``ALERTS`` and ``ALERT_CMD`` and follow new notifications and signals."""
        js = nc.jetstream()
        await ensure_stream(js, ALERTS)
        await ensure_stream(js, ALERT_CMD)
        for subject, cb in (
            (NOTIFICATIONS_SUBJECT, self._on_notes),
            (SIGNALS_SUBJECT, self._on_sig),
        ):
            self._subs.append(
                await js.subscribe(
                    subject,
                    cb=cb,
                    ordered_consumer=True,
                    deliver_policy=js_api.DeliverPolicy.NEW,
                    pending_msgs_limit=-1,
                    pending_bytes_limit=-1,
                )
            )

    async def stop(self) -> None:
        """Stop following the streams."""
        subs, self._subs = self._subs, []
        for sub in subs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sub.unsubscribe(), 2)

    def subscribe(self, sub: Subscriber, channel: str) -> str | None:
        """Add ``sub`` to the public ``signals`` channel (``unknown_channel`` for another)."""
        if channel != SIGNALS_SUBJECT:
            return "unknown_channel"
        sub.channels.add(SIGNALS_SUBJECT)
        self._signal_subs.add(sub)
        return None

    def unsubscribe(self, sub: Subscriber, channel: str) -> None:
        """Remove ``sub`` from ``signals`` (no-op when absent)."""
        if channel == SIGNALS_SUBJECT:
            sub.channels.discard(SIGNALS_SUBJECT)
            self._signal_subs.discard(sub)

    async def _on_notes(self, msg: Any) -> None:
        try:
            notes = decode_notifications(msg.data)
        except msgspec.DecodeError as exc:
            _log.warning("undecodable notifications", subject=msg.subject, error=str(exc))
            return
        for note in notes:
            targets = list(self._user_subs(note.user))
            if not targets:
                continue
            body = msgspec.to_builtins(notification_out(self._markets, note))
            data = _json.encode({"type": "notification", "channel": "orders", **body})
            for sub in targets:
                sub.enqueue(data)

    async def _on_sig(self, msg: Any) -> None:
        if not self._signal_subs:
            return
        try:
            rec = decode_signal(msg.data)
        except msgspec.DecodeError as exc:
            _log.warning("undecodable signal", error=str(exc))
            return
        data = _json.encode(
            {"type": "signal", "channel": SIGNALS_SUBJECT, "signal": signal_out(rec)}
        )
        for sub in list(self._signal_subs):
            sub.enqueue(data)
