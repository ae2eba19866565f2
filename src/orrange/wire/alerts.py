"""The alerter's streams, subjects, durables, message ids and the messages it exchanges.

========= ================= ==============================================================
Stream    Subjects          Content
========= ================= ==============================================================
ALERTS    ``notifications`` a JSON array of :class:`Notification` (prices in ticks): the
                            notifications one input message of the alerter produced, in the
                            order they fired (:func:`encode_notifications`,
                            :func:`decode_notifications`; ``Nats-Msg-Id``
                            :func:`notifications_msg_id`)
ALERTS    ``signals``       one :class:`SignalRecord` (``Nats-Msg-Id`` its ``id``,
                            :func:`signal_id`; :func:`encode_signal`, :func:`decode_signal`)
ALERT_CMD ``alerts.cmd``    one :class:`AlertCommand` from the API (``Nats-Msg-Id``
                            :func:`alert_command_msg_id`)
========= ================= ==============================================================

Both streams keep a week (PostgreSQL is the record; the streams are delivery). The alerter
reads ``EVENTS`` (durable :data:`EVENTS_DURABLE`), ``md.indexes`` and ``md.candle.>`` of stream
``MD`` (:data:`INDEX_DURABLE`, :data:`CANDLES_DURABLE`) and ``alerts.cmd``
(:data:`CMD_DURABLE`). Notification and signal ids are deterministic (the same input gives the
same ids), so stored and published again after a crash they change nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from orrange.alerts.signals import Signal
from orrange.wire.engine import DUPLICATE_WINDOW_MS
from orrange.wire.spec import StreamSpec

__all__ = [
    "ALERTS",
    "ALERT_CMD",
    "ALERT_CMD_SUBJECT",
    "CANDLES_DURABLE",
    "CMD_DURABLE",
    "EVENTS_DURABLE",
    "INDEX_DURABLE",
    "NOTIFICATIONS_SUBJECT",
    "SIGNALS_SUBJECT",
    "AlertCommand",
    "Notification",
    "SignalRecord",
    "alert_command_msg_id",
    "alert_notification_id",
    "decode_notifications",
    "decode_signal",
    "encode_notifications",
    "encode_signal",
    "notifications_msg_id",
    "signal_id",
    "signal_notification_id",
]

NOTIFICATIONS_SUBJECT = "notifications"
SIGNALS_SUBJECT = "signals"
ALERT_CMD_SUBJECT = "alerts.cmd"

#: The alerter's durables on ``EVENTS``, ``md.indexes``, ``md.candle.>`` and ``alerts.cmd``.
EVENTS_DURABLE = "alerter-events"
INDEX_DURABLE = "alerter-indexes"
CANDLES_DURABLE = "alerter-candles"
CMD_DURABLE = "alerter-cmd"

#: How long ``ALERTS`` and ``ALERT_CMD`` keep messages (ms): a week.
_KEEP_MS = 7 * 86_400_000

#: Notification batches (``notifications``) and signals (``signals``).
ALERTS = StreamSpec(
    name="ALERTS",
    subjects=(NOTIFICATIONS_SUBJECT, SIGNALS_SUBJECT),
    max_age_ms=_KEEP_MS,
    duplicate_window_ms=DUPLICATE_WINDOW_MS,
    description="alerter: notification batches (Nats-Msg-Id notes:<durable>:<seq>) and signals",
)
#: Commands from the API to the alerter.
ALERT_CMD = StreamSpec(
    name="ALERT_CMD",
    subjects=(ALERT_CMD_SUBJECT,),
    max_age_ms=_KEEP_MS,
    duplicate_window_ms=DUPLICATE_WINDOW_MS,
    description="API -> alerter: re-read an alert or a signal subscription from PostgreSQL",
)


class AlertCommand(msgspec.Struct, frozen=True):
    """``alerts.cmd``: re-read ``id`` from PostgreSQL and make the index agree.

    Attributes:
        kind: ``"alert"`` (table ``alerts``) or ``"subscription"`` (``signal_subscriptions``).
        id: the row id.
    """

    kind: Literal["alert", "subscription"]
    id: int


class Notification(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A message to one user, in engine units (an item of a ``notifications`` message).

    Attributes:
        id: deterministic id (:func:`alert_notification_id` or
            :func:`signal_notification_id`).
        user: recipient.
        kind: ``"alert"`` or ``"signal"``.
        market: market symbol.
        ts: ms UTC of the price update or of the signal's bar.
        alert_id, condition, reference, target, price, direction, final: of an alert fire
            (:class:`~orrange.alerts.rules.AlertFired`; prices in ticks).
        signal_id: of a signal notification (the signal is in table ``signals``).
        signal: the signal itself (published, not stored with the notification).
        source, source_seq: the input (consumer name, stream sequence) that produced it.
    """

    id: str
    user: str
    kind: str
    market: str
    ts: int
    alert_id: int | None = None
    condition: str | None = None
    reference: str | None = None
    target: int | None = None
    price: int | None = None
    direction: str | None = None
    final: bool | None = None
    signal_id: str | None = None
    signal: Signal | None = None
    source: str = ""
    source_seq: int = 0


class SignalRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A stored or published signal: :class:`~orrange.alerts.signals.Signal` with its id
    (:func:`signal_id`) and source (consumer name, stream sequence)."""

    id: str
    signal: Signal
    source: str
    source_seq: int


def alert_notification_id(alert_id: int, fire_number: int) -> str:
    """``alert:<alert id>:<n>``: the id of the ``n``-th (1-based) fire of an alert."""
    return f"alert:{alert_id}:{fire_number}"


def signal_id(sig: Signal) -> str:
    """``<symbol>:<interval>:<type>:<open_time>``: a signal's id (also its ``Nats-Msg-Id``)."""
    return f"{sig.symbol}:{sig.interval}:{sig.type}:{sig.open_time}"


def signal_notification_id(sig_id: str, user: str) -> str:
    """``signal:<signal id>:<user>``: the id of a signal notification."""
    return f"signal:{sig_id}:{user}"


def notifications_msg_id(durable: str, seq: int) -> str:
    """``notes:<durable>:<seq>``: the ``Nats-Msg-Id`` of the notifications of input ``seq``."""
    return f"notes:{durable}:{seq}"


def alert_command_msg_id(cmd: AlertCommand, action: Literal["create", "delete"]) -> str:
    """``<kind>:<id>:<action>``: the ``Nats-Msg-Id`` of ``cmd`` announcing that its row was
    created or deleted."""
    return f"{cmd.kind}:{cmd.id}:{action}"


_notes_encoder = msgspec.json.Encoder()
_notes_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(list[Notification])
_signal_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(SignalRecord)


def encode_notifications(notes: Sequence[Notification]) -> bytes:
    """The payload of a ``notifications`` message (a JSON array of notifications)."""
    return _notes_encoder.encode(notes)


def encode_signal(record: SignalRecord) -> bytes:
    """The payload of a ``signals`` message."""
    return _notes_encoder.encode(record)


def decode_notifications(data: bytes) -> list[Notification]:
    """The notifications of one ``notifications`` message.

    Raises:
        msgspec.DecodeError, msgspec.ValidationError: not an array of notifications.
    """
    value: list[Notification] = _notes_decoder.decode(data)
    return value


def decode_signal(data: bytes) -> SignalRecord:
    """The signal of one ``signals`` message.

    Raises:
        msgspec.DecodeError, msgspec.ValidationError: not a signal record.
    """
    value: SignalRecord = _signal_decoder.decode(data)
    return value
