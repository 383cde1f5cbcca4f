"""A cancelled rescan does not hide the alert's finished scan from `skyscan catalog` and `catalog export`."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from skyscan.cli.watch import standalone_group
from skyscan.ops import catalog as catalog
from skyscan.ops.catalog import connect, parse_summary, record_revision

T0 = datetime(2026, 3, 14, 15, 9, 26, 500000, tzinfo=timezone.utc)


def summary_doc(ra: float, dec: float) -> dict[str, Any]:
    region = {"level_2dllh": 4.61, "area_deg2": 2.5, "ra_plus_deg": 1.0, "ra_minus_deg": 0.5,
              "dec_plus_deg": 0.25, "dec_minus_deg": 0.75}
    return {
        "schema": "skyscan-summary/1", "run_id": 7, "event_id": 8, "event_time": "2026-03-14T15:09:26Z",
        "stream": "gold",
        "best_fit": {"ra_deg": ra, "dec_deg": dec, "zenith_deg": 100.0, "azimuth_deg": 40.0, "llh": 321.0,
                     "nside": 512},
        "containment": {"method": "wilks", "50": region, "90": region},
        "pixels": {"scanned": 3000, "failed": 0, "by_nside": {"8": 768}},
        "software": {"version": "9.9", "git_revision": None},
        "products": {},
    }


def new_alert(conn: sqlite3.Connection, run: int, evt: int, content: str) -> tuple[int, int]:
    """(alert id, first scan id) of a freshly received alert."""
    sha = hashlib.sha256(content.encode()).hexdigest()
    res = record_revision(conn, run_id=run, event_id=evt, sha256=sha, archive_path=f"/a/{sha}.json",
                          source_name=f"{content}.json", event_time=T0, stream="gold", now=catalog.utcnow())
    assert res.scan_id is not None
    return res.alert_id, res.scan_id


def finish(conn: sqlite3.Connection, scan_id: int, outdir: Path, ra: float) -> None:
    outdir.mkdir()
    (outdir / "skymap.multiorder.fits").write_bytes(f"fits of scan {scan_id}".encode())
    (outdir / "skymap.h5").write_bytes(f"h5 of scan {scan_id}".encode())
    now = catalog.utcnow()
    assert catalog.queue_scan(conn, scan_id, str(outdir), now)
    assert catalog.claim_scan(conn, scan_id, "local", now)
    assert catalog.mark_done(conn, scan_id, parse_summary(summary_doc(ra, -5.0)), str(outdir / "summary.json"),
                             notify=False, now=now)


@pytest.fixture
def db(tmp_path: Path) -> Any:
    """Alert A: scan 1 done, then a rescan cancelled while queued and a second rescan cancelled while running.
    Alert B: its only scan cancelled (nothing done to show). Alert C: done, then a rescan that is running."""
    conn = connect(tmp_path / "catalog.sqlite")
    a, a1 = new_alert(conn, 7, 8, "a")
    finish(conn, a1, tmp_path / "a1", ra=11.0)
    now = catalog.utcnow()
    a2 = catalog.add_scan(conn, a, None, now)
    assert catalog.mark_cancelled(conn, a2, "operator: wrong config", now)
    a3 = catalog.add_scan(conn, a, None, now)
    assert catalog.queue_scan(conn, a3, str(tmp_path / "a3"), now)
    assert catalog.claim_scan(conn, a3, "local", now)
    assert catalog.mark_cancelled(conn, a3, "operator: not needed", now)
    _, b1 = new_alert(conn, 7, 9, "b")
    assert catalog.mark_cancelled(conn, b1, "operator", now)
    c, c1 = new_alert(conn, 7, 10, "c")
    finish(conn, c1, tmp_path / "c1", ra=33.0)
    c2 = catalog.add_scan(conn, c, None, now)
    assert catalog.queue_scan(conn, c2, str(tmp_path / "c2"), now)
    assert catalog.claim_scan(conn, c2, "local", now)
    yield {"conn": conn, "path": tmp_path / "catalog.sqlite", "ids": {"a1": a1, "a3": a3, "b1": b1, "c2": c2}}
    conn.close()


def by_event(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(r["event_id"]): r for r in rows}


def test_rows_show_the_done_scan_and_name_the_cancelled_one(db: dict[str, Any]) -> None:
    rows = by_event(catalog.catalog_rows(db["conn"]))
    ids = db["ids"]
    a = rows[8]
    assert (a["state"], a["scan_id"], a["ra_deg"]) == ("done", ids["a1"], 11.0)
    assert a["cancelled_scan_id"] == ids["a3"]  # the newest of the two cancelled rescans
    assert a["outdir"].endswith("a1")
    # Nothing done before the cancellation: the cancelled scan is the row, as before.
    b = rows[9]
    assert (b["state"], b["scan_id"], b["cancelled_scan_id"]) == ("cancelled", ids["b1"], None)
    # A rescan that is still running is the alert's current scan: shown, not hidden behind the old done one.
    c = rows[10]
    assert (c["state"], c["scan_id"], c["ra_deg"], c["cancelled_scan_id"]) == ("running", ids["c2"], None, None)
    assert [r["event_id"] for r in catalog.catalog_rows(db["conn"], state="done")] == [8]
    assert [r["event_id"] for r in catalog.catalog_rows(db["conn"], state="cancelled")] == [9]


def test_table_csv_and_json_say_so(db: dict[str, Any]) -> None:
    rows = catalog.catalog_rows(db["conn"])
    ids = db["ids"]
    table = catalog.format_rows(rows, "table").splitlines()
    line = next(x for x in table if "7:8" in x)
    assert line.rstrip().endswith(f"scan {ids['a3']} (a later scan) was cancelled; showing done scan {ids['a1']}")
    assert " done " in line and "11.00" in line
    parsed = by_event([dict(r) for r in csv.DictReader(io.StringIO(catalog.format_rows(rows, "csv")))])
    assert parsed[8]["cancelled_scan_id"] == str(ids["a3"]) and parsed[9]["cancelled_scan_id"] == ""
    doc = json.loads(catalog.format_rows(rows, "json"))
    column = next(c for c in doc["columns"] if c["name"] == "cancelled_scan_id")
    assert "cancelled" in column["description"]


def test_export_keeps_the_done_scan_and_its_skymaps(db: dict[str, Any], tmp_path: Path) -> None:
    ids = db["ids"]
    out = catalog.export_catalog(db["conn"], tmp_path / "export")
    manifest = json.loads((out / "manifest.json").read_text())
    a_maps = [e for e in manifest["skymaps"] if e["alert"] == "run7-evt8-r1"]
    assert sorted(e["kind"] for e in a_maps) == ["skymap.h5", "skymap.multiorder.fits"]
    assert all(e["scan_id"] == ids["a1"] and e["cancelled_scan_id"] == ids["a3"] for e in a_maps)
    fits = next(e for e in a_maps if e["kind"] == "skymap.multiorder.fits")
    assert (out / fits["path"]).read_bytes() == f"fits of scan {ids['a1']}".encode()
    rows = by_event(json.loads((out / "catalog.json").read_text())["rows"])
    assert rows[8]["state"] == "done" and rows[8]["cancelled_scan_id"] == ids["a3"]


def test_cli_catalog_shows_the_done_scan(db: dict[str, Any], tmp_path: Path) -> None:
    result = CliRunner().invoke(standalone_group(), ["catalog", "--db", str(db["path"]), "--state", "done"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and "7:8" in lines[1] and "was cancelled; showing done scan" in lines[1]
    result = CliRunner().invoke(standalone_group(),
                                ["catalog", "--db", str(db["path"]), "export", "-o", str(tmp_path / "snap")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "snap" / "manifest.json").read_text())["rows"] == 3
