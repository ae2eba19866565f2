"""The WebSocket channels fed by the engine's events: ``trades.<SYM>``, ``ticker.<SYM>``, the
private ``orders`` channel and the private ``balances`` channel.

Every message goes to a subscriber's bounded queue (:class:`~orrange.api.subscriber.Subscriber`),
so one slow client never delays the others. ``trade``: a public fill (``side`` is the
aggressor's). ``ticker``: the 24 h statistics, pushed on subscription and then at most once per
interval per symbol after fills, once they cover the last fill seen (the persister may lag).
``order``: the user's own events (see :func:`~orrange.api.schemas.order_event_json`), plus the
ready messages other API processes publish on core NATS ``private.<user>`` (trade chat).
``balance``: a change of the user's balances (see :class:`LedgerChannel`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.js import api as js_api

from orrange.api.schemas import TickerOut, order_event_json
from orrange.api.subscriber import Subscriber
from orrange.ledger import AssetSpec, Entry, to_decimal
from orrange.logging import get_logger
from orrange.markets import MarketSpec
from orrange.matching import Event, OrderFilled
from orrange.runtime import ensure_stream
from orrange.wire.funds import (
    FUNDS,
    LEDGER,
    LEDGER_PREFIX,
    LEDGER_WITHDRAWAL_SUBJECT,
    WithdrawalDecision,
)

__all__ = [
    "PRIVATE_PREFIX",
    "LedgerChannel",
    "OrderChannel",
    "TickerChannel",
    "TickerSource",
    "TradeChannel",
]

#: Core NATS ``private.<user>``: a WebSocket message (JSON) for one user's ``orders`` channel.
PRIVATE_PREFIX = "private"

#: Computes the 24 h ticker of a market and the sequence number of the last fill it includes.
TickerSource = Callable[[MarketSpec], Awaitable[tuple[TickerOut, int]]]

_log = get_logger("orrange.api.fanout")
_json = msgspec.json.Encoder()
_entries_decoder = msgspec.json.Decoder(list[Entry])
_decision_decoder = msgspec.json.Decoder(WithdrawalDecision)


def _discard(index: dict[str, set[Subscriber]], key: str, sub: Subscriber) -> None:
    subs = index.get(key)
    if subs is not None:
        subs.discard(sub)
        if not subs:
            del index[key]


class TradeChannel:
    """``trades.<SYM>``: every fill of the market as a public ``trade``.

    Args:
        markets: the markets served, keyed by symbol.
    """

    def __init__(self, markets: Mapping[str, MarketSpec]) -> None:
        self._markets = markets
        self._subs: dict[str, set[Subscriber]] = {}

    async def start(self, nc: NATS) -> None:
        """Nothing to follow: the hub calls :meth:`on_fill`."""

    async def stop(self) -> None:
        """Nothing to stop."""

    def subscribe(self, sub: Subscriber, channel: str) -> str | None:
        """Follow ``trades.<SYM>``."""
        sym = channel.partition(".")[2]
        if sym not in self._markets:
            return "unknown_market"
        sub.channels.add(channel)
        self._subs.setdefault(sym, set()).add(sub)
        return None

    def unsubscribe(self, sub: Subscriber, channel: str) -> None:
        """Stop following ``trades.<SYM>``."""
        _discard(self._subs, channel.partition(".")[2], sub)

    def on_fill(self, ev: OrderFilled) -> None:
        """Send a dispatched fill to the market's subscribers."""
        subs = self._subs.get(ev.symbol)
        if not subs:
            return
        spec = self._markets.get(ev.symbol)
        if spec is None:
            return
        data = _json.encode(
            {
                "type": "trade",
                "channel": f"trades.{ev.symbol}",
                "seq": ev.seq,
                "ts": ev.ts,
                "price": spec.ticks_to_price(ev.price),
                "quantity": spec.lots_to_qty(ev.quantity),
                "side": ev.aggressor,
            }
        )
        for sub in list(subs):
            sub.enqueue(data)


class TickerChannel:
    """``ticker.<SYM>``: the 24 h ticker of a market.

    Args:
        markets: the markets served, keyed by symbol.
        source: computes the ticker (from PostgreSQL) and the seq of the last fill it covers.
        interval_s: at most one push per symbol per interval.
    """

    def __init__(
        self, markets: Mapping[str, MarketSpec], source: TickerSource, interval_s: float
    ) -> None:
        self._markets = markets
        self._source = source
        self._interval = interval_s
        self._subs: dict[str, set[Subscriber]] = {}
        self._dirty: set[str] = set()
        self._last_fill: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, nc: NATS) -> None:
        """Start the periodic pushes."""
        self._task = asyncio.create_task(self._loop(), name="api-ticker")

    async def stop(self) -> None:
        """Cancel the periodic pushes and the pushes in progress."""
        tasks = [t for t in (self._task, *self._tasks) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t

    def subscribe(self, sub: Subscriber, channel: str) -> str | None:
        """Follow ``ticker.<SYM>``; the current ticker is pushed right away."""
        spec = self._markets.get(channel.partition(".")[2])
        if spec is None:
            return "unknown_market"
        sub.channels.add(channel)
        self._subs.setdefault(spec.symbol, set()).add(sub)
        task: asyncio.Task[Any] = asyncio.ensure_future(self._send(spec, (sub,)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return None

    def unsubscribe(self, sub: Subscriber, channel: str) -> None:
        """Stop following ``ticker.<SYM>``."""
        _discard(self._subs, channel.partition(".")[2], sub)

    def on_fill(self, ev: OrderFilled) -> None:
        """A dispatched fill: the market's ticker changed."""
        self._dirty.add(ev.symbol)
        self._last_fill[ev.symbol] = ev.seq

    async def _send(
        self, spec: MarketSpec, subs: tuple[Subscriber, ...], *, current: bool = False
    ) -> bool:
        """Push the ticker to ``subs``; with ``current``, only once it covers the last fill
        seen (else False: the persister is behind, try again later)."""
        try:
            ticker, covered = await self._source(spec)
        except Exception as exc:
            _log.warning("ticker query failed", symbol=spec.symbol, error=repr(exc))
            return False
        if current and covered < self._last_fill.get(spec.symbol, 0):
            return False
        data = _json.encode(
            {"type": "ticker", "channel": f"ticker.{spec.symbol}", **msgspec.to_builtins(ticker)}
        )
        for sub in subs:
            if f"ticker.{spec.symbol}" in sub.channels:
                sub.enqueue(data)
        return True

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            dirty, self._dirty = self._dirty, set()
            for sym in dirty:
                subs = self._subs.get(sym)
                spec = self._markets.get(sym)
                if (
                    subs
                    and spec is not None
                    and not await self._send(spec, tuple(subs), current=True)
                ):
                    self._dirty.add(sym)


class OrderChannel:
    """``orders``: an authenticated client's own order events (and what other API processes
    publish for the user on ``private.<user>``).

    Args:
        markets: the markets served, keyed by symbol.
    """

    def __init__(self, markets: Mapping[str, MarketSpec]) -> None:
        self._markets = markets
        self._users: dict[str, set[Subscriber]] = {}
        self._nats_sub: Any = None

    async def start(self, nc: NATS) -> None:
        """Follow core NATS ``private.*``."""
        self._nats_sub = await nc.subscribe(f"{PRIVATE_PREFIX}.*", cb=self._on_private_msg)

    async def stop(self) -> None:
        """Stop following ``private.*``."""
        sub, self._nats_sub = self._nats_sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def subscribe(self, sub: Subscriber, channel: str) -> str | None:
        """Follow ``orders`` (``auth_required`` before the client authenticated)."""
        if channel != "orders":
            return "unknown_channel"
        if sub.user is None:
            return "auth_required"
        sub.channels.add(channel)
        self._users.setdefault(sub.user, set()).add(sub)
        return None

    def unsubscribe(self, sub: Subscriber, channel: str) -> None:
        """Stop following ``orders``."""
        if channel == "orders" and sub.user is not None:
            _discard(self._users, sub.user, sub)

    def subscribers(self, user: str) -> Iterable[Subscriber]:
        """The subscribers of ``user``'s ``orders`` channel in this process."""
        return self._users.get(user, ())

    def on_event(self, ev: Event) -> None:
        """Send a dispatched event (or a rejection) to the subscribers of its users."""
        if not self._users:
            return
        if isinstance(ev, OrderFilled):
            users: tuple[str, ...] = (ev.maker_user, ev.taker_user)
            if ev.maker_user == ev.taker_user:
                users = (ev.maker_user,)
        else:
            user = getattr(ev, "user", None)
            if user is None:
                return
            users = (user,)
        spec = self._markets.get(ev.symbol)
        if spec is None:
            return
        for user in users:
            subs = self._users.get(user)
            if not subs:
                continue
            body = order_event_json(spec, ev, user)
            if body is None:
                continue
            data = _json.encode({"type": "order", "channel": "orders", **body})
            for sub in list(subs):
                sub.enqueue(data)

    async def _on_private_msg(self, msg: Any) -> None:
        """A ready WebSocket message for the user of ``private.<user>``: queue it to that
        user's ``orders`` subscribers of this process."""
        user = msg.subject.partition(".")[2]
        for sub in list(self._users.get(user, ())):
            sub.enqueue(msg.data)


class LedgerChannel:
    """``balances``: an authenticated client's balance changes; and the withdrawal decisions
    the REST API waits for. Follows ``LEDGER`` (``ledger.>``, new messages only) with one
    ordered JetStream consumer per process.

    Each ledger entry with postings of a subscribed user sends that user one message::

        {"type": "balance", "channel": "balances", "entry_id": "cmd:17:0", "kind": "hold",
         "ts": 1700000000000, "ref": "BTC-USDT:17",
         "changes": [{"asset": "USDT", "available": "-10.5", "held": "10.5"}]}

    ``changes`` are the entry's **deltas** of the user's ``available`` and ``held`` as decimal
    strings in the asset's units (postings of assets the API does not list are left out). The
    API keeps no balances: a client reads ``GET /api/v1/balances`` once, then adds the
    deltas, or reads it again on a change; ``entry_id`` orders and de-duplicates them (a
    reconnect may miss changes: read the balances again after one).

    Args:
        assets: the ledger's assets by code (decimal conversion).
    """

    def __init__(self, assets: Mapping[str, AssetSpec]) -> None:
        self._assets = assets
        self._users: dict[str, set[Subscriber]] = {}
        self._user_of: dict[Subscriber, str] = {}  # the user each subscribed as
        self._decisions: dict[str, asyncio.Future[WithdrawalDecision]] = {}
        self._sub: Any = None

    async def start(self, nc: NATS) -> None:
        """Provision ``FUNDS`` (where withdrawal requests go) and ``LEDGER``, and follow new
        ``ledger.>`` messages."""
        js = nc.jetstream()
        await ensure_stream(js, FUNDS)
        await ensure_stream(js, LEDGER)
        self._sub = await js.subscribe(
            f"{LEDGER_PREFIX}.>",
            cb=self._on_msg,
            ordered_consumer=True,
            deliver_policy=js_api.DeliverPolicy.NEW,
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )

    async def stop(self) -> None:
        """Stop following ``LEDGER``; waiting withdrawal requests get a cancellation."""
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sub.unsubscribe(), 2)
        for fut in self._decisions.values():
            fut.cancel()
        self._decisions.clear()

    def subscribe(self, sub: Subscriber, channel: str) -> str | None:
        """Follow ``balances`` (``auth_required`` before the client authenticated)."""
        if channel != "balances":
            return "unknown_channel"
        if sub.user is None:
            return "auth_required"
        self.unsubscribe(sub, channel)  # a subscriber that authenticated again as another
        sub.channels.add(channel)
        self._users.setdefault(sub.user, set()).add(sub)
        self._user_of[sub] = sub.user
        return None

    def unsubscribe(self, sub: Subscriber, channel: str) -> None:
        """Stop following ``balances``."""
        user = self._user_of.pop(sub, None) if channel == "balances" else None
        if user is not None:
            _discard(self._users, user, sub)

    def expect_decision(self, withdrawal_id: str) -> asyncio.Future[WithdrawalDecision]:
        """A future resolved with risk's :class:`WithdrawalDecision` on ``withdrawal_id``.
        Call before publishing the request; :meth:`forget_decision` when done."""
        fut: asyncio.Future[WithdrawalDecision] = asyncio.get_running_loop().create_future()
        self._decisions[withdrawal_id] = fut
        return fut

    def forget_decision(self, withdrawal_id: str) -> None:
        """Stop waiting for the decision on ``withdrawal_id``."""
        self._decisions.pop(withdrawal_id, None)

    async def _on_msg(self, msg: Any) -> None:
        try:
            if msg.subject == LEDGER_WITHDRAWAL_SUBJECT:
                if self._decisions:
                    self.on_decision(_decision_decoder.decode(msg.data))
            elif self._users:
                for entry in _entries_decoder.decode(msg.data):
                    self.on_entry(entry)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            _log.warning("undecodable ledger message", subject=msg.subject, error=str(exc))

    def on_decision(self, decision: WithdrawalDecision) -> None:
        """Answer the request waiting for ``decision``, if any."""
        fut = self._decisions.pop(decision.withdrawal_id, None)
        if fut is not None and not fut.done():
            fut.set_result(decision)

    def on_entry(self, entry: Entry) -> None:
        """Send ``entry``'s changes to the subscribers of its users."""
        changes: dict[str, list[dict[str, str]]] = {}
        for p in entry.postings:
            asset = self._assets.get(p.asset)
            if asset is None or p.account not in self._users:
                continue
            changes.setdefault(p.account, []).append(
                {
                    "asset": p.asset,
                    "available": to_decimal(asset, p.available),
                    "held": to_decimal(asset, p.held),
                }
            )
        for user, mine in changes.items():
            data = _json.encode(
                {
                    "type": "balance",
                    "channel": "balances",
                    "entry_id": entry.id,
                    "kind": str(entry.kind),
                    "ts": entry.ts,
                    "ref": entry.ref,
                    "changes": mine,
                }
            )
            for sub in list(self._users.get(user, ())):
                if sub.user == user:  # not since authenticated as someone else
                    sub.enqueue(data)
