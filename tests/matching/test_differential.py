"""Differential test: the engine against the simple reference matcher in ``kit.reference_book``."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from kit.book_helpers import fills, make_spec
from kit.cmd_strategies import Op, build_commands, ops_strategy
from kit.reference_book import ReferenceBook

from orrange.markets import MarketSpec
from orrange.matching import (
    AmendOrder,
    CancelOrder,
    Command,
    OrderBook,
    OrderRejected,
    OrderType,
    SelfTradePrevention,
    SubmitOrder,
)
from orrange.matching.flow import BENCH_SPEC, synthetic_flow

ALL = 10**9


def _compare(spec: MarketSpec, cmds: list[Command], depth_every: int = 1) -> int:
    book = OrderBook(spec)
    ref = ReferenceBook(spec.market_protection_bps, spec.min_lots, spec.max_lots)
    n_fills = 0
    for i, c in enumerate(cmds):
        ev = book.process(c)
        got = fills(ev)
        assert got == ref.process(c), (i, c)
        n_fills += len(got)
        if isinstance(c, (SubmitOrder, AmendOrder)):
            assert not any(isinstance(e, OrderRejected) for e in ev), (i, c, ev)
        if i % depth_every == 0:
            d = book.depth(ALL)
            assert (d.bids, d.asks) == ref.depth(), i
    d = book.depth(ALL)
    assert (d.bids, d.asks) == ref.depth()
    return n_fills


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops=ops_strategy(full=False, max_size=80))
def test_engine_matches_reference_on_random_streams(ops: list[Op]) -> None:
    spec = make_spec(market_protection_bps=300)
    cmds = build_commands(ops, spec, full=False)
    _compare(spec, cmds)


def _no_stp(c: Command) -> Command:
    if isinstance(c, SubmitOrder):
        return msgspec.structs.replace(c, stp=SelfTradePrevention.NONE)
    return c


@pytest.mark.parametrize("seed", [1, 7, 2024])
def test_engine_matches_reference_on_synthetic_flow(seed: int) -> None:
    cmds = [_no_stp(c) for c in synthetic_flow(8_000, seed=seed, users=50)]
    kinds = {type(c) for c in cmds} | {c.order_type for c in cmds if isinstance(c, SubmitOrder)}
    assert {SubmitOrder, CancelOrder, OrderType.LIMIT, OrderType.MARKET} <= kinds
    n_fills = _compare(BENCH_SPEC, cmds, depth_every=50)
    assert n_fills > 500  # the flow really trades
