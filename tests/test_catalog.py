"""The catalog database: schema and migrations, the scan state machine, listing, formats and the export."""

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
from skyscan.errors import InputError, SkyscanError
from skyscan.ops import catalog as catalog
from skyscan.ops.catalog import (
    COLUMN_NAMES,
    IngestResult,
    connect,
    parse_summary,
    record_revision,
    resolve_alert,
)
from skyscan.ops.catalog import scans as catalog_scans
from skyscan.version import __version__

T0 = datetime(2026, 3, 14, 15, 9, 26, 500000, tzinfo=timezone.utc)


def summary_doc(ra: float = 12.5, dec: float = -30.25, area90: float | None = 7.5) -> dict[str, Any]:
    def region(scale: float, area: float | None) -> dict[str, Any]:
        return {"level_2dllh": 4.61, "area_deg2": area, "ra_plus_deg": scale, "ra_minus_deg": scale * 0.5,
                "dec_plus_deg": scale * 0.25, "dec_minus_deg": scale * 0.75}

    return {
        "schema": "skyscan-summary/1", "run_id": 1, "event_id": 2, "event_time": "2026-03-14T15:09:26Z",
        "stream": "gold",
        "best_fit": {"ra_deg": ra, "dec_deg": dec, "zenith_deg": 100.0, "azimuth_deg": 40.0, "llh": 321.0,
                     "nside": 512},
        "containment": {"method": "wilks", "50": region(0.5, 1.25), "90": region(1.5, area90)},
        "pixels": {"scanned": 3000, "failed": 2, "by_nside": {"8": 768}},
        "software": {"version": "9.9", "git_revision": None},
        "products": {},
    }


def add(conn: sqlite3.Connection, run: int, evt: int, content: str, when: datetime = T0,
        stream: str | None = "gold") -> IngestResult:
    sha = hashlib.sha256(content.encode()).hexdigest()
    return record_revision(conn, run_id=run, event_id=evt, sha256=sha, archive_path=f"/a/{sha}.json",
                           source_name=f"{content}.json", event_time=when, stream=stream, now=catalog.utcnow())


def finish(conn: sqlite3.Connection, scan_id: int, outdir: Path, doc: dict[str, Any]) -> None:
    now = catalog.utcnow()
    assert catalog.queue_scan(conn, scan_id, str(outdir), now)
    assert catalog.claim_scan(conn, scan_id, "local", now)
    assert catalog.mark_done(conn, scan_id, parse_summary(doc), str(outdir / "summary.json"), notify=False,
                             now=now)


@pytest.fixture
def conn(tmp_path: Path) -> Any:
    c = connect(tmp_path / "catalog.sqlite")
    yield c
    c.close()


# --- schema and migrations ----------------------------------------------------------------------------------------
def test_new_database_is_current_and_in_wal_mode(tmp_path: Path) -> None:
    c = connect(tmp_path / "db.sqlite")
    assert c.execute("PRAGMA user_version").fetchone()[0] == catalog.SCHEMA_VERSION >= 1
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"alerts", "revisions", "scans", "summaries", "files"} <= tables
    c.close()


def test_migration_applies_pending_steps_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    c = connect(path)
    add(c, 1, 2, "first")
    c.close()
    extra = (*catalog.MIGRATIONS, "ALTER TABLE alerts ADD COLUMN note TEXT;\nUPDATE alerts SET note = 'migrated';")
    c = connect(path, migrations=extra)
    assert c.execute("PRAGMA user_version").fetchone()[0] == len(extra)
    assert [tuple(r) for r in c.execute("SELECT run_id, event_id, note FROM alerts")] == [(1, 2, "migrated")]
    c.close()


def test_a_version_1_catalog_gains_the_service_columns_with_its_scans_intact(tmp_path: Path) -> None:
    """Migration 1 -> 2 (the scan service): existing scans keep their state and get priority 0, no tokens."""
    path = tmp_path / "db.sqlite"
    c = connect(path, migrations=catalog.MIGRATIONS[:1])
    res = add(c, 1, 2, "first")
    c.close()
    c = connect(path)
    assert c.execute("PRAGMA user_version").fetchone()[0] == catalog.SCHEMA_VERSION >= 2
    row = c.execute("SELECT state, priority, classifiers, replaced_by, remote_scan_id FROM scans WHERE id = ?",
                    (res.scan_id,)).fetchone()
    assert tuple(row) == ("received", 0, None, None, None)
    assert c.execute("SELECT COUNT(*) FROM tokens").fetchone()[0] == 0
    c.close()


def test_queued_scans_start_by_priority_then_first_come(tmp_path: Path) -> None:
    c = connect(tmp_path / "db.sqlite")
    now = "2026-01-01T00:00:00Z"
    ids = []
    for i, priority in enumerate((0, 5, 100, 0, 100)):
        res = add(c, 1, 100 + i, f"e{i}")
        assert res.scan_id is not None
        catalog.queue_scan(c, res.scan_id, str(tmp_path / f"s{i}"), now)
        c.execute("UPDATE scans SET priority = ? WHERE id = ?", (priority, res.scan_id))
        ids.append(res.scan_id)
    order = [s.id for s in catalog_scans.queued_in_order(c)]
    assert order == [ids[2], ids[4], ids[1], ids[0], ids[3]]
    c.close()


def test_failed_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    connect(path).close()
    broken = (*catalog.MIGRATIONS, "ALTER TABLE alerts ADD COLUMN x TEXT;\nTHIS IS NOT SQL;")
    with pytest.raises(SkyscanError):
        connect(path, migrations=broken)
    c = connect(path)
    assert c.execute("PRAGMA user_version").fetchone()[0] == catalog.SCHEMA_VERSION
    assert "x" not in [r[1] for r in c.execute("PRAGMA table_info(alerts)")]
    c.close()


def test_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    c = connect(path)
    c.execute(f"PRAGMA user_version = {catalog.SCHEMA_VERSION + 1}")
    c.close()
    with pytest.raises(SkyscanError, match="newer than this software"):
        connect(path)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    path.write_text("these are not the bytes of an SQLite database, " * 40)
    with pytest.raises(SkyscanError, match="not a usable catalog database"):
        connect(path)
    with pytest.raises(InputError, match="no catalog database"):
        connect(tmp_path / "absent.sqlite", create=False)


# --- revisions and the scan state machine -------------------------------------------------------------------------
def test_duplicates_and_revisions(conn: sqlite3.Connection) -> None:
    first = add(conn, 5, 6, "v1")
    assert (first.outcome, first.revision) == ("new", 1) and first.scan_id is not None
    dup = add(conn, 5, 6, "v1")
    assert (dup.outcome, dup.revision_id, dup.scan_id) == ("duplicate", first.revision_id, None)
    second = add(conn, 5, 6, "v2")
    assert (second.outcome, second.revision, second.alert_id) == ("revision", 2, first.alert_id)
    other = add(conn, 5, 7, "v3")
    assert other.outcome == "new" and other.alert_id != first.alert_id
    latest = [tuple(r) for r in conn.execute("SELECT revision, is_latest FROM revisions WHERE alert_id = ?",
                                             (first.alert_id,))]
    assert sorted(latest) == [(1, 0), (2, 1)]
    assert conn.execute("SELECT COUNT(*) FROM scans").fetchone()[0] == 3
    with pytest.raises(sqlite3.IntegrityError):  # at most one latest revision per alert, by construction
        conn.execute("UPDATE revisions SET is_latest = 1 WHERE alert_id = ?", (first.alert_id,))


def test_state_machine_compare_and_set(conn: sqlite3.Connection, tmp_path: Path) -> None:
    scan_id = add(conn, 1, 1, "a").scan_id
    assert scan_id is not None
    now = catalog.utcnow()
    assert not catalog.claim_scan(conn, scan_id, "local", now)  # received, not yet queued
    assert catalog.queue_scan(conn, scan_id, str(tmp_path / "out"), now)
    assert not catalog.queue_scan(conn, scan_id, str(tmp_path / "other"), now)
    assert catalog.claim_scan(conn, scan_id, "local", now)
    assert not catalog.claim_scan(conn, scan_id, "local", now)  # a second start is impossible
    state = catalog.fail_attempt(conn, scan_id, "boom 1", max_attempts=2, retry_at=now, now=now)
    assert state == "queued"
    assert catalog.claim_scan(conn, scan_id, "condor", now)
    row = catalog.get_scan(conn, scan_id)
    assert (row.attempts, row.backend, row.outdir) == (2, "local", str(tmp_path / "out"))  # resumes, same backend
    assert catalog.fail_attempt(conn, scan_id, "boom 2", max_attempts=2, retry_at=now, now=now) == "failed"
    assert catalog.get_scan(conn, scan_id).last_error == "boom 2"
    assert catalog.fail_attempt(conn, scan_id, "late", max_attempts=2, retry_at=now, now=now) is None


def test_cancel_wins_over_a_late_failure_and_rescan_rules(conn: sqlite3.Connection, tmp_path: Path) -> None:
    res = add(conn, 2, 2, "b")
    assert res.scan_id is not None
    now = catalog.utcnow()
    catalog.queue_scan(conn, res.scan_id, str(tmp_path / "o"), now)
    catalog.claim_scan(conn, res.scan_id, "local", now)
    with pytest.raises(SkyscanError, match="already has an active scan"):
        catalog.add_scan(conn, res.alert_id, None, now)
    assert catalog.mark_cancelled(conn, res.scan_id, "operator", now)
    assert catalog.fail_attempt(conn, res.scan_id, "vanished", max_attempts=3, retry_at=now, now=now) is None
    assert catalog.get_scan(conn, res.scan_id).state == "cancelled"
    assert not catalog.mark_cancelled(conn, res.scan_id, "again", now)
    new_id = catalog.add_scan(conn, res.alert_id, "/cfg.yaml", now)
    new = catalog.get_scan(conn, new_id)
    assert (new.state, new.revision_id, new.scan_config) == ("received", res.revision_id, "/cfg.yaml")


def test_resolve_alert_forms(conn: sqlite3.Connection) -> None:
    res = add(conn, 138632, 31747601, "c")
    for spec in ("138632:31747601", " 138632 : 31747601 ", str(res.alert_id), "run138632-evt31747601",
                 "run138632-evt31747601-r1"):
        assert resolve_alert(conn, spec) == res.alert_id
    for spec, words in (("1:2", "no alert with run 1 event 2"), ("999", "no alert with id 999"),
                        ("latest", "expected RUN:EVENT")):
        with pytest.raises(InputError, match=words):
            resolve_alert(conn, spec)


# --- summaries ----------------------------------------------------------------------------------------------------
def test_parse_summary_takes_the_catalog_fields() -> None:
    s = parse_summary(summary_doc(ra=1.0, dec=2.0, area90=None))
    assert (s.ra_deg, s.dec_deg, s.nside, s.llh) == (1.0, 2.0, 512, 321.0)
    assert (s.ra_plus_90_deg, s.ra_minus_90_deg, s.dec_plus_90_deg, s.dec_minus_90_deg) == (1.5, 0.75, 0.375, 1.125)
    assert s.area_50_deg2 == 1.25 and s.area_90_deg2 is None
    assert (s.pixels_scanned, s.pixels_failed, s.software_version) == (3000, 2, "9.9")
    assert json.loads(s.doc) == summary_doc(ra=1.0, dec=2.0, area90=None)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d.update(schema="skyscan-summary/2"), "schema"),
        (lambda d: d.pop("best_fit"), "best_fit"),
        (lambda d: d["best_fit"].update(ra_deg="12h"), "ra_deg"),
        (lambda d: d["best_fit"].update(dec_deg=float("nan")), "dec_deg"),
    ],
)
def test_parse_summary_rejects(change: Any, words: str) -> None:
    doc = summary_doc()
    change(doc)
    with pytest.raises(InputError, match=words):
        parse_summary(doc)


# --- listing and formats ------------------------------------------------------------------------------------------
@pytest.fixture
def filled(conn: sqlite3.Connection, tmp_path: Path) -> sqlite3.Connection:
    """Three alerts: one done (two revisions, the second done), one failed, one queued."""
    a1 = add(conn, 10, 1, "a1-v1", when=T0)
    a1b = add(conn, 10, 1, "a1-v2", when=T0)
    assert a1.scan_id is not None and a1b.scan_id is not None
    for rid, scan_id, doc in ((1, a1.scan_id, summary_doc(1.0, 2.0)), (2, a1b.scan_id, summary_doc(3.0, 4.0))):
        out = tmp_path / f"scan-{rid}"
        out.mkdir()
        (out / "skymap.multiorder.fits").write_bytes(f"fits of revision {rid}".encode())
        (out / "skymap.h5").write_bytes(f"h5 of revision {rid}".encode())
        finish(conn, scan_id, out, doc)
    a2 = add(conn, 10, 2, "a2", when=T0.replace(day=20), stream=None)
    assert a2.scan_id is not None
    now = catalog.utcnow()
    catalog.queue_scan(conn, a2.scan_id, str(tmp_path / "scan-3"), now)
    catalog.claim_scan(conn, a2.scan_id, "local", now)
    catalog.fail_attempt(conn, a2.scan_id, "exit code 1: skyscan: error: bad", max_attempts=1, retry_at=now, now=now)
    add(conn, 11, 1, "a3", when=T0.replace(day=25))
    return conn


def test_catalog_rows_latest_scan_per_alert(filled: sqlite3.Connection) -> None:
    rows = catalog.catalog_rows(filled)
    assert [(r["run_id"], r["event_id"], r["revision"], r["state"]) for r in rows] == [
        (10, 1, 2, "done"), (10, 2, 1, "failed"), (11, 1, 1, "received")]
    done = rows[0]
    assert (done["ra_deg"], done["dec_deg"], done["revisions"], done["latest"]) == (3.0, 4.0, 2, True)
    assert done["area_90_deg2"] == 7.5 and done["ra_plus_50_deg"] == 0.5 and done["nside"] == 512
    assert done["alert"] == "run10-evt1-r2" and done["wall_seconds"] is not None
    assert rows[1]["last_error"] == "exit code 1: skyscan: error: bad" and rows[1]["stream"] is None
    every = catalog.catalog_rows(filled, all_revisions=True)
    assert [(r["revision"], r["latest"], r["ra_deg"]) for r in every[:2]] == [(1, False, 1.0), (2, True, 3.0)]
    assert [r["event_id"] for r in catalog.catalog_rows(filled, since="2026-03-20")] == [2, 1]
    assert [r["run_id"] for r in catalog.catalog_rows(filled, since="2026-03-20T15:09:27Z")] == [11]
    assert [r["event_id"] for r in catalog.catalog_rows(filled, state="failed")] == [2]
    assert catalog.catalog_rows(filled, state="running") == []
    with pytest.raises(InputError, match="--since"):
        catalog.catalog_rows(filled, since="last week")


def test_formats(filled: sqlite3.Connection) -> None:
    rows = catalog.catalog_rows(filled)
    parsed = list(csv.DictReader(io.StringIO(catalog.format_rows(rows, "csv"))))
    assert tuple(parsed[0]) == COLUMN_NAMES
    assert [float(p["ra_deg"]) if p["ra_deg"] else None for p in parsed] == [r["ra_deg"] for r in rows]
    assert parsed[0]["latest"] == "true" and parsed[2]["ra_deg"] == ""
    doc = json.loads(catalog.format_rows(rows, "json"))
    assert doc["schema"] == "skyscan-catalog/1" and doc["rows"] == rows
    assert [c["name"] for c in doc["columns"]] == list(COLUMN_NAMES)
    assert all(c["description"] for c in doc["columns"])
    table = catalog.format_rows(rows, "table").splitlines()
    assert len(table) == 4 and table[0].split()[:3] == ["id", "alert", "rev"]
    assert "10:1" in table[1] and "3.00" in table[1] and "4.00" in table[1] and "7.50" in table[1]
    assert table[2].rstrip().endswith("exit code 1: skyscan: error: bad")


def test_export_snapshot(filled: sqlite3.Connection, tmp_path: Path) -> None:
    out = catalog.export_catalog(filled, tmp_path / "export")
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert names == ["catalog.csv", "catalog.json", "manifest.json", "skymaps/run10-evt1-r2-s2.h5",
                     "skymaps/run10-evt1-r2-s2.multiorder.fits"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["catalog_schema"] == "skyscan-catalog/1" and manifest["rows"] == 3
    assert manifest["software"]["version"] == __version__
    for entry in manifest["files"] + manifest["skymaps"]:
        data = (out / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
    fits = next(e for e in manifest["skymaps"] if e["kind"] == "skymap.multiorder.fits")
    assert (out / fits["path"]).read_bytes() == b"fits of revision 2"
    doc = json.loads((out / "catalog.json").read_text())
    table = list(csv.DictReader(io.StringIO((out / "catalog.csv").read_text())))
    assert [int(r["scan_id"]) if r["scan_id"] else None for r in table] == [r["scan_id"] for r in doc["rows"]]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export")]  # no leftovers
    with pytest.raises(InputError, match="not an empty folder"):
        catalog.export_catalog(filled, out)
    only_done = catalog.export_catalog(filled, tmp_path / "done-only", state="done", skymaps=False)
    manifest = json.loads((only_done / "manifest.json").read_text())
    assert manifest["rows"] == 1 and manifest["skymaps"] == [] and not (only_done / "skymaps").exists()


def test_cli_catalog_and_export(filled: sqlite3.Connection, tmp_path: Path) -> None:
    db = str(tmp_path / "catalog.sqlite")
    runner = CliRunner()
    result = runner.invoke(standalone_group(), ["catalog", "--db", db, "--format", "csv", "--state", "done"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2 and result.stdout.startswith("alert_id,alert,")
    result = runner.invoke(standalone_group(), ["catalog", "--db", db, "--since", "2026-03-21", "--format", "json"])
    assert [r["run_id"] for r in json.loads(result.stdout)["rows"]] == [11]
    result = runner.invoke(standalone_group(), ["catalog", "--db", db, "export", "-o", str(tmp_path / "snap")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "snap" / "manifest.json").read_text())["rows"] == 3
    result = runner.invoke(standalone_group(), ["catalog", "export", "-o", str(tmp_path / "snap2")])
    assert result.exit_code == 2 and "pass --db FILE or --watch-config FILE" in result.stderr
    result = runner.invoke(standalone_group(), ["catalog", "--db", db, "--since", "soon"])
    assert result.exit_code == 2 and result.stderr.startswith("skyscan: error: --since")
