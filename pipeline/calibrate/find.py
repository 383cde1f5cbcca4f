"""The level finder: from the 2*delta-llh of the truth in N pseudo-events, the levels that contain it 50% / 90%.

Pure functions of an array of test statistics T_i = 2*(llh(pixel of the true direction) - llh(best fit)) (the same
quantity the campaign catalog calls ``ref_dllh2``). A truth whose pixel has no finite llh, or that lay outside the
reconstructed disc, counts as never inside (T = +inf): it can only make the levels larger, never smaller.

The level at coverage p is the order statistic T_(k) with k = ceil(p * (N + 1)) (a region is "2*delta-llh <= L").
Why N + 1 and not N: the levels are used on a *new* event (the alert being contoured, or the next event of a
table's bin), and for a new draw exchangeable with the N calibration truths P(T_new <= T_(k)) = k / (N + 1)
exactly (continuous T), so this k is the smallest rank whose expected coverage of a new event is at least p.
The plain empirical quantile (k = ceil(p * N)) covers a new event k / (N + 1) >= p - p / (N + 1): with 30
truths its 90% level covers a new event 87% of the time, not 90%. When N is too small for that rank
(k > N: fewer than p / (1 - p) truths, e.g. 9 for 90%) the level is the largest truth, T_(N), which still holds
every calibration truth but whose expected coverage N / (N + 1) is below p; the reported coverage k / N and its
interval show it. Its 68% interval is the pair of order statistics that bracket the p-quantile with central
binomial probability 68.27% (the distribution-free interval of a quantile); the coverage at the chosen level
comes with its Clopper-Pearson interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from skyscan.campaign.report.stats import CI_LEVEL, NOMINAL, clopper_pearson
from skyscan.errors import InputError

FloatArray = npt.NDArray[np.float64]

PRODUCT_COVERAGE = {"50": 0.5, "90": 0.9}


def _clean(values: npt.ArrayLike) -> FloatArray:
    t = np.asarray(values, dtype=np.float64).reshape(-1)
    t = np.where(np.isnan(t), np.inf, t)
    return np.sort(np.maximum(t, 0.0))


def level_rank(n: int, coverage: float) -> int:
    """The 1-based rank k of the level among n sorted truths: ceil(coverage * (n + 1)), at most n (see above)."""
    return min(n, max(1, math.ceil(coverage * (n + 1) - 1e-9)))


def find_level(values: npt.ArrayLike, coverage: float) -> float:
    """The 2*delta-llh level T_(k), k = `level_rank`, that contains a new event with probability >= ``coverage``.

    At least ``coverage`` of the given values are <= the level too. InputError if it cannot be reached (the
    rank falls on a truth that failed: too many truths outside the disc)."""
    if not 0.0 < coverage < 1.0:
        raise InputError(f"coverage must lie in (0, 1), got {coverage!r}")
    t = _clean(values)
    if t.size == 0:
        raise InputError("no pseudo-events: cannot find a containment level")
    k = level_rank(int(t.size), coverage)
    level = float(t[k - 1])
    if not math.isfinite(level):
        raise InputError(
            f"only {int(np.sum(np.isfinite(t)))} of {t.size} truths have a finite 2*delta-llh: "
            f"coverage {coverage:g} cannot be reached (widen the disc)"
        )
    return level


def quantile_interval(values: npt.ArrayLike, coverage: float, ci: float = CI_LEVEL) -> tuple[float, float]:
    """Distribution-free central ``ci`` interval of the ``coverage`` quantile: two order statistics.

    The number of values below the true quantile is Binomial(N, coverage); the order statistics at its
    (1 - ci)/2 and (1 + ci)/2 quantiles bracket the true level with probability >= ci. Ends beyond the sample
    are +-inf (then too few pseudo-events to bound that side).
    """
    from scipy.stats import binom

    t = _clean(values)
    n = t.size
    if n == 0:
        return (math.nan, math.nan)
    lo_k = int(binom.ppf((1.0 - ci) / 2.0, n, coverage))  # values below: lo_k -> order statistic lo_k (1-based)
    hi_k = int(binom.ppf((1.0 + ci) / 2.0, n, coverage)) + 1
    lo = float(t[lo_k - 1]) if lo_k >= 1 else 0.0
    hi = float(t[hi_k - 1]) if hi_k <= n else math.inf
    return lo, hi


@dataclass(frozen=True)
class LevelResult:
    """One calibrated level: its 2*delta-llh, the interval of that level, the coverage reached and its interval."""

    label: str
    nominal: float
    level: float
    level_lo: float
    level_hi: float
    k: int
    n: int
    coverage_lo: float
    coverage_hi: float

    @property
    def coverage(self) -> float:
        return self.k / self.n if self.n else math.nan

    def as_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {
            "nominal": self.nominal,
            "level_2dllh": self.level,
            "level_interval_68": [num(self.level_lo), num(self.level_hi)],
            "k": self.k,
            "n": self.n,
            "coverage": self.coverage,
            "coverage_interval_68": [num(self.coverage_lo), num(self.coverage_hi)],
        }


def level_result(values: npt.ArrayLike, label: str, nominal: float) -> LevelResult:
    """The calibrated level at ``nominal`` coverage with both intervals (see the module docstring)."""
    t = _clean(values)
    level = find_level(t, nominal)
    lo, hi = quantile_interval(t, nominal)
    k = int(np.sum(t <= level))
    frac = clopper_pearson(k, int(t.size), CI_LEVEL)
    return LevelResult(label, nominal, level, lo, hi, k, int(t.size), frac.lo, frac.hi)


def product_levels(values: npt.ArrayLike) -> dict[str, LevelResult]:
    """The '50' and '90' levels every product needs."""
    return {label: level_result(values, label, p) for label, p in PRODUCT_COVERAGE.items()}


def level_curve(values: npt.ArrayLike, nominal: Sequence[float] = NOMINAL) -> list[dict[str, Any]]:
    """Calibrated level at every nominal coverage of the report's curve (None where it cannot be reached)."""
    t = _clean(values)
    out: list[dict[str, Any]] = []
    for p in nominal:
        try:
            level: float | None = find_level(t, p)
        except InputError:
            level = None
        out.append({"nominal": p, "level_2dllh": level})
    return out


def coverage_at(values: npt.ArrayLike, level: float) -> tuple[int, int]:
    """(inside, total): how many values are <= level."""
    t = _clean(values)
    return int(np.sum(t <= level)), int(t.size)


__all__ = [
    "PRODUCT_COVERAGE",
    "LevelResult",
    "coverage_at",
    "find_level",
    "level_curve",
    "level_rank",
    "level_result",
    "product_levels",
    "quantile_interval",
]
