"""AlertIndex: examples of each rule, and a property test against a naive full-scan evaluator."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import orrange.alerts.index as index_module
from orrange.alerts.index import AlertIndex, DuplicateAlert
from orrange.alerts.rules import (
    AlertEvent,
    AlertExpired,
    AlertFired,
    AlertRearmed,
    AlertRequest,
    Condition,
    InvalidAlert,
    PriceAlert,
    TriggerSource,
    alert_from_request,
)
from orrange.markets import InvalidValue, MarketSpec

LAST = TriggerSource.LAST
INDEX = TriggerSource.INDEX


def mk(
    alert_id: int,
    condition: Condition,
    target: int,
    *,
    market: str = "M",
    reference: TriggerSource = LAST,
    rearm: bool = False,
    hysteresis: int = 0,
    expires_at: int | None = None,
    user: str = "u",
) -> PriceAlert:
    return PriceAlert(
        id=alert_id,
        user=user,
        market=market,
        condition=condition,
        reference=reference,
        target=target,
        expires_at=expires_at,
        rearm=rearm,
        hysteresis=hysteresis,
    )


def fired_ids(events: list[AlertEvent]) -> list[int]:
    return [e.alert_id for e in events if isinstance(e, AlertFired)]


# ----------------------------------------------------------------------------- examples
def test_above_one_shot_fires_once_and_leaves() -> None:
    ix = AlertIndex()
    ix.add(mk(1, Condition.ABOVE, 100))
    assert ix.update("M", LAST, 95, 1) == []
    ev = ix.update("M", LAST, 101, 2)
    assert ev == [AlertFired(1, "u", "M", LAST, 2, Condition.ABOVE, 100, "up", 101, True)]
    assert 1 not in ix
    assert ix.update("M", LAST, 90, 3) == []
    assert ix.update("M", LAST, 120, 4) == []


def test_above_already_satisfied_fires_on_next_update() -> None:
    ix = AlertIndex()
    ix.update("M", LAST, 150, 1)
    ix.add(mk(1, Condition.ABOVE, 100))
    assert fired_ids(ix.update("M", LAST, 140, 2)) == [1]


def test_below_and_reference_separation() -> None:
    ix = AlertIndex()
    ix.add(mk(1, Condition.BELOW, 100, reference=INDEX))
    ix.update("M", INDEX, 110, 1)
    assert ix.update("M", LAST, 50, 2) == []  # the last-trade price is another book
    assert fired_ids(ix.update("M", INDEX, 100, 3)) == [1]


def test_rearm_above_needs_the_band() -> None:
    ix = AlertIndex()
    ix.add(mk(7, Condition.ABOVE, 100, rearm=True, hysteresis=5))
    ix.update("M", LAST, 90, 1)
    ev = ix.update("M", LAST, 100, 2)
    assert fired_ids(ev) == [7] and ev[0].final is False  # type: ignore[union-attr]
    assert ix.status(7).armed is False  # type: ignore[union-attr]
    # noise inside the band: no re-arm, no fire
    for t, p in enumerate([97, 101, 96, 103, 99], start=3):
        assert ix.update("M", LAST, p, t) == []
    ev = ix.update("M", LAST, 95, 10)
    assert ev == [AlertRearmed(7, "u", "M", LAST, 10, 95, "up")]
    assert fired_ids(ix.update("M", LAST, 100, 11)) == [7]


def test_crosses_both_ways_with_band() -> None:
    ix = AlertIndex()
    ix.update("M", LAST, 90, 0)
    ix.add(mk(3, Condition.CROSSES, 100, rearm=True, hysteresis=3))
    assert ix.update("M", LAST, 99, 1) == []
    ev = ix.update("M", LAST, 100, 2)
    assert [type(e) for e in ev] == [AlertFired]
    assert ev[0].direction == "up"  # type: ignore[union-attr]
    assert ix.update("M", LAST, 98, 3) == []  # not re-armed: never reached 103
    ev = ix.update("M", LAST, 104, 4)
    assert ev == [AlertRearmed(3, "u", "M", LAST, 4, 104, "down")]
    # a jump straight through the band fires and re-arms in one update
    ev = ix.update("M", LAST, 80, 5)
    assert [(type(e).__name__, e.direction) for e in ev] == [  # type: ignore[union-attr]
        ("AlertFired", "down"),
        ("AlertRearmed", "up"),
    ]
    ev = ix.update("M", LAST, 101, 6)
    assert [(type(e).__name__, e.direction) for e in ev] == [  # type: ignore[union-attr]
        ("AlertFired", "up"),
    ]


def test_crosses_at_the_target_waits_for_a_side() -> None:
    ix = AlertIndex()
    ix.update("M", LAST, 100, 0)
    ix.add(mk(1, Condition.CROSSES, 100))
    assert ix.update("M", LAST, 100, 1) == []
    assert ix.status(1).direction is None  # type: ignore[union-attr]
    assert ix.update("M", LAST, 103, 2) == []  # leaving the target is not a cross
    assert fired_ids(ix.update("M", LAST, 100, 3)) == [1]


def test_expiry_drops_before_evaluation() -> None:
    ix = AlertIndex()
    ix.add(mk(1, Condition.ABOVE, 100, expires_at=50))
    ix.add(mk(2, Condition.ABOVE, 100, market="N", expires_at=40))
    ix.update("M", LAST, 90, 10)
    ev = ix.update("M", LAST, 120, 50)
    assert ev == [
        AlertExpired(2, "u", "N", LAST, 50, 40),
        AlertExpired(1, "u", "M", LAST, 50, 50),
    ]
    assert len(ix) == 0


def test_fire_order_follows_the_path() -> None:
    ix = AlertIndex()
    ix.update("M", LAST, 100, 0)
    for i, t in [(5, 130), (4, 110), (9, 120), (1, 120)]:
        ix.add(mk(i, Condition.ABOVE, t))
    for i, t in [(6, 90), (2, 70)]:
        ix.add(mk(i, Condition.BELOW, t))
    ix.update("M", LAST, 100, 1)
    assert fired_ids(ix.update("M", LAST, 130, 2)) == [4, 1, 9, 5]
    assert fired_ids(ix.update("M", LAST, 60, 3)) == [6, 2]


def test_update_touches_only_crossed_alerts(monkeypatch: pytest.MonkeyPatch) -> None:
    ix = AlertIndex()
    ix.update("M", LAST, 50_000, 0)
    n = 20_000
    for i in range(n):
        cond = Condition.ABOVE if i % 2 else Condition.BELOW
        target = 50_001 + i if i % 2 else 49_999 - i
        ix.add(mk(i, cond, target))
    ix.update("M", LAST, 50_000, 1)  # an unchanged price acts on nothing
    calls: list[int] = []
    original = AlertIndex._act

    def counting(self: AlertIndex, e: object, *args: object) -> None:
        calls.append(1)
        original(self, e, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(AlertIndex, "_act", counting)
    ev = ix.update("M", LAST, 50_006, 2)  # crosses targets 50_002, 50_004, 50_006
    assert fired_ids(ev) == [1, 3, 5]
    assert len(calls) == 3
    assert len(ix) == n - 3


def test_add_remove_errors_and_restore() -> None:
    ix = AlertIndex()
    ix.add(mk(1, Condition.ABOVE, 100))
    with pytest.raises(DuplicateAlert):
        ix.add(mk(1, Condition.BELOW, 100))
    with pytest.raises(InvalidAlert):
        ix.add(mk(2, Condition.ABOVE, 0))
    with pytest.raises(InvalidAlert):
        ix.add(mk(2, Condition.ABOVE, 10, rearm=True))
    with pytest.raises(InvalidAlert):
        ix.add(mk(2, Condition.ABOVE, 10), rearm_after="up")
    with pytest.raises(InvalidAlert):
        ix.add(mk(2, Condition.ABOVE, 10, rearm=True, hysteresis=2), rearm_after="down")
    assert ix.remove(1) is not None and ix.remove(1) is None
    # a restored re-arming alert that already fired waits for its band
    ix.add(mk(3, Condition.ABOVE, 100, rearm=True, hysteresis=5), rearm_after="up")
    assert ix.update("M", LAST, 120, 1) == []
    assert [type(e) for e in ix.update("M", LAST, 95, 2)] == [AlertRearmed]


def test_alert_from_request() -> None:
    spec = MarketSpec(
        symbol="XRP-ETH", base="XRP", quote="ETH", tick_size="0.00000001", lot_size="1",
        min_qty="1", max_qty="1000000",
    )  # fmt: skip
    req = msgspec.json.decode(
        b'{"market":"XRP-ETH","condition":"crosses","target":"0.00141342",'
        b'"reference":"index","rearm":true,"hysteresis":"0.00000010","expires_at":2000}',
        type=AlertRequest,
    )
    a = alert_from_request(req, spec, 11, "alice", now_ms=1000)
    assert (a.target, a.hysteresis, a.reference) == (141342, 10, INDEX)
    with pytest.raises(InvalidValue) as exc:
        alert_from_request(msgspec.structs.replace(req, target="0.000000001"), spec, 1, "a", 0)
    assert exc.value.field == "target"
    with pytest.raises(InvalidAlert) as exc2:
        alert_from_request(req, spec, 1, "a", now_ms=2000)
    assert exc2.value.field == "expires_at"
    with pytest.raises(InvalidAlert):
        alert_from_request(msgspec.structs.replace(req, hysteresis=None), spec, 1, "a", 0)


# ----------------------------------------------------------------------------- reference
@dataclass
class _NaiveState:
    alert: PriceAlert
    armed: bool = True
    direction: int = 0  # +1 up, -1 down, 0 unknown
    band: int = 0


@dataclass
class NaiveEvaluator:
    """Full scan of every alert on every update, straight from the documented rules."""

    alerts: dict[int, _NaiveState] = field(default_factory=dict)
    last: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, a: PriceAlert) -> None:
        s = _NaiveState(a)
        if a.condition is Condition.ABOVE:
            s.direction = 1
        elif a.condition is Condition.BELOW:
            s.direction = -1
        else:
            p = self.last.get((a.market, a.reference))
            if p is not None and p != a.target:
                s.direction = 1 if p < a.target else -1
        self.alerts[a.id] = s

    def remove(self, alert_id: int) -> PriceAlert | None:
        s = self.alerts.pop(alert_id, None)
        return s.alert if s else None

    def expire(self, ts: int) -> list[AlertEvent]:
        gone = sorted(
            (s.alert.expires_at, i)
            for i, s in self.alerts.items()
            if s.alert.expires_at is not None and s.alert.expires_at <= ts
        )
        out: list[AlertEvent] = []
        for x, i in gone:
            a = self.alerts.pop(i).alert
            out.append(AlertExpired(i, a.user, a.market, a.reference, ts, x))
        return out

    def update(self, market: str, ref: TriggerSource, p: int, ts: int) -> list[AlertEvent]:
        out = self.expire(ts)
        p0 = self.last.get((market, ref))
        self.last[(market, ref)] = p
        fired: list[tuple[PriceAlert, int]] = []
        rearmed: list[tuple[PriceAlert, int]] = []
        for i, s in list(self.alerts.items()):
            a = s.alert
            if a.market != market or a.reference != ref:
                continue
            T, h = a.target, a.hysteresis
            if not s.armed:
                if (s.direction == -1 and p >= s.band) or (s.direction == 1 and p <= s.band):
                    s.armed = True
                    rearmed.append((a, s.direction))
                continue
            if s.direction == 0:
                if p != T:
                    s.direction = 1 if p < T else -1
                continue
            if (s.direction == 1 and p >= T) or (s.direction == -1 and p <= T):
                d = s.direction
                fired.append((a, d))
                if not a.rearm:
                    del self.alerts[i]
                    continue
                s.armed = False
                if a.condition is Condition.CROSSES:
                    s.direction = -d
                    s.band = T + h if d == 1 else T - h
                    if (d == 1 and p >= s.band) or (d == -1 and p <= s.band):
                        s.armed = True
                        rearmed.append((a, s.direction))
                else:
                    s.band = T - h if d == 1 else T + h
        rising = p0 is None or p >= p0
        fired.sort(key=lambda f: ((f[0].target if rising else -f[0].target), f[0].id))
        for a, d in fired:
            out.append(
                AlertFired(
                    a.id, a.user, a.market, a.reference, ts, a.condition, a.target,
                    "up" if d == 1 else "down", p, not a.rearm,
                )
            )  # fmt: skip
        rearmed.sort(key=lambda r: r[0].id)
        for a, d in rearmed:
            out.append(
                AlertRearmed(a.id, a.user, a.market, a.reference, ts, p, "up" if d == 1 else "down")
            )
        return out


MARKETS = ["A", "B"]
REFS = [LAST, INDEX]

alert_st = st.builds(
    lambda cond, market, ref, target, rearm, h, exp: (cond, market, ref, target, rearm, h, exp),
    st.sampled_from(list(Condition)),
    st.sampled_from(MARKETS),
    st.sampled_from(REFS),
    st.integers(90, 110),
    st.booleans(),
    st.integers(1, 6),
    st.one_of(st.none(), st.integers(0, 400)),
)

op_st = st.one_of(
    st.tuples(st.just("add"), alert_st),
    st.tuples(st.just("remove"), st.integers(0, 60)),
    st.tuples(st.just("move"), st.sampled_from(MARKETS), st.sampled_from(REFS), st.integers(-8, 8)),
    st.tuples(st.just("expire"), st.integers(0, 5)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op_st, min_size=1, max_size=120), st.integers(95, 105))
def test_index_matches_naive_full_scan(ops: list[tuple], start: int) -> None:
    check_against_naive(ops, start)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op_st, min_size=1, max_size=120), st.integers(95, 105))
def test_crowded_books_match_naive_full_scan(ops: list[tuple], start: int) -> None:
    """The same with the trigger lists turned into SortedLists beyond 2 entries (the path
    of books with more than ``_SMALL`` alerts on one side)."""
    small = index_module._SMALL
    index_module._SMALL = 2
    try:
        check_against_naive(ops, start)
    finally:
        index_module._SMALL = small


def test_crowded_book_lists_become_sorted_lists() -> None:
    ix = AlertIndex()
    ix.update("M", LAST, 1_000, 0)
    n = index_module._SMALL + 10
    for i in range(n):
        ix.add(mk(i, Condition.ABOVE, 1_001 + i))
    book = ix._books[("M", LAST)]
    assert not isinstance(book.up, list) and len(book.up) == n
    assert fired_ids(ix.update("M", LAST, 1_003, 1)) == [0, 1, 2]
    ix.remove(5)
    assert fired_ids(ix.update("M", LAST, 1_007, 2)) == [3, 4, 6]
    assert len(ix) == n - 7


def check_against_naive(ops: list[tuple], start: int) -> None:
    ix = AlertIndex()
    ref = NaiveEvaluator()
    prices = {(m, r): start for m in MARKETS for r in REFS}
    ts = 0
    next_id = 0
    history: dict[int, list[str]] = defaultdict(list)
    for op in ops:
        ts += 3
        if op[0] == "add":
            cond, market, r, target, rearm, h, exp = op[1]
            a = mk(
                next_id, cond, target, market=market, reference=r, rearm=rearm,
                hysteresis=h if rearm else 0, expires_at=None if exp is None else ts + exp,
                user=f"user{next_id % 3}",
            )  # fmt: skip
            next_id += 1
            ix.add(a)
            ref.add(a)
        elif op[0] == "remove":
            assert ix.remove(op[1]) == ref.remove(op[1])
        elif op[0] == "expire":
            ts += op[1]
            assert ix.expire(ts) == ref.expire(ts)
        else:
            _, market, r, step = op
            prices[(market, r)] = max(1, prices[(market, r)] + step)
            got = ix.update(market, r, prices[(market, r)], ts)
            assert got == ref.update(market, r, prices[(market, r)], ts)
            for e in got:
                history[e.alert_id].append(type(e).__name__)
        assert sorted(a.id for a in ix.alerts()) == sorted(ref.alerts)
    # exactly once per arming: fires and re-arms alternate, starting with a fire
    for seq in history.values():
        body = [k for k in seq if k != "AlertExpired"]
        assert body == ["AlertFired", "AlertRearmed"] * (len(body) // 2) + (
            ["AlertFired"] if len(body) % 2 else []
        )


def test_restored_crosses_alert_waits_for_its_band() -> None:
    ix = AlertIndex()
    ix.add(mk(4, Condition.CROSSES, 100, rearm=True, hysteresis=3), rearm_after="up")
    assert ix.update("M", LAST, 101, 1) == []
    assert ix.update("M", LAST, 98, 2) == []  # no down-cross before the band at 103
    assert ix.update("M", LAST, 103, 3) == [AlertRearmed(4, "u", "M", LAST, 3, 103, "down")]
    assert fired_ids(ix.update("M", LAST, 99, 4)) == [4]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op_st, min_size=2, max_size=100), st.integers(95, 105), st.data())
def test_restart_from_persisted_state_continues_identically(
    ops: list[tuple], start: int, data: st.DataObject
) -> None:
    """The actor's recovery contract: persist, per re-arming alert, the direction of its last
    AlertFired (cleared by AlertRearmed); after a restart, add every live alert with
    ``rearm_after`` = that direction and replay each book's last price. The restored index then
    behaves exactly like the one that never stopped (given the same replayed price)."""
    cut = data.draw(st.integers(1, len(ops) - 1))
    a = AlertIndex()
    prices = {(m, r): start for m in MARKETS for r in REFS}
    seen: set[tuple[str, TriggerSource]] = set()
    waiting: dict[int, str] = {}

    def record(events: list[AlertEvent]) -> None:
        for e in events:
            if isinstance(e, AlertFired) and not e.final:
                waiting[e.alert_id] = e.direction
            elif isinstance(e, AlertRearmed):
                waiting.pop(e.alert_id, None)

    def apply(ix: AlertIndex, i: int, op: tuple, log: bool) -> list[AlertEvent]:
        ts = 3 * (i + 1) + (op[1] if op[0] == "expire" else 0)
        if op[0] == "add":
            cond, market, r, target, rearm, h, exp = op[1]
            ix.add(
                mk(i, cond, target, market=market, reference=r, rearm=rearm,
                   hysteresis=h if rearm else 0, expires_at=None if exp is None else ts + exp)
            )  # fmt: skip
            return []
        if op[0] == "remove":
            ix.remove(op[1])
            return []
        if op[0] == "expire":
            return ix.expire(ts)
        _, market, r, _step = op
        if log:
            seen.add((market, r))
        return ix.update(market, r, prices[(market, r)], ts)

    def step_price(op: tuple) -> None:
        if op[0] == "move":
            _, market, r, step = op
            prices[(market, r)] = max(1, prices[(market, r)] + step)

    for i, op in enumerate(ops[:cut]):
        step_price(op)
        record(apply(a, i, op, True))
    b = AlertIndex()
    for alert in a.alerts():
        b.add(alert, rearm_after=waiting.get(alert.id))  # type: ignore[arg-type]
    for market, r in sorted(seen):
        # the replay reaches both; it settles alerts added since the book's last update
        p = prices[(market, r)]
        assert a.update(market, r, p, -1) == b.update(market, r, p, -1)  # ts: no expiry
    for i, op in enumerate(ops[cut:], start=cut):
        step_price(op)
        assert apply(a, i, op, False) == apply(b, i, op, False)
        assert a.alerts() == b.alerts()
