"""The sorted threshold index that evaluates price alerts.

:class:`AlertIndex` holds every live :class:`~orrange.alerts.rules.PriceAlert` and evaluates
price updates against them. Semantics (conditions, hysteresis, expiry) are defined in
:mod:`orrange.alerts.rules`; this module is about doing it without scanning.

Structure: one *book* per ``(market, reference)`` with the last observed price ``p`` and two
sorted lists of ``(level, alert_id)``:

* ``up``: entries that act when the price rises to ``>= level``; invariant ``level > p``.
  It holds armed up-alerts (level = target) and re-arming down-alerts waiting for their band.
* ``down``: entries that act when the price falls to ``<= level``; invariant ``level < p``.

Because of the invariants, an update ``p0 -> p1`` with ``p1 > p0`` acts exactly on the
*prefix* of ``up`` with ``level <= p1`` (and symmetrically on a suffix of ``down``), so the
cost is ``O(log n + k)`` for ``k`` alerts acted on, never a scan of the book. An added alert
whose next action lies beyond the last price is placed at once; the others (no price yet,
condition already holding, restored re-arming alerts) wait in a per-book *fresh* set and are
settled at the next update (each alert once). ``crosses`` alerts whose target equals the
last price, with no side yet, wait in a set that is emptied by the next update that moves
the price.

Each list is a plain Python list while it is small (up to :data:`_SMALL` entries: ``bisect``
on a few hundred pointers is cheaper than any tree) and becomes a sortedcontainers
``SortedList`` beyond that, so add and remove stay ``O(log n)`` for a crowded book (a plain
list insert moves the whole list). Expiry uses a heap of
``(expires_at, alert_id)`` with lazy deletion; the heap is rebuilt when garbage dominates.

Events of one :meth:`AlertIndex.update` are ordered deterministically: expiries first by
``(expires_at, alert_id)``, then fires in the order the price path meets them (target
ascending for a rise, descending for a fall; a first or unchanged price counts as a rise), ties by
``alert_id``, then re-arms by ``alert_id``.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right, insort
from typing import Literal

import msgspec
from sortedcontainers import SortedList

from orrange.alerts.rules import (
    AlertEvent,
    AlertExpired,
    AlertFired,
    AlertRearmed,
    Condition,
    InvalidAlert,
    PriceAlert,
    TriggerSource,
)

__all__ = ["AlertIndex", "AlertStatus", "DuplicateAlert"]

_UP = 1
_DOWN = -1
_NAMES = {_UP: "up", _DOWN: "down"}

#: A book's trigger list stays a plain list up to this many entries (then a SortedList).
_SMALL = 512

# where an entry is
_IN_FRESH = 0
_IN_UP = 1
_IN_DOWN = 2
_IN_UNDECIDED = 3
_GONE = 4


_Fire = tuple["_Entry", int]  # (entry, direction it fired in)


class DuplicateAlert(KeyError):
    """An alert with this id is already in the index."""


class AlertStatus(msgspec.Struct, frozen=True):
    """Observable state of one alert in the index.

    Attributes:
        armed: ``True`` when the next thing the alert can do is fire; ``False`` while a
            re-arming alert waits for the price to cross its band.
        direction: the direction of the next fire (``"up"``: ``p >= target``, ``"down"``:
            ``p <= target``), or ``None`` for a ``crosses`` alert whose side is not known yet.
        level: the price (ticks) at which the alert next acts (target when armed, band edge
            while waiting), or ``None`` while its side is unknown.
    """

    armed: bool
    direction: str | None
    level: int | None


class _Entry:
    __slots__ = ("alert", "armed", "book", "direction", "level", "where")

    def __init__(self, alert: PriceAlert, book: _Book) -> None:
        self.alert = alert
        self.book = book
        self.armed = True
        self.direction = 0  # next fire direction: _UP, _DOWN or 0 (crosses, side unknown)
        self.level = alert.target  # where it acts next
        self.where = _IN_FRESH


class _Book:
    __slots__ = ("down", "fresh", "last", "market", "reference", "undecided", "up")

    def __init__(self, market: str, reference: TriggerSource) -> None:
        self.market = market
        self.reference = reference
        self.last: int | None = None
        # sorted (level, alert_id) entries: a plain list while small, then a SortedList
        self.up: list[tuple[int, int]] | SortedList = []
        self.down: list[tuple[int, int]] | SortedList = []
        self.fresh: dict[int, _Entry] = {}
        self.undecided: dict[int, _Entry] = {}


class AlertIndex:
    """All live price alerts, indexed per ``(market, reference)`` by sorted thresholds.

    Usage::

        index = AlertIndex()
        index.add(PriceAlert(id=1, user="u1", market="BTC-USDT", condition=Condition.ABOVE,
                             reference=TriggerSource.LAST, target=6_500_000))
        events = index.update("BTC-USDT", TriggerSource.LAST, 6_500_100, ts=1_700_000_000_000)
        # -> [AlertFired(alert_id=1, ..., price=6_500_100, final=True)]

    Not thread-safe; one actor owns one index.

    Recovery contract (tested): persist, per re-arming alert, the ``direction`` of its last
    :class:`AlertFired` and clear it on :class:`AlertRearmed` (one-shot alerts are gone after
    firing). After a restart, :meth:`add` every live alert with ``rearm_after`` = that
    direction, then feed each book's last known price: from then on the index behaves exactly
    like one that never stopped and saw that price again (alerts added since a book's last
    update are settled by it). Without a last price, a ``crosses`` alert takes its side from
    the first price it sees.
    """

    def __init__(self) -> None:
        self._books: dict[tuple[str, str], _Book] = {}
        self._entries: dict[int, _Entry] = {}
        self._heap: list[tuple[int, int]] = []
        self._expiring = 0  # live entries with an expiry (for heap compaction)

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._entries

    def get(self, alert_id: int) -> PriceAlert | None:
        """The alert with this id, or ``None``."""
        entry = self._entries.get(alert_id)
        return entry.alert if entry is not None else None

    def status(self, alert_id: int) -> AlertStatus | None:
        """The alert's :class:`AlertStatus`, or ``None`` if it is not in the index."""
        e = self._entries.get(alert_id)
        if e is None:
            return None
        known = e.direction != 0
        return AlertStatus(
            armed=e.armed,
            direction=_NAMES[e.direction] if known else None,
            level=e.level if known or not e.armed else None,
        )

    def last_price(self, market: str, reference: TriggerSource) -> int | None:
        """The last price (ticks) seen for ``(market, reference)``, or ``None``."""
        book = self._books.get((market, reference))
        return book.last if book is not None else None

    def alerts(self) -> list[PriceAlert]:
        """Every live alert, ordered by id."""
        return [self._entries[i].alert for i in sorted(self._entries)]

    # ------------------------------------------------------------------ add / remove
    def add(self, alert: PriceAlert, *, rearm_after: Literal["up", "down"] | None = None) -> None:
        """Add an alert; it is evaluated from the next update of its book on. ``O(log n)``.

        Args:
            alert: the alert (validated with :meth:`PriceAlert.validate`, without a clock).
            rearm_after: restore a re-arming alert that already fired in this direction and
                waits for its band (used when reloading persisted state after a restart);
                ``None`` adds a fresh, armed alert.

        Raises:
            DuplicateAlert: an alert with ``alert.id`` is already in the index.
            InvalidAlert: the alert is invalid, or ``rearm_after`` is given for a one-shot
                alert or contradicts its condition (``above`` fires up, ``below`` down).
        """
        if alert.id in self._entries:
            raise DuplicateAlert(alert.id)
        alert.validate()
        key = (alert.market, alert.reference)
        book = self._books.get(key)
        if book is None:
            book = self._books[key] = _Book(alert.market, alert.reference)
        e = _Entry(alert, book)
        cond = alert.condition
        if rearm_after is not None:
            fired = _UP if rearm_after == "up" else _DOWN
            if not alert.rearm:
                raise InvalidAlert("rearm_after", "only a re-arming alert can wait for its band")
            if (cond is Condition.ABOVE and fired != _UP) or (
                cond is Condition.BELOW and fired != _DOWN
            ):
                raise InvalidAlert("rearm_after", f"a {cond} alert cannot have fired {rearm_after}")
            self._set_waiting(e, fired)
        elif cond is Condition.ABOVE:
            e.direction = _UP
        elif cond is Condition.BELOW:
            e.direction = _DOWN
        else:
            last = book.last
            if last is not None and last != alert.target:
                e.direction = _UP if last < alert.target else _DOWN
        self._entries[alert.id] = e
        last = book.last
        d = e.direction
        if (
            e.armed
            and last is not None
            and ((d == _UP and alert.target > last) or (d == _DOWN and alert.target < last))
        ):
            self._place(e, last)  # cannot act before the price moves: skip the fresh set
        else:
            book.fresh[alert.id] = e
        if alert.expires_at is not None:
            heapq.heappush(self._heap, (alert.expires_at, alert.id))
            self._expiring += 1

    def remove(self, alert_id: int) -> PriceAlert | None:
        """Remove an alert; returns it, or ``None`` if it was not in the index. ``O(log n)``."""
        e = self._entries.get(alert_id)
        if e is None:
            return None
        self._drop(e)
        return e.alert

    def _drop(self, e: _Entry) -> None:
        alert_id = e.alert.id
        del self._entries[alert_id]
        book = e.book
        where = e.where
        if where in (_IN_UP, _IN_DOWN):
            lst = book.up if where == _IN_UP else book.down
            key = (e.level, alert_id)
            if isinstance(lst, list):
                i = bisect_left(lst, key)
                if i == len(lst) or lst[i] != key:  # as SortedList.remove: never another entry
                    raise ValueError(f"{key} is not in the list")
                del lst[i]
            else:
                lst.remove(key)
        elif where == _IN_FRESH:
            del book.fresh[alert_id]
        else:
            del book.undecided[alert_id]
        if e.alert.expires_at is not None:
            self._expiring -= 1
            if len(self._heap) > 1024 and len(self._heap) > 4 * self._expiring:
                self._heap = [
                    (x, i)
                    for (x, i) in self._heap
                    if (f := self._entries.get(i)) is not None and f.alert.expires_at == x
                ]
                heapq.heapify(self._heap)

    # ------------------------------------------------------------------ evaluation
    def expire(self, now_ms: int) -> list[AlertEvent]:
        """Drop every alert with ``expires_at <= now_ms``.

        Returns:
            :class:`AlertExpired` events ordered by ``(expires_at, alert_id)``, ``ts=now_ms``.
        """
        out: list[AlertEvent] = []
        heap = self._heap
        entries = self._entries
        while heap and heap[0][0] <= now_ms:
            expires_at, alert_id = heapq.heappop(heap)
            e = entries.get(alert_id)
            if e is None or e.alert.expires_at != expires_at:
                continue  # removed, or re-added with another expiry (its own heap item)
            self._drop(e)
            a = e.alert
            out.append(AlertExpired(alert_id, a.user, a.market, a.reference, now_ms, expires_at))
        return out

    def update(
        self, market: str, reference: TriggerSource, price: int, ts: int
    ) -> list[AlertEvent]:
        """Evaluate one price update of ``(market, reference)``.

        Args:
            market: market symbol.
            reference: :class:`TriggerSource` of the price.
            price: observed price in ticks.
            ts: ms UTC of the observation; alerts of *any* market with ``expires_at <= ts``
                are dropped first (their :class:`AlertExpired` events lead the result).

        Returns:
            :class:`AlertExpired`, :class:`AlertFired` and :class:`AlertRearmed` events in the
            order given in the module docstring. Cost ``O(log n + k)`` for ``k`` alerts that
            fire, re-arm or are placed, independent of the number of other alerts.
        """
        if self._heap and self._heap[0][0] <= ts:
            out = self.expire(ts)
        else:
            out = []
        book = self._books.get((market, reference))
        if book is None:
            book = self._books[(market, reference)] = _Book(market, reference)
        p0 = book.last
        book.last = price
        fired: list[_Fire] = []
        rearmed: list[_Entry] = []
        if p0 is not None and price != p0:
            # most updates act on nothing, so the check of the list's end is the hot path
            # (a SortedList's ends are read from its ``_lists``, without the generic
            # ``__getitem__``)
            hits = None
            if price > p0:
                lst = book.up
                if isinstance(lst, list):
                    if lst and lst[0][0] <= price:
                        stop = bisect_right(lst, (price, _INF_ID))
                        hits = lst[:stop]
                        del lst[:stop]
                else:
                    ends = lst._lists
                    if ends and ends[0][0][0] <= price:
                        stop = lst.bisect_right((price, _INF_ID))
                        hits = list(lst.islice(0, stop))
                        del lst[:stop]
            else:
                lst = book.down
                if isinstance(lst, list):
                    if lst and lst[-1][0] >= price:
                        start = bisect_left(lst, (price, _NEG_ID))
                        hits = lst[start:]
                        del lst[start:]
                else:
                    ends = lst._lists
                    if ends and ends[-1][-1][0] >= price:
                        start = lst.bisect_left((price, _NEG_ID))
                        hits = list(lst.islice(start, None))
                        del lst[start:]
                if hits:
                    hits.reverse()
            if hits:
                entries = self._entries
                act = self._act
                for _, alert_id in hits:
                    act(entries[alert_id], price, fired, rearmed)
            if book.undecided:
                pending = list(book.undecided.values())
                book.undecided.clear()
                for e in pending:
                    e.direction = _UP if price < e.alert.target else _DOWN
                    self._place(e, price)
        if book.fresh:
            pending = list(book.fresh.values())
            book.fresh.clear()
            for e in pending:
                self._settle_fresh(e, price, fired, rearmed)
        if fired:
            rising = p0 is None or price >= p0
            if len(fired) > 1:
                if rising:
                    fired.sort(key=lambda f: (f[0].alert.target, f[0].alert.id))
                else:
                    fired.sort(key=lambda f: (-f[0].alert.target, f[0].alert.id))
            for e, direction in fired:
                a = e.alert
                out.append(
                    AlertFired(
                        a.id,
                        a.user,
                        a.market,
                        a.reference,
                        ts,
                        a.condition,
                        a.target,
                        _NAMES[direction],
                        price,
                        not a.rearm,
                    )
                )
        if rearmed:
            rearmed.sort(key=lambda f: f.alert.id)
            for e in rearmed:
                a = e.alert
                out.append(
                    AlertRearmed(
                        a.id, a.user, a.market, a.reference, ts, price, _NAMES[e.direction]
                    )
                )
        return out

    # ------------------------------------------------------------------ state machine
    def _set_waiting(self, e: _Entry, fired: int) -> None:
        """After a fire in direction ``fired``: wait for the band (entry not yet placed)."""
        a = e.alert
        e.armed = False
        h = a.hysteresis
        if a.condition is Condition.CROSSES:
            # fired up: wait for p >= T + h, then watch a down-cross (and vice versa)
            e.direction = -fired
            e.level = a.target + h if fired == _UP else a.target - h
        else:
            # above fired up: wait for p <= T - h, then fire up again (below: mirror)
            e.direction = fired
            e.level = a.target - h if fired == _UP else a.target + h

    @staticmethod
    def _waits_up(e: _Entry) -> bool:
        """For a waiting entry: does it wait for a rise (``p >= level``)?

        A waiting entry whose next fire is down waits for a rise: ``below`` (band
        ``T + h``) and ``crosses`` after an up-cross (band ``T + h``); the mirror for up.
        """
        return e.direction == _DOWN

    def _act(self, e: _Entry, price: int, fired: list[_Fire], rearmed: list[_Entry]) -> None:
        """An entry popped from a trigger list: fire it or re-arm it."""
        if e.armed:
            self._fire(e, price, fired, rearmed)
        else:
            e.armed = True
            e.level = e.alert.target
            rearmed.append(e)
            self._place(e, price)

    def _fire(self, e: _Entry, price: int, fired: list[_Fire], rearmed: list[_Entry]) -> None:
        fired.append((e, e.direction))
        a = e.alert
        if not a.rearm:
            e.where = _GONE
            del self._entries[a.id]
            if a.expires_at is not None:
                self._expiring -= 1
            return
        self._set_waiting(e, e.direction)
        if self._band_crossed(e, price):
            e.armed = True
            e.level = a.target
            rearmed.append(e)
        self._place(e, price)

    def _band_crossed(self, e: _Entry, price: int) -> bool:
        if self._waits_up(e):
            return price >= e.level
        return price <= e.level

    def _place(self, e: _Entry, price: int) -> None:
        """Insert an entry whose next action does not hold at ``price`` into a list."""
        if e.armed:
            up = e.direction == _UP
        else:
            up = self._waits_up(e)
        book = e.book
        key = (e.level, e.alert.id)
        if up:
            e.where = _IN_UP
            lst = book.up
        else:
            e.where = _IN_DOWN
            lst = book.down
        if not isinstance(lst, list):
            lst.add(key)
            return
        insort(lst, key)
        if len(lst) > _SMALL:  # crowded: a SortedList from now on
            if up:
                book.up = SortedList(lst)
            else:
                book.down = SortedList(lst)

    def _settle_fresh(
        self, e: _Entry, price: int, fired: list[_Fire], rearmed: list[_Entry]
    ) -> None:
        """First evaluation of an added alert, at ``price``."""
        if not e.armed:
            if self._band_crossed(e, price):
                e.armed = True
                e.level = e.alert.target
                rearmed.append(e)
            self._place(e, price)
            return
        target = e.alert.target
        d = e.direction
        if d == 0:
            if price == target:
                e.where = _IN_UNDECIDED
                e.book.undecided[e.alert.id] = e
                return
            e.direction = _UP if price < target else _DOWN
            self._place(e, price)
        elif (d == _UP and price >= target) or (d == _DOWN and price <= target):
            self._fire(e, price, fired, rearmed)
        else:
            self._place(e, price)


# sentinels bracketing any alert id in (level, alert_id) comparisons
_INF_ID = float("inf")
_NEG_ID = float("-inf")
