"""The settlement lifecycle of a P2P trade: a pure state machine (no I/O, no clock).

A fill opens a trade (:func:`open_trade`); escrow chain events (:mod:`.events`) and the
passing of time (``now_ms``, integer ms UTC, passed in) move it on::

    awaiting_funding --funded--> funded --paid--> paid --released--> released
          |                        |  \\--released (seller releases early)--> released
          | funding deadline       |                \\--disputed--> disputed --resolved--> resolved
          v                        | payment deadline, no paid mark
       canceled                    v
                                expired --reclaimed--> refunded

``resolved`` carries the mediator's ``resolution``: ``release`` (buyer_bps 10000),
``refund`` (0) or ``split`` (anything between).

**The chain is the truth.** A trade's state is a function of its opening data, the set of
chain events applied to it (ordered by ``(block_number, log_index)``) and the latest time
seen; every transition recomputes it from those (:func:`apply_event`, :func:`revert_event`,
:func:`tick`). Hence:

- applying an event twice is a no-op (events are keyed by :attr:`~.events.ChainEvent.event_id`,
  ``block_hash:log_index``), and the order events arrive in does not matter;
- a reorg is undone by :func:`revert_event` with the orphaned event's id: the state is rebuilt
  without it (a funding seen after the funding deadline also wins over ``canceled``);
- reputation events are the difference between the outcomes before and after the
  transition, so a rollback emits retractions (``retract=True``) of what it undid.

Outcomes (:class:`ReputationEvent`, one per user and trade):

- ``released`` or ``resolved`` with ``release``: ``completed`` for both users, with the trade's
  volume; the seller's carries ``release_ms`` (release time minus the paid mark's, or minus
  the funding's when the seller released before any mark) when the seller released;
- ``resolved`` with ``release``: also ``dispute_lost`` for the seller; with ``refund``:
  ``dispute_lost`` for the buyer; a ``split`` records no loss and no completion;
- ``expired``/``refunded`` (buyer never marked paid): ``timed_out`` for the buyer;
- ``canceled`` (seller never funded): ``timed_out`` for the seller.
"""

from __future__ import annotations

import enum
import hashlib
from decimal import ROUND_FLOOR, Decimal
from typing import Literal

import msgspec

from orrange.markets import MarketSpec
from orrange.matching.enums import Side
from orrange.matching.events import OrderFilled
from orrange.settlement.config import SettlementConfig
from orrange.settlement.events import (
    ChainEvent,
    EscrowDisputed,
    EscrowFunded,
    EscrowPaid,
    EscrowReclaimed,
    EscrowReleased,
    EscrowResolved,
)

__all__ = [
    "Applied",
    "LifecycleError",
    "P2PTrade",
    "ReputationEvent",
    "ReputationKind",
    "Resolution",
    "TradeState",
    "Transition",
    "apply_event",
    "open_trade",
    "outcomes",
    "revert_event",
    "tick",
    "trade_id_for_fill",
]


class TradeState(enum.StrEnum):
    AWAITING_FUNDING = "awaiting_funding"
    FUNDED = "funded"
    PAID = "paid"
    RELEASED = "released"
    DISPUTED = "disputed"
    RESOLVED = "resolved"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    CANCELED = "canceled"


TERMINAL_STATES = frozenset(
    {TradeState.RELEASED, TradeState.RESOLVED, TradeState.REFUNDED, TradeState.CANCELED}
)

Resolution = Literal["release", "refund", "split"]
ReputationKind = Literal["completed", "dispute_lost", "timed_out"]


class LifecycleError(ValueError):
    """An input that cannot belong to this trade (another trade's event, a bad fill)."""


class Applied(msgspec.Struct, frozen=True):
    """A chain event applied to a trade and ``at_ms``, when it happened (block time, ms)."""

    event: ChainEvent
    at_ms: int


class ReputationEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A reputation fact about ``user`` from ``trade_id``; with ``retract`` it withdraws the
    equal fact emitted earlier (a rollback). ``volume`` is the trade's value in quote cents,
    ``release_ms`` the seller's release delay (only on the releasing seller's ``completed``),
    ``at_ms`` when the outcome happened (ms UTC)."""

    user: str
    trade_id: str
    kind: ReputationKind
    volume: int
    at_ms: int
    release_ms: int | None = None
    retract: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        """``(user, trade_id, kind)``: one fact per key; a later one replaces it."""
        return (self.user, self.trade_id, self.kind)


class P2PTrade(msgspec.Struct, frozen=True, kw_only=True):
    """One trade's settlement. Opening data (set by :func:`open_trade`, never changed):

    - ``trade_id``: ``0x`` + 64 hex, the escrow's bytes32 trade id;
    - ``symbol``, ``fill_seq`` (the fill's book sequence), ``buyer``/``seller`` user ids,
      ``price`` ticks, ``quantity`` lots, ``notional`` quote units, ``volume`` quote cents;
    - ``payment_method``, ``created_ms``, ``funding_deadline_ms``, ``payment_window_ms``.

    Derived (recomputed from ``applied`` and ``now_ms``):

    - ``state``; ``resolution`` and ``buyer_bps`` once resolved;
    - the escrow deal from the funding event: ``amount`` (asset base units), ``token``
      (zero address for ETH), ``fee_bps``, ``seller_address``, ``buyer_address``,
      ``payment_deadline_ms``;
    - ``funded_ms``, ``paid_ms``, ``disputed_ms``, ``closed_ms`` (when it reached a terminal
      state); ``to_buyer``, ``to_seller``, ``fee`` (base units) once paid out;
    - ``tx_hashes``: the transaction of each step, by event kind;
    - ``applied``: the chain events in chain order; ``now_ms``: latest time seen.
    """

    trade_id: str
    symbol: str
    fill_seq: int
    buyer: str
    seller: str
    price: int
    quantity: int
    notional: int
    volume: int
    payment_method: str
    created_ms: int
    funding_deadline_ms: int
    payment_window_ms: int
    state: TradeState = TradeState.AWAITING_FUNDING
    resolution: Resolution | None = None
    buyer_bps: int | None = None
    amount: int | None = None
    token: str | None = None
    fee_bps: int | None = None
    seller_address: str | None = None
    buyer_address: str | None = None
    payment_deadline_ms: int | None = None
    funded_ms: int | None = None
    paid_ms: int | None = None
    disputed_ms: int | None = None
    closed_ms: int | None = None
    to_buyer: int | None = None
    to_seller: int | None = None
    fee: int | None = None
    tx_hashes: dict[str, str] = msgspec.field(default_factory=dict)
    applied: tuple[Applied, ...] = ()
    now_ms: int = 0

    @property
    def terminal(self) -> bool:
        """True once nothing but a rollback can change the state."""
        return self.state in TERMINAL_STATES

    def payment_deadline_s(self, funding_at_ms: int) -> int:
        """The ``payment_deadline`` (unix seconds, rounded up) the seller should put in the
        funding transaction sent at ``funding_at_ms``: that time plus the method's window."""
        return -(-(funding_at_ms + self.payment_window_ms) // 1000)


class Transition(msgspec.Struct, frozen=True):
    """The result of a step: the new ``trade``, whether anything ``changed``, and the
    ``reputation`` events to publish (new facts, and retractions of undone ones)."""

    trade: P2PTrade
    changed: bool
    reputation: tuple[ReputationEvent, ...]


def trade_id_for_fill(symbol: str, fill_seq: int) -> str:
    """The deterministic trade id of the fill ``fill_seq`` of book ``symbol``:
    ``0x`` + sha256(``"<symbol>:<seq>"``) hex, so a replayed fill opens the same trade."""
    return "0x" + hashlib.sha256(f"{symbol}:{fill_seq}".encode()).hexdigest()


def open_trade(fill: OrderFilled, spec: MarketSpec, config: SettlementConfig) -> P2PTrade:
    """The trade a fill creates, awaiting the seller's funding until ``fill.ts +
    funding_timeout_ms``. The buyer is the taker when the aggressor bought, else the maker;
    the payment method is the first of ``fill.payment_methods`` (else the configured
    default) and sets the payment window. ``volume`` is the notional in quote cents
    (rounded down). Raises :class:`LifecycleError` for a fill of another market or a
    self-trade."""
    if fill.symbol != spec.symbol:
        raise LifecycleError(f"fill of {fill.symbol} opened with the spec of {spec.symbol}")
    if fill.maker_user == fill.taker_user:
        raise LifecycleError("a user cannot trade with themself")
    if fill.aggressor == Side.BUY:
        buyer, seller = fill.taker_user, fill.maker_user
    else:
        buyer, seller = fill.maker_user, fill.taker_user
    notional = spec.notional(fill.price, fill.quantity)
    volume = int((Decimal(notional) * spec.quote_unit * 100).to_integral_value(ROUND_FLOOR))
    method = config.choose_method(fill.payment_methods)
    return P2PTrade(
        trade_id=trade_id_for_fill(fill.symbol, fill.seq),
        symbol=fill.symbol,
        fill_seq=fill.seq,
        buyer=buyer,
        seller=seller,
        price=fill.price,
        quantity=fill.quantity,
        notional=notional,
        volume=volume,
        payment_method=method,
        created_ms=fill.ts,
        funding_deadline_ms=fill.ts + config.funding_timeout_ms,
        payment_window_ms=config.payment_window_ms(method),
        now_ms=fill.ts,
    )


_OPENING_ONLY = (
    "state",
    "resolution",
    "buyer_bps",
    "amount",
    "token",
    "fee_bps",
    "seller_address",
    "buyer_address",
    "payment_deadline_ms",
    "funded_ms",
    "paid_ms",
    "disputed_ms",
    "closed_ms",
    "to_buyer",
    "to_seller",
    "fee",
)


def _derive(trade: P2PTrade, applied: tuple[Applied, ...], now_ms: int) -> P2PTrade:
    """Recompute every derived field from the opening data, ``applied`` and ``now_ms``."""
    fields: dict[str, object] = {name: None for name in _OPENING_ONLY}
    state = TradeState.AWAITING_FUNDING
    tx_hashes: dict[str, str] = {}
    for item in applied:
        ev, at = item.event, item.at_ms
        tx_hashes[str(ev.__struct_config__.tag)] = ev.tx_hash
        if isinstance(ev, EscrowFunded):
            state = TradeState.FUNDED
            fields.update(
                amount=ev.amount,
                token=ev.token,
                fee_bps=ev.fee_bps,
                seller_address=ev.seller,
                buyer_address=ev.buyer,
                payment_deadline_ms=ev.payment_deadline * 1000,
                funded_ms=at,
            )
        elif isinstance(ev, EscrowPaid):
            state = TradeState.PAID
            fields["paid_ms"] = at
        elif isinstance(ev, EscrowDisputed):
            state = TradeState.DISPUTED
            fields["disputed_ms"] = at
        elif isinstance(ev, EscrowReleased):
            state = TradeState.RELEASED
            fields.update(closed_ms=at, to_buyer=ev.to_buyer, to_seller=0, fee=ev.fee)
        elif isinstance(ev, EscrowResolved):
            state = TradeState.RESOLVED
            resolution: Resolution = (
                "release" if ev.buyer_bps == 10_000 else "refund" if ev.buyer_bps == 0 else "split"
            )
            fields.update(
                closed_ms=at,
                resolution=resolution,
                buyer_bps=ev.buyer_bps,
                to_buyer=ev.to_buyer,
                to_seller=ev.to_seller,
                fee=ev.fee,
            )
        elif isinstance(ev, EscrowReclaimed):
            state = TradeState.REFUNDED
            fields.update(closed_ms=at, to_buyer=0, to_seller=ev.amount, fee=0)
    if state == TradeState.AWAITING_FUNDING and now_ms > trade.funding_deadline_ms:
        state = TradeState.CANCELED
        fields["closed_ms"] = trade.funding_deadline_ms
    deadline = fields["payment_deadline_ms"]
    if state == TradeState.FUNDED and isinstance(deadline, int) and now_ms > deadline:
        state = TradeState.EXPIRED
    fields["state"] = state
    return msgspec.structs.replace(
        trade,
        tx_hashes=tx_hashes,
        applied=applied,
        now_ms=now_ms,
        **fields,
    )


def outcomes(trade: P2PTrade) -> frozenset[ReputationEvent]:
    """The reputation facts a trade in its current state stands for (see the module doc)."""
    tid, vol = trade.trade_id, trade.volume
    s = trade.state
    out: set[ReputationEvent] = set()
    if s == TradeState.CANCELED:
        out.add(
            ReputationEvent(
                user=trade.seller,
                trade_id=tid,
                kind="timed_out",
                volume=vol,
                at_ms=trade.funding_deadline_ms,
            )
        )
    elif s in (TradeState.EXPIRED, TradeState.REFUNDED) and trade.paid_ms is None:
        at = trade.payment_deadline_ms if trade.payment_deadline_ms is not None else trade.now_ms
        out.add(
            ReputationEvent(user=trade.buyer, trade_id=tid, kind="timed_out", volume=vol, at_ms=at)
        )
    elif s == TradeState.RELEASED and trade.closed_ms is not None:
        start = trade.paid_ms if trade.paid_ms is not None else trade.funded_ms
        release_ms = max(0, trade.closed_ms - start) if start is not None else None
        out.add(
            ReputationEvent(
                user=trade.buyer, trade_id=tid, kind="completed", volume=vol, at_ms=trade.closed_ms
            )
        )
        out.add(
            ReputationEvent(
                user=trade.seller,
                trade_id=tid,
                kind="completed",
                volume=vol,
                at_ms=trade.closed_ms,
                release_ms=release_ms,
            )
        )
    elif s == TradeState.RESOLVED and trade.closed_ms is not None:
        at = trade.closed_ms
        if trade.resolution == "release":
            out.add(
                ReputationEvent(
                    user=trade.buyer, trade_id=tid, kind="completed", volume=vol, at_ms=at
                )
            )
            out.add(
                ReputationEvent(
                    user=trade.seller, trade_id=tid, kind="completed", volume=vol, at_ms=at
                )
            )
            out.add(
                ReputationEvent(
                    user=trade.seller, trade_id=tid, kind="dispute_lost", volume=vol, at_ms=at
                )
            )
        elif trade.resolution == "refund":
            out.add(
                ReputationEvent(
                    user=trade.buyer, trade_id=tid, kind="dispute_lost", volume=vol, at_ms=at
                )
            )
    return frozenset(out)


def _order(ev: ReputationEvent) -> tuple[str, str, bool]:
    return (ev.user, ev.kind, not ev.retract)


def _transition(before: P2PTrade, after: P2PTrade) -> Transition:
    old, new = outcomes(before), outcomes(after)
    retracted = [msgspec.structs.replace(e, retract=True) for e in old - new]
    added = list(new - old)
    reputation = tuple(sorted(retracted, key=_order)) + tuple(sorted(added, key=_order))
    changed = msgspec.structs.replace(after, now_ms=before.now_ms) != before
    return Transition(after, changed, reputation)


def apply_event(trade: P2PTrade, event: ChainEvent, at_ms: int) -> Transition:
    """Apply a chain event that happened at ``at_ms`` (its block's time, ms UTC). Applying
    an event already applied (same ``event_id``) changes nothing; events may arrive out of
    chain order. ``now_ms`` advances to ``at_ms`` if later. Raises :class:`LifecycleError`
    for an event of another trade."""
    if event.trade_id != trade.trade_id:
        raise LifecycleError(f"event for {event.trade_id} applied to {trade.trade_id}")
    if any(a.event.event_id == event.event_id for a in trade.applied):
        return Transition(trade, False, ())
    applied = tuple(sorted((*trade.applied, Applied(event, at_ms)), key=lambda a: a.event.position))
    return _transition(trade, _derive(trade, applied, max(trade.now_ms, at_ms)))


def revert_event(trade: P2PTrade, event_id: str) -> Transition:
    """Undo the chain event ``event_id`` (``block_hash:log_index``) after a reorg orphaned
    its block; the state is rebuilt without it and the reputation facts it caused are
    retracted. An unknown id changes nothing."""
    applied = tuple(a for a in trade.applied if a.event.event_id != event_id)
    if len(applied) == len(trade.applied):
        return Transition(trade, False, ())
    return _transition(trade, _derive(trade, applied, trade.now_ms))


def tick(trade: P2PTrade, now_ms: int) -> Transition:
    """Advance the clock to ``now_ms`` (ms UTC; an earlier time changes nothing): past the
    funding deadline an unfunded trade is ``canceled``, past the payment deadline a funded
    trade the buyer never marked paid is ``expired``."""
    if now_ms <= trade.now_ms:
        return Transition(trade, False, ())
    return _transition(trade, _derive(trade, trade.applied, now_ms))
