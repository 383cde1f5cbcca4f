"""``skyscan calibrate --campaign CAMPDIR -o table.json``: calibrated levels as a function of an event observable.

From a finished simulated campaign, every done event with a truth gives T = 2*delta-llh of its truth's map pixel
(the catalog's ``ref_dllh2``) and an observable the scan knows before it starts (``total_charge``: summed pulse
charge in photoelectrons, or ``hit_doms``). Events are sorted by the observable and cut into equal-count bins of
at least ``min_per_bin`` events (at most ``max_bins``); in each bin the level finder (``skyscan.calibrate.find``)
gives the 50% and 90% levels, the order-statistic 68% interval of each level and the Clopper-Pearson 68% interval
of the coverage reached, and the levels along the report's nominal curve. Bin edges lie halfway (geometrically)
between neighbouring events; the outer bins extend to 0 and to 10x the largest value, and lookups beyond them take
the outer bin. Schema ``skyscan-calibration-table/1`` (docs/containment.md).
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from skyscan.atomic import write_json
from skyscan.calibrate.find import coverage_at, level_curve, product_levels
from skyscan.campaign.report.calibrated import event_observables_of, truth_statistic
from skyscan.campaign.report.rows import build_catalog
from skyscan.campaign.report.stats import CI_LEVEL, clopper_pearson
from skyscan.errors import InputError
from skyscan.products.levels import LEVELS, OBSERVABLES, TABLE_SCHEMA
from skyscan.timestamps import utcnow

DEFAULT_MIN_PER_BIN = 30
DEFAULT_MAX_BINS = 5


def campaign_statistics(campdir: str | os.PathLike[str], observable: str) -> tuple[Any, list[tuple[float, float]]]:
    """(manifest, [(observable, T)]) of every done event of a campaign with a simulation truth."""
    if observable not in OBSERVABLES:
        raise InputError(f"--observable: one of {', '.join(OBSERVABLES)}, got {observable!r}")
    manifest, rows = build_catalog(campdir)
    pairs: list[tuple[float, float]] = []
    for entry, row in zip(manifest.events, rows, strict=False):
        t = truth_statistic(row)
        if t is None:
            continue
        obs = event_observables_of(manifest.event_dir(entry))
        if obs is None:
            continue
        pairs.append((float(obs[observable]), t))
    return manifest, pairs


def bin_edges(values: np.ndarray[Any, Any], min_per_bin: int, max_bins: int) -> list[tuple[int, int]]:
    """[start, stop) index ranges of equal-count bins over sorted values, each of at least ``min_per_bin``."""
    n = int(values.size)
    n_bins = max(1, min(max_bins, n // max(min_per_bin, 1)))
    cuts = [round(i * n / n_bins) for i in range(n_bins + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(n_bins)]


def _edge(a: float, b: float) -> float:
    return math.sqrt(a * b) if a > 0 and b > 0 else 0.5 * (a + b)


def table_document(pairs: list[tuple[float, float]], observable: str, min_per_bin: int, max_bins: int) -> dict[str, Any]:
    """The bins of a calibration table from (observable, T) pairs; pure (no file, no time stamp)."""
    if min_per_bin < 2:
        raise InputError(f"--min-per-bin: at least 2, got {min_per_bin}")
    if len(pairs) < min_per_bin:
        raise InputError(
            f"only {len(pairs)} events with a truth and a map: need at least --min-per-bin {min_per_bin}"
        )
    order = sorted(range(len(pairs)), key=lambda i: pairs[i][0])
    obs = np.asarray([pairs[i][0] for i in order], dtype=np.float64)
    t = np.asarray([pairs[i][1] for i in order], dtype=np.float64)
    bins: list[dict[str, Any]] = []
    ranges = bin_edges(obs, min_per_bin, max_bins)
    for j, (a, b) in enumerate(ranges):
        lo = 0.0 if j == 0 else _edge(float(obs[a - 1]), float(obs[a]))
        hi = max(10.0 * float(obs[-1]), 1.0) if j == len(ranges) - 1 else _edge(float(obs[b - 1]), float(obs[b]))
        if hi <= lo:
            raise InputError(f"{observable}: events share the value {lo:g} across a bin edge; use fewer bins")
        levels = product_levels(t[a:b])
        bins.append({
            "lo": lo,
            "hi": hi,
            "n": b - a,
            "observable_median": float(np.median(obs[a:b])),
            "levels": {label: lv.level for label, lv in levels.items()},
            "coverage": {label: lv.as_dict() for label, lv in levels.items()},
            "curve": level_curve(t[a:b]),
        })  # fmt: skip
    overall = product_levels(t)
    wilks = {}
    for label, level in LEVELS["wilks"].items():
        k, n = coverage_at(t, level)
        f = clopper_pearson(k, n, CI_LEVEL)
        wilks[label] = {"level_2dllh": level, "k": k, "n": n, "coverage": k / n, "coverage_interval_68": [f.lo, f.hi]}
    return {
        "schema": TABLE_SCHEMA,
        "observable": observable,
        "n": len(pairs),
        "min_per_bin": min_per_bin,
        "bins": bins,
        "overall": {"levels": {label: lv.level for label, lv in overall.items()},
                    "coverage": {label: lv.as_dict() for label, lv in overall.items()}},
        "wilks": wilks,
        "interval": f"central {CI_LEVEL:.2%}: order statistics for levels, Clopper-Pearson for coverages",
    }


def calibrate_campaign(
    campdir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    observable: str = "total_charge",
    min_per_bin: int = DEFAULT_MIN_PER_BIN,
    max_bins: int = DEFAULT_MAX_BINS,
) -> Path:
    """Write the calibration table of a finished simulated campaign (default CAMPDIR/calibration-table.json)."""
    from skyscan.version import __version__, git_revision

    manifest, pairs = campaign_statistics(campdir, observable)
    doc = table_document(pairs, observable, min_per_bin, max_bins)
    target = Path(out) if out is not None else manifest.campdir / "calibration-table.json"
    folder = str(manifest.campdir.absolute())
    doc = {
        **doc,
        "created": utcnow(),
        "campaign": {
            "name": manifest.campdir.absolute().name,
            "path_sha256": hashlib.sha256(folder.encode("utf-8")).hexdigest(),
            "config_sha256": manifest.doc.get("config", {}).get("sha256"),
            "events": len(manifest.events),
        },
        "software": {"version": __version__, "git_revision": git_revision()},
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    write_json(target, doc)
    return target


__all__ = ["DEFAULT_MAX_BINS", "DEFAULT_MIN_PER_BIN", "bin_edges", "calibrate_campaign", "campaign_statistics",
           "table_document"]  # fmt: skip
