"""The alert catalog: an SQLite database of alerts, their revisions, their scans and the scans' summaries.

The watcher (:mod:`skyscan.ops.watcher`) is its only writer apart from the operator commands ``skyscan cancel``
and ``skyscan rescan``; every state change is a compare-and-set inside a transaction, so a concurrent
operator command and a watcher never undo each other's work. The database runs in WAL mode (readers such
as ``skyscan catalog`` never block the watcher) with ``synchronous=FULL``: the watcher deletes an inbox
file only after the commit that records it, and that commit must survive a power cut.

Schema versions live in ``PRAGMA user_version``; :data:`MIGRATIONS` lists the SQL that brings a database
from version *i* to *i + 1*, applied in one transaction when the database is opened.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from skyscan.errors import InputError, SkyscanError
from skyscan.products.columns import SUMMARY_COLUMNS, Column, level_columns, summary_values
from skyscan.products.summary import SUMMARY_SCHEMA, Summary, read_summary_document
from skyscan.version import __version__, git_revision

__all__ = [
    "ACTIVE_STATES",
    "CATALOG_SCHEMA",
    "COLUMNS",
    "MANIFEST_SCHEMA",
    "MIGRATIONS",
    "SCAN_STATES",
    "SCHEMA_VERSION",
    "SUMMARY_SCHEMA",
    "Column",
    "IngestResult",
    "ScanRow",
    "Summary",
    "SummaryRow",
    "alert_name",
    "catalog_document",
    "catalog_rows",
    "connect",
    "export_catalog",
    "format_rows",
    "parse_summary",
    "resolve_alert",
    "transaction",
    "utcnow",
]

SCAN_STATES = ("received", "queued", "running", "done", "failed", "cancelled")
ACTIVE_STATES = ("received", "queued", "running")
CATALOG_SCHEMA = "skyscan-catalog/1"
MANIFEST_SCHEMA = "skyscan-catalog-manifest/1"
NOTIFY_STATES = ("none", "pending", "sent", "failed")

_STATE_LIST = ", ".join(f"'{s}'" for s in SCAN_STATES)
_NOTIFY_LIST = ", ".join(f"'{s}'" for s in NOTIFY_STATES)

# MIGRATIONS[i] brings a database from schema version i to i + 1 (never edit a released entry: append).
MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE alerts (
        id          INTEGER PRIMARY KEY,
        run_id      INTEGER NOT NULL,
        event_id    INTEGER NOT NULL,
        first_seen  TEXT NOT NULL,
        UNIQUE (run_id, event_id)
    );
    CREATE TABLE revisions (
        id            INTEGER PRIMARY KEY,
        alert_id      INTEGER NOT NULL REFERENCES alerts(id),
        revision      INTEGER NOT NULL,
        sha256        TEXT NOT NULL UNIQUE,
        archive_path  TEXT NOT NULL,
        source_name   TEXT NOT NULL,
        received      TEXT NOT NULL,
        event_time    TEXT NOT NULL,
        stream        TEXT,
        is_latest     INTEGER NOT NULL DEFAULT 1,
        UNIQUE (alert_id, revision)
    );
    CREATE UNIQUE INDEX revisions_one_latest ON revisions(alert_id) WHERE is_latest = 1;
    CREATE INDEX revisions_event_time ON revisions(event_time);
    CREATE TABLE scans (
        id               INTEGER PRIMARY KEY,
        revision_id      INTEGER NOT NULL REFERENCES revisions(id),
        state            TEXT NOT NULL CHECK (state IN ({_STATE_LIST})),
        backend          TEXT,
        outdir           TEXT,
        scan_config      TEXT,
        attempts         INTEGER NOT NULL DEFAULT 0,
        created          TEXT NOT NULL,
        updated          TEXT NOT NULL,
        queued           TEXT,
        not_before       TEXT,
        started          TEXT,
        last_started     TEXT,
        finished         TEXT,
        wall_seconds     REAL,
        pid              INTEGER,
        cluster_id       INTEGER,
        progress         TEXT,
        progress_at      TEXT,
        last_error       TEXT,
        notify_state     TEXT NOT NULL DEFAULT 'none' CHECK (notify_state IN ({_NOTIFY_LIST})),
        notify_attempts  INTEGER NOT NULL DEFAULT 0,
        notify_error     TEXT
    );
    CREATE INDEX scans_revision ON scans(revision_id);
    CREATE INDEX scans_state ON scans(state);
    CREATE TABLE summaries (
        scan_id             INTEGER PRIMARY KEY REFERENCES scans(id),
        summary_path        TEXT NOT NULL,
        ra_deg              REAL,
        dec_deg             REAL,
        llh                 REAL,
        nside               INTEGER,
        containment_method  TEXT,
        ra_plus_50_deg      REAL,
        ra_minus_50_deg     REAL,
        dec_plus_50_deg     REAL,
        dec_minus_50_deg    REAL,
        area_50_deg2        REAL,
        ra_plus_90_deg      REAL,
        ra_minus_90_deg     REAL,
        dec_plus_90_deg     REAL,
        dec_minus_90_deg    REAL,
        area_90_deg2        REAL,
        pixels_scanned      INTEGER,
        pixels_failed       INTEGER,
        software_version    TEXT,
        doc                 TEXT NOT NULL
    );
    CREATE TABLE files (
        id           INTEGER PRIMARY KEY,
        name         TEXT NOT NULL,
        sha256       TEXT NOT NULL,
        received     TEXT NOT NULL,
        outcome      TEXT NOT NULL CHECK (outcome IN ('new', 'revision', 'duplicate', 'quarantined')),
        revision_id  INTEGER REFERENCES revisions(id),
        detail       TEXT
    );
    CREATE INDEX files_sha256 ON files(sha256);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


# ---------------------------------------------------------------------------------------------------------------
# Time
# ---------------------------------------------------------------------------------------------------------------
def utcnow(now: datetime | None = None) -> str:
    """The catalog's time stamps: UTC, whole seconds, trailing Z (sorts as text)."""
    t = now or datetime.now(timezone.utc)
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str) -> datetime:
    """Inverse of :func:`utcnow` (also reads the event times' microseconds)."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    t = datetime.fromisoformat(value)
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc)


def event_time_key(t: datetime) -> str:
    """Event times as stored: microseconds, so that text order is time order."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_since(text: str) -> str:
    """``--since`` (a date or an ISO 8601 time, UTC unless stated) as a stored event-time key."""
    try:
        return event_time_key(parse_stamp(text))
    except ValueError:
        raise InputError(f"--since: not a date or ISO 8601 time: {text!r}") from None


# ---------------------------------------------------------------------------------------------------------------
# Connection, transactions, migrations
# ---------------------------------------------------------------------------------------------------------------
def connect(path: str | os.PathLike[str], *, create: bool = True,
            migrations: Sequence[str] = MIGRATIONS) -> sqlite3.Connection:
    """Open (and if needed create and migrate) the catalog; autocommit mode, transactions via :func:`transaction`."""
    p = Path(path)
    if not create and not p.exists():
        raise InputError(f"{p}: no catalog database (the watcher creates it on its first run)")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not a catalog database")
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(str(p), timeout=30.0, isolation_level=None)
    except sqlite3.Error as exc:
        raise SkyscanError(f"{p}: cannot open the catalog database: {exc}") from None
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise SkyscanError(f"{p}: cannot switch the catalog database to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, migrations)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise SkyscanError(f"{p}: not a usable catalog database: {exc}") from None
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rollback on any error): one writer at a time, no lost updates."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Apply the pending migrations in one transaction; return the resulting schema version."""
    with transaction(conn):
        version = schema_version(conn)
        if version > len(migrations):
            raise SkyscanError(
                f"the catalog database has schema version {version}, newer than this software "
                f"(skyscan {__version__} knows up to {len(migrations)}); upgrade skyscan"
            )
        for target in range(version + 1, len(migrations) + 1):
            for statement in _split_sql(migrations[target - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target:d}")
        return schema_version(conn)


def _split_sql(script: str) -> list[str]:
    """Statements of a migration (executescript would commit our transaction behind our back)."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        raise SkyscanError(f"incomplete SQL statement in a migration: {current.strip()[:60]!r}")
    return statements


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
        row = conn.execute(
            "SELECT id FROM alerts WHERE run_id = ? AND event_id = ?", (int(m.group(1)), int(m.group(2)))
        ).fetchone()
        if row is None:
            raise InputError(f"alert {spec!r}: no alert with run {m.group(1)} event {m.group(2)} in the catalog")
        return int(row["id"])
    if text.isdigit():
        row = conn.execute("SELECT id FROM alerts WHERE id = ?", (int(text),)).fetchone()
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


def retry_time(now: str, delay_seconds: float) -> str:
    return utcnow(parse_stamp(now) + timedelta(seconds=delay_seconds))


# ---------------------------------------------------------------------------------------------------------------
# Summaries (summary.json, skyscan-summary/1)
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SummaryRow:
    """A scan's row of the `summaries` table: the catalog's columns of its summary.json, plus the whole document.

    The field names are the table's columns (MIGRATIONS) and the shared summary column names
    (:mod:`skyscan.products.columns`); the values come from the typed :class:`Summary`.
    """

    ra_deg: float
    dec_deg: float
    llh: float | None
    nside: int | None
    containment_method: str | None
    ra_plus_50_deg: float | None
    ra_minus_50_deg: float | None
    dec_plus_50_deg: float | None
    dec_minus_50_deg: float | None
    area_50_deg2: float | None
    ra_plus_90_deg: float | None
    ra_minus_90_deg: float | None
    dec_plus_90_deg: float | None
    dec_minus_90_deg: float | None
    area_90_deg2: float | None
    pixels_scanned: int | None
    pixels_failed: int | None
    software_version: str | None
    doc: str  # the document as read (sorted keys), keys this version does not know included

    def columns(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.__dataclass_fields__}


_ROW_COLUMNS = tuple(f.name for f in fields(SummaryRow) if f.name != "doc")


def summary_row(summary: Summary, doc: str) -> SummaryRow:
    """The catalog's columns of a summary; `doc` is the document text stored beside them."""
    values = summary_values(summary)
    return SummaryRow(doc=doc, **{name: values[name] for name in _ROW_COLUMNS})


def parse_summary(doc: Any, where: str = "summary.json") -> SummaryRow:
    """Validate a parsed summary.json (:meth:`Summary.from_json`); the document is kept verbatim."""
    return summary_row(Summary.from_json(doc, where), json.dumps(doc, sort_keys=True))


def read_summary_row(path: str | os.PathLike[str]) -> SummaryRow:
    """The catalog row of the summary.json at `path`; missing, unreadable or invalid -> InputError naming it."""
    p = Path(path)
    return parse_summary(read_summary_document(p), str(p))


# ---------------------------------------------------------------------------------------------------------------
# Listing and export (skyscan-catalog/1)
# ---------------------------------------------------------------------------------------------------------------
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
       m.pixels_scanned, m.pixels_failed, m.software_version
FROM alerts a
JOIN revisions r ON r.alert_id = a.id
LEFT JOIN scans s ON s.id = (SELECT MAX(s2.id) FROM scans s2 WHERE s2.revision_id = r.id)
LEFT JOIN summaries m ON m.scan_id = s.id
WHERE (:all_revisions OR r.is_latest = 1)
  AND (:since IS NULL OR r.event_time >= :since)
  AND (:state IS NULL OR s.state = :state)
ORDER BY r.event_time, a.id, r.revision
"""


def catalog_rows(conn: sqlite3.Connection, *, since: str | None = None, state: str | None = None,
                 all_revisions: bool = False) -> list[dict[str, Any]]:
    """Every alert with its latest scan (or every revision with its latest scan), oldest event first."""
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


def _software() -> dict[str, Any]:
    return {"name": "skyscan", "version": __version__, "git_revision": git_revision()}


def catalog_document(rows: list[dict[str, Any]], created: str | None = None) -> dict[str, Any]:
    """The skyscan-catalog/1 JSON document: the columns' documentation and the rows."""
    return {
        "schema": CATALOG_SCHEMA,
        "created": created or utcnow(),
        "software": _software(),
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
            " ".join(str(r["last_error"] or "").split()) if r["state"] != "done" else "",
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


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


SKYMAP_FILES = ("skymap.multiorder.fits", "skymap.h5")


def export_catalog(conn: sqlite3.Connection, outdir: str | os.PathLike[str], *, since: str | None = None,
                   state: str | None = None, all_revisions: bool = False, skymaps: bool = True) -> Path:
    """Write a citable snapshot: catalog.csv, catalog.json, the done scans' skymaps and manifest.json.

    The snapshot is assembled in a hidden sibling folder and renamed into place, so ``outdir`` either
    holds a complete snapshot or nothing. ``outdir`` must not exist or be empty.
    """
    final = Path(outdir)
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise InputError(f"{final}: exists and is not an empty folder (an export never overwrites)")
    rows = catalog_rows(conn, since=since, state=state, all_revisions=all_revisions)
    created = utcnow()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
    try:
        included: list[dict[str, Any]] = []
        if skymaps:
            for row in rows:
                if row["state"] != "done" or not row["outdir"]:
                    continue
                for name in SKYMAP_FILES:
                    source = Path(row["outdir"]) / name
                    if not source.is_file():
                        continue
                    rel = Path("skymaps") / f"{row['alert']}-s{row['scan_id']}.{name.split('.', 1)[1]}"
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, tmp / rel)
                    included.append({
                        "alert": row["alert"], "scan_id": row["scan_id"], "kind": name, "path": rel.as_posix(),
                        "bytes": (tmp / rel).stat().st_size, "sha256": _sha256_file(tmp / rel),
                    })
        (tmp / "catalog.csv").write_text(format_csv(rows), encoding="utf-8")
        (tmp / "catalog.json").write_text(json.dumps(catalog_document(rows, created), indent=1) + "\n",
                                          encoding="utf-8")
        files = [
            {"path": name, "bytes": (tmp / name).stat().st_size, "sha256": _sha256_file(tmp / name)}
            for name in ("catalog.csv", "catalog.json")
        ]
        manifest = {
            "schema": MANIFEST_SCHEMA,
            "catalog_schema": CATALOG_SCHEMA,
            "created": created,
            "software": _software(),
            "selection": {"since": since, "state": state, "all_revisions": all_revisions},
            "rows": len(rows),
            "files": files,
            "skymaps": included,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        if final.exists():
            final.rmdir()
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
