"""Typed process settings: ``config/orrange.toml`` defaults overridden by ``ORRANGE_*`` env vars.

Resolution, lowest to highest priority:

1. the defaults of :class:`Settings`;
2. the TOML file: ``--config FILE`` if given, else ``config_file("orrange.toml")`` (top-level
   keys are :class:`Settings` fields, the ``[runtime]`` table is :class:`RuntimeSettings`;
   unknown keys and tables are ignored so other components can keep their own sections in the
   same file);
3. environment variables: ``ORRANGE_<FIELD>`` for top-level fields (``ORRANGE_NATS_URL``,
   ``ORRANGE_API_PORT``...) and ``ORRANGE_RUNTIME_<FIELD>`` for runtime fields
   (``ORRANGE_RUNTIME_BATCH_SIZE``...). Values are converted to the field's type.

Secrets (:data:`SECRET_FIELDS`, e.g. ``jwt_secret``) are read **only** from the environment; a
secret in the TOML file is an error.

Every configuration file (``orrange.toml``, ``markets.toml``, ``sources.toml``,
``settlement.toml``, the ``Procfile``) is found by :func:`config_file`:
``$ORRANGE_CONFIG_DIR/<name>`` if that file exists, else ``./config/<name>`` in the working
directory, else the packaged default (the repository's ``config/``, installed as
``orrange.defaults``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "CONFIG_DIR_ENV",
    "SECRET_FIELDS",
    "RuntimeSettings",
    "Settings",
    "SettingsError",
    "config_file",
    "load_settings",
    "settings_env",
]

ENV_PREFIX = "ORRANGE_"
CONFIG_DIR_ENV = ENV_PREFIX + "CONFIG_DIR"
SECRET_FIELDS: frozenset[str] = frozenset({"jwt_secret"})


class SettingsError(ValueError):
    """The configuration file or an ``ORRANGE_*`` variable is invalid."""


class RuntimeSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=False):
    """Actor runtime defaults (see :mod:`orrange.runtime`).

    Attributes:
        batch_size: messages per pull-consumer fetch.
        fetch_timeout_ms: how long one fetch waits for the first message (ms).
        ack_wait_ms: JetStream redelivers a message not acked within this time (ms).
        publish_timeout_ms: how long a batch waits for all its publish acks (ms).
        duplicate_window_ms: JetStream ``Nats-Msg-Id`` de-duplication window of streams the
            runtime creates (ms); must cover the longest replay after a crash.
        heartbeat_interval_ms: period of ``heartbeat.<actor>`` publishes (ms).
        metrics_host: bind address of the actors' metrics/liveness HTTP servers.
        max_publish_pending: outstanding async publishes per connection before publishers wait.
    """

    batch_size: int = 500
    fetch_timeout_ms: int = 500
    ack_wait_ms: int = 30_000
    publish_timeout_ms: int = 10_000
    duplicate_window_ms: int = 600_000
    heartbeat_interval_ms: int = 5_000
    metrics_host: str = "127.0.0.1"
    max_publish_pending: int = 20_000


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=False):
    """Process-wide settings.

    Attributes:
        data_dir: root of local state: ``<data_dir>/nats`` (JetStream store) and
            ``<data_dir>/pg`` (PostgreSQL cluster) of the embedded servers.
        nats_url: external NATS server; None means the embedded one at ``nats_host:nats_port``.
        database_url: external PostgreSQL; None means the embedded one at
            ``postgres_host:postgres_port``, database ``database_name``.
        nats_host, nats_port, nats_monitor_port: embedded nats-server listen address/ports.
        postgres_host, postgres_port: embedded PostgreSQL listen address/port.
        database_name: database created in the embedded PostgreSQL.
        api_host, api_port: where the HTTP API listens.
        api_workers: API worker processes sharing the port (each follows every event).
        log_format: ``json`` (one JSON object per line) or ``console`` (coloured, aligned).
        log_level: ``DEBUG``, ``INFO``, ``WARNING`` or ``ERROR``.
        jwt_secret: HS256 secret of API bearer tokens (environment only).
        runtime: actor runtime defaults.
    """

    data_dir: str = "./var"
    nats_url: str | None = None
    database_url: str | None = None
    nats_host: str = "127.0.0.1"
    nats_port: int = 4222
    nats_monitor_port: int = 8222
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 54320
    database_name: str = "orrange"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    jwt_secret: str | None = None
    runtime: RuntimeSettings = msgspec.field(default_factory=RuntimeSettings)

    @property
    def data_path(self) -> Path:
        """``data_dir`` as an absolute path."""
        return Path(self.data_dir).expanduser().resolve()

    @property
    def embedded_nats(self) -> bool:
        """True when no external NATS is configured (``orrange up`` starts one)."""
        return not self.nats_url

    @property
    def embedded_postgres(self) -> bool:
        """True when no external PostgreSQL is configured (``orrange up`` starts one)."""
        return not self.database_url

    @property
    def effective_nats_url(self) -> str:
        """``nats_url``, or the embedded server's URL."""
        return self.nats_url or f"nats://{self.nats_host}:{self.nats_port}"

    @property
    def effective_database_url(self) -> str:
        """``database_url``, or the embedded server's database URL."""
        if self.database_url:
            return self.database_url
        return (
            f"postgresql://postgres@{self.postgres_host}:{self.postgres_port}/{self.database_name}"
        )


def config_file(name: str, env: Mapping[str, str] | None = None) -> Path:
    """The configuration file ``name`` (e.g. ``"markets.toml"``, ``"Procfile"``).

    The first that exists of ``$ORRANGE_CONFIG_DIR/<name>``, ``./config/<name>`` (relative to
    the working directory) and the packaged default.

    Args:
        name: a file name of the repository's ``config/`` directory.
        env: environment mapping; None means ``os.environ``.

    Raises:
        SettingsError: no such file in any of the three places.
    """
    env = os.environ if env is None else env
    places = [Path(env[CONFIG_DIR_ENV]) / name] if env.get(CONFIG_DIR_ENV) else []
    places.append(Path.cwd() / "config" / name)
    for path in places:
        if path.is_file():
            return path
    packaged = Path(str(resources.files("orrange.defaults") / name))
    if packaged.is_file():
        return packaged
    places.append(packaged)
    raise SettingsError(f"no configuration file {name!r} in {', '.join(map(str, places))}")


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``ORRANGE_*`` variables with which :func:`load_settings` gives back ``settings``
    whatever file it reads (how a process hands its settings to the processes it starts).
    Secrets are left out: they are in the environment already."""
    out: dict[str, str] = {}
    for name in _field_names(Settings):
        if name == "runtime" or name in SECRET_FIELDS:
            continue
        value = getattr(settings, name)
        out[ENV_PREFIX + name.upper()] = "" if value is None else str(value)
    for name in _field_names(RuntimeSettings):
        out[ENV_PREFIX + "RUNTIME_" + name.upper()] = str(getattr(settings.runtime, name))
    return out


def _field_names(cls: type[msgspec.Struct]) -> tuple[str, ...]:
    return cls.__struct_fields__


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    top: dict[str, Any] = {}
    runtime: dict[str, Any] = {}
    runtime_prefix = ENV_PREFIX + "RUNTIME_"
    for name in _field_names(RuntimeSettings):
        key = runtime_prefix + name.upper()
        if key in env:
            runtime[name] = env[key]
    for name in _field_names(Settings):
        if name == "runtime":
            continue
        key = ENV_PREFIX + name.upper()
        if key in env:
            value = env[key]
            top[name] = None if value == "" and name in {"nats_url", "database_url"} else value
    if runtime:
        top["runtime"] = runtime
    return top


def load_settings(
    config_path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Build :class:`Settings` from the TOML file and the environment.

    Args:
        config_path: TOML file; None means ``config_file("orrange.toml")``.
        env: environment mapping; None means ``os.environ``.

    Raises:
        SettingsError: unreadable or invalid TOML, a secret in the file, or a value that does
            not convert to its field's type (the message names the field).
    """
    env = os.environ if env is None else env
    path = Path(config_path) if config_path is not None else config_file("orrange.toml", env)
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read {path}: {exc}") from exc
    leaked = SECRET_FIELDS & data.keys()
    if leaked:
        raise SettingsError(
            f"{path}: secrets must come from the environment, not the file: {sorted(leaked)}"
        )
    base = {k: v for k, v in data.items() if k in _field_names(Settings)}
    runtime_file = base.get("runtime", {})
    overrides = _env_overrides(env)
    runtime_env = overrides.pop("runtime", {})
    merged: dict[str, Any] = {**base, **overrides}
    if runtime_file or runtime_env:
        merged["runtime"] = {**runtime_file, **runtime_env}
    try:
        return msgspec.convert(merged, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid setting: {exc}") from exc
