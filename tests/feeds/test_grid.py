"""GridConverter: exchange decimals onto our integer grid, exactly as the Decimal division."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orrange.feeds.grid import GridConverter

STEPS = ["0.01", "1", "100", "1E+2", "0.5", "0.00001", "25", "0.001"]


def _reference(value: Decimal, step: str) -> int:
    return int((value / Decimal(step)).to_integral_value(rounding=ROUND_HALF_EVEN))


@settings(max_examples=300, deadline=None)
@given(
    step=st.sampled_from(STEPS),
    digits=st.integers(-(10**12), 10**12),
    exponent=st.integers(-10, 3),
)
def test_equals_decimal_division_rounded_half_even(step: str, digits: int, exponent: int) -> None:
    conv = GridConverter(step)
    value = Decimal(digits).scaleb(exponent)
    assert conv(value) == conv.convert(value) == _reference(value, step)
    assert conv(value) == _reference(value, step)  # again, from the cache


def test_half_even_and_equal_values_of_other_exponents() -> None:
    conv = GridConverter("0.01")
    assert conv(Decimal("65012.375")) == 6501238
    assert conv(Decimal("65012.365")) == 6501236
    assert conv(Decimal("1.10")) == conv(Decimal("1.1")) == conv(Decimal("1.1000")) == 110
    assert GridConverter("0.5")(Decimal("0.75")) == 2  # 1.5 -> 2


@pytest.mark.parametrize("step", ["0", "-0.01", "NaN", "Infinity"])
def test_bad_step(step: str) -> None:
    with pytest.raises(ValueError, match="positive"):
        GridConverter(step)
