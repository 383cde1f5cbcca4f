"""The alert watcher behind ``skyscan watch``: inbox -> archive -> catalog -> scans -> outbox.

Designed to be called by cron every minute (``--once``) or to run as a loop. One pass (:class:`Watcher`)
ingests the inbox (:mod:`skyscan.ops.ingest`), queues received scans, tracks the running ones, finishes the
done ones (publishing them, :mod:`skyscan.ops.publish`), starts queued ones and sends notifications. Every
step is safe to interrupt at any point, including by SIGKILL:

* a scan is claimed (queued -> running, committed) before its process starts, and that process holds
  an ``flock`` on ``<OUTDIR>.launch/scan.lock`` for as long as it lives (:mod:`skyscan.ops.launcher`);
  a local scan whose lock is free and which is not done has vanished, and is retried in the same OUTDIR
  (``skyscan run`` resumes);
* a condor scan's DAGMan job is named by the submission record ``skyscan submit`` leaves in OUTDIR
  (:mod:`skyscan.ops.submission`); the queue is asked through :mod:`skyscan.condor.schedd`;
* a single instance runs at a time (``flock`` on the lock file); a second one logs a line and exits 0.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shlex
import signal
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from skyscan.errors import InputError, SkyscanError
from skyscan.graph.layout import ScanLayout, batch_name
from skyscan.ops.catalog import scans, summaries
from skyscan.ops.catalog.db import connect
from skyscan.ops.catalog.scans import ScanRow
from skyscan.ops.catalog.stamps import retry_time
from skyscan.ops.cycle import ITEM_ERRORS, CycleReport
from skyscan.ops.ingest import Inbox
from skyscan.ops.launcher import (
    ATTEMPT_MARK,
    EXIT_NAME,
    LOCK_NAME,
    LOG_NAME,
    PID_NAME,
    StillRunning,
    kill_detached,
    last_log_line,
    launch_detached,
    launch_dir_of,
    lock_held,
    read_int,
)
from skyscan.ops.logs import close_log, log_file_only, one_line, open_log
from skyscan.ops.publish import publish_outbox
from skyscan.ops.submission import cluster_from_text, read_submission
from skyscan.ops.watchconfig import WatchConfig
from skyscan.products.summary import PRODUCT_FILES
from skyscan.timestamps import parse_stamp, utcnow

if TYPE_CHECKING:
    from skyscan.graph.status import ScanStatus

__all__ = [
    "CycleReport",
    "Watcher",
    "observe_scan",
    "progress_fingerprint",
    "run_watch",
    "submitted_cluster",
]

# ---------------------------------------------------------------------------------------------------------------
# What a scan directory shows
# ---------------------------------------------------------------------------------------------------------------
def observe_scan(outdir: str | os.PathLike[str]) -> ScanStatus:
    """The status of a scan directory as ``skyscan status`` reads it (:func:`skyscan.graph.status.scan_status`).

    A directory that is not (yet) a scan directory -- the scan process has not written its DAG -- counts as
    ``not-started``; one that cannot be read counts as ``unknown`` (a broken directory must not stop the pass).
    """
    from skyscan.graph.status import ScanStatus, scan_status  # only when a scan runs: keeps `watch` start-up fast

    def placeholder(state: str) -> ScanStatus:
        return ScanStatus(outdir=str(outdir), backend="unknown", state=state, stages=[], failed_nodes=[],
                          end_state=None, updated=utcnow())

    try:
        return scan_status(Path(outdir))
    except InputError:
        return placeholder("not-started")
    except Exception:  # a broken scan directory must not stop the pass
        return placeholder("unknown")


def progress_fingerprint(status: ScanStatus) -> str:
    """What counts as progress: a change of the state, the stages' node/pixel counts or the failed nodes.

    Not the ``updated`` time: DAGMan rewrites its node status file every 30 s even when nothing moves.
    """
    key = {"state": status.state, "stages": [s.as_dict() for s in status.stages],
           "failed_nodes": list(status.failed_nodes)}
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def _failed_nodes(status: ScanStatus) -> str:
    nodes = [str(n) for n in status.failed_nodes]
    if not nodes:
        return ""
    more = f" and {len(nodes) - 5} more" if len(nodes) > 5 else ""
    return f" (failed nodes: {', '.join(nodes[:5])}{more})"


def submitted_cluster(outdir: str, since: str, output: str) -> int | None:
    """The DAGMan job's cluster id: from the submission record written at or after ``since`` (this attempt's
    UTC stamp), else -- a custom ``submit_command`` that writes none -- from the command's output."""
    try:
        record = read_submission(outdir)
    except InputError:
        record = None
    if record is not None and record.submitted >= since:
        return record.cluster_id
    return cluster_from_text(output)


# ---------------------------------------------------------------------------------------------------------------
# The watcher
# ---------------------------------------------------------------------------------------------------------------
class Watcher:
    """One pass over inbox, catalog and scans: ingest, queue, track, start, notify."""

    def __init__(self, cfg: WatchConfig, conn: sqlite3.Connection, log: logging.Logger) -> None:
        self.cfg = cfg
        self.conn = conn
        self.log = log
        self.inbox = Inbox(cfg, conn, log)

    def run_once(self) -> CycleReport:
        report = CycleReport()
        for folder in (self.cfg.inbox, self.cfg.archive, self.cfg.quarantine, self.cfg.outbox, self.cfg.scans):
            folder.mkdir(parents=True, exist_ok=True)
        # Each stage guarded: an unexpected error in one (an unreadable inbox) never stops tracking, publishing
        # or notifying. A catalog (SQLite) error is not a stage's fault: it ends the pass (exit 1).
        for stage in (self.inbox.ingest, self.queue_received, self.track, self.start_queued, self.notify):
            try:
                stage(report)
            except sqlite3.Error:
                raise
            except ITEM_ERRORS as exc:
                report.errors += 1
                self.log.error("%s stage failed, the pass goes on: %s", stage.__name__,
                               one_line(f"{exc.__class__.__name__}: {exc}"))
        return report

    # -- queue and start -----------------------------------------------------------------------------------------
    def queue_received(self, report: CycleReport | None = None) -> None:
        for scan in scans.scans_in_state(self.conn, "received"):
            outdir = self.cfg.scans / f"{scan.name}-s{scan.id}"
            if scans.queue_scan(self.conn, scan.id, str(outdir), utcnow()):
                self.log.info("scan %d of %s queued, output %s", scan.id, scan.name, outdir)

    def start_queued(self, report: CycleReport) -> None:
        running = scans.count_running(self.conn)
        for scan in scans.scans_in_state(self.conn, "queued"):
            if running >= self.cfg.max_running:
                break
            now = utcnow()
            if scan.not_before and scan.not_before > now:
                continue
            try:
                if self.start(scan, now, report):
                    running += 1
                    report.started += 1
            except sqlite3.Error:
                raise
            except ITEM_ERRORS as exc:
                report.errors += 1
                self.log.error("scan %d of %s: %s", scan.id, scan.name, one_line(str(exc)))

    def scan_env(self, scan: ScanRow, attempt: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "PYTHONUNBUFFERED": "1",
            "SKYSCAN_WATCH_ALERT": scan.name,
            "SKYSCAN_WATCH_SCAN_ID": str(scan.id),
            "SKYSCAN_WATCH_ATTEMPT": str(attempt),
        })
        return env

    def scan_config_of(self, scan: ScanRow) -> str | None:
        if scan.scan_config:
            return str(scan.scan_config)
        return str(self.cfg.scan_config) if self.cfg.scan_config else None

    def start(self, scan: ScanRow, now: str, report: CycleReport) -> bool:
        """Claim (committed), then launch; a launch error is a failed attempt with its reason."""
        assert scan.outdir is not None
        backend = scan.backend or self.cfg.backend
        launch_dir = launch_dir_of(scan.outdir)
        if backend == "local" and lock_held(launch_dir / LOCK_NAME):
            self.log.warning("scan %d of %s: a previous attempt still runs in %s; not starting another",
                             scan.id, scan.name, scan.outdir)
            return False
        if not scans.claim_scan(self.conn, scan.id, backend, now):
            return False
        attempt = scan.attempts + 1
        config = self.scan_config_of(scan)
        try:
            if backend == "local":
                cmd = [*self.cfg.scan_command, scan.archive_path, "-o", scan.outdir]
                if config:
                    cmd += ["--config", config]
                if self.cfg.jobs:
                    cmd += ["--jobs", str(self.cfg.jobs)]
                pgid = launch_detached(cmd, launch_dir, self.scan_env(scan, attempt), f"{now} attempt {attempt}")
                scans.set_launched(self.conn, scan.id, pid=pgid, now=utcnow())
                self.log.info("started scan %d of %s (attempt %d/%d, local, process group %d)", scan.id,
                              scan.name, attempt, self.cfg.max_attempts, pgid)
            else:
                cluster = self.submit(scan, attempt, config, launch_dir, now)
                scans.set_launched(self.conn, scan.id, cluster_id=cluster, now=utcnow())
                self.log.info("submitted scan %d of %s (attempt %d/%d, condor, cluster %s)", scan.id, scan.name,
                              attempt, self.cfg.max_attempts, cluster if cluster is not None else "unknown")
        except StillRunning:
            self.attempt_failed(scan, "a previous attempt still holds the scan directory", report)
            return False
        except ITEM_ERRORS as exc:
            self.attempt_failed(scan, f"could not start: {one_line(str(exc))}", report)
            return False
        return True

    def submit(self, scan: ScanRow, attempt: int, config: str | None, launch_dir: Path, now: str) -> int | None:
        """``skyscan submit`` in the foreground (it returns once DAGMan has the DAG); its cluster id."""
        assert scan.outdir is not None
        cmd = [*self.cfg.submit_command, scan.archive_path, "-o", scan.outdir]
        if self.cfg.site:
            cmd += ["--site", self.cfg.site]
        if config:
            cmd += ["--config", config]
        launch_dir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=launch_dir,
                              env=self.scan_env(scan, attempt), timeout=self.cfg.submit_timeout_seconds)
        with (launch_dir / LOG_NAME).open("a", encoding="utf-8") as log:
            log.write(f"{ATTEMPT_MARK}{now} attempt {attempt}: {shlex.join(cmd)}\n{proc.stdout}{proc.stderr}")
            log.write(f"(exit {proc.returncode})\n")
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
            raise SkyscanError(f"submit exited with code {proc.returncode}: {lines[-1] if lines else 'no output'}")
        return submitted_cluster(scan.outdir, now, proc.stdout + proc.stderr)

    def attempt_failed(self, scan: ScanRow, reason: str, report: CycleReport) -> None:
        now = utcnow()
        state = scans.fail_attempt(
            self.conn, scan.id, reason, max_attempts=self.cfg.max_attempts,
            retry_at=retry_time(now, self.cfg.retry_delay_seconds), now=now,
        )
        if state == "queued":
            report.retried += 1
            self.log.warning("scan %d of %s: attempt failed, will resume in the same directory: %s", scan.id,
                             scan.name, reason)
        elif state == "failed":
            report.failed += 1
            self.log.error("scan %d of %s failed after %d attempts: %s", scan.id, scan.name,
                           self.cfg.max_attempts, reason)

    # -- track and finish ----------------------------------------------------------------------------------------
    def track(self, report: CycleReport) -> None:
        for scan in scans.scans_in_state(self.conn, "running"):
            try:
                self.track_one(scan, report)
            except sqlite3.Error:
                raise
            except ITEM_ERRORS as exc:
                report.errors += 1
                self.log.error("scan %d of %s: tracking failed: %s", scan.id, scan.name, one_line(str(exc)))

    def track_one(self, scan: ScanRow, report: CycleReport) -> None:
        """Done -> finish; process gone (local) or DAG gone (condor) -> failed attempt; stalled -> kill, retry."""
        assert scan.outdir is not None
        launch_dir = launch_dir_of(scan.outdir)
        if scan.backend == "condor":
            from skyscan.condor.schedd import dagman_job_present  # the condor layer only when a condor scan runs

            alive = dagman_job_present(scan.cluster_id)
        else:
            alive = lock_held(launch_dir / LOCK_NAME)
            if alive and scan.pid is None:  # the watcher died between launch and recording the pid
                pgid = read_int(launch_dir / PID_NAME)
                if pgid is not None:
                    scans.set_launched(self.conn, scan.id, pid=pgid, now=utcnow())
                    self.log.info("scan %d of %s: recovered process group %d", scan.id, scan.name, pgid)
        status = observe_scan(scan.outdir)
        if status.state == "done" and not (scan.backend != "condor" and alive):
            self.finish(scan, report)
            return
        if scan.backend != "condor" and not alive:
            self.attempt_failed(scan, self.exit_reason(status, launch_dir), report)
            return
        if scan.backend == "condor":
            if status.state == "failed":
                self.attempt_failed(scan, "the DAG failed" + _failed_nodes(status), report)
                return
            if alive is False:
                self.attempt_failed(scan, f"the DAGMan job (cluster {scan.cluster_id}) left the queue before "
                                          "the scan finished", report)
                return
        now = utcnow()
        fingerprint = progress_fingerprint(status)
        if fingerprint != scan.progress:
            scans.record_progress(self.conn, scan.id, fingerprint, now)
            return
        quiet = (parse_stamp(now) - parse_stamp(scan.progress_at or now)).total_seconds()
        if quiet > self.cfg.stall_seconds:
            self.attempt_failed(scan, f"no progress for {quiet:.0f} s ({self.stop(scan, launch_dir)})", report)

    def stop(self, scan: ScanRow, launch_dir: Path) -> str:
        """Stop a stalled scan (remove its DAGMan job / kill its process group); what happened, for the reason."""
        assert scan.outdir is not None
        if scan.backend == "condor":
            from skyscan.condor.schedd import remove_dagman_job

            try:
                remove_dagman_job(scan.cluster_id, batch_name(scan.run_id, scan.event_id), scan.outdir)
                return "DAGMan job removed"
            except SkyscanError as exc:
                return str(exc)
        stopped = kill_detached(launch_dir, scan.pid, self.cfg.kill_grace_seconds)
        return "scan process killed" if stopped else "scan process could not be stopped"

    def exit_reason(self, status: ScanStatus, launch_dir: Path) -> str:
        """Why a local scan whose process is gone is not done: exit code, failed nodes, its last log line."""
        rc = read_int(launch_dir / EXIT_NAME)
        if rc is None:
            reason = "the scan process vanished before the scan finished"
        elif rc == 0:
            reason = f"the scan command exited with code 0 but the scan is {status.state}"
        else:
            reason = f"the scan command exited with code {rc}"
        reason += _failed_nodes(status)
        tail = last_log_line(launch_dir)
        return f"{reason}: {tail}" if tail else reason

    def finish(self, scan: ScanRow, report: CycleReport) -> None:
        assert scan.outdir is not None
        summary_path = ScanLayout.at(scan.outdir).summary
        try:
            summary = summaries.read_summary_row(summary_path)
        except InputError as exc:
            self.attempt_failed(scan, f"the scan is done but its summary is unusable: {one_line(str(exc))}", report)
            return
        box = self.cfg.outbox / scan.name
        missing = publish_outbox(Path(scan.outdir), box)
        if scans.mark_done(self.conn, scan.id, summary, str(summary_path),
                           notify=self.cfg.notify_command is not None, now=utcnow()):
            report.done += 1
            self.log.info("scan %d of %s done: RA %.3f Dec %.3f, 90%% area %s deg2; products in %s%s", scan.id,
                          scan.name, summary.ra_deg, summary.dec_deg,
                          "-" if summary.area_90_deg2 is None else f"{summary.area_90_deg2:.2f}", box,
                          f" (missing: {', '.join(missing)})" if missing else "")

    # -- notification --------------------------------------------------------------------------------------------
    def notify(self, report: CycleReport) -> None:
        if self.cfg.notify_command is None:
            return
        for scan in scans.notify_pending(self.conn, self.cfg.notify_max_attempts):
            try:
                self.notify_one(scan, report)
            except sqlite3.Error:
                raise
            except ITEM_ERRORS as exc:
                report.errors += 1
                self.log.error("notification of %s (scan %d) failed: %s", scan.name, scan.id,
                               one_line(f"{exc.__class__.__name__}: {exc}"))

    def notify_one(self, scan: ScanRow, report: CycleReport) -> None:
        """Run the notify command for one finished scan and record the outcome."""
        assert self.cfg.notify_command is not None
        summary = self.cfg.outbox / scan.name / PRODUCT_FILES["summary"]
        cmd = [*self.cfg.notify_command, str(summary)]
        env = dict(os.environ, SKYSCAN_WATCH_ALERT=scan.name, SKYSCAN_WATCH_SCAN_ID=str(scan.id),
                   SKYSCAN_WATCH_OUTBOX=str(summary.parent))
        error: str | None = None
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                                  timeout=self.cfg.notify_timeout_seconds)
            if proc.returncode != 0:
                lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
                error = f"exit {proc.returncode}" + (f": {one_line(lines[-1])}" if lines else "")
        except (OSError, ValueError, subprocess.SubprocessError) as exc:  # ValueError: a NUL in an argument
            error = one_line(f"{exc.__class__.__name__}: {exc}")
        state = scans.record_notification(self.conn, scan.id, error,
                                          max_attempts=self.cfg.notify_max_attempts, now=utcnow())
        if error is None:
            report.notified += 1
            self.log.info("notified %s (scan %d): %s", scan.name, scan.id, shlex.join(cmd))
        elif state == "failed":
            self.log.error("notification of %s (scan %d) failed, giving up after %d attempts: %s", scan.name,
                           scan.id, self.cfg.notify_max_attempts, error)
        else:
            self.log.warning("notification of %s (scan %d) failed, will retry: %s", scan.name, scan.id, error)


# ---------------------------------------------------------------------------------------------------------------
# Entry point: lock, log, loop
# ---------------------------------------------------------------------------------------------------------------
def acquire_lock(path: Path) -> int | None:
    """The single-instance lock: an open, flock'ed descriptor, or None when another watcher holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def run_watch(cfg: WatchConfig, *, once: bool = True, stop: threading.Event | None = None) -> CycleReport | None:
    """``skyscan watch``: one pass (``once``) or passes every ``poll_seconds`` until SIGTERM/SIGINT/``stop``.

    Returns the last pass's report, or None when another watcher holds the lock. Per-alert problems are
    logged and never raised; a broken catalog database raises :class:`SkyscanError`.
    """
    log = open_log(cfg)
    try:
        fd = acquire_lock(cfg.lock_file)
        if fd is None:
            log.info("another watcher holds %s; nothing to do", cfg.lock_file)
            return None
        try:
            conn = connect(cfg.database)
            try:
                watcher = Watcher(cfg, conn, log)
                stop_event = stop or threading.Event()
                with _stop_on_signals(stop_event) if not once else contextlib.nullcontext():
                    while True:
                        report = watcher.run_once()
                        if once or stop_event.wait(cfg.poll_seconds):
                            return report
            finally:
                conn.close()
        except sqlite3.Error as exc:
            log_file_only(log, f"catalog database {cfg.database}: {exc}")
            raise SkyscanError(f"catalog database {cfg.database}: {exc}") from None
        except SkyscanError as exc:
            log_file_only(log, str(exc))  # stderr gets the CLI's one-line error
            raise
        finally:
            os.close(fd)
    finally:
        close_log(log)
