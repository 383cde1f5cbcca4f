"""The campaign catalog: one row per event (CSV and HDF5), from its summary, status, map and a reference.

Per event the catalog takes the scan's summary.json (best fit, 50%/90% regions, pixels), its status (state, wall
time, failed nodes) and, where there is one, a reference direction: the simulation truth recorded in the event,
or a position from ``--reference FILE.csv`` (which wins). For a reference the catalog adds the angular error of
the best fit and 2*delta-llh of the map pixel holding the reference, read from the event's multi-order map
(skymap.h5, or rebuilt from the stage results when there is none). A reference lies inside a region at level L
when that 2*delta-llh <= L. The columns are the shared ones of ``skyscan.products.columns`` plus the campaign's
own; the earlier names (ALIASES) follow as the last columns. Layouts: docs/campaigns.md.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from skyscan.atomic import atomic_path
from skyscan.campaign.manifest import EventEntry, Manifest, read_manifest
from skyscan.campaign.status import EventStatus, event_status
from skyscan.errors import InputError
from skyscan.graph.layout import ScanLayout
from skyscan.products.columns import REGION_FIELDS, SUMMARY_COLUMNS, THRESHOLD, Column, level_columns, summary_values
from skyscan.products.summary import Summary, read_summary

FloatArray = npt.NDArray[np.float64]

CATALOG_SCHEMA = "skyscan-campaign-catalog/1"
LABELS = ("50", "90")  # the regions the catalog has columns for (percent)


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
        from skyscan.products.hdf5 import read_skymap_h5

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


def _event_document(folder: Path) -> dict[str, Any] | None:
    """The scan's event.json as plain JSON (only a few informative keys are read: no need to validate pulses)."""
    try:
        doc = json.loads(ScanLayout(folder).event.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _truth_reference(folder: Path, summary: Summary | None) -> tuple[Reference | None, float | None]:
    """(truth as a reference, event energy) from summary.json's truth or the event's own truth record.

    Without a summary (the scan is not done) there is nothing to compare the truth with: it is not converted."""
    energy: float | None = None
    event_doc = _event_document(folder)
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
            summary = read_summary(ScanLayout(folder).summary)
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
    "ALIASES",
    "CATALOG_SCHEMA",
    "COLUMNS",
    "COLUMN_NAMES",
    "LABELS",
    "Reference",
    "build_catalog",
    "catalog_csv",
    "dllh2_at",
    "event_row",
    "load_map",
    "map_from_stages",
    "read_catalog_h5",
    "read_references",
    "rejected_rows",
    "write_catalog_h5",
]
