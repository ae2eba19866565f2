"""Risk with funds on a real nats-server, with the real matcher (docs/funds.md): deposits from
``FUNDS``, holds at order entry, ``insufficient_funds``, fills settled from the holds with
fees, cancels released, withdrawals held and signed, and the ledger rebuilt from ``LEDGER``
(with and without a snapshot) after a restart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import nats
from kit.wait import wait_for
from nats.aio.client import Client as NATS

from orrange.engine.matcher import Matcher
from orrange.engine.risk import FundsOptions, RiskActor
from orrange.evm.vault import Withdrawal, recover_withdrawal_signer
from orrange.infra.run import DEV_VAULT_ADDRESS, DEV_VAULT_SIGNER_ADDRESS, DEV_VAULT_SIGNER_KEY
from orrange.ledger import FEES, AssetSpec, Entry, EntryKind, Funds
from orrange.markets import MarketSpec
from orrange.matching.commands import CancelOrder, Command, SubmitOrder
from orrange.matching.enums import RejectReason, Side
from orrange.matching.events import OrderRejected
from orrange.runtime import ActorConfig, Publisher
from orrange.wire.engine import cmd_subject, submit_msg_id
from orrange.wire.funds import (
    FUNDS_CHAIN_SUBJECT,
    FUNDS_CMD_SUBJECT,
    LEDGER,
    LEDGER_WITHDRAWAL_SUBJECT,
    DepositConfirmed,
    WithdrawalDecision,
    WithdrawalExpired,
    WithdrawalRequest,
    chain_funds_msg_id,
    withdrawal_msg_id,
)

SYM = "T-USD"
# 1 lot = 1 T = 10**6 base units; 1 quote unit (0.01 USD * 1 lot) = 10**4 USD base units
SPEC = MarketSpec(
    symbol=SYM,
    base="T",
    quote="USD",
    tick_size="0.01",
    lot_size="1",
    min_qty="1",
    max_qty="1000",
    maker_fee_bps=-2,
    taker_fee_bps=10,
    settlement="vault",
)
ASSETS = {
    "T": AssetSpec(code="T", decimals=6, token="native"),
    "USD": AssetSpec(code="USD", decimals=6, token="0x" + "11" * 20),
}
USD = 10**6  # base units of 1 USD (and of 1 T)
T0 = 1_700_000_000_000


def options(**kw: int) -> FundsOptions:
    return FundsOptions(
        assets=ASSETS,
        vault_address=DEV_VAULT_ADDRESS,
        chain_id=31337,
        signer_key=DEV_VAULT_SIGNER_KEY,
        **kw,
    )


@asynccontextmanager
async def engine(url: str, **kw: int) -> AsyncIterator[RiskActor]:
    cfg = ActorConfig(name="risk", nats_url=url, metrics_port=None, fetch_timeout_ms=100)
    risk = RiskActor(cfg, {SYM: SPEC}, funds=options(**kw))
    mcfg = ActorConfig(name="matcher", nats_url=url, metrics_port=None, fetch_timeout_ms=100)
    matcher = Matcher(mcfg, {SYM: SPEC}, [SYM])
    await risk.start()
    await matcher.start()
    try:
        yield risk
    finally:
        await matcher.stop()
        await risk.stop()


def funds_of(risk: RiskActor) -> Funds:
    assert risk.funds is not None
    return risk.funds


async def deposit(nc: NATS, n: int, account: str, asset: str, amount: int) -> None:
    event_id = f"0x{n:064x}:0"
    msg = DepositConfirmed(
        event_id=event_id,
        account=account,
        asset=asset,
        amount=amount,
        sender="0x" + "22" * 20,
        tx_hash=f"0x{n:064x}",
        block_number=n,
        ts=T0,
    )
    await Publisher(nc).publish(
        FUNDS_CHAIN_SUBJECT, msg, msg_id=chain_funds_msg_id("deposit", event_id)
    )


async def order(nc: NATS, cid: str, user: str, side: Side, qty: int, price: int) -> None:
    cmd = SubmitOrder(ts=T0, user=user, side=side, quantity=qty, price=price, client_order_id=cid)
    await Publisher(nc).publish(cmd_subject(SYM), cmd, msg_id=submit_msg_id(user, cid))


async def command(nc: NATS, cmd: Command, msg_id: str) -> None:
    await Publisher(nc).publish(cmd_subject(SYM), cmd, msg_id=msg_id)


_entries = msgspec.json.Decoder(list[Entry])


async def ledger_log(nc: NATS) -> tuple[list[Entry], list[WithdrawalDecision]]:
    js = nc.jetstream()
    info = await js.stream_info(LEDGER.name)
    entries: list[Entry] = []
    decisions: list[WithdrawalDecision] = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        m = await js.get_msg(LEDGER.name, seq)
        if m.subject == LEDGER_WITHDRAWAL_SUBJECT:
            decisions.append(msgspec.json.decode(m.data or b"", type=WithdrawalDecision))
        else:
            entries.extend(_entries.decode(m.data or b""))
    return entries, decisions


async def rejections(nc: NATS) -> list[OrderRejected]:
    js = nc.jetstream()
    info = await js.stream_info("REJECTS")
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages:
            m = await js.get_msg("REJECTS", seq)
            out.append(msgspec.json.decode(m.data or b"", type=OrderRejected))
    return out


def bal(risk: RiskActor, user: str, asset: str) -> tuple[int, int]:
    b = funds_of(risk).ledger.balance(user, asset)
    return (b.available, b.held)


async def test_holds_fills_fees_cancels_and_restart(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        async with engine(nats_url) as risk:
            await deposit(nc, 1, "alice", "USD", 1000 * USD)
            await deposit(nc, 2, "bob", "T", 100 * USD)
            await wait_for(lambda: bal(risk, "bob", "T") == (100 * USD, 0), "deposits credited")
            assert bal(risk, "alice", "USD") == (1000 * USD, 0)

            # 10 T at 100.00 need 1000 USD + the 0.10 % fee reserve and 9 quote units for the
            # per-fill fee rounding (orrange.ledger.holds): more than alice has
            await order(nc, "big", "alice", Side.BUY, 10, 10_000)

            async def refused() -> bool:
                return any(r.client_order_id == "big" for r in await rejections(nc))

            await wait_for(refused, "the uncovered order refused")
            rej = next(r for r in await rejections(nc) if r.client_order_id == "big")
            assert rej.reason is RejectReason.INSUFFICIENT_FUNDS
            assert rej.message == "needs 1001.09 USD, 1000 available"

            # 5 T at 100.00: 500 USD + 0.5 USD fee reserve + 4 quote units held
            await order(nc, "b1", "alice", Side.BUY, 5, 10_000)
            await wait_for(lambda: bal(risk, "alice", "USD")[1] > 0, "alice's hold")
            assert bal(risk, "alice", "USD") == (499_460_000, 500_540_000)

            # bob sells 3 into it: alice is the maker (rebate 0.02 %), bob the taker (0.10 %)
            await order(nc, "s1", "bob", Side.SELL, 3, 10_000)
            await wait_for(lambda: bal(risk, "alice", "T") == (3 * USD, 0), "the fill settled")
            notional = 300 * USD
            assert bal(risk, "bob", "T") == (97 * USD, 0)
            assert bal(risk, "bob", "USD") == (notional - notional * 10 // 10_000, 0)
            # alice paid 300 from her hold, got a 0.06 USD rebate; the hold of the 2 T left
            # is what they need: 200 USD + 0.2 USD fee reserve + 1 quote unit
            assert bal(risk, "alice", "USD") == (
                1000 * USD - 300 * USD + notional * 2 // 10_000 - 200_210_000,
                200_210_000,
            )
            assert bal(risk, FEES, "USD") == (notional * 10 // 10_000 - notional * 2 // 10_000, 0)

            # cancel the rest: everything held comes back
            accepted_id = funds_of(risk).ledger.holds()
            (ref,) = [r for r, (acc, _, _) in accepted_id.items() if acc == "alice"]
            order_id = int(ref.rpartition(":")[2])
            await command(nc, CancelOrder(ts=T0, user="alice", order_id=order_id), "alice:c1")
            await wait_for(lambda: bal(risk, "alice", "USD")[1] == 0, "the cancel released")
            for asset in ASSETS:
                assert funds_of(risk).ledger.audit(asset).ok
            before = {(u, a): bal(risk, u, a) for u in ("alice", "bob", FEES) for a in ASSETS}
            entries, _ = await ledger_log(nc)
            kinds = {e.kind for e in entries}
            assert {EntryKind.DEPOSIT, EntryKind.HOLD, EntryKind.REJECT, EntryKind.FILL} <= kinds
            assert {EntryKind.FEE, EntryKind.RELEASE} <= kinds
            assert len({e.id for e in entries}) == len(entries)

        # a new risk process rebuilds the same ledger from LEDGER alone
        async with engine(nats_url, snapshot_every=1) as risk:
            after = {(u, a): bal(risk, u, a) for u in ("alice", "bob", FEES) for a in ASSETS}
            assert after == before
            await deposit(nc, 3, "carol", "USD", 5 * USD)  # stored, and snapshotted
            await wait_for(lambda: bal(risk, "carol", "USD") == (5 * USD, 0), "carol credited")
        # ... and from the snapshot plus what follows it
        async with engine(nats_url) as risk:
            assert bal(risk, "carol", "USD") == (5 * USD, 0)
            assert {
                (u, a): bal(risk, u, a) for u in ("alice", "bob", FEES) for a in ASSETS
            } == before
            entries, _ = await ledger_log(nc)
            assert len({e.id for e in entries}) == len(entries)  # nothing logged twice
    finally:
        await nc.close()


async def test_withdrawals_are_held_signed_and_returned(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    wid = "0x" + "ab" * 32
    to = "0x" + "33" * 20
    try:
        async with engine(nats_url) as risk:
            await deposit(nc, 1, "bob", "USD", 500 * USD)
            await wait_for(lambda: bal(risk, "bob", "USD") == (500 * USD, 0), "deposit")
            pub = Publisher(nc)
            req = WithdrawalRequest(
                withdrawal_id=wid,
                user="bob",
                asset="USD",
                amount=400 * USD,
                to=to,
                expiry=1_900_000_000,
                ts=T0,
            )
            await pub.publish(FUNDS_CMD_SUBJECT, req, msg_id=withdrawal_msg_id(wid))
            too_much = msgspec.structs.replace(
                req, withdrawal_id="0x" + "cd" * 32, amount=200 * USD
            )
            await pub.publish(
                FUNDS_CMD_SUBJECT, too_much, msg_id=withdrawal_msg_id(too_much.withdrawal_id)
            )

            async def decided() -> bool:
                return len((await ledger_log(nc))[1]) == 2

            await wait_for(decided, "both withdrawals decided")
            ok, refused = (await ledger_log(nc))[1]
            assert ok.status == "authorized" and ok.withdrawal_id == wid
            assert (refused.status, refused.reason) == ("rejected", "insufficient_funds")
            assert refused.message == "needs 200 USD, 100 available"
            assert bal(risk, "bob", "USD") == (100 * USD, 400 * USD)
            terms = Withdrawal(
                account="bob",
                token=ASSETS["USD"].token,
                amount=400 * USD,
                to=to,
                withdrawal_id=bytes.fromhex(wid[2:]),
                expiry=1_900_000_000,
            )
            signer = recover_withdrawal_signer(
                bytes.fromhex(ok.signature[2:]), 31337, DEV_VAULT_ADDRESS, terms
            )
            assert signer == DEV_VAULT_SIGNER_ADDRESS

            expired = WithdrawalExpired(withdrawal_id=wid, event_id="", block_number=9, ts=T0)
            await pub.publish(
                FUNDS_CHAIN_SUBJECT, expired, msg_id=chain_funds_msg_id("expired", wid)
            )
            await wait_for(lambda: bal(risk, "bob", "USD") == (500 * USD, 0), "returned")
            assert funds_of(risk).ledger.audit("USD").ok
    finally:
        await nc.close()
