"""The reputation score: the documented formula, exact values, bounds, and the fold of
lifecycle facts (idempotent, retractable)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orrange.settlement.lifecycle import ReputationEvent
from orrange.settlement.reputation import (
    DAY_MS,
    NEW_USER_SCORE,
    ReputationBook,
    ReputationStats,
    ScoreParts,
    median,
    score,
    score_parts,
)

MIN = 60_000
HOUR = 60 * MIN


def test_new_user() -> None:
    assert NEW_USER_SCORE == 275
    assert score_parts(ReputationStats(), 0) == ScoreParts(
        base=200, trades=0, volume=0, age=0, speed=75, penalty=0, score=275
    )


def test_documented_values() -> None:
    stats = ReputationStats(completed=10, volume=1_000_000, median_release_ms=10 * MIN)
    # 200 + 150 (10 trades) + 100 (10,000.00) + 74 (182 days) + 150 (fast) = 674
    assert score_parts(stats, 182 * DAY_MS + 5) == ScoreParts(
        base=200, trades=150, volume=100, age=74, speed=150, penalty=0, score=674
    )
    assert score(stats, 365 * DAY_MS) == 750
    assert score(stats, 10 * 365 * DAY_MS) == 750  # age saturates at one year


@pytest.mark.parametrize(
    ("median_ms", "speed"),
    [
        (None, 75),
        (0, 150),
        (15 * MIN, 150),
        (15 * MIN + 1, 149),
        (12 * HOUR + 7 * MIN + 30_000, 75),  # the midpoint of 15 min .. 24 h
        (24 * HOUR - 1, 0),
        (24 * HOUR, 0),
        (30 * 24 * HOUR, 0),
    ],
)
def test_release_speed(median_ms: int | None, speed: int) -> None:
    assert score_parts(ReputationStats(median_release_ms=median_ms), 0).speed == speed


def test_penalties_and_bounds() -> None:
    assert score(ReputationStats(disputes_lost=1), 0) == 125
    assert score(ReputationStats(timed_out=3), 0) == 125
    assert score(ReputationStats(disputes_lost=5, timed_out=9), 0) == 0  # clamped
    best = ReputationStats(completed=10**9, volume=10**18, median_release_ms=0)
    # 200 + 299 + 199 + 150 + 150: the rational terms approach, never reach, their caps
    assert score(best, 400 * DAY_MS) == 998
    assert score_parts(best, -DAY_MS).age == 0
    with pytest.raises(ValueError, match="non-negative"):
        score(ReputationStats(completed=-1), 0)


@given(
    c=st.integers(0, 10**6),
    v=st.integers(0, 10**15),
    lost=st.integers(0, 20),
    timeouts=st.integers(0, 20),
    m=st.none() | st.integers(0, 10 * DAY_MS),
    age=st.integers(0, 3_000 * DAY_MS),
)
def test_score_is_bounded_and_monotonic(
    c: int, v: int, lost: int, timeouts: int, m: int | None, age: int
) -> None:
    s = ReputationStats(
        completed=c, volume=v, disputes_lost=lost, timed_out=timeouts, median_release_ms=m
    )
    base = score(s, age)
    assert 0 <= base <= 1000
    assert (
        score(
            ReputationStats(
                completed=c + 1,
                volume=v,
                disputes_lost=lost,
                timed_out=timeouts,
                median_release_ms=m,
            ),
            age,
        )
        >= base
    )
    assert (
        score(
            ReputationStats(
                completed=c,
                volume=v,
                disputes_lost=lost + 1,
                timed_out=timeouts,
                median_release_ms=m,
            ),
            age,
        )
        <= base
    )
    assert score(s, age + DAY_MS) >= base


def test_median() -> None:
    assert median([]) is None
    assert median([5]) == 5
    assert median([9, 1, 5]) == 5
    assert median([4, 1, 2, 3]) == 2  # floor of 2.5


def fact(
    user: str,
    trade: str,
    kind: str,
    volume: int = 100,
    release_ms: int | None = None,
    retract: bool = False,
) -> ReputationEvent:
    return ReputationEvent(
        user=user,
        trade_id=trade,
        kind=kind,
        volume=volume,
        at_ms=0,  # type: ignore[arg-type]
        release_ms=release_ms,
        retract=retract,
    )


def test_book_folds_facts_idempotently() -> None:
    book = ReputationBook()
    events = [
        fact("alice", "t1", "completed", 50_000, release_ms=5 * MIN),
        fact("alice", "t2", "completed", 30_000, release_ms=20 * MIN),
        fact("alice", "t3", "completed", 20_000, release_ms=2 * HOUR),
        fact("alice", "t3", "dispute_lost", 20_000),
        fact("alice", "t4", "timed_out"),
        fact("bob", "t1", "completed", 50_000),
    ]
    assert book.apply_all(events) == 6
    assert book.apply_all(events) == 0  # duplicates change nothing
    assert book.stats("alice") == ReputationStats(
        completed=3, volume=100_000, disputes_lost=1, timed_out=1, median_release_ms=20 * MIN
    )
    assert book.stats("bob") == ReputationStats(completed=1, volume=50_000)
    assert book.stats("carol") == ReputationStats()
    # a rollback retracts a fact; retracting again is a no-op
    assert book.apply(fact("alice", "t3", "dispute_lost", 20_000, retract=True)) is True
    assert book.apply(fact("alice", "t3", "dispute_lost", 20_000, retract=True)) is False
    assert book.stats("alice").disputes_lost == 0
    expected = score(book.stats("alice"), 30 * DAY_MS)
    assert book.score("alice", account_created_ms=1_000, now_ms=1_000 + 30 * DAY_MS) == expected
