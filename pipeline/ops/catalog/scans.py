"""Alerts, their revisions and their scans: what the inbox brought, and every state change of a scan.

A scan moves received -> queued -> running -> done | failed | cancelled (running -> queued again for a retry);
each change is a compare-and-set inside one transaction (:func:`skyscan.ops.catalog.db.transaction`), so the
watcher and an operator command never undo each other's work.
"""

from __future__ import annotations

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
    "IngestResult",
    "ScanRow",
    "add_scan",
    "alert_name",
    "claim_scan",
    "count_running",
    "fail_attempt",
    "get_scan",
    "mark_cancelled",
    "mark_done",
    "notify_pending",
    "queue_scan",
    "record_file",
    "record_notification",
    "record_progress",
    "record_quarantine",
    "record_revision",
    "resolve_alert",
    "scans_in_state",
    "scans_of_alert",
    "set_launched",
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
        scan_id = _insert_scan(conn, revision_id, None, now)
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

    @property
    def name(self) -> str:
        return alert_name(self.run_id, self.event_id, self.revision)


_SCAN_SELECT = """
    SELECT s.id, s.revision_id, r.alert_id, a.run_id, a.event_id, r.revision, r.archive_path, s.state, s.backend,
           s.outdir, s.scan_config, s.attempts, s.started, s.not_before, s.pid, s.cluster_id, s.progress,
           s.progress_at, s.last_error, s.notify_state, s.notify_attempts
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
            " cluster_id = NULL, not_before = NULL, updated = ? WHERE id = ? AND state = 'queued'",
            (backend, now, now, now, now, scan_id),
        )
        return cur.rowcount == 1


def set_launched(conn: sqlite3.Connection, scan_id: int, *, pid: int | None = None,
                 cluster_id: int | None = None, now: str) -> None:
    with transaction(conn):
        conn.execute(
            "UPDATE scans SET pid = COALESCE(?, pid), cluster_id = COALESCE(?, cluster_id), updated = ?"
            " WHERE id = ? AND state = 'running'",
            (pid, cluster_id, now, scan_id),
        )


def record_progress(conn: sqlite3.Connection, scan_id: int, fingerprint: str, now: str) -> None:
    with transaction(conn):
        conn.execute(
            "UPDATE scans SET progress = ?, progress_at = ?, updated = ? WHERE id = ? AND state = 'running'",
            (fingerprint, now, now, scan_id),
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
              notify: bool, now: str) -> bool:
    """running -> done with the summary stored; the wall time counts from the first attempt's start."""
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
        values = summary.columns()
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        conn.execute(
            f"INSERT OR REPLACE INTO summaries (scan_id, summary_path, {names}) VALUES (?, ?, {marks})",
            (scan_id, summary_path, *values.values()),
        )
        return True


def mark_cancelled(conn: sqlite3.Connection, scan_id: int, reason: str, now: str) -> bool:
    marks = ", ".join("?" for _ in ACTIVE_STATES)
    with transaction(conn):
        cur = conn.execute(
            f"UPDATE scans SET state = 'cancelled', last_error = ?, finished = ?, updated = ?"
            f" WHERE id = ? AND state IN ({marks})",
            (reason, now, now, scan_id, *ACTIVE_STATES),
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
