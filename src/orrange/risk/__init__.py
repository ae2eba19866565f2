"""Pre-trade risk: pure rules (:mod:`orrange.risk.rules`) and idempotency keys
(:mod:`orrange.risk.keys`). The actor that applies them on NATS is
:mod:`orrange.engine.risk`."""

from orrange.risk.keys import client_order_key, escape_key_part
from orrange.risk.rules import RiskEngine, RiskLimits, TokenBucket, command_tag, reject

__all__ = [
    "RiskEngine",
    "RiskLimits",
    "TokenBucket",
    "client_order_key",
    "command_tag",
    "escape_key_part",
    "reject",
]
