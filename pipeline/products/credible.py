"""The probability map that agrees with the quoted regions: PROBDENSITY proportional to exp(-w * delta-llh).

With Wilks' levels, exp(-delta-llh) (w = 1) is the posterior whose own credible regions are, for a Gaussian-like
likelihood, the quoted contours. With wider levels (IceCube's calibrated ones, or explicit numbers) that map would
contradict the regions shipped with it: a telescope planning from the map would tile a fraction of the region. So
for those levels w is chosen such that the map's own 90% credible region (pixels sorted by density, probability
accumulated, as ligo.skymap does) is exactly the 90% contour, i.e. the probability inside 2*delta-llh <= L90 is 0.9.
The 50% credible region of that map then generally differs from the 50% contour (the likelihood is not Gaussian);
both areas are reported. See docs/containment.md, "The probability map".

The weight is a calibration of the map's spread, not a statistical statement: it makes one region match, the
others are reported as they come out.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from skyscan.products.moc import MultiOrderMap, probability_density
from skyscan.products.summary import RESOLVE_MAX_NSIDE, RESOLVE_MIN_PIXELS

FloatArray = npt.NDArray[np.float64]

MATCHED_LABEL = "90"
"""The region whose probability fixes w (the outer region, as telescopes tile it)."""

MATCHED_PROBABILITY = 0.9
WEIGHT_RANGE = (1e-6, 1e6)
"""Search range of w; at either end the map cannot match (region is nearly the whole sky, or one pixel)."""

_SR_TO_DEG2 = (180.0 / math.pi) ** 2


def density(m: MultiOrderMap, weight: float = 1.0) -> FloatArray:
    """Probability per steradian, proportional to exp(-weight * delta-llh), normalised to 1 (failed pixels: 0)."""
    return probability_density(m, weight)


def credible_areas(dens: FloatArray, area_sr: FloatArray, probabilities: Iterable[float]) -> dict[float, float]:
    """Area (deg2) of the smallest region holding each probability: ligo.skymap's rule on a multi-order map.

    Pixels are sorted by density (highest first) and their probabilities (density * area) accumulated; the region
    at probability p is every pixel up to and including the first one at which the running sum reaches p.
    """
    order = np.argsort(-dens, kind="stable")
    prob = np.cumsum(dens[order] * area_sr[order])
    area = np.cumsum(area_sr[order]) * _SR_TO_DEG2
    out: dict[float, float] = {}
    for p in probabilities:
        i = int(np.searchsorted(prob, p * prob[-1], side="left"))
        out[float(p)] = float(area[min(i, area.size - 1)])
    return out


def probability_inside(m: MultiOrderMap, level_2dllh: float, weight: float) -> float:
    """Probability of the map with this weight inside the contour 2*delta-llh <= level."""
    dens = density(m, weight)
    d2 = m.dllh2
    inside = np.isfinite(d2) & (d2 <= level_2dllh)
    return float(np.sum(dens[inside] * m.area_sr[inside]))


@dataclass
class MapProbability:
    """How the probability map was scaled and how its own credible regions compare with the quoted contours."""

    weight: float  # w in PROBDENSITY ~ exp(-w * delta-llh)
    matched_label: str | None  # the label whose region fixed w; None for Wilks (w = 1 by definition)
    credible_area_deg2: dict[str, float] = field(default_factory=dict)  # label -> map's own credible area
    contour_area_deg2: dict[str, float] = field(default_factory=dict)  # label -> quoted contour area
    note: str = ""
    finest_nside: int | None = None  # the map's finest nside
    finest_pixels: dict[str, int] = field(default_factory=dict)  # label -> region pixels at finest_nside


def _percent(label: str) -> float | None:
    try:
        p = float(label) / 100.0
    except ValueError:
        return None
    return p if 0.0 < p < 1.0 else None


def solve_weight(m: MultiOrderMap, level_2dllh: float, probability: float = MATCHED_PROBABILITY) -> tuple[float, str]:
    """(w, note): w such that the map holds `probability` inside 2*delta-llh <= level (log-space bisection).

    The probability inside grows monotonically with w (a larger w concentrates the map on the best fit), so the
    root is unique; when it lies outside WEIGHT_RANGE the nearest end is used and the note says why.
    """
    lo, hi = math.log(WEIGHT_RANGE[0]), math.log(WEIGHT_RANGE[1])
    p_lo = probability_inside(m, level_2dllh, math.exp(lo))
    p_hi = probability_inside(m, level_2dllh, math.exp(hi))
    if p_lo >= probability:
        return math.exp(lo), "the region covers so much of the sky that even a nearly flat map holds the probability"
    if p_hi <= probability:
        return math.exp(hi), "the region is too small (too few pixels) for the map to hold the probability in it"
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if probability_inside(m, level_2dllh, math.exp(mid)) < probability:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return math.exp(hi), ""


def map_probability(m: MultiOrderMap, method: str, levels: Mapping[str, float]) -> MapProbability:
    """The weight for these levels (1 for Wilks, else matched at the 90% label) and the areas to compare."""
    if method == "wilks" or MATCHED_LABEL not in levels:
        weight, matched, note = 1.0, None, ""
    else:
        weight, note = solve_weight(m, levels[MATCHED_LABEL])
        matched = MATCHED_LABEL
    labels = {label: p for label in levels if (p := _percent(label)) is not None}
    dens = density(m, weight)
    areas = credible_areas(dens, m.area_sr, labels.values())
    d2 = m.dllh2
    contour = {}
    for label in labels:
        inside = np.isfinite(d2) & (d2 <= levels[label])
        contour[label] = float(np.sum(m.area_sr[inside])) * _SR_TO_DEG2
    finest = int(m.nside.max())
    at_finest = np.isfinite(d2) & (m.nside == finest)
    return MapProbability(
        weight=weight,
        matched_label=matched,
        credible_area_deg2={label: areas[p] for label, p in labels.items()},
        contour_area_deg2=contour,
        note=note,
        finest_nside=finest,
        finest_pixels={label: int(np.count_nonzero(at_finest & (d2 <= value))) for label, value in levels.items()},
    )


@functools.lru_cache(maxsize=4)
def _resolve_section(config_yaml: str) -> tuple[tuple[str, Any], ...]:
    """The ``scan.resolve`` mapping of a configuration text as (key, value) pairs (empty when there is none).

    Cached: a merge asks for it once per region and product, and parsing the YAML costs milliseconds each time.
    """
    import yaml

    try:
        doc = yaml.safe_load(config_yaml) if config_yaml else None
    except yaml.YAMLError:
        doc = None
    scan = doc.get("scan") if isinstance(doc, dict) else None
    resolve = scan.get("resolve") if isinstance(scan, dict) else None
    if not isinstance(resolve, dict):
        return ()
    return tuple((str(k), v) for k, v in resolve.items() if isinstance(v, (int, float, str, bool)) or v is None)


def _resolve_value(config_yaml: str, key: str, default: int) -> int:
    """``scan.resolve.<key>`` of a scan's resolved configuration (config.yaml text); ``default`` when the text is
    empty, unreadable or has no such key (an imported scan). The scan configuration validated the value."""
    value = dict(_resolve_section(config_yaml)).get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return default


def resolve_min_pixels(config_yaml: str) -> int:
    """``scan.resolve.min_pixels`` of a scan's configuration text (the default when it has none)."""
    return _resolve_value(config_yaml, "min_pixels", RESOLVE_MIN_PIXELS)


def resolve_max_nside(config_yaml: str) -> int:
    """``scan.resolve.max_nside`` of a scan's configuration text (the default when it has none)."""
    return _resolve_value(config_yaml, "max_nside", RESOLVE_MAX_NSIDE)


def resolution_of(mp: MapProbability | None, label: str, min_pixels: int) -> dict[str, Any]:
    """summary.json's resolution fields of the region ``label``: ``resolved`` (it holds at least ``min_pixels``
    pixels of the finest nside; None when not measured), ``finest_nside`` and ``finest_pixels``."""
    if mp is None or mp.finest_nside is None or label not in mp.finest_pixels:
        return {"resolved": None, "finest_nside": None, "finest_pixels": None}
    n = mp.finest_pixels[label]
    return {"resolved": n >= min_pixels, "finest_nside": mp.finest_nside, "finest_pixels": n}


__all__ = [
    "MATCHED_LABEL",
    "MATCHED_PROBABILITY",
    "MapProbability",
    "credible_areas",
    "density",
    "map_probability",
    "probability_inside",
    "resolution_of",
    "resolve_max_nside",
    "resolve_min_pixels",
    "solve_weight",
]
