"""The risk actor: pre-trade checks between the API's ``CMD`` and the books' ``BOOK_IN``.

Inputs (durable pull consumers, one process reads each):

* ``risk`` on ``CMD`` (``cmd.order.<SYM>``): every command is decided by the pure
  :class:`~orrange.risk.RiskEngine`. The commands of a fetched batch that pass are forwarded
  unchanged (the original bytes), per symbol as **one** ``book.in.<SYM>`` message of
  ``[cmd_seq, command]`` pairs (``cmd_seq`` = the ``CMD`` stream sequence; messages split only
  above :data:`~orrange.wire.engine.BOOK_IN_MAX_BYTES`), ``Nats-Msg-Id``
  ``in:<SYM>:<first cmd_seq>-<last cmd_seq>`` (:func:`~orrange.wire.engine.book_in_msg_id`).
  A refused one is answered by an :class:`~orrange.matching.events.OrderRejected` (``seq = 0``)
  on ``rej.<SYM>`` with ``Nats-Msg-Id`` ``rej:<input id>`` (the input's ``Nats-Msg-Id``, or
  ``CMD:<stream seq>`` when it had none).
* ``risk-events`` on ``EVENTS`` (``evt.<SYM>``, batches of events): the books' events keep the
  per-user open-order counts and the last trade prices up to date.

Client order ids: a passing submit with a non-empty ``client_order_id`` (other than an
API-generated ``~`` + UUID4) first claims the key ``<user>.<client_order_id>`` (escaped by
:func:`~orrange.risk.client_order_key`) create-only in the JetStream KV bucket
``client_orders`` (value: the ``CMD`` stream sequence); a later submit with the same pair gets
``OrderRejected(reason=duplicate_client_order_id)``.

Errors: bad input (undecodable JSON, unknown command type) goes to ``dlq.risk`` and never stops
the actor.

Idempotency and restart across ``kill -9``: ``docs/actors.md`` (Risk). The process is
``orrange actor risk`` (:mod:`actors.risk`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from nats.js import api as js_api
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from orrange.engine._ledger_log import LedgerLog
from orrange.evm.vault import Withdrawal, sign_withdrawal
from orrange.ledger import AssetSpec, Entry, Funds, FundsError, FundsMarket
from orrange.markets import MarketSpec
from orrange.matching.commands import AmendOrder, CancelOrder, Command, SubmitOrder
from orrange.matching.enums import RejectReason
from orrange.matching.events import Event, OrderRejected
from orrange.risk import (
    RiskEngine,
    RiskLimits,
    client_order_key,
    is_generated_client_order_id,
    reject,
)
from orrange.runtime import (
    MSG_ID_HEADER,
    Actor,
    ActorConfig,
    Inbound,
    Input,
    Outbox,
    Publisher,
    PublishError,
)
from orrange.wire.engine import (
    CLIENT_ORDERS_BUCKET,
    CLIENT_ORDERS_KV_PREFIX,
    CMD,
    CMD_PREFIX,
    ENGINE_STREAMS,
    EVENTS,
    EVENTS_PREFIX,
    RISK_DURABLE,
    RISK_EVENTS_DURABLE,
    EventPayload,
    book_in_messages,
    book_in_msg_id,
    book_in_subject,
    cmd_subject,
    command_msg_id,
    events_subject,
    rejection_msg_id,
    rejects_subject,
    seq_id,
)
from orrange.wire.funds import (
    FUNDS,
    FUNDS_PREFIX,
    FUNDS_STREAMS,
    RISK_FUNDS_DURABLE,
    DepositConfirmed,
    DepositReversed,
    FundsMessage,
    WithdrawalConfirmed,
    WithdrawalDecision,
    WithdrawalExpired,
    WithdrawalRequest,
)
from orrange.wire.spec import ConsumerSpec, StreamSpec

__all__ = [
    "ClaimError",
    "FundsOptions",
    "RiskActor",
]

#: JetStream's error code for a failed expected-last-sequence check (the key exists).
_WRONG_LAST_SEQUENCE = "10071"
#: Attempts of one batch's client order id claims before the batch handler gives up.
_CLAIM_ATTEMPTS = 3

_event_decoder = msgspec.json.Decoder(EventPayload)
_command_encoder = msgspec.json.Encoder()
_ZERO_ADDRESS = "0x" + "00" * 20


class FundsOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The funds risk keeps (docs/funds.md): the vault assets and the withdrawal signer.

    Attributes:
        assets: the vault assets by code (``config/assets.toml``).
        vault_address: the vault contract (0x hex); empty: withdrawals are refused.
        chain_id: the chain of the vault (EIP-712 domain).
        signer_key: the private key (0x hex) of the vault's signer; empty: withdrawals are
            refused.
        snapshot_every: ledger entries between two snapshots; snapshot_interval_ms: or ms.
    """

    assets: dict[str, AssetSpec]
    vault_address: str = ""
    chain_id: int = 0
    signer_key: str = ""
    snapshot_every: int = 10_000
    snapshot_interval_ms: int = 10_000


class ClaimError(RuntimeError):
    """Client order ids could not be claimed in the ``client_orders`` bucket (JetStream did not
    answer, or answered with an error other than "key exists")."""


class RiskActor(Actor):
    """The risk actor (see the module docstring).

    Args:
        config: actor configuration (name ``risk`` by convention).
        markets: market specs by symbol; commands for other symbols are rejected with
            ``unknown_market``.
        limits: per-user limits (default :class:`~orrange.risk.RiskLimits`).
        symbols: restrict both inputs to these symbols' subjects; None reads every
            ``cmd.order.>`` and ``evt.>`` subject (a single risk process for the engine).
        durable: durable consumer name on ``CMD``.
        events_durable: durable consumer name on ``EVENTS``.
        funds: the funds to keep (None: no market is funded, as for replays); the markets'
            ``settlement`` then says which orders are held (docs/funds.md).

    Raises:
        ValueError: a symbol of ``symbols`` has no market spec, or a funded market whose
            assets are not in ``funds.assets`` or whose grid is not whole base units.
    """

    def __init__(
        self,
        config: ActorConfig,
        markets: Mapping[str, MarketSpec],
        *,
        limits: RiskLimits | None = None,
        symbols: Sequence[str] | None = None,
        durable: str = RISK_DURABLE,
        events_durable: str = RISK_EVENTS_DURABLE,
        funds: FundsOptions | None = None,
    ) -> None:
        super().__init__(config)
        if symbols is not None:
            missing = [s for s in symbols if s not in markets]
            if missing:
                raise ValueError(f"no market spec for {', '.join(missing)}")
        self.engine = RiskEngine(markets, limits)
        self.symbols: tuple[str, ...] | None = tuple(symbols) if symbols is not None else None
        self.durable = durable
        self.events_durable = events_durable
        self._events_start_seq = 1
        self._cmd_start_seq: int | None = None
        self._kv: KeyValue | None = None
        self._claimer_pub: Publisher | None = None
        self._event_seqs: dict[str, int] = {}  # last event seq applied per symbol
        self.funds_options = funds
        self._funds_markets: list[FundsMarket] = []
        if funds is not None:
            hosted = markets if symbols is None else {s: markets[s] for s in symbols}
            self._funds_markets = [
                FundsMarket.build(spec, funds.assets, spec.settlement) for spec in hosted.values()
            ]
        self.funds: Funds | None = None
        self._ledger: LedgerLog | None = None
        self._funds_start_seq = 1

    # ------------------------------------------------------------------ wiring
    def streams(self) -> Sequence[StreamSpec]:
        """``CMD``, ``BOOK_IN``, ``EVENTS`` and ``REJECTS``; ``FUNDS`` and ``LEDGER`` when it
        keeps funds."""
        return ENGINE_STREAMS if self.funds_options is None else (*ENGINE_STREAMS, *FUNDS_STREAMS)

    def _cmd_filters(self) -> tuple[str, ...]:
        if self.symbols is None:
            return (f"{CMD_PREFIX}.>",)
        return tuple(cmd_subject(s) for s in self.symbols)

    def _event_filters(self) -> tuple[str, ...]:
        if self.symbols is None:
            return (f"{EVENTS_PREFIX}.>",)
        return tuple(events_subject(s) for s in self.symbols)

    def inputs(self) -> Sequence[Input[Any]]:
        """Commands (``risk`` on ``CMD``, resumed right after its ack floor) and events
        (``risk-events`` on ``EVENTS``, recreated at the first event after the replay of
        :meth:`on_start`)."""
        cmd = ConsumerSpec(
            stream=CMD.name,
            durable=self.durable,
            filter_subjects=self._cmd_filters(),
            ack_wait_ms=self.config.ack_wait_ms,
            ack_policy="all",
            start_seq=self._cmd_start_seq,
            recreate=self._cmd_start_seq is not None,
            description="risk: commands to check",
        )
        evt = ConsumerSpec(
            stream=EVENTS.name,
            durable=self.events_durable,
            filter_subjects=self._event_filters(),
            ack_wait_ms=self.config.ack_wait_ms,
            ack_policy="all",
            start_seq=self._events_start_seq,
            recreate=True,
            description="risk: book events (open orders, last prices)",
        )
        inputs: list[Input[Any]] = [
            Input(cmd, Command, self.on_commands),
            Input(evt, EventPayload, self.on_events),
        ]
        if self.funds_options is not None:
            funds = ConsumerSpec(
                stream=FUNDS.name,
                durable=RISK_FUNDS_DURABLE,
                filter_subjects=(f"{FUNDS_PREFIX}.>",),
                ack_wait_ms=self.config.ack_wait_ms,
                ack_policy="all",
                start_seq=self._funds_start_seq,
                recreate=True,
                description="risk: deposits, withdrawals (into the ledger)",
            )
            inputs.append(Input(funds, FundsMessage, self.on_funds))
        return inputs

    async def on_start(self) -> None:
        """Open (or create) the ``client_orders`` bucket and rebuild state from ``EVENTS``."""
        try:
            self._kv = await self.js.key_value(CLIENT_ORDERS_BUCKET)
        except BucketNotFoundError:
            self._kv = await self.js.create_key_value(
                js_api.KeyValueConfig(
                    bucket=CLIENT_ORDERS_BUCKET,
                    history=1,
                    storage=js_api.StorageType.FILE,
                    description="risk: <user>.<client_order_id> -> CMD stream sequence",
                )
            )
        self._claimer_pub = self._new_claimer()
        opts = self.funds_options
        if opts is not None:
            cfg = self.config
            self._ledger = LedgerLog(
                self.nc,
                self.js,
                self.log,
                publish_timeout_ms=cfg.publish_timeout_ms,
                snapshot_every=opts.snapshot_every,
                snapshot_interval_ms=opts.snapshot_interval_ms,
            )
            markets, assets = self._funds_markets, opts.assets
            self.funds = await self._ledger.load(
                lambda b: Funds(markets, assets) if b is None else Funds.restore(markets, assets, b)
            )
            self._funds_start_seq = self.funds.funds_seq + 1
        self._pending_entries: list[Entry] = []
        self._events_start_seq = await self._replay_events()
        if self._ledger is not None:
            # the settlements of events that the log did not hold yet (risk stopped before)
            await self._store(self._pending_entries)
            self._pending_entries = []
        self._cmd_start_seq = await self._resume_commands()

    async def _resume_commands(self) -> int | None:
        """The CMD sequence after the ``risk`` consumer's ack floor, or None if it is new.

        Recreating the consumer there keeps the commands in stream order after a crash (the
        unacked ones of a dead process would otherwise come back only after ``ack_wait_ms``,
        behind newer ones); the repeated forwards carry their original ``Nats-Msg-Id``.
        """
        try:
            info = await self.js.consumer_info(CMD.name, self.durable)
        except NotFoundError:
            return None
        return int(info.ack_floor.stream_seq or 0) + 1 if info.ack_floor else 1

    async def _replay_events(self) -> int:
        """Apply every stored event of the hosted symbols; returns the next EVENTS sequence."""
        info = await self.js.stream_info(EVENTS.name)
        last = int(info.state.last_seq)
        if int(info.state.messages) == 0:
            return last + 1
        wanted = None if self.symbols is None else {events_subject(s) for s in self.symbols}
        done = asyncio.Event()
        applied = 0

        async def on_msg(msg: Any) -> None:
            nonlocal applied
            meta = msg.metadata
            seq = meta.sequence.stream
            if seq > last:  # newer than the replay: the durable consumer delivers it
                done.set()
                return
            if wanted is None or msg.subject in wanted:
                try:
                    applied += self._apply(_event_decoder.decode(msg.data))
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    self.log.warning(
                        "undecodable event skipped in replay",
                        subject=msg.subject,
                        seq=seq,
                        error=str(exc),
                    )
            if seq >= last or meta.num_pending == 0:
                done.set()

        sub = await self.js.subscribe(
            f"{EVENTS_PREFIX}.>",
            stream=EVENTS.name,
            cb=on_msg,
            ordered_consumer=True,
            deliver_policy=js_api.DeliverPolicy.ALL,
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )
        try:
            await done.wait()
        finally:
            await sub.unsubscribe()
        self.log.info("state rebuilt from EVENTS", events=applied, last_seq=last)
        return last + 1

    # ------------------------------------------------------------------ handlers
    def _apply(self, data: Event | list[Event]) -> int:
        """Apply the events of one ``evt.<SYM>`` message that are new; returns how many."""
        events = data if isinstance(data, list) else [data]
        if not events:
            return 0
        symbol = events[0].symbol
        last = self._event_seqs.get(symbol, 0)
        apply = self.engine.apply
        n = 0
        for e in events:
            if e.seq > last:
                apply(e)
                last = e.seq
                n += 1
        self._event_seqs[symbol] = last
        if self.funds is not None:
            self._pending_entries.extend(self.funds.on_events(symbol, events))
        return n

    async def on_events(self, batch: Sequence[Inbound[Event | list[Event]]], out: Outbox) -> None:
        """Apply a batch of ``evt.<SYM>`` messages to the risk state; with funds, settle them
        (fills, fees, releases) and store the entries on ``LEDGER`` before acking."""
        if self._ledger is None:
            for msg in batch:
                self._apply(msg.data)
            return
        async with self._ledger.lock:
            for msg in batch:
                self._apply(msg.data)
            entries, self._pending_entries = self._pending_entries, []
            await self._store(entries)

    async def _store(self, entries: Sequence[Entry], decisions: Sequence[Any] = ()) -> None:
        """Store entries (one ``LEDGER`` message per source) and decisions; snapshot when due.
        Call under the ledger lock."""
        log = self._ledger
        if log is None or self.funds is None:
            return
        by_source: dict[str, list[Entry]] = {}
        for e in entries:
            by_source.setdefault(e.source, []).append(e)
        for source, group in by_source.items():
            await log.store(source, group)
        if decisions:
            await log.store("funds", (), decisions)
        if log.snapshot_due():
            await log.snapshot(self.funds)

    async def on_commands(self, batch: Sequence[Inbound[Command]], out: Outbox) -> None:
        """Decide a batch of commands; forward, claim client order ids, or reject.

        Raises:
            ClaimError: the ``client_orders`` bucket could not be written after retries (the
                runtime then retries the commands one at a time and dead-letters what still
                fails).
        """
        engine = self.engine
        prefix_len = len(CMD_PREFIX) + 1
        # (message, symbol, input id, decision) in input order
        decided: list[tuple[Inbound[Command], str, str, Command | OrderRejected]] = []
        claims: list[tuple[int, str, bytes]] = []  # (index in decided, key, value)
        submits: dict[int, SubmitOrder] = {}
        keys: set[str] = set()
        repeats: list[int] = []  # a key claimed earlier in this batch
        for msg in batch:
            symbol = msg.subject[prefix_len:]
            hdrs = msg.headers
            input_id = (hdrs.get(MSG_ID_HEADER) if hdrs else None) or seq_id(
                CMD.name, msg.stream_seq
            )
            result = engine.check(symbol, msg.data)
            if (
                isinstance(result, SubmitOrder)
                and result.client_order_id
                and not is_generated_client_order_id(result.client_order_id)
            ):
                key = client_order_key(result.user, result.client_order_id)
                submits[len(decided)] = result
                if key in keys:
                    repeats.append(len(decided))
                else:
                    keys.add(key)
                    claims.append((len(decided), key, str(msg.stream_seq).encode()))
            decided.append((msg, symbol, input_id, result))
        if claims:
            try:
                taken = await self._claim(claims)
            except Exception:
                for _, _, _, result in decided:
                    if not isinstance(result, OrderRejected):
                        engine.release(result)
                raise
            for index in taken + repeats:
                msg, symbol, input_id, _ = decided[index]
                result = submits[index]
                engine.release(result)
                decided[index] = (
                    msg,
                    symbol,
                    input_id,
                    reject(
                        symbol,
                        result,
                        RejectReason.DUPLICATE_CLIENT_ORDER_ID,
                        f"client order id {result.client_order_id!r} was already used by user "
                        f"{result.user!r}",
                    ),
                )
        payloads = [msg.payload for msg, _, _, _ in decided]
        if self.funds is not None and self._ledger is not None:
            async with self._ledger.lock:
                self._hold(decided, payloads)
                await self._store(self._pending_entries)
                self._pending_entries = []
                self.funds.prune(batch[0].stream_seq)
        forward: dict[str, list[tuple[int, bytes]]] = {}
        for (msg, symbol, input_id, result), payload in zip(decided, payloads, strict=True):
            if isinstance(result, OrderRejected):
                out.publish(rejects_subject(symbol), result, msg_id=rejection_msg_id(input_id))
            else:
                forward.setdefault(symbol, []).append((msg.stream_seq, payload))
        for symbol, items in forward.items():
            subject = book_in_subject(symbol)
            for payload, first, last in book_in_messages(items):
                out.publish(subject, payload, msg_id=book_in_msg_id(symbol, first, last))

    def _hold(
        self,
        decided: list[tuple[Inbound[Command], str, str, Command | OrderRejected]],
        payloads: list[bytes],
    ) -> None:
        """Stage two of the checks (docs/funds.md): hold what each passing submit or amend of
        a funded market needs, in input order, or turn it into an ``insufficient_funds`` /
        ``no_reference_price`` rejection; a held submit is forwarded with its engine order id
        (and protection price). The entries wait in ``_pending_entries`` for the store."""
        funds = self.funds
        assert funds is not None
        engine = self.engine
        for i, (msg, symbol, input_id, result) in enumerate(decided):
            decision: Command | OrderRejected
            if isinstance(result, SubmitOrder):
                decision, entries = funds.submit(
                    symbol, msg.stream_seq, result, engine.last_price.get(symbol)
                )
            elif isinstance(result, AmendOrder):
                decision, entries = funds.amend(symbol, msg.stream_seq, result)
            else:
                continue
            self._pending_entries.extend(entries)
            if decision is result:
                continue
            if isinstance(decision, OrderRejected):
                engine.release(result)
            else:
                payloads[i] = _command_encoder.encode(decision)
            decided[i] = (msg, symbol, input_id, decision)

    async def on_funds(self, batch: Sequence[Inbound[FundsMessage]], out: Outbox) -> None:
        """Apply ``FUNDS`` messages in stream order: confirmed deposits and their reversals
        (orders a reversal no longer covers are canceled through ``CMD``), withdrawal
        requests (held and signed, or refused: a :class:`WithdrawalDecision` on
        ``ledger.withdrawal``), confirmed and expired withdrawals. A message the ledger
        cannot take (unknown asset or deposit, a system account) is dead-lettered."""
        funds, log = self.funds, self._ledger
        assert funds is not None and log is not None
        cancels: list[tuple[str, int, str]] = []
        async with log.lock:
            entries: list[Entry] = []
            decisions: list[WithdrawalDecision] = []
            for msg in batch:
                seq, m = msg.stream_seq, msg.data
                try:
                    if isinstance(m, DepositConfirmed):
                        entries += funds.deposit(
                            seq, m.account, m.asset, m.amount, m.event_id, m.ts
                        )
                    elif isinstance(m, DepositReversed):
                        es, refs = funds.deposit_reversed(seq, m.event_id, m.ts)
                        entries += es
                        for ref in refs:
                            symbol, _, oid = ref.rpartition(":")
                            o = funds.order(symbol, int(oid))
                            if o is not None:
                                cancels.append((symbol, o.order_id, o.user))
                    elif isinstance(m, WithdrawalConfirmed):
                        entries += funds.withdrawal_confirmed(seq, m.withdrawal_id, m.ts)
                    elif isinstance(m, WithdrawalExpired):
                        entries += funds.withdrawal_returned(seq, m.withdrawal_id, m.ts)
                    else:
                        decision = self._withdrawal(seq, m, entries)
                        if decision is not None:
                            decisions.append(decision)
                except FundsError as exc:
                    out.dead_letter(msg, exc)
            await self._store(entries, decisions)
        for symbol, order_id, user in cancels:
            cancel = CancelOrder(ts=int(time.time() * 1000), user=user, order_id=order_id)
            out.publish(
                cmd_subject(symbol),
                cancel,
                msg_id=command_msg_id(user, f"~defunded-{symbol}-{order_id}"),
            )

    def _withdrawal(
        self, seq: int, m: WithdrawalRequest, entries: list[Entry]
    ) -> WithdrawalDecision | None:
        """Hold and sign a withdrawal request, or refuse it; None for a replay of a refusal."""
        funds, opts = self.funds, self.funds_options
        assert funds is not None and opts is not None
        base = WithdrawalDecision(
            withdrawal_id=m.withdrawal_id,
            user=m.user,
            asset=m.asset,
            amount=m.amount,
            to=m.to,
            expiry=m.expiry,
            status="rejected",
            ts=m.ts,
        )
        refuse = msgspec.structs.replace
        asset = opts.assets.get(m.asset)
        if not (opts.signer_key and opts.vault_address) or asset is None:
            why = "no vault signer configured" if asset else f"{m.asset!r} is not a vault asset"
            return refuse(base, reason="withdrawals_unavailable", message=why)
        try:
            wid = bytes.fromhex(m.withdrawal_id.removeprefix("0x"))
            terms = Withdrawal(
                account=m.user,
                token=_ZERO_ADDRESS if asset.token == "native" else asset.token,
                amount=m.amount,
                to=m.to,
                withdrawal_id=wid,
                expiry=m.expiry,
            )
        except ValueError as exc:
            return refuse(base, reason="invalid_withdrawal", message=str(exc))
        result = funds.withdrawal_requested(seq, m.user, m.asset, m.amount, m.withdrawal_id, m.ts)
        if isinstance(result, str):
            reason, _, message = result.partition(": ")
            return refuse(base, reason=reason, message=message)
        if result is None and funds.ledger.hold(m.withdrawal_id) is None:
            return None  # a replayed refusal: its decision is stored already
        if result is not None:
            entries.append(result)
        signature = sign_withdrawal(opts.signer_key, opts.chain_id, opts.vault_address, terms)
        return msgspec.structs.replace(
            base,
            status="authorized",
            token=asset.token,
            vault=opts.vault_address.lower(),
            chain_id=opts.chain_id,
            signature="0x" + signature.hex(),
        )

    async def _claim(self, claims: Sequence[tuple[int, str, bytes]]) -> list[int]:
        """Create each key (create-only, distinct keys); returns the indexes whose key another
        command holds. A key already holding this command's own value (a redelivery) counts
        as claimed. All creates of a call are pipelined (one round trip).

        Raises:
            ClaimError: JetStream failed otherwise, ``_CLAIM_ATTEMPTS`` times.
        """
        kv = self._kv
        if kv is None or self._claimer_pub is None:
            raise ClaimError("client_orders bucket not open (actor not started)")
        headers = {"Nats-Expected-Last-Subject-Sequence": "0"}
        prefix = CLIENT_ORDERS_KV_PREFIX
        pending = list(claims)
        taken: list[int] = []
        error: BaseException | None = None
        for attempt in range(1, _CLAIM_ATTEMPTS + 1):
            pub = self._claimer_pub
            failed: dict[str, str] = {}
            try:
                for _, key, value in pending:
                    await pub.submit(prefix + key, value, msg_id=None, headers=headers)
                await pub.flush()
            except PublishError as exc:
                failed = {subject: reason for subject, _, reason in exc.failures}
                error = exc
            except Exception as exc:  # connection trouble: a fresh publisher, all again
                self._claimer_pub = self._new_claimer()
                failed = {prefix + key: repr(exc) for _, key, _ in pending}
                error = exc
            retry: list[tuple[int, str, bytes]] = []
            for claim in pending:
                index, key, value = claim
                reason = failed.get(prefix + key)
                if reason is None:
                    continue
                if reason.startswith(_WRONG_LAST_SEQUENCE):
                    entry = await kv.get(key)
                    if entry.value != value:
                        taken.append(index)
                else:
                    retry.append(claim)
            if not retry:
                return sorted(taken)
            self.log.warning(
                "client order id claims failed; retrying", failed=len(retry), error=repr(error)
            )
            pending = retry
            await asyncio.sleep(0.1 * attempt)
        raise ClaimError(f"{len(pending)} client order id claim(s) failed: {error!r}")

    def _new_claimer(self) -> Publisher:
        cfg = self.config
        return Publisher(
            self.nc,
            timeout_ms=cfg.publish_timeout_ms,
            max_pending=max(cfg.max_publish_pending, 2 * cfg.batch_size),
        )
