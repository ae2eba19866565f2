"""Pre-trade risk: pure rules (:mod:`orrange.risk.rules`) and idempotency keys
(:mod:`orrange.risk.keys`). The actor that applies them on NATS is
:mod:`orrange.engine.risk`."""

from orrange.risk.keys import (
    GENERATED_ID_PREFIX,
    client_order_key,
    escape_key_part,
    generate_client_order_id,
    is_generated_client_order_id,
)
from orrange.risk.rules import RiskEngine, RiskLimits, TokenBucket, command_tag, reject

__all__ = [
    "GENERATED_ID_PREFIX",
    "RiskEngine",
    "RiskLimits",
    "TokenBucket",
    "client_order_key",
    "command_tag",
    "escape_key_part",
    "generate_client_order_id",
    "is_generated_client_order_id",
    "reject",
]
