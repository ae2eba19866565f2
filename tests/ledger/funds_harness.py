"""A funded book for the ledger tests: :class:`~orrange.ledger.Funds` in front of a real
:class:`~orrange.matching.OrderBook`, as risk and the matcher run them (commands through the
funds, then the book, then the book's events back through the funds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kit.book_helpers import make_spec

from orrange.ledger import AssetSpec, Entry, Funds, FundsMarket
from orrange.ledger.funds import SettlementKind
from orrange.markets import MarketSpec
from orrange.matching import (
    AmendOrder,
    Command,
    Event,
    OrderBook,
    OrderRejected,
    SubmitOrder,
)

SYM = "T-USD"
#: T has 2 decimals (one lot of 1 T = 100 base units), USD 3 (one quote unit = 1000 base units)
ASSETS = {"T": AssetSpec("T", 2), "USD": AssetSpec("USD", 3)}
BPL = 100
QPU = 1000


def spec(**kw: Any) -> MarketSpec:
    return make_spec(symbol=SYM, base="T", quote="USD", **kw)


@dataclass
class Step:
    """What one command did: the funds' decision, the book's events, the entries."""

    decision: Command | OrderRejected
    events: list[Event] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)


class FundedBook:
    """A book behind the funds. ``send`` numbers commands like the ``CMD`` stream."""

    def __init__(self, settlement: SettlementKind = "vault", **spec_kw: Any) -> None:
        self.spec = spec(**spec_kw)
        self.market = FundsMarket.build(self.spec, ASSETS, settlement)
        self.funds = Funds([self.market], ASSETS)
        self.book = OrderBook(self.spec)
        self.cmd_seq = 0
        self.funds_seq = 0
        self.log: list[Entry] = []

    def deposit(self, user: str, asset: str, units: int, ts: int = 1) -> list[Entry]:
        self.funds_seq += 1
        out = self.funds.deposit(self.funds_seq, user, asset, units, f"0xb:{self.funds_seq}", ts)
        self.log += out
        return out

    def send(self, cmd: Command) -> Step:
        self.cmd_seq += 1
        entries: list[Entry] = []
        decision: Command | OrderRejected = cmd
        if isinstance(cmd, SubmitOrder):
            decision, entries = self.funds.submit(SYM, self.cmd_seq, cmd, self.book.last_price)
        elif isinstance(cmd, AmendOrder):
            decision, entries = self.funds.amend(SYM, self.cmd_seq, cmd)
        step = Step(decision, [], list(entries))
        if not isinstance(decision, OrderRejected):
            step.events = self.book.process(decision)
            step.entries += self.funds.on_events(SYM, step.events)
        self.log += step.entries
        return step

    def bal(self, user: str, asset: str) -> tuple[int, int]:
        b = self.funds.ledger.balance(user, asset)
        return (b.available, b.held)

    def held(self, order_id: int) -> int:
        h = self.funds.ledger.hold(f"{SYM}:{order_id}")
        return 0 if h is None else h[2]
