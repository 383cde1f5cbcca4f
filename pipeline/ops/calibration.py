"""Automatic calibration of done scans: ``skyscan calibrate``, then ``skyscan merge --containment``, then a re-issue.

With a ``calibration:`` block in watch.yaml or serve.yaml, a scan of one of its streams that becomes done is
queued for calibration in the same transaction (:func:`skyscan.ops.catalog.scans.mark_done`), so it is asked
for exactly once. Each scheduler pass then moves it on, never waiting for it:

``queued -> calibrating``
    claimed (an attempt counted) before anything starts. Local: the calibrate command runs detached, like a
    scan, with its own lock, log, process group and exit-code files in ``<OUTDIR>.launch/calibration/``;
    condor: the calibration graph is submitted to HTCondor (:func:`skyscan.calibrate.calibrate_scan`).
``calibrating -> merging``
    once ``CALDIR/calibration.json`` is written and valid: ``skyscan merge OUTDIR --containment
    CALDIR/calibration.json`` runs detached on this host and re-contours the scan's products with the levels.
``merging -> done``
    once the merge has exited 0 and summary.json names this calibration: the products are re-published to the
    outbox (the watcher) with ``reissue.json`` saying that they are a calibrated re-issue, the catalog's summary
    is replaced by the calibrated one, and the notification runs again (``SKYSCAN_WATCH_REISSUE=calibrated``).

Every step is failure-proof: a step that fails, is killed or vanishes makes the calibration ``queued`` again
(resumed in the same CALDIR after ``retry_delay_seconds``: ``skyscan calibrate`` resumes its graph) until
``calibration.max_attempts``, then ``failed`` with its reason. The scan stays done and its first products stay
published; an error in one calibration never stops the pass. After a restart a running step is adopted through
its launch lock; a step that was claimed but never started (no process group file) is started then, without
counting an attempt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from skyscan.errors import InputError
from skyscan.graph.layout import ScanLayout
from skyscan.ops.catalog import scans, summaries
from skyscan.ops.catalog.scans import ScanRow
from skyscan.ops.catalog.stamps import retry_time
from skyscan.ops.catalog.summaries import SummaryRow
from skyscan.ops.cycle import ITEM_ERRORS, CycleReport
from skyscan.ops.launcher import (
    EXIT_NAME,
    LOCK_NAME,
    PID_NAME,
    StillRunning,
    last_log_line,
    launch_detached,
    launch_dir_of,
    lock_held,
    read_int,
)
from skyscan.ops.logs import one_line
from skyscan.ops.publish import publish_outbox
from skyscan.reco import untrusted
from skyscan.timestamps import utcnow

if TYPE_CHECKING:
    from skyscan.ops.watchconfig import CalibrationSettings
    from skyscan.products.levels import CalibrationFile

__all__ = [
    "CALDIR_NAME",
    "LAUNCH_NAME",
    "REISSUE_FILE",
    "REISSUE_SCHEMA",
    "Calibrator",
    "SchedulerPart",
    "StepStatus",
    "caldir_of",
    "calibration_launch_dir",
    "reissue_document",
    "step_status",
]

CALDIR_NAME = "calibration"  # CALDIR = OUTDIR/calibration, skyscan calibrate's default
LAUNCH_NAME = "calibration"  # <OUTDIR>.launch/calibration/: the calibration's lock, log, pgid and exit code
REISSUE_FILE = "reissue.json"  # in the outbox folder of a calibrated re-issue
REISSUE_SCHEMA = "skyscan-reissue/1"


def caldir_of(outdir: str | os.PathLike[str]) -> Path:
    return Path(outdir) / CALDIR_NAME


def calibration_launch_dir(outdir: str | os.PathLike[str]) -> Path:
    """The watcher's files of a calibration live beside OUTDIR, next to the scan's own launch files."""
    return launch_dir_of(outdir) / LAUNCH_NAME


@dataclass(frozen=True)
class StepStatus:
    """What the launch folder shows of the current detached step: running, not started, or ended (its exit code,
    None when the process vanished without writing one)."""

    state: str  # running | not-started | ended
    exit_code: int | None = None


def step_status(launch_dir: Path) -> StepStatus:
    """Read from the launch lock (never a pid that might be reused) and the process group and exit-code files."""
    if lock_held(launch_dir / LOCK_NAME):
        return StepStatus("running")
    if not (launch_dir / PID_NAME).exists():
        return StepStatus("not-started")
    return StepStatus("ended", read_int(launch_dir / EXIT_NAME))


def reissue_document(scan: ScanRow, calibration: CalibrationFile, summary: dict[str, Any],
                     previous: dict[str, Any] | None, now: str) -> dict[str, Any]:
    """``reissue.json`` (schema ``skyscan-reissue/1``): these products replace the first issue of the alert and
    their containment regions are calibrated by resimulation (which calibration, and what the first issue had)."""
    found = summary.get("containment")
    containment: dict[str, Any] = found if isinstance(found, dict) else {}
    regions = {label: {"level_2dllh": r.get("level_2dllh"), "area_deg2": r.get("area_deg2")}
               for label in ("50", "90") if isinstance(r := containment.get(label), dict)}
    return {
        "schema": REISSUE_SCHEMA,
        "reissue": "calibrated",
        "reason": "containment regions calibrated by resimulation (skyscan calibrate)",
        "alert": scan.name,
        "scan_id": scan.id,
        "stream": scan.stream,
        "reissued": now,
        "containment_method": containment.get("method"),
        "regions": regions,
        "calibration": calibration.record(),
        "previous": previous,
    }


class SchedulerPart(Protocol):
    """What a calibration needs of the scheduler's settings (:class:`skyscan.ops.scheduler.SchedulerSettings`)."""

    @property
    def backend(self) -> str: ...
    @property
    def site(self) -> str | None: ...
    @property
    def jobs(self) -> int | None: ...
    @property
    def retry_delay_seconds(self) -> float: ...
    @property
    def outbox(self) -> Path | None: ...
    @property
    def outbox_base_url(self) -> str | None: ...
    @property
    def notify(self) -> bool: ...


class Calibrator:
    """Start, follow and finish the automatic calibrations of the catalog's done scans (one pass: :meth:`run`)."""

    def __init__(self, settings: SchedulerPart, cal: CalibrationSettings, conn: sqlite3.Connection,
                 log: logging.Logger) -> None:
        self.settings = settings
        self.cal = cal
        self.conn = conn
        self.log = log

    # -- one pass ------------------------------------------------------------------------------------------------
    def run(self, report: CycleReport) -> None:
        """Follow the active calibrations, then start queued ones (at most ``calibration.max_running`` at once)."""
        for scan in scans.calibrations_in_state(self.conn, "calibrating", "merging"):
            self._guarded(scan, report, self.track_one)
        running = scans.count_calibrating(self.conn)
        now = utcnow()
        for scan in scans.calibrations_in_state(self.conn, "queued"):
            if running >= self.cal.max_running:
                break
            if scan.calibration_not_before and scan.calibration_not_before > now:
                continue
            if self._guarded(scan, report, self.start):
                running += 1

    def _guarded(self, scan: ScanRow, report: CycleReport, step: Any) -> bool:
        try:
            return bool(step(scan, report))
        except sqlite3.Error:
            raise
        except ITEM_ERRORS as exc:
            report.errors += 1
            self.log.error("scan %d of %s: calibration: %s", scan.id, scan.name,
                           one_line(f"{exc.__class__.__name__}: {exc}"))
            return False

    # -- start ---------------------------------------------------------------------------------------------------
    def start(self, scan: ScanRow, report: CycleReport) -> bool:
        """Claim (committed), then start the calibration; an error in starting it is a failed attempt."""
        assert scan.outdir is not None
        launch = calibration_launch_dir(scan.outdir)
        backend = self.backend_of(scan)
        if backend == "local" and lock_held(launch / LOCK_NAME):
            self.log.warning("scan %d of %s: an earlier calibration step still runs; not starting another",
                             scan.id, scan.name)
            return False
        with contextlib.suppress(FileNotFoundError):
            (launch / PID_NAME).unlink()  # else an earlier step's file would hide a claim that never started
        caldir = caldir_of(scan.outdir)
        if not scans.claim_calibration(self.conn, scan.id, str(caldir), utcnow()):
            return False
        attempt = scan.calibration_attempts + 1
        report.calibrations_started += 1
        self.log.info("scan %d of %s: calibration started (attempt %d/%d, %s, %d pseudo-events, systematics %s)",
                      scan.id, scan.name, attempt, self.cal.max_attempts, backend, self.cal.n,
                      self.cal.systematics)
        self.launch_calibrate(scans.get_scan(self.conn, scan.id), report)
        return True

    def backend_of(self, scan: ScanRow) -> str:
        return scan.backend or self.settings.backend

    def env(self, scan: ScanRow) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"PYTHONUNBUFFERED": "1", "SKYSCAN_WATCH_ALERT": scan.name, "SKYSCAN_WATCH_SCAN_ID": str(scan.id),
                    "SKYSCAN_WATCH_CALIBRATION_ATTEMPT": str(scan.calibration_attempts)})
        return env

    def calibrate_command(self, scan: ScanRow) -> list[str]:
        """``calibration.command OUTDIR -o CALDIR --n N --systematics S [--batch-size B] [--disc-deg D] [--jobs J]``."""
        assert scan.outdir is not None
        cmd = [*self.cal.command, scan.outdir, "-o", str(caldir_of(scan.outdir)), "--n", str(self.cal.n),
               "--systematics", self.cal.systematics]
        if self.cal.batch_size is not None:
            cmd += ["--batch-size", str(self.cal.batch_size)]
        if self.cal.disc_deg is not None:
            cmd += ["--disc-deg", repr(self.cal.disc_deg)]
        if self.settings.jobs:
            cmd += ["--jobs", str(self.settings.jobs)]
        return cmd

    def launch_calibrate(self, scan: ScanRow, report: CycleReport) -> None:
        """Start the claimed calibration: detached (local) or submitted (condor); a failure is a failed attempt."""
        assert scan.outdir is not None
        backend = self.backend_of(scan)
        try:
            if backend == "condor":
                from skyscan.calibrate import calibrate_scan

                if self.calibration_file(scan) is not None:  # a retry whose graph had finished: merge again
                    self.to_merge(scan, report)
                    return
                run = calibrate_scan(scan.outdir, caldir_of(scan.outdir), self.cal.n, self.cal.systematics,
                                     backend="condor", batch_size=self.cal.batch_size, disc_deg=self.cal.disc_deg,
                                     site=self.settings.site or "local")  # fmt: skip
                if run.cluster is None:  # else every pass would submit it again
                    raise InputError("the submission named no DAGMan cluster")
                scans.set_calibration_launched(self.conn, scan.id, cluster=run.cluster, now=utcnow())
                self.log.info("scan %d of %s: calibration graph submitted (cluster %d)", scan.id, scan.name,
                              run.cluster)
            elif backend == "local":
                self.launch_step(scan, self.calibrate_command(scan), "calibrate")
            else:
                raise InputError(f"no automatic calibration of a {backend} scan (its results are not here)")
        except StillRunning:
            self.failed(scan, "an earlier calibration step still holds the launch lock", report)
        except ITEM_ERRORS as exc:
            self.failed(scan, f"could not start the calibration: {one_line(str(exc))}", report)

    def launch_step(self, scan: ScanRow, cmd: list[str], what: str) -> None:
        assert scan.outdir is not None
        launch = calibration_launch_dir(scan.outdir)
        header = f"{utcnow()} calibration attempt {scan.calibration_attempts} {what}"
        pgid = launch_detached(cmd, launch, self.env(scan), header)
        scans.set_calibration_launched(self.conn, scan.id, pid=pgid, now=utcnow())
        self.log.info("scan %d of %s: calibration: %s started (process group %d)", scan.id, scan.name, what, pgid)

    # -- follow --------------------------------------------------------------------------------------------------
    def track_one(self, scan: ScanRow, report: CycleReport) -> None:
        if scan.calibration_state == "calibrating":
            self.track_calibrate(scan, report)
        elif scan.calibration_state == "merging":
            self.track_merge(scan, report)

    def calibration_file(self, scan: ScanRow) -> CalibrationFile | None:
        """CALDIR/calibration.json once written (validated, of this scan's run and event); None before."""
        from skyscan.products.levels import read_calibration

        assert scan.outdir is not None
        path = caldir_of(scan.outdir) / "calibration.json"
        if not path.is_file():
            return None
        cal = read_calibration(path)
        if (cal.run_id, cal.event_id) not in ((scan.run_id, scan.event_id), (None, None)):
            raise InputError(f"{path}: made for run {cal.run_id} event {cal.event_id}, not this scan's")
        return cal

    def track_calibrate(self, scan: ScanRow, report: CycleReport) -> None:
        assert scan.outdir is not None
        launch = calibration_launch_dir(scan.outdir)
        if self.backend_of(scan) == "condor":
            try:
                if self.calibration_file(scan) is not None:
                    self.to_merge(scan, report)
                    return
            except InputError as exc:
                self.failed(scan, f"the calibration wrote an unusable calibration.json: {one_line(str(exc))}",
                            report)
                return
            if scan.calibration_cluster is None:  # claimed, but the submission was not recorded: submit now
                self.launch_calibrate(scan, report)
                return
            from skyscan.condor.schedd import dagman_job_present

            if dagman_job_present(scan.calibration_cluster) is False and not (
                    caldir_of(scan.outdir) / "calibration.json").is_file():
                self.failed(scan, f"the calibration graph (DAGMan cluster {scan.calibration_cluster}) left the "
                                  "queue without writing calibration.json", report)
            return
        status = step_status(launch)
        if status.state == "running":
            self.recover_pid(scan, launch)
            return
        if status.state == "not-started":  # claimed, but the claimer died before the process started
            self.log.warning("scan %d of %s: calibration claimed but never started; starting it", scan.id, scan.name)
            self.launch_calibrate(scan, report)
            return
        try:
            cal = self.calibration_file(scan) if status.exit_code == 0 else None
        except InputError as exc:
            self.failed(scan, f"the calibration wrote an unusable calibration.json: {one_line(str(exc))}", report)
            return
        if cal is None:
            self.failed(scan, self.exit_reason("the calibrate command", status, launch), report)
            return
        self.to_merge(scan, report)

    def to_merge(self, scan: ScanRow, report: CycleReport) -> None:
        """calibrating -> merging, then the merge starts (a crash in between: started on the next pass)."""
        assert scan.outdir is not None
        with contextlib.suppress(FileNotFoundError):
            (calibration_launch_dir(scan.outdir) / PID_NAME).unlink()
        if scans.set_calibration_step(self.conn, scan.id, "calibrating", "merging", utcnow()):
            self.log.info("scan %d of %s: calibration.json written; re-merging with it", scan.id, scan.name)
            self.launch_merge(scans.get_scan(self.conn, scan.id), report)

    def merge_command(self, scan: ScanRow) -> list[str]:
        assert scan.outdir is not None
        return [*self.cal.merge_command, scan.outdir, "--containment",
                str(caldir_of(scan.outdir) / "calibration.json")]

    def launch_merge(self, scan: ScanRow, report: CycleReport) -> None:
        try:
            self.launch_step(scan, self.merge_command(scan), "merge")
        except StillRunning:
            self.failed(scan, "an earlier calibration step still holds the launch lock", report)
        except ITEM_ERRORS as exc:
            self.failed(scan, f"could not start the merge: {one_line(str(exc))}", report)

    def track_merge(self, scan: ScanRow, report: CycleReport) -> None:
        assert scan.outdir is not None
        launch = calibration_launch_dir(scan.outdir)
        status = step_status(launch)
        if status.state == "running":
            self.recover_pid(scan, launch)
            return
        if status.state == "not-started":
            self.launch_merge(scan, report)
            return
        if status.exit_code != 0:
            self.failed(scan, self.exit_reason("the merge command", status, launch), report)
            return
        try:
            cal = self.calibration_file(scan)
            if cal is None:
                raise InputError("calibration.json is gone")
            summary = self.calibrated_summary(scan, cal)
            row = summaries.parse_summary(summary, str(ScanLayout.at(scan.outdir).summary))
        except InputError as exc:
            self.failed(scan, f"the re-merge did not give calibrated products: {one_line(str(exc))}", report)
            return
        self.reissue(scan, cal, summary, row, report)

    def calibrated_summary(self, scan: ScanRow, cal: CalibrationFile) -> dict[str, Any]:
        """summary.json, checked to be contoured with exactly this calibration (its sha256)."""
        from skyscan.products.levels import is_calibrated_method

        assert scan.outdir is not None
        path = ScanLayout.at(scan.outdir).summary
        doc = untrusted.loads_json(untrusted.read_text(path, "summary"), str(path))
        containment = doc.get("containment") if isinstance(doc, dict) else None
        if not isinstance(containment, dict) or not is_calibrated_method(containment.get("method")):
            raise InputError(f"{path}: containment is not calibrated")
        record = containment.get("calibration")
        if not isinstance(record, dict) or record.get("sha256") != cal.sha256:
            raise InputError(f"{path}: contoured with another calibration than {cal.path}")
        assert isinstance(doc, dict)
        return doc

    def recover_pid(self, scan: ScanRow, launch: Path) -> None:
        if scan.calibration_pid is None:  # the claimer died between the launch and recording it
            pgid = read_int(launch / PID_NAME)
            if pgid is not None:
                scans.set_calibration_launched(self.conn, scan.id, pid=pgid, now=utcnow())

    def exit_reason(self, what: str, status: StepStatus, launch: Path) -> str:
        if status.exit_code is None:
            reason = f"{what} vanished before it finished (killed?)"
        elif status.exit_code == 0:
            reason = f"{what} exited with code 0 but wrote no calibration.json"
        else:
            reason = f"{what} exited with code {status.exit_code}"
        tail = last_log_line(launch)
        return f"{reason}: {tail}" if tail else reason

    # -- finish --------------------------------------------------------------------------------------------------
    def previous_issue(self, scan_id: int) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT containment_method, area_50_deg2, area_90_deg2 FROM summaries"
                                " WHERE scan_id = ?", (scan_id,)).fetchone()
        if row is None:
            return None
        return {"containment_method": row["containment_method"], "area_50_deg2": row["area_50_deg2"],
                "area_90_deg2": row["area_90_deg2"]}

    def reissue(self, scan: ScanRow, cal: CalibrationFile, summary: dict[str, Any], row: SummaryRow,
                report: CycleReport) -> None:
        """Publish the calibrated products (with reissue.json), then record them (a crash in between: published
        again on the next pass, the same files)."""
        assert scan.outdir is not None
        summary_path = ScanLayout.at(scan.outdir).summary
        previous = self.previous_issue(scan.id)
        now = utcnow()
        missing: list[str] = []
        if self.settings.outbox is not None:
            doc = reissue_document(scan, cal, summary, previous, now)
            missing = publish_outbox(Path(scan.outdir), self.settings.outbox / scan.name,
                                     self.settings.outbox_base_url, extra={REISSUE_FILE: doc})
        if scans.finish_calibration(self.conn, scan.id, row, str(summary_path), dict(cal.levels),
                                    notify=self.settings.notify, now=now):
            report.calibrated += 1
            was = previous.get("area_90_deg2") if previous else None
            self.log.info(
                "scan %d of %s: calibrated re-issue (%d pseudo-events: 2dLLH 50%% %.3g, 90%% %.3g): 90%% area %s "
                "deg2 (was %s)%s%s", scan.id, scan.name, cal.n, cal.levels["50"], cal.levels["90"],
                "-" if row.area_90_deg2 is None else f"{row.area_90_deg2:.2f}",
                "-" if was is None else f"{was:.2f}",
                f"; products in {self.settings.outbox / scan.name}" if self.settings.outbox is not None else "",
                f" (missing: {', '.join(missing)})" if missing else "")

    def failed(self, scan: ScanRow, reason: str, report: CycleReport) -> None:
        """A failed step: retried (queued) until ``max_attempts``, then failed; the scan itself stays done."""
        now = utcnow()
        state = scans.fail_calibration(self.conn, scan.id, reason, max_attempts=self.cal.max_attempts,
                                       retry_at=retry_time(now, self.settings.retry_delay_seconds), now=now)
        if state == "queued":
            self.log.warning("scan %d of %s: calibration attempt failed, will resume: %s", scan.id, scan.name,
                             reason)
        elif state == "failed":
            report.calibrations_failed += 1
            self.log.error("scan %d of %s: calibration failed after %d attempts (the scan stays done): %s",
                           scan.id, scan.name, self.cal.max_attempts, reason)
