"""Wallet addresses at the API edge: normalized to EIP-55, or refused naming the field."""

from __future__ import annotations

import pytest

from orrange.api._trades import address
from orrange.api.errors import ApiError

CHECKSUMMED = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"  # anvil development account 5


def test_lowercase_and_uppercase_hex_are_normalized() -> None:
    assert address("from", CHECKSUMMED.lower()) == CHECKSUMMED
    assert address("from", "0x" + CHECKSUMMED[2:].upper()) == CHECKSUMMED
    assert address("from", CHECKSUMMED) == CHECKSUMMED


@pytest.mark.parametrize(
    "bad",
    [
        "0x12",  # too short
        "not an address",
        CHECKSUMMED[:-1] + "C",  # mixed case with a broken checksum: a likely typo
    ],
)
def test_bad_addresses_are_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(ApiError) as info:
        address("buyer_address", bad)
    err = info.value
    assert (err.status, err.detail.field, err.detail.reason) == (
        400,
        "buyer_address",
        "invalid_address",
    )
