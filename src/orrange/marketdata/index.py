"""Index price of a market from several sources: robust, weighted, exact integer ticks.

Each source (an exchange feed, our own last trade ...) reports prices in **ticks** of the
market with an optional traded quantity in **lots**; all times are **ms UTC passed in by the
caller** (the core reads no clock). :meth:`IndexCalculator.compute` then does, at time
``now``:

1. **Staleness eviction.** A source whose last price is older than ``stale_after_ms`` drops
   out (it rejoins with its next update).
2. **Failover.** Primary sources are used; when fewer than ``min_sources`` primaries are live,
   the live ``fallback`` sources join. With no usable source there is no index (``None``); the
   caller keeps the previous value and its consumers see the confidence fall to 0.
3. **Outlier rejection (median and MAD, the Hampel identifier).** With ``m`` the median of the
   prices and ``MAD = median(|p_i - m|)``, a price is an outlier iff

       |p_i - m| > k * 1.4826 * MAD   and   |p_i - m| > m * min_band_bps / 10000

   ``1.4826 * MAD`` estimates the standard deviation for normal data (1.4826 = 1/Φ⁻¹(3/4));
   ``k`` is ``mad_k_milli / 1000``, default 3 (Hampel's rule; Leys et al. recommend 2.5 as
   "moderately conservative"). Sources: F. R. Hampel, "The influence curve and its role in
   robust estimation", JASA 69 (1974) 383-393; C. Leys, C. Ley, O. Klein, P. Bernard,
   L. Licata, "Detecting outliers: Do not use standard deviation around the mean, use absolute
   deviation around the median", J. Exp. Soc. Psychology 49 (2013) 764-766. The band floor
   keeps a 1-tick disagreement from being an "outlier" when most sources agree exactly
   (MAD = 0). Needs 3 or more sources to reject anything (with 2 the median is their midpoint).
   Evaluated in exact integer arithmetic (prices doubled so half-tick medians stay integers).
4. **Weighted mean.** Accepted source ``i`` gets weight ``w_i = weight_i * ((1 - b) + b * n *
   v_i / V)`` where ``weight_i`` is the configured weight, ``v_i`` its traded lots over the last
   ``volume_window_ms`` (summed in :data:`VOLUME_STEPS` steps), ``V = Σ v_i``, ``n`` the
   number of accepted sources and ``b = volume_blend_bps / 10000``: with equal volumes (or no
   volume data, ``V = 0``) the
   configured weights apply unchanged, ``b = 1`` weighs fully by volume share. The index is
   ``Σ w_i p_i / Σ w_i`` rounded half up to a whole tick (all integers).
5. **Confidence** in ``[0, 1]`` = ``coverage * agreement``: ``coverage = min(1, Σ weight_i of
   accepted sources / Σ weight_i of all primary sources)`` and ``agreement = max(0, 1 -
   dispersion_bps / max_dispersion_bps)`` with ``dispersion_bps = 10000 * 1.4826 * MAD' /
   index`` and ``MAD'`` the MAD of the accepted prices. A float: it is a score, not money.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

import msgspec

__all__ = [
    "VOLUME_STEPS",
    "IndexCalculator",
    "IndexConfig",
    "IndexEngine",
    "IndexPrice",
    "SourceConfig",
]

_C_NUM, _C_DEN = 14826, 10000  # 1.4826 = 1 / Phi^-1(3/4), MAD -> sigma for normal data
#: Steps of the volume window in which a source's traded volume is summed.
VOLUME_STEPS = 60


class SourceConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One price source of a market.

    Attributes:
        name: source id (e.g. ``"binance"``).
        weight: configured relative weight, a positive integer.
        fallback: used only when fewer than ``min_sources`` primary sources are live.
    """

    name: str
    weight: int = 1
    fallback: bool = False


class IndexConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Index parameters of one market (see the module docstring for the formula).

    Attributes:
        sources: the sources; names unique, at least one primary.
        stale_after_ms: a source silent longer than this drops out.
        volume_window_ms: window of the recent traded volume used for weights.
        volume_blend_bps: ``b`` in basis points, 0 (configured weights only) to 10000.
        mad_k_milli: ``k`` of the outlier rule in thousandths (3000 = 3.0).
        min_band_bps: deviations from the median within this many bps are never outliers.
        min_sources: fallbacks join when fewer primaries than this are live.
        max_dispersion_bps: dispersion at which the agreement part of confidence reaches 0.

    Raises:
        ValueError: on construction, for any inconsistent value.
    """

    sources: tuple[SourceConfig, ...]
    stale_after_ms: int = 10_000
    volume_window_ms: int = 60_000
    volume_blend_bps: int = 5_000
    mad_k_milli: int = 3_000
    min_band_bps: int = 5
    min_sources: int = 1
    max_dispersion_bps: int = 100

    def __post_init__(self) -> None:
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate source names in {names}")
        if not any(not s.fallback for s in self.sources):
            raise ValueError("an index needs at least one primary (non-fallback) source")
        if any(s.weight <= 0 for s in self.sources):
            raise ValueError("source weights must be positive integers")
        if self.stale_after_ms <= 0 or self.volume_window_ms <= 0:
            raise ValueError("stale_after_ms and volume_window_ms must be positive")
        if not 0 <= self.volume_blend_bps <= 10_000:
            raise ValueError("volume_blend_bps must be within 0..10000")
        if self.mad_k_milli <= 0 or self.min_band_bps < 0 or self.max_dispersion_bps <= 0:
            raise ValueError("mad_k_milli and max_dispersion_bps must be positive")
        if self.min_sources < 1:
            raise ValueError("min_sources must be at least 1")


class IndexPrice(msgspec.Struct, frozen=True, gc=False, tag_field="type", tag="index_price"):
    """An index value.

    Attributes:
        symbol: market name.
        ts: the ``now`` it was computed for, ms UTC.
        price: index price in ticks.
        confidence: score in ``[0, 1]`` (float; see the module docstring).
        sources: names of the sources in the mean, in configuration order.
        rejected: live sources rejected as outliers.
        stale: sources evicted for silence (they had reported before).
        fallback: true when fallback sources were needed.
    """

    symbol: str
    ts: int
    price: int
    confidence: float
    sources: tuple[str, ...]
    rejected: tuple[str, ...]
    stale: tuple[str, ...]
    fallback: bool


_NO_STEP = -(2**63)


class _Source:
    __slots__ = (
        "fallback",
        "name",
        "price",
        "step",
        "step_qty",
        "step_ts",
        "ts",
        "vol",
        "vol_qty",
        "vol_ts",
        "weight",
    )

    def __init__(self, cfg: SourceConfig) -> None:
        self.name = cfg.name
        self.weight = cfg.weight
        self.fallback = cfg.fallback
        self.price = 0
        self.ts = 0
        # volume steps (see IndexCalculator.update): the lots of the window (``vol``) are those
        # of the finished steps, oldest first (their last trade ts and lots in two deques of
        # ints: nothing for the garbage collector to track), and of the current step (the last
        # one begun: its number, last trade ts and lots, kept inline: one object less to touch
        # per trade)
        self.vol = 0
        self.vol_ts: deque[int] = deque()
        self.vol_qty: deque[int] = deque()
        self.step = _NO_STEP
        self.step_ts = 0
        self.step_qty = 0


def _median2(sorted_vals: list[int]) -> int:
    """Twice the median of a sorted non-empty list (an integer even for an even count)."""
    n = len(sorted_vals)
    h = n // 2
    return 2 * sorted_vals[h] if n % 2 else sorted_vals[h - 1] + sorted_vals[h]


class IndexCalculator:
    """The index of one market. Not thread-safe; one owner (the feed/index actor).

    Example::

        cfg = IndexConfig(sources=(SourceConfig(name="binance", weight=2),
                                   SourceConfig(name="kraken"),
                                   SourceConfig(name="own", fallback=True)))
        idx = IndexCalculator("BTC-USDT", cfg)
        idx.update("binance", ts=1_700_000_000_000, price=6_500_012, qty=3)
        idx.compute(now=1_700_000_000_050)  # IndexPrice(price=6500012, confidence=0.666...)
    """

    __slots__ = (
        "_list",
        "_primary_names",
        "_primary_weight",
        "_sources",
        "_step",
        "_window",
        "config",
        "symbol",
    )

    def __init__(self, symbol: str, config: IndexConfig) -> None:
        self.symbol = symbol
        self.config = config
        self._list = [_Source(c) for c in config.sources]
        self._sources = {s.name: s for s in self._list}
        self._primary_weight = sum(s.weight for s in self._list if not s.fallback)
        # the names of the sources in the mean when every primary is (the usual case)
        self._primary_names = tuple(s.name for s in self._list if not s.fallback)
        self._window = config.volume_window_ms
        self._step = max(1, config.volume_window_ms // VOLUME_STEPS)

    def update(self, source: str, ts: int, price: int, qty: int = 0) -> None:
        """Record a price (ticks) from ``source`` at ``ts`` (ms UTC), with traded lots ``qty``
        (0 for a quote such as a mid price). An update older than the source's last one is
        ignored for the price but its volume still counts.

        Volume is kept in :data:`VOLUME_STEPS` steps of the volume window (trades whose
        timestamps fall in the same ``volume_window_ms / VOLUME_STEPS`` step are summed), so
        memory stays bounded at any trade rate; a step leaves the window when its last trade
        does (a trade may count up to one step longer than ``volume_window_ms``).

        Raises:
            KeyError: ``source`` is not configured for this market.
            ValueError: ``price`` not positive or ``qty`` negative.
        """
        s = self._sources[source]
        if price <= 0 or qty < 0:
            raise ValueError(f"price must be positive and qty non-negative: {price}, {qty}")
        if ts >= s.ts:
            s.ts = ts
            s.price = price
        if qty:
            s.vol += qty
            step = ts // self._step
            if step == s.step:
                s.step_qty += qty
                if ts > s.step_ts:
                    s.step_ts = ts
                return
            vol_ts = s.vol_ts
            if s.step_qty:
                vol_ts.append(s.step_ts)
                s.vol_qty.append(s.step_qty)
            s.step, s.step_ts, s.step_qty = step, ts, qty
            horizon = ts - self._window  # steps leave as new ones begin (and in compute)
            while vol_ts and vol_ts[0] <= horizon:
                vol_ts.popleft()
                s.vol -= s.vol_qty.popleft()

    def compute(self, now: int) -> IndexPrice | None:
        """The index at ``now`` (ms UTC), or ``None`` if no source is usable."""
        cfg = self.config
        horizon = now - cfg.stale_after_ms
        live: list[_Source] = []
        stale: list[str] = []
        primaries = 0
        for s in self._list:
            if not s.price:
                continue
            if s.ts < horizon:
                stale.append(s.name)
            else:
                live.append(s)
                if not s.fallback:
                    primaries += 1
        fallback = False
        if primaries < cfg.min_sources:
            fallback = primaries < len(live)
        elif primaries < len(live):
            live = [s for s in live if not s.fallback]
        if not live:
            return None

        rejected: list[str] = []
        n = len(live)
        mad4 = -1  # 4 * MAD of the accepted prices, when known
        if n >= 2:
            prices = sorted([s.price for s in live])
            m2 = _median2(prices)
            mad4 = _median2(sorted([abs(2 * p - m2) for p in prices]))
            if n >= 3:
                # outlier iff |p-m| > k*1.4826*MAD and |p-m| > m*band (doubled/quadrupled units)
                lim_mad = cfg.mad_k_milli * _C_NUM * mad4
                lim_band = m2 * cfg.min_band_bps
                kept = []
                for s in live:
                    d2 = abs(2 * s.price - m2)
                    if d2 * (2000 * _C_DEN) > lim_mad and d2 * 10_000 > lim_band:
                        rejected.append(s.name)
                    else:
                        kept.append(s)
                if rejected:
                    live = kept
                    n = len(live)
                    mad4 = -1

        # weights: configured weight blended with the share of recent volume
        total_v = 0
        vhorizon = now - cfg.volume_window_ms
        for s in live:
            vol_ts = s.vol_ts
            while vol_ts and vol_ts[0] <= vhorizon:
                vol_ts.popleft()
                s.vol -= s.vol_qty.popleft()
            if not vol_ts and s.step_qty and s.step_ts <= vhorizon:  # the current step left too
                s.vol -= s.step_qty
                s.step, s.step_qty = _NO_STEP, 0
            total_v += s.vol
        num = 0
        den = 0
        accepted_weight = 0
        if total_v == 0 or cfg.volume_blend_bps == 0:
            for s in live:
                num += s.weight * s.price
                den += s.weight
            accepted_weight = den
        else:
            base = (10_000 - cfg.volume_blend_bps) * total_v
            bn = cfg.volume_blend_bps * n
            for s in live:
                w = s.weight * (base + bn * s.vol)
                num += w * s.price
                den += w
                accepted_weight += s.weight
        price = (2 * num + den) // (2 * den)

        # confidence = coverage * agreement
        coverage = accepted_weight / self._primary_weight
        if coverage > 1.0:
            coverage = 1.0
        if n >= 2:
            if mad4 < 0:
                prices = sorted([s.price for s in live])
                m2 = _median2(prices)
                mad4 = _median2(sorted([abs(2 * p - m2) for p in prices]))
            dispersion_bps = (10_000 * _C_NUM) * mad4 / ((4 * _C_DEN) * price)
            agreement = 1.0 - dispersion_bps / cfg.max_dispersion_bps
            if agreement < 0.0:
                agreement = 0.0
        else:
            agreement = 1.0
        names = self._primary_names
        if fallback or n != len(names):  # live is a subset of the primaries in order otherwise
            names = tuple([s.name for s in live])
        return IndexPrice(
            self.symbol,
            now,
            price,
            coverage * agreement,
            names,
            tuple(rejected) if rejected else (),
            tuple(stale) if stale else (),
            fallback,
        )


class IndexEngine:
    """Index calculators for many markets, keyed by symbol.

    Args:
        configs: per-symbol :class:`IndexConfig`.
        default: config for symbols not in ``configs`` (created on first update); without it
            an unknown symbol raises ``KeyError``.
    """

    __slots__ = ("_by_symbol", "_configs", "_default")

    def __init__(
        self, configs: Mapping[str, IndexConfig], default: IndexConfig | None = None
    ) -> None:
        self._configs = dict(configs)
        self._default = default
        self._by_symbol: dict[str, IndexCalculator] = {
            sym: IndexCalculator(sym, cfg) for sym, cfg in self._configs.items()
        }

    def calculator(self, symbol: str) -> IndexCalculator:
        """The calculator of ``symbol`` (created from the default config if needed).

        Raises:
            KeyError: unknown symbol and no default config.
        """
        calc = self._by_symbol.get(symbol)
        if calc is None:
            if self._default is None:
                raise KeyError(symbol)
            calc = self._by_symbol[symbol] = IndexCalculator(symbol, self._default)
        return calc

    def update(self, symbol: str, source: str, ts: int, price: int, qty: int = 0) -> None:
        """:meth:`IndexCalculator.update` for ``symbol``.

        Raises:
            KeyError: unknown symbol (without default) or source.
            ValueError: ``price`` not positive or ``qty`` negative.
        """
        calc = self._by_symbol.get(symbol) or self.calculator(symbol)
        calc.update(source, ts, price, qty)

    def compute(self, symbol: str, now: int) -> IndexPrice | None:
        """:meth:`IndexCalculator.compute` for ``symbol``.

        Raises:
            KeyError: unknown symbol (without default).
        """
        return self.calculator(symbol).compute(now)

    def compute_many(self, symbols: Iterable[str], now: int) -> list[IndexPrice]:
        """Indexes of ``symbols`` at ``now`` (those without a usable source are left out)."""
        out = []
        by_symbol = self._by_symbol
        for sym in symbols:
            calc = by_symbol.get(sym) or self.calculator(sym)
            ip = calc.compute(now)
            if ip is not None:
                out.append(ip)
        return out
