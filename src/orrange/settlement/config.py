"""Settlement configuration: ``settlement.toml`` plus ``ORRANGE_SETTLEMENT_*``.

Shape (all times in ms)::

    funding_timeout_ms = 900_000
    default_payment_window_ms = 1_800_000
    default_payment_method = "bank_transfer"
    [payment_methods.<name>]
    payment_window_ms = 3_600_000

Environment variables ``ORRANGE_SETTLEMENT_<KEY>`` override the top-level keys (integers for
the ``*_ms`` keys). The file is ``config_file("settlement.toml")`` (see
:func:`orrange.settings.config_file`) unless a path is given.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from orrange.settings import config_file

__all__ = [
    "PaymentMethod",
    "SettlementConfig",
    "SettlementConfigError",
    "load_settlement_config",
    "parse_settlement_config",
]

ENV_PREFIX = "ORRANGE_SETTLEMENT_"


class SettlementConfigError(ValueError):
    """The settlement configuration is invalid (message names the key)."""


class PaymentMethod(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One payment method: the buyer's ``payment_window_ms`` after funding (> 0)."""

    payment_window_ms: int


class SettlementConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Deadlines of the settlement lifecycle (all ms, all > 0)."""

    funding_timeout_ms: int = 900_000
    default_payment_window_ms: int = 1_800_000
    default_payment_method: str = "bank_transfer"
    payment_methods: dict[str, PaymentMethod] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.funding_timeout_ms <= 0:
            raise SettlementConfigError("funding_timeout_ms must be positive")
        if self.default_payment_window_ms <= 0:
            raise SettlementConfigError("default_payment_window_ms must be positive")
        for name, method in self.payment_methods.items():
            if method.payment_window_ms <= 0:
                raise SettlementConfigError(
                    f"payment_methods.{name}.payment_window_ms must be positive"
                )

    def payment_window_ms(self, method: str) -> int:
        """The buyer's payment window (ms) for ``method``; the default for an unknown one."""
        known = self.payment_methods.get(method)
        return known.payment_window_ms if known else self.default_payment_window_ms

    def choose_method(self, offered: tuple[str, ...]) -> str:
        """The method a trade settles with: the first of ``offered`` (the methods both
        orders accept, in the maker's order), else :attr:`default_payment_method`."""
        return offered[0] if offered else self.default_payment_method


def parse_settlement_config(
    data: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> SettlementConfig:
    """Build the config from parsed TOML ``data`` and ``env`` overrides (``os.environ`` when
    None). Raises :class:`SettlementConfigError` for an unknown key, a wrong type or a
    non-positive time."""
    merged = dict(data)
    environ = os.environ if env is None else env
    for field in ("funding_timeout_ms", "default_payment_window_ms", "default_payment_method"):
        raw = environ.get(ENV_PREFIX + field.upper())
        if raw is None:
            continue
        if field.endswith("_ms"):
            try:
                merged[field] = int(raw.replace("_", ""))
            except ValueError as exc:
                raise SettlementConfigError(f"{ENV_PREFIX}{field.upper()}: not an integer") from exc
        else:
            merged[field] = raw
    try:
        return msgspec.convert(merged, SettlementConfig)
    except msgspec.ValidationError as exc:
        raise SettlementConfigError(str(exc)) from exc


def load_settlement_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> SettlementConfig:
    """Read the TOML at ``path`` (``config_file("settlement.toml")`` when None) and apply
    ``env`` (``os.environ`` when None; it also locates the file). A missing file gives the
    defaults plus the environment. Raises :class:`SettlementConfigError` for an invalid file,
    :class:`~orrange.settings.SettingsError` when no path is given and no file is found."""
    target = Path(path) if path is not None else config_file("settlement.toml", env)
    data: dict[str, Any] = {}
    if target.exists():
        try:
            data = tomllib.loads(target.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise SettlementConfigError(f"{target}: {exc}") from exc
    return parse_settlement_config(data, env)
