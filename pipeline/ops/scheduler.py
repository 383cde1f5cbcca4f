"""The scheduler shared by the alert watcher and the scan service: queue -> claim -> launch -> track -> finish.

One implementation (:class:`Scheduler`) drives the catalog's scans for both ``skyscan watch`` (one pass per cron
call or loop, :mod:`skyscan.ops.watcher`) and ``skyscan serve`` (a pass every ``poll_seconds`` in the service's
scheduler thread, :mod:`skyscan.service.worker`). Every step is safe to interrupt at any point, including by
SIGKILL:

* a scan is claimed (queued -> running, committed) before its process starts, and that process holds an
  ``flock`` on ``<OUTDIR>.launch/scan.lock`` for as long as it lives (:mod:`skyscan.ops.launcher`); a local scan
  whose lock is free and which is not done has vanished, and is retried in the same OUTDIR (``skyscan run``
  resumes); a claim whose process never started (the claimer died between claim and launch: no process group
  file was written for it) is given back, without spending an attempt or waiting for the retry delay;
* a condor scan's DAGMan job is named by the submission record ``skyscan submit`` leaves in OUTDIR
  (:mod:`skyscan.ops.submission`); the queue is asked through :mod:`skyscan.condor.schedd`;
* a watcher's ``backend: service`` scan is posted to a scan service (:class:`skyscan.client.ServiceClient`)
  and followed through its API; a repeated submission is answered with the same scan there, so a claimer that
  died after posting loses nothing;
* queued scans start highest priority first (a priority >= 100 is the realtime lane and starts before any lower
  one), first queued first within equal priority, never more than ``max_running`` at once;
* with a ``calibration:`` block, a done scan of one of its streams is calibrated and re-merged in the background
  (:mod:`skyscan.ops.calibration`): its calibration never blocks a pass and never changes the scan's state.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shlex
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from skyscan.errors import InputError, SkyscanError
from skyscan.graph.layout import ScanLayout, batch_name
from skyscan.ops.catalog import scans, summaries
from skyscan.ops.catalog.scans import ScanRow
from skyscan.ops.catalog.stamps import retry_time
from skyscan.ops.cycle import ITEM_ERRORS, CycleReport, run_stages
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
from skyscan.ops.logs import one_line
from skyscan.ops.publish import publish_outbox
from skyscan.ops.submission import cluster_from_text, read_submission
from skyscan.ops.watchconfig import CalibrationSettings, default_scan_command, default_submit_command
from skyscan.products.summary import PRODUCT_FILES
from skyscan.reco import untrusted
from skyscan.timestamps import parse_stamp, utcnow

if TYPE_CHECKING:
    from skyscan.client import ServiceClient
    from skyscan.graph.status import ScanStatus

__all__ = [
    "REALTIME_PRIORITY",
    "Scheduler",
    "SchedulerSettings",
    "observe_scan",
    "progress_document",
    "progress_fingerprint",
    "submitted_cluster",
]

REALTIME_PRIORITY = 100
"""A scan with at least this priority is in the realtime lane: it starts before any lower-priority queued scan."""


@dataclass(frozen=True)
class SchedulerSettings:
    """What the scheduler needs of a watch.yaml or a serve.yaml (seconds for every duration)."""

    scans: Path  # the folder of the scan directories
    backend: str = "local"  # local | condor: the backend of a scan that names none
    site: str | None = None  # site profile for `skyscan submit --site`
    scan_config: Path | None = None  # default scan configuration of a scan that names none
    jobs: int | None = None  # `skyscan run --jobs`
    max_running: int = 2
    max_attempts: int = 3
    retry_delay_seconds: float = 300.0
    stall_seconds: float = 6 * 3600.0
    kill_grace_seconds: float = 10.0
    scan_command: tuple[str, ...] = field(default_factory=default_scan_command)
    submit_command: tuple[str, ...] = field(default_factory=default_submit_command)
    submit_timeout_seconds: float = 300.0
    outbox: Path | None = None  # where done scans are published (the watcher); None: not published
    outbox_base_url: str | None = None  # the address the outbox is served at: notices get healpix_url
    notify: bool = False  # done scans get a pending notification (the watcher's notify_command)
    service_url: str | None = None  # backend service: the scan service that runs the scans
    service_token_file: Path | None = None  # backend service: a file holding a submit token
    calibration: CalibrationSettings | None = None  # automatic calibration of done scans (None: off)


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


def progress_document(status: ScanStatus) -> str:
    """The per-stage progress the scan service shows, as JSON: ``[{stage, nside, done, total}]`` in pixels."""
    return json.dumps([
        {"stage": s.stage, "nside": s.nside, "done": s.pixels.done,
         "total": s.pixels.done + s.pixels.running + s.pixels.failed + s.pixels.waiting}
        for s in status.stages
    ])


# ---------------------------------------------------------------------------------------------------------------
# The scheduler
# ---------------------------------------------------------------------------------------------------------------
class Scheduler:
    """Queue, start, track and finish the catalog's scans (the watcher's and the service's one implementation)."""

    def __init__(self, settings: SchedulerSettings, conn: sqlite3.Connection, log: logging.Logger) -> None:
        self.settings = settings
        self.conn = conn
        self.log = log
        self._service: ServiceClient | None = None

    def schedule(self, report: CycleReport) -> None:
        """One scheduling pass: queue received scans, track running ones, start queued ones, move calibrations on."""
        run_stages((self.queue_received, self.track, self.start_queued, self.calibrate), report, self.log)

    def calibrate(self, report: CycleReport) -> None:
        """Follow, finish and start the automatic calibrations of done scans (nothing without ``calibration:``)."""
        if self.settings.calibration is None:
            return
        from skyscan.ops.calibration import Calibrator

        Calibrator(self.settings, self.settings.calibration, self.conn, self.log).run(report)

    def calibrates(self, scan: ScanRow) -> bool:
        """True when this scan, once done, is to be calibrated (its stream is in ``calibration.streams``)."""
        cal = self.settings.calibration
        return cal is not None and cal.wants(scan.stream) and (scan.backend or self.settings.backend) != "service"

    # -- queue and start -----------------------------------------------------------------------------------------
    def queue_received(self, report: CycleReport | None = None) -> None:
        for scan in scans.scans_in_state(self.conn, "received"):
            outdir = self.settings.scans / f"{scan.name}-s{scan.id}"
            if scans.queue_scan(self.conn, scan.id, str(outdir), utcnow()):
                self.log.info("scan %d of %s queued, output %s", scan.id, scan.name, outdir)

    def start_queued(self, report: CycleReport) -> None:
        running = scans.count_running(self.conn)
        for scan in scans.queued_in_order(self.conn):
            if running >= self.settings.max_running:
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
        return str(self.settings.scan_config) if self.settings.scan_config else None

    def start(self, scan: ScanRow, now: str, report: CycleReport) -> bool:
        """Claim (committed), then launch; a launch error is a failed attempt with its reason."""
        assert scan.outdir is not None
        backend = scan.backend or self.settings.backend
        launch_dir = launch_dir_of(scan.outdir)
        if backend == "local" and lock_held(launch_dir / LOCK_NAME):
            self.log.warning("scan %d of %s: a previous attempt still runs in %s; not starting another",
                             scan.id, scan.name, scan.outdir)
            return False
        if backend == "local":  # a previous attempt's process group file would hide a claim that never started
            with contextlib.suppress(FileNotFoundError):
                (launch_dir / PID_NAME).unlink()
        if not scans.claim_scan(self.conn, scan.id, backend, now):
            return False
        attempt = scan.attempts + 1
        config = self.scan_config_of(scan)
        try:
            if backend == "service":
                try:
                    remote = self.service_submit(scan)
                except InputError as exc:
                    if not str(exc).startswith("cannot reach service"):
                        raise
                    scans.release_claim(self.conn, scan.id, one_line(str(exc)), utcnow())  # not an attempt
                    self.log.warning("scan %d of %s: %s; tried again next pass", scan.id, scan.name,
                                     one_line(str(exc)))
                    return False
                scans.set_launched(self.conn, scan.id, remote_scan_id=remote, now=utcnow())
                self.log.info("handed scan %d of %s to the service %s (attempt %d/%d, its scan %d)", scan.id,
                              scan.name, self.settings.service_url, attempt, self.settings.max_attempts, remote)
            elif backend == "local":
                cmd = [*self.settings.scan_command, scan.archive_path, "-o", scan.outdir]
                if config:
                    cmd += ["--config", config]
                if self.settings.jobs:
                    cmd += ["--jobs", str(self.settings.jobs)]
                pgid = launch_detached(cmd, launch_dir, self.scan_env(scan, attempt), f"{now} attempt {attempt}")
                if not scans.set_launched(self.conn, scan.id, pid=pgid, now=utcnow()):
                    kill_detached(launch_dir, pgid, self.settings.kill_grace_seconds)
                    self.log.info("scan %d of %s was cancelled while starting; its process was stopped", scan.id,
                                  scan.name)
                    return False
                self.log.info("started scan %d of %s (attempt %d/%d, local, process group %d)", scan.id,
                              scan.name, attempt, self.settings.max_attempts, pgid)
            else:
                cluster = self.submit(scan, attempt, config, launch_dir, now)
                scans.set_launched(self.conn, scan.id, cluster_id=cluster, now=utcnow())
                self.log.info("submitted scan %d of %s (attempt %d/%d, condor, cluster %s)", scan.id, scan.name,
                              attempt, self.settings.max_attempts, cluster if cluster is not None else "unknown")
        except StillRunning:
            self.attempt_failed(scan, "a previous attempt still holds the scan directory", report)
            return False
        except ITEM_ERRORS as exc:
            self.attempt_failed(scan, f"could not start: {one_line(str(exc))}", report)
            return False
        return True

    # -- backend service: the scan runs at a scan service, followed through its API --------------------------------
    def service(self) -> ServiceClient:
        """The client of the scan service (backend service), with the token read from its file."""
        if self._service is None:
            from skyscan.client import ServiceClient

            if not self.settings.service_url or self.settings.service_token_file is None:
                raise InputError("backend service needs service_url and service_token_file")
            token = untrusted.read_text(self.settings.service_token_file, "service token file").strip()
            self._service = ServiceClient(self.settings.service_url, token)
        return self._service

    def service_submit(self, scan: ScanRow) -> int:
        """Post the archived event (and the scan configuration as the partial one); the service's scan id.

        Submitting again is harmless: the service answers an identical submission with the scan it has.
        """
        from skyscan.settings.yamlio import read_yaml

        event = untrusted.loads_json(untrusted.read_text(scan.archive_path, "archived event"), scan.archive_path)
        config_path = self.scan_config_of(scan)
        config = read_yaml(config_path) if config_path else None
        doc = self.service().submit(event, config=config, label=scan.name)
        return int(doc["scan_id"])

    def track_service(self, scan: ScanRow, report: CycleReport) -> None:
        """Follow a scan at the service: done -> download its products and finish; failed/cancelled -> a failed
        attempt; else record its progress (a stall is stopped by aborting it there)."""
        assert scan.outdir is not None
        if scan.remote_scan_id is None:  # claimed, but the submission was not recorded: submit (again)
            remote = self.service_submit(scan)
            scans.set_launched(self.conn, scan.id, remote_scan_id=remote, now=utcnow())
            self.log.info("scan %d of %s: handed to the service (its scan %d)", scan.id, scan.name, remote)
            return
        doc = self.service().get(scan.remote_scan_id)
        state = str(doc.get("state"))
        if state == "done":
            self.download_service_products(scan, int(doc["scan_id"]))
            self.finish(scan, report)
            return
        if state in ("failed", "cancelled"):
            why = one_line(str(doc.get("last_error") or "no reason given"))
            self.attempt_failed(scan, f"the service's scan {doc.get('scan_id')} is {state}: {why}", report)
            return
        progress = json.dumps(doc.get("progress") or [])
        fingerprint = hashlib.sha1(f"{state}{progress}".encode()).hexdigest()
        now = utcnow()
        if fingerprint != scan.progress:
            scans.record_progress(self.conn, scan.id, fingerprint, now, progress)
            return
        quiet = (parse_stamp(now) - parse_stamp(scan.progress_at or now)).total_seconds()
        if quiet > self.settings.stall_seconds:
            try:
                self.service().abort(scan.remote_scan_id)
                what = "aborted at the service"
            except InputError as exc:
                what = f"abort at the service failed: {exc}"
            self.attempt_failed(scan, f"no progress for {quiet:.0f} s ({what})", report)

    def download_service_products(self, scan: ScanRow, remote: int) -> None:
        """The service's products into OUTDIR, each at its place in the scan layout (plots in plots/)."""
        assert scan.outdir is not None
        outdir = Path(scan.outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        places = {rel.rsplit("/", 1)[-1]: rel for rel in PRODUCT_FILES.values()}
        for path in self.service().download(remote, outdir):
            rel = places.get(path.name)
            if rel is not None and rel != path.name:
                (outdir / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, outdir / rel)

    def submit(self, scan: ScanRow, attempt: int, config: str | None, launch_dir: Path, now: str) -> int | None:
        """``skyscan submit`` in the foreground (it returns once DAGMan has the DAG); its cluster id."""
        assert scan.outdir is not None
        cmd = [*self.settings.submit_command, scan.archive_path, "-o", scan.outdir]
        if self.settings.site:
            cmd += ["--site", self.settings.site]
        if config:
            cmd += ["--config", config]
        launch_dir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=launch_dir,
                              env=self.scan_env(scan, attempt), timeout=self.settings.submit_timeout_seconds)
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
            self.conn, scan.id, reason, max_attempts=self.settings.max_attempts,
            retry_at=retry_time(now, self.settings.retry_delay_seconds), now=now,
        )
        if state == "queued":
            report.retried += 1
            self.log.warning("scan %d of %s: attempt failed, will resume in the same directory: %s", scan.id,
                             scan.name, reason)
        elif state == "failed":
            report.failed += 1
            self.log.error("scan %d of %s failed after %d attempts: %s", scan.id, scan.name,
                           self.settings.max_attempts, reason)

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
        if scan.backend == "service":
            self.track_service(scan, report)
            return
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
        if scan.backend != "condor" and not alive and scan.pid is None and not (launch_dir / PID_NAME).exists():
            # claimed, but the claimer died before the process started: not an attempt
            if scans.release_claim(self.conn, scan.id, "the previous claim never started a process", utcnow()):
                self.log.warning("scan %d of %s: claimed but never started (the claimer died); queued again",
                                 scan.id, scan.name)
            return
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
            scans.record_progress(self.conn, scan.id, fingerprint, now, progress_document(status))
            return
        quiet = (parse_stamp(now) - parse_stamp(scan.progress_at or now)).total_seconds()
        if quiet > self.settings.stall_seconds:
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
        stopped = kill_detached(launch_dir, scan.pid, self.settings.kill_grace_seconds)
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
        if scan.backend != "service":
            status = observe_scan(scan.outdir)
            scans.record_progress(self.conn, scan.id, progress_fingerprint(status), utcnow(),
                                  progress_document(status))
        box = self.settings.outbox / scan.name if self.settings.outbox is not None else Path(scan.outdir)
        missing = (publish_outbox(Path(scan.outdir), box, self.settings.outbox_base_url)
                   if self.settings.outbox is not None else [])
        calibrate = self.calibrates(scan)
        if scans.mark_done(self.conn, scan.id, summary, str(summary_path), notify=self.settings.notify,
                           now=utcnow(), calibrate=calibrate):
            report.done += 1
            self.log.info("scan %d of %s done: RA %.3f Dec %.3f, 90%% area %s deg2; products in %s%s", scan.id,
                          scan.name, summary.ra_deg, summary.dec_deg,
                          "-" if summary.area_90_deg2 is None else f"{summary.area_90_deg2:.2f}", box,
                          f" (missing: {', '.join(missing)})" if missing else "")
            if calibrate:
                self.log.info("scan %d of %s: calibration queued (stream %s)", scan.id, scan.name, scan.stream)
