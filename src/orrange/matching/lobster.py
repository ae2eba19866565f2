"""Replay of Nasdaq LOBSTER files through a real :class:`~orrange.matching.book.OrderBook`.

LOBSTER (lobsterdata.com) reconstructs the Nasdaq TotalView-ITCH book of one ticker and day as
two aligned CSV files without a header (format: ``LOBSTER_SampleFiles_ReadMe.txt``, version of
01 Sept 2013, kept in ``shared/data/lobster/``):

* ``*_message_N.csv``, 6 columns: time (seconds after midnight, New York local time, up to 9
  decimals), type (1 submission, 2 partial cancel, 3 deletion, 4 visible execution, 5 hidden
  execution, 6 cross trade, 7 trading halt), order id, size (shares), price (dollars x 10000),
  direction (1 buy, -1 sell; for executions the side of the *resting* order).
* ``*_orderbook_N.csv``, 4 x N columns: ``ask_price_k, ask_size_k, bid_price_k, bid_size_k``
  for the N best occupied levels *after* the message of the same row; an empty level is
  ``9999999999`` (ask) or ``-9999999999`` (bid) with size 0.

:func:`replay` drives the book through its public command API only, on the grid of
:func:`lobster_spec` (tick $0.01, so ticks = LOBSTER price / 100; lot 1 share), with ``ts`` the
message time as ms UTC (New York midnight of the trading day + the seconds):

* type 1 -> a GTC limit :class:`SubmitOrder` of :data:`MAKER_USER`, ``order_id`` = the LOBSTER
  id;
* type 2 -> :class:`AmendOrder` lowering the quantity (keeps time priority), or a cancel when
  nothing would remain;
* type 3 -> :class:`CancelOrder`;
* type 4 -> an IOC limit order of :data:`TAKER_USER` at the execution price on the other side
  for the executed size. Its fills must come from exactly the named order (from a seed order
  when the id is unknown), else it is a *wrong fill*. Executions sharing one timestamp are one
  incoming order sweeping the book, and LOBSTER's order among them is not a priority order,
  so they are checked together: each named order must receive exactly its named total;
* types 5 and 6 (hidden executions, crosses) change no visible size and send nothing;
* type 7 -> :class:`Halt` (price -1) and :class:`Resume` (price 0, quoting resumes, or 1,
  trading resumes).

**Seeding.** Orders resting before the file starts, or submitted outside the visible depth,
have no submission message. When a price level enters the visible depth (it is in row *i* but
not in row *i-1*), the size there that known orders do not explain becomes one seed order of
:data:`SEED_USER`, submitted *before* message *i* is applied with row *i*'s size minus what
message *i* itself adds or removes there, so it queues ahead of any order message *i* adds.
What happened at a level while it was out of sight is inferred from the file: a known order
that no later message names was canceled out of sight (it is canceled); one whose later
messages end in a deletion holds exactly the sizes they name; extra size is a seed behind the
known orders, missing size comes off the level's seeds (newest first), then its known orders.
An engine level inside the visible price range that neither row shows was emptied out of sight
and is canceled. A cancel of an unknown id draws from the seed created first after that id
arrived (Nasdaq ids grow with arrival); an execution of one must fill the level's seeds. When
a known order trades, seeds its level held while out of sight and that still sit ahead of it
are moved behind it. After a wrong fill the orders are corrected to what the file says (the
named order loses its size, the order that traded instead gets it back at the back of the
queue), so one anomaly is counted once instead of cascading.

After every message the engine's best N levels (:meth:`OrderBook.depth`) must equal the row.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
from sortedcontainers import SortedList

from orrange.markets import MarketSpec
from orrange.matching.book import OrderBook
from orrange.matching.commands import (
    AmendOrder,
    CancelOrder,
    Command,
    Halt,
    Resume,
    SubmitOrder,
)
from orrange.matching.enums import SelfTradePrevention, Side, TimeInForce
from orrange.matching.events import BookDelta, Event, OrderFilled

__all__ = [
    "LOBSTER_DAY",
    "MAKER_USER",
    "SEED_ID_BASE",
    "SEED_USER",
    "TAKER_ID_BASE",
    "TAKER_USER",
    "BookRow",
    "Message",
    "Mismatch",
    "ReplayResult",
    "ReplaySummary",
    "lobster_spec",
    "midnight_utc_ms",
    "orderbook_levels",
    "parse_messages",
    "parse_orderbook",
    "parse_time_ns",
    "replay",
    "replay_parsed",
]

MAKER_USER = "lobster"
"""User of every order submitted by a type-1 message."""
SEED_USER = "lobster-seed"
"""User of the seed orders that stand for orders without a submission message."""
TAKER_USER = "lobster-taker"
"""User of the IOC orders that replay type-4 executions (distinct, so no self-trade check)."""
SEED_ID_BASE = 1 << 40
"""Seed order ids are ``SEED_ID_BASE + n`` (n = 1, 2, ...), far above Nasdaq order ids."""
TAKER_ID_BASE = 1 << 41
"""Taker order ids are ``TAKER_ID_BASE + n`` (n = 1, 2, ...)."""

LOBSTER_DAY = date(2012, 6, 21)
"""The trading day of the LOBSTER sample files."""

_PRICE_PER_TICK = 100  # LOBSTER prices are dollars x 10000; the tick is $0.01
_EMPTY_ASK = 9999999999
_EMPTY_BID = -9999999999
_NY = "America/New_York"
_FILE_RE = re.compile(r"^([A-Za-z0-9.]+)_(\d{4})-(\d{2})-(\d{2})_\d+_\d+_(message|orderbook)_\d+")


class Message(msgspec.Struct, frozen=True, gc=False):
    """One row of a LOBSTER message file.

    Attributes:
        time_ns: nanoseconds after midnight, New York local time.
        type: 1-7 (see the module docstring).
        order_id: Nasdaq order reference (0 for hidden executions and halts).
        size: shares.
        price: dollars x 10000 (-1, 0 or 1 for type 7).
        direction: 1 buy, -1 sell (the resting order's side for executions).
    """

    time_ns: int
    type: int
    order_id: int
    size: int
    price: int
    direction: int


class BookRow(msgspec.Struct, frozen=True, gc=False):
    """One row of a LOBSTER orderbook file in engine units.

    Attributes:
        asks: ``(price_ticks, size_lots)`` best (lowest) first, empty levels dropped.
        bids: ``(price_ticks, size_lots)`` best (highest) first, empty levels dropped.
    """

    asks: tuple[tuple[int, int], ...]
    bids: tuple[tuple[int, int], ...]


class Mismatch(msgspec.Struct, frozen=True):
    """A row where the engine's depth differed from the file (0-based ``row``)."""

    row: int
    expected_bids: list[tuple[int, int]]
    expected_asks: list[tuple[int, int]]
    engine_bids: list[tuple[int, int]]
    engine_asks: list[tuple[int, int]]


class ReplaySummary(msgspec.Struct, frozen=True):
    """The counts printed by ``orrange replay lobster --json``.

    Attributes:
        messages: messages replayed.
        rows_compared: orderbook rows compared with the engine's depth (one per message).
        mismatches: rows where the engine's best N levels differ from the row.
        wrong_fills: type-4 executions whose named order did not trade exactly the named size
            (seed orders stand for unknown ids; executions sharing one timestamp are checked
            together, see the module docstring).
        messages_per_s: messages per second of the replay loop, file parsing excluded (wall
            clock; informative only).
    """

    messages: int
    rows_compared: int
    mismatches: int
    wrong_fills: int
    messages_per_s: float


@dataclass
class ReplayResult:
    """Everything a replay produced.

    Attributes:
        summary: the counts (see :class:`ReplaySummary`).
        commands: every command sent to the book, in order (seeds included).
        events: every event the book returned, in order.
        levels: the number of levels compared per side.
        book: the book after the replay.
        mismatch_rows: the first mismatching rows (at most 20), for diagnosis.
        wrong_fill_rows: 0-based rows of the first wrong fills (at most 20).
        seeds: seed orders submitted.
        presumed_gone: known orders canceled because they were out of sight and no later
            message names them.
        resized: known orders reduced to the size their later messages name.
        requeued: executions before which seeds were moved behind the named order.
        unexplained: messages about an unknown id with no seed at their price to draw from.
    """

    summary: ReplaySummary
    commands: list[Command]
    events: list[Event]
    levels: int
    book: OrderBook
    mismatch_rows: list[Mismatch] = field(default_factory=list)
    wrong_fill_rows: list[int] = field(default_factory=list)
    seeds: int = 0
    presumed_gone: int = 0
    resized: int = 0
    requeued: int = 0
    unexplained: int = 0

    @property
    def fills(self) -> list[OrderFilled]:
        """The :class:`OrderFilled` events, in order."""
        return [e for e in self.events if type(e) is OrderFilled]

    @property
    def ok(self) -> bool:
        """No mismatch and no wrong fill."""
        return self.summary.mismatches == 0 and self.summary.wrong_fills == 0


# ----------------------------------------------------------------------------- parsing


def parse_time_ns(text: str) -> int:
    """LOBSTER time (decimal seconds, up to 9 decimals, trailing zeros dropped) -> integer ns.

    Raises:
        ValueError: not a non-negative decimal with at most 9 decimals.
    """
    whole, dot, frac = text.strip().partition(".")
    if not whole.isdigit() or (dot and (not frac.isdigit() or len(frac) > 9)):
        raise ValueError(f"bad LOBSTER time {text!r}")
    return int(whole) * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)


def midnight_utc_ms(day: date = LOBSTER_DAY) -> int:
    """Milliseconds since the Unix epoch of midnight New York time on ``day`` (UTC-4 in
    summer, UTC-5 in winter; 2012-06-21 is EDT, so 04:00 UTC)."""
    return int(datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(_NY)).timestamp()) * 1000


def _lines(path: str | Path) -> Iterable[tuple[int, str]]:
    with open(path, encoding="ascii") as fh:
        text = fh.read()
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield n, line


def parse_messages(path: str | Path) -> list[Message]:
    """Read a LOBSTER message file (no header; a missing final newline is fine).

    Raises:
        ValueError: a row does not have 6 integer columns (the first a LOBSTER time), naming
            the file and line.
        OSError: the file cannot be read.
    """
    out: list[Message] = []
    for n, line in _lines(path):
        cols = line.split(",")
        if len(cols) != 6:
            raise ValueError(f"{path}:{n}: expected 6 columns, got {len(cols)}")
        try:
            out.append(
                Message(
                    parse_time_ns(cols[0]),
                    int(cols[1]),
                    int(cols[2]),
                    int(cols[3]),
                    int(cols[4]),
                    int(cols[5]),
                )
            )
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: {exc}") from None
    return out


def _ticks(price: int, where: str) -> int:
    if price % _PRICE_PER_TICK:
        raise ValueError(f"{where}: price {price} is not on the $0.01 grid")
    return price // _PRICE_PER_TICK


def parse_orderbook(path: str | Path) -> list[BookRow]:
    """Read a LOBSTER orderbook file into :class:`BookRow` s (prices in ticks, sizes in lots).

    Raises:
        ValueError: a row's column count is not a positive multiple of 4 or differs from the
            first row's, a value is not an integer, or a price is off the $0.01 grid.
        OSError: the file cannot be read.
    """
    out: list[BookRow] = []
    width = 0
    for n, line in _lines(path):
        where = f"{path}:{n}"
        try:
            vals = [int(v) for v in line.split(",")]
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if not width:
            width = len(vals)
            if width % 4:
                raise ValueError(f"{where}: {width} columns is not a multiple of 4")
        elif len(vals) != width:
            raise ValueError(f"{where}: expected {width} columns, got {len(vals)}")
        asks = tuple(
            (_ticks(vals[i], where), vals[i + 1])
            for i in range(0, width, 4)
            if vals[i] != _EMPTY_ASK
        )
        bids = tuple(
            (_ticks(vals[i + 2], where), vals[i + 3])
            for i in range(0, width, 4)
            if vals[i + 2] != _EMPTY_BID
        )
        out.append(BookRow(asks, bids))
    return out


def orderbook_levels(path: str | Path) -> int:
    """The number of levels N of a LOBSTER orderbook file (its first row's columns / 4; 0 for
    an empty file)."""
    for _, line in _lines(path):
        return (line.count(",") + 1) // 4
    return 0


def lobster_spec(symbol: str = "AMZN-USD") -> MarketSpec:
    """The replay market: tick $0.01, lot 1 share, no fees or notional floor (the grid of
    ``AMZN-USD`` in ``config/markets.toml``)."""
    base, _, quote = symbol.partition("-")
    return MarketSpec(
        symbol=symbol,
        base=base,
        quote=quote or "USD",
        tick_size="0.01",
        lot_size="1",
        min_qty="1",
        max_qty="10000000",
        min_notional="0",
        priority="price-time",
    )


def _symbol_and_day(path: str | Path) -> tuple[str, date]:
    m = _FILE_RE.match(Path(path).name)
    if m is None:
        return "AMZN-USD", LOBSTER_DAY
    return f"{m.group(1).upper()}-USD", date(int(m.group(2)), int(m.group(3)), int(m.group(4)))


# ------------------------------------------------------------------------------ replay


class _Replayer:
    """Drives one book; keeps an L2 mirror of it from its :class:`BookDelta` events."""

    def __init__(
        self,
        spec: MarketSpec,
        levels: int,
        base_ms: int,
        keep: bool,
        mentions: dict[int, list[tuple[int, int, int]]],
    ) -> None:
        self.book = OrderBook(spec)
        self.levels = levels
        self.base_ms = base_ms
        self.keep = keep
        self.commands: list[Command] = []
        self.events: list[Event] = []
        # side -> price -> aggregate size (lots), as the book's deltas say
        self.mirror: dict[Side, dict[int, int]] = {Side.BUY: {}, Side.SELL: {}}
        # side -> its level keys, best first (price for asks, -price for bids)
        self.keys: dict[Side, SortedList] = {Side.BUY: SortedList(), Side.SELL: SortedList()}
        # (side, price) -> seed order ids, queue order
        self.seeds: dict[tuple[Side, int], list[int]] = {}
        # (side, price) -> known (message) order ids in arrival order, maybe dead
        self.known: dict[tuple[Side, int], list[int]] = {}
        self.mentions = mentions  # order id -> [(message index, type, size)]
        self.resized = 0
        self.n_seeds = 0
        self.presumed_gone = 0
        self.doubtful: set[int] = set()  # seeds whose level has been out of sight since
        self.requeued = 0
        self.submitted: set[int] = set()  # ids of every type-1 message so far
        self.max_id = 0  # highest Nasdaq id submitted so far (ids grow with arrival)
        self.seed_hi: dict[int, int] = {}  # seed id -> max_id when it was created
        # executions of the current timestamp: (row, wanted maker key, size); maker key -> lots
        self.group_want: list[tuple[int, int, int]] = []
        self.group_got: dict[int, int] = {}
        self.group_where: dict[int, tuple[Side, int]] = {}  # maker key -> (side, price)
        self.group_ts = 0
        self.n_takers = 0
        self.unexplained = 0

    # -- plumbing
    def send(self, cmd: Command) -> list[Event]:
        evs = self.book.process(cmd)
        mirror = self.mirror
        for e in evs:
            if type(e) is BookDelta:
                lv = mirror[e.side]
                p = e.price
                if e.size:
                    if p not in lv:
                        self.keys[e.side].add(p if e.side is Side.SELL else -p)
                    lv[p] = e.size
                elif p in lv:
                    del lv[p]
                    self.keys[e.side].remove(p if e.side is Side.SELL else -p)
        if self.keep:
            self.commands.append(cmd)
            self.events += evs
        return evs

    def _leaves(self, oid: int) -> tuple[int, int]:
        """(total quantity, leaves) of a live order, (0, 0) when not live."""
        v = self.book.order(oid)
        return (0, 0) if v is None else (v.quantity, v.leaves)

    def _reduce(self, ts: int, user: str, oid: int, by: int) -> int:
        """Take up to ``by`` lots off a live order (amend down, or cancel); return lots taken."""
        qty, leaves = self._leaves(oid)
        if not leaves or by <= 0:
            return 0
        if by >= leaves:
            self.send(CancelOrder(ts=ts, user=user, order_id=oid))
            return leaves
        self.send(AmendOrder(ts=ts, user=user, order_id=oid, quantity=qty - by))
        return by

    def _draw_seeds(
        self, ts: int, side: Side, price: int, size: int, newest_first: bool, owner: int = 0
    ) -> int:
        """Take ``size`` lots from the seeds of a level; return what could not be taken."""
        ids = self.seeds.get((side, price))
        if not ids:
            return size
        if owner:
            hi = self.seed_hi
            order = [o for o in ids if hi[o] >= owner] + [o for o in reversed(ids) if hi[o] < owner]
        else:
            order = list(reversed(ids) if newest_first else ids)
        for oid in order:
            if size <= 0:
                break
            size -= self._reduce(ts, SEED_USER, oid, size)
        self._prune(self.seeds, side, price)
        return size

    def _add_seed(self, ts: int, side: Side, price: int, size: int) -> None:
        self.n_seeds += 1
        oid = SEED_ID_BASE + self.n_seeds
        self.send(
            SubmitOrder(ts=ts, user=SEED_USER, side=side, quantity=size, price=price, order_id=oid)
        )
        self.seeds.setdefault((side, price), []).append(oid)
        self.seed_hi[oid] = self.max_id

    # -- reconciliation before a message
    def _visible_limit(self, row_side: Sequence[tuple[int, int]]) -> int | None:
        """Worst visible price of a row side, or None when the whole side is visible."""
        return row_side[-1][0] if len(row_side) >= self.levels else None

    def reconcile(
        self,
        i: int,
        ts: int,
        msg: Message,
        prev: BookRow | None,
        cur: BookRow,
        msg_side: Side | None,
    ) -> None:
        """Make the levels that enter the visible depth with row ``cur`` hold, before ``msg``
        is applied, what ``cur`` minus ``msg``'s own effect says; cancel engine levels inside
        the visible range that ``cur`` and ``prev`` both lack."""
        msg_price = msg.price // _PRICE_PER_TICK if msg_side is not None else 0
        if msg.type == 1:
            msg_delta = msg.size
        elif msg.type in (2, 3, 4):
            msg_delta = -msg.size
        else:
            msg_delta = 0
        for side, row_side, prev_side in (
            (Side.SELL, cur.asks, prev.asks if prev is not None else ()),
            (Side.BUY, cur.bids, prev.bids if prev is not None else ()),
        ):
            if row_side == prev_side:
                continue  # nothing enters or leaves the visible depth on this side
            shown = dict(row_side)
            before = {p for p, _ in prev_side}
            limit = self._visible_limit(row_side)
            sign = 1 if side is Side.SELL else -1
            for p, _ in prev_side:
                if p not in shown:  # leaves the visible depth
                    self.doubtful.update(self.seeds.get((side, p), ()))
            # engine levels emptied out of sight
            stale = []
            for k in self.keys[side]:  # best first
                if limit is not None and k >= limit * sign:
                    break
                p = k * sign
                if p not in shown and p not in before:
                    stale.append(p)
            for p in stale:
                self._empty_level(ts, side, p)
            # levels entering the visible depth
            for p, size in row_side:
                if p in before:
                    continue
                target = size
                if side is msg_side and p == msg_price:
                    target -= msg_delta
                self._resize_known(i, ts, side, p)
                have = self.mirror[side].get(p, 0)
                if target > have:
                    self._add_seed(ts, side, p, target - have)
                elif target < have:
                    self._shrink(ts, side, p, have - max(target, 0))

    def _resize_known(self, i: int, ts: int, side: Side, price: int) -> None:
        """Known orders of a level that was out of sight, as later messages describe them: one
        that no message from ``i`` on names was canceled out of sight (or, if still there,
        acts like an unknown order): cancel it; one whose later messages end in a deletion
        holds exactly the sizes they name: reduce it to that. The caller re-seeds the rest."""
        ids = self.known.get((side, price))
        if not ids:
            return
        for oid in ids:
            _, leaves = self._leaves(oid)
            if not leaves:
                continue
            later = [(t, size) for j, t, size in self.mentions.get(oid, ()) if j >= i]
            if not later:
                self._reduce(ts, MAKER_USER, oid, leaves)
                self.presumed_gone += 1
            elif later[-1][0] == 3:
                exact = sum(size for t, size in later if t in (2, 3, 4))
                if exact < leaves:
                    self._reduce(ts, MAKER_USER, oid, leaves - exact)
                    self.resized += 1
        self._prune(self.known, side, price)

    def _requeue_seeds_ahead(self, ts: int, side: Side, price: int, oid: int) -> None:
        """The named order trades now, so unknown orders its level held while out of sight
        and that still sit ahead of it in the engine queue were in fact behind it: move those
        seeds behind it (same size, so the level is unchanged)."""
        doubtful = self.doubtful
        moved = 0
        for o in self.book.l3(side, price):
            if o.order_id == oid:
                break
            if o.order_id in doubtful:
                moved += self._reduce(ts, SEED_USER, o.order_id, 1 << 62)
                doubtful.discard(o.order_id)
        if moved:
            self.requeued += 1
            self._prune(self.seeds, side, price)
            self._add_seed(ts, side, price, moved)
            self.doubtful.add(SEED_ID_BASE + self.n_seeds)

    def _empty_level(self, ts: int, side: Side, price: int) -> None:
        for oid in self.seeds.pop((side, price), []):
            self._reduce(ts, SEED_USER, oid, 1 << 62)
        for oid in self.known.pop((side, price), []):
            self._reduce(ts, MAKER_USER, oid, 1 << 62)

    def _shrink(self, ts: int, side: Side, price: int, by: int) -> None:
        by = self._draw_seeds(ts, side, price, by, newest_first=True)
        ids = self.known.get((side, price), [])
        for oid in reversed(ids):
            if by <= 0:
                break
            by -= self._reduce(ts, MAKER_USER, oid, by)
        self._prune(self.known, side, price)

    def _prune(self, table: dict[tuple[Side, int], list[int]], side: Side, price: int) -> None:
        """Drop the orders that are no longer live from ``table``'s list of a level."""
        ids = table.get((side, price))
        if ids is None:
            return
        live = [oid for oid in ids if self._leaves(oid)[1]]
        if live:
            table[(side, price)] = live
        else:
            del table[(side, price)]

    # -- one message
    def apply(self, i: int, ts: int, msg: Message, side: Side | None) -> None:
        """Apply message ``i``; an execution's fills are recorded for :meth:`close_group`."""
        t = msg.type
        if t == 7:
            if msg.price == -1:
                self.send(Halt(ts=ts))
            elif self.book.halted:
                self.send(Resume(ts=ts))
            return
        if side is None or t in (5, 6):
            return
        price = msg.price // _PRICE_PER_TICK
        oid = msg.order_id
        if t == 1:
            self.send(
                SubmitOrder(
                    ts=ts, user=MAKER_USER, side=side, quantity=msg.size, price=price, order_id=oid
                )
            )
            self.known.setdefault((side, price), []).append(oid)
            self.submitted.add(oid)
            if oid > self.max_id:
                self.max_id = oid
            return
        live = self.book.order(oid) is not None
        known = live or oid in self.submitted
        if t in (2, 3):
            if live:
                if t == 3:
                    self.send(CancelOrder(ts=ts, user=MAKER_USER, order_id=oid))
                else:
                    self._reduce(ts, MAKER_USER, oid, msg.size)
                if len(self.known.get((side, price), ())) > 64:
                    self._prune(self.known, side, price)
            elif self._draw_seeds(ts, side, price, msg.size, newest_first=True, owner=oid):
                self.unexplained += 1
            return
        if t != 4:
            return
        if live:
            self._requeue_seeds_ahead(ts, side, price, oid)
        elif not known and not self.seeds.get((side, price)):
            self.unexplained += 1
        self.n_takers += 1
        evs = self.send(
            SubmitOrder(
                ts=ts,
                user=TAKER_USER,
                side=Side.BUY if side is Side.SELL else Side.SELL,
                quantity=msg.size,
                price=price,
                tif=TimeInForce.IOC,
                stp=SelfTradePrevention.NONE,
                order_id=TAKER_ID_BASE + self.n_takers,
            )
        )
        want = oid if known else _seed_key(side, price)
        self.group_want.append((i, want, msg.size))
        self.group_ts = ts
        where = self.group_where
        where[want] = (side, price)
        got = self.group_got
        for e in evs:
            if type(e) is OrderFilled:
                mid = e.maker_order_id
                if SEED_ID_BASE < mid < TAKER_ID_BASE:
                    mid = _seed_key(side, e.price)
                got[mid] = got.get(mid, 0) + e.quantity
                where[mid] = (side, e.price)
        if not known:
            self._prune(self.seeds, side, price)

    def close_group(self) -> list[int]:
        """End a group of executions sharing one timestamp; return the 0-based rows of those
        whose named order did not receive exactly the named total."""
        want: dict[int, int] = {}
        for _, key, size in self.group_want:
            want[key] = want.get(key, 0) + size
        got = self.group_got
        bad = [i for i, key, _ in self.group_want if got.get(key, 0) != want[key]]
        if bad:
            self._repair(want, got, self.group_ts)
        self.group_want = []
        self.group_got = {}
        self.group_where = {}
        return bad

    def _repair(self, want: dict[int, int], got: dict[int, int], ts: int) -> None:
        """After a wrong fill, make the orders what the file says: the named orders lose what
        they should have traded, the orders that traded instead get it back (at the back of
        their level: their place is lost). Level sizes do not change; the wrong fill stays
        counted, but does not cascade into later checks."""
        where = self.group_where
        keys = sorted(want.keys() | got.keys())
        for key in keys:
            diff = want.get(key, 0) - got.get(key, 0)
            side, price = where[key]
            if diff > 0:  # should have traded more: take it off now
                if key < 0:
                    self._draw_seeds(ts, side, price, diff, newest_first=False)
                else:
                    self._reduce(ts, MAKER_USER, key, diff)
                    self._prune(self.known, side, price)
        for key in keys:
            diff = got.get(key, 0) - want.get(key, 0)
            side, price = where[key]
            if diff <= 0:
                continue
            if key < 0:
                self._add_seed(ts, side, price, diff)
                continue
            qty, leaves = self._leaves(key)
            if leaves:
                self.send(AmendOrder(ts=ts, user=MAKER_USER, order_id=key, quantity=qty + diff))
            else:
                self.send(
                    SubmitOrder(
                        ts=ts,
                        user=MAKER_USER,
                        side=side,
                        quantity=diff,
                        price=price,
                        order_id=key,
                    )
                )
                self.known.setdefault((side, price), []).append(key)

    def compare(self, row: BookRow, n: int) -> tuple[list[tuple[int, int]], ...] | None:
        """None when the engine's best ``n`` levels equal the row's, else (expected bids,
        expected asks, engine bids, engine asks)."""
        d = self.book.depth(n)
        eb = list(row.bids[:n])
        ea = list(row.asks[:n])
        if d.bids == eb and d.asks == ea:
            return None
        return eb, ea, d.bids, d.asks


def _seed_key(side: Side, price: int) -> int:
    """The maker key standing for "any seed order of this level" (negative: never an id)."""
    return -(price * 2 + (side is Side.BUY))


def replay_parsed(
    messages: Sequence[Message],
    rows: Sequence[BookRow],
    depth: int,
    *,
    spec: MarketSpec | None = None,
    levels: int = 0,
    limit: int | None = None,
    day: date = LOBSTER_DAY,
    keep: bool = True,
) -> ReplayResult:
    """Replay parsed LOBSTER messages and check every book row (see the module docstring).

    Args:
        messages: the message file's rows (:func:`parse_messages`).
        rows: the orderbook file's rows (:func:`parse_orderbook`), aligned with ``messages``.
        depth: the orderbook file's number of levels N (its column count / 4).
        spec: the market; default :func:`lobster_spec` ``("AMZN-USD")``.
        levels: levels per side to compare, 1..``depth``; 0 (default) means ``depth``.
        limit: replay only the first ``limit`` messages (None or 0: all).
        day: the trading day; timestamps become ms UTC from New York midnight of this day.
        keep: record commands and events in the result (False saves memory and time).

    Returns:
        A :class:`ReplayResult`.

    Raises:
        ValueError: the two files have different row counts, ``depth`` < 1, or ``levels`` is
            outside 0..``depth``.
    """
    if len(messages) != len(rows):
        raise ValueError(f"{len(messages)} messages but {len(rows)} orderbook rows")
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    if not 0 <= levels <= depth:
        raise ValueError(f"levels must be between 1 and {depth} (the file's depth), got {levels}")
    n_cmp = levels or depth
    count = len(messages) if not limit else min(limit, len(messages))
    mentions: dict[int, list[tuple[int, int, int]]] = {}
    for j, m in enumerate(messages):
        if m.order_id:
            mentions.setdefault(m.order_id, []).append((j, m.type, m.size))
    r = _Replayer(spec or lobster_spec(), depth, midnight_utc_ms(day), keep, mentions)
    base_ms = r.base_ms
    mismatches = 0
    wrong = 0
    bad_rows: list[Mismatch] = []
    wrong_rows: list[int] = []
    prev: BookRow | None = None
    group_ns = -1
    t0 = time.perf_counter()
    for i in range(count):
        msg = messages[i]
        row = rows[i]
        ts = base_ms + msg.time_ns // 1_000_000
        d = msg.direction
        side = Side.BUY if d == 1 else Side.SELL if d == -1 else None
        if msg.type == 7:
            side = None
        if r.group_want and msg.time_ns != group_ns:
            bad = r.close_group()
            wrong += len(bad)
            wrong_rows += bad[: 20 - len(wrong_rows)]
        group_ns = msg.time_ns
        r.reconcile(i, ts, msg, prev, row, side)
        r.apply(i, ts, msg, side)
        diff = r.compare(row, n_cmp)
        if diff is not None:
            mismatches += 1
            if len(bad_rows) < 20:
                bad_rows.append(Mismatch(i, *diff))
        prev = row
    bad = r.close_group()
    wrong += len(bad)
    wrong_rows += bad[: 20 - len(wrong_rows)]
    elapsed = time.perf_counter() - t0
    summary = ReplaySummary(
        messages=count,
        rows_compared=count,
        mismatches=mismatches,
        wrong_fills=wrong,
        messages_per_s=round(count / elapsed, 1) if elapsed > 0 else 0.0,
    )
    return ReplayResult(
        summary=summary,
        commands=r.commands,
        events=r.events,
        levels=n_cmp,
        book=r.book,
        mismatch_rows=bad_rows,
        wrong_fill_rows=wrong_rows,
        seeds=r.n_seeds,
        presumed_gone=r.presumed_gone,
        resized=r.resized,
        requeued=r.requeued,
        unexplained=r.unexplained,
    )


def replay(
    messages_path: str | Path,
    orderbook_path: str | Path,
    *,
    levels: int = 0,
    limit: int | None = None,
    keep: bool = True,
) -> ReplayResult:
    """Replay a LOBSTER message file through a fresh book, checking every orderbook row.

    The symbol (``TICKER-USD``) and trading day come from the LOBSTER file name
    (``TICKER_YYYY-MM-DD_start_end_message_N.csv``); other names replay as ``AMZN-USD`` on
    2012-06-21. The replay is deterministic: the same files always give the same
    :attr:`ReplayResult.commands` and :attr:`ReplayResult.events` (the fills are
    :attr:`ReplayResult.fills`), and a ``limit`` run is a prefix of the full run.

    Args:
        messages_path: a ``*_message_N.csv`` file.
        orderbook_path: the matching ``*_orderbook_N.csv`` file.
        levels: levels per side to compare, 1..N; 0 (default) means N, the file's depth.
        limit: replay only the first ``limit`` messages (None or 0: all).
        keep: record commands and events in the result (False saves memory and time).

    Returns:
        A :class:`ReplayResult`; see :func:`replay_parsed`.

    Raises:
        ValueError: malformed files (see :func:`parse_messages`, :func:`parse_orderbook`) or
            bad ``levels``.
        OSError: a file cannot be read.
    """
    symbol, day = _symbol_and_day(messages_path)
    rows = parse_orderbook(orderbook_path)
    msgs = parse_messages(messages_path)
    return replay_parsed(
        msgs,
        rows,
        orderbook_levels(orderbook_path),
        spec=lobster_spec(symbol),
        levels=levels,
        limit=limit,
        day=day,
        keep=keep,
    )
