"""Hypothesis strategies for random command streams of one book.

A stream is drawn as abstract *ops* and then made concrete by :func:`build_commands`, which
runs a scratch :class:`OrderBook` alongside so cancels and amends name orders that are live at
that point (and sometimes ones that are not). Replaying the returned commands on a fresh book
reproduces the scratch run exactly (the book is deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from orrange.markets import MarketSpec
from orrange.matching import (
    AdvanceTime,
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    Halt,
    OrderBook,
    OrderType,
    Resume,
    SelfTradePrevention,
    SetReferencePrice,
    Side,
    SubmitOrder,
    TimeInForce,
    TriggerSource,
)

USERS = ("u0", "u1", "u2", "u3")
LO, HI = 95, 105
PRICES = st.integers(LO, HI)
QTYS = st.integers(1, 8)
METHOD_SETS = st.sampled_from([(), (), (), ("bank",), ("cash",), ("bank", "mpesa"), ("mpesa",)])

ORDER_TYPES = [OrderType.LIMIT] * 6 + [
    OrderType.MARKET,
    OrderType.MARKET,
    OrderType.STOP_MARKET,
    OrderType.STOP_LIMIT,
    OrderType.TAKE_PROFIT_MARKET,
    OrderType.TAKE_PROFIT_LIMIT,
]
TIFS = [TimeInForce.GTC] * 3 + [TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY]


@dataclass(frozen=True)
class Op:
    kind: str
    dt: int
    args: dict[str, Any]


@st.composite
def submit_op(draw: st.DrawFn, *, full: bool) -> Op:
    if full:
        ot = draw(st.sampled_from(ORDER_TYPES))
        tif = draw(st.sampled_from(TIFS))
        stp = draw(st.sampled_from(list(SelfTradePrevention)))
        p2p = draw(st.booleans())
    else:
        ot = draw(st.sampled_from([OrderType.LIMIT] * 4 + [OrderType.MARKET]))
        tif = draw(st.sampled_from([TimeInForce.GTC] * 3 + [TimeInForce.IOC, TimeInForce.FOK]))
        stp = SelfTradePrevention.NONE
        p2p = False
    args: dict[str, Any] = {
        "user": draw(st.sampled_from(USERS)),
        "side": draw(st.sampled_from([Side.BUY, Side.SELL])),
        "quantity": draw(QTYS),
        "order_type": ot,
        "tif": tif,
        "stp": stp,
    }
    # a limit type's limit price; a market type's protection price a third of the time
    limit = ot in (OrderType.LIMIT, OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT_LIMIT)
    if limit or draw(st.integers(0, 2)) == 0:
        args["price"] = draw(PRICES)
    if ot not in (OrderType.LIMIT, OrderType.MARKET):
        args["trigger_price"] = draw(PRICES)
        args["trigger_source"] = draw(st.sampled_from(list(TriggerSource)))
    if tif is TimeInForce.DAY:
        args["expire_in"] = draw(st.integers(1, 30))
    if full:
        args["post_only"] = ot is OrderType.LIMIT and draw(st.integers(0, 5)) == 0
        if ot is OrderType.MARKET:
            args["max_slippage_bps"] = draw(st.sampled_from([0, 100, 300]))
    if p2p:
        args["payment_methods"] = draw(METHOD_SETS)
        args["min_reputation"] = draw(st.sampled_from([0, 0, 50, 120]))
        args["reputation"] = draw(st.sampled_from([0, 40, 60, 150, 250]))
    return Op("submit", draw(st.integers(0, 3)), args)


@st.composite
def other_op(draw: st.DrawFn, *, full: bool) -> Op:
    kinds = ["cancel", "cancel", "amend", "amend"]
    if full:
        kinds += ["cancel_all", "reference", "reference", "advance", "halt"]
    kind = draw(st.sampled_from(kinds))
    args: dict[str, Any] = {"pick": draw(st.integers(0, 10**6))}
    if kind == "amend":
        if full:
            args["quantity"] = draw(st.none() | st.integers(1, 10))
            args["price"] = draw(st.none() | PRICES)
        args["frac"] = draw(st.floats(0, 1))
    elif kind == "cancel_all":
        args["user"] = draw(st.sampled_from(USERS))
    elif kind == "reference":
        args["price"] = draw(st.integers(LO - 2, HI + 2))
    return Op(
        kind, draw(st.integers(0, 10)) if kind == "advance" else draw(st.integers(0, 3)), args
    )


def ops_strategy(
    *, full: bool, min_size: int = 20, max_size: int = 60
) -> st.SearchStrategy[list[Op]]:
    one = st.one_of(submit_op(full=full), submit_op(full=full), other_op(full=full))
    return st.lists(one, min_size=min_size, max_size=max_size)


def build_commands(ops: list[Op], spec: MarketSpec, *, full: bool = True) -> list[Command]:
    """Turn ops into concrete commands, resolving order references against a scratch book."""
    book = OrderBook(spec)
    ts = 1_000
    cmds: list[Command] = []
    halted = False
    for op in ops:
        ts += op.dt
        a = op.args
        cmd: Command
        if op.kind == "submit":
            kw = {k: v for k, v in a.items() if k != "expire_in"}
            if "expire_in" in a:
                kw["expire_at"] = ts + a["expire_in"]
            cmd = SubmitOrder(ts=ts, **kw)
        elif op.kind in ("cancel", "amend"):
            live = book.open_orders()
            if not live:
                cmd = CancelOrder(ts=ts, user="u0", order_id=a["pick"] % 7 + 1)
            else:
                v = live[a["pick"] % len(live)]
                if op.kind == "cancel":
                    cmd = CancelOrder(ts=ts, user=v.user, order_id=v.order_id)
                elif full:
                    q, p = a["quantity"], a["price"]
                    if q is None and p is None:
                        q = v.filled + 1 + int(a["frac"] * v.leaves)
                    cmd = AmendOrder(ts=ts, user=v.user, order_id=v.order_id, quantity=q, price=p)
                elif v.leaves >= 2:  # reference subset: strictly down, above what filled
                    q = v.filled + 1 + int(a["frac"] * (v.leaves - 1) * 0.999)
                    cmd = AmendOrder(ts=ts, user=v.user, order_id=v.order_id, quantity=q)
                else:
                    cmd = CancelOrder(ts=ts, user=v.user, order_id=v.order_id)
        elif op.kind == "cancel_all":
            cmd = CancelAll(ts=ts, user=a["user"])
        elif op.kind == "reference":
            cmd = SetReferencePrice(ts=ts, price=a["price"])
        elif op.kind == "advance":
            cmd = AdvanceTime(ts=ts)
        else:  # a halt that lasts for exactly the next command
            cmd = Halt(ts=ts)
        cmds.append(cmd)
        book.process(cmd)
        if halted:
            cmds.append(Resume(ts=ts))
            book.process(cmds[-1])
        halted = isinstance(cmd, Halt)
    return cmds
