"""Pre-trade risk rules: a pure, deterministic filter in front of the order books.

:class:`RiskEngine` decides for each command whether it may reach its book. It does no I/O and
reads no clock: time is the command's ``ts`` (ms since the Unix epoch, UTC), prices are integer
ticks, quantities integer lots and notional integer quote units of the market's
:class:`~orrange.markets.MarketSpec`, exactly as in the matching core.

Checks, in order (the first failing one decides the :class:`~orrange.matching.enums.RejectReason`):

* every command: its market must be known (``unknown_market``);
* :class:`~orrange.matching.commands.SubmitOrder`: quantity positive (``invalid_quantity``) and
  within ``[min_qty, max_qty]`` (``below_min_qty`` / ``above_max_qty``); limit and trigger
  prices positive (``invalid_price``); notional ``price * quantity`` (the limit price, else the
  trigger price, else for a market order the last trade price) at least ``min_notional``
  (``below_min_notional``); the limit price within ``price_band_bps`` of the last trade price
  (``price_out_of_band``; no band before the market's first trade or when the band is 0); the
  user's open orders below :attr:`RiskLimits.max_open_orders` (``too_many_open_orders``); a
  token from the user's rate bucket (``rate_limited``);
* :class:`~orrange.matching.commands.AmendOrder`: new quantity positive and at most ``max_qty``,
  new price positive and within the band, then a rate token;
* cancels (``CancelOrder``, ``CancelAll``) always pass so that a user can always reduce risk; so
  do the operator commands (``SetReferencePrice``, ``AdvanceTime``, ``Halt``, ``Resume``).

The grid itself (tick and lot multiples) is implicit: prices and quantities are already integer
ticks and lots when they reach risk (the API converts decimal strings with
:meth:`~orrange.markets.MarketSpec.price_to_ticks` / ``qty_to_lots``).

State comes from the books' events (:meth:`RiskEngine.apply`): an ``OrderAccepted`` opens an
order of its user; a fill, cancel, amend or expiry leaving 0 lots closes it; fills set the last
trade price. Submits forwarded but not yet answered by their book count as open too ("in
flight"), so a burst of submits cannot overshoot the cap while the book catches up; the book's
``OrderAccepted`` or ``OrderRejected`` for a submit settles one of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from orrange.markets import MarketSpec
from orrange.matching.commands import AmendOrder, Command, SubmitOrder
from orrange.matching.enums import RejectReason
from orrange.matching.events import (
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
)

__all__ = ["RiskEngine", "RiskLimits", "TokenBucket", "command_tag", "reject"]

#: Milli-tokens per token: buckets count in thousandths so that refills stay exact integers.
_MILLI: Final = 1000
#: Basis points per unit.
_BPS: Final = 10_000


class RiskLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Per-user limits, identical for every user.

    Attributes:
        max_open_orders: open orders (resting, pending stops and in-flight submits) a user may
            have across the markets of this risk engine; a submit that would exceed it is
            rejected with ``too_many_open_orders``.
        rate_per_s: sustained submits and amends per second a user may send (token refill
            rate, tokens per second of command time).
        burst: rate bucket capacity: how many submits/amends a user may send at once after a
            quiet period.
        exempt_users: users exempt from the open-order cap and the rate limit (market makers,
            replays such as the LOBSTER feed's ``lobster``, ``lobster-seed`` and
            ``lobster-taker``); the market checks and client order id idempotency still apply.

    Raises:
        ValueError: a limit is not positive.
    """

    max_open_orders: int = 100
    rate_per_s: int = 50
    burst: int = 100
    exempt_users: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.max_open_orders <= 0 or self.rate_per_s <= 0 or self.burst <= 0:
            raise ValueError("max_open_orders, rate_per_s and burst must be positive")


class TokenBucket:
    """A token bucket in integer milli-tokens driven by command time (ms UTC).

    It starts full (``burst`` tokens) and refills at ``rate_per_s`` tokens per second of
    command time; time never runs backwards (an older ``ts`` refills nothing).

    Args:
        rate_per_s: refill rate, tokens per second (> 0).
        burst: capacity in tokens (> 0).
        ts: ms UTC of creation.
    """

    __slots__ = ("_cap", "_last", "_rate", "tokens")

    def __init__(self, rate_per_s: int, burst: int, ts: int) -> None:
        self._rate = rate_per_s  # milli-tokens per ms == tokens per s
        self._cap = burst * _MILLI
        self.tokens = self._cap
        self._last = ts

    def take(self, ts: int) -> bool:
        """Refill up to ``ts`` (ms UTC), then take one token; False (nothing taken) if empty."""
        if ts > self._last:
            self.tokens = min(self._cap, self.tokens + (ts - self._last) * self._rate)
            self._last = ts
        if self.tokens >= _MILLI:
            self.tokens -= _MILLI
            return True
        return False


def command_tag(cmd: Command) -> str:
    """The command's wire type tag (``submit``, ``cancel``, ``amend`` ...)."""
    return str(type(cmd).__struct_config__.tag)


def reject(symbol: str, cmd: Command, reason: RejectReason, message: str) -> OrderRejected:
    """The ``OrderRejected`` (``seq = 0``: not a book event) answering ``cmd`` on ``symbol``.

    ``user``, ``order_id`` and ``client_order_id`` are taken from the command when it has
    them (else ``""`` / 0); ``ts`` is the command's.
    """
    return OrderRejected(
        symbol=symbol,
        seq=0,
        ts=cmd.ts,
        order_id=getattr(cmd, "order_id", 0),
        user=getattr(cmd, "user", ""),
        client_order_id=getattr(cmd, "client_order_id", ""),
        command=command_tag(cmd),
        reason=reason,
        message=message,
    )


def _bad_quantity(
    symbol: str, cmd: SubmitOrder | AmendOrder, qty: int, min_lots: int, max_lots: int
) -> OrderRejected | None:
    if qty <= 0:
        reason, message = RejectReason.INVALID_QUANTITY, f"quantity {qty} lots is not positive"
    elif qty < min_lots:
        reason = RejectReason.BELOW_MIN_QTY
        message = f"quantity {qty} lots is below the minimum {min_lots} lots"
    elif qty > max_lots:
        reason = RejectReason.ABOVE_MAX_QTY
        message = f"quantity {qty} lots is above the maximum {max_lots} lots"
    else:
        return None
    return reject(symbol, cmd, reason, message)


def _bad_price(
    symbol: str, cmd: SubmitOrder | AmendOrder, price: int | None, what: str
) -> OrderRejected | None:
    if price is None or price > 0:
        return None
    return reject(symbol, cmd, RejectReason.INVALID_PRICE, f"{what} {price} ticks is not positive")


class RiskEngine:
    """The risk rules and the per-user state they need (see the module docstring).

    Args:
        markets: market specs by symbol; commands for any other symbol are rejected with
            ``unknown_market``.
        limits: per-user limits.

    Not thread-safe; one engine per process, fed its commands and events in order.
    """

    def __init__(self, markets: Mapping[str, MarketSpec], limits: RiskLimits | None = None) -> None:
        self.markets: dict[str, MarketSpec] = dict(markets)
        self.limits = limits or RiskLimits()
        self._exempt = self.limits.exempt_users
        #: last trade price in ticks per symbol (absent before the first fill)
        self.last_price: dict[str, int] = {}
        #: owner of every open order, by (symbol, order_id)
        self._open: dict[tuple[str, int], str] = {}
        self._open_count: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}
        self._buckets: dict[str, TokenBucket] = {}
        # min lots, max lots, min notional units, band bps per symbol (hot-path cache)
        self._grid: dict[str, tuple[int, int, int, int]] = {
            sym: (s.min_lots, s.max_lots, s.min_notional_units, s.price_band_bps)
            for sym, s in self.markets.items()
        }

    # ------------------------------------------------------------------ queries
    def open_orders(self, user: str) -> int:
        """Open orders of ``user``: accepted and still open, plus submits in flight."""
        return self._open_count.get(user, 0) + self._in_flight.get(user, 0)

    def in_flight(self, user: str) -> int:
        """Submits of ``user`` forwarded to a book and not yet accepted or rejected by it."""
        return self._in_flight.get(user, 0)

    # ------------------------------------------------------------------ commands
    def check(self, symbol: str, cmd: Command) -> Command | OrderRejected:
        """Decide ``cmd`` for the book of ``symbol``.

        Returns ``cmd`` itself when it may be forwarded (a passing submit then counts as in
        flight for its user and took a rate token), or the ``OrderRejected`` (``seq = 0``)
        with the reason and a human message; a rejection changes no state.
        """
        grid = self._grid.get(symbol)
        if grid is None:
            return reject(symbol, cmd, RejectReason.UNKNOWN_MARKET, f"unknown market {symbol!r}")
        if isinstance(cmd, SubmitOrder):
            return self._check_submit(symbol, grid, cmd)
        if isinstance(cmd, AmendOrder):
            return self._check_amend(symbol, grid, cmd)
        return cmd

    def _check_submit(
        self, symbol: str, grid: tuple[int, int, int, int], cmd: SubmitOrder
    ) -> SubmitOrder | OrderRejected:
        min_lots, max_lots, min_notional, band = grid
        qty = cmd.quantity
        price = cmd.price
        trigger = cmd.trigger_price
        bad = (
            _bad_quantity(symbol, cmd, qty, min_lots, max_lots)
            or _bad_price(symbol, cmd, price, "price")
            or _bad_price(symbol, cmd, trigger, "trigger price")
        )
        if bad is not None:
            return bad
        last = self.last_price.get(symbol)
        if min_notional > 0:
            ref = price
            if ref is None:
                ref = trigger if trigger is not None else last
            if ref is not None and ref * qty < min_notional:
                return reject(
                    symbol,
                    cmd,
                    RejectReason.BELOW_MIN_NOTIONAL,
                    f"notional {ref * qty} quote units ({ref} ticks x {qty} lots) is below the "
                    f"minimum {min_notional} quote units",
                )
        if price is not None and band > 0 and last is not None:
            rejected = self._band(symbol, cmd, price, last, band)
            if rejected is not None:
                return rejected
        user = cmd.user
        if user in self._exempt:
            return cmd
        cap = self.limits.max_open_orders
        if self._open_count.get(user, 0) + self._in_flight.get(user, 0) >= cap:
            return reject(
                symbol,
                cmd,
                RejectReason.TOO_MANY_OPEN_ORDERS,
                f"user {user!r} already has the maximum of {cap} open orders",
            )
        if not self._take(user, cmd.ts):
            return self._rate_limited(symbol, cmd)
        self._in_flight[user] = self._in_flight.get(user, 0) + 1
        return cmd

    def _check_amend(
        self, symbol: str, grid: tuple[int, int, int, int], cmd: AmendOrder
    ) -> AmendOrder | OrderRejected:
        max_lots, band = grid[1], grid[3]
        price = cmd.price
        bad = _bad_price(symbol, cmd, price, "price")
        if cmd.quantity is not None:
            bad = _bad_quantity(symbol, cmd, cmd.quantity, 1, max_lots) or bad
        if bad is not None:
            return bad
        last = self.last_price.get(symbol)
        if price is not None and band > 0 and last is not None:
            rejected = self._band(symbol, cmd, price, last, band)
            if rejected is not None:
                return rejected
        if cmd.user not in self._exempt and not self._take(cmd.user, cmd.ts):
            return self._rate_limited(symbol, cmd)
        return cmd

    @staticmethod
    def _band(
        symbol: str, cmd: SubmitOrder | AmendOrder, price: int, last: int, band: int
    ) -> OrderRejected | None:
        # |price - last| / last <= band / 10000, exactly in integers
        if abs(price - last) * _BPS <= last * band:
            return None
        lo = last - last * band // _BPS
        hi = last + last * band // _BPS
        return reject(
            symbol,
            cmd,
            RejectReason.PRICE_OUT_OF_BAND,
            f"price {price} ticks is more than {band} bps from the last trade price {last} ticks "
            f"(allowed {lo}..{hi} ticks)",
        )

    def _take(self, user: str, ts: int) -> bool:
        bucket = self._buckets.get(user)
        if bucket is None:
            bucket = self._buckets[user] = TokenBucket(
                self.limits.rate_per_s, self.limits.burst, ts
            )
        return bucket.take(ts)

    def _rate_limited(self, symbol: str, cmd: SubmitOrder | AmendOrder) -> OrderRejected:
        lim = self.limits
        return reject(
            symbol,
            cmd,
            RejectReason.RATE_LIMITED,
            f"user {cmd.user!r} exceeds {lim.rate_per_s} orders/s (burst {lim.burst})",
        )

    def release(self, cmd: Command) -> None:
        """Undo the in-flight count of a submit that :meth:`check` passed but that was not
        forwarded after all (e.g. refused as a duplicate client order id). Other commands:
        no-op. The rate token stays taken."""
        if isinstance(cmd, SubmitOrder):
            self._settle(cmd.user)

    # ------------------------------------------------------------------ events
    def apply(self, event: Event) -> None:
        """Update the state from one book event (any other event type is ignored).

        Events must come in each book's order; repeated events are harmless for the open
        order count (an order opens and closes once by its ``(symbol, order_id)``).
        """
        if isinstance(event, OrderFilled):
            self.last_price[event.symbol] = event.price
            if event.maker_leaves == 0:
                self._close(event.symbol, event.maker_order_id)
            if event.taker_leaves == 0:
                self._close(event.symbol, event.taker_order_id)
        elif isinstance(event, OrderAccepted):
            self._settle(event.user)
            key = (event.symbol, event.order_id)
            if key not in self._open:
                self._open[key] = event.user
                self._open_count[event.user] = self._open_count.get(event.user, 0) + 1
        elif isinstance(event, OrderCanceled | OrderAmended):
            if event.leaves == 0:
                self._close(event.symbol, event.order_id)
        elif isinstance(event, OrderExpired):
            self._close(event.symbol, event.order_id)
        elif isinstance(event, OrderRejected) and event.seq > 0 and event.command == "submit":
            self._settle(event.user)

    def _settle(self, user: str) -> None:
        n = self._in_flight.get(user, 0)
        if n > 1:
            self._in_flight[user] = n - 1
        elif n == 1:
            del self._in_flight[user]

    def _close(self, symbol: str, order_id: int) -> None:
        user = self._open.pop((symbol, order_id), None)
        if user is None:
            return
        n = self._open_count[user] - 1
        if n:
            self._open_count[user] = n
        else:
            del self._open_count[user]
