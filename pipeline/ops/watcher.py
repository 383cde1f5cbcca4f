"""The alert watcher behind ``skyscan watch``: inbox -> archive -> catalog -> scans -> outbox.

Designed to be called by cron every minute (``--once``) or to run as a loop. One pass (:class:`Watcher`)
ingests the inbox (:mod:`skyscan.ops.ingest`), queues received scans, tracks the running ones, finishes the
done ones (publishing them, :mod:`skyscan.ops.publish`), starts queued ones and sends notifications. Queueing,
starting, tracking and finishing are the scheduler that the scan service shares (:mod:`skyscan.ops.scheduler`,
which explains why every step is safe to interrupt, including by SIGKILL). A single instance runs at a time
(``flock`` on the lock file); a second one logs a line and exits 0.
"""

from __future__ import annotations

import contextlib
import fcntl
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

from skyscan.errors import SkyscanError
from skyscan.ops.catalog import scans
from skyscan.ops.catalog.db import connect
from skyscan.ops.catalog.scans import ScanRow
from skyscan.ops.cycle import ITEM_ERRORS, CycleReport, run_stages
from skyscan.ops.ingest import Inbox
from skyscan.ops.logs import close_log, log_file_only, one_line, open_log
from skyscan.ops.scheduler import (
    Scheduler,
    SchedulerSettings,
    observe_scan,
    progress_fingerprint,
    submitted_cluster,
)
from skyscan.ops.watchconfig import WatchConfig
from skyscan.products.summary import PRODUCT_FILES
from skyscan.timestamps import utcnow

__all__ = [
    "CycleReport",
    "Watcher",
    "observe_scan",
    "progress_fingerprint",
    "run_watch",
    "scheduler_settings",
    "submitted_cluster",
]


def scheduler_settings(cfg: WatchConfig) -> SchedulerSettings:
    """The scheduler's part of a watch.yaml (the watcher publishes to its outbox and may notify)."""
    return SchedulerSettings(
        scans=cfg.scans, backend=cfg.backend, site=cfg.site, scan_config=cfg.scan_config, jobs=cfg.jobs,
        max_running=cfg.max_running, max_attempts=cfg.max_attempts, retry_delay_seconds=cfg.retry_delay_seconds,
        stall_seconds=cfg.stall_seconds, kill_grace_seconds=cfg.kill_grace_seconds, scan_command=cfg.scan_command,
        submit_command=cfg.submit_command, submit_timeout_seconds=cfg.submit_timeout_seconds, outbox=cfg.outbox,
        outbox_base_url=cfg.outbox_base_url, notify=cfg.notify_command is not None, service_url=cfg.service_url,
        service_token_file=cfg.service_token_file, calibration=cfg.calibration,
    )


# ---------------------------------------------------------------------------------------------------------------
# The watcher
# ---------------------------------------------------------------------------------------------------------------
class Watcher(Scheduler):
    """One pass over inbox, catalog and scans: ingest, then the scheduler's queue, track and start, then notify."""

    def __init__(self, cfg: WatchConfig, conn: sqlite3.Connection, log: logging.Logger) -> None:
        super().__init__(scheduler_settings(cfg), conn, log)
        self.cfg = cfg
        self.inbox = Inbox(cfg, conn, log)

    def run_once(self) -> CycleReport:
        report = CycleReport()
        for folder in (self.cfg.inbox, self.cfg.archive, self.cfg.quarantine, self.cfg.outbox, self.cfg.scans):
            folder.mkdir(parents=True, exist_ok=True)
        # Each stage guarded: an unexpected error in one (an unreadable inbox) never stops tracking, publishing
        # or notifying. A catalog (SQLite) error is not a stage's fault: it ends the pass (exit 1).
        run_stages((self.inbox.ingest, self.queue_received, self.track, self.start_queued, self.calibrate,
                    self.notify), report, self.log)
        return report

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
        env.pop("SKYSCAN_WATCH_REISSUE", None)
        if scan.calibration_state == "done":  # the outbox holds the calibrated re-issue (reissue.json says so)
            env["SKYSCAN_WATCH_REISSUE"] = "calibrated"
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
            self.log.info("notified %s (scan %d%s): %s", scan.name, scan.id,
                          ", calibrated re-issue" if scan.calibration_state == "done" else "", shlex.join(cmd))
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
