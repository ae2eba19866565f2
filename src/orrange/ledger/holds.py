"""What an open order needs held (docs/funds.md, "Holds are per order")."""

from __future__ import annotations

from typing import Final, Literal

from orrange.ledger.assets import MarketUnits

__all__ = ["FundedSettlement", "needed"]

#: The settlements that back orders with funds.
FundedSettlement = Literal["vault", "p2p"]
_BPS: Final = 10_000


def needed(
    *,
    settlement: FundedSettlement,
    units: MarketUnits,
    fee_bps: int,
    buy: bool,
    leaves: int,
    price: int,
) -> int:
    """Base units an order with ``leaves`` open lots needs held.

    A sell needs ``leaves * base_per_lot`` of the base asset. A buy on a ``p2p`` market needs
    nothing (the quote is fiat). A buy on a ``vault`` market with limit or protection price
    ``price`` (ticks) needs, in the quote asset, the notional ``n = price * leaves`` quote
    units plus the fee reserve ``ceil(n * fee_bps / 10000) + (leaves - 1)`` when ``fee_bps``
    (the market's highest positive fee rate) is positive, times ``quote_per_unit``. The
    ``leaves - 1`` covers the book's per-fill rounding: every fill (at least one lot each)
    rounds its fee up by less than one quote unit, so ``k`` fills cost at most
    ``ceil(n * fee_bps / 10000) + k - 1``. With it, what is left after any fill at or below
    ``price`` always covers what the rest of the order needs.

    Returns 0 for ``leaves <= 0`` or a non-positive price.
    """
    if leaves <= 0:
        return 0
    if not buy:
        return leaves * units.base_per_lot
    if settlement == "p2p" or price <= 0:
        return 0
    n = price * leaves
    if fee_bps > 0:
        n += (n * fee_bps + _BPS - 1) // _BPS + leaves - 1
    return n * units.quote_per_unit
