"""Risk's ledger log: ``LEDGER`` as the write-ahead log of :class:`~orrange.ledger.Funds`, and
its snapshots in the KV bucket ``snapshots`` (key ``ledger``).

Every entry the funds create is published (and its ack awaited) before risk acts on it:
before the commands it held for reach ``BOOK_IN``, before the next input is handled. A
restart restores the newest snapshot and applies the ``LEDGER`` entries after it
(:meth:`~orrange.ledger.Funds.replay`), so the ledger is exactly the log.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from nats.js import api as js_api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NoKeysError, NotFoundError
from nats.js.kv import KeyValue

from orrange.ledger import Entry, Funds
from orrange.runtime import Publisher, PublishError
from orrange.wire.engine import SNAPSHOT_BUCKET
from orrange.wire.funds import (
    LEDGER,
    LEDGER_PREFIX,
    LEDGER_SNAPSHOT_KEY,
    LEDGER_WITHDRAWAL_SUBJECT,
    WithdrawalDecision,
    ledger_msg_id,
    ledger_subject,
    withdrawal_decision_msg_id,
)

__all__ = ["LedgerLog", "LedgerSnapshot"]

_entries = msgspec.json.Decoder(list[Entry])


class LedgerSnapshot(msgspec.Struct, frozen=True):
    """Value of key ``ledger`` in ``snapshots`` (msgpack): ``funds`` is
    :meth:`Funds.snapshot` (zlib), ``ledger_seq`` the last ``LEDGER`` stream sequence it
    includes, ``ts_ms`` when it was taken (ms UTC)."""

    ledger_seq: int
    ts_ms: int
    funds: bytes


_snapshot = msgspec.msgpack.Decoder(LedgerSnapshot)


class LedgerLog:
    """Publishes the entries of :class:`Funds` on ``LEDGER`` and snapshots the funds.

    Args:
        js: the JetStream context; ``nc`` its connection (for the publisher).
        log: a structlog logger.
        snapshot_every: entries between two snapshots (>= 1).
        snapshot_interval_ms: ... or ms, with at least one entry.
    """

    def __init__(
        self,
        nc: Any,
        js: Any,
        log: Any,
        *,
        publish_timeout_ms: int = 10_000,
        snapshot_every: int = 10_000,
        snapshot_interval_ms: int = 10_000,
    ) -> None:
        self.nc = nc
        self.js = js
        self.log = log
        self._pub = Publisher(nc, timeout_ms=publish_timeout_ms)
        self._kv: KeyValue | None = None
        self.last_seq = 0  # LEDGER stream sequence of the last message published or replayed
        self._since = 0
        self._at = time.monotonic()
        self._every = snapshot_every
        self._interval_s = snapshot_interval_ms / 1000
        self.lock = asyncio.Lock()
        """Held from creating entries until they are stored, by every handler of risk that
        creates entries, so the log's order is the order they were applied in."""

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self.js.key_value(SNAPSHOT_BUCKET)
            except BucketNotFoundError:
                self._kv = await self.js.create_key_value(
                    js_api.KeyValueConfig(
                        bucket=SNAPSHOT_BUCKET, history=5, storage=js_api.StorageType.FILE
                    )
                )
        return self._kv

    # ------------------------------------------------------------------ restart
    async def load(self, new: Callable[[bytes | None], Funds]) -> Funds:
        """The funds of the newest snapshot (``new(bytes)``, or ``new(None)`` without one)
        with every ``LEDGER`` entry after it replayed; :attr:`last_seq` is then the stream's
        last sequence."""
        kv = await self._bucket()
        funds: Funds | None = None
        try:
            entry = await kv.get(LEDGER_SNAPSHOT_KEY)
            if entry.value:
                snap = _snapshot.decode(entry.value)
                funds = new(zlib.decompress(snap.funds))
                self.last_seq = snap.ledger_seq
        except (KeyNotFoundError, NoKeysError, NotFoundError):
            pass
        if funds is None:
            funds = new(None)
        info = await self.js.stream_info(LEDGER.name)
        last = int(info.state.last_seq)
        replayed = 0
        if last > self.last_seq and int(info.state.messages) > 0:
            replayed = await self._replay(funds, self.last_seq + 1, last)
        self.last_seq = max(self.last_seq, last)
        self.log.info("ledger restored", replayed_entries=replayed, ledger_seq=self.last_seq)
        return funds

    async def _replay(self, funds: Funds, start: int, last: int) -> int:
        done = asyncio.Event()
        applied = 0
        error: BaseException | None = None

        async def on_msg(msg: Any) -> None:
            nonlocal applied, error
            seq = msg.metadata.sequence.stream
            if seq > last:
                done.set()
                return
            if msg.subject != LEDGER_WITHDRAWAL_SUBJECT and error is None:
                try:
                    for e in _entries.decode(msg.data):
                        applied += funds.replay(e)
                except Exception as exc:  # a log the funds cannot apply: stop, do not guess
                    error = exc
                    done.set()
            if seq >= last or msg.metadata.num_pending == 0:
                done.set()

        sub = await self.js.subscribe(
            f"{LEDGER_PREFIX}.>",
            stream=LEDGER.name,
            cb=on_msg,
            ordered_consumer=True,
            config=js_api.ConsumerConfig(
                deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start
            ),
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )
        try:
            await done.wait()
        finally:
            await sub.unsubscribe()
        if error is not None:
            raise RuntimeError(f"the LEDGER log does not apply: {error!r}") from error
        return applied

    # ------------------------------------------------------------------ writing
    async def store(
        self,
        source: str,
        entries: Sequence[Entry],
        decisions: Sequence[WithdrawalDecision] = (),
    ) -> None:
        """Publish ``entries`` (one message, on ``ledger.<source>``) and ``decisions``, and
        wait for their acks, retrying with backoff until JetStream stores them: the funds
        have applied them already, so nothing may go on until the log holds them."""
        if not entries and not decisions:
            return
        delay = 0.05
        while True:
            try:
                if entries:
                    ack = await self._pub.publish(
                        ledger_subject(source),
                        msgspec.json.encode(list(entries)),
                        msg_id=ledger_msg_id(entries[0].id),
                    )
                    self.last_seq = max(self.last_seq, ack.seq)
                for d in decisions:
                    ack = await self._pub.publish(
                        LEDGER_WITHDRAWAL_SUBJECT,
                        d,
                        msg_id=withdrawal_decision_msg_id(d.withdrawal_id),
                    )
                    self.last_seq = max(self.last_seq, ack.seq)
                break
            except (TimeoutError, PublishError, OSError) as exc:
                self.log.error("LEDGER publish failed; retrying", error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self._since += len(entries)

    def snapshot_due(self) -> bool:
        """Whether :meth:`snapshot` should run now (after a batch, under :attr:`lock`)."""
        return self._since >= self._every or (
            self._since > 0 and time.monotonic() - self._at >= self._interval_s
        )

    async def snapshot(self, funds: Funds) -> None:
        """Store ``funds`` with :attr:`last_seq` (call under :attr:`lock`, after
        :meth:`store`, so the snapshot and the log agree)."""
        kv = await self._bucket()
        snap = LedgerSnapshot(
            self.last_seq, int(time.time() * 1000), zlib.compress(funds.snapshot(), 1)
        )
        await kv.put(LEDGER_SNAPSHOT_KEY, msgspec.msgpack.encode(snap))
        self._since = 0
        self._at = time.monotonic()
