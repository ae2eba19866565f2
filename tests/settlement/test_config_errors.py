"""Invalid settlement configuration is refused with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from orrange.settlement.config import (
    SettlementConfigError,
    load_settlement_config,
    parse_settlement_config,
)


@pytest.mark.parametrize(
    ("data", "env", "match"),
    [
        ({"funding_timeout_ms": 0}, {}, "funding_timeout_ms"),
        ({"default_payment_window_ms": -5}, {}, "default_payment_window_ms"),
        ({"payment_methods": {"sepa": {"payment_window_ms": 0}}}, {}, "payment_methods.sepa"),
        ({"payment_methods": {"sepa": {"window": 5}}}, {}, "window"),
        ({"funding_timout_ms": 5}, {}, "funding_timout_ms"),
        ({"funding_timeout_ms": "soon"}, {}, "funding_timeout_ms"),
        ({}, {"ORRANGE_SETTLEMENT_FUNDING_TIMEOUT_MS": "soon"}, "not an integer"),
    ],
)
def test_invalid_config(data: dict[str, object], env: dict[str, str], match: str) -> None:
    with pytest.raises(SettlementConfigError, match=match):
        parse_settlement_config(data, env)


def test_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("funding_timeout_ms = [")
    with pytest.raises(SettlementConfigError, match=r"bad\.toml"):
        load_settlement_config(bad, env={})
    assert load_settlement_config(tmp_path / "missing.toml", env={}).funding_timeout_ms == 900_000
    good = tmp_path / "s.toml"
    good.write_text("[payment_methods.wire]\npayment_window_ms = 5_000\n")
    cfg = load_settlement_config(good, env={})
    assert cfg.payment_window_ms("wire") == 5_000
