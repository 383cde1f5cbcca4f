"""Alerts, their revisions and their scans: what the inbox brought, and every state change of a scan.

A scan moves received -> queued -> running -> done | failed | cancelled (running -> queued again for a retry);
each change is a compare-and-set inside one transaction (:func:`skyscan.ops.catalog.db.transaction`), so the
watcher and an operator command never undo each other's work.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime

from skyscan.errors import InputError, SkyscanError
from skyscan.ops.catalog.db import ACTIVE_STATES, transaction
from skyscan.ops.catalog.stamps import event_time_key
from skyscan.ops.catalog.summaries import SummaryRow
from skyscan.reco import untrusted
from skyscan.timestamps import parse_stamp

__all__ = [
    "DEDUP_STATES",
    "IngestResult",
    "ScanRequest",
    "ScanRow",
    "Submitted",
    "add_scan",
    "alert_name",
    "calibrations_in_state",
    "claim_calibration",
    "claim_scan",
    "count_calibrating",
    "count_running",
    "fail_attempt",
    "fail_calibration",
    "finish_calibration",
    "get_scan",
    "mark_cancelled",
    "mark_done",
    "notify_pending",
    "queue_scan",
    "queued_in_order",
    "record_file",
    "record_notification",
    "record_progress",
    "record_quarantine",
    "record_revision",
    "release_claim",
    "rescan_scan",
    "resolve_alert",
    "scans_in_state",
    "scans_of_alert",
    "set_calibration_launched",
    "set_calibration_step",
    "set_launched",
    "submit_scan",
]


# ---------------------------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------------------------
def alert_name(run_id: int, event_id: int, revision: int) -> str:
    """The alert's folder name in the outbox and the scans directory."""
    return f"run{run_id}-evt{event_id}-r{revision}"


_RUN_EVENT = re.compile(r"\s*(\d+)\s*:\s*(\d+)\s*\Z")
_NAME = re.compile(r"\s*run(\d+)-evt(\d+)(?:-r\d+)?\s*\Z")


def resolve_alert(conn: sqlite3.Connection, spec: str) -> int:
    """An operator's ALERT (``RUN:EVENT``, the catalog's alert id, or a name ``run12-evt345[-r2]``) as an id."""
    text = spec.strip()
    m = _RUN_EVENT.match(text) or _NAME.match(text)
    if m:
        ids = (untrusted.parse_int(m.group(1), f"alert {spec!r}: run", 0), untrusted.parse_int(
            m.group(2), f"alert {spec!r}: event", 0))  # ids are int64 (the event format); SQLite's INTEGER too
        row = conn.execute("SELECT id FROM alerts WHERE run_id = ? AND event_id = ?", ids).fetchone()
        if row is None:
            raise InputError(f"alert {spec!r}: no alert with run {m.group(1)} event {m.group(2)} in the catalog")
        return int(row["id"])
    if text.isdigit():
        alert_id = untrusted.parse_int(text, f"alert {spec!r}: id", 0)
        row = conn.execute("SELECT id FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if row is None:
            raise InputError(f"alert {spec!r}: no alert with id {text} in the catalog")
        return int(row["id"])
    raise InputError(f"alert {spec!r}: expected RUN:EVENT (e.g. 12:345) or the alert id shown by `skyscan catalog`")


# ---------------------------------------------------------------------------------------------------------------
# Ingest
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IngestResult:
    """What recording one event file did."""

    outcome: str  # "new" (first revision of a new alert), "revision", or "duplicate"
    alert_id: int
    revision_id: int
    revision: int
    scan_id: int | None  # the scan created for a new revision


def record_file(conn: sqlite3.Connection, *, name: str, sha256: str, outcome: str, now: str,
                revision_id: int | None = None, detail: str | None = None) -> None:
    """The audit trail: every file taken from the inbox, whatever became of it (call inside a transaction)."""
    conn.execute(
        "INSERT INTO files (name, sha256, received, outcome, revision_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (name, sha256, now, outcome, revision_id, detail),
    )


def record_revision(conn: sqlite3.Connection, *, run_id: int, event_id: int, sha256: str, archive_path: str,
                    source_name: str, event_time: datetime, stream: str | None, now: str) -> IngestResult:
    """Record a validated event file: a duplicate, a new alert or a new revision (with its received scan)."""
    with transaction(conn):
        return _record_revision(conn, run_id=run_id, event_id=event_id, sha256=sha256, archive_path=archive_path,
                                source_name=source_name, event_time=event_time, stream=stream, now=now,
                                with_scan=True)


def _record_revision(conn: sqlite3.Connection, *, run_id: int, event_id: int, sha256: str, archive_path: str,
                     source_name: str, event_time: datetime, stream: str | None, now: str,
                     with_scan: bool) -> IngestResult:
    """:func:`record_revision` inside the caller's transaction; ``with_scan``: a new revision gets a received scan."""
    row = conn.execute(
        "SELECT r.id, r.revision, r.alert_id FROM revisions r WHERE r.sha256 = ?", (sha256,)
    ).fetchone()
    if row is not None:
        record_file(conn, name=source_name, sha256=sha256, outcome="duplicate", now=now, revision_id=row["id"])
        return IngestResult("duplicate", int(row["alert_id"]), int(row["id"]), int(row["revision"]), None)
    alert = conn.execute(
        "SELECT id FROM alerts WHERE run_id = ? AND event_id = ?", (run_id, event_id)
    ).fetchone()
    if alert is None:
        alert_id = int(conn.execute(
            "INSERT INTO alerts (run_id, event_id, first_seen) VALUES (?, ?, ?)", (run_id, event_id, now)
        ).lastrowid or 0)
        revision, outcome = 1, "new"
    else:
        alert_id = int(alert["id"])
        last = conn.execute("SELECT MAX(revision) FROM revisions WHERE alert_id = ?", (alert_id,)).fetchone()[0]
        revision, outcome = int(last or 0) + 1, "revision"
        conn.execute("UPDATE revisions SET is_latest = 0 WHERE alert_id = ?", (alert_id,))
    revision_id = int(conn.execute(
        "INSERT INTO revisions (alert_id, revision, sha256, archive_path, source_name, received, event_time,"
        " stream, is_latest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)",
        (alert_id, revision, sha256, archive_path, source_name, now, event_time_key(event_time), stream),
    ).lastrowid or 0)
    scan_id = _insert_scan(conn, revision_id, None, now) if with_scan else None
    record_file(conn, name=source_name, sha256=sha256, outcome=outcome, now=now, revision_id=revision_id)
    return IngestResult(outcome, alert_id, revision_id, revision, scan_id)


def record_quarantine(conn: sqlite3.Connection, *, name: str, sha256: str, reason: str, now: str) -> None:
    with transaction(conn):
        record_file(conn, name=name, sha256=sha256, outcome="quarantined", now=now, detail=reason)


def _insert_scan(conn: sqlite3.Connection, revision_id: int, scan_config: str | None, now: str) -> int:
    return int(conn.execute(
        "INSERT INTO scans (revision_id, state, scan_config, created, updated) VALUES (?, 'received', ?, ?, ?)",
        (revision_id, scan_config, now, now),
    ).lastrowid or 0)


# ---------------------------------------------------------------------------------------------------------------
# Scans
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanRow:
    """A scan joined with its revision and alert (what the watcher needs to act on it)."""

    id: int
    revision_id: int
    alert_id: int
    run_id: int
    event_id: int
    revision: int
    archive_path: str
    state: str
    backend: str | None
    outdir: str | None
    scan_config: str | None
    attempts: int
    started: str | None
    not_before: str | None
    pid: int | None
    cluster_id: int | None
    progress: str | None
    progress_at: str | None
    last_error: str | None
    notify_state: str
    notify_attempts: int
    last_started: str | None = None
    priority: int = 0
    config_digest: str | None = None
    remote_scan_id: int | None = None  # the scan at the service (the watcher's `backend: service`)
    stream: str | None = None  # the revision's alert stream
    calibration_state: str | None = None  # None: no calibration asked for (db.CALIBRATION_STATES)
    calibration_path: str | None = None  # CALDIR
    calibration_attempts: int = 0
    calibration_pid: int | None = None  # the detached process group of the current step (local)
    calibration_cluster: int | None = None  # the calibration graph's DAGMan cluster (condor)
    calibration_not_before: str | None = None
    calibration_error: str | None = None

    @property
    def name(self) -> str:
        return alert_name(self.run_id, self.event_id, self.revision)


_SCAN_SELECT = """
    SELECT s.id, s.revision_id, r.alert_id, a.run_id, a.event_id, r.revision, r.archive_path, s.state, s.backend,
           s.outdir, s.scan_config, s.attempts, s.started, s.not_before, s.pid, s.cluster_id, s.progress,
           s.progress_at, s.last_error, s.notify_state, s.notify_attempts, s.last_started, s.priority,
           s.config_digest, s.remote_scan_id, r.stream, s.calibration_state, s.calibration_path,
           s.calibration_attempts, s.calibration_pid, s.calibration_cluster, s.calibration_not_before,
           s.calibration_error
    FROM scans s JOIN revisions r ON r.id = s.revision_id JOIN alerts a ON a.id = r.alert_id
"""


def _scan_row(row: sqlite3.Row) -> ScanRow:
    return ScanRow(**{key: row[key] for key in row.keys()})


def get_scan(conn: sqlite3.Connection, scan_id: int) -> ScanRow:
    row = conn.execute(_SCAN_SELECT + " WHERE s.id = ?", (scan_id,)).fetchone()
    if row is None:
        raise SkyscanError(f"no scan {scan_id} in the catalog")
    return _scan_row(row)


def scans_in_state(conn: sqlite3.Connection, *states: str) -> list[ScanRow]:
    """Scans in any of ``states``, oldest first (the order in which queued scans start)."""
    marks = ", ".join("?" for _ in states)
    rows = conn.execute(_SCAN_SELECT + f" WHERE s.state IN ({marks}) ORDER BY s.id", states).fetchall()
    return [_scan_row(r) for r in rows]


def scans_of_alert(conn: sqlite3.Connection, alert_id: int, *states: str) -> list[ScanRow]:
    marks = ", ".join("?" for _ in states)
    rows = conn.execute(
        _SCAN_SELECT + f" WHERE r.alert_id = ? AND s.state IN ({marks}) ORDER BY s.id", (alert_id, *states)
    ).fetchall()
    return [_scan_row(r) for r in rows]


def queued_in_order(conn: sqlite3.Connection) -> list[ScanRow]:
    """Queued scans in the order they start: highest priority first (realtime, >= 100, before any lower),
    first queued first within equal priority."""
    rows = conn.execute(_SCAN_SELECT + " WHERE s.state = 'queued' ORDER BY s.priority DESC, s.id").fetchall()
    return [_scan_row(r) for r in rows]


def count_running(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM scans WHERE state = 'running'").fetchone()[0])


def queue_scan(conn: sqlite3.Connection, scan_id: int, outdir: str, now: str) -> bool:
    """received -> queued, with the scan's output directory fixed for all its attempts."""
    with transaction(conn):
        cur = conn.execute(
            "UPDATE scans SET state = 'queued', outdir = ?, queued = ?, updated = ? WHERE id = ? AND state = 'received'",
            (outdir, now, now, scan_id),
        )
        return cur.rowcount == 1


def claim_scan(conn: sqlite3.Connection, scan_id: int, backend: str, now: str) -> bool:
    """queued -> running before the process starts, so a crash cannot lead to a second, parallel start."""
    with transaction(conn):
        cur = conn.execute(
            "UPDATE scans SET state = 'running', attempts = attempts + 1, backend = COALESCE(backend, ?),"
            " started = COALESCE(started, ?), last_started = ?, progress = NULL, progress_at = ?, pid = NULL,"
            " cluster_id = NULL, remote_scan_id = NULL, not_before = NULL, updated = ? WHERE id = ? AND state = 'queued'",
            (backend, now, now, now, now, scan_id),
        )
        return cur.rowcount == 1


def release_claim(conn: sqlite3.Connection, scan_id: int, reason: str, now: str) -> bool:
    """running -> queued again for a claim whose process never started (the claimer died between claim and
    launch): the attempt is given back and the scan may start at once (no retry delay)."""
    with transaction(conn):
        cur = conn.execute(
            "UPDATE scans SET state = 'queued', attempts = MAX(attempts - 1, 0), not_before = NULL, pid = NULL,"
            " last_error = ?, updated = ? WHERE id = ? AND state = 'running' AND pid IS NULL AND cluster_id IS NULL",
            (reason, now, scan_id),
        )
        return cur.rowcount == 1


def set_launched(conn: sqlite3.Connection, scan_id: int, *, pid: int | None = None,
                 cluster_id: int | None = None, remote_scan_id: int | None = None, now: str) -> bool:
    """Record the launched process group or DAGMan cluster; False when the scan is no longer running (it was
    cancelled between claim and launch: the caller stops what it started)."""
    with transaction(conn):
        cur = conn.execute(
            "UPDATE scans SET pid = COALESCE(?, pid), cluster_id = COALESCE(?, cluster_id),"
            " remote_scan_id = COALESCE(?, remote_scan_id), updated = ? WHERE id = ? AND state = 'running'",
            (pid, cluster_id, remote_scan_id, now, scan_id),
        )
        return cur.rowcount == 1


def record_progress(conn: sqlite3.Connection, scan_id: int, fingerprint: str, now: str,
                    progress_doc: str | None = None) -> None:
    """A change of progress: its fingerprint (for stall detection) and, when given, the per-stage progress as
    JSON (what the scan service shows, so that reading a scan never touches its directory)."""
    with transaction(conn):
        conn.execute(
            "UPDATE scans SET progress = ?, progress_at = ?, progress_doc = COALESCE(?, progress_doc), updated = ?"
            " WHERE id = ? AND state = 'running'",
            (fingerprint, now, progress_doc, now, scan_id),
        )


def fail_attempt(conn: sqlite3.Connection, scan_id: int, reason: str, *, max_attempts: int,
                 retry_at: str, now: str) -> str | None:
    """A running attempt failed: back to queued (resumed later in the same OUTDIR) or, out of attempts, failed.

    Returns the new state, or None if the scan was no longer running (cancelled meanwhile).
    """
    with transaction(conn):
        row = conn.execute("SELECT attempts FROM scans WHERE id = ? AND state = 'running'", (scan_id,)).fetchone()
        if row is None:
            return None
        if int(row["attempts"]) >= max_attempts:
            conn.execute(
                "UPDATE scans SET state = 'failed', last_error = ?, finished = ?, updated = ?, pid = NULL WHERE id = ?",
                (reason, now, now, scan_id),
            )
            return "failed"
        conn.execute(
            "UPDATE scans SET state = 'queued', last_error = ?, not_before = ?, updated = ?, pid = NULL WHERE id = ?",
            (reason, retry_at, now, scan_id),
        )
        return "queued"


def mark_done(conn: sqlite3.Connection, scan_id: int, summary: SummaryRow, summary_path: str, *,
              notify: bool, now: str, calibrate: bool = False) -> bool:
    """running -> done with the summary stored; the wall time counts from the first attempt's start.

    ``calibrate`` queues the scan's automatic calibration in the same transaction: a scan becomes done once,
    so it is asked for once, and a crash right after this commit cannot lose the request.
    """
    with transaction(conn):
        row = conn.execute("SELECT started FROM scans WHERE id = ? AND state = 'running'", (scan_id,)).fetchone()
        if row is None:
            return False
        wall = None
        if row["started"]:
            wall = (parse_stamp(now) - parse_stamp(row["started"])).total_seconds()
        conn.execute(
            "UPDATE scans SET state = 'done', finished = ?, wall_seconds = ?, updated = ?, last_error = NULL,"
            " notify_state = ? WHERE id = ?",
            (now, wall, now, "pending" if notify else "none", scan_id),
        )
        if calibrate:
            conn.execute(
                "UPDATE scans SET calibration_state = 'queued', calibration_requested = ? WHERE id = ?"
                " AND calibration_state IS NULL", (now, scan_id),
            )
        _store_summary(conn, scan_id, summary, summary_path)
        return True


def _store_summary(conn: sqlite3.Connection, scan_id: int, summary: SummaryRow, summary_path: str) -> None:
    values = summary.columns()
    names = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    conn.execute(
        f"INSERT OR REPLACE INTO summaries (scan_id, summary_path, {names}) VALUES (?, ?, {marks})",
        (scan_id, summary_path, *values.values()),
    )


def mark_cancelled(conn: sqlite3.Connection, scan_id: int, reason: str, now: str, by: str | None = None) -> bool:
    """An active scan -> cancelled; ``by`` names who aborted it (a service token's name)."""
    marks = ", ".join("?" for _ in ACTIVE_STATES)
    with transaction(conn):
        cur = conn.execute(
            f"UPDATE scans SET state = 'cancelled', last_error = ?, finished = ?, updated = ?,"
            f" aborted_by = COALESCE(?, aborted_by) WHERE id = ? AND state IN ({marks})",
            (reason, now, now, by, scan_id, *ACTIVE_STATES),
        )
        return cur.rowcount == 1


def add_scan(conn: sqlite3.Connection, alert_id: int, scan_config: str | None, now: str) -> int:
    """A new scan of the alert's latest revision (``skyscan rescan``); refused while one is active."""
    with transaction(conn):
        active = conn.execute(
            "SELECT s.id, s.state FROM scans s JOIN revisions r ON r.id = s.revision_id"
            f" WHERE r.alert_id = ? AND s.state IN ({', '.join('?' for _ in ACTIVE_STATES)})",
            (alert_id, *ACTIVE_STATES),
        ).fetchone()
        if active is not None:
            raise SkyscanError(
                f"alert {alert_id} already has an active scan (scan {active['id']}, {active['state']}); "
                "cancel it first with `skyscan cancel`"
            )
        rev = conn.execute(
            "SELECT id FROM revisions WHERE alert_id = ? AND is_latest = 1", (alert_id,)
        ).fetchone()
        if rev is None:
            raise SkyscanError(f"alert {alert_id} has no revision to scan")
        return _insert_scan(conn, int(rev["id"]), scan_config, now)


def notify_pending(conn: sqlite3.Connection, max_attempts: int) -> list[ScanRow]:
    """Done scans whose notification is still to be sent (fewer than ``max_attempts`` tries so far)."""
    rows = conn.execute(
        _SCAN_SELECT + " WHERE s.state = 'done' AND s.notify_state = 'pending' AND s.notify_attempts < ?"
        " ORDER BY s.id",
        (max_attempts,),
    ).fetchall()
    return [_scan_row(r) for r in rows]


def record_notification(conn: sqlite3.Connection, scan_id: int, error: str | None, *, max_attempts: int,
                        now: str) -> str:
    """Count a notification attempt; returns the new notify state (sent, pending, or failed = given up)."""
    with transaction(conn):
        if error is None:
            conn.execute(
                "UPDATE scans SET notify_state = 'sent', notify_attempts = notify_attempts + 1, notify_error = NULL,"
                " updated = ? WHERE id = ?",
                (now, scan_id),
            )
            return "sent"
        row = conn.execute("SELECT notify_attempts FROM scans WHERE id = ?", (scan_id,)).fetchone()
        attempts = int(row["notify_attempts"]) + 1
        state = "failed" if attempts >= max_attempts else "pending"
        conn.execute(
            "UPDATE scans SET notify_state = ?, notify_attempts = ?, notify_error = ?, updated = ? WHERE id = ?",
            (state, attempts, error, now, scan_id),
        )
        return state


# ---------------------------------------------------------------------------------------------------------------
# Automatic calibration of done scans: queued -> calibrating -> merging -> done | failed (queued again to retry)
# ---------------------------------------------------------------------------------------------------------------
def calibrations_in_state(conn: sqlite3.Connection, *states: str) -> list[ScanRow]:
    """Done scans whose calibration is in any of ``states``, oldest first."""
    marks = ", ".join("?" for _ in states)
    rows = conn.execute(
        # unary +: walk the (few) active calibrations by their partial index, not every done scan by state
        _SCAN_SELECT + f" WHERE s.calibration_state IN ({marks}) AND +s.state = 'done' ORDER BY s.id", states
    ).fetchall()
    return [_scan_row(r) for r in rows]


def count_calibrating(conn: sqlite3.Connection) -> int:
    return int(conn.execute(
        "SELECT COUNT(*) FROM scans WHERE calibration_state IN ('calibrating', 'merging')").fetchone()[0])


def claim_calibration(conn: sqlite3.Connection, scan_id: int, caldir: str, now: str) -> bool:
    """queued -> calibrating (an attempt counted) before anything is started, like :func:`claim_scan`."""
    with transaction(conn):
        cur = conn.execute(
            "UPDATE scans SET calibration_state = 'calibrating', calibration_attempts = calibration_attempts + 1,"
            " calibration_path = ?, calibration_pid = NULL, calibration_cluster = NULL,"
            " calibration_not_before = NULL, updated = ? WHERE id = ? AND state = 'done'"
            " AND calibration_state = 'queued'",
            (caldir, now, scan_id),
        )
        return cur.rowcount == 1


def set_calibration_launched(conn: sqlite3.Connection, scan_id: int, *, pid: int | None = None,
                             cluster: int | None = None, now: str) -> bool:
    """The current step's process group (local) or the calibration graph's cluster (condor)."""
    with transaction(conn):
        cur = conn.execute(
            "UPDATE scans SET calibration_pid = COALESCE(?, calibration_pid),"
            " calibration_cluster = COALESCE(?, calibration_cluster), updated = ? WHERE id = ?"
            " AND calibration_state IN ('calibrating', 'merging')",
            (pid, cluster, now, scan_id),
        )
        return cur.rowcount == 1


def set_calibration_step(conn: sqlite3.Connection, scan_id: int, old: str, new: str, now: str) -> bool:
    """One step to the next (calibrating -> merging): compare-and-set, the step's process not yet started."""
    with transaction(conn):
        cur = conn.execute(
            "UPDATE scans SET calibration_state = ?, calibration_pid = NULL, updated = ? WHERE id = ?"
            " AND calibration_state = ?",
            (new, now, scan_id, old),
        )
        return cur.rowcount == 1


def fail_calibration(conn: sqlite3.Connection, scan_id: int, reason: str, *, max_attempts: int, retry_at: str,
                     now: str) -> str | None:
    """A calibration step failed: queued again (resumed in the same CALDIR after ``retry_at``) or, out of
    attempts, failed with its reason. The scan itself stays done. Returns the new state, None if not active."""
    with transaction(conn):
        row = conn.execute(
            "SELECT calibration_attempts FROM scans WHERE id = ? AND calibration_state IN ('calibrating', 'merging')",
            (scan_id,),
        ).fetchone()
        if row is None:
            return None
        state = "failed" if int(row["calibration_attempts"]) >= max_attempts else "queued"
        conn.execute(
            "UPDATE scans SET calibration_state = ?, calibration_error = ?, calibration_not_before = ?,"
            " calibration_pid = NULL, calibration_finished = ?, updated = ? WHERE id = ?",
            (state, reason, retry_at if state == "queued" else None, now if state == "failed" else None, now,
             scan_id),
        )
        return state


def finish_calibration(conn: sqlite3.Connection, scan_id: int, summary: SummaryRow, summary_path: str,
                       levels: dict[str, float], *, notify: bool, now: str) -> bool:
    """merging -> done: the re-merged (calibrated) summary replaces the stored one, and the re-issue gets a
    notification of its own when the watcher notifies (its attempts counted afresh)."""
    with transaction(conn):
        cur = conn.execute(
            "UPDATE scans SET calibration_state = 'done', calibration_levels = ?, calibration_error = NULL,"
            " calibration_pid = NULL, calibration_finished = ?, updated = ? WHERE id = ? AND state = 'done'"
            " AND calibration_state = 'merging'",
            (json.dumps(levels, sort_keys=True), now, now, scan_id),
        )
        if cur.rowcount != 1:
            return False
        if notify:
            conn.execute("UPDATE scans SET notify_state = 'pending', notify_attempts = 0, notify_error = NULL"
                         " WHERE id = ?", (scan_id,))
        _store_summary(conn, scan_id, summary, summary_path)
        return True


# ---------------------------------------------------------------------------------------------------------------
# The scan service's submissions
# ---------------------------------------------------------------------------------------------------------------
#: The states in which a scan of the same revision with the same resolved configuration makes a new one redundant.
DEDUP_STATES = ("received", "queued", "running", "done")


@dataclass(frozen=True)
class Submitted:
    """What a submission to the service did: the scan that answers it, and whether it was created now."""

    scan_id: int
    created: bool


@dataclass(frozen=True)
class ScanRequest:
    """What a new scan of the service carries besides its revision (see docs/service.md)."""

    scan_config: str | None  # the resolved configuration file the scan runs with
    config_digest: str  # sha256 of the resolved configuration (the duplicate check compares it)
    scans_dir: str  # the folder of the service's scan directories
    priority: int = 0  # 0-1000; >= 100 is the realtime lane
    classifiers: str | None = None  # JSON object of the submitter's classifiers
    label: str | None = None
    submitted_by: str | None = None  # the token's name


def _insert_queued_scan(conn: sqlite3.Connection, revision_id: int, name: str, req: ScanRequest, now: str) -> int:
    scan_id = int(conn.execute(
        "INSERT INTO scans (revision_id, state, scan_config, created, updated, queued, priority, classifiers, label,"
        " submitted_by, config_digest) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (revision_id, req.scan_config, now, now, now, req.priority, req.classifiers, req.label, req.submitted_by,
         req.config_digest),
    ).lastrowid or 0)
    outdir = f"{req.scans_dir.rstrip('/')}/{name}-s{scan_id}"
    conn.execute("UPDATE scans SET outdir = ? WHERE id = ?", (outdir, scan_id))
    return scan_id


def submit_scan(conn: sqlite3.Connection, *, run_id: int, event_id: int, sha256: str, archive_path: str,
                event_time: datetime, stream: str | None, request: ScanRequest, force: bool, now: str) -> Submitted:
    """Record an event posted to the service and queue its scan, in one transaction.

    The same revision (same content) with the same resolved configuration already received, queued, running or
    done answers with that scan instead of a new one, unless ``force``. Two identical submissions at the same
    moment are serialised by the transaction (``BEGIN IMMEDIATE``), so they cannot both create a scan.
    """
    with transaction(conn):
        res = _record_revision(conn, run_id=run_id, event_id=event_id, sha256=sha256, archive_path=archive_path,
                               source_name=f"api:{request.submitted_by or 'anonymous'}", event_time=event_time,
                               stream=stream, now=now, with_scan=False)
        if not force:
            marks = ", ".join("?" for _ in DEDUP_STATES)
            row = conn.execute(
                f"SELECT id FROM scans WHERE revision_id = ? AND config_digest = ? AND state IN ({marks})"
                " ORDER BY id LIMIT 1", (res.revision_id, request.config_digest, *DEDUP_STATES),
            ).fetchone()
            if row is not None:
                return Submitted(int(row["id"]), False)
        name = alert_name(run_id, event_id, res.revision)
        return Submitted(_insert_queued_scan(conn, res.revision_id, name, request, now), True)


def rescan_scan(conn: sqlite3.Connection, scan_id: int, request: ScanRequest, *, replace: bool,
                now: str) -> int:
    """A new queued scan of the same revision as ``scan_id`` (its classifiers and label carried over unless the
    request gives its own); ``replace`` makes the old scan's ``replaced_by`` name the new one."""
    with transaction(conn):
        old = conn.execute(
            "SELECT s.revision_id, s.classifiers, s.label, a.run_id, a.event_id, r.revision FROM scans s"
            " JOIN revisions r ON r.id = s.revision_id JOIN alerts a ON a.id = r.alert_id WHERE s.id = ?",
            (scan_id,),
        ).fetchone()
        if old is None:
            raise InputError(f"no scan {scan_id}")
        carried = ScanRequest(
            scan_config=request.scan_config, config_digest=request.config_digest, scans_dir=request.scans_dir,
            priority=request.priority, classifiers=request.classifiers or old["classifiers"],
            label=request.label or old["label"], submitted_by=request.submitted_by,
        )
        name = alert_name(int(old["run_id"]), int(old["event_id"]), int(old["revision"]))
        new_id = _insert_queued_scan(conn, int(old["revision_id"]), name, carried, now)
        if replace:
            conn.execute("UPDATE scans SET replaced_by = ?, updated = ? WHERE id = ?", (new_id, now, scan_id))
        return new_id
