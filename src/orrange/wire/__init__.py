"""The NATS contract between the processes: streams, subjects, durables, message ids, batch
encodings and the message types that travel between processes.

One module per area, imported as ``from orrange.wire import engine as wire_engine`` or
``from orrange.wire.engine import EVENTS``:

* :mod:`orrange.wire.spec`: :class:`~orrange.wire.spec.StreamSpec` and
  :class:`~orrange.wire.spec.ConsumerSpec` (declarations; :mod:`orrange.runtime` provisions
  them);
* :mod:`orrange.wire.engine`: the order pipeline (``CMD``, ``BOOK_IN``, ``EVENTS``,
  ``REJECTS``; book queries, the snapshot and client-order KV buckets);
* :mod:`orrange.wire.marketdata`: the feed's market data (``MD``, ``MD_LIVE``);
* :mod:`orrange.wire.alerts`: the alerter's notifications, signals and commands (``ALERTS``,
  ``ALERT_CMD``);
* :mod:`orrange.wire.settlement`: the escrow watcher's trade changes (``SETTLEMENT``);
* :mod:`orrange.wire.funds`: deposits, withdrawals and the ledger's log (``FUNDS``,
  ``LEDGER``);
* :mod:`orrange.wire.dlq`: dead letters (``DLQ``).

:data:`STREAMS` lists every stream (the table of ``docs/architecture.md``). This package
imports msgspec and the pure core only (no NATS client, no database, no web framework).
"""

from orrange.wire.alerts import ALERT_CMD, ALERTS
from orrange.wire.dlq import dlq_stream_spec
from orrange.wire.engine import ENGINE_STREAMS
from orrange.wire.funds import FUNDS_STREAMS
from orrange.wire.marketdata import MD, MD_LIVE
from orrange.wire.settlement import SETTLEMENT
from orrange.wire.spec import StreamSpec

__all__ = ["STREAMS"]

#: Every stream of the system, in pipeline order (``DLQ`` with its default window).
STREAMS: tuple[StreamSpec, ...] = (
    *ENGINE_STREAMS,
    MD,
    MD_LIVE,
    ALERTS,
    ALERT_CMD,
    SETTLEMENT,
    *FUNDS_STREAMS,
    dlq_stream_spec(),
)
