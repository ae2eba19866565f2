"""The lifecycle driven by the real escrow's events (eth-tester in process), including a
chain reorganisation made with snapshot/revert."""

from __future__ import annotations

import msgspec

from orrange.evm.chain import send_dev
from orrange.matching.enums import Side
from orrange.settlement.events import ChainEvent
from orrange.settlement.lifecycle import (
    P2PTrade,
    ReputationEvent,
    TradeState,
    Transition,
    apply_event,
    open_trade,
    revert_event,
    tick,
)
from orrange.settlement.reputation import ReputationBook

from .conftest import Env
from .test_lifecycle import CONFIG, SPEC, fill


class Follower:
    """What the escrow watcher does, minus NATS: read the escrow's logs, apply new ones,
    revert the ones a reorg removed."""

    def __init__(self, evm: Env, trade: P2PTrade) -> None:
        self.evm = evm
        self.trade = trade
        self.seen: dict[str, ChainEvent] = {}
        self.book = ReputationBook()
        self.facts: list[ReputationEvent] = []

    def sync(self) -> P2PTrade:
        events = [e for e in self.evm.escrow.events(0) if e.trade_id == self.trade.trade_id]
        current = {e.event_id: e for e in events}
        for event_id in [i for i in self.seen if i not in current]:
            self._take(revert_event(self.trade, event_id))
            del self.seen[event_id]
        for event in events:
            if event.event_id not in self.seen:
                block = self.evm.w3.eth.get_block(event.block_number)
                self._take(apply_event(self.trade, event, int(block["timestamp"]) * 1000))
                self.seen[event.event_id] = event
        self._take(tick(self.trade, self.evm.now() * 1000))
        return self.trade

    def _take(self, transition: Transition) -> None:
        self.trade = transition.trade
        self.facts.extend(transition.reputation)
        self.book.apply_all(transition.reputation)


def _start(evm: Env, seq: int) -> tuple[Follower, bytes, int]:
    f = fill(Side.SELL, ("pix",), seq=seq)  # the taker sells: seller "bob", buyer "alice"
    f = msgspec.structs.replace(f, ts=evm.now() * 1000)
    trade = open_trade(f, SPEC, CONFIG)
    assert (trade.seller, trade.buyer) == ("bob", "alice")
    follower = Follower(evm, trade)
    tid = bytes.fromhex(trade.trade_id[2:])
    deadline = trade.payment_deadline_s(evm.now() * 1000)
    return follower, tid, deadline


def test_happy_path_on_chain(evm: Env) -> None:
    follower, tid, deadline = _start(evm, 1)
    esc, w3 = evm.escrow, evm.w3
    assert follower.sync().state == TradeState.AWAITING_FUNDING
    send_dev(
        w3, esc.fund_tx(evm.seller, tid, buyer=evm.buyer, amount=10**17, payment_deadline=deadline)
    )
    t = follower.sync()
    assert t.state == TradeState.FUNDED
    assert t.payment_deadline_ms == deadline * 1000
    assert (t.seller_address, t.buyer_address, t.amount) == (evm.seller, evm.buyer, 10**17)
    send_dev(w3, esc.mark_paid_tx(evm.buyer, tid))
    assert follower.sync().state == TradeState.PAID
    send_dev(w3, esc.release_tx(evm.seller, tid))
    t = follower.sync()
    assert t.state == TradeState.RELEASED
    assert t.to_buyer == 10**17 - 10**17 * 150 // 10_000
    assert follower.sync() == t  # a second pass over the same logs changes nothing
    assert follower.book.stats("alice").completed == 1
    assert follower.book.stats("bob").completed == 1
    assert follower.book.stats("bob").median_release_ms is not None


def test_split_and_timeout_on_chain(evm: Env) -> None:
    esc, w3 = evm.escrow, evm.w3
    split, tid, deadline = _start(evm, 2)
    send_dev(
        w3, esc.fund_tx(evm.seller, tid, buyer=evm.buyer, amount=10**17, payment_deadline=deadline)
    )
    send_dev(w3, esc.mark_paid_tx(evm.buyer, tid))
    send_dev(w3, esc.dispute_tx(evm.seller, tid))
    assert split.sync().state == TradeState.DISPUTED
    send_dev(w3, esc.resolve_tx(evm.mediator, tid, 5_000))
    t = split.sync()
    assert (t.state, t.resolution) == (TradeState.RESOLVED, "split")
    assert split.facts == []

    late, tid2, deadline2 = _start(evm, 3)
    send_dev(
        w3,
        esc.fund_tx(evm.seller, tid2, buyer=evm.buyer, amount=10**17, payment_deadline=deadline2),
    )
    assert late.sync().state == TradeState.FUNDED
    evm.travel_to(deadline2 + 1)
    w3.testing.mine()  # type: ignore[attr-defined]
    assert late.sync().state == TradeState.EXPIRED
    send_dev(w3, esc.reclaim_tx(evm.seller, tid2))
    assert late.sync().state == TradeState.REFUNDED
    assert [(e.user, e.kind) for e in late.facts] == [("alice", "timed_out")]
    assert late.book.stats("alice").timed_out == 1


def test_reorg_rolls_back_the_release(evm: Env) -> None:
    esc, w3 = evm.escrow, evm.w3
    follower, tid, deadline = _start(evm, 4)
    send_dev(
        w3, esc.fund_tx(evm.seller, tid, buyer=evm.buyer, amount=10**17, payment_deadline=deadline)
    )
    send_dev(w3, esc.mark_paid_tx(evm.buyer, tid))
    fork_point = w3.testing.snapshot()  # type: ignore[attr-defined]
    send_dev(w3, esc.release_tx(evm.seller, tid))
    assert follower.sync().state == TradeState.RELEASED
    assert follower.book.stats("bob").completed == 1
    # the release's block is orphaned; the new branch carries a dispute instead
    w3.testing.revert(fork_point)  # type: ignore[attr-defined]
    w3.testing.mine()  # type: ignore[attr-defined]
    send_dev(w3, esc.dispute_tx(evm.buyer, tid))
    t = follower.sync()
    assert t.state == TradeState.DISPUTED
    assert "released" not in t.tx_hashes
    assert follower.book.stats("bob").completed == 0
    assert follower.book.stats("alice").completed == 0
    assert [(e.user, e.retract) for e in follower.facts if e.retract] == [
        ("alice", True),
        ("bob", True),
    ]
