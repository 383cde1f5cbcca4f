"""Listing the catalog (``skyscan catalog``): one row per alert (or revision) with its latest scan.

A cancelled rescan does not hide a finished scan: when every scan of a revision after its newest done scan was
cancelled, the row shows that done scan and names the newest cancelled one in ``cancelled_scan_id`` (the table
says so in its note column).

The rows and their documented columns make the ``skyscan-catalog/1`` document; the same rows print as an
operator's table or as CSV. The summary columns are the shared ones of :mod:`skyscan.products.columns`.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from typing import Any

from skyscan.errors import InputError
from skyscan.ops.catalog.db import SCAN_STATES
from skyscan.ops.catalog.scans import alert_name
from skyscan.ops.catalog.stamps import parse_since
from skyscan.products.columns import SUMMARY_COLUMNS, Column, level_columns
from skyscan.timestamps import utcnow
from skyscan.version import __version__, git_revision

__all__ = [
    "CATALOG_SCHEMA",
    "COLUMNS",
    "COLUMN_NAMES",
    "catalog_document",
    "catalog_rows",
    "format_csv",
    "format_rows",
    "format_table",
    "software_record",
]

CATALOG_SCHEMA = "skyscan-catalog/1"

COLUMNS: tuple[Column, ...] = (
    Column("alert_id", "integer", "", "catalog id of the alert (one per run/event); accepted by cancel/rescan"),
    Column("alert", "string", "", "name run<run>-evt<event>-r<revision>, also the outbox folder"),
    Column("run_id", "integer", "", "detector run number"),
    Column("event_id", "integer", "", "event number within the run"),
    Column("revision", "integer", "", "revision of the event file this row describes (1 = first received)"),
    Column("revisions", "integer", "", "number of revisions received for the alert"),
    Column("latest", "boolean", "", "true when this is the alert's latest revision"),
    Column("event_time", "string", "UTC ISO 8601", "time of the event"),
    Column("stream", "string", "", "alert stream named in the event file (empty if none)"),
    Column("received", "string", "UTC ISO 8601", "when the revision was taken from the inbox"),
    Column("sha256", "string", "", "sha256 of the event file as received (its archive name)"),
    Column("scan_id", "integer", "", "catalog id of the revision's latest scan (empty if none)"),
    Column("state", "string", "", "state of that scan: received, queued, running, done, failed, cancelled"),
    Column("attempts", "integer", "", "attempts started for that scan (a retry resumes in the same directory)"),
    Column("backend", "string", "", "local or condor"),
    *(SUMMARY_COLUMNS[name] for name in ("ra_deg", "dec_deg", "llh", "nside", "containment_method")),
    *level_columns("50", threshold=False),
    *level_columns("90", threshold=False),
    SUMMARY_COLUMNS["pixels_scanned"],
    SUMMARY_COLUMNS["pixels_failed"],
    Column("started", "string", "UTC ISO 8601", "start of the scan's first attempt"),
    Column("finished", "string", "UTC ISO 8601", "when the scan was found done, failed or cancelled"),
    Column("wall_seconds", "number", "s", "wall time from the first attempt's start to done"),
    Column("outdir", "string", "", "the scan's output directory"),
    SUMMARY_COLUMNS["software_version"],
    Column("last_error", "string", "", "reason of the last failed attempt, or of the cancellation"),
    Column("cancelled_scan_id", "integer", "",
           "the newest scan of the revision when it was cancelled after this row's done scan, which is shown "
           "instead (empty otherwise)"),
    Column("calibration_state", "string", "",
           "automatic calibration of the scan (watch.yaml calibration:): queued, calibrating, merging, done or "
           "failed (empty: none asked for)"),
    Column("calibration_error", "string", "", "reason of the calibration's last failed attempt (empty otherwise)"),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)

_LIST_SQL = """
SELECT a.id AS alert_id, a.run_id, a.event_id, r.revision,
       (SELECT COUNT(*) FROM revisions r2 WHERE r2.alert_id = a.id) AS revisions,
       r.is_latest AS latest, r.event_time, r.stream, r.received, r.sha256,
       s.id AS scan_id, s.state, s.attempts, s.backend, s.started, s.finished, s.wall_seconds, s.outdir,
       s.last_error, m.ra_deg, m.dec_deg, m.llh, m.nside, m.containment_method,
       m.ra_plus_50_deg, m.ra_minus_50_deg, m.dec_plus_50_deg, m.dec_minus_50_deg, m.area_50_deg2,
       m.ra_plus_90_deg, m.ra_minus_90_deg, m.dec_plus_90_deg, m.dec_minus_90_deg, m.area_90_deg2,
       m.pixels_scanned, m.pixels_failed, m.software_version, s.calibration_state, s.calibration_error,
       (SELECT MAX(c.id) FROM scans c WHERE c.revision_id = r.id AND c.id > s.id AND c.state = 'cancelled')
         AS cancelled_scan_id
FROM alerts a
JOIN revisions r ON r.alert_id = a.id
LEFT JOIN scans s ON s.id = COALESCE(
  (SELECT MAX(d.id) FROM scans d WHERE d.revision_id = r.id AND d.state = 'done'
     AND NOT EXISTS (SELECT 1 FROM scans l WHERE l.revision_id = r.id AND l.id > d.id AND l.state != 'cancelled')),
  (SELECT MAX(s2.id) FROM scans s2 WHERE s2.revision_id = r.id))
LEFT JOIN summaries m ON m.scan_id = s.id
WHERE (:all_revisions OR r.is_latest = 1)
  AND (:since IS NULL OR r.event_time >= :since)
  AND (:state IS NULL OR s.state = :state)
ORDER BY r.event_time, a.id, r.revision
"""


def catalog_rows(conn: sqlite3.Connection, *, since: str | None = None, state: str | None = None,
                 all_revisions: bool = False) -> list[dict[str, Any]]:
    """Every alert with its latest scan (or every revision with its latest scan), oldest event first.

    "Latest" skips cancelled scans that follow a done one: then the done scan is shown and ``cancelled_scan_id``
    names the newest cancelled scan."""
    if state is not None and state not in SCAN_STATES:
        raise InputError(f"--state: unknown state {state!r} (one of {', '.join(SCAN_STATES)})")
    params = {"all_revisions": 1 if all_revisions else 0, "since": parse_since(since) if since else None,
              "state": state}
    rows = []
    for r in conn.execute(_LIST_SQL, params).fetchall():
        row = {key: r[key] for key in r.keys()}
        row["latest"] = bool(row["latest"])
        row["alert"] = alert_name(row["run_id"], row["event_id"], row["revision"])
        rows.append({name: row.get(name) for name in COLUMN_NAMES})
    return rows


def software_record() -> dict[str, Any]:
    """The ``software`` block of the catalog document and of the export manifest."""
    return {"name": "skyscan", "version": __version__, "git_revision": git_revision()}


def catalog_document(rows: list[dict[str, Any]], created: str | None = None) -> dict[str, Any]:
    """The skyscan-catalog/1 JSON document: the columns' documentation and the rows."""
    return {
        "schema": CATALOG_SCHEMA,
        "created": created or utcnow(),
        "software": software_record(),
        "columns": [c.__dict__ for c in COLUMNS],
        "rows": rows,
    }


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def format_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMN_NAMES)
    for row in rows:
        writer.writerow([_csv_value(row.get(name)) for name in COLUMN_NAMES])
    return buf.getvalue()


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _errors(row: dict[str, Any], level: str) -> str:
    keys = [f"ra_plus_{level}_deg", f"ra_minus_{level}_deg", f"dec_plus_{level}_deg", f"dec_minus_{level}_deg"]
    if all(row.get(k) is None for k in keys):
        return "-"
    ra = f"+{_fmt(row[keys[0]])}/-{_fmt(row[keys[1]])}"
    dec = f"+{_fmt(row[keys[2]])}/-{_fmt(row[keys[3]])}"
    return f"{ra} {dec}"


def _wall(seconds: Any) -> str:
    if seconds is None:
        return "-"
    s = round(float(seconds))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _note(row: dict[str, Any]) -> str:
    """The table's note: why a scan is not done, or that a later scan was cancelled and this done one is shown."""
    if row["state"] != "done":
        return " ".join(str(row["last_error"] or "").split())
    if row.get("cancelled_scan_id") is not None:
        return f"scan {row['cancelled_scan_id']} (a later scan) was cancelled; showing done scan {row['scan_id']}"
    if row.get("calibration_state") == "failed":
        return "calibration failed: " + " ".join(str(row.get("calibration_error") or "").split())
    if row.get("calibration_state") not in (None, "done"):
        return f"calibration {row['calibration_state']}"
    return ""


def format_table(rows: list[dict[str, Any]]) -> str:
    """An operator's view: one line per row, reasons of failures at the end of the line."""
    header = ("id", "alert", "rev", "event time (UTC)", "stream", "state", "try", "RA", "Dec",
              "50% RA / Dec err", "50% deg2", "90% RA / Dec err", "90% deg2", "wall", "outdir", "note")
    lines: list[tuple[str, ...]] = [header]
    for r in rows:
        lines.append((
            str(r["alert_id"]),
            f"{r['run_id']}:{r['event_id']}",
            f"{r['revision']}/{r['revisions']}",
            (r["event_time"] or "-")[:19].replace("T", " "),
            r["stream"] or "-",
            r["state"] or "-",
            _fmt(r["attempts"]),
            _fmt(r["ra_deg"]),
            _fmt(r["dec_deg"]),
            _errors(r, "50"),
            _fmt(r["area_50_deg2"]),
            _errors(r, "90"),
            _fmt(r["area_90_deg2"]),
            _wall(r["wall_seconds"]),
            r["outdir"] or "-",
            _note(r),
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for line in lines:
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
    return "\n".join(out) + "\n"


def format_rows(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "table":
        return format_table(rows)
    if fmt == "csv":
        return format_csv(rows)
    if fmt == "json":
        return json.dumps(catalog_document(rows), indent=1) + "\n"
    raise InputError(f"--format: unknown format {fmt!r} (table, csv or json)")
