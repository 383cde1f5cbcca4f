"""The campaign's figures of merit: counts, medians, and the coverage of the regions with its uncertainty.

A region covers a reference when the reference's map pixel lies inside it; the coverage of the 50% and 90%
regions is the fraction of references inside, with a central 68.27% Clopper-Pearson interval. The coverage curve
does the same for the chi-square (2 degrees of freedom) levels of nominal 10%..99% (Wilks). Pure functions of
the catalog rows (``skyscan.campaign.report.rows``); ``Stats.as_dict`` is report.json's body.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skyscan.campaign.report.rows import LABELS

CI_LEVEL = 0.6827  # central interval of the coverage fractions ("1 sigma")
NOMINAL = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)  # levels of the coverage curve


@dataclass(frozen=True)
class Fraction:
    """k of n, with a central Clopper-Pearson interval at CI_LEVEL."""

    k: int
    n: int
    lo: float
    hi: float

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {"k": self.k, "n": self.n, "fraction": _clean(self.value), "lo": _clean(self.lo), "hi": _clean(self.hi)}


def clopper_pearson(k: int, n: int, level: float = CI_LEVEL) -> Fraction:
    """Exact binomial interval: the beta quantiles at (1 - level)/2 and (1 + level)/2."""
    from scipy.stats import beta

    if n <= 0:
        return Fraction(k, n, math.nan, math.nan)
    alpha = 1.0 - level
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return Fraction(k, n, lo, hi)


def wilks_level(nominal: float) -> float:
    """2*delta-llh of nominal coverage p for 2 degrees of freedom: -2 ln(1 - p)."""
    return -2.0 * math.log1p(-nominal)


def _clean(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass
class Stats:
    """What the report shows; ``as_dict`` is report.json's body."""

    counts: dict[str, int]
    area90_median: float | None
    wall_median: float | None
    wall_total: float | None
    ref_sources: dict[str, int]
    error_median: float | None
    error_q68: float | None
    coverage: dict[str, Fraction] = field(default_factory=dict)
    curve: list[tuple[float, float, Fraction]] = field(default_factory=list)
    calibrated: Any = None  # report.calibrated.CalibratedStats: coverage with a calibration table's levels

    def as_dict(self) -> dict[str, Any]:
        out = self._as_dict()
        if self.calibrated is not None:
            out["references"]["calibrated"] = self.calibrated.as_dict()
        return out

    def _as_dict(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "area90_median_deg2": self.area90_median,
            "wall_seconds_median": self.wall_median,
            "wall_seconds_total": self.wall_total,
            "references": {
                "sources": dict(self.ref_sources),
                "n": sum(self.ref_sources.values()),
                "angular_error_median_deg": self.error_median,
                "angular_error_68_deg": self.error_q68,
                "coverage": {label: f.as_dict() for label, f in self.coverage.items()},
                "coverage_curve": [
                    {"nominal": p, "level_2dllh": round(level, 6), **f.as_dict()} for p, level, f in self.curve
                ],
                "interval": f"central {CI_LEVEL:.2%} Clopper-Pearson",
            },
        }


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if values else None


def compute_stats(rows: Sequence[Mapping[str, Any]]) -> Stats:
    """The report's figures from the catalog rows (areas in deg2, wall times in s, angular errors in deg)."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row["state"])] = counts.get(str(row["state"]), 0) + 1
    counts["events"] = sum(1 for r in rows if r["state"] != "rejected")
    done = [r for r in rows if r["state"] == "done"]
    areas = [float(r["area_90_deg2"]) for r in done if r["area_90_deg2"] is not None]
    walls = [float(r["wall_seconds"]) for r in done if r["wall_seconds"] is not None]
    with_ref = [r for r in done if r["ang_error_deg"] is not None]
    errors = [float(r["ang_error_deg"]) for r in with_ref]
    sources: dict[str, int] = {}
    for r in with_ref:
        sources[str(r["ref_source"])] = sources.get(str(r["ref_source"]), 0) + 1
    stats = Stats(
        counts=counts,
        area90_median=_median(areas),
        wall_median=_median(walls),
        wall_total=float(sum(walls)) if walls else None,
        ref_sources=sources,
        error_median=_median(errors),
        error_q68=float(np.quantile(errors, 0.68)) if errors else None,
    )
    for label in LABELS:
        judged = [r[f"ref_in{label}"] for r in with_ref if r[f"ref_in{label}"] is not None]
        stats.coverage[label] = clopper_pearson(sum(1 for v in judged if v), len(judged))
    # every event whose map was read; ref_dllh2 None there means the reference pixel's fit failed: outside
    evaluated = [r for r in with_ref if r["ref_in50"] is not None or r["ref_in90"] is not None]
    dllh = [r["ref_dllh2"] for r in evaluated]
    for p in NOMINAL:
        level = wilks_level(p)
        inside = sum(1 for v in dllh if v is not None and v <= level)
        stats.curve.append((p, level, clopper_pearson(inside, len(dllh))))
    return stats


__all__ = ["CI_LEVEL", "NOMINAL", "Fraction", "Stats", "clopper_pearson", "compute_stats", "wilks_level"]
