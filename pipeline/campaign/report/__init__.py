"""The campaign report: a catalog of every event (CSV and HDF5), report.json, PNG figures and report.html.

``write_report`` is what ``skyscan campaign report`` and the campaign's FINAL node run. The parts, by concept:
``rows`` (the catalog: one row per event, its columns and files), ``stats`` (coverage fractions and the other
figures of merit), ``figures`` (matplotlib, imported only when drawing) and ``html`` (the offline page).
Layouts: docs/campaigns.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyscan.atomic import write_json, write_text
from skyscan.campaign.manifest import REPORT_DIR
from skyscan.campaign.report.calibrated import (
    CalibratedStats,
    calibrated_stats,
    event_observables_of,
    table_curves,
    truth_statistic,
)
from skyscan.campaign.report.figures import write_figures
from skyscan.campaign.report.html import report_html
from skyscan.campaign.report.rows import (
    ALIASES,
    CATALOG_SCHEMA,
    COLUMNS,
    Reference,
    build_catalog,
    catalog_csv,
    dllh2_at,
    event_row,
    load_map,
    map_from_stages,
    read_catalog_h5,
    read_references,
    write_catalog_h5,
)
from skyscan.campaign.report.stats import (
    CI_LEVEL,
    NOMINAL,
    Fraction,
    Stats,
    clopper_pearson,
    compute_stats,
    wilks_level,
)
from skyscan.timestamps import utcnow

REPORT_SCHEMA = "skyscan-campaign-report/1"
CATALOG_CSV = "catalog.csv"
CATALOG_H5 = "catalog.h5"
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"


@dataclass(frozen=True)
class ReportResult:
    """What ``write_report`` wrote: the report folder, the catalog rows, the figures of merit and the files."""

    outdir: Path
    rows: list[dict[str, Any]]
    stats: Stats
    files: dict[str, Path]


CALIBRATION_TABLE = "calibration-table.json"
"""A calibration table in the campaign folder (``skyscan calibrate --campaign CAMPDIR`` writes it there by default)
that the report uses for the 'after calibration' coverage when no other table is given."""


def _calibrated(manifest: Any, rows: list[dict[str, Any]], table_path: Path) -> CalibratedStats:
    """Coverage of the campaign's truths with a calibration table's levels (see ``report.calibrated``)."""
    from skyscan.products.levels import read_calibration_table

    table = read_calibration_table(table_path)
    events = rows[: len(manifest.events)]
    observables = [event_observables_of(manifest.event_dir(e)) if truth_statistic(r) is not None else None
                   for e, r in zip(manifest.events, events, strict=True)]  # fmt: skip
    return calibrated_stats(events, observables, table, table_curves(table_path))


def write_report(
    campdir: str | os.PathLike[str],
    outdir: str | os.PathLike[str] | None = None,
    reference: str | os.PathLike[str] | None = None,
    calibration: str | os.PathLike[str] | None = None,
) -> ReportResult:
    """Catalog (CSV, HDF5), report.json, figures and report.html of a campaign, in CAMPDIR/report by default.

    ``calibration``: a calibration table (``skyscan-calibration-table/1``); the report then adds the coverage
    of the truths with its levels ("after calibration") next to Wilks' ("before"). Without it,
    CAMPDIR/calibration-table.json is used when it exists.
    """
    from skyscan.version import __version__, git_revision

    refs = read_references(reference) if reference is not None else None
    manifest, rows = build_catalog(campdir, refs)
    folder = Path(outdir) if outdir is not None else manifest.campdir / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stats = compute_stats(rows)
    table_path = Path(calibration) if calibration is not None else manifest.campdir / CALIBRATION_TABLE
    if calibration is not None or table_path.is_file():
        stats.calibrated = _calibrated(manifest, rows, table_path)
    created = utcnow()
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


__all__ = [
    "ALIASES",
    "CALIBRATION_TABLE",
    "CATALOG_SCHEMA",
    "CI_LEVEL",
    "COLUMNS",
    "NOMINAL",
    "REPORT_SCHEMA",
    "CalibratedStats",
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
