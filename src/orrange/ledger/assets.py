"""Assets and the integer units of a funded market (docs/funds.md, "Assets and units").

Every ledger amount is an integer of its asset's **base units** (``10**-decimals`` of one
unit). :class:`MarketUnits` converts the book's lots and quote units into base units.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from decimal import Context, Decimal, Inexact, InvalidOperation
from typing import Any

import msgspec

from orrange.markets import MarketSpec

__all__ = ["AssetSpec", "MarketUnits", "from_decimal", "load_assets", "to_decimal"]

_CODE = re.compile(r"[A-Z0-9]{1,16}")
_ADDRESS = re.compile(r"0x[0-9a-f]{40}")
#: Exact arithmetic for amounts up to 2**256 and beyond: any rounding raises ``Inexact``.
_EXACT = Context(prec=200, traps=[Inexact, InvalidOperation])
#: The most decimals an asset may have (ERC-20 tokens use at most 18 in practice).
MAX_DECIMALS = 36


class AssetSpec(msgspec.Struct, frozen=True):
    """One asset of ``config/assets.toml``.

    Attributes:
        code: the asset code, ``[A-Z0-9]{1,16}`` (``"USDT"``), as markets name it.
        decimals: base units per unit are ``10**decimals`` (0..36).
        token: ``"native"`` for the chain's ETH, else the ERC-20 contract address
            (``0x`` + 40 hex digits, normalised to lowercase).

    Raises:
        ValueError: a malformed code, decimals out of range or a token that is neither.
    """

    code: str
    decimals: int
    token: str = "native"

    def __post_init__(self) -> None:
        if not _CODE.fullmatch(self.code):
            raise ValueError(f"asset code {self.code!r} is not [A-Z0-9]{{1,16}}")
        if not 0 <= self.decimals <= MAX_DECIMALS:
            raise ValueError(f"asset {self.code}: decimals {self.decimals} not in 0..36")
        token = self.token.lower()
        if token != "native" and not _ADDRESS.fullmatch(token):
            raise ValueError(f"asset {self.code}: token {self.token!r} is not native or 0x+40 hex")
        msgspec.structs.force_setattr(self, "token", token)


def load_assets(source: str | Mapping[str, Any]) -> dict[str, AssetSpec]:
    """Assets by code from TOML text (or its parsed mapping) with an ``[[asset]]`` list.

    Raises:
        ValueError: bad TOML, a malformed asset, or a code or token listed twice.
    """
    data: Mapping[str, Any]
    if isinstance(source, str):
        try:
            data = tomllib.loads(source)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"assets: {exc}") from exc
    else:
        data = source
    out: dict[str, AssetSpec] = {}
    tokens: dict[str, str] = {}
    for raw in data.get("asset", []):
        try:
            spec = msgspec.convert(raw, AssetSpec)
        except msgspec.ValidationError as exc:
            raise ValueError(f"asset {raw.get('code', '?')}: {exc}") from exc
        if spec.code in out:
            raise ValueError(f"asset {spec.code} is defined twice")
        if spec.token in tokens:
            raise ValueError(f"assets {tokens[spec.token]} and {spec.code} share {spec.token}")
        out[spec.code] = spec
        tokens[spec.token] = spec.code
    return out


def _integral(value: Decimal, what: str) -> int:
    if value != value.to_integral_value():
        raise ValueError(what)
    return int(value)


class MarketUnits(msgspec.Struct, frozen=True):
    """A market's grid in base units.

    Attributes:
        base_per_lot: base units of the base asset in one lot (``lot_size * 10**decimals``).
        quote_per_unit: base units of the quote asset in one quote unit
            (``tick_size * lot_size * 10**decimals``), the unit of notional and fees in
            events; 0 when the quote is not a ledger asset (a ``p2p`` market's fiat).
    """

    base_per_lot: int
    quote_per_unit: int

    @classmethod
    def of(cls, spec: MarketSpec, base: AssetSpec, quote: AssetSpec | None) -> MarketUnits:
        """The units of ``spec`` with its ``base`` and ``quote`` assets (``None``: fiat).

        Raises:
            ValueError: naming the market, when an asset is not the market's or one lot or
                one quote unit is not an integer number of base units.
        """
        if base.code != spec.base or (quote is not None and quote.code != spec.quote):
            raise ValueError(f"{spec.symbol}: assets {base.code}/{quote and quote.code} mismatch")
        lot = Decimal(spec.lot_size).scaleb(base.decimals, _EXACT)
        bpl = _integral(
            lot, f"{spec.symbol}: lot size {spec.lot_size} is not whole {base.code} base units"
        )
        qpu = 0
        if quote is not None:
            unit = spec.quote_unit.scaleb(quote.decimals, _EXACT)
            qpu = _integral(
                unit,
                f"{spec.symbol}: quote unit {spec.quote_unit} is not whole {quote.code} base units",
            )
        return cls(bpl, qpu)


def to_decimal(asset: AssetSpec, base_units: int) -> str:
    """``base_units`` of ``asset`` as a plain decimal string with the asset's decimals
    (``to_decimal(usdt18, 15 * 10**17) == "1.500000000000000000"``)."""
    d = asset.decimals
    sign = "-" if base_units < 0 else ""
    digits = str(abs(base_units)).rjust(d + 1, "0")
    if d == 0:
        return sign + digits
    return f"{sign}{digits[:-d]}.{digits[-d:]}"


def from_decimal(asset: AssetSpec, text: str) -> int:
    """A decimal string of ``asset`` to exact base units (``"1.5"`` of 18 decimals:
    ``1_500_000_000_000_000_000``). Trailing zeros beyond the asset's decimals are accepted
    (the value is exact); any other digit beyond them is not.

    Raises:
        ValueError: not a finite decimal number, or finer than one base unit.
    """
    try:
        d = Decimal(text.strip())
    except (InvalidOperation, AttributeError) as exc:
        raise ValueError(f"{text!r} is not a decimal number") from exc
    if not d.is_finite():
        raise ValueError(f"{text!r} is not finite")
    try:
        scaled = d.scaleb(asset.decimals, _EXACT)
    except Inexact as exc:
        raise ValueError(f"{text!r} has too many digits") from exc
    return _integral(
        scaled, f"{text} {asset.code} has more than {asset.decimals} decimals (finer than 1 unit)"
    )
