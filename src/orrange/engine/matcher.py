"""The matcher actor: the order books of a symbol shard, fed by ``BOOK_IN``, publishing ``EVENTS``.

Input: ``book.in.<SYM>`` through the durable pull consumer ``matcher-<SYM>``, strictly in stream
order. A message is a batch of ``[cmd_seq, command]`` pairs forwarded by risk (or one bare
command; see :mod:`orrange.wire.engine`); a pair whose ``cmd_seq`` is not above the last one
applied to the book is skipped. Every command is applied to the symbol's
:class:`~orrange.matching.OrderBook`.

Output: the events of each ``BOOK_IN`` message as **one** message on ``evt.<SYM>`` (a JSON
array, ``seq`` order, ``Nats-Msg-Id`` ``<SYM>:<first seq>``); the batch is acked once JetStream
acked all of its event messages. Snapshots go to the KV bucket ``snapshots`` (key ``<SYM>``):
the book's :meth:`~orrange.matching.OrderBook.snapshot` with the ``BOOK_IN`` stream sequence and
the last ``cmd_seq`` applied, every ``snapshot_every`` commands or ``snapshot_interval_ms`` and
at a clean stop; at start the newest snapshot not ahead of ``EVENTS`` is restored and
``BOOK_IN`` replayed after it.

Book queries are core NATS request/reply on ``book.query.<SYM>``: the request is empty or
``{"depth": N}`` (JSON), the answer the :class:`~orrange.matching.L2Book` as JSON, or
``{"error": "..."}`` for a malformed request.

Errors: commands that cannot be decoded or applied go to ``dlq.<actor>`` and never stop the
matcher; a failed publish of a batch's events (``publish_timeout_ms``) naks the batch, and the
next batch of that symbol first publishes the events still missing from ``EVENTS``.

Recovery across ``kill -9`` and the replay of missing events: ``docs/actors.md`` (Matcher).
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.js import api as js_api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NoKeysError, NotFoundError
from nats.js.kv import KeyValue

from orrange.markets import MarketSpec
from orrange.matching import Event, OrderBook
from orrange.runtime import Actor, ActorConfig, Inbound, Input, Outbox
from orrange.wire.engine import (
    BOOK_IN,
    EVENTS,
    SNAPSHOT_BUCKET,
    BookInPayload,
    book_in_subject,
    book_query_subject,
    decode_events,
    events_msg_id,
    events_subject,
    matcher_durable,
)
from orrange.wire.spec import ConsumerSpec, StreamSpec

__all__ = [
    "BookQuery",
    "BookQueryError",
    "Matcher",
    "MatcherSnapshot",
    "last_event_seq",
    "load_snapshot",
]

#: Snapshot revisions kept per symbol in the KV bucket (restore falls back to older ones).
SNAPSHOT_HISTORY = 5
#: Events of recently applied BOOK_IN messages kept to re-publish them after a failed publish
#: (at least this many events; whole messages are dropped, oldest first).
_RECENT_EVENTS = 200_000
#: The timer snapshots only after the matcher has handled no batch for this long (s).
_TIMER_IDLE_S = 1.0
#: At most this many events per ``evt.<SYM>`` message when re-publishing.
_REPUBLISH_CHUNK = 2_000


class BookQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Request of ``book.query.<SYM>``: ``depth`` price levels per side (1..1000)."""

    depth: int = 10


class BookQueryError(msgspec.Struct, frozen=True):
    """Answer of ``book.query.<SYM>`` to a malformed request."""

    error: str


class MatcherSnapshot(msgspec.Struct, frozen=True):
    """Value of key ``<SYM>`` in the KV bucket ``snapshots`` (msgpack).

    Attributes:
        symbol: the book's symbol.
        in_seq: ``BOOK_IN`` stream sequence of the last message applied (0: none).
        book_seq: the book's event sequence at that point.
        ts_ms: when the snapshot was taken, ms since the Unix epoch (UTC).
        codec: ``zlib`` (``book`` compressed) or ``none``.
        book: :meth:`OrderBook.snapshot` bytes (msgpack of a ``BookSnapshot``).
        cmd_seq: the ``CMD`` stream sequence of the last command applied (0: none yet).
    """

    symbol: str
    in_seq: int
    book_seq: int
    ts_ms: int
    codec: str
    book: bytes
    cmd_seq: int = 0

    def restore(self, spec: MarketSpec) -> OrderBook:
        """The book this snapshot holds.

        Raises:
            ValueError: unknown codec or a snapshot of another symbol.
            msgspec.DecodeError, zlib.error: corrupt bytes.
        """
        if self.codec == "zlib":
            raw = zlib.decompress(self.book)
        elif self.codec == "none":
            raw = self.book
        else:
            raise ValueError(f"unknown snapshot codec {self.codec!r}")
        return OrderBook.restore(spec, raw)


_snap_decoder = msgspec.msgpack.Decoder(MatcherSnapshot)
_query_decoder = msgspec.json.Decoder(BookQuery)
_json = msgspec.json.Encoder()


async def last_event_seq(js: Any, symbol: str) -> int:
    """The ``seq`` of the last event stored on ``evt.<symbol>`` in ``EVENTS``; 0 when none.

    Raises:
        msgspec.DecodeError: the last message there is not an event.
    """
    try:
        raw = await js.get_last_msg(EVENTS.name, events_subject(symbol))
    except NotFoundError:
        return 0
    events = decode_events(raw.data or b"")
    return events[-1].seq if events else 0


async def load_snapshot(
    kv: KeyValue, spec: MarketSpec, max_book_seq: int
) -> tuple[MatcherSnapshot, OrderBook] | None:
    """The newest snapshot of ``spec.symbol`` whose book sequence is at most ``max_book_seq``,
    with the book it restores.

    Revisions that cannot be decoded or restored are skipped. Returns None when there is none.
    """
    symbol = spec.symbol
    try:
        entries = await kv.history(symbol)
    except (KeyNotFoundError, NoKeysError, NotFoundError):
        return None
    for entry in reversed(entries):
        if not entry.value or entry.operation is not None:
            continue
        try:
            snap = _snap_decoder.decode(entry.value)
            if snap.symbol != symbol or snap.book_seq > max_book_seq:
                continue
            return snap, snap.restore(spec)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, zlib.error):
            continue
    return None


@dataclass
class _BookState:
    spec: MarketSpec
    book: OrderBook
    in_seq: int = 0
    cmd_seq: int = 0
    published: int = 0
    since_snapshot: int = 0
    snapshot_at: float = field(default_factory=time.monotonic)
    recent: dict[int, list[Event]] = field(default_factory=dict)
    recent_events: int = 0


class Matcher(Actor):
    """The matcher actor of a symbol shard.

    Args:
        config: actor configuration (name ``matcher`` or ``matcher-<shard>``).
        markets: market specs by symbol (at least every symbol of ``symbols``).
        symbols: the shard's symbols.
        snapshot_every: snapshot a book after this many commands (>= 1).
        snapshot_interval_ms: ... or after this many ms (>= 1) with at least one command.
        compress: zlib-compress snapshots (books of many orders stay under NATS's max payload).

    Raises:
        ValueError: no symbol, a symbol without a market spec, or a bad snapshot setting.
    """

    def __init__(
        self,
        config: ActorConfig,
        markets: Mapping[str, MarketSpec],
        symbols: Sequence[str],
        *,
        snapshot_every: int = 10_000,
        snapshot_interval_ms: int = 10_000,
        compress: bool = True,
    ) -> None:
        super().__init__(config)
        if not symbols:
            raise ValueError("the matcher needs at least one symbol")
        missing = [s for s in symbols if s not in markets]
        if missing:
            raise ValueError(f"no market spec for {', '.join(missing)}")
        if snapshot_every < 1 or snapshot_interval_ms < 1:
            raise ValueError("snapshot_every and snapshot_interval_ms must be >= 1")
        self.symbols = tuple(dict.fromkeys(symbols))
        self._specs = {s: markets[s] for s in self.symbols}
        self._snapshot_every = snapshot_every
        self._snapshot_interval_s = snapshot_interval_ms / 1000
        self._compress = compress
        self._books: dict[str, _BookState] = {}
        self._kv: KeyValue | None = None
        self._last_batch_at = 0.0
        self.snapshots_written = 0

    # -- runtime hooks ------------------------------------------------------------------------

    def streams(self) -> Sequence[StreamSpec]:
        """``BOOK_IN`` and ``EVENTS``."""
        return (BOOK_IN, EVENTS)

    async def on_start(self) -> None:
        """Open the snapshot bucket, restore every book, subscribe to book queries."""
        self._kv = await self._snapshot_bucket()
        for sym in self.symbols:
            spec = self._specs[sym]
            published = await last_event_seq(self.js, sym)
            found = await load_snapshot(self._kv, spec, published)
            if found is None:
                st = _BookState(spec, OrderBook(spec))
            else:
                st = _BookState(spec, found[1], in_seq=found[0].in_seq, cmd_seq=found[0].cmd_seq)
            st.published = published
            self._books[sym] = st
            self.log.info(
                "book restored",
                symbol=sym,
                snapshot_in_seq=st.in_seq,
                snapshot_book_seq=st.book.seq,
                published_seq=published,
            )
            await self.nc.subscribe(book_query_subject(sym), cb=self._on_query)
        self.spawn(self._snapshot_timer(), name=f"{self.name}:snapshots")

    def inputs(self) -> Sequence[Input[Any]]:
        """One ``matcher-<SYM>`` consumer per symbol, recreated at the next unapplied sequence."""
        out: list[Input[Any]] = []
        for sym in self.symbols:
            st = self._books[sym]
            consumer = ConsumerSpec(
                stream=BOOK_IN.name,
                durable=matcher_durable(sym),
                filter_subjects=(book_in_subject(sym),),
                ack_policy="all",
                ack_wait_ms=self.config.ack_wait_ms,
                max_ack_pending=max(4 * self.config.batch_size, 1_000),
                start_seq=st.in_seq + 1,
                recreate=True,
                description=f"matcher of {sym}",
            )
            out.append(Input(consumer, BookInPayload, self._handler(sym)))
        return out

    async def on_stop(self) -> None:
        """Snapshot every book that changed since its last snapshot and whose events are all
        stored in ``EVENTS``."""
        for sym, st in self._books.items():
            if not st.since_snapshot:
                continue
            try:
                if st.book.seq <= await last_event_seq(self.js, sym):
                    await self._snapshot(sym, st)
            except Exception as exc:
                self.log.error("snapshot failed", symbol=sym, error=repr(exc))

    # -- public views ------------------------------------------------------------------------

    def book(self, symbol: str) -> OrderBook:
        """The live book of ``symbol``.

        Raises:
            KeyError: not a symbol of this shard, or the actor has not started.
        """
        return self._books[symbol].book

    def applied_seq(self, symbol: str) -> int:
        """``BOOK_IN`` stream sequence of the last command applied to ``symbol``'s book."""
        return self._books[symbol].in_seq

    # -- internals ---------------------------------------------------------------------------

    async def _snapshot_bucket(self) -> KeyValue:
        try:
            return await self.js.key_value(SNAPSHOT_BUCKET)
        except BucketNotFoundError:
            return await self.js.create_key_value(
                js_api.KeyValueConfig(
                    bucket=SNAPSHOT_BUCKET,
                    history=SNAPSHOT_HISTORY,
                    storage=js_api.StorageType.FILE,
                    description="matcher snapshots: key <SYM>, msgpack MatcherSnapshot",
                )
            )

    async def _snapshot(self, sym: str, st: _BookState) -> None:
        raw = st.book.snapshot()
        codec = "none"
        if self._compress:
            raw, codec = zlib.compress(raw, 1), "zlib"
        snap = MatcherSnapshot(
            sym, st.in_seq, st.book.seq, time.time_ns() // 1_000_000, codec, raw, st.cmd_seq
        )
        value = msgspec.msgpack.encode(snap)
        st.since_snapshot = 0
        st.snapshot_at = time.monotonic()
        limit = self.nc.max_payload - 4096
        if len(value) > limit:
            self.log.error(
                "snapshot larger than the NATS max payload; not written",
                symbol=sym,
                bytes=len(value),
                max_payload=self.nc.max_payload,
            )
            return
        if self._kv is None:
            raise RuntimeError("snapshot bucket not open")
        await self._kv.put(sym, value)
        self.snapshots_written += 1
        self.log.info("snapshot", symbol=sym, seq=st.book.seq, in_seq=st.in_seq, bytes=len(value))

    async def _snapshot_timer(self) -> None:
        """Snapshot books idle since their last change for ``snapshot_interval_ms``.

        Only when every event of the book is already stored in ``EVENTS`` (a batch whose
        events are still being published is left for the next round), and only while the
        whole matcher has been idle for :data:`_TIMER_IDLE_S`: encoding a large book takes the
        event loop for a while (about 0.1 s for 40,000 orders), which must not delay the
        commands of the other books. A book busy enough never to find the matcher idle is
        still snapshotted every ``snapshot_every`` commands of its own.
        """
        interval = self._snapshot_interval_s
        while True:
            await asyncio.sleep(min(interval, 1.0))
            for sym, st in self._books.items():
                if not st.since_snapshot or time.monotonic() - st.snapshot_at < interval:
                    continue
                if time.monotonic() - self._last_batch_at < _TIMER_IDLE_S:
                    break
                try:
                    async with self.lock:
                        if st.book.seq <= await last_event_seq(self.js, sym):
                            await self._snapshot(sym, st)
                except Exception as exc:
                    self.log.error("snapshot failed", symbol=sym, error=repr(exc))

    def _failures(self, sym: str) -> float:
        """Batches of ``sym`` the runtime could not publish so far (its metric)."""
        value = self.metrics.registry.get_sample_value(
            "orrange_actor_batch_failures_total",
            {"actor": self.name, "consumer": matcher_durable(sym)},
        )
        return value or 0.0

    async def _republish(self, sym: str, st: _BookState, out: Outbox) -> None:
        """After a failed publish: queue, in order, every event applied but not in EVENTS."""
        stored = await last_event_seq(self.js, sym)
        missing = [e for evs in st.recent.values() for e in evs if e.seq > stored]
        first = missing[0].seq if missing else st.book.seq + 1
        if first != stored + 1 and st.book.seq > stored:
            self.log.error(
                "events to republish are no longer cached; restart the matcher to replay them",
                symbol=sym,
                seq=stored + 1,
                cached_from=first,
            )
        self.log.warning(
            "republishing events of a failed batch", symbol=sym, seq=stored + 1, count=len(missing)
        )
        subject = events_subject(sym)
        for i in range(0, len(missing), _REPUBLISH_CHUNK):
            chunk = missing[i : i + _REPUBLISH_CHUNK]
            out.publish(subject, _json.encode(chunk), msg_id=events_msg_id(sym, chunk[0].seq))

    def _handler(self, sym: str) -> Any:
        st = self._books[sym]
        subject = events_subject(sym)
        failures = self._failures(sym)

        async def handle(batch: Sequence[Inbound[Any]], out: Outbox) -> None:
            nonlocal failures
            self._last_batch_at = time.monotonic()
            # The previous batch of this symbol is done here: published and acked, or (a
            # publish failed) nak'ed. After a failure, newer commands may come before the
            # redelivered ones: publish what EVENTS lacks first, so it stays in seq order.
            now_failures = self._failures(sym)
            if now_failures != failures or batch[0].stream_seq <= st.in_seq:
                failures = now_failures
                await self._republish(sym, st, out)
            elif st.since_snapshot and (
                st.since_snapshot >= self._snapshot_every
                or time.monotonic() - st.snapshot_at >= self._snapshot_interval_s
            ):
                # every event applied so far is stored: the state may be snapshotted
                try:
                    await self._snapshot(sym, st)
                except Exception as exc:
                    self.log.error("snapshot failed", symbol=sym, error=repr(exc))
            book = st.book
            for msg in batch:
                seq = msg.stream_seq
                if seq <= st.in_seq:
                    continue  # a redelivery: applied already, its events were queued above
                data = msg.data
                pairs = data if isinstance(data, list) else ((0, data),)
                events: list[Event] = []
                last_cmd = st.cmd_seq
                for i, (cmd_seq, cmd) in enumerate(pairs):
                    if cmd_seq:
                        if cmd_seq <= last_cmd:
                            continue  # forwarded again by risk: applied already
                        last_cmd = cmd_seq
                    try:
                        events += book.process(cmd)
                    except Exception as exc:
                        self.log.warning(
                            "command failed; dead-lettered",
                            symbol=sym,
                            seq=seq,
                            index=i,
                            error=repr(exc),
                        )
                        out.dead_letter_part(msg, i, _json.encode(cmd), exc)
                        continue
                    st.since_snapshot += 1
                st.in_seq = seq
                st.cmd_seq = last_cmd
                if events:
                    published = st.published
                    if events[0].seq <= published:
                        new = [e for e in events if e.seq > published]
                    else:
                        new = events
                    if new:
                        out.publish(
                            subject, _json.encode(new), msg_id=events_msg_id(sym, new[0].seq)
                        )
                    recent = st.recent
                    recent[seq] = events
                    st.recent_events += len(events)
                    while st.recent_events - len(next(iter(recent.values()))) >= _RECENT_EVENTS:
                        st.recent_events -= len(recent.pop(next(iter(recent))))

        return handle

    async def _on_query(self, msg: Msg) -> None:
        if not msg.reply:
            return
        sym = msg.subject.rsplit(".", 1)[-1]
        st = self._books.get(sym)
        answer: bytes
        try:
            query = _query_decoder.decode(msg.data) if msg.data.strip() else BookQuery()
            if not 1 <= query.depth <= 1000:
                raise ValueError(f"depth must be within 1..1000, not {query.depth}")
            if st is None:
                raise ValueError(f"symbol {sym} is not hosted here")
            answer = _json.encode(st.book.depth(query.depth))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            answer = _json.encode(BookQueryError(str(exc)))
        try:
            await msg.respond(answer)
        except Exception as exc:
            self.log.warning("book query answer failed", symbol=sym, error=repr(exc))
