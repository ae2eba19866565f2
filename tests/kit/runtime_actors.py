"""Actors and helpers of the runtime tests; run as a script it is a pass-through actor process.

``python runtime_actors.py NATS_URL BATCH_SIZE DELAY_S ACK_WAIT_MS`` runs :class:`PassThrough`
(``IN`` -> ``OUT``) until SIGTERM/SIGINT, with JSON logs on stderr.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from orrange.logging import configure_logging
from orrange.runtime import (
    Actor,
    ActorConfig,
    Inbound,
    Input,
    Outbox,
    Publisher,
    per_message,
    run_actor,
)
from orrange.wire.spec import ConsumerSpec, StreamSpec

IN = StreamSpec(name="IN", subjects=("in.>",))
OUT = StreamSpec(name="OUT", subjects=("out.>",))


class Order(msgspec.Struct, frozen=True):
    user: str
    qty: int


class Echo(msgspec.Struct, frozen=True):
    user: str
    qty: int
    src_seq: int


class PassThrough(Actor):
    """IN ``in.<SYM>`` -> OUT ``out.<SYM>``; one Echo per Order, msg id ``IN:<stream_seq>``.

    Orders of ``fail_user`` make the handler raise. ``delay_s`` sleeps once per batch.
    """

    def __init__(
        self,
        config: ActorConfig,
        *,
        durable: str = "pass",
        ack_policy: str = "explicit",
        ack_wait_ms: int = 30_000,
        delay_s: float = 0.0,
        fail_user: str | None = None,
        provision_out: bool = True,
    ) -> None:
        super().__init__(config)
        self.consumer = ConsumerSpec(
            stream="IN",
            durable=durable,
            ack_policy=ack_policy,  # type: ignore[arg-type]
            ack_wait_ms=ack_wait_ms,
        )
        self.delay_s = delay_s
        self.fail_user = fail_user
        self.provision_out = provision_out
        self.max_delivered = 0
        self.batches: list[int] = []
        self.calls: list[list[str]] = []  # the users of each handler call
        self._each = per_message(self.on_order)

    def streams(self) -> Sequence[StreamSpec]:
        return [IN, OUT] if self.provision_out else [IN]

    def inputs(self) -> Sequence[Input[Any]]:
        return [Input(self.consumer, Order, self.on_batch)]

    async def on_batch(self, batch: Sequence[Inbound[Order]], out: Outbox) -> None:
        self.batches.append(len(batch))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        await self._each(batch, out)

    async def on_order(self, msg: Inbound[Order], out: Outbox) -> None:
        self.max_delivered = max(self.max_delivered, msg.num_delivered)
        if msg.data.user == self.fail_user:
            raise ValueError(f"user {msg.data.user} refused")
        sym = msg.subject.split(".", 1)[1]
        out.publish(
            f"out.{sym}",
            Echo(msg.data.user, msg.data.qty, msg.stream_seq),
            msg_id=f"IN:{msg.stream_seq}",
        )


async def publish_orders(nc: NATS, n: int, start: int = 0, subject: str = "in.AMZN") -> None:
    """Publish ``n`` Orders (qty ``start``..``start+n-1``) with msg ids ``o<qty>``."""
    pub = Publisher(nc)
    for i in range(start, start + n):
        await pub.submit(subject, Order("u", i), msg_id=f"o{i}")
    await pub.flush()


async def stream_count(js: JetStreamContext, stream: str) -> int:
    """Messages stored in ``stream``."""
    info = await js.stream_info(stream)
    return int(info.state.messages)


async def read_stream(js: JetStreamContext, stream: str) -> list[tuple[str, bytes, dict[str, str]]]:
    """Every message of ``stream`` as (subject, data, headers), in order."""
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        m = await js.get_msg(stream, seq)
        out.append((m.subject or "", m.data or b"", dict(m.headers or {})))
    return out


if __name__ == "__main__":
    url, batch, delay, ack_wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    configure_logging("json", "INFO", actor="pass")
    cfg = ActorConfig(name="pass", nats_url=url, batch_size=batch, heartbeat_interval_ms=200)
    sys.exit(run_actor(PassThrough(cfg, delay_s=delay, ack_wait_ms=int(ack_wait))))
