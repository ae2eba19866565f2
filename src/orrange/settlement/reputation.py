"""User reputation: an integer score from 0 to 1000 (pure, exact integer arithmetic).

Inputs per user, from the settlement lifecycle's :class:`~.lifecycle.ReputationEvent` facts
(:class:`ReputationBook` folds them; a retraction removes a fact, a repeated fact counts
once) and the account's age:

- ``C`` completed trades, ``V`` their volume in quote cents,
- ``L`` disputes lost, ``T`` timeouts (never funded as seller, never paid as buyer),
- ``M`` the median release time as a seller (ms; none before the first release),
- ``D`` whole days since the account was created.

Formula (``//`` is floor division; each part is an integer)::

    base     = 200
    trades   = 300 * C // (C + 10)                  # 10 trades -> 150, saturates at 300
    volume   = 200 * V // (V + 1_000_000)           # 10,000.00 in volume -> 100, max 200
    age      = 150 * min(D, 365) // 365             # one year -> 150
    speed    = 75                                   if M is none (neutral)
             = 150                                  if M <= 15 min
             = 0                                    if M >= 24 h
             = 150 * (24 h - M) // (24 h - 15 min)  otherwise (linear)
    penalty  = 150 * L + 50 * T
    score    = clamp(base + trades + volume + age + speed - penalty, 0, 1000)

A new account scores 275; a long, fast, high-volume record approaches 1000 (the `trades`
and `volume` terms approach their caps without reaching them). The matcher's counterparty constraint
(``min_reputation``) and ``price-reputation-time`` priority read this score.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from orrange.settlement.lifecycle import ReputationEvent

__all__ = [
    "NEW_USER_SCORE",
    "ReputationBook",
    "ReputationStats",
    "ScoreParts",
    "median",
    "score",
    "score_parts",
]

DAY_MS = 86_400_000
FAST_RELEASE_MS = 15 * 60_000
SLOW_RELEASE_MS = DAY_MS
MAX_SCORE = 1000


class ReputationStats(msgspec.Struct, frozen=True, kw_only=True):
    """A user's aggregated facts: counts, ``volume`` (quote cents) and
    ``median_release_ms`` (None before the first release as a seller)."""

    completed: int = 0
    volume: int = 0
    disputes_lost: int = 0
    timed_out: int = 0
    median_release_ms: int | None = None


class ScoreParts(msgspec.Struct, frozen=True, kw_only=True):
    """The formula's terms (see the module doc) and the clamped ``score``."""

    base: int
    trades: int
    volume: int
    age: int
    speed: int
    penalty: int
    score: int


def median(values: Iterable[int]) -> int | None:
    """The median of integers (the floor of the mean of the two middle ones for an even
    count); None for none."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return None
    if n % 2:
        return ordered[n // 2]
    return (ordered[n // 2 - 1] + ordered[n // 2]) // 2


def _speed(median_release_ms: int | None) -> int:
    if median_release_ms is None:
        return 75
    if median_release_ms <= FAST_RELEASE_MS:
        return 150
    if median_release_ms >= SLOW_RELEASE_MS:
        return 0
    return 150 * (SLOW_RELEASE_MS - median_release_ms) // (SLOW_RELEASE_MS - FAST_RELEASE_MS)


def score_parts(stats: ReputationStats, account_age_ms: int) -> ScoreParts:
    """Every term of the formula for ``stats`` and an account ``account_age_ms`` old (a
    negative age counts as 0). Raises ``ValueError`` for negative counts or volume."""
    if min(stats.completed, stats.volume, stats.disputes_lost, stats.timed_out) < 0:
        raise ValueError("reputation counts and volume must be non-negative")
    c, v = stats.completed, stats.volume
    days = max(0, account_age_ms) // DAY_MS
    base = 200
    trades = 300 * c // (c + 10)
    volume = 200 * v // (v + 1_000_000)
    age = 150 * min(days, 365) // 365
    speed = _speed(stats.median_release_ms)
    penalty = 150 * stats.disputes_lost + 50 * stats.timed_out
    total = max(0, min(MAX_SCORE, base + trades + volume + age + speed - penalty))
    return ScoreParts(
        base=base,
        trades=trades,
        volume=volume,
        age=age,
        speed=speed,
        penalty=penalty,
        score=total,
    )


def score(stats: ReputationStats, account_age_ms: int) -> int:
    """The reputation score, 0..1000 (see the module doc)."""
    return score_parts(stats, account_age_ms).score


NEW_USER_SCORE = score(ReputationStats(), 0)


class ReputationBook:
    """In-memory fold of reputation facts, idempotent and rollback-safe: one fact per
    ``(user, trade_id, kind)``; a repeated fact replaces the old one, a retraction removes it.
    """

    def __init__(self) -> None:
        self._facts: dict[str, dict[tuple[str, str], ReputationEvent]] = {}

    def apply(self, event: ReputationEvent) -> bool:
        """Record (or with ``retract`` remove) one fact; returns whether anything changed."""
        facts = self._facts.setdefault(event.user, {})
        key = (event.trade_id, event.kind)
        if event.retract:
            return facts.pop(key, None) is not None
        stored = msgspec.structs.replace(event, retract=False)
        if facts.get(key) == stored:
            return False
        facts[key] = stored
        return True

    def apply_all(self, events: Iterable[ReputationEvent]) -> int:
        """Apply in order; returns how many changed something."""
        return sum(self.apply(e) for e in events)

    def stats(self, user: str) -> ReputationStats:
        """``user``'s aggregated facts (all zero for an unknown user)."""
        facts = self._facts.get(user, {}).values()
        completed = [f for f in facts if f.kind == "completed"]
        return ReputationStats(
            completed=len(completed),
            volume=sum(f.volume for f in completed),
            disputes_lost=sum(1 for f in facts if f.kind == "dispute_lost"),
            timed_out=sum(1 for f in facts if f.kind == "timed_out"),
            median_release_ms=median(f.release_ms for f in completed if f.release_ms is not None),
        )

    def score(self, user: str, account_created_ms: int, now_ms: int) -> int:
        """``user``'s score at ``now_ms`` for an account created at ``account_created_ms``."""
        return score(self.stats(user), now_ms - account_created_ms)
