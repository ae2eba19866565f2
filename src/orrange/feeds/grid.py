"""Exchange decimals onto our market's integer grid, fast (the feed's per-tick normalization).

An exchange price or quantity (an exact :class:`~decimal.Decimal`, see
:mod:`orrange.marketdata.ticks`) becomes integer ticks or lots of one of our markets by
``value / step`` rounded half even, since an exchange's grid may be finer than ours. This runs
for every tick, so :class:`GridConverter` avoids the general Decimal division: for a step that is
a power of ten (``0.01``, ``1``, ``100``) it shifts the exponent (exact), and it remembers the
values it saw last (prices and sizes repeat a lot in a market), so most conversions are one
dictionary lookup. Results are identical to ``int((value / step).to_integral_value(
ROUND_HALF_EVEN))``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

__all__ = ["GridConverter"]

_CACHE_MAX = 8_192  # distinct values remembered per converter (cleared when full)


class GridConverter:
    """``value / step`` rounded half even to an integer, for one step (e.g. a tick size).

    Args:
        step: the grid step, a positive decimal string or Decimal (``"0.01"``).

    Raises:
        ValueError: ``step`` is not a positive finite decimal.

    Example::

        ticks = GridConverter("0.01")
        ticks(Decimal("65012.375"))  # 6501238 (half even: .375 -> .38)
    """

    __slots__ = ("_cache", "_shift", "_step", "step")

    def __init__(self, step: str | Decimal) -> None:
        d = Decimal(step)
        if not d.is_finite() or d <= 0:
            raise ValueError(f"grid step must be a positive decimal: {step!r}")
        self.step = d
        self._step = d
        norm = d.normalize()
        _sign, digits, exp = norm.as_tuple()
        # a power of ten: value / step == value.scaleb(-exp)
        self._shift: int | None = -int(exp) if digits == (1,) else None
        self._cache: dict[Decimal, int] = {}

    def __call__(self, value: Decimal) -> int:
        """``value`` in steps, rounded half even (also :meth:`convert`, a little faster to call
        as a bound method)."""
        return self.convert(value)

    def convert(self, value: Decimal) -> int:
        """``value`` in steps, rounded half even."""
        n = self._cache.get(value)
        if n is not None:
            return n
        shift = self._shift
        q = value.scaleb(shift) if shift is not None else value / self._step
        n = int(q)
        if n != q:
            n = int(q.to_integral_value(rounding=ROUND_HALF_EVEN))
        cache = self._cache
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[value] = n
        return n
