"""P2P trade routes: settlement state, on-chain steps as unsigned transactions, trade chat.

============================================= ===============================================
``GET  /api/v1/trades``                        my trades, newest first (``limit``, ``cursor``)
``GET  /api/v1/trades/{id}``                   state, deadlines, escrow, amounts, tx hashes
``POST /api/v1/trades/{id}/fund``              seller: fund the escrow (``buyer_address``,
                                               ``amount`` in base units, optional ``token``)
``POST /api/v1/trades/{id}/paid``              buyer: mark the fiat payment made
``POST /api/v1/trades/{id}/release``           seller: release to the buyer
``POST /api/v1/trades/{id}/dispute``           either party, after the paid mark
``POST /api/v1/trades/{id}/reclaim``           seller, after the payment deadline, never paid
``POST /api/v1/trades/{id}/resolve``           mediator (JWT ``role=mediator``): ``buyer_bps``
``GET  /api/v1/trades/{id}/messages``          the chat (parties; mediators as evidence)
``POST /api/v1/trades/{id}/messages``          say something (parties; mediators once disputed)
============================================= ===============================================

The engine is non-custodial: an on-chain step answers the **unsigned** EIP-1559 transaction
(``from`` = the body's wallet address) for the user's wallet to sign and send; the escrow
watcher sees its event and moves the trade on. In development (``ORRANGE_ENV=dev``, a local
chain) ``?sign=dev`` sends it from the node's unlocked development account instead and
answers its hash too, so the whole flow works with curl; without a ``from`` the account is
``accounts[1 + sha256(user) % (n - 1)]``. The chain is ``ORRANGE_CHAIN_URL``, the escrow
``ORRANGE_ESCROW_ADDRESS``; without them on-chain steps answer 503.

Chat messages are stored, then pushed to the parties' WebSocket ``orders`` channel as
``{"type": "trade_message", ...}`` through core NATS ``private.<user>`` (every API process
delivers to its own clients).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from web3 import Web3

from orrange.api.auth import Principal
from orrange.api.context import ApiContext, now_ms
from orrange.api.deps import context
from orrange.api.errors import ApiError
from orrange.api.fanout import PRIVATE_PREFIX
from orrange.evm.chain import (
    ChainError,
    Escrow,
    TransactionRejected,
    UnsignedTx,
    connect,
    send_dev,
)
from orrange.settlement.events import ZERO_ADDRESS
from orrange.settlement.lifecycle import P2PTrade
from orrange.store import settlement as db

__all__ = [
    "TRADE_HANDLERS",
    "MessageIn",
    "MessageOut",
    "P2PTradeOut",
    "P2PTradePage",
    "ResolveIn",
    "TxOut",
    "WalletIn",
]

_MAX_MESSAGE = 2000


class WalletIn(msgspec.Struct, frozen=True, kw_only=True, rename={"sender": "from"}):
    """The caller's wallet address (``from``); optional with ``?sign=dev``."""

    sender: str | None = None


class FundIn(msgspec.Struct, frozen=True, kw_only=True, rename={"sender": "from"}):
    """Funding: the buyer's wallet ``buyer_address``, ``amount`` in the asset's base units
    (wei for ETH) as an integer string, ``token`` (ERC-20 address; absent or the zero
    address for ETH) and the seller's wallet ``from``."""

    buyer_address: str
    amount: str
    token: str = ZERO_ADDRESS
    sender: str | None = None


class ResolveIn(msgspec.Struct, frozen=True, kw_only=True, rename={"sender": "from"}):
    """The mediator's ruling: ``buyer_bps`` of the amount to the buyer (10000 release,
    0 refund, else split), from the mediator's wallet ``from``."""

    buyer_bps: int
    sender: str | None = None


class MessageIn(msgspec.Struct, frozen=True, kw_only=True):
    """A chat message: ``text``, 1-2000 characters."""

    text: str


class MessageOut(msgspec.Struct, frozen=True, kw_only=True):
    """A stored chat message (``ts`` ms UTC; ``role`` buyer, seller or mediator)."""

    id: int
    trade_id: str
    sender: str
    role: str
    text: str
    ts: int


class TxOut(msgspec.Struct, frozen=True, kw_only=True):
    """An on-chain step: the unsigned ``transaction`` for the wallet, and ``tx_hash`` when
    the API sent it itself (``?sign=dev``)."""

    trade_id: str
    action: str
    transaction: UnsignedTx
    tx_hash: str | None = None


class P2PTradeOut(msgspec.Struct, frozen=True, kw_only=True):
    """One P2P trade (a settlement deal). Decimal strings: ``price``/``quantity``/``notional``
    in the market's units; ``amount``/``to_buyer``/``to_seller``/``fee`` in the escrowed asset's
    base units. Times ms UTC. ``role`` is the caller's (buyer, seller or mediator)."""

    trade_id: str
    symbol: str
    state: str
    role: str
    buyer: str
    seller: str
    price: str
    quantity: str
    notional: str
    payment_method: str
    created_at: int
    funding_deadline: int
    payment_deadline: int | None
    funded_at: int | None
    paid_at: int | None
    disputed_at: int | None
    closed_at: int | None
    escrow_address: str | None
    seller_address: str | None
    buyer_address: str | None
    token: str | None
    amount: str | None
    fee_bps: int | None
    resolution: str | None
    buyer_bps: int | None
    to_buyer: str | None
    to_seller: str | None
    fee: str | None
    tx_hashes: dict[str, str]


class P2PTradePage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of my trades and the ``next_cursor`` (None on the last page)."""

    trades: list[P2PTradeOut]
    next_cursor: str | None


def _s(v: int | None) -> str | None:
    return None if v is None else str(v)


def _role(t: P2PTrade, p: Principal) -> str | None:
    if p.user == t.buyer:
        return "buyer"
    if p.user == t.seller:
        return "seller"
    return "mediator" if p.role == "mediator" else None


def _p2p_trade_out(ctx: ApiContext, row: db.TradeRow, role: str) -> P2PTradeOut:
    t = row.trade
    spec = ctx.markets.get(t.symbol)
    price = spec.ticks_to_price(t.price) if spec else str(t.price)
    qty = spec.lots_to_qty(t.quantity) if spec else str(t.quantity)
    notional = spec.units_to_quote(t.notional) if spec else str(t.notional)
    return P2PTradeOut(
        trade_id=t.trade_id,
        symbol=t.symbol,
        state=str(t.state),
        role=role,
        buyer=t.buyer,
        seller=t.seller,
        price=price,
        quantity=qty,
        notional=notional,
        payment_method=t.payment_method,
        created_at=t.created_ms,
        funding_deadline=t.funding_deadline_ms,
        payment_deadline=t.payment_deadline_ms,
        funded_at=t.funded_ms,
        paid_at=t.paid_ms,
        disputed_at=t.disputed_ms,
        closed_at=t.closed_ms,
        escrow_address=row.escrow_address,
        seller_address=t.seller_address,
        buyer_address=t.buyer_address,
        token=t.token,
        amount=_s(t.amount),
        fee_bps=t.fee_bps,
        resolution=t.resolution,
        buyer_bps=t.buyer_bps,
        to_buyer=_s(t.to_buyer),
        to_seller=_s(t.to_seller),
        fee=_s(t.fee),
        tx_hashes=dict(t.tx_hashes),
    )


async def _load(ctx: ApiContext, trade_id: str, p: Principal) -> tuple[db.TradeRow, str]:
    """The trade and the caller's role; 404 when unknown or not the caller's."""
    row = await db.get_trade(ctx.pool, trade_id)
    role = None if row is None else _role(row.trade, p)
    if row is None or role is None:
        raise ApiError(404, "trade_id", "unknown_trade", f"no trade {trade_id!r} of yours")
    return row, role


# ----------------------------------------------------------------------------- reads


@get("/trades", summary="My trades")
async def list_my_trades(
    request: Request[Any, Any, Any],
    principal: NamedDependency[Principal],
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    cursor: FromQuery[str | None] = None,
) -> P2PTradePage:
    """My trades as buyer or seller, newest first; ``cursor`` is the previous page's
    ``next_cursor`` (400 when malformed)."""
    ctx = context(request)
    before: tuple[int, str] | None = None
    if cursor:
        ms, _, tid = cursor.partition(":")
        if not ms.isdigit() or not tid:
            raise ApiError(400, "cursor", "invalid_cursor", "cursor is <created_ms>:<trade_id>")
        before = (int(ms), tid)
    rows = await db.list_trades(ctx.pool, principal.user, limit=limit, before=before)
    out = [_p2p_trade_out(ctx, r, _role(r.trade, principal) or "buyer") for r in rows]
    last = rows[-1].trade if len(rows) == limit else None
    return P2PTradePage(
        trades=out, next_cursor=None if last is None else f"{last.created_ms}:{last.trade_id}"
    )


@get("/trades/{trade_id:str}", summary="One trade")
async def get_trade(
    request: Request[Any, Any, Any], trade_id: FromPath[str], principal: NamedDependency[Principal]
) -> P2PTradeOut:
    """A trade of mine (mediators: any trade) with its state, deadlines, escrow and
    transaction hashes; 404 otherwise."""
    ctx = context(request)
    row, role = await _load(ctx, trade_id, principal)
    return _p2p_trade_out(ctx, row, role)


# ----------------------------------------------------------------------------- chain steps


class _Chain:
    """The escrow reached from this API process (``ORRANGE_CHAIN_URL``/``_ESCROW_ADDRESS``)."""

    def __init__(self, url: str, address: str) -> None:
        self.escrow = Escrow(connect(url), address)


def _chain(request: Request[Any, Any, Any]) -> _Chain:
    state = request.app.state
    chain: _Chain | None = state.get("trades_chain")
    if chain is None:
        url = os.environ.get("ORRANGE_CHAIN_URL")
        address = os.environ.get("ORRANGE_ESCROW_ADDRESS")
        if not url or not address:
            raise ApiError(
                503,
                "chain",
                "unavailable",
                "no chain configured (ORRANGE_CHAIN_URL and ORRANGE_ESCROW_ADDRESS)",
            )
        chain = _Chain(url, address)
        state["trades_chain"] = chain
    return chain


def _dev_signing(sign: str | None) -> bool:
    if sign is None:
        return False
    if sign != "dev":
        raise ApiError(400, "sign", "invalid", "sign must be 'dev'")
    if os.environ.get("ORRANGE_ENV", "").lower() != "dev":
        raise ApiError(403, "sign", "not_dev", "?sign=dev needs ORRANGE_ENV=dev")
    return True


def address(field: str, value: str) -> str:
    """``value`` as an EIP-55 checksum address (what web3 requires).

    All-lowercase or all-uppercase hex is accepted and normalized; mixed case must carry a
    valid EIP-55 checksum.

    Raises:
        ApiError: 400 ``invalid_address`` naming ``field``: not 20 bytes of hex, or a
            mixed-case address whose checksum is wrong (a likely typo).
    """
    digits = value[2:] if value[:2] in ("0x", "0X") else value
    mixed = digits != digits.lower() and digits != digits.upper()
    if not Web3.is_address(value) or (mixed and not Web3.is_checksum_address(value)):
        raise ApiError(
            400,
            field,
            "invalid_address",
            f"{value!r} is not an address (20 bytes of hex; mixed case must be EIP-55)",
        )
    return str(Web3.to_checksum_address(value))


def _wallet(escrow: Escrow, user: str, sender: str | None, dev: bool) -> str:
    if sender:
        return sender
    if not dev:
        raise ApiError(400, "from", "missing", "give your wallet address as 'from'")
    accounts = escrow.w3.eth.accounts
    digest = int.from_bytes(hashlib.sha256(user.encode()).digest()[:8], "big")
    return str(accounts[1 + digest % (len(accounts) - 1)])


async def _step(
    request: Request[Any, Any, Any],
    trade_id: str,
    principal: NamedDependency[Principal],
    action: str,
    roles: tuple[str, ...],
    sender: str | None,
    sign: str | None,
    build: Any,
) -> TxOut:
    """Check the caller's role, build the unsigned transaction with ``build(escrow, from,
    trade_id_bytes, trade)``, and send it in dev mode."""
    ctx = context(request)
    dev = _dev_signing(sign)
    row, role = await _load(ctx, trade_id, principal)
    if role not in roles:
        raise ApiError(403, "role", "forbidden", f"only the {' or '.join(roles)} can {action}")
    chain = _chain(request)
    tid = bytes.fromhex(trade_id.removeprefix("0x"))
    if sender:
        sender = address("from", sender)

    def run() -> TxOut:
        wallet = _wallet(chain.escrow, principal.user, sender, dev)
        tx: UnsignedTx = build(chain.escrow, wallet, tid, row.trade)
        tx_hash = None
        if dev:
            receipt = send_dev(chain.escrow.w3, tx)
            tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
        return TxOut(trade_id=trade_id, action=action, transaction=tx, tx_hash=tx_hash)

    try:
        return await asyncio.to_thread(run)
    except TransactionRejected as exc:
        raise ApiError(409, "trade_id", "rejected_by_escrow", exc.reason) from exc
    except (ChainError, ValueError) as exc:
        raise ApiError(400, "transaction", "invalid", str(exc)) from exc
    except OSError as exc:
        raise ApiError(503, "chain", "unavailable", f"chain unreachable: {exc}") from exc


@post("/trades/{trade_id:str}/fund", status_code=200, summary="Fund")
async def fund(
    request: Request[Any, Any, Any],
    trade_id: FromPath[str],
    data: JSONBody[FundIn],
    principal: NamedDependency[Principal],
    sign: FromQuery[str | None] = None,
) -> TxOut:
    """Seller: the funding transaction (``amount`` base units for ``buyer_address``); the
    payment deadline is the chain's time plus the trade's payment window."""
    if not data.amount.isdigit() or int(data.amount) <= 0:
        raise ApiError(400, "amount", "invalid", "amount is a positive integer string")
    amount = int(data.amount)
    buyer = address("buyer_address", data.buyer_address)
    token = address("token", data.token)

    def build(e: Escrow, wallet: str, tid: bytes, trade: P2PTrade) -> UnsignedTx:
        chain_ms = int(e.w3.eth.get_block("latest")["timestamp"]) * 1000
        return e.fund_tx(
            wallet,
            tid,
            buyer=buyer,
            amount=amount,
            payment_deadline=trade.payment_deadline_s(max(chain_ms, now_ms())),
            token=token,
        )

    return await _step(request, trade_id, principal, "fund", ("seller",), data.sender, sign, build)


def _simple(action: str, roles: tuple[str, ...], method: str) -> Any:
    async def handler(
        request: Request[Any, Any, Any],
        trade_id: FromPath[str],
        principal: NamedDependency[Principal],
        data: JSONBody[WalletIn | None] = None,
        sign: FromQuery[str | None] = None,
    ) -> TxOut:
        def build(e: Escrow, wallet: str, tid: bytes, trade: P2PTrade) -> UnsignedTx:
            tx: UnsignedTx = getattr(e, method)(wallet, tid)
            return tx

        sender = data.sender if data is not None else None
        return await _step(request, trade_id, principal, action, roles, sender, sign, build)

    handler.__doc__ = f"{' or '.join(roles).capitalize()}: the {action} transaction."
    return post(
        f"/trades/{{trade_id:str}}/{action}",
        status_code=200,
        summary=action.capitalize(),
        name=f"trade_{action}",
    )(handler)


mark_paid = _simple("paid", ("buyer",), "mark_paid_tx")
release = _simple("release", ("seller",), "release_tx")
dispute = _simple("dispute", ("buyer", "seller"), "dispute_tx")
reclaim = _simple("reclaim", ("seller",), "reclaim_tx")


@post("/trades/{trade_id:str}/resolve", status_code=200, summary="Resolve")
async def resolve(
    request: Request[Any, Any, Any],
    trade_id: FromPath[str],
    data: JSONBody[ResolveIn],
    principal: NamedDependency[Principal],
    sign: FromQuery[str | None] = None,
) -> TxOut:
    """Mediator only (JWT role claim): the resolving transaction giving the buyer
    ``buyer_bps`` (0..10000) of a disputed deal; 403 for anyone else."""
    if principal.role != "mediator":
        raise ApiError(403, "role", "forbidden", "only a mediator can resolve")
    if not 0 <= data.buyer_bps <= 10_000:
        raise ApiError(400, "buyer_bps", "invalid", "buyer_bps is 0..10000")

    def build(e: Escrow, wallet: str, tid: bytes, trade: P2PTrade) -> UnsignedTx:
        return e.resolve_tx(wallet, tid, data.buyer_bps)

    # a mediator who is also a party acts as mediator here
    only_mediator = Principal(user="", role="mediator")
    return await _step(
        request, trade_id, only_mediator, "resolve", ("mediator",), data.sender, sign, build
    )


# ----------------------------------------------------------------------------- chat


@get("/trades/{trade_id:str}/messages", summary="Trade chat")
async def list_chat(
    request: Request[Any, Any, Any],
    trade_id: FromPath[str],
    principal: NamedDependency[Principal],
    after_id: Annotated[int, QueryParameter(ge=0)] = 0,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
) -> list[MessageOut]:
    """The chat of a trade of mine in order (mediators read any trade's, as evidence)."""
    ctx = context(request)
    await _load(ctx, trade_id, principal)
    rows = await db.list_messages(ctx.pool, trade_id, after_id=after_id, limit=limit)
    return [_msg_out(m) for m in rows]


def _msg_out(m: db.MessageRecord) -> MessageOut:
    return MessageOut(
        id=m.id, trade_id=m.trade_id, sender=m.sender, role=m.role, text=m.body, ts=m.ts
    )


@post("/trades/{trade_id:str}/messages", status_code=201, summary="Say")
async def post_chat(
    request: Request[Any, Any, Any],
    trade_id: FromPath[str],
    data: JSONBody[MessageIn],
    principal: NamedDependency[Principal],
) -> MessageOut:
    """Add a message to the chat of a trade of mine (a mediator only once it was disputed);
    it is pushed to both parties' WebSocket ``orders`` channel."""
    ctx = context(request)
    row, role = await _load(ctx, trade_id, principal)
    if role == "mediator" and row.trade.disputed_ms is None:
        raise ApiError(403, "role", "not_disputed", "mediators join the chat after a dispute")
    text = data.text.strip()
    if not text or len(text) > _MAX_MESSAGE:
        raise ApiError(400, "text", "invalid", f"text is 1-{_MAX_MESSAGE} characters")
    msg = await db.add_message(ctx.pool, trade_id, principal.user, role, text, now_ms())
    out = _msg_out(msg)
    payload = msgspec.json.encode(
        {"type": "trade_message", "channel": "orders", **msgspec.structs.asdict(out)}
    )
    for user in {row.trade.buyer, row.trade.seller}:
        await ctx.nc.publish(f"{PRIVATE_PREFIX}.{user}", payload)
    return out


TRADE_HANDLERS = [
    list_my_trades,
    get_trade,
    fund,
    mark_paid,
    release,
    dispute,
    reclaim,
    resolve,
    list_chat,
    post_chat,
]
