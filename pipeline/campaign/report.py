"""The campaign report: a catalog of every event (CSV and HDF5) and an offline HTML page with PNG figures.

Per event the catalog takes the scan's summary.json (best fit, 50%/90% regions, pixels), its status (state, wall
time, failed nodes) and, where there is one, a reference direction: the simulation truth recorded in the event,
or a position from ``--reference FILE.csv`` (which wins). For a reference the catalog adds the angular error of
the best fit and 2*delta-llh of the map pixel holding the reference, read from the event's multi-order map
(skymap.h5, or rebuilt from the stage results when there is none). A reference lies inside a region at level L
when that 2*delta-llh <= L; the coverage of a region is the fraction of references inside it, with a central
68.27% Clopper-Pearson interval. The coverage curve does the same for the chi-square (2 degrees of freedom)
levels of nominal 10%..99% (Wilks). Layouts: docs/campaigns.md.
"""

from __future__ import annotations

import csv
import html
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from skyscan.atomic import atomic_path, write_json, write_text
from skyscan.campaign.core import (
    REPORT_DIR,
    EventEntry,
    EventStatus,
    Manifest,
    event_status,
    read_json_object,
    read_manifest,
)
from skyscan.errors import InputError
from skyscan.graph.layout import ScanLayout
from skyscan.products.columns import REGION_FIELDS, SUMMARY_COLUMNS, THRESHOLD, Column, level_columns, summary_values
from skyscan.products.summary import SUMMARY_FILE, Summary, read_summary

FloatArray = npt.NDArray[np.float64]

REPORT_SCHEMA = "skyscan-campaign-report/1"
CATALOG_SCHEMA = "skyscan-campaign-catalog/1"
CATALOG_CSV = "catalog.csv"
CATALOG_H5 = "catalog.h5"
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
FIGURES = "figures"
CI_LEVEL = 0.6827  # central interval of the coverage fractions ("1 sigma")
NOMINAL = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
LABELS = ("50", "90")


_BEST_FIT_COLUMNS = ("ra_deg", "dec_deg", "zenith_deg", "azimuth_deg", "llh", "nside", "containment_method")
_FROM_SUMMARY: tuple[str, ...] = (
    *_BEST_FIT_COLUMNS,
    *(c.name for label in LABELS for c in level_columns(label)),
    "pixels_scanned",
    "pixels_failed",
)

# Earlier column name -> the shared name (skyscan.products.columns). The catalog files carry both, the earlier
# names as the last columns, so that existing scripts keep working (docs/campaigns.md lists them).
ALIASES: dict[str, str] = {
    "best_nside": "nside",
    "containment": "containment_method",
    **{f"{f.stem}{label}_{f.suffix}": f.column_name(label) for label in LABELS for f in REGION_FIELDS},
}


def _alias_columns(columns: Sequence[Column]) -> tuple[Column, ...]:
    by_name = {c.name: c for c in columns}
    return tuple(
        Column(alias, by_name[name].type, by_name[name].unit, f"same as {name} (earlier name, kept for scripts)")
        for alias, name in ALIASES.items()
    )


_MAIN_COLUMNS: tuple[Column, ...] = (
    Column("name", "string", "", "event name: its folder under events/ (rejected inputs: the file name)"),
    Column("run_id", "integer", "", "run id (-1 in HDF5 when unknown)"),
    Column("event_id", "integer", "", "event id (-1 in HDF5 when unknown)"),
    Column("event_time", "string", "", "event time, ISO 8601 UTC"),
    Column("state", "string", "", "done | failed | interrupted | running | waiting | rejected"),
    Column("note", "string", "", "why an event was rejected or failed; region notes"),
    *(SUMMARY_COLUMNS[name] for name in _BEST_FIT_COLUMNS),
    *level_columns("50"),
    *level_columns("90"),
    SUMMARY_COLUMNS["pixels_scanned"],
    SUMMARY_COLUMNS["pixels_failed"],
    Column("failed_nodes", "integer", "", "graph nodes that failed"),
    Column("wall_seconds", "number", "s", "elapsed time of the event's scan graph"),
    Column("energy_gev", "number", "GeV", "energy recorded in the event (simulation: the muon energy)"),
    Column("ref_source", "string", "", "truth (simulation) | reference (--reference file) | empty"),
    Column("ref_ra_deg", "number", "deg", "reference right ascension"),
    Column("ref_dec_deg", "number", "deg", "reference declination"),
    Column("ref_ra_err_deg", "number", "deg", "reference RA error, if the reference file gives one"),
    Column("ref_dec_err_deg", "number", "deg", "reference Dec error, if the reference file gives one"),
    Column("ang_error_deg", "number", "deg", "angular distance from the best fit to the reference"),
    Column("ref_dllh2", "number", "", "2*delta-llh of the map pixel holding the reference"),
    Column("ref_in50", "flag", "", "reference inside the 50% region (1/0)"),
    Column("ref_in90", "flag", "", "reference inside the 90% region (1/0)"),
)
COLUMNS: tuple[Column, ...] = (*_MAIN_COLUMNS, *_alias_columns(_MAIN_COLUMNS))
COLUMN_NAMES = tuple(c.name for c in COLUMNS)


# ---------------------------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    """A position an event should be compared with (degrees, J2000)."""

    ra_deg: float
    dec_deg: float
    ra_err_deg: float | None = None
    dec_err_deg: float | None = None
    source: str = "reference"


_REF_ALIASES = {
    "run_id": ("run_id", "run"),
    "event_id": ("event_id", "event"),
    "ra": ("ra", "ra_deg"),
    "dec": ("dec", "dec_deg"),
    "ra_err": ("ra_err", "ra_err_deg", "err", "err_deg", "error", "error_deg"),
    "dec_err": ("dec_err", "dec_err_deg", "err", "err_deg", "error", "error_deg"),
}


def read_references(path: str | os.PathLike[str]) -> dict[tuple[int, int], Reference]:
    """A CSV with a header: run_id, event_id, ra, dec (degrees) and optional ra_err/dec_err (or err) in degrees."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{p}: no such reference file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read the reference file ({exc.__class__.__name__})") from None
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    cols: dict[str, int] = {}
    for key, aliases in _REF_ALIASES.items():
        for alias in aliases:
            if alias in header:
                cols[key] = header.index(alias)
                break
    missing = [k for k in ("run_id", "event_id", "ra", "dec") if k not in cols]
    if missing:
        raise InputError(f"{p}: the header needs run_id, event_id, ra and dec (missing {missing[0]})")
    refs: dict[tuple[int, int], Reference] = {}
    for lineno, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue

        def cell(key: str, row: list[str] = row) -> str:
            i = cols[key]
            return row[i].strip() if i < len(row) else ""

        try:
            run_id, event_id = int(cell("run_id")), int(cell("event_id"))
            ra, dec = float(cell("ra")), float(cell("dec"))
            errs = [float(cell(k)) if k in cols and cell(k) else None for k in ("ra_err", "dec_err")]
        except ValueError:
            raise InputError(f"{p}:{lineno}: expected integer ids and numbers for ra, dec and errors") from None
        if not (math.isfinite(ra) and math.isfinite(dec)) or not -90.0 <= dec <= 90.0:
            raise InputError(f"{p}:{lineno}: ra must be finite and dec within [-90, 90]")
        if (run_id, event_id) in refs:
            raise InputError(f"{p}:{lineno}: a second reference for run {run_id} event {event_id}")
        refs[(run_id, event_id)] = Reference(ra % 360.0, dec, errs[0], errs[1])
    return refs


# ---------------------------------------------------------------------------------------------------------------
# Per-event rows
# ---------------------------------------------------------------------------------------------------------------
def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def load_map(folder: Path) -> Any:
    """The event's multi-order map: skymap.h5 when the merge wrote one, else rebuilt from stage*/scan-*.h5."""
    h5 = ScanLayout(folder).skymap_h5
    if h5.is_file():
        from skyscan.products.skymapio import read_skymap_h5

        try:
            return read_skymap_h5(h5).map
        except InputError:
            pass  # an unreadable product: the stage results are the primary data
    return map_from_stages(folder)


def map_from_stages(folder: Path) -> Any:
    """build_multiorder over every scan-node result file (contract datasets nside, ipix, llh, x, y, z, t, status)."""
    from skyscan.nodes.results import read_fits
    from skyscan.products.moc import build_multiorder

    stages = [read_fits(path).stage_result() for _, path in ScanLayout(folder).list_all_results()]
    if not stages:
        raise InputError(f"{folder}: no skymap.h5 and no stage results")
    return build_multiorder(stages)


def dllh2_at(m: Any, ra_deg: float, dec_deg: float) -> float:
    """2*delta-llh of the map pixel containing (ra, dec); NaN where that pixel's fit failed."""
    import healpy as hp

    order = int(np.max(m.order))
    nside = 1 << order
    ipix = hp.ang2pix(nside, math.radians(90.0 - dec_deg), math.radians(ra_deg % 360.0), nest=True)
    row = int(m.locate(nside, np.asarray([ipix], dtype=np.int64))[0])
    if row < 0:
        return math.nan
    return float(m.dllh2[row])


def _truth_reference(folder: Path, summary: Summary | None) -> tuple[Reference | None, float | None]:
    """(truth as a reference, event energy) from summary.json's truth or the event's own truth record.

    Without a summary (the scan is not done) there is nothing to compare the truth with: it is not converted."""
    energy: float | None = None
    event_doc = read_json_object(ScanLayout(folder).event)
    if event_doc is not None:
        energy = _num(event_doc.get("energy_gev"))
    if summary is None:
        return None, energy
    if summary.truth is not None:
        return Reference(summary.truth.ra_deg, summary.truth.dec_deg, source="truth"), energy
    if event_doc is None or not isinstance(event_doc.get("truth"), dict):
        return None, energy
    from skyscan import iers_cache
    from skyscan.reco.event import read_event
    from skyscan.reco.simbatch import truth_radec_deg

    try:
        ef = read_event(ScanLayout(folder).event)
    except InputError:
        return None, energy
    if ef.truth is None:
        return None, energy
    iers_cache.install()
    ra, dec = truth_radec_deg(ef.event, ef.truth)
    return Reference(ra, dec, source="truth"), energy if energy is not None else ef.truth.energy_gev


def _empty_row() -> dict[str, Any]:
    return {c.name: None for c in COLUMNS}


def _fill_aliases(row: dict[str, Any]) -> dict[str, Any]:
    """The earlier column names carry the same values as the shared ones."""
    for alias, name in ALIASES.items():
        row[alias] = row[name]
    return row


def event_row(
    manifest: Manifest, entry: EventEntry, references: Mapping[tuple[int, int], Reference] | None = None
) -> dict[str, Any]:
    """The catalog row of one accepted event (values None where unknown)."""
    from skyscan.reco.coords import angular_distance

    folder = manifest.event_dir(entry)
    st: EventStatus = event_status(folder, entry)
    row = _empty_row()
    row.update(name=entry.name, run_id=entry.run_id, event_id=entry.event_id, event_time=entry.time, state=st.state)
    row["wall_seconds"] = st.wall_seconds
    row["failed_nodes"] = len(st.failed_nodes)
    notes = [f"failed nodes: {', '.join(st.failed_nodes)}"] if st.failed_nodes else []
    summary: Summary | None = None
    if st.state == "done":
        try:
            summary = read_summary(folder / SUMMARY_FILE)
        except InputError as exc:
            notes.append(f"summary unusable: {exc}")
    if summary is not None:
        values = summary_values(summary, LABELS)
        row.update({name: values[name] for name in _FROM_SUMMARY})
        if summary.event_time is not None:
            row["event_time"] = summary.event_time
        for label in LABELS:
            reg = summary.region(label)
            if reg is not None and reg.note:
                notes.append(f"{label}%: {reg.note}")
    else:
        row["pixels_scanned"] = st.pixels_done if st.pixels_total else None
    truth, energy = _truth_reference(folder, summary)
    row["energy_gev"] = energy
    ref = (references or {}).get((entry.run_id, entry.event_id)) or truth
    if ref is not None:
        row.update(
            ref_source=ref.source,
            ref_ra_deg=ref.ra_deg,
            ref_dec_deg=ref.dec_deg,
            ref_ra_err_deg=ref.ra_err_deg,
            ref_dec_err_deg=ref.dec_err_deg,
        )
    if ref is not None and row["ra_deg"] is not None and row["dec_deg"] is not None:
        ra, dec = math.radians(row["ra_deg"]), math.radians(row["dec_deg"])
        dist = angular_distance(ra, dec, math.radians(ref.ra_deg), math.radians(ref.dec_deg))
        row["ang_error_deg"] = math.degrees(float(dist))
        try:
            value = dllh2_at(load_map(folder), ref.ra_deg, ref.dec_deg)
        except InputError as exc:
            notes.append(f"no map for the coverage: {exc}")
        else:
            row["ref_dllh2"] = value if math.isfinite(value) else None
            for label in LABELS:
                level = row[THRESHOLD.column_name(label)]
                if level is not None:
                    row[f"ref_in{label}"] = bool(math.isfinite(value) and value <= level)
    if st.reason:
        notes.append(st.reason)
    row["note"] = "; ".join(notes) or None
    return _fill_aliases(row)


def rejected_rows(manifest: Manifest) -> list[dict[str, Any]]:
    rows = []
    for r in manifest.rejected:
        row = _empty_row()
        row.update(name=Path(r.input).name, state="rejected", note=r.reason)
        rows.append(row)
    return rows


def build_catalog(
    campdir: str | os.PathLike[str], references: Mapping[tuple[int, int], Reference] | None = None
) -> tuple[Manifest, list[dict[str, Any]]]:
    """Every accepted event's row in manifest order, then one row per rejected input."""
    manifest = read_manifest(campdir)
    rows = [event_row(manifest, e, references) for e in manifest.events]
    return manifest, rows + rejected_rows(manifest)


# ---------------------------------------------------------------------------------------------------------------
# Catalog files
# ---------------------------------------------------------------------------------------------------------------
def _csv_cell(col: Column, value: Any) -> str:
    if value is None:
        return ""
    if col.type == "flag":
        return "1" if value else "0"
    if col.type == "number":
        return f"{float(value):.6g}" if col.unit != "s" else f"{float(value):.3f}"
    return str(value)


def catalog_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMN_NAMES)
    for row in rows:
        writer.writerow([_csv_cell(c, row.get(c.name)) for c in COLUMNS])
    return buf.getvalue()


def write_catalog_h5(path: Path, rows: Sequence[Mapping[str, Any]], attrs: Mapping[str, Any]) -> None:
    """Columnar HDF5: one 1-D dataset per column under /catalog (missing: NaN, -1, or an empty string)."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for key, value in attrs.items():
            f.attrs[key] = "" if value is None else value
        f.attrs["rows"] = len(rows)
        group = f.create_group("catalog")
        for col in COLUMNS:
            values = [row.get(col.name) for row in rows]
            data: Any
            if col.type == "string":
                data = np.asarray(["" if v is None else str(v) for v in values], dtype=h5py.string_dtype("utf-8"))
            elif col.type == "integer":
                data = np.asarray([-1 if v is None else int(v) for v in values], dtype=np.int64)
            elif col.type == "flag":
                data = np.asarray([-1 if v is None else int(bool(v)) for v in values], dtype=np.int8)
            else:
                data = np.asarray([math.nan if v is None else float(v) for v in values], dtype=np.float64)
            ds = group.create_dataset(col.name, data=data)
            ds.attrs["unit"] = col.unit
            ds.attrs["description"] = col.description


# ---------------------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------------------
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

    def as_dict(self) -> dict[str, Any]:
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
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row["state"])] = counts.get(str(row["state"]), 0) + 1
    counts["events"] = sum(1 for r in rows if r["state"] != "rejected")
    done = [r for r in rows if r["state"] == "done"]
    areas = [float(r["area90_deg2"]) for r in done if r["area90_deg2"] is not None]
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


# ---------------------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------------------
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
                label="Wilks levels (chi2, 2 dof)")  # fmt: skip
    methods = {r["containment"] for r in rows if r["state"] == "done" and r["containment"]}
    legend = f"the events' 50% and 90% regions ({', '.join(sorted(methods))})"
    for i, (label, f) in enumerate(stats.coverage.items()):
        if f.n:
            ax.errorbar([int(label) / 100], [f.value], yerr=[[f.value - f.lo], [f.hi - f.value]], fmt="s",
                        color="#c44e52", capsize=3, label=legend if i == 0 else None)  # fmt: skip
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
    areas = [float(r["area90_deg2"]) for r in done if r["area90_deg2"] is not None]
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


# ---------------------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------------------
_CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;font-size:90%}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}td.l{text-align:left}"
    "img{max-width:48%;margin:4px}.bad{color:#a00}"
)


def _f(value: Any, fmt: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, fmt)


def _fraction_text(f: Fraction) -> str:
    if not f.n:
        return "- (no reference)"
    return f"{f.value:.3f} ({f.k}/{f.n}; {CI_LEVEL:.0%} interval {f.lo:.3f}-{f.hi:.3f})"


def report_html(title: str, manifest: Manifest, stats: Stats, rows: Sequence[Mapping[str, Any]],
                figures: Mapping[str, str], files: Mapping[str, str]) -> str:  # fmt: skip
    """The offline HTML page: images and catalogs referenced by relative path, no external resources."""
    e = html.escape
    c = stats.counts
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title><style>{_CSS}</style></head><body>',
        f"<h1>{e(title)}</h1>",
        f"<p>Generated {e(_utcnow())} by skyscan {e(str(manifest.doc.get('software', {}).get('version', '?')))}; "
        f"configuration sha256 {e(str(manifest.doc.get('config', {}).get('sha256', '?'))[:16])}&hellip;; "
        f"catalog: " + ", ".join(f'<a href="{e(v)}">{e(k)}</a>' for k, v in files.items()) + ".</p>",
        "<h2>Summary</h2><table>",
        f"<tr><th>events</th><td>{c.get('events', 0)}</td></tr>",
    ]
    for state in ("done", "failed", "interrupted", "running", "waiting", "rejected"):
        if c.get(state):
            parts.append(f"<tr><th>{state}</th><td>{c[state]}</td></tr>")
    parts += [
        f"<tr><th>median 90% area</th><td>{_f(stats.area90_median)} deg²</td></tr>",
        f"<tr><th>median wall time</th><td>{_f(stats.wall_median, '.1f')} s</td></tr>",
    ]
    n_ref = sum(stats.ref_sources.values())
    if n_ref:
        src = ", ".join(f"{k}: {v}" for k, v in sorted(stats.ref_sources.items()))
        parts += [
            f"<tr><th>events with a reference</th><td>{n_ref} ({e(src)})</td></tr>",
            f"<tr><th>median angular error</th><td>{_f(stats.error_median)} deg</td></tr>",
            f"<tr><th>68% quantile of the angular error</th><td>{_f(stats.error_q68)} deg</td></tr>",
            f"<tr><th>coverage of the 50% regions</th><td>{e(_fraction_text(stats.coverage['50']))}</td></tr>",
            f"<tr><th>coverage of the 90% regions</th><td>{e(_fraction_text(stats.coverage['90']))}</td></tr>",
        ]
    else:
        parts.append("<tr><th>references</th><td>none (no simulation truth, no --reference file)</td></tr>")
    parts.append("</table>")
    if figures:
        parts.append("<h2>Figures</h2><p>")
        for key, rel in figures.items():
            parts.append(f'<img src="{e(rel)}" alt="{e(key)}">')
        parts.append("</p>")
    if stats.curve and stats.curve[0][2].n:
        parts.append("<h2>Coverage against nominal level</h2><table><tr><th>nominal</th><th>2&Delta;LLH</th>"
                     "<th>inside</th><th>fraction</th><th>interval</th></tr>")  # fmt: skip
        for p, level, f in stats.curve:
            parts.append(
                f"<tr><td>{p:.0%}</td><td>{level:.3f}</td><td>{f.k}/{f.n}</td><td>{_f(f.value, '.3f')}</td>"
                f"<td>{_f(f.lo, '.3f')}-{_f(f.hi, '.3f')}</td></tr>"
            )
        parts.append("</table>")
    parts.append(
        "<h2>Events</h2><table><tr><th>event</th><th>state</th><th>RA</th><th>Dec</th><th>90% area</th><th>error</th>"
        "<th>in 50%</th><th>in 90%</th><th>pixels</th><th>wall (s)</th><th>note</th></tr>"
    )
    for r in rows:
        cls = ' class="l bad"' if r["state"] not in ("done",) else ' class="l"'
        flags = ["-" if r[f"ref_in{lab}"] is None else "yes" if r[f"ref_in{lab}"] else "no" for lab in LABELS]
        parts.append(
            f'<tr><td class="l">{e(str(r["name"]))}</td><td{cls}>{e(str(r["state"]))}</td>'
            f'<td>{_f(r["ra_deg"], ".2f")}</td><td>{_f(r["dec_deg"], ".2f")}</td>'
            f'<td>{_f(r["area90_deg2"])}</td><td>{_f(r["ang_error_deg"])}</td>'
            f"<td>{flags[0]}</td><td>{flags[1]}</td><td>{_f(r['pixels_scanned'], 'd')}</td>"
            f'<td>{_f(r["wall_seconds"], ".1f")}</td><td class="l">{e(str(r["note"] or ""))}</td></tr>'
        )
    parts.append("</table></body></html>")
    return "\n".join(parts) + "\n"


def _utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportResult:
    outdir: Path
    rows: list[dict[str, Any]]
    stats: Stats
    files: dict[str, Path]


def write_report(
    campdir: str | os.PathLike[str],
    outdir: str | os.PathLike[str] | None = None,
    reference: str | os.PathLike[str] | None = None,
) -> ReportResult:
    """Catalog (CSV, HDF5), report.json, figures and report.html of a campaign, in CAMPDIR/report by default."""
    from skyscan.version import __version__, git_revision

    refs = read_references(reference) if reference is not None else None
    manifest, rows = build_catalog(campdir, refs)
    folder = Path(outdir) if outdir is not None else manifest.campdir / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stats = compute_stats(rows)
    created = _utcnow()
    attrs = {
        "schema": CATALOG_SCHEMA,
        "created": created,
        "campaign": manifest.campdir.absolute().name,
        "software_version": __version__,
        "git_revision": git_revision(),
        "config_sha256": manifest.doc.get("config", {}).get("sha256"),
        "reference_file": None if reference is None else str(reference),
    }
    write_text(folder / CATALOG_CSV, catalog_csv(rows))
    write_catalog_h5(folder / CATALOG_H5, rows, attrs)
    figures = write_figures(folder, stats, rows)
    doc = {
        "schema": REPORT_SCHEMA,
        "created": created,
        "campaign": attrs["campaign"],
        "software": {"version": __version__, "git_revision": git_revision()},
        "reference_file": attrs["reference_file"],
        **stats.as_dict(),
        "files": {"catalog_csv": CATALOG_CSV, "catalog_h5": CATALOG_H5, "html": REPORT_HTML, "figures": figures},
    }
    write_json(folder / REPORT_JSON, doc)
    title = f"skyscan campaign {attrs['campaign']}"
    links = {"CSV": CATALOG_CSV, "HDF5": CATALOG_H5, "JSON summary": REPORT_JSON}
    write_text(folder / REPORT_HTML, report_html(title, manifest, stats, rows, figures, links))
    files = {k: folder / v for k, v in {"csv": CATALOG_CSV, "h5": CATALOG_H5, "json": REPORT_JSON,
                                          "html": REPORT_HTML}.items()}  # fmt: skip
    files.update({f"figure_{k}": folder / v for k, v in figures.items()})
    return ReportResult(folder, rows, stats, files)


def read_catalog_h5(path: str | os.PathLike[str]) -> dict[str, FloatArray | npt.NDArray[Any]]:
    """The columns of a catalog.h5 (strings decoded), for tools and tests."""
    import h5py

    out: dict[str, Any] = {}
    with h5py.File(path, "r") as f:
        if f.attrs.get("schema") != CATALOG_SCHEMA:
            raise InputError(f"{path}: not a {CATALOG_SCHEMA} file")
        for name, ds in f["catalog"].items():
            data = ds[()]
            if data.dtype.kind in ("O", "S"):
                data = np.asarray([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in data], dtype=object)
            out[name] = data
    return out


__all__ = [
    "CATALOG_SCHEMA",
    "COLUMNS",
    "NOMINAL",
    "REPORT_SCHEMA",
    "Column",
    "Fraction",
    "Reference",
    "ReportResult",
    "Stats",
    "build_catalog",
    "catalog_csv",
    "clopper_pearson",
    "compute_stats",
    "dllh2_at",
    "event_row",
    "load_map",
    "map_from_stages",
    "read_catalog_h5",
    "read_references",
    "wilks_level",
    "write_catalog_h5",
    "write_report",
]
