"""Hypothesis properties of the funds driven with the real book on random command streams:
balances never negative, conservation after every command, every hold exactly what its live
order needs, users' balances constant across fills, and snapshot + restore + replay equal to
an uninterrupted run."""

from __future__ import annotations

from typing import Any

from funds_harness import ASSETS, BPL, QPU, SYM, FundedBook
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kit.cmd_strategies import USERS, Op, ops_strategy

from orrange.ledger import Funds, needed
from orrange.matching import (
    AdvanceTime,
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    Event,
    Halt,
    OrderBook,
    Resume,
    SetReferencePrice,
    SubmitOrder,
)

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MARKETS = st.sampled_from(
    [
        ("vault", {"maker_fee_bps": -1, "taker_fee_bps": 5}),
        ("vault", {"maker_fee_bps": 3, "taker_fee_bps": 7, "market_protection_bps": 200}),
        ("vault", {"maker_fee_bps": 0, "taker_fee_bps": 0, "market_protection_bps": 50}),
        ("p2p", {"maker_fee_bps": 2, "taker_fee_bps": 2}),
    ]
)
FUNDING = st.tuples(
    st.sampled_from([0, 300 * QPU, 1500 * QPU, 10**9 * QPU, 10**9 * QPU]),
    st.sampled_from([0, 4 * BPL, 20 * BPL, 10**6 * BPL, 10**6 * BPL]),
)
FUNDINGS = st.lists(FUNDING, min_size=len(USERS), max_size=len(USERS))


def concrete(op: Op, book: OrderBook, ts: int) -> Command:
    """One op as a command, cancels and amends naming orders live in ``book``."""
    a: dict[str, Any] = op.args
    if op.kind == "submit":
        kw = {k: v for k, v in a.items() if k != "expire_in"}
        if "expire_in" in a:
            kw["expire_at"] = ts + a["expire_in"]
        return SubmitOrder(ts=ts, **kw)
    if op.kind in ("cancel", "amend"):
        live = book.open_orders()
        if not live:
            return CancelOrder(ts=ts, user="u0", order_id=a["pick"] % 7 + 1)
        v = live[a["pick"] % len(live)]
        if op.kind == "cancel":
            return CancelOrder(ts=ts, user=v.user, order_id=v.order_id)
        q, p = a["quantity"], a["price"]
        if q is None and p is None:
            q = v.filled + 1 + int(a["frac"] * v.leaves)
        return AmendOrder(ts=ts, user=v.user, order_id=v.order_id, quantity=q, price=p)
    if op.kind == "cancel_all":
        return CancelAll(ts=ts, user=a["user"])
    if op.kind == "reference":
        return SetReferencePrice(ts=ts, price=a["price"])
    if op.kind == "advance":
        return AdvanceTime(ts=ts)
    return Halt(ts=ts)


def funded_book(market: tuple[str, dict[str, int]], funding: list[tuple[int, int]]) -> FundedBook:
    fb = FundedBook(market[0], **market[1])  # type: ignore[arg-type]
    for user, (usd, t) in zip(USERS, funding, strict=True):
        if usd:
            fb.deposit(user, "USD", usd)
        if t:
            fb.deposit(user, "T", t)
    return fb


def check(fb: FundedBook, deposited: dict[str, int]) -> None:
    led = fb.funds.ledger
    for asset in ("T", "USD"):
        audit = led.audit(asset)
        assert audit.ok, audit
        # exchange-core's invariant: what users, fees and escrows hold never changes by trading
        assert audit.users_available + audit.users_held + audit.fees + audit.p2p == deposited[asset]
    for account in led.accounts():
        for b in led.balances(account).values():
            assert account.startswith("@") or (b.available >= 0 and b.held >= 0)
    m = fb.market
    live = {v.order_id: v for v in fb.book.open_orders()}
    holds = led.holds()
    for v in live.values():
        buy = v.side.value == "buy"
        need = needed(
            settlement=m.settlement,  # type: ignore[arg-type]
            units=m.units,
            fee_bps=m.fee_bps,
            buy=buy,
            leaves=v.leaves,
            price=v.price or 0,
        )
        h = holds.get(f"{SYM}:{v.order_id}")
        assert (0 if h is None else h[2]) == need, (v, h, need)
    for ref, (account, _asset, _amount) in holds.items():
        assert int(ref.split(":")[1]) in live, ref
        assert not account.startswith("@")
    for asset in ("T", "USD"):
        assert led.totals(asset).held == sum(a for _, s, a in holds.values() if s == asset)


def run(
    fb: FundedBook, ops: list[Op], *, checked: bool = False
) -> list[tuple[int, Command, list[Event]]]:
    """Drive ``fb`` with ``ops``; returns (cmd_seq, command, book events) per command."""
    deposited = {a: fb.funds.ledger.audit(a).deposits for a in ("T", "USD")}
    trace: list[tuple[int, Command, list[Event]]] = []
    ts = 1_000
    for op in ops:
        ts += op.dt
        cmds = [concrete(op, fb.book, ts)]
        if isinstance(cmds[0], Halt):
            cmds.append(Resume(ts=ts))
        for cmd in cmds:
            step = fb.send(cmd)
            trace.append((fb.cmd_seq, cmd, step.events))
            if checked:
                check(fb, deposited)
    return trace


@SETTINGS
@given(market=MARKETS, funding=FUNDINGS, ops=ops_strategy(full=True, min_size=20, max_size=60))
def test_every_command_keeps_balances_conserved_and_holds_exact(
    market: tuple[str, dict[str, int]], funding: list[tuple[int, int]], ops: list[Op]
) -> None:
    fb = funded_book(market, funding)
    run(fb, ops, checked=True)
    # every order that ended left no hold behind; what is still held is what live orders need
    fb.send(AdvanceTime(ts=10**9))
    for user in USERS:
        fb.send(CancelAll(ts=10**9, user=user))
    assert fb.funds.ledger.holds() == {}
    for user in USERS:
        assert fb.bal(user, "T")[1] == fb.bal(user, "USD")[1] == 0


@SETTINGS
@given(
    market=MARKETS,
    funding=FUNDINGS,
    ops=ops_strategy(full=True, min_size=10, max_size=40),
    cut=st.floats(0, 1),
    back=st.integers(0, 5),
)
def test_snapshot_restore_and_replay_equal_an_uninterrupted_run(
    market: tuple[str, dict[str, int]],
    funding: list[tuple[int, int]],
    ops: list[Op],
    cut: float,
    back: int,
) -> None:
    whole = funded_book(market, funding)
    trace = run(whole, ops)
    k = int(cut * len(trace))
    part = funded_book(market, funding)
    for cmd_seq, cmd, events in trace[:k]:
        part.cmd_seq = cmd_seq - 1
        assert part.send(cmd).events == events
    restored = Funds.restore([part.market], ASSETS, part.funds.snapshot())
    book = OrderBook.restore(part.spec, part.book.snapshot())
    # the restarted risk sees the last inputs again: commands and events already applied
    for cmd_seq, cmd, events in trace[max(0, k - back) : k]:
        if isinstance(cmd, SubmitOrder):
            _, entries = restored.submit(SYM, cmd_seq, cmd, book.last_price)
        elif isinstance(cmd, AmendOrder):
            _, entries = restored.amend(SYM, cmd_seq, cmd)
        else:
            entries = []
        assert entries == []
        assert restored.on_events(SYM, events) == []
    for cmd_seq, cmd, events in trace[k:]:
        decision: Command | object = cmd
        if isinstance(cmd, SubmitOrder):
            decision, _ = restored.submit(SYM, cmd_seq, cmd, book.last_price)
        elif isinstance(cmd, AmendOrder):
            decision, _ = restored.amend(SYM, cmd_seq, cmd)
        if isinstance(decision, SubmitOrder | AmendOrder | CancelOrder | CancelAll) or not (
            isinstance(cmd, SubmitOrder | AmendOrder)
        ):
            evs = book.process(decision)  # type: ignore[arg-type]
            assert evs == events
            restored.on_events(SYM, evs)
        else:
            assert events == []
    assert restored.snapshot() == whole.funds.snapshot()
