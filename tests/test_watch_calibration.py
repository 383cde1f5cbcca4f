"""Automatic calibration in the watcher (and the service's scan document): issue 14 section 2, last bullet.

One real run end to end, module-scoped: two alerts (gold, bronze) through `skyscan watch --once` passes with
the real `skyscan run` (a tiny scan, nside 4 -> 8), `calibration: {streams: [gold], n: 4}`; the gold scan is
calibrated by the real `skyscan calibrate` (4 pseudo-events, a 20-degree disc), re-merged and re-issued, the
bronze one is not. The failure paths use the fake scan (tests/fake_scan.py): a calibration of a fake scan fails
for real (it has no stage results), and a calibration command that hangs is killed. The condor path runs the
scheduler in-process with the HTCondor calls replaced (submission and queue) and the fake merge of
tests/fake_calibrate.py.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result

from skyscan.cli.watch import standalone_group
from skyscan.errors import InputError
from skyscan.ops import catalog, watchconfig
from skyscan.ops.calibration import REISSUE_FILE, REISSUE_SCHEMA, calibration_launch_dir
from skyscan.ops.watchconfig import CALIBRATION_KEYS, load_watch_config
from skyscan.reco.event import event_to_dict
from skyscan.reco.geometry import ic86
from skyscan.reco.simulate import TrackSpec, simulate_track

FAKE = Path(__file__).with_name("fake_scan.py")
REPO = Path(__file__).resolve().parent.parent
WHEN = datetime(2026, 4, 2, 22, 10, 5, tzinfo=timezone.utc)
# The tiny scan of tests/test_calibrate_e2e.py: two coarse stages, short fits, no plots.
TINY_SCAN = {
    "scan": {"stages": [{"nside": 4, "pixels_per_job": 192}, {"nside": 8, "refine": 2, "pixels_per_job": 8}],
             "resolve": {"min_pixels": 0}},
    "reco": {"max_iterations": 20},
    "merge": {"flat_nside": 8, "plots": False},
}
CALIBRATION = {"streams": ["gold"], "n": 4, "disc_deg": 20.0, "systematics": "default"}
# A notification command that records its argument and the re-issue flag, one line per call.
NOTIFY = ("import os, sys; open(sys.argv[1], 'a').write("
          "os.environ['SKYSCAN_WATCH_ALERT'] + ' ' + os.environ.get('SKYSCAN_WATCH_REISSUE', 'first') + '\\n')")


# --- helpers ------------------------------------------------------------------------------------------------------
def write_config(folder: Path, **settings: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "inbox": "inbox", "state_dir": "state", "settle_seconds": 0, "retry_delay_seconds": 0, "max_running": 4,
        "max_attempts": 1, "stall_seconds": 600, "kill_grace_seconds": 2,
        "scan_command": [sys.executable, str(FAKE), "--sleep", "0.1"],
    }
    doc.update(settings)
    path = folder / "watch.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    (folder / "inbox").mkdir(exist_ok=True)
    return path


def drop(inbox: Path, name: str, doc: dict[str, Any]) -> None:
    tmp = inbox / f".{name}.part"
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, inbox / name)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(standalone_group(), list(args))


def rows(cfg_path: Path) -> list[sqlite3.Row]:
    conn = catalog.connect(load_watch_config(cfg_path).database, create=False)
    try:
        return list(conn.execute(
            "SELECT s.*, r.stream, m.containment_method, m.area_90_deg2 FROM scans s"
            " JOIN revisions r ON r.id = s.revision_id LEFT JOIN summaries m ON m.scan_id = s.id ORDER BY s.id"))
    finally:
        conn.close()


def passes_until(cfg_path: Path, done: Callable[[list[sqlite3.Row]], bool], timeout: float = 120.0) -> int:
    """`watch --once` through the CLI (each must exit 0) until ``done(rows)``; the number of passes."""
    deadline = time.monotonic() + timeout
    n = 0
    while True:
        result = invoke("watch", "--config", str(cfg_path), "--once")
        assert result.exit_code == 0, result.output
        n += 1
        current = rows(cfg_path)
        if current and done(current):
            return n
        assert time.monotonic() < deadline, f"not done after {n} passes: {[dict(r) for r in current]}"
        time.sleep(0.2)


def settled(count: int) -> Callable[[list[sqlite3.Row]], bool]:
    """Every scan finished and every asked-for calibration finished (done or failed)."""
    def check(current: list[sqlite3.Row]) -> bool:
        return len(current) == count and all(
            r["state"] in ("done", "failed") and r["calibration_state"] in (None, "done", "failed") for r in current)

    return check


def track_event(run_id: int, event_id: int, stream: str | None) -> dict[str, Any]:
    spec = TrackSpec(zenith_deg=112.0, azimuth_deg=75.0, energy_gev=3e5, vertex=(30.0, 20.0, -40.0))
    event, truth = simulate_track(spec, ic86(), np.random.default_rng(31), run_id=run_id, event_id=event_id,
                                  event_time=WHEN, stream=stream)
    return event_to_dict(event, truth)


@pytest.fixture
def reap() -> Iterator[list[int]]:
    groups: list[int] = []
    yield groups
    for g in groups:
        try:
            os.killpg(g, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# --- configuration ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("block", "words"),
    [
        ({"streams": ["gold"], "N": 10}, ("calibration.N", "unknown setting")),
        ({"n": 10}, ("calibration.streams", "stream names")),
        ({"streams": "gold ; rm"}, ("calibration.streams",)),
        ({"streams": ["gold"], "n": 1}, ("calibration.n", "from 2")),
        ({"streams": ["gold"], "n": "many"}, ("calibration.n", "integer")),
        ({"streams": ["gold"], "n": True}, ("calibration.n",)),
        ({"streams": ["gold"], "disc_deg": 0}, ("calibration.disc_deg", "(0, 180]")),
        ({"streams": ["gold"], "systematics": "nowhere.yaml"}, ("calibration.systematics", "no such file")),
        ({"streams": ["gold"], "systematics": 3}, ("calibration.systematics",)),
        ({"streams": ["gold"], "command": []}, ("calibration.command", "empty")),
        ({"streams": ["gold"], "max_running": 0}, ("calibration.max_running",)),
        (["gold"], ("calibration", "mapping")),
    ],
)
def test_bad_calibration_block_is_one_line_exit_2(tmp_path: Path, block: Any, words: tuple[str, ...]) -> None:
    path = write_config(tmp_path, calibration=block)
    result = invoke("watch", "--config", str(path), "--once")
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("skyscan: error: "), lines
    for word in words:
        assert word in lines[0], lines[0]
    assert not (tmp_path / "state" / "catalog.sqlite").exists()


def test_calibration_block_defaults_and_backend_service(tmp_path: Path) -> None:
    cfg = load_watch_config(write_config(tmp_path, calibration={"streams": "gold"}))
    assert cfg.calibration is not None and cfg.calibration.streams == ("gold",)
    assert (cfg.calibration.n, cfg.calibration.systematics, cfg.calibration.max_attempts) == (100, "default", 2)
    assert cfg.calibration.wants("gold") and not cfg.calibration.wants("bronze") and not cfg.calibration.wants(None)
    (tmp_path / "sys.yaml").write_text("absorption: 0.1\n")
    rel = load_watch_config(write_config(tmp_path, calibration={"streams": ["a"], "systematics": "sys.yaml"}))
    assert rel.calibration is not None and rel.calibration.systematics == str(tmp_path / "sys.yaml")
    assert load_watch_config(write_config(tmp_path, calibration=None)).calibration is None
    token = tmp_path / "token"
    token.write_text("x")
    path = write_config(tmp_path, backend="service", service_url="http://127.0.0.1:1", service_token_file=str(token),
                        calibration={"streams": ["gold"]})
    with pytest.raises(InputError, match="calibration: not with backend service"):
        load_watch_config(path)


def test_example_config_documents_the_calibration_block() -> None:
    from skyscan.resources import data_dir

    text = data_dir("config").joinpath("watch.example.yaml").read_text(encoding="utf-8")
    block = text[text.index("# calibration:"):]
    for key in CALIBRATION_KEYS:
        assert f"#   {key}:" in block, f"calibration.{key} is not documented in watch.example.yaml"
    uncommented = "\n".join(line[2:] for line in block.splitlines() if line.startswith("# "))
    raw = yaml.safe_load(uncommented)
    cal = watchconfig.calibration_from_mapping(raw["calibration"], Path("/srv"), "watch.example.yaml")
    assert cal is not None and cal.streams == ("gold", "bronze") and cal.n == 100
    docs = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    for key in CALIBRATION_KEYS:
        assert f"`calibration.{key}`" in docs, f"calibration.{key} is not in docs/operations.md"


def test_serve_config_takes_the_same_block(tmp_path: Path) -> None:
    from skyscan.service.config import config_from_mapping

    base = {"schema": "skyscan-serve/1", "database": "c.sqlite", "data_dir": "data"}
    cfg = config_from_mapping({**base, "calibration": {"streams": ["gold"], "n": 8}}, tmp_path, "serve.yaml")
    assert cfg.calibration is not None and cfg.scheduler_settings().calibration == cfg.calibration
    with pytest.raises(InputError) as err:
        config_from_mapping({**base, "calibration": {"streams": ["gold"], "n": 1}}, tmp_path, "serve.yaml")
    assert str(err.value).startswith("serve.yaml: calibration.n:") and "\n" not in str(err.value)
    docs = (REPO / "docs" / "service.md").read_text(encoding="utf-8")
    assert "| `calibration` |" in docs and "calibration.state" in docs


# --- the catalog --------------------------------------------------------------------------------------------------
def test_migration_adds_the_calibration_columns_to_an_existing_catalog(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = catalog.connect(path, migrations=catalog.MIGRATIONS[:2])
    old.execute("INSERT INTO alerts (run_id, event_id, first_seen) VALUES (1, 2, '2026-01-01T00:00:00Z')")
    old.execute("INSERT INTO revisions (alert_id, revision, sha256, archive_path, source_name, received, event_time)"
                " VALUES (1, 1, 'ab', 'a.json', 'a.json', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')")
    old.execute("INSERT INTO scans (revision_id, state, created, updated) VALUES (1, 'done', 'x', 'x')")
    old.close()
    conn = catalog.connect(path)
    try:
        assert catalog.schema_version(conn) == catalog.SCHEMA_VERSION >= 3
        row = conn.execute("SELECT calibration_state, calibration_attempts FROM scans").fetchone()
        assert (row[0], row[1]) == (None, 0)  # an old done scan is not calibrated retroactively
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("UPDATE scans SET calibration_state = 'bogus'")
    finally:
        conn.close()


# --- end to end with real scans and a real calibration ------------------------------------------------------------
@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("watchcal")
    scan_config = root / "tiny.yaml"
    scan_config.write_text(yaml.safe_dump(TINY_SCAN), encoding="utf-8")
    notified = root / "notified.txt"
    cfg_path = write_config(root, scan_command=None, scan_config=str(scan_config), jobs=2, calibration=CALIBRATION,
                            notify_command=[sys.executable, "-c", NOTIFY, str(notified)])
    cfg = load_watch_config(cfg_path)
    drop(cfg.inbox, "gold.json", track_event(900, 42, "gold"))
    drop(cfg.inbox, "bronze.json", track_event(900, 43, "bronze"))
    passes = passes_until(cfg_path, settled(2), timeout=240)
    return {"cfg_path": cfg_path, "cfg": cfg, "notified": notified, "passes": passes, "rows": rows(cfg_path)}


def test_a_gold_scan_is_calibrated_and_reissued(real_run: dict[str, Any]) -> None:
    cfg = real_run["cfg"]
    gold = next(r for r in real_run["rows"] if r["stream"] == "gold")
    assert gold["state"] == "done" and gold["calibration_state"] == "done", gold["calibration_error"]
    assert gold["calibration_attempts"] == 1
    outdir = Path(gold["outdir"])
    assert gold["calibration_path"] == str(outdir / "calibration")
    cal = json.loads((outdir / "calibration" / "calibration.json").read_text())
    assert cal["schema"] == "skyscan-calibration/1" and cal["n"] == 4
    assert json.loads(gold["calibration_levels"]) == pytest.approx(cal["levels"])
    box = cfg.outbox / "run900-evt42-r1"
    summary = json.loads((box / "summary.json").read_text())
    containment = summary["containment"]
    assert containment["method"].startswith("resimulation (calibration.json, N=4")
    assert containment["calibration"]["sha256"] and containment["calibration"]["levels"] == pytest.approx(
        cal["levels"])
    wilks = {"50": 1.39, "90": 4.61}
    for label in ("50", "90"):
        assert containment[label]["level_2dllh"] == pytest.approx(cal["levels"][label])
        assert containment[label]["level_2dllh"] != pytest.approx(wilks[label], abs=0.01)  # not the first issue's
    assert summary == json.loads((outdir / "summary.json").read_text())  # the outbox holds the re-merged products
    assert "containment levels are" not in (box / "circular.txt").read_text()  # no draft note: calibrated
    reissue = json.loads((box / REISSUE_FILE).read_text())
    assert reissue["schema"] == REISSUE_SCHEMA and reissue["reissue"] == "calibrated"
    assert reissue["scan_id"] == gold["id"] and reissue["calibration"]["sha256"] == containment["calibration"]["sha256"]
    assert reissue["previous"]["containment_method"] == "wilks"
    assert reissue["containment_method"] == containment["method"]
    # the catalog holds the calibrated summary, and `skyscan catalog` shows its method
    assert gold["containment_method"] == containment["method"]
    assert gold["area_90_deg2"] == pytest.approx(containment["90"]["area_deg2"])
    listing = invoke("catalog", "--watch-config", str(real_run["cfg_path"]), "--format", "json")
    assert listing.exit_code == 0
    shown = next(r for r in json.loads(listing.stdout)["rows"] if r["event_id"] == 42)
    assert shown["containment_method"] == containment["method"]
    # notified twice: the first issue, then the calibrated re-issue
    lines = real_run["notified"].read_text().splitlines()
    assert lines.count("run900-evt42-r1 first") == 1 and lines.count("run900-evt42-r1 calibrated") == 1
    assert gold["notify_state"] == "sent"


def test_a_stream_not_configured_is_not_calibrated(real_run: dict[str, Any]) -> None:
    cfg = real_run["cfg"]
    bronze = next(r for r in real_run["rows"] if r["stream"] == "bronze")
    assert bronze["state"] == "done" and bronze["calibration_state"] is None
    assert bronze["calibration_attempts"] == 0 and bronze["containment_method"] == "wilks"
    assert not (Path(bronze["outdir"]) / "calibration").exists()
    box = cfg.outbox / "run900-evt43-r1"
    assert json.loads((box / "summary.json").read_text())["containment"]["method"] == "wilks"
    assert not (box / REISSUE_FILE).exists()
    assert real_run["notified"].read_text().splitlines().count("run900-evt43-r1 first") == 1


def test_no_second_calibration_on_later_passes(real_run: dict[str, Any]) -> None:
    cfg_path = real_run["cfg_path"]
    gold = next(r for r in real_run["rows"] if r["stream"] == "gold")
    cal = Path(gold["outdir"]) / "calibration" / "calibration.json"
    before = cal.stat().st_mtime_ns
    for _ in range(2):
        assert invoke("watch", "--config", str(cfg_path), "--once").exit_code == 0
    after = next(r for r in rows(cfg_path) if r["id"] == gold["id"])
    assert after["calibration_state"] == "done" and after["calibration_attempts"] == 1
    assert cal.stat().st_mtime_ns == before
    log = (calibration_launch_dir(gold["outdir"]) / "scan.log").read_text()
    assert log.count(" calibrate: ") == 1 and log.count(" merge: ") == 1
    watch_log = load_watch_config(cfg_path).log_file.read_text()
    assert watch_log.count("calibration started") == 1 and watch_log.count(": calibrated re-issue (") == 1
    assert len(real_run["notified"].read_text().splitlines()) == 3  # nothing notified again


# --- failures never fail the scan nor stop the watcher ------------------------------------------------------------
def test_a_failing_calibration_is_retried_then_failed_and_the_scan_stays_done(
        tmp_path: Path, event_doc: dict[str, Any]) -> None:
    cfg_path = write_config(tmp_path, calibration={"streams": ["gold"], "n": 2, "max_attempts": 2})
    cfg = load_watch_config(cfg_path)
    doc = copy.deepcopy(event_doc)
    doc.pop("truth", None)
    drop(cfg.inbox, "a.json", {**doc, "run_id": 5, "event_id": 1, "stream": "gold"})
    passes_until(cfg_path, settled(1), timeout=90)
    row = rows(cfg_path)[0]
    assert row["state"] == "done" and row["last_error"] is None  # the scan is done, whatever its calibration
    assert row["calibration_state"] == "failed" and row["calibration_attempts"] == 2
    assert "the calibrate command exited with code 2" in row["calibration_error"]  # a fake scan has no results
    assert "\n" not in row["calibration_error"]
    box = cfg.outbox / "run5-evt1-r1"
    assert (box / "summary.json").is_file() and not (box / REISSUE_FILE).exists()  # the first issue stays
    listing = invoke("catalog", "--watch-config", str(cfg_path), "--format", "json")
    shown = json.loads(listing.stdout)["rows"][0]
    assert (shown["state"], shown["calibration_state"]) == ("done", "failed")
    assert shown["calibration_error"] == row["calibration_error"]
    table = invoke("catalog", "--watch-config", str(cfg_path)).stdout
    assert "calibration failed: the calibrate command exited with code 2" in table
    # the watcher goes on: a later alert is scanned, and the failed calibration is not tried again
    drop(cfg.inbox, "b.json", {**doc, "run_id": 5, "event_id": 2, "stream": "silver"})
    passes_until(cfg_path, settled(2), timeout=60)
    again = rows(cfg_path)
    assert [r["state"] for r in again] == ["done", "done"] and again[0]["calibration_attempts"] == 2
    assert again[1]["calibration_state"] is None


def test_a_killed_calibration_is_failed_with_a_reason(
        tmp_path: Path, event_doc: dict[str, Any], reap: list[int]) -> None:
    hang = [sys.executable, "-c", "import time; time.sleep(120)"]
    cfg_path = write_config(tmp_path, calibration={"streams": ["gold"], "n": 2, "max_attempts": 1, "command": hang})
    cfg = load_watch_config(cfg_path)
    doc = copy.deepcopy(event_doc)
    doc.pop("truth", None)
    drop(cfg.inbox, "a.json", {**doc, "run_id": 6, "event_id": 1, "stream": "gold"})
    passes_until(cfg_path, lambda rs: rs[0]["calibration_state"] == "calibrating" and rs[0]["calibration_pid"])
    pgid = int(rows(cfg_path)[0]["calibration_pid"])
    reap.append(pgid)
    for _ in range(2):  # passes while it runs adopt it: no second start, no attempt spent
        assert invoke("watch", "--config", str(cfg_path), "--once").exit_code == 0
    row = rows(cfg_path)[0]
    assert row["calibration_state"] == "calibrating" and row["calibration_attempts"] == 1
    os.killpg(pgid, signal.SIGKILL)
    passes_until(cfg_path, settled(1), timeout=30)
    row = rows(cfg_path)[0]
    assert row["state"] == "done" and row["calibration_state"] == "failed"
    assert "vanished" in row["calibration_error"] or "exited with code" in row["calibration_error"]


# --- the service's scan document ----------------------------------------------------------------------------------
def test_the_service_scan_document_shows_the_calibration(tmp_path: Path) -> None:
    from skyscan.ops.catalog import scans as cat_scans
    from skyscan.ops.catalog.summaries import parse_summary
    from skyscan.service import models, store

    sys.path.insert(0, str(Path(__file__).parent))
    from fake_scan import summary_for

    conn = catalog.connect(tmp_path / "c.sqlite")
    try:
        docs = []
        for event_id, stream in ((1, "gold"), (2, "bronze")):
            res = catalog.record_revision(conn, run_id=7, event_id=event_id, sha256=f"{event_id:064x}",
                                          archive_path="a.json", source_name="a.json", event_time=WHEN, stream=stream,
                                          now="2026-04-02T22:10:05Z")
            assert res.scan_id is not None
            cat_scans.queue_scan(conn, res.scan_id, str(tmp_path / f"s{event_id}"), "2026-04-02T22:10:06Z")
            cat_scans.claim_scan(conn, res.scan_id, "local", "2026-04-02T22:10:07Z")
            summary = parse_summary(summary_for({"run_id": 7, "event_id": event_id, "time": WHEN.isoformat()}))
            assert cat_scans.mark_done(conn, res.scan_id, summary, "summary.json", notify=False,
                                       now="2026-04-02T22:11:00Z", calibrate=stream == "gold")
            docs.append(res.scan_id)
        gold, bronze = (store.scan_document(conn, i) for i in docs)
        assert gold["calibration"] == {"state": "queued", "levels": None, "error": None}
        assert bronze["calibration"] is None
        models.ScanDocument.model_validate(gold)
        models.ScanDocument.model_validate(bronze)
        assert cat_scans.claim_calibration(conn, docs[0], "cal", "2026-04-02T22:11:01Z")
        assert cat_scans.set_calibration_step(conn, docs[0], "calibrating", "merging", "2026-04-02T22:12:00Z")
        assert cat_scans.finish_calibration(conn, docs[0], summary, "summary.json", {"50": 2.5, "90": 9.0},
                                            notify=False, now="2026-04-02T22:13:00Z")
        done = store.scan_document(conn, docs[0])
        assert done["calibration"] == {"state": "done", "levels": {"50": 2.5, "90": 9.0}, "error": None}
        assert done["state"] == "done"
        models.ScanDocument.model_validate(done)
        # idempotent: a second finish (or claim) of the same calibration changes nothing
        assert not cat_scans.finish_calibration(conn, docs[0], summary, "summary.json", {"50": 1.0, "90": 2.0},
                                                notify=False, now="2026-04-02T22:14:00Z")
        assert not cat_scans.claim_calibration(conn, docs[0], "cal", "2026-04-02T22:14:00Z")
    finally:
        conn.close()


# --- condor: the calibration graph is submitted and followed through its DAGMan job --------------------------------
def _done_condor_scan(tmp_path: Path, event_doc: dict[str, Any], event_id: int) -> tuple[sqlite3.Connection, int]:
    """A catalog with one done condor scan of a gold alert (its directory written by the fake scan)."""
    from skyscan.ops.catalog import scans as cat_scans
    from skyscan.ops.catalog.summaries import read_summary_row

    doc = copy.deepcopy(event_doc)
    doc.pop("truth", None)
    doc.update(run_id=8, event_id=event_id, stream="gold")
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(doc))
    outdir = tmp_path / "scans" / f"run8-evt{event_id}-r1-s1"
    subprocess.run([sys.executable, str(FAKE), "--sleep", "0", str(event_path), "-o", str(outdir)], check=True,
                   capture_output=True, timeout=60)
    conn = catalog.connect(tmp_path / "c.sqlite")
    res = catalog.record_revision(conn, run_id=8, event_id=event_id, sha256="ab" * 32, archive_path=str(event_path),
                                  source_name="e.json", event_time=WHEN, stream="gold", now="2026-04-02T22:10:05Z")
    assert res.scan_id is not None
    cat_scans.queue_scan(conn, res.scan_id, str(outdir), "2026-04-02T22:10:06Z")
    cat_scans.claim_scan(conn, res.scan_id, "condor", "2026-04-02T22:10:07Z")
    assert cat_scans.mark_done(conn, res.scan_id, read_summary_row(outdir / "summary.json"),
                               str(outdir / "summary.json"), notify=False, now="2026-04-02T22:11:00Z", calibrate=True)
    return conn, res.scan_id


@pytest.mark.parametrize("outcome", ["done", "left-the-queue"])
def test_condor_calibration_is_submitted_and_followed(tmp_path: Path, event_doc: dict[str, Any],
                                                      monkeypatch: pytest.MonkeyPatch, outcome: str) -> None:
    import skyscan.calibrate
    import skyscan.condor.schedd
    from skyscan.calibrate import CalibrationRun
    from skyscan.ops.catalog import scans as cat_scans
    from skyscan.ops.cycle import CycleReport
    from skyscan.ops.scheduler import Scheduler, SchedulerSettings
    from skyscan.ops.watchconfig import CalibrationSettings

    conn, scan_id = _done_condor_scan(tmp_path, event_doc, 1)
    submitted: list[dict[str, Any]] = []
    queue = {"present": True}

    def fake_calibrate_scan(scandir: Any, caldir: Any, n: int, systematics: str, seed: Any = None,
                            backend: str = "local", **kw: Any) -> CalibrationRun:
        submitted.append({"scandir": str(scandir), "caldir": str(caldir), "n": n, "backend": backend, **kw})
        return CalibrationRun(Path(caldir), None, 4711, True)

    monkeypatch.setattr(skyscan.calibrate, "calibrate_scan", fake_calibrate_scan)
    monkeypatch.setattr(skyscan.condor.schedd, "dagman_job_present", lambda cluster: queue["present"])
    fake_cal = Path(__file__).with_name("fake_calibrate.py")
    cal = CalibrationSettings(streams=("gold",), n=5, max_attempts=1,
                              merge_command=(sys.executable, str(fake_cal), "merge"))
    outbox = tmp_path / "outbox"
    settings = SchedulerSettings(scans=tmp_path / "scans", backend="condor", site="osg", outbox=outbox,
                                 calibration=cal)
    scheduler = Scheduler(settings, conn, logging.getLogger("test"))
    try:
        scheduler.schedule(CycleReport())
        row = cat_scans.get_scan(conn, scan_id)
        assert (row.calibration_state, row.calibration_cluster, row.calibration_attempts) == ("calibrating", 4711, 1)
        assert submitted == [{"scandir": row.outdir, "caldir": f"{row.outdir}/calibration", "n": 5,
                              "backend": "condor", "batch_size": None, "disc_deg": None, "site": "osg"}]
        scheduler.schedule(CycleReport())  # still in the queue, no calibration.json yet: nothing changes
        assert cat_scans.get_scan(conn, scan_id).calibration_state == "calibrating" and len(submitted) == 1
        if outcome == "left-the-queue":
            queue["present"] = False
            report = CycleReport()
            scheduler.schedule(report)
            row = cat_scans.get_scan(conn, scan_id)
            assert row.state == "done" and row.calibration_state == "failed" and report.calibrations_failed == 1
            assert "DAGMan cluster 4711" in (row.calibration_error or "")
            return
        # the graph's collect node writes calibration.json: the merge runs here, then the re-issue is published
        assert row.outdir is not None
        subprocess.run([sys.executable, str(fake_cal), "calibrate", row.outdir, "-o", f"{row.outdir}/calibration",
                        "--n", "5"], check=True, timeout=60)
        deadline = time.monotonic() + 30
        while cat_scans.get_scan(conn, scan_id).calibration_state != "done":
            assert time.monotonic() < deadline, cat_scans.get_scan(conn, scan_id)
            scheduler.schedule(CycleReport())
            time.sleep(0.1)
        reissue = json.loads((outbox / "run8-evt1-r1" / REISSUE_FILE).read_text())
        assert reissue["reissue"] == "calibrated" and reissue["calibration"]["levels"] == {"50": 2.0, "90": 6.0}
        assert len(submitted) == 1
    finally:
        conn.close()
