"""Price alert rules and the events the alert index emits.

A :class:`PriceAlert` watches one reference price of one market: the market's **last trade** or
its **index** price (:class:`~orrange.matching.enums.TriggerSource`, the same sources stop
orders watch). Prices are integer **ticks** of the market (see :mod:`orrange.markets`); times
are **ms UTC**. Decimal strings exist only in :class:`AlertRequest`, the API-side shape, which
:func:`alert_from_request` converts with the market's :class:`~orrange.markets.MarketSpec`.

Conditions (``p`` is an observed reference price, ``T`` the target):

* ``above``: fires on the first update with ``p >= T``. An alert created while the price is
  already at or above ``T`` fires on the next update that still satisfies it.
* ``below``: fires on the first update with ``p <= T``.
* ``crosses``: fires when the price reaches or passes ``T`` coming from the other side. The
  side is the one of the last price known when the alert is added; if that price is unknown or
  equal to ``T``, the side is taken from the first later update with ``p != T`` (which does
  not fire). Reaching ``T`` from below counts as an up-cross, from above as a down-cross.

Modes:

* one-shot (``rearm=False``): the alert fires once and leaves the index (``final=True``).
* re-arming (``rearm=True``, ``hysteresis >= 1`` ticks): after firing, the alert is disarmed
  until the price moves back beyond the band, then it is armed again (an :class:`AlertRearmed`
  event). For ``above`` the band is crossed when ``p <= T - hysteresis``; for ``below`` when
  ``p >= T + hysteresis``. A ``crosses`` alert that fired on an up-cross re-arms as a
  down-cross watcher once ``p >= T + hysteresis`` (and symmetrically after a down-cross, once
  ``p <= T - hysteresis``), so noise of less than the band around ``T`` never fires twice.

Every arming fires **exactly once**: between two :class:`AlertFired` events of one alert there
is exactly one :class:`AlertRearmed` event.

Expiry: an alert with ``expires_at`` is live at time ``ts`` iff ``ts < expires_at``; at the
first update with ``ts >= expires_at`` it is dropped (an :class:`AlertExpired` event) before
anything is evaluated.
"""

from __future__ import annotations

import enum

import msgspec

from orrange.markets import MarketSpec
from orrange.matching.enums import TriggerSource

__all__ = [
    "AlertEvent",
    "AlertExpired",
    "AlertFired",
    "AlertRearmed",
    "AlertRequest",
    "Condition",
    "InvalidAlert",
    "PriceAlert",
    "TriggerSource",
    "alert_from_request",
]

# Largest tick value accepted (same bound as orrange.markets).
_MAX_TICKS = 2**63 - 1


class Condition(enum.StrEnum):
    """What an alert waits for (see the module docstring for the exact rules)."""

    ABOVE = "above"
    BELOW = "below"
    CROSSES = "crosses"


class InvalidAlert(ValueError):
    """An alert definition that cannot be accepted.

    Attributes:
        field: the offending field (``"target"``, ``"hysteresis"``, ``"expires_at"`` ...).
        message: a human-readable explanation.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PriceAlert(msgspec.Struct, frozen=True, kw_only=True):
    """One user's price alert, in engine units.

    Attributes:
        id: unique alert id (assigned by the store; any int, unique within an index).
        user: owner's user id.
        market: market symbol (``"BTC-USDT"``).
        condition: :class:`Condition`.
        reference: :class:`TriggerSource` (``"last"`` trade or ``"index"`` price).
        target: target price ``T`` in ticks, ``1 <= T <= 2**63 - 1``.
        expires_at: ms UTC after which the alert is dropped (exclusive), or ``None``.
        rearm: ``False`` for one-shot, ``True`` for re-arming.
        hysteresis: re-arm band in ticks; must be ``>= 1`` when ``rearm`` and ``0`` otherwise.
    """

    id: int
    user: str
    market: str
    condition: Condition
    reference: TriggerSource
    target: int
    expires_at: int | None = None
    rearm: bool = False
    hysteresis: int = 0

    def validate(self, now_ms: int | None = None) -> None:
        """Check the alert's invariants.

        Args:
            now_ms: when given, an ``expires_at`` at or before it is refused.

        Raises:
            InvalidAlert: empty user or market, target outside ``[1, 2**63-1]``, hysteresis
                negative, zero for a re-arming alert or non-zero for a one-shot alert, or an
                expiry in the past.
        """
        if not self.user:
            raise InvalidAlert("user", "must not be empty")
        if not self.market:
            raise InvalidAlert("market", "must not be empty")
        if not 1 <= self.target <= _MAX_TICKS:
            raise InvalidAlert("target", f"{self.target} ticks is outside [1, 2**63-1]")
        if self.hysteresis < 0:
            raise InvalidAlert("hysteresis", "must not be negative")
        if self.rearm and self.hysteresis < 1:
            raise InvalidAlert("hysteresis", "a re-arming alert needs a band of at least 1 tick")
        if not self.rearm and self.hysteresis != 0:
            raise InvalidAlert("hysteresis", "a one-shot alert has no hysteresis band")
        if self.hysteresis > _MAX_TICKS:
            raise InvalidAlert("hysteresis", "is too large")
        if self.expires_at is not None and now_ms is not None and self.expires_at <= now_ms:
            raise InvalidAlert("expires_at", f"{self.expires_at} is not in the future")


class AlertRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An alert as a client sends it (decimal strings; see :func:`alert_from_request`).

    Attributes:
        market: market symbol.
        condition: ``"above"``, ``"below"`` or ``"crosses"``.
        reference: ``"last"`` or ``"index"`` (default ``"last"``).
        target: target price, decimal string on the market's tick grid.
        expires_at: ms UTC, or ``None``.
        rearm: re-arming instead of one-shot.
        hysteresis: re-arm band as a positive decimal price distance on the tick grid;
            required with ``rearm``, must be ``None`` without it.
    """

    market: str
    condition: Condition
    target: str
    reference: TriggerSource = TriggerSource.LAST
    expires_at: int | None = None
    rearm: bool = False
    hysteresis: str | None = None


def alert_from_request(
    request: AlertRequest, spec: MarketSpec, alert_id: int, user: str, now_ms: int
) -> PriceAlert:
    """Convert a client request to a validated :class:`PriceAlert`.

    Raises:
        orrange.markets.InvalidValue: ``target`` or ``hysteresis`` is not a positive decimal
            on the tick grid
            (from :meth:`MarketSpec.price_to_ticks`; ``field`` names the request field).
        InvalidAlert: the market does not match ``spec``, or :meth:`PriceAlert.validate`
            fails (expiry in the past, a band without ``rearm`` or ``rearm`` without a band).
    """
    if request.market != spec.symbol:
        raise InvalidAlert("market", f"{request.market!r} is not {spec.symbol!r}")
    target = spec.price_to_ticks(request.target, "target")
    hysteresis = 0
    if request.hysteresis is not None:
        hysteresis = spec.price_to_ticks(request.hysteresis, "hysteresis")
    alert = PriceAlert(
        id=alert_id,
        user=user,
        market=request.market,
        condition=request.condition,
        reference=request.reference,
        target=target,
        expires_at=request.expires_at,
        rearm=request.rearm,
        hysteresis=hysteresis,
    )
    alert.validate(now_ms)
    return alert


# --------------------------------------------------------------------------- events
class _AlertEventBase(msgspec.Struct, frozen=True, gc=False, tag_field="type"):
    alert_id: int
    user: str
    market: str
    reference: TriggerSource
    ts: int


class AlertFired(_AlertEventBase, frozen=True, gc=False, tag="fired"):
    """An armed alert's condition held at an update.

    Attributes:
        alert_id, user, market, reference: the alert's.
        ts: ms UTC of the price update.
        condition, target: the alert's condition and target (ticks).
        direction: ``"up"`` (price reached ``>= target``) or ``"down"`` (``<= target``).
        price: the observed reference price (ticks).
        final: ``True`` when the alert left the index (one-shot); ``False`` when it waits to
            re-arm.
    """

    condition: Condition
    target: int
    direction: str
    price: int
    final: bool


class AlertRearmed(_AlertEventBase, frozen=True, gc=False, tag="rearmed"):
    """A re-arming alert moved back beyond its band and is armed again.

    Attributes:
        price: the observed reference price (ticks) that crossed the band.
        direction: the direction of the next fire, ``"up"`` or ``"down"``.
    """

    price: int
    direction: str


class AlertExpired(_AlertEventBase, frozen=True, gc=False, tag="expired"):
    """The alert reached its ``expires_at`` (ms UTC) and was dropped; ``ts`` is the time of
    the update or :meth:`~orrange.alerts.index.AlertIndex.expire` call that noticed it."""

    expires_at: int


AlertEvent = AlertFired | AlertRearmed | AlertExpired
