"""JetStream streams and durable pull consumers, provisioned idempotently.

A :class:`~orrange.wire.spec.StreamSpec` / :class:`~orrange.wire.spec.ConsumerSpec` says what
must exist; :func:`ensure_stream` and :func:`ensure_consumer` create it, or update it in place
when it exists with another configuration (create-or-update), so every actor can provision what
it uses at start without coordination.
"""

from __future__ import annotations

import contextlib

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import APIError, NotFoundError

from orrange.wire.spec import ConsumerSpec, StreamSpec

__all__ = [
    "ProvisioningError",
    "consumer_config",
    "ensure_consumer",
    "ensure_stream",
    "stream_config",
]


class ProvisioningError(RuntimeError):
    """A stream or consumer could not be created or updated (e.g. an immutable field changed)."""


def stream_config(spec: StreamSpec) -> js_api.StreamConfig:
    """The nats-py ``StreamConfig`` of ``spec``."""
    return js_api.StreamConfig(
        name=spec.name,
        description=spec.description or None,
        subjects=list(spec.subjects),
        storage=js_api.StorageType(spec.storage),
        retention=js_api.RetentionPolicy(spec.retention),
        max_age=spec.max_age_ms / 1000.0,
        max_msgs=spec.max_msgs,
        max_bytes=spec.max_bytes,
        max_msgs_per_subject=spec.max_msgs_per_subject,
        duplicate_window=spec.duplicate_window_ms / 1000.0,
        allow_direct=spec.allow_direct,
        num_replicas=1,
    )


def consumer_config(spec: ConsumerSpec) -> js_api.ConsumerConfig:
    """The nats-py ``ConsumerConfig`` of ``spec``."""
    subjects = list(spec.filter_subjects)
    return js_api.ConsumerConfig(
        durable_name=spec.durable,
        name=spec.durable,
        description=spec.description or None,
        ack_policy=js_api.AckPolicy(spec.ack_policy),
        ack_wait=spec.ack_wait_ms / 1000.0,
        max_deliver=spec.max_deliver,
        max_ack_pending=spec.max_ack_pending,
        deliver_policy=(
            js_api.DeliverPolicy.BY_START_SEQUENCE
            if spec.start_seq is not None
            else js_api.DeliverPolicy(spec.deliver_policy)
        ),
        opt_start_seq=spec.start_seq,
        filter_subject=subjects[0] if len(subjects) == 1 else None,
        filter_subjects=subjects if len(subjects) > 1 else None,
    )


async def ensure_stream(js: JetStreamContext, spec: StreamSpec) -> js_api.StreamInfo:
    """Create the stream, or update it when it exists with another configuration.

    Returns the stream info after provisioning; calling it again is a no-op.

    Raises:
        ProvisioningError: the server refused (e.g. storage type change, overlapping subjects).
    """
    cfg = stream_config(spec)
    try:
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            try:
                return await js.add_stream(cfg)
            except APIError as exc:
                if exc.err_code != 10058:  # stream name already in use (a concurrent create)
                    raise
        return await js.update_stream(cfg)
    except APIError as exc:
        raise ProvisioningError(f"stream {spec.name}: {exc.description or exc}") from exc


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> js_api.ConsumerInfo:
    """Create the durable consumer, or update it in place when its configuration changed.

    Returns the consumer info; calling it again is a no-op. The consumer's delivery position is
    kept across updates, unless ``spec.recreate`` asks for a fresh consumer.

    Raises:
        ProvisioningError: the server refused (e.g. the stream does not exist, or an immutable
            field such as ``deliver_policy`` changed).
    """
    try:
        if spec.recreate:
            with contextlib.suppress(NotFoundError):
                await js.delete_consumer(spec.stream, spec.durable)
        return await js.add_consumer(spec.stream, consumer_config(spec))
    except APIError as exc:
        raise ProvisioningError(
            f"consumer {spec.stream}/{spec.durable}: {exc.description or exc}"
        ) from exc
