"""The report's PNG figures: 90% areas, wall times, angular errors, and coverage against nominal level.

matplotlib is imported only when a figure is drawn (a report of a campaign without done events draws none), and
the PNGs carry no software stamp, so the same catalog gives the same files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skyscan.atomic import atomic_path
from skyscan.campaign.report.stats import CI_LEVEL, Stats

FIGURES = "figures"  # the figures' folder inside the report folder


def _figure() -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(6.0, 4.0), dpi=100, layout="constrained")


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})


def _histogram(path: Path, values: Sequence[float], xlabel: str, title: str, log: bool, median: float | None) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    data = np.asarray(values, dtype=np.float64)
    if log:
        data = data[data > 0]
        lo, hi = (float(data.min()), float(data.max())) if data.size else (1.0, 10.0)
        if hi <= lo:
            lo, hi = lo / 2, hi * 2
        bins: Any = np.geomspace(lo, hi, max(5, min(40, int(math.sqrt(max(data.size, 1))) + 4)))
        ax.set_xscale("log")
    else:
        bins = max(5, min(40, int(math.sqrt(max(data.size, 1))) + 4))
    ax.hist(data, bins=bins, color="#4c72b0", edgecolor="white")
    if median is not None:
        ax.axvline(median, color="#c44e52", linestyle="--", label=f"median {median:.3g}")
        ax.legend(loc="upper right")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("events")
    ax.set_title(title)
    _save(fig, path)


def _coverage_plot(path: Path, stats: Stats, rows: Sequence[Mapping[str, Any]]) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="ideal")
    nominal = np.asarray([p for p, _, _ in stats.curve])
    frac = np.asarray([f.value for _, _, f in stats.curve])
    lo = np.asarray([f.lo for _, _, f in stats.curve])
    hi = np.asarray([f.hi for _, _, f in stats.curve])
    ax.errorbar(nominal, frac, yerr=[frac - lo, hi - frac], fmt="o-", color="#4c72b0", capsize=3,
                label="before: Wilks levels (chi2, 2 dof)")  # fmt: skip
    methods = {r["containment_method"] for r in rows if r["state"] == "done" and r["containment_method"]}
    legend = f"the events' 50% and 90% regions ({', '.join(sorted(methods))})"
    for i, (label, f) in enumerate(stats.coverage.items()):
        if f.n:
            ax.errorbar([int(label) / 100], [f.value], yerr=[[f.value - f.lo], [f.hi - f.value]], fmt="s",
                        color="#c44e52", capsize=3, label=legend if i == 0 else None)  # fmt: skip
    cal = stats.calibrated
    if cal is not None:
        if cal.curve:
            cn = np.asarray([p for p, _ in cal.curve])
            cf = np.asarray([f.value for _, f in cal.curve])
            clo = np.asarray([f.lo for _, f in cal.curve])
            chi = np.asarray([f.hi for _, f in cal.curve])
            ax.errorbar(cn, cf, yerr=[cf - clo, chi - cf], fmt="^-", color="#55a868", capsize=3,
                        label="after calibration (table levels)")  # fmt: skip
        for i, (label, f) in enumerate(cal.coverage.items()):
            if f.n:
                ax.errorbar([int(label) / 100], [f.value], yerr=[[f.value - f.lo], [f.hi - f.value]], fmt="D",
                            color="#8172b2", capsize=3,
                            label="calibrated 50% and 90% regions" if i == 0 else None)  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("nominal containment")
    ax.set_ylabel("fraction of references inside")
    ax.set_title(f"Coverage ({sum(stats.ref_sources.values())} events, {CI_LEVEL:.0%} intervals)")
    ax.legend(loc="upper left")
    _save(fig, path)


def write_figures(folder: Path, stats: Stats, rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """PNG figures (paths relative to the report folder); a figure without data is not drawn."""
    out: dict[str, str] = {}
    fig_dir = folder / FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)
    done = [r for r in rows if r["state"] == "done"]
    areas = [float(r["area_90_deg2"]) for r in done if r["area_90_deg2"] is not None]
    if areas:
        _histogram(fig_dir / "area90.png", areas, "90% area (deg²)", "90% containment areas", True,
                   stats.area90_median)  # fmt: skip
        out["area90"] = f"{FIGURES}/area90.png"
    walls = [float(r["wall_seconds"]) / 60.0 for r in done if r["wall_seconds"] is not None]
    if walls:
        med = None if stats.wall_median is None else stats.wall_median / 60.0
        _histogram(fig_dir / "walltime.png", walls, "wall time (min)", "Wall time per event", False, med)
        out["walltime"] = f"{FIGURES}/walltime.png"
    errors = [float(r["ang_error_deg"]) for r in done if r["ang_error_deg"] is not None]
    if errors:
        _histogram(fig_dir / "angular_error.png", errors, "angular error (deg)", "Best fit to reference", False,
                   stats.error_median)  # fmt: skip
        out["angular_error"] = f"{FIGURES}/angular_error.png"
    if stats.curve and stats.curve[0][2].n:
        _coverage_plot(fig_dir / "coverage.png", stats, rows)
        out["coverage"] = f"{FIGURES}/coverage.png"
    return out


__all__ = ["FIGURES", "write_figures"]
