"""The catalog database file: connection, schema migrations, transactions.

Every state change is a compare-and-set inside a transaction (:func:`transaction`), so a concurrent operator
command and a watcher never undo each other's work. The database runs in WAL mode (readers such as
``skyscan catalog`` never block the watcher) with ``synchronous=FULL``: the watcher deletes an inbox file only
after the commit that records it, and that commit must survive a power cut.

Schema versions live in ``PRAGMA user_version``; :data:`MIGRATIONS` lists the SQL that brings a database
from version *i* to *i + 1*, applied in one transaction when the database is opened.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from skyscan.errors import InputError, SkyscanError
from skyscan.version import __version__

__all__ = [
    "ACTIVE_STATES",
    "CALIBRATION_STATES",
    "MIGRATIONS",
    "NOTIFY_STATES",
    "SCAN_STATES",
    "SCHEMA_VERSION",
    "TOKEN_ROLES",
    "connect",
    "migrate",
    "schema_version",
    "transaction",
]

SCAN_STATES = ("received", "queued", "running", "done", "failed", "cancelled")
ACTIVE_STATES = ("received", "queued", "running")
NOTIFY_STATES = ("none", "pending", "sent", "failed")
TOKEN_ROLES = ("read", "submit", "admin")  # the scan service's roles, each including the ones before it
# A done scan's automatic calibration (NULL: none asked for): queued -> calibrating -> merging -> done | failed.
CALIBRATION_STATES = ("queued", "calibrating", "merging", "done", "failed")

_STATE_LIST = ", ".join(f"'{s}'" for s in SCAN_STATES)
_NOTIFY_LIST = ", ".join(f"'{s}'" for s in NOTIFY_STATES)
_ROLE_LIST = ", ".join(f"'{s}'" for s in TOKEN_ROLES)
_CALIBRATION_LIST = ", ".join(f"'{s}'" for s in CALIBRATION_STATES)

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
    # 1 -> 2: the scan service (`skyscan serve`): priority lanes, the submitter's classifiers and label, who
    # submitted and who aborted (token names), a replaced scan's replacement, the resolved configuration's digest,
    # the last observed progress per stage (JSON, so that reading a scan never touches its directory), the scan id
    # at a service of a watcher's `backend: service` scan, and the
    # service's bearer tokens (only a salted hash of each secret is stored).
    f"""
    ALTER TABLE scans ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE scans ADD COLUMN classifiers TEXT;
    ALTER TABLE scans ADD COLUMN label TEXT;
    ALTER TABLE scans ADD COLUMN submitted_by TEXT;
    ALTER TABLE scans ADD COLUMN aborted_by TEXT;
    ALTER TABLE scans ADD COLUMN replaced_by INTEGER REFERENCES scans(id);
    ALTER TABLE scans ADD COLUMN config_digest TEXT;
    ALTER TABLE scans ADD COLUMN progress_doc TEXT;
    ALTER TABLE scans ADD COLUMN remote_scan_id INTEGER;
    CREATE INDEX scans_queue ON scans(state, priority, id);
    CREATE INDEX scans_label ON scans(label);
    CREATE INDEX scans_dedup ON scans(revision_id, config_digest);
    CREATE TABLE tokens (
        id        INTEGER PRIMARY KEY,
        name      TEXT NOT NULL UNIQUE,
        role      TEXT NOT NULL CHECK (role IN ({_ROLE_LIST})),
        lookup    TEXT NOT NULL UNIQUE,
        salt      TEXT NOT NULL,
        hash      TEXT NOT NULL,
        created   TEXT NOT NULL,
        revoked   TEXT
    );
    """,
    # 2 -> 3: automatic calibration of a done scan (the watcher's and the service's `calibration:` block): its
    # state (NULL: not asked for), the calibration directory, attempts, the detached process group or DAGMan
    # cluster of the current step, the time before which a retry waits, the levels found (JSON {"50", "90"}),
    # the last failure's reason, and when it was asked for and finished. A scan's own state never depends on it.
    f"""
    ALTER TABLE scans ADD COLUMN calibration_state TEXT CHECK (calibration_state IN ({_CALIBRATION_LIST}));
    ALTER TABLE scans ADD COLUMN calibration_path TEXT;
    ALTER TABLE scans ADD COLUMN calibration_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE scans ADD COLUMN calibration_pid INTEGER;
    ALTER TABLE scans ADD COLUMN calibration_cluster INTEGER;
    ALTER TABLE scans ADD COLUMN calibration_not_before TEXT;
    ALTER TABLE scans ADD COLUMN calibration_levels TEXT;
    ALTER TABLE scans ADD COLUMN calibration_error TEXT;
    ALTER TABLE scans ADD COLUMN calibration_requested TEXT;
    ALTER TABLE scans ADD COLUMN calibration_finished TEXT;
    CREATE INDEX scans_calibration ON scans(calibration_state) WHERE calibration_state IS NOT NULL;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _check_existing(p: Path) -> None:
    """An existing catalog is an SQLite file: an empty or foreign file is refused, never given a schema."""
    try:
        with p.open("rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise InputError(f"{p}: cannot read the catalog database ({exc.__class__.__name__})") from None
    if head != _SQLITE_MAGIC:
        what = "an empty file" if not head else "not an SQLite file"
        raise InputError(f"{p}: {what}, not a catalog database")


def connect(path: str | os.PathLike[str], *, create: bool = True,
            migrations: Sequence[str] = MIGRATIONS) -> sqlite3.Connection:
    """Open (and if needed create and migrate) the catalog; autocommit mode, transactions via :func:`transaction`."""
    p = Path(path)
    if not create and not p.exists():
        raise InputError(f"{p}: no catalog database (the watcher creates it on its first run)")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not a catalog database")
    if not create:
        _check_existing(p)
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
        if not create:  # a file the operator named (--db): bad input
            raise InputError(f"{p}: not a usable catalog database: {exc}") from None
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

