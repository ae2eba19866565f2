"""Funds routes on a real nats-server, PostgreSQL, persister and eth-tester chain: a deposit
on the vault shows in my balances, a withdrawal is authorized, paid by the vault with the
transaction the API answered and confirmed; too much is ``insufficient_funds``; the private
``balances`` WebSocket channel; validation; one user never sees another's funds.

Risk's funds step is played here by :class:`RiskFunds`: the real pure ledger
(:class:`orrange.ledger.Funds`) over ``FUNDS`` in stream order, the real EIP-712 signer
(:func:`orrange.evm.vault.sign_withdrawal`), publishing what risk publishes on ``LEDGER``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import nats
import pytest
from eth_account import Account
from kit.api_stack import Stack, actor_config, error_of, running_api
from kit.wait import wait_for
from nats.js import api as js_api
from web3 import EthereumTesterProvider, Web3
from websockets.asyncio.client import ClientConnection, connect

from orrange.api import ApiOptions
from orrange.api._funds import FundsChain
from orrange.api.context import now_ms
from orrange.engine.persister import Persister
from orrange.evm.chain import send_dev
from orrange.evm.vault import Vault, Withdrawal, sign_withdrawal
from orrange.ledger import Entry, Funds, load_assets
from orrange.runtime import Publisher, ensure_stream
from orrange.settings import config_file
from orrange.settlement.events import ZERO_ADDRESS
from orrange.wire.funds import (
    FUNDS,
    FUNDS_CHAIN_SUBJECT,
    FUNDS_PREFIX,
    LEDGER,
    LEDGER_WITHDRAWAL_SUBJECT,
    DepositConfirmed,
    FundsMessage,
    WithdrawalConfirmed,
    WithdrawalDecision,
    WithdrawalRequest,
    chain_funds_msg_id,
    ledger_msg_id,
    ledger_subject,
    withdrawal_decision_msg_id,
)

E18 = 10**18
SIGNER_KEY = "0x" + "5e" * 32
ASSETS = load_assets(config_file("assets.toml").read_text())
_funds_decoder = msgspec.json.Decoder(FundsMessage)


class RiskFunds:
    """Risk's funds step over ``FUNDS`` (an ordered consumer: stream order and sequence):
    deposits credit, withdrawal requests hold and are signed or refused, confirmations pay
    out; the entries go to ``ledger.funds``, decisions to ``ledger.withdrawal``."""

    def __init__(self, nc: nats.NATS, w3: Web3, vault: Vault) -> None:
        self.nc = nc
        self.pub = Publisher(nc)
        self.funds = Funds([], ASSETS)
        self.chain_id = int(w3.eth.chain_id)
        self.vault = vault
        self.sub: Any = None

    async def start(self) -> None:
        js = self.nc.jetstream()
        for spec in (FUNDS, LEDGER):
            await ensure_stream(js, spec)
        self.sub = await js.subscribe(
            f"{FUNDS_PREFIX}.>",
            cb=self._on,
            ordered_consumer=True,
            deliver_policy=js_api.DeliverPolicy.ALL,
        )

    async def stop(self) -> None:
        await self.sub.unsubscribe()

    async def _entries(self, entries: list[Entry]) -> None:
        if entries:
            await self.pub.submit(
                ledger_subject("funds"),
                msgspec.json.encode(entries),
                msg_id=ledger_msg_id(entries[0].id),
            )

    async def _on(self, msg: Any) -> None:
        seq = msg.metadata.sequence.stream
        m = _funds_decoder.decode(msg.data)
        f = self.funds
        if isinstance(m, DepositConfirmed):
            await self._entries(f.deposit(seq, m.account, m.asset, m.amount, m.event_id, m.ts))
        elif isinstance(m, WithdrawalConfirmed):
            await self._entries(f.withdrawal_confirmed(seq, m.withdrawal_id, m.ts))
        elif isinstance(m, WithdrawalRequest):
            res = f.withdrawal_requested(seq, m.user, m.asset, m.amount, m.withdrawal_id, m.ts)
            fields = {
                k: getattr(m, k)
                for k in ("withdrawal_id", "user", "asset", "amount", "to", "expiry", "ts")
            }
            if isinstance(res, Entry):
                await self._entries([res])
                token = ASSETS[m.asset].token
                terms = Withdrawal(
                    account=m.user,
                    token=ZERO_ADDRESS if token == "native" else token,
                    amount=m.amount,
                    to=m.to,
                    withdrawal_id=bytes.fromhex(m.withdrawal_id[2:]),
                    expiry=m.expiry,
                )
                sig = sign_withdrawal(SIGNER_KEY, self.chain_id, self.vault.address, terms)
                decision = WithdrawalDecision(
                    **fields,
                    status="authorized",
                    token=token,
                    vault=self.vault.address.lower(),
                    chain_id=self.chain_id,
                    signature="0x" + sig.hex(),
                )
            else:
                assert isinstance(res, str)
                reason, _, message = res.partition(": ")
                decision = WithdrawalDecision(
                    **fields, status="rejected", reason=reason, message=message
                )
            await self.pub.submit(
                LEDGER_WITHDRAWAL_SUBJECT,
                decision,
                msg_id=withdrawal_decision_msg_id(m.withdrawal_id),
            )
        await self.pub.flush()


class Chain:
    """eth-tester with the vault (signed by ``SIGNER_KEY``) and its node-held accounts."""

    def __init__(self) -> None:
        self.w3 = Web3(EthereumTesterProvider())
        self.owner, self.alice, self.bob = self.w3.eth.accounts[:3]
        signer = Account.from_key(SIGNER_KEY).address
        self.vault = Vault.deploy(self.w3, self.owner, signer=signer, signer_delay_s=3600)


@contextlib.asynccontextmanager
async def funds_stack(
    nats_url: str, database_url: str, *, risk: bool = True, chain: bool = True
) -> AsyncIterator[tuple[Stack, Chain, nats.NATS]]:
    """The API with the persister, the chain handed in, and risk's funds step."""
    ch = Chain()
    nc = await nats.connect(nats_url)
    risk_funds = RiskFunds(nc, ch.w3, ch.vault)
    persister = Persister(actor_config("persister", nats_url), database_url)
    options = ApiOptions(order_timeout_s=5.0 if risk else 0.5)
    try:
        async with running_api(nats_url, database_url, [persister], options=options) as s:
            if chain:
                s.app.state["funds_chain"] = FundsChain(ch.w3, ch.vault.address)
            if risk:
                await risk_funds.start()
            try:
                yield s, ch, nc
            finally:
                if risk:
                    await risk_funds.stop()
    finally:
        await nc.close()


async def _confirm_deposit(nc: nats.NATS, ch: Chain, account: str, amount: int, n: int) -> None:
    """Deposit ``amount`` wei for ``account`` on the vault and publish its confirmation, as
    the vault watcher does."""
    receipt = await asyncio.to_thread(
        send_dev, ch.w3, ch.vault.deposit_tx(ch.alice, account, amount)
    )
    event = DepositConfirmed(
        event_id=f"0x{n:064x}:0",
        account=account,
        asset="ETH",
        amount=amount,
        sender=ch.alice.lower(),
        tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
        block_number=receipt["blockNumber"],
        ts=1_700_000_000_000 + n,
    )
    await nc.jetstream().publish(
        FUNDS_CHAIN_SUBJECT,
        msgspec.json.encode(event),
        headers={"Nats-Msg-Id": chain_funds_msg_id("deposit", event.event_id)},
    )


def _params(tx: dict[str, Any]) -> Any:
    """web3 parameters of an unsigned transaction as the API answers it (JSON)."""
    return {k: tx[k] for k in ("from", "to", "data", "value", "gas")}


async def _balance(s: Stack, user: str, asset: str = "ETH") -> dict[str, str]:
    r = await s.http.get("/api/v1/balances", headers=s.auth(user))
    assert r.status_code == 200, r.text
    rows = {b["asset"]: b for b in r.json()["balances"]}
    assert set(rows) == set(ASSETS)
    return rows[asset]


async def _until_balance(s: Stack, user: str, available: str, held: str) -> None:
    async def ok() -> bool:
        b = await _balance(s, user)
        return (b["available"], b["held"]) == (available, held)

    await wait_for(ok, f"{user}'s ETH balance {available} / {held}")


async def test_deposit_withdraw_confirm_and_privacy(nats_url: str, database_url: str) -> None:
    async with funds_stack(nats_url, database_url) as (s, ch, nc):
        assert await _balance(s, "alice") == {
            "asset": "ETH",
            "available": "0.000000000000000000",
            "held": "0.000000000000000000",
            "total": "0.000000000000000000",
        }
        await _confirm_deposit(nc, ch, "alice", 5 * E18, 1)
        await _until_balance(s, "alice", "5.000000000000000000", "0.000000000000000000")

        body = {"asset": "ETH", "amount": "2", "to": ch.bob}
        r = await s.http.post("/api/v1/withdrawals", json=body, headers=s.auth("alice"))
        assert r.status_code == 201, r.text
        w = r.json()
        assert (w["status"], w["asset"], w["amount"], w["to"]) == (
            "authorized",
            "ETH",
            "2.000000000000000000",
            ch.bob.lower(),
        )
        assert w["vault"] == ch.vault.address.lower() and len(w["signature"]) == 132
        tx = w["transaction"]
        assert tx is not None and tx["from"] == ch.bob and tx["to"] == ch.vault.address
        await _until_balance(s, "alice", "3.000000000000000000", "2.000000000000000000")

        # the vault pays bob with the transaction the API built
        before = ch.w3.eth.get_balance(ch.bob)
        receipt = await asyncio.to_thread(send_dev, ch.w3, _params(tx))
        assert ch.w3.eth.get_balance(ch.bob) > before + E18  # 2 ETH in, less the gas
        tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
        confirmed = WithdrawalConfirmed(
            withdrawal_id=w["withdrawal_id"],
            event_id=f"{tx_hash}:0",
            tx_hash=tx_hash,
            block_number=receipt["blockNumber"],
            ts=now_ms(),  # after the request
        )
        await nc.jetstream().publish(
            FUNDS_CHAIN_SUBJECT,
            msgspec.json.encode(confirmed),
            headers={"Nats-Msg-Id": chain_funds_msg_id("withdrawal_confirmed", tx_hash)},
        )
        await _until_balance(s, "alice", "3.000000000000000000", "0.000000000000000000")
        got = (
            await s.http.get(f"/api/v1/withdrawals/{w['withdrawal_id']}", headers=s.auth("alice"))
        ).json()
        assert got["status"] == "confirmed" and got["transaction"] is None

        # more than available: insufficient_funds, nothing held
        body = {"asset": "ETH", "amount": "3.5", "to": ch.bob}
        r = await s.http.post("/api/v1/withdrawals", json=body, headers=s.auth("alice"))
        assert r.status_code == 422, r.text
        err = error_of(r)
        assert (err["field"], err["reason"]) == ("amount", "insufficient_funds")
        assert "3.5" in err["message"] and "3" in err["message"]
        assert (await _balance(s, "alice"))["held"] == "0.000000000000000000"

        # my ledger: newest first, filtered by kind, paginated
        r = await s.http.get("/api/v1/ledger", headers=s.auth("alice"))
        entries = r.json()["entries"]
        assert [e["kind"] for e in entries] == [
            "withdrawal_confirmed",
            "withdrawal_requested",
            "deposit",
        ]
        assert entries[1]["ref"] == w["withdrawal_id"]
        assert entries[1]["changes"] == [
            {"asset": "ETH", "available": "-2.000000000000000000", "held": "2.000000000000000000"}
        ]
        page = (await s.http.get("/api/v1/ledger?limit=2", headers=s.auth("alice"))).json()
        assert [e["id"] for e in page["entries"]] == [e["id"] for e in entries[:2]]
        nxt = f"/api/v1/ledger?limit=2&before={page['next_cursor']}"
        rest = (await s.http.get(nxt, headers=s.auth("alice"))).json()
        assert [e["id"] for e in rest["entries"]] == [entries[2]["id"]]
        assert rest["next_cursor"] is None
        r = await s.http.get("/api/v1/ledger?kind=deposit&asset=ETH", headers=s.auth("alice"))
        assert [e["kind"] for e in r.json()["entries"]] == ["deposit"]
        r = await s.http.get("/api/v1/ledger?asset=USDT", headers=s.auth("alice"))
        assert r.json() == {"entries": [], "next_cursor": None}
        mine = (await s.http.get("/api/v1/withdrawals", headers=s.auth("alice"))).json()
        assert [x["withdrawal_id"] for x in mine["withdrawals"]] == [w["withdrawal_id"]]

        # bob sees none of it
        assert (await _balance(s, "bob"))["total"] == "0.000000000000000000"
        bob = s.auth("bob")
        assert (await s.http.get("/api/v1/ledger", headers=bob)).json()["entries"] == []
        assert (await s.http.get("/api/v1/withdrawals", headers=bob)).json()["withdrawals"] == []
        r = await s.http.get(f"/api/v1/withdrawals/{w['withdrawal_id']}", headers=bob)
        assert r.status_code == 404 and error_of(r)["reason"] == "unknown_withdrawal"
        for path in ("/api/v1/balances", "/api/v1/ledger", "/api/v1/withdrawals"):
            r = await s.http.get(path)
            assert r.status_code == 401, path


async def _ws_auth(s: Stack, user: str) -> ClientConnection:
    ws = await connect(s.ws_url)
    await ws.send(json.dumps({"op": "auth", "token": s.token(user)}))
    assert json.loads(await ws.recv())["type"] == "authenticated"
    await ws.send(json.dumps({"op": "subscribe", "channel": "balances"}))
    assert json.loads(await ws.recv())["type"] == "subscribed"
    return ws


async def test_balance_changes_on_the_private_channel(nats_url: str, database_url: str) -> None:
    async with funds_stack(nats_url, database_url) as (s, ch, nc):
        anon = await connect(s.ws_url)
        await anon.send(json.dumps({"op": "subscribe", "channel": "balances"}))
        assert json.loads(await anon.recv())["type"] == "subscribed"
        assert json.loads(await anon.recv())["reason"] == "auth_required"
        await anon.close()
        alice = await _ws_auth(s, "alice")
        bob = await _ws_auth(s, "bob")
        # subscribed as alice, then authenticated as mallory: alice's changes stop there
        switched = await _ws_auth(s, "alice")
        await switched.send(json.dumps({"op": "auth", "token": s.token("mallory")}))
        assert json.loads(await switched.recv())["user"] == "mallory"
        try:
            await _confirm_deposit(nc, ch, "alice", 3 * E18 // 2, 1)
            msg = json.loads(await asyncio.wait_for(alice.recv(), 10))
            assert msg == {
                "type": "balance",
                "channel": "balances",
                "entry_id": msg["entry_id"],
                "kind": "deposit",
                "ts": 1_700_000_000_001,
                "ref": f"0x{1:064x}:0",
                "changes": [
                    {
                        "asset": "ETH",
                        "available": "1.500000000000000000",
                        "held": "0.000000000000000000",
                    }
                ],
            }
            await _confirm_deposit(nc, ch, "bob", E18, 2)
            got = json.loads(await asyncio.wait_for(bob.recv(), 10))
            assert got["ref"] == f"0x{2:064x}:0"  # bob's own first: alice's never reached him
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(alice.recv(), 0.5)  # nor bob's alice
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(switched.recv(), 0.1)
        finally:
            for ws in (alice, bob, switched):
                await ws.close()


async def test_deposit_instructions_and_transaction(nats_url: str, database_url: str) -> None:
    async with funds_stack(nats_url, database_url, risk=False) as (s, ch, _):
        r = await s.http.post("/api/v1/deposits/address", json={}, headers=s.auth("alice"))
        assert r.status_code == 200, r.text
        d = r.json()
        assert (d["vault"], d["account"], d["chain_id"]) == (
            ch.vault.address,
            "alice",
            ch.w3.eth.chain_id,
        )
        assert [(a["asset"], a["token"], a["deposit"]) for a in d["assets"]] == [
            (code, ASSETS[code].token, None) for code in sorted(ASSETS)
        ]
        body = {"asset": "ETH", "amount": "0.25", "from": ch.alice}
        r = await s.http.post("/api/v1/deposits/address", json=body, headers=s.auth("alice"))
        (eth,) = r.json()["assets"]
        tx = eth["deposit"]
        assert eth["approve"] is None and tx["value"] == E18 // 4 and tx["from"] == ch.alice
        receipt = await asyncio.to_thread(send_dev, ch.w3, _params(tx))
        (event,) = ch.vault.receipt_events(receipt)
        assert (event.account, event.amount) == ("alice", E18 // 4)  # type: ignore[union-attr]
        r = await s.http.post(
            "/api/v1/deposits/address",
            json={"amount": "1", "from": ch.alice},
            headers=s.auth("alice"),
        )
        assert error_of(r)["reason"] == "missing"


async def test_bad_requests_and_no_answer(
    nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORRANGE_CHAIN_URL", raising=False)
    async with funds_stack(nats_url, database_url, risk=False, chain=False) as (s, ch, _):
        a = s.auth("alice")
        to = ch.bob
        for body, field, reason in [
            ({"asset": "DOGE", "amount": "1", "to": to}, "asset", "unknown_asset"),
            ({"asset": "ETH", "amount": "0", "to": to}, "amount", "invalid_amount"),
            ({"asset": "ETH", "amount": "-1", "to": to}, "amount", "invalid_amount"),
            ({"asset": "ETH", "amount": "1e-19", "to": to}, "amount", "invalid_amount"),
            ({"asset": "ETH", "amount": "lots", "to": to}, "amount", "invalid_amount"),
            ({"asset": "ETH", "amount": "1", "to": "0x1234"}, "to", "invalid_address"),
            (
                {"asset": "ETH", "amount": "1", "to": "0x" + to[2:].swapcase()},
                "to",
                "invalid_address",
            ),
            ({"asset": "ETH", "amount": "1", "to": to, "expiry_s": 5}, "expiry_s", "invalid_value"),
            ({"asset": "ETH", "amount": "1"}, "to", "missing"),
        ]:
            r = await s.http.post("/api/v1/withdrawals", json=body, headers=a)
            assert r.status_code == 400, (body, r.text)
            err = error_of(r)
            assert (err["field"], err["reason"]) == (field, reason), body
        for url, field in [
            ("/api/v1/ledger?kind=teleport", "kind"),
            ("/api/v1/ledger?asset=DOGE", "asset"),
            ("/api/v1/ledger?before=%21%21", "before"),
            ("/api/v1/withdrawals?status=lost", "status"),
            ("/api/v1/withdrawals?before=%21%21", "before"),
        ]:
            r = await s.http.get(url, headers=a)
            assert r.status_code == 400 and error_of(r)["field"] == field, (url, r.text)
        r = await s.http.post("/api/v1/deposits/address", json={}, headers=a)
        assert r.status_code == 503 and error_of(r)["field"] == "chain"
        # nobody decides: 504 naming where to look
        r = await s.http.post(
            "/api/v1/withdrawals", json={"asset": "ETH", "amount": "1", "to": to}, headers=a
        )
        assert r.status_code == 504 and "GET /api/v1/withdrawals/0x" in error_of(r)["message"]
