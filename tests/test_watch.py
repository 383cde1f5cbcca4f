"""The alert watcher end to end: inbox, archive, quarantine, catalog, detached scans, retries, outbox, operators.

Scans are run by tests/fake_scan.py (the `skyscan run` interface and files, in a fraction of a second);
one test runs the real `skyscan run` once the merge products exist. Real processes and real kills:
two watchers started together, a watcher SIGKILLed right after it started a scan.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from skyscan.cli.watch import standalone_group
from skyscan.ops import catalog as catalog
from skyscan.ops import launcher, scheduler, watchconfig
from skyscan.ops import watcher as watch
from skyscan.ops.catalog import scans as catalog_scans
from skyscan.ops.launcher import launch_dir_of, lock_held
from skyscan.ops.watchconfig import load_watch_config
from skyscan.ops.watcher import run_watch

FAKE = Path(__file__).with_name("fake_scan.py")
REPO = Path(__file__).resolve().parent.parent


# --- helpers ------------------------------------------------------------------------------------------------------
@pytest.fixture
def base_doc(event_doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(event_doc)
    doc.pop("truth", None)
    return doc


def event(base: dict[str, Any], run_id: int, event_id: int, **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    doc.update(run_id=run_id, event_id=event_id, **changes)
    return doc


def drop(inbox: Path, name: str, content: dict[str, Any] | str | bytes) -> Path:
    """Deliver like an upstream system: write under a temporary name, then rename."""
    data = content if isinstance(content, bytes) else (
        content if isinstance(content, str) else json.dumps(content)).encode()
    tmp = inbox / f".{name}.part"
    tmp.write_bytes(data)
    os.replace(tmp, inbox / name)
    return inbox / name


def fake_command(*flags: str) -> list[str]:
    return [sys.executable, str(FAKE), *flags]


def write_config(tmp_path: Path, **settings: Any) -> Path:
    doc: dict[str, Any] = {
        "inbox": "inbox",
        "state_dir": "state",
        "settle_seconds": 0,
        "retry_delay_seconds": 0,
        "max_running": 4,
        "max_attempts": 3,
        "stall_seconds": 600,
        "kill_grace_seconds": 2,
        "scan_command": fake_command("--sleep", "0.2"),
    }
    doc.update(settings)
    path = tmp_path / "watch.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    (tmp_path / "inbox").mkdir(exist_ok=True)
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(standalone_group(), list(args))


def one_pass(cfg_path: Path) -> watch.CycleReport:
    report = run_watch(load_watch_config(cfg_path), once=True)
    assert report is not None
    return report


def db(cfg_path: Path) -> sqlite3.Connection:
    conn: sqlite3.Connection = catalog.connect(load_watch_config(cfg_path).database, create=False)
    return conn


def scans(cfg_path: Path) -> list[sqlite3.Row]:
    conn = db(cfg_path)
    try:
        return list(conn.execute(
            "SELECT s.*, a.run_id, a.event_id, r.revision FROM scans s JOIN revisions r ON r.id = s.revision_id"
            " JOIN alerts a ON a.id = r.alert_id ORDER BY s.id"
        ))
    finally:
        conn.close()


def passes_until(cfg_path: Path, done: Callable[[], bool], timeout: float = 60.0) -> int:
    """Call `watch --once` (through the CLI) until ``done()``; the number of passes it took."""
    deadline = time.monotonic() + timeout
    n = 0
    while True:
        result = invoke("watch", "--config", str(cfg_path), "--once")
        assert result.exit_code == 0, result.output
        n += 1
        if done():
            return n
        assert time.monotonic() < deadline, f"not done after {n} passes: {[dict(r) for r in scans(cfg_path)]}"
        time.sleep(0.2)


def all_in(cfg_path: Path, *states: str, count: int | None = None) -> Callable[[], bool]:
    def check() -> bool:
        rows = scans(cfg_path)
        return bool(rows) and all(r["state"] in states for r in rows) and (count is None or len(rows) == count)

    return check


def catalog_json(cfg_path: Path, *extra: str) -> dict[str, Any]:
    result = invoke("catalog", "--watch-config", str(cfg_path), "--format", "json", *extra)
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


@pytest.fixture
def reap() -> Iterator[list[int]]:
    """Process groups a test started (detached scans): killed at the end whatever happens."""
    groups: list[int] = []
    yield groups
    for g in groups:
        try:
            os.killpg(g, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def running_groups(cfg_path: Path) -> list[int]:
    return [int(r["pid"]) for r in scans(cfg_path) if r["pid"]]


# --- configuration ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("state_dir: s\n", ("inbox", "missing")),
        ("inbox: in\nmax_runing: 3\n", ("max_runing", "unknown setting")),
        ("inbox: in\nbackend: slurm\n", ("backend", "slurm")),
        ("inbox: in\nmax_running: 0\n", ("max_running", ">= 1")),
        ("inbox: in\nsettle_seconds: soon\n", ("settle_seconds",)),
        ("inbox: in\nscan_command: []\n", ("scan_command", "empty")),
        ("inbox: in\nscan_config: nowhere.yaml\n", ("scan_config", "no such file")),
        ("inbox: [in\n", ("invalid YAML",)),
        ("- inbox\n", ("mapping",)),
    ],
)
def test_bad_config_is_one_line_exit_2(tmp_path: Path, text: str, words: tuple[str, ...]) -> None:
    path = tmp_path / "watch.yaml"
    path.write_text(text, encoding="utf-8")
    result = invoke("watch", "--config", str(path), "--once")
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("skyscan: error: "), lines
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "watch.log").exists() and not (tmp_path / "catalog.sqlite").exists()


def test_missing_config_file_is_exit_2(tmp_path: Path) -> None:
    result = invoke("watch", "--config", str(tmp_path / "nope.yaml"), "--once")
    assert result.exit_code == 2 and "no such watch configuration" in result.stderr


def test_config_paths_default_to_the_state_dir(tmp_path: Path) -> None:
    cfg = load_watch_config(write_config(tmp_path, outbox="/srv/out"))
    assert cfg.inbox == tmp_path / "inbox"
    assert cfg.database == tmp_path / "state" / "catalog.sqlite"
    assert cfg.archive == tmp_path / "state" / "archive"
    assert cfg.outbox == Path("/srv/out")
    (tmp_path / "x").mkdir()
    default = load_watch_config(write_config(tmp_path / "x", scan_command=None))
    assert default.scan_command == (sys.executable, "-m", "skyscan.cli", "run")


# --- end to end with the fake scan --------------------------------------------------------------------------------
def test_three_events_end_to_end(tmp_path: Path, base_doc: dict[str, Any], reap: list[int]) -> None:
    cfg_path = write_config(tmp_path)
    cfg = load_watch_config(cfg_path)
    docs = [event(base_doc, 100, 1), event(base_doc, 100, 2), event(base_doc, 101, 5, stream="bronze")]
    for i, doc in enumerate(docs):
        drop(cfg.inbox, f"alert-{i}.json", doc)

    passes_until(cfg_path, all_in(cfg_path, "done", count=3))
    reap.extend(running_groups(cfg_path))

    assert list(cfg.inbox.iterdir()) == []
    rows = catalog_json(cfg_path)["rows"]
    assert len(rows) == 3 and {r["state"] for r in rows} == {"done"}
    assert {(r["run_id"], r["event_id"]) for r in rows} == {(100, 1), (100, 2), (101, 5)}
    for row in rows:
        summary = json.loads((Path(row["outdir"]) / "summary.json").read_text())
        assert (summary["run_id"], summary["event_id"]) == (row["run_id"], row["event_id"])
        assert row["ra_deg"] == summary["best_fit"]["ra_deg"]
        assert row["dec_deg"] == summary["best_fit"]["dec_deg"]
        for level in ("50", "90"):
            region = summary["containment"][level]
            assert row[f"area_{level}_deg2"] == region["area_deg2"]
            for key in ("ra_plus", "ra_minus", "dec_plus", "dec_minus"):
                assert row[f"{key}_{level}_deg"] == region[f"{key}_deg"]
        assert row["attempts"] == 1 and row["wall_seconds"] is not None and row["wall_seconds"] >= 0
        box = cfg.outbox / row["alert"]
        assert (box / "circular.txt").read_text() == (Path(row["outdir"]) / "circular.txt").read_text()
        assert (box / "notice.json").is_file() and sorted(p.name for p in (box / "plots").iterdir()) == [
            "skymap.png", "zoom.png"]
        assert row["sha256"] and (cfg.archive / row["sha256"][:2] / f"{row['sha256']}.json").is_file()
    # the archive holds exactly what was delivered
    delivered = sorted(json.dumps(d).encode() for d in docs)
    assert sorted(p.read_bytes() for p in cfg.archive.rglob("*.json")) == delivered
    # the database keeps the summary itself
    conn = db(cfg_path)
    stored = [json.loads(r["doc"]) for r in conn.execute("SELECT doc FROM summaries")]
    conn.close()
    assert sorted(s["event_id"] for s in stored) == [1, 2, 5]
    log = cfg.log_file.read_text()
    assert log.count("new alert") == 3 and log.count("done: RA") == 3
    # the wall-clock of the state machine moved forward only
    table = invoke("catalog", "--watch-config", str(cfg_path))
    assert table.exit_code == 0 and table.stdout.count(" done ") == 3


# A fast scan configuration for the real executor (one coarse stage, short fits).
FAST_SCAN_CONFIG = {
    "scan": {"rule": "fixed", "stages": [{"nside": 1, "pixels_per_job": 12}]},
    "reco": {"max_iterations": 30},
}


def test_three_events_end_to_end_with_the_real_skyscan_run(
    tmp_path: Path, base_doc: dict[str, Any], reap: list[int]
) -> None:
    scan_config = tmp_path / "fast.yaml"
    scan_config.write_text(yaml.safe_dump(FAST_SCAN_CONFIG), encoding="utf-8")
    cfg_path = write_config(tmp_path, scan_command=None, scan_config=str(scan_config), jobs=1, max_running=3,
                            max_attempts=1)
    cfg = load_watch_config(cfg_path)
    for i in range(3):
        drop(cfg.inbox, f"alert-{i}.json", event(base_doc, 200, 10 + i))
    passes_until(cfg_path, all_in(cfg_path, "done", "failed", count=3), timeout=900)
    reap.extend(running_groups(cfg_path))
    rows = catalog_json(cfg_path)["rows"]
    assert [r["state"] for r in rows] == ["done"] * 3, [r["last_error"] for r in rows]
    for row in rows:
        summary = json.loads((Path(row["outdir"]) / "summary.json").read_text())
        assert row["ra_deg"] == summary["best_fit"]["ra_deg"] and row["dec_deg"] == summary["best_fit"]["dec_deg"]
        assert (cfg.outbox / row["alert"] / "circular.txt").is_file()


# --- the inbox ----------------------------------------------------------------------------------------------------
def test_malformed_empty_duplicate_and_revision(tmp_path: Path, base_doc: dict[str, Any], reap: list[int]) -> None:
    cfg_path = write_config(tmp_path, scan_command=fake_command("--hang"), stall_seconds=3600)
    cfg = load_watch_config(cfg_path)
    first = event(base_doc, 7, 70)
    drop(cfg.inbox, "a-first.json", first)
    drop(cfg.inbox, "b-bad.json", '{"schema": "skyscan-event/1", "run_id": }')
    drop(cfg.inbox, "c-empty.json", b"")
    drop(cfg.inbox, "d-unknown-dom.json", event(base_doc, 8, 80, geometry="ic86") | {
        "pulses": {**base_doc["pulses"], "string": [99] * len(base_doc["pulses"]["string"])}})
    (cfg.inbox / "e-arriving.json.part").write_text("{")
    (cfg.inbox / ".hidden.json").write_text("{")
    (cfg.inbox / "f-arriving.tmp").write_text("{")

    report = one_pass(cfg_path)
    reap.extend(running_groups(cfg_path))
    assert (report.new, report.quarantined, report.duplicates, report.revisions) == (1, 3, 0, 0)
    assert sorted(p.name for p in cfg.inbox.iterdir()) == [".hidden.json", "e-arriving.json.part", "f-arriving.tmp"]
    reasons = {p.name.split("-", 1)[1]: p.read_text() for p in cfg.quarantine.glob("*.reason")}
    assert set(reasons) == {"b-bad.json.reason", "c-empty.json.reason", "d-unknown-dom.json.reason"}
    assert "invalid JSON" in reasons["b-bad.json.reason"]
    assert "empty" in reasons["c-empty.json.reason"]
    assert "string 99" in reasons["d-unknown-dom.json.reason"]
    quarantined = sorted(p.name.split("-", 1)[1] for p in cfg.quarantine.iterdir() if not p.name.endswith(".reason"))
    assert quarantined == ["b-bad.json", "c-empty.json", "d-unknown-dom.json"]
    assert (cfg.quarantine / next(p.name for p in cfg.quarantine.iterdir() if p.name.endswith("c-empty.json"))
            ).read_bytes() == b""
    assert len(list(cfg.archive.rglob("*.json"))) == 4  # archived before anything else, malformed ones too

    # the same content again (another name, a later pass): recorded once
    drop(cfg.inbox, "g-again.json", first)
    # new content for the same run/event: a revision with its own scan
    drop(cfg.inbox, "h-update.json", event(base_doc, 7, 70, energy_gev=123456.0))
    report = one_pass(cfg_path)
    reap.extend(running_groups(cfg_path))
    assert (report.duplicates, report.revisions, report.new) == (1, 1, 0)
    assert not (cfg.inbox / "g-again.json").exists() and not (cfg.inbox / "h-update.json").exists()

    conn = db(cfg_path)
    outcomes = [(r["name"], r["outcome"]) for r in conn.execute("SELECT name, outcome FROM files ORDER BY id")]
    revisions = [dict(r) for r in conn.execute("SELECT revision, is_latest, source_name FROM revisions ORDER BY id")]
    scan_rows = conn.execute("SELECT COUNT(*) FROM scans").fetchone()[0]
    conn.close()
    assert outcomes == [("a-first.json", "new"), ("b-bad.json", "quarantined"), ("c-empty.json", "quarantined"),
                        ("d-unknown-dom.json", "quarantined"), ("g-again.json", "duplicate"),
                        ("h-update.json", "revision")]
    assert revisions == [{"revision": 1, "is_latest": 0, "source_name": "a-first.json"},
                         {"revision": 2, "is_latest": 1, "source_name": "h-update.json"}]
    assert scan_rows == 2
    latest = catalog_json(cfg_path)["rows"]
    assert [(r["revision"], r["revisions"], r["latest"]) for r in latest] == [(2, 2, True)]
    every = catalog_json(cfg_path, "--all-revisions")["rows"]
    assert [(r["revision"], r["latest"], r["state"]) for r in every] == [(1, False, "running"), (2, True, "running")]
    assert len({r["outdir"] for r in every}) == 2


def test_settle_time(tmp_path: Path, base_doc: dict[str, Any], reap: list[int]) -> None:
    cfg_path = write_config(tmp_path, settle_seconds=60, scan_command=fake_command("--hang"))
    cfg = load_watch_config(cfg_path)
    path = cfg.inbox / "written-in-place.json"
    path.write_text(json.dumps(event(base_doc, 1, 1)))
    assert one_pass(cfg_path).taken == 0 and path.exists()
    old = time.time() - 120
    os.utime(path, (old, old))
    assert one_pass(cfg_path).new == 1 and not path.exists()
    reap.extend(running_groups(cfg_path))


def test_cap_on_running_scans(tmp_path: Path, base_doc: dict[str, Any], reap: list[int]) -> None:
    cfg_path = write_config(tmp_path, max_running=1, scan_command=fake_command("--sleep", "0.3"))
    cfg = load_watch_config(cfg_path)
    for i in range(3):
        drop(cfg.inbox, f"e{i}.json", event(base_doc, 3, i))
    one_pass(cfg_path)
    reap.extend(running_groups(cfg_path))
    assert sorted(r["state"] for r in scans(cfg_path)) == ["queued", "queued", "running"]
    seen_running = []

    def done_and_capped() -> bool:
        rows = scans(cfg_path)
        seen_running.append(sum(r["state"] == "running" for r in rows))
        return all(r["state"] == "done" for r in rows)

    passes_until(cfg_path, done_and_capped)
    assert max(seen_running) <= 1


# --- single instance, crashes -------------------------------------------------------------------------------------
def test_second_watcher_exits_0_while_the_lock_is_held(tmp_path: Path, base_doc: dict[str, Any]) -> None:
    cfg_path = write_config(tmp_path)
    cfg = load_watch_config(cfg_path)
    drop(cfg.inbox, "e.json", event(base_doc, 1, 2))
    cfg.lock_file.parent.mkdir(parents=True, exist_ok=True)
    with cfg.lock_file.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        result = invoke("watch", "--config", str(cfg_path), "--once")
    assert result.exit_code == 0
    assert "another watcher holds" in result.stderr and len(result.stderr.splitlines()) == 1
    assert (cfg.inbox / "e.json").exists()
    assert cfg.log_file.read_text().count("another watcher holds") == 1


def _watch_process(cfg_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "skyscan.cli_watch", "watch", "--config", str(cfg_path), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def test_two_watchers_started_together_make_one_scan_per_alert(
    tmp_path: Path, base_doc: dict[str, Any], reap: list[int]
) -> None:
    cfg_path = write_config(tmp_path)
    cfg = load_watch_config(cfg_path)
    for i in range(4):
        drop(cfg.inbox, f"e{i}.json", event(base_doc, 9, i))
    procs = [_watch_process(cfg_path, "--once") for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    passes_until(cfg_path, all_in(cfg_path, "done"))
    reap.extend(running_groups(cfg_path))
    rows = scans(cfg_path)
    assert sorted((r["run_id"], r["event_id"]) for r in rows) == [(9, i) for i in range(4)]
    assert [r["attempts"] for r in rows] == [1, 1, 1, 1]
    for row in rows:
        assert len((Path(row["outdir"]) / "fake-attempts.txt").read_text().splitlines()) == 1
    log = cfg.log_file.read_text()
    assert log.count("new alert") == 4 and log.count("started scan") == 4


def test_loop_mode_stops_cleanly_on_sigterm(tmp_path: Path, base_doc: dict[str, Any], reap: list[int]) -> None:
    cfg_path = write_config(tmp_path, poll_seconds=0.2)
    cfg = load_watch_config(cfg_path)
    drop(cfg.inbox, "e.json", event(base_doc, 3, 33))
    proc = _watch_process(cfg_path)
    try:
        deadline = time.monotonic() + 60
        while not (cfg.log_file.exists() and "done: RA" in cfg.log_file.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    reap.extend(running_groups(cfg_path))
    assert proc.returncode == 0
    assert scans(cfg_path)[0]["state"] == "done"


def test_watcher_sigkilled_right_after_starting_a_scan(
    tmp_path: Path, base_doc: dict[str, Any], reap: list[int]
) -> None:
    kill_file = tmp_path / "kill-this-pid"
    cfg_path = write_config(tmp_path, poll_seconds=300,
                            scan_command=fake_command("--sleep", "0.5", "--kill-pid-file", str(kill_file)))
    cfg = load_watch_config(cfg_path)
    drop(cfg.inbox, "e.json", event(base_doc, 4, 44))
    proc = _watch_process(cfg_path)  # loop mode: it would wait 300 s after its first pass
    kill_file.write_text(str(proc.pid))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err.decode()  # the scan SIGKILLed the watcher as it started

    passes_until(cfg_path, all_in(cfg_path, "done"))
    reap.extend(running_groups(cfg_path))
    conn = db(cfg_path)
    counts = [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("alerts", "revisions", "scans")]
    conn.close()
    assert counts == [1, 1, 1]
    row = scans(cfg_path)[0]
    assert row["attempts"] == 1  # the detached scan outlived the watcher and was not started twice
    assert len((Path(row["outdir"]) / "fake-attempts.txt").read_text().splitlines()) == 1
    assert list(cfg.inbox.iterdir()) == []
    assert (cfg.outbox / "run4-evt44-r1" / "circular.txt").is_file()


def test_crash_between_starting_a_scan_and_recording_it(
    tmp_path: Path, base_doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch, reap: list[int]
) -> None:
    cfg_path = write_config(tmp_path, scan_command=fake_command("--sleep", "0.5"))
    cfg = load_watch_config(cfg_path)
    drop(cfg.inbox, "e.json", event(base_doc, 5, 55))

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("the watcher dies here")

    monkeypatch.setattr(catalog_scans, "set_launched", crash)
    with pytest.raises(KeyboardInterrupt):
        run_watch(cfg, once=True)
    monkeypatch.undo()
    row = scans(cfg_path)[0]
    assert row["state"] == "running" and row["pid"] is None
    passes_until(cfg_path, all_in(cfg_path, "done"))
    row = scans(cfg_path)[0]
    reap.append(int(row["pid"]))
    assert row["attempts"] == 1 and "recovered process group" in cfg.log_file.read_text()


def test_crash_between_claiming_a_scan_and_starting_it(
    tmp_path: Path, base_doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch, reap: list[int]
) -> None:
    cfg_path = write_config(tmp_path)
    cfg = load_watch_config(cfg_path)
    drop(cfg.inbox, "e.json", event(base_doc, 6, 66))

    def crash(*args: Any, **kwargs: Any) -> int:
        raise KeyboardInterrupt("the watcher dies here")

    monkeypatch.setattr(scheduler, "launch_detached", crash)
    with pytest.raises(KeyboardInterrupt):
        run_watch(cfg, once=True)
    monkeypatch.undo()
    row = scans(cfg_path)[0]
    assert row["state"] == "running" and row["attempts"] == 1 and row["pid"] is None
    # the next pass gives the claim back and starts the scan at once: the lost start is not an attempt and
    # does not wait for the retry delay (a long one here)
    conn = db(cfg_path)
    conn.execute("UPDATE scans SET not_before = '2999-01-01T00:00:00Z'")
    conn.close()
    report = one_pass(cfg_path)
    assert report.started == 1 and report.retried == 0
    passes_until(cfg_path, all_in(cfg_path, "done"))
    reap.extend(running_groups(cfg_path))
    rows = scans(cfg_path)
    assert len(rows) == 1 and rows[0]["attempts"] == 1
    log = cfg.log_file.read_text()
    assert "claimed but never started" in log and "vanished" not in log


# --- failures, retries, stalls ------------------------------------------------------------------------------------
def test_failing_scan_is_retried_then_marked_failed(
    tmp_path: Path, base_doc: dict[str, Any], reap: list[int]
) -> None:
    cfg_path = write_config(tmp_path, max_attempts=3, scan_command=fake_command("--sleep", "0", "--fail-times", "99"))
    cfg = load_watch_config(cfg_path)
    drop(cfg.inbox, "e.json", event(base_doc, 11, 1))
    passes_until(cfg_path, all_in(cfg_path, "failed"))
    reap.extend(running_groups(cfg_path))
    row = scans(cfg_path)[0]
    assert row["attempts"] == 3
    assert "exited with code 1" in row["last_error"] and "injected failure (attempt 3)" in row["last_error"]
    # every retry resumed in the same directory
    attempts = (Path(row["outdir"]) / "fake-attempts.txt").read_text().splitlines()
    assert [line.rsplit("=", 1)[1] for line in attempts] == ["1", "2", "3"]
    table = invoke("catalog", "--watch-config", str(cfg_path))
    assert table.exit_code == 0
    line = next(ln for ln in table.stdout.splitlines() if "11:1" in ln)
    assert " failed " in line and "injected failure (attempt 3)" in line
    assert catalog_json(cfg_path, "--state", "failed")["rows"][0]["last_error"] == row["last_error"]
    log = cfg.log_file.read_text()
    assert log.count("attempt failed, will resume") == 2 and "failed after 3 attempts" in log
    assert not (cfg.outbox / "run11-evt1-r1").exists()


def test_scan_failing_once_is_resumed_and_done(tmp_path: Path, base_doc: dict[str, Any], reap: list[int]) -> None:
    cfg_path = write_config(tmp_path, scan_command=fake_command("--sleep", "0", "--fail-times", "1"))
    cfg = load_watch_config(cfg_path)
    drop(cfg.inbox, "e.json", event(base_doc, 12, 1))
    passes_until(cfg_path, all_in(cfg_path, "done"))
    reap.extend(running_groups(cfg_path))
    row = scans(cfg_path)[0]
    assert row["attempts"] == 2 and row["last_error"] is None
    assert len((Path(row["outdir"]) / "fake-attempts.txt").read_text().splitlines()) == 2


def test_retry_waits_for_the_retry_delay(tmp_path: Path, base_doc: dict[str, Any], reap: list[int]) -> None:
    cfg_path = write_config(tmp_path, retry_delay_seconds=3600, scan_command=fake_command("--fail-times", "9"))
    cfg = load_watch_config(cfg_path)
    drop(cfg.inbox, "e.json", event(base_doc, 13, 1))
    passes_until(cfg_path, lambda: scans(cfg_path)[0]["state"] == "queued" and scans(cfg_path)[0]["attempts"] == 1)
    reap.extend(running_groups(cfg_path))
    for _ in range(2):
        one_pass(cfg_path)
    row = scans(cfg_path)[0]
    assert (row["state"], row["attempts"]) == ("queued", 1) and row["not_before"] > catalog.utcnow()


def test_stalled_scan_is_killed_and_failed(tmp_path: Path, base_doc: dict[str, Any], reap: list[int]) -> None:
    cfg_path = write_config(tmp_path, stall_seconds=1, max_attempts=1, kill_grace_seconds=1,
                            scan_command=fake_command("--hang"))
    cfg = load_watch_config(cfg_path)
    drop(cfg.inbox, "e.json", event(base_doc, 14, 1))
    one_pass(cfg_path)
    row = scans(cfg_path)[0]
    reap.append(int(row["pid"]))
    lock = launch_dir_of(row["outdir"]) / launcher.LOCK_NAME
    time.sleep(0.5)
    one_pass(cfg_path)  # first look at the scan: its progress fingerprint
    assert scans(cfg_path)[0]["state"] == "running" and lock_held(lock)
    time.sleep(2.2)
    one_pass(cfg_path)
    row = scans(cfg_path)[0]
    assert row["state"] == "failed" and "no progress for" in row["last_error"]
    assert "scan process killed" in row["last_error"]
    assert not lock_held(lock)


def test_vanished_scan_process_is_a_failed_attempt(
    tmp_path: Path, base_doc: dict[str, Any], reap: list[int]
) -> None:
    cfg_path = write_config(tmp_path, max_attempts=1, scan_command=fake_command("--hang"))
    cfg = load_watch_config(cfg_path)
    drop(cfg.inbox, "e.json", event(base_doc, 15, 1))
    one_pass(cfg_path)
    row = scans(cfg_path)[0]
    lock = launch_dir_of(row["outdir"]) / launcher.LOCK_NAME
    deadline = time.monotonic() + 10
    while not (Path(row["outdir"]) / "fake-attempts.txt").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(int(row["pid"]), signal.SIGKILL)
    while lock_held(lock):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    one_pass(cfg_path)
    row = scans(cfg_path)[0]
    assert row["state"] == "failed" and "vanished" in row["last_error"]


def test_scan_command_that_cannot_start(tmp_path: Path, base_doc: dict[str, Any]) -> None:
    cfg_path = write_config(tmp_path, max_attempts=2, scan_command=[str(tmp_path / "no-such-program")])
    cfg = load_watch_config(cfg_path)
    drop(cfg.inbox, "e.json", event(base_doc, 16, 1))
    passes_until(cfg_path, all_in(cfg_path, "failed"))
    row = scans(cfg_path)[0]
    assert row["attempts"] == 2 and "exited with code 127" in row["last_error"]


def test_done_scan_without_a_usable_summary_fails(tmp_path: Path, base_doc: dict[str, Any]) -> None:
    script = tmp_path / "no_summary.py"
    script.write_text(
        f"import runpy, sys, pathlib\nsys.argv = [{str(FAKE)!r}] + sys.argv[1:]\n"
        "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "out = pathlib.Path(sys.argv[sys.argv.index('-o') + 1])\n"
        "(out / 'summary.json').write_text('{\"schema\": \"skyscan-summary/0\"}')\n"
    )
    cfg_path = write_config(tmp_path, max_attempts=1, scan_command=[sys.executable, str(script), "--sleep", "0"])
    cfg = load_watch_config(cfg_path)
    drop(cfg.inbox, "e.json", event(base_doc, 17, 1))
    passes_until(cfg_path, all_in(cfg_path, "failed"))
    assert "summary is unusable" in scans(cfg_path)[0]["last_error"]


# --- notification -------------------------------------------------------------------------------------------------
def test_notification_failure_is_logged_and_retried(
    tmp_path: Path, base_doc: dict[str, Any], reap: list[int]
) -> None:
    record = tmp_path / "notified.txt"
    marker = tmp_path / "failed-once"
    script = tmp_path / "notify.py"
    script.write_text(
        "import os, pathlib, sys\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists():\n"
        "    marker.write_text('x')\n"
        "    sys.exit('mail server down')\n"
        f"with open({str(record)!r}, 'a') as fh:\n"
        "    fh.write(os.environ['SKYSCAN_WATCH_ALERT'] + ' ' + sys.argv[1] + '\\n')\n"
    )
    cfg_path = write_config(tmp_path, notify_command=[sys.executable, str(script)])
    cfg = load_watch_config(cfg_path)
    drop(cfg.inbox, "e.json", event(base_doc, 18, 1))
    passes_until(cfg_path, all_in(cfg_path, "done"))
    reap.extend(running_groups(cfg_path))
    row = scans(cfg_path)[0]
    assert row["notify_state"] == "pending" and "mail server down" in row["notify_error"]
    assert "will retry" in cfg.log_file.read_text()
    one_pass(cfg_path)
    row = scans(cfg_path)[0]
    assert row["notify_state"] == "sent" and row["notify_attempts"] == 2 and row["state"] == "done"
    summary = cfg.outbox / "run18-evt1-r1" / "summary.json"
    assert record.read_text() == f"run18-evt1-r1 {summary}\n"
    assert json.loads(summary.read_text())["event_id"] == 1
    one_pass(cfg_path)
    assert record.read_text().count("\n") == 1  # sent once


# --- operators ----------------------------------------------------------------------------------------------------
def test_cancel_a_running_local_scan(tmp_path: Path, base_doc: dict[str, Any], reap: list[int]) -> None:
    cfg_path = write_config(tmp_path, scan_command=fake_command("--hang"))
    cfg = load_watch_config(cfg_path)
    drop(cfg.inbox, "e.json", event(base_doc, 21, 2))
    one_pass(cfg_path)
    row = scans(cfg_path)[0]
    reap.append(int(row["pid"]))
    lock = launch_dir_of(row["outdir"]) / launcher.LOCK_NAME
    assert lock_held(lock)
    result = invoke("cancel", "21:2", "--watch-config", str(cfg_path), "--grace", "2")
    assert result.exit_code == 0, result.output
    assert "cancelled (was running)" in result.stdout
    assert not lock_held(lock)
    one_pass(cfg_path)
    row = scans(cfg_path)[0]
    assert row["state"] == "cancelled" and row["attempts"] == 1 and "cancelled by operator" in row["last_error"]
    assert catalog_json(cfg_path)["rows"][0]["state"] == "cancelled"
    again = invoke("cancel", "21:2", "--watch-config", str(cfg_path))
    assert again.exit_code == 1 and "no active scan" in again.stderr


def test_rescan_queues_a_new_scan_of_the_latest_revision(
    tmp_path: Path, base_doc: dict[str, Any], reap: list[int]
) -> None:
    cfg_path = write_config(tmp_path)
    cfg = load_watch_config(cfg_path)
    drop(cfg.inbox, "e.json", event(base_doc, 22, 3))
    passes_until(cfg_path, all_in(cfg_path, "done"))
    finer = tmp_path / "finer.yaml"
    finer.write_text("scan: {}\n")
    alert_id = catalog_json(cfg_path)["rows"][0]["alert_id"]
    result = invoke("rescan", str(alert_id), "--config", str(finer), "--watch-config", str(cfg_path))
    assert result.exit_code == 0, result.output
    assert "queued scan 2 of run22-evt3-r1" in result.stdout
    busy = invoke("rescan", "22:3", "--watch-config", str(cfg_path))
    assert busy.exit_code == 1 and "already has an active scan" in busy.stderr
    passes_until(cfg_path, all_in(cfg_path, "done", count=2))
    reap.extend(running_groups(cfg_path))
    first, second = scans(cfg_path)
    assert first["outdir"] != second["outdir"]
    assert f"config={finer}" in (Path(second["outdir"]) / "fake-attempts.txt").read_text()
    rows = catalog_json(cfg_path)["rows"]
    assert [(r["scan_id"], r["state"]) for r in rows] == [(second["id"], "done")]


def test_operator_commands_reject_unknown_alerts(tmp_path: Path, base_doc: dict[str, Any]) -> None:
    cfg_path = write_config(tmp_path)
    cfg = load_watch_config(cfg_path)
    drop(cfg.inbox, "e.json", event(base_doc, 23, 1))
    one_pass(cfg_path)
    for args in (("cancel", "99:99"), ("rescan", "12345"), ("cancel", "yesterday's")):
        result = invoke(*args, "--watch-config", str(cfg_path))
        assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1, result.output
    result = invoke("catalog", "--db", str(tmp_path / "missing.sqlite"))
    assert result.exit_code == 2 and "no catalog database" in result.stderr
    assert not (tmp_path / "missing.sqlite").exists()


def _running_condor_scan(cfg_path: Path, base_doc: dict[str, Any]) -> None:
    """A catalog with one condor scan marked running, as a submit would leave it (no schedd here)."""
    cfg = load_watch_config(cfg_path)
    conn = catalog.connect(cfg.database)
    now = catalog.utcnow()
    res = catalog.record_revision(conn, run_id=31, event_id=4, sha256="ab" * 32, archive_path="/nowhere.json",
                                  source_name="e.json", event_time=catalog.parse_stamp("2026-03-14T00:00:00Z"),
                                  stream=None, now=now)
    assert res.scan_id is not None
    catalog.queue_scan(conn, res.scan_id, str(cfg.scans / "x"), now)
    assert catalog.claim_scan(conn, res.scan_id, "condor", now)
    catalog.set_launched(conn, res.scan_id, cluster_id=4242, now=now)
    conn.close()


def test_cancel_condor_scan_needs_a_schedd_unless_forced(tmp_path: Path, base_doc: dict[str, Any]) -> None:
    cfg_path = write_config(tmp_path)
    _running_condor_scan(cfg_path, base_doc)
    result = invoke("cancel", "31:4", "--watch-config", str(cfg_path))
    assert result.exit_code == 1 and "cannot remove the DAGMan job (ClusterId == 4242)" in result.stderr
    assert scans(cfg_path)[0]["state"] == "running"
    result = invoke("cancel", "31:4", "--watch-config", str(cfg_path), "--force")
    assert result.exit_code == 0, result.output
    row = scans(cfg_path)[0]
    assert row["state"] == "cancelled" and "forced" in row["last_error"]


def test_condor_backend_submits_and_records_the_cluster(tmp_path: Path, base_doc: dict[str, Any]) -> None:
    script = tmp_path / "submit.py"
    calls = tmp_path / "calls.txt"
    script.write_text(
        "import sys\n"
        f"with open({str(calls)!r}, 'a') as fh:\n"
        "    fh.write(' '.join(sys.argv[1:]) + '\\n')\n"
        f"if len(open({str(calls)!r}).read().splitlines()) == 1:\n"
        "    sys.exit('skyscan: error: no HTCondor schedd reachable (Unable to locate local daemon)')\n"
        "print('submitted skyscan-32-5 as DAGMan job 777; follow it with: skyscan status x')\n"
    )
    cfg_path = write_config(tmp_path, backend="condor", site="osg", submit_command=[sys.executable, str(script)])
    cfg = load_watch_config(cfg_path)
    drop(cfg.inbox, "e.json", event(base_doc, 32, 5))
    one_pass(cfg_path)
    row = scans(cfg_path)[0]
    assert (row["state"], row["attempts"], row["backend"]) == ("queued", 1, "condor")
    assert "no HTCondor schedd reachable" in row["last_error"]
    one_pass(cfg_path)
    row = scans(cfg_path)[0]
    assert (row["state"], row["attempts"], row["cluster_id"]) == ("running", 2, 777)
    args = calls.read_text().splitlines()[-1].split()
    assert args[1:] == ["-o", row["outdir"], "--site", "osg"] and args[0].endswith(".json")
    one_pass(cfg_path)  # no schedd to ask: the scan is left running, not declared vanished
    assert scans(cfg_path)[0]["state"] == "running"


# --- shipped files ------------------------------------------------------------------------------------------------
def test_example_config_is_valid_and_documents_every_setting() -> None:
    from skyscan.resources import data_dir  # the package's data files, installed or in a source tree

    example = data_dir("config").joinpath("watch.example.yaml")
    text = example.read_text(encoding="utf-8")
    cfg = watchconfig.config_from_mapping(yaml.safe_load(text), Path("/srv/skyscan"), "watch.example.yaml")
    assert cfg.database == Path("/srv/skyscan/catalog.sqlite") and cfg.backend == "local"
    for key in watchconfig.KNOWN_KEYS:
        assert f"{key}:" in text, f"{key} is not documented in watch.example.yaml"


def test_cron_wrapper_sets_path_and_appends_to_its_log(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    fake = venv / "bin" / "skyscan"
    fake.write_text('#!/bin/sh\necho "called: $*"\necho "on stderr" >&2\nexit "${FAKE_RC:-0}"\n')
    fake.chmod(0o755)
    script = REPO / "scripts" / "skyscan-watch-cron.sh"
    log = tmp_path / "cron.log"
    env = {"HOME": str(tmp_path), "SKYSCAN_VENV": str(venv)}
    done = subprocess.run(["/bin/sh", str(script), "w.yaml", str(log)], env=env, capture_output=True, timeout=30)
    assert done.returncode == 0 and done.stdout == b"" and done.stderr == b""
    assert log.read_text() == "called: watch --config w.yaml --once\non stderr\n"
    failed = subprocess.run(["/bin/sh", str(script), "w.yaml", str(log)], env={**env, "FAKE_RC": "2"},
                            capture_output=True, timeout=30)
    assert failed.returncode == 2 and log.read_text().count("called:") == 2
    assert "skyscan watch exited with code 2" in log.read_text()
    missing = subprocess.run(["/bin/sh", str(script), "w.yaml"], env={"HOME": str(tmp_path)}, capture_output=True,
                             timeout=30)
    assert missing.returncode == 127 and "set SKYSCAN_VENV" in (tmp_path / "skyscan-watch-cron.log").read_text()


def test_unusable_database_is_exit_1_and_logged(tmp_path: Path) -> None:
    cfg_path = write_config(tmp_path)
    cfg = load_watch_config(cfg_path)
    cfg.database.parent.mkdir(parents=True, exist_ok=True)
    cfg.database.write_bytes(b"not an sqlite file " * 100)
    result = invoke("watch", "--config", str(cfg_path), "--once")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("skyscan: error: ") and "catalog database" in lines[0]
    assert "not a usable catalog database" in cfg.log_file.read_text()
