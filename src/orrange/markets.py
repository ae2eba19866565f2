"""Market specifications and exact decimal <-> integer conversion.

Inside the engine every price is an integer number of **ticks** and every quantity an integer
number of **lots**; decimal strings exist only at the edges (API, config, files). A
:class:`MarketSpec` owns the grid of one market and converts between the two worlds, rejecting
anything that is off the grid, non-finite, zero, negative or outside the market's limits with a
:class:`InvalidValue` that carries a machine-readable :class:`ValueReason`.

Notional and fees use the market's **quote unit**: ``tick_size * lot_size`` of the quote asset,
so ``price_ticks * qty_lots`` is an exact integer notional (see :meth:`MarketSpec.notional`).

Markets are loaded from ``config/markets.toml`` (see :func:`load_markets`); each ``[[market]]``
table holds the fields of :class:`MarketSpec` with decimal values written as strings.
"""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import msgspec

__all__ = [
    "InvalidValue",
    "MarketSpec",
    "PriorityPolicy",
    "Settlement",
    "ValueReason",
    "load_markets",
    "parse_markets",
]

PriorityPolicy = Literal["price-time", "price-reputation-time"]
#: How a market's fills are paid (docs/funds.md): ``vault`` both assets from the vault ledger,
#: ``p2p`` the base asset from the ledger into a P2P escrow and the quote in fiat off-chain,
#: ``none`` no funds (replay and simulation markets).
Settlement = Literal["vault", "p2p", "none"]


class ValueReason(enum.StrEnum):
    """Why a decimal value was refused (machine-readable, stable)."""

    NOT_A_NUMBER = "not_a_number"
    NOT_FINITE = "not_finite"
    NOT_POSITIVE = "not_positive"
    OFF_TICK = "off_tick"
    OFF_LOT = "off_lot"
    BELOW_MIN_QTY = "below_min_qty"
    ABOVE_MAX_QTY = "above_max_qty"
    BELOW_MIN_NOTIONAL = "below_min_notional"
    TOO_LARGE = "too_large"


class InvalidValue(ValueError):
    """A decimal string that cannot become ticks or lots.

    Attributes:
        field: the name of the offending field (``"price"``, ``"quantity"`` ...).
        reason: a :class:`ValueReason`.
        message: a human-readable explanation naming the value and the rule.
    """

    def __init__(self, field: str, reason: ValueReason, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = reason
        self.message = message


# Largest integer the engine accepts for ticks or lots: keeps notional products inside 2**126.
_MAX_UNITS = 2**63 - 1


def _parse_decimal(field: str, value: str | int | Decimal) -> Decimal:
    if isinstance(value, float):  # pragma: no cover - guarded by typing, kept for callers
        raise InvalidValue(field, ValueReason.NOT_A_NUMBER, "floats are not accepted; use a string")
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise InvalidValue(
            field, ValueReason.NOT_A_NUMBER, f"{value!r} is not a decimal number"
        ) from exc
    if not d.is_finite():
        raise InvalidValue(field, ValueReason.NOT_FINITE, f"{value!r} is not finite")
    if d <= 0:
        raise InvalidValue(field, ValueReason.NOT_POSITIVE, f"{value!r} must be greater than zero")
    return d


def _format(units: int, step: Decimal) -> str:
    """``units * step`` as a plain decimal string with the step's number of decimals."""
    exp = step.as_tuple().exponent
    places = -exp if isinstance(exp, int) and exp < 0 else 0
    value = Decimal(units) * step
    return f"{value:.{places}f}"


@dataclass(frozen=True, slots=True)
class _Derived:
    tick: Decimal
    lot: Decimal
    unit: Decimal
    min_lots: int
    max_lots: int
    min_notional_units: int


class MarketSpec(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """One market's grid, limits, fees and priority policy.

    Decimal fields are strings in the config and API (``tick_size="0.01"``); the integer views
    (``*_lots``, ``min_notional_units``) are computed at construction.

    Attributes:
        symbol: market name, ``BASE-QUOTE`` (e.g. ``"BTC-USDT"``).
        base, quote: asset codes.
        tick_size: price increment in quote per base (decimal string).
        lot_size: quantity increment in base (decimal string).
        min_qty, max_qty: order quantity limits in base (decimal strings, multiples of lot size).
        min_notional: minimum order value in quote (decimal string).
        price_band_bps: maximum distance of a limit price from the last trade, in basis points
            (enforced by the risk rules); 0 disables the band.
        maker_fee_bps, taker_fee_bps: fees in basis points of notional; negative is a rebate.
        priority: ``"price-time"`` or ``"price-reputation-time"`` (within a level, higher
            reputation tier first, then time).
        reputation_tier_size: reputation points per tier under ``price-reputation-time``.
        market_protection_bps: default maximum slippage of a market order from the best price
            at its arrival, in basis points.
        settlement: ``"vault"``, ``"p2p"`` or ``"none"`` (:data:`Settlement`): what backs the
            orders and pays the fills. A ``vault`` market needs ``maker_fee_bps +
            taker_fee_bps >= 0`` (a maker rebate never exceeds the taker fee it is paid from).
    """

    symbol: str
    base: str
    quote: str
    tick_size: str
    lot_size: str
    min_qty: str
    max_qty: str
    min_notional: str = "0"
    price_band_bps: int = 0
    maker_fee_bps: int = 0
    taker_fee_bps: int = 0
    priority: PriorityPolicy = "price-time"
    reputation_tier_size: int = 100
    market_protection_bps: int = 500
    settlement: Settlement = "none"

    def __post_init__(self) -> None:
        tick = Decimal(self.tick_size)
        lot = Decimal(self.lot_size)
        if not (tick.is_finite() and tick > 0 and lot.is_finite() and lot > 0):
            raise ValueError(f"{self.symbol}: tick_size and lot_size must be positive decimals")
        if self.reputation_tier_size <= 0:
            raise ValueError(f"{self.symbol}: reputation_tier_size must be positive")
        if self.market_protection_bps <= 0:
            raise ValueError(f"{self.symbol}: market_protection_bps must be positive")
        if self.settlement == "vault" and self.maker_fee_bps + self.taker_fee_bps < 0:
            raise ValueError(f"{self.symbol}: a maker rebate above the taker fee on a vault market")
        min_lots = Decimal(self.min_qty) / lot
        max_lots = Decimal(self.max_qty) / lot
        if min_lots != min_lots.to_integral_value() or max_lots != max_lots.to_integral_value():
            raise ValueError(f"{self.symbol}: min_qty and max_qty must be multiples of lot_size")
        if not 0 < min_lots <= max_lots:
            raise ValueError(f"{self.symbol}: need 0 < min_qty <= max_qty")
        unit = tick * lot
        notional_units = Decimal(self.min_notional) / unit
        # derived values: kept in the instance dict (never encoded), read through properties;
        # a notional of n units satisfies the minimum iff n >= ceil(min_notional / unit)
        self.__dict__["_derived"] = _Derived(
            tick,
            lot,
            unit,
            int(min_lots),
            int(max_lots),
            # Decimal // truncates toward zero, so round up explicitly
            int(notional_units.to_integral_value(rounding=ROUND_CEILING)),
        )

    @property
    def _d(self) -> _Derived:
        derived: _Derived = self.__dict__["_derived"]
        return derived

    @property
    def _tick(self) -> Decimal:
        return self._d.tick

    @property
    def _lot(self) -> Decimal:
        return self._d.lot

    @property
    def _unit(self) -> Decimal:
        return self._d.unit

    @property
    def _min_lots(self) -> int:
        return self._d.min_lots

    @property
    def _max_lots(self) -> int:
        return self._d.max_lots

    @property
    def _min_notional_units(self) -> int:
        return self._d.min_notional_units

    @property
    def min_lots(self) -> int:
        """Minimum order quantity in lots."""
        return self._min_lots

    @property
    def max_lots(self) -> int:
        """Maximum order quantity in lots."""
        return self._max_lots

    @property
    def min_notional_units(self) -> int:
        """Minimum notional in quote units (``tick_size * lot_size`` of quote)."""
        return self._min_notional_units

    @property
    def quote_unit(self) -> Decimal:
        """The value of one notional/fee unit in the quote asset: ``tick_size * lot_size``."""
        return self._unit

    # ---------------------------------------------------------------- conversions
    def price_to_ticks(self, value: str | int | Decimal, field: str = "price") -> int:
        """Convert a decimal price string to integer ticks.

        Raises:
            InvalidValue: not a number, not finite, zero or negative, or off the tick grid.
        """
        d = _parse_decimal(field, value)
        q = d / self._tick
        if q != q.to_integral_value():
            raise InvalidValue(
                field,
                ValueReason.OFF_TICK,
                f"{value} is not a multiple of the tick size {self.tick_size}",
            )
        n = int(q)
        if n > _MAX_UNITS:
            raise InvalidValue(field, ValueReason.TOO_LARGE, f"{value} is too large")
        return n

    def qty_to_lots(self, value: str | int | Decimal, field: str = "quantity") -> int:
        """Convert a decimal quantity string to integer lots, checking min and max quantity.

        Raises:
            InvalidValue: not a number, not finite, zero or negative, off the lot grid, below
                ``min_qty`` or above ``max_qty``.
        """
        d = _parse_decimal(field, value)
        q = d / self._lot
        if q != q.to_integral_value():
            raise InvalidValue(
                field,
                ValueReason.OFF_LOT,
                f"{value} is not a multiple of the lot size {self.lot_size}",
            )
        n = int(q)
        if n < self._min_lots:
            raise InvalidValue(
                field, ValueReason.BELOW_MIN_QTY, f"{value} is below the minimum {self.min_qty}"
            )
        if n > self._max_lots:
            raise InvalidValue(
                field, ValueReason.ABOVE_MAX_QTY, f"{value} is above the maximum {self.max_qty}"
            )
        return n

    def ticks_to_price(self, ticks: int) -> str:
        """Integer ticks to a decimal price string with the tick size's decimals."""
        return _format(ticks, self._tick)

    def lots_to_qty(self, lots: int) -> str:
        """Integer lots to a decimal quantity string with the lot size's decimals."""
        return _format(lots, self._lot)

    def units_to_quote(self, units: int) -> str:
        """Quote units (notional or fee) to a decimal quote-asset string."""
        return _format(units, self._unit)

    def quote_to_units(self, value: str | int | Decimal, field: str = "notional") -> int:
        """A positive decimal quote amount to quote units, rounded down to the unit grid.

        Raises:
            InvalidValue: not a number, not finite, zero or negative.
        """
        d = _parse_decimal(field, value)
        return int(d / self._unit)

    def notional(self, price_ticks: int, qty_lots: int) -> int:
        """Exact notional ``price * quantity`` in quote units."""
        return price_ticks * qty_lots

    def check_notional(self, price_ticks: int, qty_lots: int, field: str = "quantity") -> None:
        """Raise :class:`InvalidValue` (``below_min_notional``) if the order is too small."""
        if price_ticks * qty_lots < self._min_notional_units:
            raise InvalidValue(
                field,
                ValueReason.BELOW_MIN_NOTIONAL,
                f"notional {self.units_to_quote(price_ticks * qty_lots)} {self.quote} is below "
                f"the minimum {self.min_notional} {self.quote}",
            )


def parse_markets(data: dict[str, Any]) -> dict[str, MarketSpec]:
    """Build market specs from a parsed TOML document with a ``market`` array of tables.

    Raises:
        ValueError: a market is malformed or a symbol appears twice.
    """
    out: dict[str, MarketSpec] = {}
    for raw in data.get("market", []):
        try:
            spec = msgspec.convert(raw, MarketSpec)
        except msgspec.ValidationError as exc:
            raise ValueError(f"market {raw.get('symbol', '?')}: {exc}") from exc
        if spec.symbol in out:
            raise ValueError(f"market {spec.symbol} is defined twice")
        out[spec.symbol] = spec
    return out


def load_markets(path: str | Path) -> dict[str, MarketSpec]:
    """Load ``config/markets.toml`` (or any file of the same shape), keyed by symbol."""
    with open(path, "rb") as fh:
        return parse_markets(tomllib.load(fh))
