"""The operator commands on the catalog: ``skyscan cancel`` and ``skyscan rescan``.

They run beside a watcher (from another shell or a script): every change is one of the catalog's
compare-and-set transactions, so neither undoes the other's work.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from skyscan.errors import InputError, SkyscanError
from skyscan.graph.layout import batch_name
from skyscan.ops.catalog import scans
from skyscan.ops.catalog.db import ACTIVE_STATES
from skyscan.ops.launcher import kill_detached, launch_dir_of
from skyscan.timestamps import utcnow

__all__ = ["cancel_alert", "cancel_scan", "rescan_alert"]


def cancel_alert(conn: sqlite3.Connection, spec: str, *, force: bool = False, grace: float = 10.0) -> list[str]:
    """Cancel every active scan of the alert: stop its process group / remove its DAG, mark it cancelled.

    ``grace`` is the time (s) between SIGTERM and SIGKILL of a local scan; ``force`` marks a condor scan
    cancelled even when its DAGMan job cannot be removed. Returns one message per scan.
    """
    from skyscan.condor.schedd import remove_dagman_job  # the condor layer (and its settings) only when cancelling

    alert_id = scans.resolve_alert(conn, spec)
    active = scans.scans_of_alert(conn, alert_id, *ACTIVE_STATES)
    if not active:
        raise SkyscanError(f"alert {spec}: no active scan to cancel")
    messages = []
    now = utcnow()
    for scan in active:
        reason = f"cancelled by operator at {now}"
        if scan.state == "running" and scan.backend == "condor":
            assert scan.outdir is not None
            try:
                remove_dagman_job(scan.cluster_id, batch_name(scan.run_id, scan.event_id), scan.outdir)
            except SkyscanError as exc:
                if not force:
                    raise
                reason += f" (forced; {exc})"
        if not scans.mark_cancelled(conn, scan.id, reason, now):
            messages.append(f"scan {scan.id} of {scan.name}: no longer active, left as it is")
            continue
        if scan.state == "running" and scan.backend != "condor" and scan.outdir:
            if not kill_detached(launch_dir_of(scan.outdir), scan.pid, grace):
                messages.append(f"scan {scan.id} of {scan.name}: cancelled, but its process group could not be "
                                f"stopped (see {launch_dir_of(scan.outdir)})")
                continue
        messages.append(f"scan {scan.id} of {scan.name}: cancelled (was {scan.state})")
    return messages


def rescan_alert(conn: sqlite3.Connection, spec: str, scan_config: str | os.PathLike[str] | None = None) -> int:
    """Queue a new scan of the alert's latest revision (in a new OUTDIR); the watcher starts it."""
    alert_id = scans.resolve_alert(conn, spec)
    config = None
    if scan_config is not None:
        p = Path(scan_config)
        if not p.is_file():
            raise InputError(f"--config: {p}: no such file")
        config = str(p.absolute())
    return int(scans.add_scan(conn, alert_id, config, utcnow()))


def cancel_scan(conn: sqlite3.Connection, scan_id: int, *, by: str | None, grace: float = 5.0) -> tuple[bool, str]:
    """Abort one scan (the scan service's ``DELETE``): mark it cancelled, then stop what runs.

    A local scan's process group gets SIGTERM, then SIGKILL after ``grace`` s; a condor scan's DAGMan job is
    removed (a failure to remove it is part of the message, the scan stays cancelled). Idempotent: a scan that is
    no longer active is left as it is. Returns (whether this call cancelled it, a one-line message).
    """
    scan = scans.get_scan(conn, scan_id)
    now = utcnow()
    reason = f"aborted by {by or 'anonymous'} at {now}"
    if not scans.mark_cancelled(conn, scan.id, reason, now, by=by):
        return False, f"scan {scan.id} of {scan.name}: {scan.state}, left as it is"
    if scan.state != "running" or not scan.outdir:
        return True, f"scan {scan.id} of {scan.name}: cancelled (was {scan.state})"
    if scan.backend == "condor":
        from skyscan.condor.schedd import remove_dagman_job

        try:
            remove_dagman_job(scan.cluster_id, batch_name(scan.run_id, scan.event_id), scan.outdir)
        except SkyscanError as exc:
            return True, f"scan {scan.id} of {scan.name}: cancelled, but its DAGMan job was not removed: {exc}"
        return True, f"scan {scan.id} of {scan.name}: cancelled, DAGMan job removed"
    if not kill_detached(launch_dir_of(scan.outdir), scan.pid, grace):
        return True, f"scan {scan.id} of {scan.name}: cancelled, but its process group could not be stopped"
    return True, f"scan {scan.id} of {scan.name}: cancelled, its processes stopped"
