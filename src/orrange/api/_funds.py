"""Funds routes: balances, the ledger, withdrawals and how to deposit (docs/funds.md).

============================================= ===============================================
``GET  /api/v1/balances``                      my balance of every asset
``GET  /api/v1/ledger``                        my ledger entries, newest first (``asset``,
                                               ``kind``, ``before``, ``limit``)
``POST /api/v1/withdrawals``                   withdraw: the engine's signed authorization
                                               (201) or ``insufficient_funds`` (422)
``GET  /api/v1/withdrawals``                   my withdrawals (``status``, ``before``,
                                               ``limit``)
``GET  /api/v1/withdrawals/{id}``              one of mine (another user's: 404)
``POST /api/v1/deposits/address``              the vault, the account to name and the
                                               unsigned deposit transactions
============================================= ===============================================

Amounts are decimal strings in the asset's units (``"1.5"`` USDT), exact to its
``decimals``; times ms UTC; ``expiry`` the authorization's last valid chain time (s since the
epoch). Balances and entries come from PostgreSQL (what the persister stored of ``LEDGER``), so
a change shows there a few ms after the engine made it.

A withdrawal request publishes :class:`~orrange.wire.funds.WithdrawalRequest` on
``funds.cmd`` and waits (``order_timeout_s``) for risk's
:class:`~orrange.wire.funds.WithdrawalDecision` on ``ledger.withdrawal``: authorized, the
amount is held and the answer carries the EIP-712 signature for the vault's ``withdraw``
(https://eips.ethereum.org/EIPS/eip-712) and, when a chain is configured, the unsigned
``withdraw`` transaction (``from`` the body's ``from``, else the ``to`` address: anybody may
submit it and pay the gas). The chain is ``ORRANGE_CHAIN_URL``, the vault
``ORRANGE_VAULT_ADDRESS``; without them deposits answer 503 and withdrawals no transaction.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from web3 import Web3

from orrange.api._trades import address
from orrange.api.auth import Principal
from orrange.api.context import ApiContext, now_ms
from orrange.api.deps import context
from orrange.api.errors import ApiError
from orrange.api.schemas import reject_status
from orrange.evm.chain import ChainError, Token, TransactionRejected, UnsignedTx, connect
from orrange.evm.vault import Vault, Withdrawal
from orrange.ledger import AssetSpec, EntryKind, from_decimal, to_decimal
from orrange.logging import get_logger
from orrange.runtime import PublishError
from orrange.settlement.events import ZERO_ADDRESS
from orrange.store import ledger as db
from orrange.store.queries import InvalidCursorError
from orrange.wire.funds import (
    FUNDS_CMD_SUBJECT,
    WithdrawalDecision,
    WithdrawalRequest,
    withdrawal_msg_id,
)

__all__ = [
    "FUNDS_HANDLERS",
    "BalanceOut",
    "BalancesOut",
    "DepositAssetOut",
    "DepositIn",
    "DepositOut",
    "FundsChain",
    "LedgerChangeOut",
    "LedgerEntryOut",
    "LedgerPage",
    "WithdrawalIn",
    "WithdrawalOut",
    "WithdrawalPage",
]

_log = get_logger("orrange.api.funds")
#: The shortest and longest validity a withdrawal request may ask for (s).
MIN_EXPIRY_S = 60
MAX_EXPIRY_S = 7 * 86_400
_STATUSES = ("authorized", "rejected", "confirmed", "returned")


class BalanceOut(msgspec.Struct, frozen=True, kw_only=True):
    """My balance of ``asset``: ``available`` (free to trade or withdraw), ``held`` (by open
    orders and pending withdrawals) and their ``total``, decimal strings."""

    asset: str
    available: str
    held: str
    total: str


class BalancesOut(msgspec.Struct, frozen=True, kw_only=True):
    """Every asset of the exchange, zero where I have none."""

    balances: list[BalanceOut]


class LedgerChangeOut(msgspec.Struct, frozen=True, kw_only=True):
    """How an entry moved my balance of ``asset``: the deltas of ``available`` and ``held``
    (decimal strings, negative for a decrease)."""

    asset: str
    available: str
    held: str


class LedgerEntryOut(msgspec.Struct, frozen=True, kw_only=True):
    """One ledger entry of mine: ``id`` (``<source>:<seq>:<n>``), ``kind`` (deposit, hold,
    fill, fee ...), ``ts`` ms UTC, ``ref`` (the order ``<SYM>:<order_id>``, withdrawal id or
    chain event), ``detail`` and my ``changes``."""

    id: str
    kind: str
    ts: int
    ref: str
    detail: str
    changes: list[LedgerChangeOut]


class LedgerPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of my entries, newest first; pass ``next_cursor`` as ``before`` for the next
    page (None on the last)."""

    entries: list[LedgerEntryOut]
    next_cursor: str | None


class WithdrawalIn(msgspec.Struct, frozen=True, kw_only=True, rename={"sender": "from"}):
    """A withdrawal: ``amount`` (decimal string, > 0) of ``asset`` to the address ``to``
    (EIP-55 checksum when mixed case), valid ``expiry_s`` seconds (60 s .. 7 days; default
    ``withdrawal_expiry_s``); ``from``: the wallet that will submit the transaction (default
    ``to``)."""

    asset: str
    amount: str
    to: str
    expiry_s: int | None = None
    sender: str | None = None


class WithdrawalOut(msgspec.Struct, frozen=True, kw_only=True):
    """A withdrawal and its authorization.

    ``status``: ``authorized`` (held; ``signature`` is the engine's 65-byte EIP-712
    authorization, 0x hex, for the vault at ``vault`` on ``chain_id``; ``token`` ``native``
    or the ERC-20 address), ``rejected`` (``reason``, ``message``), ``confirmed`` (paid on
    chain: ``tx_hash``) or ``returned`` (expired unused: the amount is available again).
    ``transaction``: the unsigned ``withdraw`` call when a chain is configured and the
    withdrawal is authorized (None otherwise, or when the node refuses to build it).
    """

    withdrawal_id: str
    status: str
    asset: str
    amount: str
    to: str
    expiry: int
    token: str
    vault: str
    chain_id: int
    signature: str
    reason: str
    message: str
    tx_hash: str
    requested_ts: int
    updated_ts: int
    transaction: UnsignedTx | None = None


class WithdrawalPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of my withdrawals, newest first (``next_cursor`` as ``before`` next)."""

    withdrawals: list[WithdrawalOut]
    next_cursor: str | None


class DepositIn(msgspec.Struct, frozen=True, kw_only=True, rename={"sender": "from"}):
    """What to deposit: ``asset`` (default: every asset), ``amount`` (decimal string) and
    the depositing wallet ``from``; the transactions need both."""

    asset: str | None = None
    amount: str | None = None
    sender: str | None = None


class DepositAssetOut(msgspec.Struct, frozen=True, kw_only=True):
    """How to deposit ``asset``: ``token`` (``native`` or the ERC-20 address), ``decimals``,
    and, given ``from`` and ``amount``, the unsigned transactions: an ERC-20 first
    ``approve``s the vault, then ``deposit`` calls ``deposit_token`` (None until the approval
    is mined: the node cannot build a call that would fail); ETH needs only ``deposit``."""

    asset: str
    token: str
    decimals: int
    approve: UnsignedTx | None = None
    deposit: UnsignedTx | None = None


class DepositOut(msgspec.Struct, frozen=True, kw_only=True):
    """Deposit into ``vault`` on ``chain_id`` naming ``account`` (my user id): the vault
    credits that account, and the engine my balance once the deposit is confirmed."""

    vault: str
    chain_id: int
    account: str
    assets: list[DepositAssetOut]


# --------------------------------------------------------------------------------- helpers


def _asset(ctx: ApiContext, code: str, status: int = 400) -> AssetSpec:
    spec = ctx.assets.get(code)
    if spec is None:
        raise ApiError(status, "asset", "unknown_asset", f"no asset {code!r}")
    return spec


def _amount(spec: AssetSpec, text: str) -> int:
    try:
        n = from_decimal(spec, text)
    except ValueError as exc:
        raise ApiError(400, "amount", "invalid_amount", str(exc)) from exc
    if n <= 0:
        raise ApiError(400, "amount", "invalid_amount", f"amount must be positive, got {text}")
    return n


def _decimal(ctx: ApiContext, asset: str, base_units: int) -> str:
    spec = ctx.assets.get(asset)
    return str(base_units) if spec is None else to_decimal(spec, base_units)


def _vault_token(token: str) -> str:
    """The vault's token argument of an asset's ``token`` (the zero address for ETH)."""
    return ZERO_ADDRESS if token == "native" else token


class FundsChain:
    """The chain reached from this API process: ``w3`` and, when configured, the vault at
    ``vault``. Built from the environment on first use; a process embedding the API (a
    test on eth-tester) may put its own in ``app.state["funds_chain"]`` before."""

    def __init__(self, w3: Web3, vault: str | None) -> None:
        self.w3 = w3
        self.vault = Vault(w3, vault) if vault else None


def _chain(request: Request[Any, Any, Any]) -> FundsChain | None:
    """The configured chain (``ORRANGE_CHAIN_URL``, ``ORRANGE_VAULT_ADDRESS``), or None."""
    state = request.app.state
    chain: FundsChain | None = state.get("funds_chain")
    if chain is None:
        url = os.environ.get("ORRANGE_CHAIN_URL")
        if not url:
            return None
        chain = FundsChain(connect(url), os.environ.get("ORRANGE_VAULT_ADDRESS") or None)
        state["funds_chain"] = chain
    return chain


def _withdraw_tx(
    chain: FundsChain | None, w: db.WithdrawalRecord, sender: str
) -> UnsignedTx | None:
    """The unsigned ``withdraw`` of the authorized ``w`` sent by ``sender`` (blocking)."""
    if chain is None or w.status != "authorized" or not w.vault:
        return None
    terms = Withdrawal(
        account=w.account,
        token=_vault_token(w.token),
        amount=w.amount,
        to=w.to_address,
        withdrawal_id=bytes.fromhex(w.withdrawal_id.removeprefix("0x")),
        expiry=w.expiry,
    )
    try:
        vault = Vault(chain.w3, w.vault)
        return vault.withdraw_tx(sender, terms, bytes.fromhex(w.signature.removeprefix("0x")))
    except (TransactionRejected, ChainError, ValueError, OSError) as exc:
        _log.warning("cannot build the withdraw transaction", id=w.withdrawal_id, error=str(exc))
        return None


def _withdrawal_out(
    ctx: ApiContext, w: db.WithdrawalRecord, tx: UnsignedTx | None = None
) -> WithdrawalOut:
    fields = msgspec.structs.asdict(w)
    del fields["account"], fields["to_address"]
    fields["amount"] = _decimal(ctx, w.asset, w.amount)
    return WithdrawalOut(**fields, to=w.to_address, transaction=tx)


def _record(d: WithdrawalDecision) -> db.WithdrawalRecord:
    """The row the persister stores for ``d`` (answered before it is stored)."""
    return db.WithdrawalRecord(
        withdrawal_id=d.withdrawal_id,
        account=d.user,
        asset=d.asset,
        amount=d.amount,
        to_address=d.to,
        expiry=d.expiry,
        status=d.status,
        token=d.token,
        vault=d.vault,
        chain_id=d.chain_id,
        signature=d.signature,
        reason=d.reason,
        message=d.message,
        tx_hash="",
        requested_ts=d.ts,
        updated_ts=d.ts,
    )


def _time_out(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


# ---------------------------------------------------------------------------------- routes


@get("/balances", summary="My balances")
async def get_balances(
    request: Request[Any, Any, Any], principal: NamedDependency[Principal]
) -> BalancesOut:
    """My ``available``, ``held`` and ``total`` of every asset (decimal strings)."""
    ctx = context(request)
    stored = {b.asset: b for b in await db.balances(ctx.pool, principal.user)}
    out = []
    for code, spec in sorted(ctx.assets.items()):
        b = stored.get(code)
        avail, held = (b.available, b.held) if b is not None else (0, 0)
        out.append(
            BalanceOut(
                asset=code,
                available=to_decimal(spec, avail),
                held=to_decimal(spec, held),
                total=to_decimal(spec, avail + held),
            )
        )
    return BalancesOut(balances=out)


@get("/ledger", summary="My ledger entries")
async def get_ledger(
    request: Request[Any, Any, Any],
    principal: NamedDependency[Principal],
    asset: FromQuery[str | None] = None,
    kind: FromQuery[str | None] = None,
    before: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
) -> LedgerPage:
    """My entries, newest first: only those moving ``asset``, only of ``kind``; ``before``
    is the previous page's ``next_cursor``."""
    ctx = context(request)
    if asset is not None:
        _asset(ctx, asset)
    if kind is not None:
        try:
            EntryKind(kind)
        except ValueError as exc:
            kinds = ", ".join(k.value for k in EntryKind)
            raise ApiError(400, "kind", "invalid_value", f"kind: one of {kinds}") from exc
    try:
        page = await db.ledger_page(
            ctx.pool, principal.user, asset=asset, kind=kind, before=before, limit=limit
        )
    except InvalidCursorError as exc:
        raise ApiError(400, "before", "invalid_cursor", str(exc)) from exc
    entries = [
        LedgerEntryOut(
            id=e.id,
            kind=e.kind,
            ts=e.ts,
            ref=e.ref,
            detail=e.detail,
            changes=[
                LedgerChangeOut(
                    asset=p.asset,
                    available=_decimal(ctx, p.asset, p.available),
                    held=_decimal(ctx, p.asset, p.held),
                )
                for p in e.postings
            ],
        )
        for e in page.items
    ]
    return LedgerPage(entries=entries, next_cursor=page.next_cursor)


@post("/withdrawals", status_code=201, summary="Withdraw")
async def create_withdrawal(
    request: Request[Any, Any, Any],
    data: JSONBody[WithdrawalIn],
    principal: NamedDependency[Principal],
) -> WithdrawalOut:
    """Ask the engine to authorize a withdrawal; answers the authorization (201), or 422
    ``insufficient_funds`` naming the asset, the amount and what is available, 400 for a bad
    body, 504 when risk did not answer in time (then see ``GET /withdrawals/{id}``)."""
    ctx = context(request)
    spec = _asset(ctx, data.asset)
    amount = _amount(spec, data.amount)
    to = address("to", data.to).lower()
    sender = address("from", data.sender) if data.sender else to
    expiry_s = ctx.options.withdrawal_expiry_s if data.expiry_s is None else data.expiry_s
    if not MIN_EXPIRY_S <= expiry_s <= MAX_EXPIRY_S:
        raise ApiError(
            400,
            "expiry_s",
            "invalid_value",
            f"expiry_s must be between {MIN_EXPIRY_S} and {MAX_EXPIRY_S}",
        )
    ts = now_ms()
    wid = "0x" + secrets.token_hex(32)
    req = WithdrawalRequest(
        withdrawal_id=wid,
        user=principal.user,
        asset=spec.code,
        amount=amount,
        to=to,
        expiry=ts // 1000 + expiry_s,
        ts=ts,
    )
    fut = ctx.ledger.expect_decision(wid)
    timer = asyncio.get_running_loop().call_later(ctx.options.order_timeout_s, _time_out, fut)
    try:
        try:
            await ctx.publisher.publish(FUNDS_CMD_SUBJECT, req, msg_id=withdrawal_msg_id(wid))
        except PublishError as exc:
            raise ApiError(503, "engine", "unavailable", f"cannot publish: {exc}") from exc
        try:
            decision = await fut
        except TimeoutError as exc:
            raise ApiError(
                504,
                "engine",
                "timeout",
                f"no answer from the engine within {ctx.options.order_timeout_s:g} s; "
                f"look it up with GET /api/v1/withdrawals/{wid}",
            ) from exc
    finally:
        timer.cancel()
        ctx.ledger.forget_decision(wid)
    if decision.status != "authorized":
        raise ApiError(reject_status(decision.reason), "amount", decision.reason, decision.message)
    record = _record(decision)
    tx = await asyncio.to_thread(_withdraw_tx, _chain(request), record, sender)
    return _withdrawal_out(ctx, record, tx)


@get("/withdrawals", summary="My withdrawals")
async def list_withdrawals(
    request: Request[Any, Any, Any],
    principal: NamedDependency[Principal],
    status: FromQuery[str | None] = None,
    before: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
) -> WithdrawalPage:
    """My withdrawals, newest first; ``status`` keeps one of authorized, rejected,
    confirmed, returned."""
    ctx = context(request)
    if status is not None and status not in _STATUSES:
        raise ApiError(400, "status", "invalid_value", f"status: one of {', '.join(_STATUSES)}")
    try:
        page = await db.withdrawals(
            ctx.pool, principal.user, status=status, before=before, limit=limit
        )
    except InvalidCursorError as exc:
        raise ApiError(400, "before", "invalid_cursor", str(exc)) from exc
    return WithdrawalPage(
        withdrawals=[_withdrawal_out(ctx, w) for w in page.items], next_cursor=page.next_cursor
    )


@get("/withdrawals/{withdrawal_id:str}", summary="One of my withdrawals")
async def get_withdrawal(
    request: Request[Any, Any, Any],
    withdrawal_id: FromPath[str],
    principal: NamedDependency[Principal],
) -> WithdrawalOut:
    """One of my withdrawals, with the ``withdraw`` transaction while it is authorized and a
    chain is configured (404 when there is none of mine with this id)."""
    ctx = context(request)
    w = await db.withdrawal(ctx.pool, principal.user, withdrawal_id.lower())
    if w is None:
        raise ApiError(404, "withdrawal_id", "unknown_withdrawal", f"no withdrawal {withdrawal_id}")
    tx = await asyncio.to_thread(_withdraw_tx, _chain(request), w, w.to_address)
    return _withdrawal_out(ctx, w, tx)


@post("/deposits/address", status_code=200, summary="How to deposit")
async def deposit_address(
    request: Request[Any, Any, Any],
    data: JSONBody[DepositIn],
    principal: NamedDependency[Principal],
) -> DepositOut:
    """The vault to deposit into and the account to name (my user id); with ``from`` and
    ``amount``, the unsigned transactions for my wallet (503 without a configured vault)."""
    ctx = context(request)
    specs = [_asset(ctx, data.asset)] if data.asset else [ctx.assets[c] for c in sorted(ctx.assets)]
    sender = address("from", data.sender) if data.sender else None
    if data.amount is not None and len(specs) != 1:
        raise ApiError(400, "asset", "missing", "an amount needs its asset")
    amount = _amount(specs[0], data.amount) if data.amount is not None else None
    chain = _chain(request)
    if chain is None or chain.vault is None:
        raise ApiError(
            503,
            "chain",
            "unavailable",
            "no vault configured (ORRANGE_CHAIN_URL and ORRANGE_VAULT_ADDRESS)",
        )
    vault = chain.vault
    user = principal.user

    def build() -> DepositOut:
        out = []
        for spec in specs:
            approve = deposit = None
            if sender is not None and amount is not None:
                if spec.token == "native":
                    deposit = vault.deposit_tx(sender, user, amount)
                else:
                    token = Token(chain.w3, spec.token)
                    approve = token.approve_tx(sender, vault.address, amount)
                    try:
                        deposit = vault.deposit_token_tx(sender, spec.token, amount, user)
                    except TransactionRejected:
                        deposit = None  # not approved yet
            out.append(
                DepositAssetOut(
                    asset=spec.code,
                    token=spec.token,
                    decimals=spec.decimals,
                    approve=approve,
                    deposit=deposit,
                )
            )
        return DepositOut(
            vault=vault.address, chain_id=int(chain.w3.eth.chain_id), account=user, assets=out
        )

    try:
        return await asyncio.to_thread(build)
    except TransactionRejected as exc:
        raise ApiError(409, "amount", "rejected_by_vault", exc.reason) from exc
    except (ChainError, ValueError) as exc:
        raise ApiError(400, "transaction", "invalid", str(exc)) from exc
    except OSError as exc:
        raise ApiError(503, "chain", "unavailable", f"chain unreachable: {exc}") from exc


#: The route handlers of this module (mounted under ``/api/v1``).
FUNDS_HANDLERS = [
    get_balances,
    get_ledger,
    create_withdrawal,
    list_withdrawals,
    get_withdrawal,
    deposit_address,
]
