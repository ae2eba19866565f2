"""The funds rules risk applies: hold before matching, settle after (docs/funds.md).

:class:`Funds` owns a :class:`~orrange.ledger.ledger.Ledger` and, per open order of a funded
market, what its hold depends on. Every method applies the entries it creates to the ledger
and returns them, so the caller publishes them on ``LEDGER``. Inputs are deduplicated by
source: a command, book event or ``FUNDS`` message at or below the last one seen is a replay
and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Literal

import msgspec

from orrange.ledger.assets import AssetSpec, MarketUnits, to_decimal
from orrange.ledger.entries import (
    FAUCET,
    FEES,
    LOSS,
    VAULT,
    Entry,
    EntryKind,
    Posting,
    entry_id,
    order_ref,
    p2p_account,
)
from orrange.ledger.holds import needed
from orrange.ledger.ledger import Ledger, LedgerState
from orrange.markets import MarketSpec
from orrange.matching.commands import AmendOrder, SubmitOrder
from orrange.matching.enums import OrderType, RejectReason, Side
from orrange.matching.events import (
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderTriggered,
)
from orrange.risk.rules import reject
from orrange.settlement.lifecycle import trade_id_for_fill

__all__ = ["Funds", "FundsError", "FundsMarket", "OrderFunds"]

SettlementKind = Literal["vault", "p2p", "none"]
_K = EntryKind
_CMD: Final = "cmd"
_FUNDS: Final = "funds"
_PRICED: Final = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT_LIMIT})
_BPS: Final = 10_000


class FundsError(ValueError):
    """An input the funds cannot account for (an unknown asset, withdrawal or deposit, a fill
    of an order that holds nothing on a funded market)."""


class FundsMarket(msgspec.Struct, frozen=True):
    """A market as the funds see it: its spec, settlement and units in base units.

    Build it with :meth:`build`.
    """

    spec: MarketSpec
    settlement: SettlementKind
    units: MarketUnits
    #: the highest positive fee rate of the market (bps), the one buys hold for
    fee_bps: int

    @classmethod
    def build(
        cls, spec: MarketSpec, assets: Mapping[str, AssetSpec], settlement: SettlementKind
    ) -> FundsMarket:
        """Check and build. ``vault`` needs both assets in ``assets`` and ``maker_fee_bps +
        taker_fee_bps >= 0``; ``p2p`` needs the base asset (the quote is fiat).

        Raises:
            ValueError: naming the market, for a missing asset, a grid that is not whole base
                units (:meth:`MarketUnits.of`) or a rebate above the taker fee.
        """
        fee = max(spec.maker_fee_bps, spec.taker_fee_bps, 0)
        if settlement == "none":
            return cls(spec, settlement, MarketUnits(0, 0), fee)
        base = assets.get(spec.base)
        if base is None:
            raise ValueError(f"{spec.symbol}: base asset {spec.base} is not in the assets")
        quote = assets.get(spec.quote)
        if settlement == "vault":
            if quote is None:
                raise ValueError(f"{spec.symbol}: quote asset {spec.quote} is not in the assets")
            if spec.maker_fee_bps + spec.taker_fee_bps < 0:
                raise ValueError(f"{spec.symbol}: a maker rebate above the taker fee")
        else:
            quote = None
        return cls(spec, settlement, MarketUnits.of(spec, base, quote), fee)


class OrderFunds(msgspec.Struct, array_like=True):
    """What an open order's hold depends on (snapshot form). ``price``: limit or protection
    price in ticks (0: none); ``amends``: ``(quantity, price)`` of amends forwarded and not
    yet answered by the book, in order."""

    symbol: str
    order_id: int
    user: str
    buy: bool
    price: int
    leaves: int
    filled: int
    priced: bool
    accepted: bool
    defunded: bool
    amends: list[tuple[int | None, int | None]]


class _FundsState(msgspec.Struct, array_like=True):
    ledger: LedgerState
    orders: list[OrderFunds]
    rejections: list[tuple[int, str, str, str]]
    deposits: list[tuple[str, str, str, int]]
    cmd_seq: int
    funds_seq: int
    evt_seq: list[tuple[str, int]]


def _human(asset: AssetSpec, units: int) -> str:
    text = to_decimal(asset, units)
    return text.rstrip("0").rstrip(".") if "." in text else text


class _Sink:
    """Builds, applies and collects the entries of one cause."""

    __slots__ = ("ledger", "n", "out", "seq", "source", "ts")

    def __init__(self, ledger: Ledger, source: str, seq: int, ts: int, out: list[Entry]) -> None:
        self.ledger = ledger
        self.source = source
        self.seq = seq
        self.ts = ts
        self.n = 0
        self.out = out

    def __call__(
        self, kind: EntryKind, ref: str, postings: tuple[Posting, ...], detail: str = ""
    ) -> Entry:
        n = self.n
        e = Entry(
            id=entry_id(self.source, self.seq, n),
            kind=kind,
            source=self.source,
            seq=self.seq,
            n=n,
            ts=self.ts,
            ref=ref,
            postings=postings,
            detail=detail,
        )
        if self.ledger.apply(e):  # a replayed cause: the log holds it already
            self.out.append(e)
        self.n = n + 1
        return e


class Funds:
    """The funds rules over ``markets`` (every market risk routes; ``none`` ones pass through)
    and ``assets``; see the module docstring.

    Args:
        markets: the markets, :meth:`FundsMarket.build`.
        assets: the assets by code.
        ledger: an existing ledger (default: empty).
    """

    def __init__(
        self,
        markets: Iterable[FundsMarket],
        assets: Mapping[str, AssetSpec],
        ledger: Ledger | None = None,
    ) -> None:
        self.markets: dict[str, FundsMarket] = {m.spec.symbol: m for m in markets}
        self.assets: dict[str, AssetSpec] = dict(assets)
        self.ledger = ledger if ledger is not None else Ledger()
        self._orders: dict[tuple[str, int], OrderFunds] = {}
        self._rejections: dict[int, tuple[str, str, str]] = {}
        self._deposits: dict[str, tuple[str, str, int]] = {}
        self._cmd_seq = 0
        self._funds_seq = 0
        self._evt_seq: dict[str, int] = {}
        self._prices: dict[int, int] = {}  # cmd_seq -> the price a replayed hold was made at

    # ----------------------------------------------------------------- queries
    @property
    def funds_seq(self) -> int:
        """The ``FUNDS`` stream sequence of the last message applied (0: none)."""
        return self._funds_seq

    def replay(self, e: Entry) -> int:
        """Apply an entry of the ``LEDGER`` log at a restart (after :meth:`restore`); returns
        1 when applied, 0 when the ledger held it already.

        Besides the ledger it restores what later inputs are decided by: the commands and
        ``FUNDS`` messages seen (so their redeliveries repeat the logged decision), the
        logged refusals, the price of each held submit, the open deposits. The open orders
        come back from the book's events (:meth:`on_events` adopts an accepted order of a
        funded market that holds funds).

        Raises:
            LedgerError: the entry does not apply (a log that is not this ledger's).
        """
        if not self.ledger.apply(e):
            return 0
        if e.source == _CMD:
            self._cmd_seq = max(self._cmd_seq, e.seq)
            if e.kind is _K.REJECT:
                reason, _, message = e.detail.partition(": ")
                self._rejections[e.seq] = (e.ref.rpartition(":")[0], reason, message)
            elif e.kind is _K.HOLD and e.detail.startswith("price="):
                self._prices[e.seq] = int(e.detail[6:])
        elif e.source == _FUNDS:
            self._funds_seq = max(self._funds_seq, e.seq)
            if e.kind is _K.DEPOSIT:
                p = e.postings[1]
                self._deposits[e.ref] = (p.account, p.asset, p.available)
            elif e.kind is _K.DEPOSIT_REVERSED:
                self._deposits.pop(e.ref, None)
        return 1

    def order(self, symbol: str, order_id: int) -> OrderFunds | None:
        """The funds state of an open order of a funded market, or None."""
        return self._orders.get((symbol, order_id))

    def need(self, symbol: str, order_id: int) -> int:
        """Base units the open order needs held now (0 when unknown or ended)."""
        o = self._orders.get((symbol, order_id))
        return 0 if o is None else self._need(self.markets[symbol], o)

    def _need(self, m: FundsMarket, o: OrderFunds) -> int:
        if o.defunded or o.leaves <= 0:
            return 0
        s = m.settlement
        assert s != "none"
        best = needed(
            settlement=s,
            units=m.units,
            fee_bps=m.fee_bps,
            buy=o.buy,
            leaves=o.leaves,
            price=o.price,
        )
        for q, p in o.amends:
            leaves = o.leaves if q is None else q - o.filled
            price = p if p is not None and o.priced else o.price
            n = needed(
                settlement=s,
                units=m.units,
                fee_bps=m.fee_bps,
                buy=o.buy,
                leaves=leaves,
                price=price,
            )
            best = max(best, n)
        return best

    def _asset(self, m: FundsMarket, buy: bool) -> str:
        return m.spec.quote if buy else m.spec.base

    # ---------------------------------------------------------------- commands
    def _refuse(
        self,
        symbol: str,
        cmd_seq: int,
        cmd: SubmitOrder | AmendOrder,
        ref: str,
        reason: RejectReason,
        message: str,
    ) -> tuple[OrderRejected, list[Entry]]:
        self._rejections[cmd_seq] = (symbol, reason.value, message)
        out: list[Entry] = []
        _Sink(self.ledger, _CMD, cmd_seq, cmd.ts, out)(_K.REJECT, ref, (), f"{reason}: {message}")
        return reject(symbol, cmd, reason, message), out

    def _replayed(
        self, symbol: str, cmd_seq: int, cmd: SubmitOrder | AmendOrder
    ) -> SubmitOrder | AmendOrder | OrderRejected:
        r = self._rejections.get(cmd_seq)
        if r is not None:
            return reject(r[0], cmd, RejectReason(r[1]), r[2])
        if isinstance(cmd, SubmitOrder):
            o = self._orders.get((symbol, cmd_seq))
            if o is None:
                price = self._prices.get(cmd_seq, cmd.price)
            else:
                price = cmd.price if o.priced or not o.price else o.price
            return msgspec.structs.replace(cmd, order_id=cmd_seq, price=price)
        return cmd

    def _short(self, m: FundsMarket, user: str, buy: bool, amount: int) -> str | None:
        code = self._asset(m, buy)
        avail = self.ledger.balance(user, code).available
        if avail >= amount:
            return None
        asset = self.assets[code]
        return f"needs {_human(asset, amount)} {code}, {_human(asset, avail)} available"

    def submit(
        self, symbol: str, cmd_seq: int, cmd: SubmitOrder, last_price: int | None
    ) -> tuple[SubmitOrder | OrderRejected, list[Entry]]:
        """Hold what ``cmd`` (``CMD`` stream sequence ``cmd_seq``) needs, or refuse it.

        On a ``vault`` or ``p2p`` market the returned command has ``order_id = cmd_seq`` and,
        for a market, stop-market or take-profit-market buy on a ``vault`` market without a
        price, the protection price ``ref + ref * bps // 10000`` ticks, where ``ref`` is the
        trigger price (stops) or ``last_price`` (ticks) and ``bps`` the order's
        ``max_slippage_bps`` or else the market's ``market_protection_bps``. Entries: one
        ``hold`` (``ref = <SYM>:<cmd_seq>``), none when the order needs nothing, or one
        ``reject``. Rejections: ``duplicate_order_id`` (the command carries an order id:
        funded markets assign their own), ``no_reference_price`` (a market buy without a
        price before the market's first trade), ``insufficient_funds`` (message: ``needs
        <decimal> <ASSET>, <decimal> available``). A ``none`` market: ``cmd`` unchanged, no
        entry. A replay (``cmd_seq`` already seen) repeats the decision and creates nothing.
        """
        m = self.markets.get(symbol)
        if m is None or m.settlement == "none":
            return cmd, []
        if cmd_seq <= self._cmd_seq:
            return self._replayed(symbol, cmd_seq, cmd), []  # type: ignore[return-value]
        self._cmd_seq = cmd_seq
        ref = order_ref(symbol, cmd_seq)
        if cmd.order_id:
            return self._refuse(
                symbol,
                cmd_seq,
                cmd,
                ref,
                RejectReason.DUPLICATE_ORDER_ID,
                f"order ids of {symbol} are assigned by the engine (got {cmd.order_id})",
            )
        buy = cmd.side is Side.BUY
        priced = cmd.order_type in _PRICED
        price = cmd.price
        if buy and not priced and price is None and m.settlement == "vault":
            base = last_price if cmd.order_type is OrderType.MARKET else cmd.trigger_price
            if base is None or base <= 0:
                return self._refuse(
                    symbol,
                    cmd_seq,
                    cmd,
                    ref,
                    RejectReason.NO_REFERENCE_PRICE,
                    f"a market buy on {symbol} needs a price: the market has not traded yet",
                )
            bps = cmd.max_slippage_bps if cmd.max_slippage_bps > 0 else m.spec.market_protection_bps
            price = base + base * bps // _BPS
        o = OrderFunds(
            symbol, cmd_seq, cmd.user, buy, price or 0, cmd.quantity, 0, priced, False, False, []
        )
        amount = self._need(m, o)
        out: list[Entry] = []
        if amount > 0:
            short = self._short(m, cmd.user, buy, amount)
            if short is not None:
                return self._refuse(
                    symbol, cmd_seq, cmd, ref, RejectReason.INSUFFICIENT_FUNDS, short
                )
            code = self._asset(m, buy)
            _Sink(self.ledger, _CMD, cmd_seq, cmd.ts, out)(
                _K.HOLD,
                ref,
                (Posting(cmd.user, code, -amount, amount),),
                f"price={price}" if price is not None else "",
            )
        self._orders[(symbol, cmd_seq)] = o
        return msgspec.structs.replace(cmd, order_id=cmd_seq, price=price), out

    def amend(
        self, symbol: str, cmd_seq: int, cmd: AmendOrder
    ) -> tuple[AmendOrder | OrderRejected, list[Entry]]:
        """Hold the increase of what the amended order needs before it is forwarded.

        An amend by the owner of an open order of a funded market is remembered until the
        book answers it (``OrderAmended`` or ``OrderRejected``): until then the order keeps
        the larger of both holds. Entries: a ``hold`` of the difference, none, or a ``reject``
        (``insufficient_funds``). Amends of unknown orders or by another user pass unchanged
        (the book refuses them). A replay repeats the decision and creates nothing.
        """
        m = self.markets.get(symbol)
        if m is None or m.settlement == "none":
            return cmd, []
        if cmd_seq <= self._cmd_seq:
            return self._replayed(symbol, cmd_seq, cmd), []  # type: ignore[return-value]
        self._cmd_seq = cmd_seq
        o = self._orders.get((symbol, cmd.order_id))
        if o is None or o.user != cmd.user:
            return cmd, []
        ref = order_ref(symbol, o.order_id)
        o.amends.append((cmd.quantity, cmd.price))
        amount = self._need(m, o)
        hold = self.ledger.hold(ref)
        more = amount - (0 if hold is None else hold[2])
        out: list[Entry] = []
        if more > 0:
            short = self._short(m, o.user, o.buy, more)
            if short is not None:
                o.amends.pop()
                return self._refuse(
                    symbol, cmd_seq, cmd, ref, RejectReason.INSUFFICIENT_FUNDS, short
                )
            code = self._asset(m, o.buy)
            _Sink(self.ledger, _CMD, cmd_seq, cmd.ts, out)(
                _K.HOLD, ref, (Posting(o.user, code, -more, more),)
            )
        return cmd, out

    def abandon(self, symbol: str, cmd_seq: int, order_id: int, ts: int) -> list[Entry]:
        """Release the whole hold of a submit :meth:`submit` passed but the caller did not
        forward after all (e.g. a duplicate client order id); one ``release`` entry
        (``cmd``, ``cmd_seq``, n = 1) or none."""
        o = self._orders.pop((symbol, order_id), None)
        out: list[Entry] = []
        if o is None:
            return out
        ref = order_ref(symbol, order_id)
        hold = self.ledger.hold(ref)
        if hold is not None:
            sink = _Sink(self.ledger, _CMD, cmd_seq, ts, out)
            sink.n = 1
            sink(_K.RELEASE, ref, (Posting(hold[0], hold[1], hold[2], -hold[2]),))
        return out

    def prune(self, below_cmd_seq: int) -> None:
        """Forget the rejections of commands below ``below_cmd_seq`` (they can no longer be
        replayed: the caller has acknowledged them)."""
        for s in [s for s in self._rejections if s < below_cmd_seq]:
            del self._rejections[s]
        for s in [s for s in self._prices if s < below_cmd_seq]:
            del self._prices[s]

    # ------------------------------------------------------------------ events
    def on_events(self, symbol: str, events: Sequence[Event]) -> list[Entry]:
        """Settle the book events of ``symbol`` (in seq order; seqs already seen are skipped).

        Per event (source ``evt.<SYM>``, seq = the event's, n = index): a fill on a ``vault``
        market gives ``fill`` entries (the buyer's quote hold pays the notional to the
        seller, the seller's base hold pays the quantity to the buyer), ``fee`` entries
        (positive fees first: the buyer's from its quote hold, the seller's from its
        proceeds, to ``@fees``; then a rebate from ``@fees`` to the user's available) and
        ``release`` entries down to what each order still needs; on a ``p2p`` market a
        ``p2p_lock`` of the seller's base into ``@p2p:<trade_id>`` (trade id of
        :func:`~orrange.settlement.lifecycle.trade_id_for_fill`, in ``detail``). Cancels,
        expiries, amends, triggers and the book's rejections release down to what the order
        needs (everything when it ended).

        Raises:
            FundsError: a fill of an order the funds do not know on a funded market.
        """
        m = self.markets.get(symbol)
        if m is None or m.settlement == "none":
            return []
        last = self._evt_seq.get(symbol, 0)
        source = "evt." + symbol
        out: list[Entry] = []
        orders = self._orders
        for ev in events:
            seq = ev.seq
            if seq <= last:
                continue
            last = seq
            if isinstance(ev, OrderFilled):
                self._fill(m, ev, _Sink(self.ledger, source, seq, ev.ts, out))
                continue
            if isinstance(ev, OrderAccepted):
                o = orders.get((symbol, ev.order_id))
                if o is not None:
                    o.accepted = True
                elif self.ledger.hold(order_ref(symbol, ev.order_id)) is not None:
                    # held before a restart, accepted since: adopt it from the book's terms
                    orders[(symbol, ev.order_id)] = OrderFunds(
                        symbol,
                        ev.order_id,
                        ev.user,
                        ev.side is Side.BUY,
                        ev.price or 0,
                        ev.quantity,
                        0,
                        ev.order_type in _PRICED,
                        True,
                        False,
                        [],
                    )
                continue
            if isinstance(ev, OrderCanceled | OrderExpired):
                o = orders.get((symbol, ev.order_id))
                if o is None:
                    continue
                o.leaves = ev.leaves if isinstance(ev, OrderCanceled) else 0
            elif isinstance(ev, OrderAmended):
                o = orders.get((symbol, ev.order_id))
                if o is None:
                    continue
                if o.amends:
                    o.amends.pop(0)
                if o.priced and ev.price is not None:
                    o.price = ev.price
                o.leaves = ev.leaves
                o.filled = ev.quantity - ev.leaves
            elif isinstance(ev, OrderRejected):
                o = orders.get((symbol, ev.order_id))
                if o is None:
                    continue
                if ev.command == "submit" and not o.accepted:
                    o.leaves = 0
                elif ev.command == "amend" and ev.user == o.user and o.amends:
                    o.amends.pop(0)
                else:
                    continue
            elif isinstance(ev, OrderTriggered):
                o = orders.get((symbol, ev.order_id))
                if o is None:
                    continue
            else:
                continue
            self._settle(m, o, _Sink(self.ledger, source, seq, ev.ts, out))
        self._evt_seq[symbol] = last
        return out

    def _settle(self, m: FundsMarket, o: OrderFunds, sink: _Sink) -> None:
        ref = order_ref(o.symbol, o.order_id)
        hold = self.ledger.hold(ref)
        if hold is not None:
            extra = hold[2] - self._need(m, o)
            if extra > 0:
                sink(_K.RELEASE, ref, (Posting(hold[0], hold[1], extra, -extra),))
        if o.leaves <= 0:
            del self._orders[(o.symbol, o.order_id)]

    @staticmethod
    def _from_hold(o: OrderFunds, asset: str, amount: int) -> Posting:
        if o.defunded:  # its hold was taken back by a reorg: the exchange pays until canceled
            return Posting(LOSS, asset, -amount, 0)
        return Posting(o.user, asset, 0, -amount)

    def _fill(self, m: FundsMarket, ev: OrderFilled, sink: _Sink) -> None:
        sym = ev.symbol
        maker = self._orders.get((sym, ev.maker_order_id))
        taker = self._orders.get((sym, ev.taker_order_id))
        if maker is None or taker is None:
            missing = ev.maker_order_id if maker is None else ev.taker_order_id
            raise FundsError(f"fill {sym}:{ev.seq} of order {missing}, which holds nothing")
        if ev.aggressor is Side.BUY:
            buyer, seller = taker, maker
        else:
            buyer, seller = maker, taker
        qty = ev.quantity
        units = m.units
        spec = m.spec
        base_amount = qty * units.base_per_lot
        seller_ref = order_ref(sym, seller.order_id)
        if m.settlement == "vault":
            quote = spec.quote
            qpu = units.quote_per_unit
            quote_amount = ev.price * qty * qpu
            buyer_ref = order_ref(sym, buyer.order_id)
            sink(
                _K.FILL,
                buyer_ref,
                (
                    self._from_hold(buyer, quote, quote_amount),
                    Posting(seller.user, quote, quote_amount, 0),
                ),
            )
            sink(
                _K.FILL,
                seller_ref,
                (
                    self._from_hold(seller, spec.base, base_amount),
                    Posting(buyer.user, spec.base, base_amount, 0),
                ),
            )
            fees = ((taker, ev.taker_fee), (maker, ev.maker_fee))
            for o, fee in sorted(fees, key=lambda f: f[1] < 0):  # charges before rebates
                if fee == 0:
                    continue
                amount = abs(fee) * qpu
                ref = buyer_ref if o is buyer else seller_ref
                if fee < 0:
                    ps = (Posting(FEES, quote, -amount, 0), Posting(o.user, quote, amount, 0))
                elif o is buyer:
                    ps = (self._from_hold(o, quote, amount), Posting(FEES, quote, amount, 0))
                else:
                    ps = (Posting(o.user, quote, -amount, 0), Posting(FEES, quote, amount, 0))
                sink(_K.FEE, ref, ps)
        else:
            tid = trade_id_for_fill(sym, ev.seq)
            sink(
                _K.P2P_LOCK,
                seller_ref,
                (
                    self._from_hold(seller, spec.base, base_amount),
                    Posting(p2p_account(tid), spec.base, base_amount, 0),
                ),
                tid,
            )
        maker.leaves = ev.maker_leaves
        maker.filled += qty
        taker.leaves = ev.taker_leaves
        taker.filled += qty
        self._settle(m, maker, sink)
        self._settle(m, taker, sink)

    # -------------------------------------------------------------- chain in/out
    def _funds_input(self, seq: int) -> bool:
        if seq <= self._funds_seq:
            return False
        self._funds_seq = seq
        return True

    def _check(self, account: str, asset: str, amount: int) -> None:
        if asset not in self.assets:
            raise FundsError(f"unknown asset {asset!r}")
        if amount <= 0:
            raise FundsError(f"amount {amount} of {asset} is not positive")
        if not account or account.startswith("@"):
            raise FundsError(f"{account!r} is not a user account")

    def deposit(
        self, seq: int, account: str, asset: str, amount: int, event_id: str, ts: int
    ) -> list[Entry]:
        """A confirmed vault deposit (``FUNDS`` sequence ``seq``, chain event ``event_id``
        ``<block_hash>:<log_index>``, ``amount`` base units): one ``deposit`` entry
        ``@vault -> account``; a replay: none.

        Raises:
            FundsError: unknown asset, non-positive amount, a system account, or an event id
                already deposited.
        """
        if seq <= self._funds_seq:
            return []
        self._check(account, asset, amount)
        if event_id in self._deposits:
            raise FundsError(f"deposit {event_id} is already in the ledger")
        self._funds_seq = seq
        self._deposits[event_id] = (account, asset, amount)
        out: list[Entry] = []
        _Sink(self.ledger, _FUNDS, seq, ts, out)(
            _K.DEPOSIT,
            event_id,
            (Posting(VAULT, asset, -amount, 0), Posting(account, asset, amount, 0)),
        )
        return out

    def faucet(
        self, seq: int, account: str, asset: str, amount: int, ts: int, ref: str = ""
    ) -> list[Entry]:
        """A development credit ``@faucet -> account`` of ``amount`` base units (one
        ``faucet`` entry; a replay: none).

        Raises:
            FundsError: unknown asset, non-positive amount or a system account.
        """
        if seq <= self._funds_seq:
            return []
        self._check(account, asset, amount)
        self._funds_seq = seq
        out: list[Entry] = []
        _Sink(self.ledger, _FUNDS, seq, ts, out)(
            _K.FAUCET,
            ref,
            (Posting(FAUCET, asset, -amount, 0), Posting(account, asset, amount, 0)),
        )
        return out

    def deposit_reversed(self, seq: int, event_id: str, ts: int) -> tuple[list[Entry], list[str]]:
        """A reorg removed the confirmed deposit ``event_id``: take its amount back.

        ``deposit_reversed`` entries take it from the user's available first, then from the
        holds of the user's open orders in that asset, newest order first (each such order's
        whole hold leaves it: what is not taken returns to available, and the order is
        returned to be canceled; a fill before its cancel is paid by ``@loss``), and whatever
        is still missing (withdrawn, held for a withdrawal, or spent) from ``@loss``.

        Returns:
            The entries, and the refs (``<SYM>:<order_id>``) of the orders to cancel.

        Raises:
            FundsError: ``event_id`` is not a deposit of the ledger.
        """
        if seq <= self._funds_seq:
            return [], []
        dep = self._deposits.get(event_id)
        if dep is None:
            raise FundsError(f"deposit {event_id} is not in the ledger")
        self._funds_seq = seq
        del self._deposits[event_id]
        account, asset, rest = dep
        out: list[Entry] = []
        refs: list[str] = []
        sink = _Sink(self.ledger, _FUNDS, seq, ts, out)
        take = min(rest, self.ledger.balance(account, asset).available)
        if take > 0:
            sink(
                _K.DEPOSIT_REVERSED,
                event_id,
                (Posting(account, asset, -take, 0), Posting(VAULT, asset, take, 0)),
            )
            rest -= take
        mine = sorted(
            (o for o in self._orders.values() if o.user == account and not o.defunded),
            key=lambda o: -o.order_id,
        )
        for o in mine:
            if rest <= 0:
                break
            ref = order_ref(o.symbol, o.order_id)
            hold = self.ledger.hold(ref)
            if hold is None or hold[1] != asset:
                continue
            h = hold[2]
            t = min(h, rest)
            sink(
                _K.DEPOSIT_REVERSED,
                ref,
                (Posting(account, asset, h - t, -h), Posting(VAULT, asset, t, 0)),
            )
            o.defunded = True
            refs.append(ref)
            rest -= t
        if rest > 0:
            sink(
                _K.DEPOSIT_REVERSED,
                event_id,
                (Posting(LOSS, asset, -rest, 0), Posting(VAULT, asset, rest, 0)),
            )
        return out, refs

    def withdrawal_requested(
        self, seq: int, account: str, asset: str, amount: int, withdrawal_id: str, ts: int
    ) -> Entry | str | None:
        """Hold ``amount`` base units of ``account`` for withdrawal ``withdrawal_id``
        (available -> held, ``ref = withdrawal_id``; the engine then signs the authorization).

        Returns:
            The ``withdrawal_requested`` entry; or why it was refused (``"insufficient_funds:
            needs <decimal> <ASSET>, <decimal> available"``, ``"unknown_asset: ..."``,
            ``"invalid_amount: ..."``, ``"duplicate_withdrawal: ..."``); or None for a replay.
        """
        if not self._funds_input(seq):
            return None
        a = self.assets.get(asset)
        if a is None:
            return f"unknown_asset: {asset!r} is not a vault asset"
        if amount <= 0:
            return f"invalid_amount: {amount} is not positive"
        if self.ledger.hold(withdrawal_id) is not None:
            return f"duplicate_withdrawal: {withdrawal_id} is pending"
        avail = self.ledger.balance(account, asset).available
        if avail < amount:
            return (
                f"insufficient_funds: needs {_human(a, amount)} {asset}, "
                f"{_human(a, avail)} available"
            )
        out: list[Entry] = []
        return _Sink(self.ledger, _FUNDS, seq, ts, out)(
            _K.WITHDRAWAL_REQUESTED, withdrawal_id, (Posting(account, asset, -amount, amount),)
        )

    def _withdrawal(self, seq: int, withdrawal_id: str, ts: int, confirmed: bool) -> list[Entry]:
        if seq <= self._funds_seq:
            return []
        hold = self.ledger.hold(withdrawal_id)
        if hold is None:
            raise FundsError(f"withdrawal {withdrawal_id} is not pending")
        self._funds_seq = seq
        account, asset, amount = hold
        out: list[Entry] = []
        sink = _Sink(self.ledger, _FUNDS, seq, ts, out)
        if confirmed:
            ps = (Posting(account, asset, 0, -amount), Posting(VAULT, asset, amount, 0))
            sink(_K.WITHDRAWAL_CONFIRMED, withdrawal_id, ps)
        else:
            sink(_K.WITHDRAWAL_RETURNED, withdrawal_id, (Posting(account, asset, amount, -amount),))
        return out

    def withdrawal_confirmed(self, seq: int, withdrawal_id: str, ts: int) -> list[Entry]:
        """The vault paid withdrawal ``withdrawal_id``: its hold goes to ``@vault`` (one
        ``withdrawal_confirmed`` entry; a replay: none).

        Raises:
            FundsError: no such pending withdrawal.
        """
        return self._withdrawal(seq, withdrawal_id, ts, True)

    def withdrawal_returned(self, seq: int, withdrawal_id: str, ts: int) -> list[Entry]:
        """The authorization of ``withdrawal_id`` expired unused: held -> available (one
        ``withdrawal_returned`` entry; a replay: none).

        Raises:
            FundsError: no such pending withdrawal.
        """
        return self._withdrawal(seq, withdrawal_id, ts, False)

    # --------------------------------------------------------------- snapshots
    def snapshot(self) -> bytes:
        """The ledger, every open order's funds state, the remembered rejections, deposits
        and input cursors as msgpack bytes (sorted: equal states give equal bytes)."""
        st = _FundsState(
            self.ledger.state(),
            [self._orders[k] for k in sorted(self._orders)],
            sorted((s, *r) for s, r in self._rejections.items()),
            sorted((e, *d) for e, d in self._deposits.items()),
            self._cmd_seq,
            self._funds_seq,
            sorted(self._evt_seq.items()),
        )
        return msgspec.msgpack.encode(st)

    @classmethod
    def restore(
        cls, markets: Iterable[FundsMarket], assets: Mapping[str, AssetSpec], data: bytes
    ) -> Funds:
        """Funds from :meth:`snapshot` bytes.

        Raises:
            msgspec.DecodeError: the bytes are not a funds snapshot.
        """
        st = msgspec.msgpack.decode(data, type=_FundsState)
        f = cls(markets, assets, Ledger.from_state(st.ledger))
        f._orders = {(o.symbol, o.order_id): o for o in st.orders}
        f._rejections = {s: (sym, r, msg) for s, sym, r, msg in st.rejections}
        f._deposits = {e: (acc, asset, amt) for e, acc, asset, amt in st.deposits}
        f._cmd_seq = st.cmd_seq
        f._funds_seq = st.funds_seq
        f._evt_seq = dict(st.evt_seq)
        return f
