"""A thin typed layer over web3.py for the escrow and test-token contracts.

Everything here is synchronous web3.py (an actor runs it in a worker thread). It does four
things:

- load the committed artifacts (:func:`load_artifact`) and deploy them
  (:meth:`Escrow.deploy`, :meth:`Token.deploy`);
- build **unsigned** transactions for each escrow step (:class:`UnsignedTx`, for a user's
  wallet to sign; gas is estimated, so a step the contract would refuse raises
  :class:`TransactionRejected` with the revert reason before anything is signed);
- send a transaction from an account the node holds (:func:`send_dev`, development mode
  only: eth-tester's or anvil's unlocked accounts);
- decode the escrow's logs into :mod:`orrange.settlement.events` structs
  (:meth:`Escrow.decode_logs`, :meth:`Escrow.events`).

Amounts are exact integers (wei or token base units), deadlines unix seconds, trade ids
32 raw bytes on the way in and ``0x`` hex in events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any, Generic, TypeVar, cast

import msgspec
from eth_utils import to_checksum_address
from web3 import Web3
from web3.exceptions import ContractLogicError
from web3.types import TxParams, TxReceipt

from orrange.settlement.events import (
    ZERO_ADDRESS,
    ChainEvent,
    EscrowDisputed,
    EscrowFunded,
    EscrowPaid,
    EscrowReclaimed,
    EscrowReleased,
    EscrowResolved,
)

__all__ = [
    "Artifact",
    "ChainError",
    "Deal",
    "DealState",
    "Escrow",
    "EscrowConfig",
    "Token",
    "TransactionRejected",
    "TransactionReverted",
    "UnsignedTx",
    "build_call",
    "connect",
    "load_artifact",
    "send_dev",
]


class ChainError(Exception):
    """Base of the errors raised by this module."""


class TransactionRejected(ChainError):
    """The node refused the call: the contract would revert (``reason`` is its message,
    e.g. ``"not seller"``) or the transaction is otherwise invalid."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransactionReverted(ChainError):
    """The transaction was mined but reverted (receipt status 0)."""

    def __init__(self, tx_hash: str) -> None:
        super().__init__(f"transaction {tx_hash} reverted")
        self.tx_hash = tx_hash


def _revert_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ContractLogicError]
    try:  # eth-tester raises its own error in process instead of a JSON-RPC error
        from eth_tester.exceptions import TransactionFailed
    except ImportError:  # without the contracts extra: JSON-RPC nodes only
        pass
    else:
        errors.append(TransactionFailed)
    return tuple(errors)


_REVERTS = _revert_errors()


def _reason(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    for prefix in ("execution reverted: ", "execution reverted:"):
        if text.startswith(prefix):
            return text[len(prefix) :].strip()
    return text


class Artifact(msgspec.Struct, frozen=True):
    """A compiled contract: ``abi`` (JSON ABI list) and creation ``bytecode`` (``0x`` hex)."""

    contract: str
    compiler: str
    evm_version: str
    source_sha256: str
    abi: list[dict[str, Any]]
    bytecode: str
    bytecode_runtime: str


@cache
def load_artifact(name: str) -> Artifact:
    """The committed artifact ``contracts/build/<name>.json`` (``"Escrow"`` or
    ``"TestToken"``), read as package data; raises ``FileNotFoundError`` when absent."""
    path = resources.files("orrange.evm") / "contracts" / "build" / f"{name}.json"
    return msgspec.json.decode(path.read_bytes(), type=Artifact)


def connect(url: str, timeout_s: float = 30.0) -> Web3:
    """A :class:`Web3` over HTTP JSON-RPC at ``url`` (e.g. ``http://127.0.0.1:8545``)."""
    return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout_s}))


class UnsignedTx(msgspec.Struct, frozen=True, kw_only=True, rename={"sender": "from"}):
    """An EIP-1559 transaction ready for the sender's wallet to sign.

    ``sender``/``to`` checksummed addresses (``sender`` encodes as ``"from"``; ``to`` is
    ``None`` for a contract creation), ``data`` ``0x`` hex calldata, ``value`` wei, ``gas``
    units, fees wei per gas.
    """

    sender: str
    to: str | None
    data: str
    value: int
    chain_id: int
    nonce: int
    gas: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int

    def to_params(self) -> TxParams:
        """The web3.py ``TxParams`` dict (for ``sign_transaction`` or ``send_transaction``)."""
        params: dict[str, Any] = {
            "from": self.sender,
            "data": self.data,
            "value": self.value,
            "chainId": self.chain_id,
            "nonce": self.nonce,
            "gas": self.gas,
            "maxFeePerGas": self.max_fee_per_gas,
            "maxPriorityFeePerGas": self.max_priority_fee_per_gas,
        }
        if self.to is not None:
            params["to"] = self.to
        return cast(TxParams, params)


def build_call(w3: Web3, call: Any, sender: str, value: int = 0) -> UnsignedTx:
    """The unsigned transaction for a web3.py contract call or constructor ``call`` sent by
    ``sender`` with ``value`` wei: next pending nonce, estimated gas, the node's current
    EIP-1559 fees. Raises :class:`TransactionRejected` with the revert reason when the
    contract would refuse it."""
    sender = to_checksum_address(sender)
    try:
        tx = call.build_transaction(
            {
                "from": sender,
                "value": value,
                "nonce": w3.eth.get_transaction_count(sender, "pending"),
            }
        )
    except _REVERTS as exc:
        raise TransactionRejected(_reason(exc)) from exc
    return UnsignedTx(
        sender=sender,
        to=to_checksum_address(tx["to"]) if tx.get("to") else None,
        data=str(tx["data"]),
        value=int(tx.get("value", 0)),
        chain_id=int(tx["chainId"]),
        nonce=int(tx["nonce"]),
        gas=int(tx["gas"]),
        max_fee_per_gas=int(tx["maxFeePerGas"]),
        max_priority_fee_per_gas=int(tx["maxPriorityFeePerGas"]),
    )


def send_dev(w3: Web3, tx: UnsignedTx | TxParams, timeout_s: float = 30.0) -> TxReceipt:
    """Development mode only: send ``tx`` from an account the node holds unlocked
    (``eth_sendTransaction``) and wait for its receipt.

    Raises :class:`TransactionRejected` when the node refuses it (a revert caught before
    mining) and :class:`TransactionReverted` when it is mined with status 0.
    """
    params = tx.to_params() if isinstance(tx, UnsignedTx) else tx
    try:
        tx_hash = w3.eth.send_transaction(params)
    except _REVERTS as exc:
        raise TransactionRejected(_reason(exc)) from exc
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout_s)
    if receipt["status"] != 1:
        raise TransactionReverted("0x" + bytes(tx_hash).hex())
    return receipt


def _deploy(w3: Web3, name: str, deployer: str, *args: Any) -> str:
    art = load_artifact(name)
    factory = w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    receipt = send_dev(w3, build_call(w3, factory.constructor(*args), deployer))
    address = receipt["contractAddress"]
    if address is None:  # pragma: no cover - a successful creation always has one
        raise ChainError(f"{name}: no contract address in the receipt")
    return to_checksum_address(address)


class DealState:
    """The escrow contract's per-trade states (``Deal.state``)."""

    EMPTY = 0
    FUNDED = 1
    PAID = 2
    DISPUTED = 3
    RELEASED = 4
    RESOLVED = 5
    RECLAIMED = 6


class Deal(msgspec.Struct, frozen=True, kw_only=True):
    """The contract's record of one trade (all zero for an unused trade id); ``state`` is
    a :class:`DealState` value."""

    seller: str
    buyer: str
    token: str
    amount: int
    fee_bps: int
    payment_deadline: int
    state: int


class EscrowConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The contract's ``owner``, ``mediator``, ``fee_recipient`` and current ``fee_bps``."""

    owner: str
    mediator: str
    fee_recipient: str
    fee_bps: int


_E = TypeVar("_E")


def _hex(value: Any) -> str:
    if isinstance(value, str):
        return value.lower() if value.startswith("0x") else "0x" + value.lower()
    return "0x" + bytes(value).hex()


_ESCROW_EVENTS: dict[str, type[ChainEvent]] = {
    "Funded": EscrowFunded,
    "MarkedPaid": EscrowPaid,
    "Released": EscrowReleased,
    "Disputed": EscrowDisputed,
    "Resolved": EscrowResolved,
    "Reclaimed": EscrowReclaimed,
}
"""The escrow's trade-step events by ABI name; each struct's fields are the event's arguments
plus where the log was found."""


class _EventSpec(Generic[_E]):
    __slots__ = ("data_names", "data_types", "decode", "indexed_names", "indexed_types")

    def __init__(self, abi: dict[str, Any], decode: type[_E]) -> None:
        inputs = abi["inputs"]
        self.indexed_names = [i["name"] for i in inputs if i["indexed"]]
        self.indexed_types = [i["type"] for i in inputs if i["indexed"]]
        self.data_names = [i["name"] for i in inputs if not i["indexed"]]
        self.data_types = [i["type"] for i in inputs if not i["indexed"]]
        self.decode = decode


def _topic0(abi: dict[str, Any]) -> str:
    signature = f"{abi['name']}({','.join(i['type'] for i in abi['inputs'])})"
    return "0x" + Web3.keccak(text=signature).hex().removeprefix("0x")


def _event_specs(
    abi: list[dict[str, Any]], structs: Mapping[str, type[_E]]
) -> dict[str, _EventSpec[_E]]:
    """``{topic0: spec}`` for the ABI's events that ``structs`` (by event name) decode into."""
    return {
        _topic0(e): _EventSpec(e, structs[e["name"]])
        for e in abi
        if e["type"] == "event" and e["name"] in structs
    }


def _decode_logs(
    w3: Web3,
    address: str,
    specs: Mapping[str, _EventSpec[_E]],
    logs: Iterable[Mapping[str, Any]],
) -> list[_E]:
    """Decode the logs that ``address`` emitted with an event of ``specs``, in the given
    order, into each spec's struct built from the event's arguments (addresses checksummed,
    ``bytes32`` as ``0x`` + 64 lower-case hex digits) plus ``block_number``, ``block_hash``,
    ``tx_hash`` (``0x`` lower-case hex) and ``log_index``. Raises ``KeyError`` for a log
    missing its ``blockHash``/``transactionHash`` (a pending log)."""
    out: list[_E] = []
    codec = w3.codec
    for log in logs:
        if to_checksum_address(log["address"]) != address or not log["topics"]:
            continue
        spec = specs.get(_hex(log["topics"][0]))
        if spec is None:
            continue
        topics = log["topics"][1:]
        args: dict[str, Any] = {}
        for name, typ, topic in zip(spec.indexed_names, spec.indexed_types, topics):
            (args[name],) = codec.decode([typ], bytes(topic))
        data = log["data"]
        raw = bytes.fromhex(data[2:]) if isinstance(data, str) else bytes(data)
        args.update(zip(spec.data_names, codec.decode(spec.data_types, raw)))
        for key, value in args.items():
            if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
                args[key] = to_checksum_address(value)
            elif isinstance(value, bytes):
                args[key] = _hex(value)
        args.update(
            block_number=int(log["blockNumber"]),
            block_hash=_hex(log["blockHash"]),
            tx_hash=_hex(log["transactionHash"]),
            log_index=int(log["logIndex"]),
        )
        out.append(spec.decode(**args))
    return out


def _get_logs(w3: Web3, address: str, from_block: int, to_block: int | str) -> list[Any]:
    """``eth_getLogs`` of ``address`` in blocks ``from_block..to_block`` (inclusive)."""
    return list(
        w3.eth.get_logs(
            {
                "address": to_checksum_address(address),
                "fromBlock": from_block,
                "toBlock": cast(Any, to_block),
            }
        )
    )


class Escrow:
    """A deployed escrow contract at ``address`` reached through ``w3``."""

    def __init__(self, w3: Web3, address: str) -> None:
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.contract = w3.eth.contract(address=self.address, abi=load_artifact("Escrow").abi)
        self._specs = _event_specs(load_artifact("Escrow").abi, _ESCROW_EVENTS)

    @classmethod
    def deploy(
        cls, w3: Web3, deployer: str, *, mediator: str, fee_recipient: str, fee_bps: int
    ) -> Escrow:
        """Deploy from the node-held ``deployer`` account (development mode). ``fee_bps`` is
        0..1000. Raises :class:`TransactionRejected` for a zero address or a fee over 1000."""
        return cls(w3, _deploy(w3, "Escrow", deployer, mediator, fee_recipient, fee_bps))

    # -- unsigned transactions, one per step ------------------------------------------------

    def fund_tx(
        self,
        seller: str,
        trade_id: bytes,
        *,
        buyer: str,
        amount: int,
        payment_deadline: int,
        token: str = ZERO_ADDRESS,
    ) -> UnsignedTx:
        """The seller locks ``amount`` for ``buyer`` until ``payment_deadline`` (unix s).
        ETH when ``token`` is the zero address (the tx carries ``value=amount``); for an
        ERC-20 the seller must first approve the escrow (:meth:`Token.approve_tx`)."""
        value = amount if int(token, 16) == 0 else 0
        call = self.contract.functions.fund(trade_id, buyer, token, amount, payment_deadline)
        return build_call(self.w3, call, seller, value)

    def mark_paid_tx(self, buyer: str, trade_id: bytes) -> UnsignedTx:
        """The buyer marks the off-chain payment made (before the payment deadline)."""
        return build_call(self.w3, self.contract.functions.mark_paid(trade_id), buyer)

    def release_tx(self, seller: str, trade_id: bytes) -> UnsignedTx:
        """The seller releases the amount, less the fee, to the buyer."""
        return build_call(self.w3, self.contract.functions.release(trade_id), seller)

    def dispute_tx(self, party: str, trade_id: bytes) -> UnsignedTx:
        """The buyer or the seller opens a dispute (after the paid mark)."""
        return build_call(self.w3, self.contract.functions.dispute(trade_id), party)

    def resolve_tx(self, mediator: str, trade_id: bytes, buyer_bps: int) -> UnsignedTx:
        """The mediator gives the buyer ``buyer_bps`` (0..10000) of a disputed deal."""
        return build_call(self.w3, self.contract.functions.resolve(trade_id, buyer_bps), mediator)

    def reclaim_tx(self, seller: str, trade_id: bytes) -> UnsignedTx:
        """The seller takes back a deal never marked paid, after its payment deadline."""
        return build_call(self.w3, self.contract.functions.reclaim(trade_id), seller)

    def set_config_tx(
        self, owner: str, *, mediator: str, fee_recipient: str, fee_bps: int
    ) -> UnsignedTx:
        """The owner changes mediator, fee recipient and fee (for deals funded later)."""
        call = self.contract.functions.set_config(mediator, fee_recipient, fee_bps)
        return build_call(self.w3, call, owner)

    # -- reads ---------------------------------------------------------------------------------

    def deal(self, trade_id: bytes) -> Deal:
        """The contract's record for ``trade_id`` (state ``DealState.EMPTY`` when unused)."""
        seller, buyer, token, amount, fee_bps, deadline, state = self.contract.functions.deals(
            trade_id
        ).call()
        return Deal(
            seller=seller,
            buyer=buyer,
            token=token,
            amount=amount,
            fee_bps=fee_bps,
            payment_deadline=deadline,
            state=state,
        )

    def config(self) -> EscrowConfig:
        """Owner, mediator, fee recipient and fee now in force."""
        f = self.contract.functions
        return EscrowConfig(
            owner=f.owner().call(),
            mediator=f.mediator().call(),
            fee_recipient=f.fee_recipient().call(),
            fee_bps=f.fee_bps().call(),
        )

    # -- events --------------------------------------------------------------------------------

    def decode_logs(self, logs: Iterable[Mapping[str, Any]]) -> list[ChainEvent]:
        """Decode raw logs (``eth_getLogs`` or receipt ``logs`` entries) into chain events in
        the given order. Logs of other contracts and escrow logs that are not trade steps
        (``ConfigChanged``) are skipped. Raises ``KeyError`` for a log missing its
        ``blockHash``/``transactionHash`` (a pending log)."""
        return _decode_logs(self.w3, self.address, self._specs, logs)

    def events(self, from_block: int, to_block: int | str = "latest") -> list[ChainEvent]:
        """The escrow's trade events in blocks ``from_block..to_block`` (inclusive), in
        chain order (``eth_getLogs``)."""
        return self.decode_logs(_get_logs(self.w3, self.address, from_block, to_block))

    def receipt_events(self, receipt: TxReceipt) -> list[ChainEvent]:
        """The escrow events in one transaction receipt."""
        return self.decode_logs(cast(Iterable[Mapping[str, Any]], receipt["logs"]))


class Token:
    """A deployed ERC-20 (the project's ``TestToken`` or any standard token)."""

    def __init__(self, w3: Web3, address: str) -> None:
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.contract = w3.eth.contract(address=self.address, abi=load_artifact("TestToken").abi)

    @classmethod
    def deploy(
        cls,
        w3: Web3,
        deployer: str,
        *,
        name: str = "Test USD",
        symbol: str = "TUSD",
        decimals: int = 18,
    ) -> Token:
        """Deploy a ``TestToken`` (development mode); ``deployer`` becomes its minter."""
        return cls(w3, _deploy(w3, "TestToken", deployer, name, symbol, decimals))

    def mint_tx(self, owner: str, to: str, amount: int) -> UnsignedTx:
        """TestToken only: the owner mints ``amount`` base units to ``to``."""
        return build_call(self.w3, self.contract.functions.mint(to, amount), owner)

    def approve_tx(self, holder: str, spender: str, amount: int) -> UnsignedTx:
        """``holder`` allows ``spender`` (the escrow) to pull ``amount`` base units."""
        return build_call(self.w3, self.contract.functions.approve(spender, amount), holder)

    def balance_of(self, holder: str) -> int:
        """``holder``'s balance in base units."""
        return int(self.contract.functions.balanceOf(to_checksum_address(holder)).call())
