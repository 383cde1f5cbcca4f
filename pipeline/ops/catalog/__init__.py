"""The alert catalog: an SQLite database of alerts, their revisions, their scans and the scans' summaries.

The watcher (:mod:`skyscan.ops.watcher`) is its only writer apart from the operator commands ``skyscan cancel``
and ``skyscan rescan`` (:mod:`skyscan.ops.commands`). The modules:

* :mod:`~skyscan.ops.catalog.db` -- the database file: connection (WAL, ``synchronous=FULL``), schema
  migrations, transactions;
* :mod:`~skyscan.ops.catalog.stamps` -- the stored UTC time stamps (the time-stamp helper of ``skyscan.ops``);
* :mod:`~skyscan.ops.catalog.scans` -- alerts, revisions and scans: ingest records and every state change;
* :mod:`~skyscan.ops.catalog.summaries` -- a scan's row of the ``summaries`` table;
* :mod:`~skyscan.ops.catalog.listing` -- ``skyscan catalog``: rows, columns, table/CSV/JSON formats;
* :mod:`~skyscan.ops.catalog.export` -- ``skyscan catalog export``: the citable snapshot.

This package re-exports their public names, so that ``from skyscan.ops import catalog`` reads as one API.
"""

from __future__ import annotations

from skyscan.ops.catalog.db import (
    ACTIVE_STATES,
    MIGRATIONS,
    NOTIFY_STATES,
    SCAN_STATES,
    SCHEMA_VERSION,
    connect,
    migrate,
    schema_version,
    transaction,
)
from skyscan.ops.catalog.export import MANIFEST_SCHEMA, export_catalog
from skyscan.ops.catalog.listing import (
    CATALOG_SCHEMA,
    COLUMN_NAMES,
    COLUMNS,
    catalog_document,
    catalog_rows,
    format_csv,
    format_rows,
    format_table,
)
from skyscan.ops.catalog.scans import (
    IngestResult,
    ScanRow,
    add_scan,
    alert_name,
    claim_scan,
    count_running,
    fail_attempt,
    get_scan,
    mark_cancelled,
    mark_done,
    notify_pending,
    queue_scan,
    record_file,
    record_notification,
    record_progress,
    record_quarantine,
    record_revision,
    resolve_alert,
    scans_in_state,
    scans_of_alert,
    set_launched,
)
from skyscan.ops.catalog.stamps import event_time_key, parse_since, parse_stamp, retry_time, utcnow
from skyscan.ops.catalog.summaries import SummaryRow, parse_summary, read_summary_row, summary_row

__all__ = [
    "ACTIVE_STATES",
    "CATALOG_SCHEMA",
    "COLUMNS",
    "COLUMN_NAMES",
    "MANIFEST_SCHEMA",
    "MIGRATIONS",
    "NOTIFY_STATES",
    "SCAN_STATES",
    "SCHEMA_VERSION",
    "IngestResult",
    "ScanRow",
    "SummaryRow",
    "add_scan",
    "alert_name",
    "catalog_document",
    "catalog_rows",
    "claim_scan",
    "connect",
    "count_running",
    "event_time_key",
    "export_catalog",
    "fail_attempt",
    "format_csv",
    "format_rows",
    "format_table",
    "get_scan",
    "mark_cancelled",
    "mark_done",
    "migrate",
    "notify_pending",
    "parse_since",
    "parse_stamp",
    "parse_summary",
    "queue_scan",
    "read_summary_row",
    "record_file",
    "record_notification",
    "record_progress",
    "record_quarantine",
    "record_revision",
    "resolve_alert",
    "retry_time",
    "scans_in_state",
    "scans_of_alert",
    "schema_version",
    "set_launched",
    "summary_row",
    "transaction",
    "utcnow",
]
