"""Actor runtime on NATS JetStream: see :mod:`orrange.runtime.actor` for the processing loop.

Conventions: streams and durable consumers are declared with
:class:`~orrange.wire.spec.StreamSpec` and :class:`~orrange.wire.spec.ConsumerSpec` (the
contract, :mod:`orrange.wire`) and provisioned idempotently by the actors that use them;
payloads are msgspec structs as JSON; every publish carries ``Nats-Msg-Id``; bad input goes to
stream ``DLQ`` (subject ``dlq.<actor>``); liveness is ``heartbeat.<actor>`` (core NATS) plus
``/live``.
"""

from orrange.runtime.actor import (
    Actor,
    ActorConfig,
    BatchHandler,
    Heartbeat,
    Inbound,
    Input,
    Outbox,
    per_message,
    run_actor,
)
from orrange.runtime.metrics import ActorMetrics, MetricsServer
from orrange.runtime.publisher import MSG_ID_HEADER, PubAck, Publisher, PublishError, encode
from orrange.runtime.streams import ProvisioningError, ensure_consumer, ensure_stream

__all__ = [
    "MSG_ID_HEADER",
    "Actor",
    "ActorConfig",
    "ActorMetrics",
    "BatchHandler",
    "Heartbeat",
    "Inbound",
    "Input",
    "MetricsServer",
    "Outbox",
    "ProvisioningError",
    "PubAck",
    "PublishError",
    "Publisher",
    "encode",
    "ensure_consumer",
    "ensure_stream",
    "per_message",
    "run_actor",
]
