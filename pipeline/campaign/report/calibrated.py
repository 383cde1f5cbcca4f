"""Coverage after calibration: the campaign's truths judged against a calibration table's levels.

Each event with a simulation truth has T = 2*delta-llh of the map pixel holding the truth (the catalog's
``ref_dllh2``; a failed pixel counts as outside). With a calibration table (``skyscan calibrate --campaign``,
schema ``skyscan-calibration-table/1``) the event's observable picks a bin, and the truth is inside the calibrated
region at label L when T <= that bin's level L; the table's per-bin ``curve`` gives the calibrated level at every
nominal coverage of the report's curve. Pure functions of rows and observables, plus `event_observables_of`, which
reads an event's pulses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyscan.campaign.report.stats import CI_LEVEL, NOMINAL, Fraction, clopper_pearson
from skyscan.errors import InputError
from skyscan.graph.layout import ScanLayout
from skyscan.products.levels import CalibrationTable, event_observables


def event_observables_of(folder: Path) -> dict[str, float] | None:
    """The level observables (``skyscan.products.levels.OBSERVABLES``) of the event in a scan folder, or None."""
    from skyscan.reco.event import read_event

    try:
        ev = read_event(ScanLayout(folder).event).event
    except (InputError, OSError, ValueError):
        return None
    p = ev.pulses
    return event_observables(p.string, p.om, p.charge)


def truth_statistic(row: Mapping[str, Any]) -> float | None:
    """T of a done event with a simulation truth whose map was read (inf: the truth's pixel failed); else None."""
    if row.get("state") != "done" or row.get("ref_source") != "truth":
        return None
    if row.get("ref_in50") is None and row.get("ref_in90") is None:
        return None  # the map could not be read
    value = row.get("ref_dllh2")
    return math.inf if value is None else float(value)


def _curve_levels(raw: Any) -> dict[float, float]:
    out: dict[float, float] = {}
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, Mapping) and isinstance(item.get("level_2dllh"), (int, float)):
                out[round(float(item["nominal"]), 6)] = float(item["level_2dllh"])
    return out


@dataclass
class CalibratedStats:
    """Coverage of the calibrated regions on the campaign's truths: per label, and along the nominal curve."""

    table: str
    sha256: str
    observable: str
    coverage: dict[str, Fraction] = field(default_factory=dict)
    curve: list[tuple[float, Fraction]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "sha256": self.sha256,
            "observable": self.observable,
            "coverage": {label: f.as_dict() for label, f in self.coverage.items()},
            "coverage_curve": [{"nominal": p, **f.as_dict()} for p, f in self.curve],
            "interval": f"central {CI_LEVEL:.2%} Clopper-Pearson",
        }


def calibrated_stats(
    rows: Sequence[Mapping[str, Any]],
    observables: Sequence[Mapping[str, float] | None],
    table: CalibrationTable,
    curves: Sequence[Any] = (),
) -> CalibratedStats:
    """Coverage with the table's levels; ``observables[i]`` belongs to ``rows[i]``; ``curves[b]`` is bin b's
    ``curve`` list from the table file (optional: without it the nominal curve is left empty)."""
    by_bin = [_curve_levels(c) for c in curves]
    inside: dict[str, list[bool]] = {"50": [], "90": []}
    curve_in: dict[float, list[bool]] = {p: [] for p in NOMINAL}
    for row, obs in zip(rows, observables, strict=True):
        t = truth_statistic(row)
        if t is None or obs is None or table.observable not in obs:
            continue
        index, b = table.lookup(float(obs[table.observable]))
        for label in inside:
            inside[label].append(t <= b.levels[label])
        if index < len(by_bin):
            for p in NOMINAL:
                level = by_bin[index].get(round(p, 6))
                if level is not None:
                    curve_in[p].append(t <= level)
    stats = CalibratedStats(str(table.path), table.sha256, table.observable)
    for label, flags in inside.items():
        stats.coverage[label] = clopper_pearson(sum(flags), len(flags))
    for p in NOMINAL:
        flags = curve_in[p]
        if flags:
            stats.curve.append((p, clopper_pearson(sum(flags), len(flags))))
    return stats


def table_curves(path: Path) -> list[Any]:
    """Each bin's ``curve`` list of a calibration table file (read as plain JSON; validated by the table reader)."""
    import json

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    bins = doc.get("bins") if isinstance(doc, dict) else None
    return [b.get("curve") if isinstance(b, dict) else None for b in bins] if isinstance(bins, list) else []


__all__ = ["CalibratedStats", "calibrated_stats", "event_observables_of", "table_curves", "truth_statistic"]
