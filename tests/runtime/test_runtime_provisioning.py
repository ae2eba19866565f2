"""Streams and durable consumers are provisioned idempotently (create-or-update)."""

from __future__ import annotations

import nats
import pytest
from kit.runtime_actors import IN, OUT, PassThrough, publish_orders, stream_count
from kit.wait import wait_for

from orrange.runtime import ActorConfig, ProvisioningError, ensure_consumer, ensure_stream
from orrange.wire.spec import ConsumerSpec, StreamSpec


async def test_stream_and_consumer_provisioning_is_idempotent(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    first = await ensure_stream(js, IN)
    again = await ensure_stream(js, IN)
    assert first.config.subjects == again.config.subjects == ["in.>"]
    assert again.config.duplicate_window == 600.0
    await publish_orders(nc, 5)

    spec = ConsumerSpec(stream="IN", durable="c1", ack_wait_ms=30_000)
    await ensure_consumer(js, spec)
    psub = await js.pull_subscribe_bind(durable="c1", stream="IN")
    for msg in await psub.fetch(2, timeout=10):
        await msg.ack_sync()
    # same spec again, then a changed one: the position is kept, the config updated
    await ensure_consumer(js, spec)
    info = await ensure_consumer(js, ConsumerSpec(stream="IN", durable="c1", ack_wait_ms=5_000))
    assert info.config.ack_wait == 5.0
    assert info.num_pending == 3
    assert info.ack_floor.stream_seq == 2

    widened = await ensure_stream(
        js, StreamSpec(name="IN", subjects=("in.>", "in2.>"), max_age_ms=3_600_000)
    )
    assert widened.config.subjects == ["in.>", "in2.>"]
    assert widened.state.messages == 5
    await nc.close()


async def test_incompatible_changes_raise(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_stream(js, IN)
    with pytest.raises(ProvisioningError, match="storage"):
        await ensure_stream(js, StreamSpec(name="IN", subjects=("in.>",), storage="memory"))
    await ensure_consumer(js, ConsumerSpec(stream="IN", durable="c"))
    with pytest.raises(ProvisioningError, match="deliver policy"):
        await ensure_consumer(js, ConsumerSpec(stream="IN", durable="c", deliver_policy="new"))
    with pytest.raises(ProvisioningError):
        await ensure_consumer(js, ConsumerSpec(stream="NOPE", durable="c"))
    await nc.close()


async def test_restarted_actor_reprovisions_and_resumes_where_it_stopped(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_stream(js, IN)
    await publish_orders(nc, 10)
    cfg = ActorConfig(name="pass", nats_url=nats_url, metrics_port=None)
    first = PassThrough(cfg)
    await first.start()
    await wait_for(lambda: _eq(stream_count(js, "OUT"), 10), "10 outputs")
    await first.stop()

    await publish_orders(nc, 5, start=10)
    second = PassThrough(cfg)
    await second.start()
    await wait_for(lambda: _eq(stream_count(js, "OUT"), 15), "15 outputs")
    await second.stop()
    assert sum(second.batches) == 5
    assert (await js.stream_info("OUT")).config.subjects == list(OUT.subjects)
    await nc.close()


async def _eq(value: object, expected: int) -> bool:
    return await value == expected  # type: ignore[misc]


async def test_recreated_consumer_resumes_in_order_from_start_seq(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_stream(js, IN)
    await publish_orders(nc, 10)
    # a crashed reader left deliveries unacked on the durable
    await ensure_consumer(js, ConsumerSpec(stream="IN", durable="m"))
    psub = await js.pull_subscribe_bind(durable="m", stream="IN")
    assert len(await psub.fetch(6, timeout=10)) == 6
    await psub.unsubscribe()
    assert (await js.consumer_info("IN", "m")).num_ack_pending == 6

    info = await ensure_consumer(
        js, ConsumerSpec(stream="IN", durable="m", start_seq=4, recreate=True)
    )
    assert info.num_ack_pending == 0 and info.num_pending == 7
    psub = await js.pull_subscribe_bind(durable="m", stream="IN")
    msgs = await psub.fetch(7, timeout=10)
    assert [m.metadata.sequence.stream for m in msgs] == list(range(4, 11))
    await nc.close()


async def test_actor_run_fails_cleanly_on_a_provisioning_conflict(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_stream(js, StreamSpec(name="IN", subjects=("in.>",), storage="memory"))
    actor = PassThrough(ActorConfig(name="pass", nats_url=nats_url))
    with pytest.raises(ProvisioningError, match="IN"):
        await actor.run()
    assert actor.metrics_port is None  # probe server closed
    assert (await js.stream_info("IN")).config.storage == "memory"  # left untouched
    await nc.close()
