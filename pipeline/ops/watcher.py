"""The alert watcher behind ``skyscan watch``: inbox -> archive -> catalog -> scans -> outbox.

Designed to be called by cron every minute (``--once``) or to run as a loop. Every step is safe to
interrupt at any point, including by SIGKILL:

* an inbox file is copied into the content-addressed archive (fsync'ed) before anything else, and
  deleted from the inbox only after the catalog transaction that records it has committed; a crash in
  between makes the next run see a duplicate, which it records once and removes;
* a scan is claimed (queued -> running, committed) before its process starts, and that process holds
  an ``flock`` on ``<OUTDIR>.launch/scan.lock`` for as long as it lives. Whether a local scan is alive is
  read from that lock, never from a pid that might have been reused; a scan whose lock is free and which
  is not done has vanished, and is retried in the same OUTDIR (``skyscan run`` resumes);
* a single instance runs at a time (``flock`` on the lock file); a second one logs a line and exits 0.

A local scan runs detached: a shell in a new session (its pid is the scan's process group, which
``skyscan cancel`` signals) starts the scan command in the background with stdin from /dev/null and
its output appended to ``<OUTDIR>.launch/scan.log``, records the command's exit code in
``<OUTDIR>.launch/exit-code`` and exits at once, so a cron call returns in seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import logging.handlers
import os
import re
import shlex
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from skyscan.errors import InputError, SkyscanError
from skyscan.graph.layout import ScanLayout, batch_name
from skyscan.ops import catalog as catalog
from skyscan.ops.catalog import ScanRow, parse_stamp, utcnow
from skyscan.products.summary import PRODUCT_FILES
from skyscan.reco.event import EventFile, check_doms, read_event

__all__ = [
    "BACKENDS",
    "CycleReport",
    "WatchConfig",
    "Watcher",
    "cancel_alert",
    "config_from_mapping",
    "launch_dir_of",
    "load_config",
    "lock_held",
    "rescan_alert",
    "run_watch",
    "scan_status",
]

BACKENDS = ("local", "condor")
LOCK_NAME = "scan.lock"  # held by the detached scan process for as long as it lives
LOG_NAME = "scan.log"
PID_NAME = "pgid"  # the process group of the detached scan (the launching shell's pid)
EXIT_NAME = "exit-code"  # the scan command's exit code, written when it ends
ATTEMPT_MARK = "=== skyscan watch: "  # starts the launch log's section of each attempt
PRODUCTS = tuple(PRODUCT_FILES[key] for key in ("summary", "circular", "notice"))  # copied to the outbox

# The detached launcher: records its pid (= the new session's process group), then runs the command in
# the background with the launch lock inherited, writing the exit code atomically when it ends.
_LAUNCH_SCRIPT = (
    'exitf=$1; logf=$2; pidf=$3; shift 3; '
    'printf "%s\\n" "$$" > "$pidf.part" && mv -f "$pidf.part" "$pidf" || exit 1; '
    '( rc=0; "$@" || rc=$?; printf "%s\\n" "$rc" > "$exitf.part" && mv -f "$exitf.part" "$exitf" ) '
    '</dev/null >>"$logf" 2>&1 &'
)


# ---------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------
def _default_scan_command() -> tuple[str, ...]:
    return (sys.executable, "-m", "skyscan.cli", "run")


def _default_submit_command() -> tuple[str, ...]:
    return (sys.executable, "-m", "skyscan.cli", "submit")


@dataclass(frozen=True)
class WatchConfig:
    """A resolved watch.yaml: absolute paths, checked values (see config/watch.example.yaml)."""

    inbox: Path
    state_dir: Path
    archive: Path
    quarantine: Path
    outbox: Path
    scans: Path
    database: Path
    lock_file: Path
    log_file: Path
    log_max_bytes: int = 10_000_000
    log_backups: int = 5
    settle_seconds: float = 5.0
    poll_seconds: float = 60.0
    backend: str = "local"
    site: str | None = None
    scan_config: Path | None = None
    jobs: int | None = None
    max_running: int = 2
    max_attempts: int = 3
    retry_delay_seconds: float = 300.0
    stall_seconds: float = 6 * 3600.0
    kill_grace_seconds: float = 10.0
    scan_command: tuple[str, ...] = field(default_factory=_default_scan_command)
    submit_command: tuple[str, ...] = field(default_factory=_default_submit_command)
    submit_timeout_seconds: float = 300.0
    notify_command: tuple[str, ...] | None = None
    notify_timeout_seconds: float = 60.0
    notify_max_attempts: int = 10


_PATH_KEYS = ("archive", "quarantine", "outbox", "scans", "database", "lock_file", "log_file")
_PATH_DEFAULTS = {
    "archive": "archive", "quarantine": "quarantine", "outbox": "outbox", "scans": "scans",
    "database": "catalog.sqlite", "lock_file": "watch.lock", "log_file": "watch.log",
}
_INT_KEYS = {"log_max_bytes": 0, "log_backups": 0, "max_running": 1, "max_attempts": 1, "notify_max_attempts": 1}
_FLOAT_KEYS = {"settle_seconds": 0.0, "poll_seconds": 0.1, "retry_delay_seconds": 0.0, "stall_seconds": 1.0,
               "kill_grace_seconds": 0.0, "submit_timeout_seconds": 1.0, "notify_timeout_seconds": 1.0}
_COMMAND_KEYS = ("scan_command", "submit_command", "notify_command")
KNOWN_KEYS = ("schema", "inbox", "state_dir", *_PATH_KEYS, *_INT_KEYS, *_FLOAT_KEYS, *_COMMAND_KEYS,
              "backend", "site", "scan_config", "jobs")
WATCH_SCHEMA = "skyscan-watch/1"


def _command(value: Any, key: str) -> tuple[str, ...]:
    """A command as a YAML list or a shell-like string; ``{python}`` stands for the current interpreter."""
    if isinstance(value, str):
        try:
            words = shlex.split(value)
        except ValueError as exc:
            raise InputError(f"{key}: cannot split the command: {exc}") from None
    elif isinstance(value, list) and all(isinstance(w, (str, int, float)) for w in value):
        words = [str(w) for w in value]
    else:
        raise InputError(f"{key}: expected a command (a list of words or a string)")
    if not words or not words[0]:
        raise InputError(f"{key}: empty command")
    return tuple(w.replace("{python}", sys.executable) for w in words)


def config_from_mapping(raw: Any, base_dir: Path, source: str = "watch config") -> WatchConfig:
    """Check a decoded watch.yaml; relative paths are taken from ``base_dir`` (the file's folder)."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a mapping of settings")
    unknown = sorted(str(k) for k in raw if k not in KNOWN_KEYS)
    if unknown:
        raise InputError(f"{source}: {unknown[0]}: unknown setting (the settings are listed in watch.example.yaml)")
    if raw.get("schema", WATCH_SCHEMA) != WATCH_SCHEMA:
        raise InputError(f"{source}: schema: expected {WATCH_SCHEMA!r}, got {raw.get('schema')!r}")

    def path(key: str, default: Path | str | None) -> Path | None:
        value = raw.get(key, default)
        if value is None:
            return None
        if not isinstance(value, (str, Path)) or not str(value).strip():
            raise InputError(f"{source}: {key}: expected a path")
        p = Path(os.path.expanduser(str(value)))
        return (p if p.is_absolute() else base_dir / p).absolute()

    if raw.get("inbox") is None:
        raise InputError(f"{source}: inbox: missing (the folder upstream systems drop event files into)")
    values: dict[str, Any] = {"inbox": path("inbox", None)}
    state_dir = path("state_dir", ".")
    assert state_dir is not None
    values["state_dir"] = state_dir
    for key in _PATH_KEYS:
        values[key] = path(key, None) if raw.get(key) is not None else state_dir / _PATH_DEFAULTS[key]
    for key, minimum in _INT_KEYS.items():
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise InputError(f"{source}: {key}: expected an integer >= {minimum}, got {v!r}")
            values[key] = v
    for key, fminimum in _FLOAT_KEYS.items():
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= fminimum:
                raise InputError(f"{source}: {key}: expected a number >= {fminimum:g}, got {v!r}")
            values[key] = float(v)
    backend = raw.get("backend", "local")
    if backend not in BACKENDS:
        raise InputError(f"{source}: backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    values["backend"] = backend
    site = raw.get("site")
    if site is not None and (not isinstance(site, str) or not site):
        raise InputError(f"{source}: site: expected a site name or profile path")
    values["site"] = site
    if raw.get("scan_config") is not None:
        values["scan_config"] = path("scan_config", None)
        if not values["scan_config"].is_file():
            raise InputError(f"{source}: scan_config: {values['scan_config']}: no such file")
    jobs = raw.get("jobs")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise InputError(f"{source}: jobs: expected a positive integer, got {jobs!r}")
    values["jobs"] = jobs
    for key in _COMMAND_KEYS:
        if raw.get(key) is not None:
            values[key] = _command(raw[key], f"{source}: {key}")
    return WatchConfig(**values)


def load_config(path: str | os.PathLike[str]) -> WatchConfig:
    """Read watch.yaml; any problem is an :class:`InputError` naming it (the CLI exits 2)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{p}: no such watch configuration") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read the watch configuration ({exc.__class__.__name__})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{p}: invalid YAML{where}") from None
    return config_from_mapping(raw, p.absolute().parent, str(p))


# ---------------------------------------------------------------------------------------------------------------
# Scan status (the one adapter to the status source of `skyscan status`)
# ---------------------------------------------------------------------------------------------------------------
def scan_status(outdir: str | os.PathLike[str]) -> dict[str, Any]:
    """The state of a scan directory: the ``skyscan-status/1`` document of ``skyscan status OUTDIR --json``.

    A directory that is not (yet) a scan directory -- the scan process has not written its DAG -- counts
    as not started.
    """
    from skyscan.graph.status import scan_status as library_status

    try:
        return dict(library_status(Path(outdir)).as_json())
    except InputError as exc:
        return {"schema": "skyscan-status/1", "outdir": str(outdir), "backend": "unknown", "state": "not-started",
                "stages": [], "failed_nodes": [], "end_state": None, "updated": None, "note": str(exc)}


def _fingerprint(status: Mapping[str, Any]) -> str:
    """What counts as progress: a change of the state, the stages' node/pixel counts or the failed nodes.

    Not the ``updated`` time: DAGMan rewrites its node status file every 30 s even when nothing moves.
    """
    key = {k: status.get(k) for k in ("state", "stages", "failed_nodes")}
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Detached local processes
# ---------------------------------------------------------------------------------------------------------------
def launch_dir_of(outdir: str | os.PathLike[str]) -> Path:
    """The watcher's own files of a scan live beside OUTDIR, never inside it (``skyscan run`` owns OUTDIR)."""
    p = Path(outdir)
    return p.with_name(p.name + ".launch")


def lock_held(lock_path: Path) -> bool:
    """True while some process holds the scan's launch lock (the scan process or one of its children)."""
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops our lock, if we got it
    return False


class _StillRunning(Exception):
    """A previous attempt's process still holds the launch lock."""


def launch_detached(command: list[str], launch_dir: Path, env: Mapping[str, str], header: str) -> int:
    """Start ``command`` detached (own session, stdin /dev/null, output to scan.log); return its process group."""
    launch_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(launch_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _StillRunning() from None
        for name in (EXIT_NAME, PID_NAME):
            with contextlib.suppress(FileNotFoundError):
                (launch_dir / name).unlink()
        log_path = launch_dir / LOG_NAME
        with log_path.open("ab") as log:
            log.write(f"{ATTEMPT_MARK}{header}: {shlex.join(command)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                [shutil.which("sh") or "/bin/sh", "-c", _LAUNCH_SCRIPT, "skyscan-watch-scan",
                 str(launch_dir / EXIT_NAME), str(log_path), str(launch_dir / PID_NAME), *command],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=launch_dir, env=dict(env),
                start_new_session=True, pass_fds=(fd,), close_fds=True,
            )
        rc = proc.wait(timeout=60)
        if rc != 0:
            raise SkyscanError(f"the launcher shell failed (exit {rc}); see {log_path}")
        return proc.pid
    finally:
        os.close(fd)  # the detached process keeps the lock: it inherited the same open file


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def kill_detached(launch_dir: Path, pgid: int | None, grace: float) -> bool:
    """SIGTERM the scan's process group, SIGKILL after ``grace`` s; True once its launch lock is free."""
    lock = launch_dir / LOCK_NAME
    if not lock_held(lock):
        return True
    group = pgid or _read_int(launch_dir / PID_NAME)
    if group is None or group <= 1 or group == os.getpgrp():
        return False
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            return False
        deadline = time.monotonic() + wait
        while lock_held(lock):
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        else:
            return True
    return not lock_held(lock)


def _last_log_line(launch_dir: Path, limit: int = 300) -> str:
    """The last non-empty line the current attempt wrote (one-line reasons for the catalog)."""
    path = launch_dir / LOG_NAME
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 65536))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    section = text.rsplit(ATTEMPT_MARK, 1)[-1] if ATTEMPT_MARK in text else text
    lines = [line.strip() for line in section.splitlines()[1 if ATTEMPT_MARK in text else 0:] if line.strip()]
    return lines[-1][:limit] if lines else ""


# ---------------------------------------------------------------------------------------------------------------
# HTCondor (bindings, imported only when the condor backend is used)
# ---------------------------------------------------------------------------------------------------------------
def condor_job_present(cluster_id: int | None) -> bool | None:
    """Is the DAGMan job still in the queue? None when the schedd cannot tell (unreachable, no cluster id)."""
    if cluster_id is None:
        return None
    try:
        import htcondor2

        ads = htcondor2.Schedd().query(f"ClusterId == {int(cluster_id)}", ["ClusterId", "JobStatus"])
    except Exception:  # the bindings raise HTCondorException and others when no schedd answers
        return None
    return bool(ads)


def _classad_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def condor_remove(cluster_id: int | None, batch_name: str, outdir: str) -> None:
    """``condor_rm`` of the scan's DAGMan job (its node jobs go with it); SkyscanError if that is impossible."""
    constraint = (
        f"ClusterId == {int(cluster_id)}" if cluster_id is not None
        else f"JobBatchName == {_classad_string(batch_name)} && Iwd == {_classad_string(outdir)}"
    )
    try:
        import htcondor2

        htcondor2.Schedd().act(htcondor2.JobAction.Remove, constraint, reason="skyscan watch/cancel")
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise SkyscanError(f"cannot remove the DAGMan job ({constraint}): {reason}") from None


def _cluster_from_output(text: str) -> int | None:
    """The DAGMan job's cluster id in the output of ``skyscan submit`` (or of condor_submit_dag)."""
    found = re.findall(r"(?:DAGMan job|cluster)\s+(\d+)", text, flags=re.IGNORECASE)
    return int(found[-1]) if found else None


# ---------------------------------------------------------------------------------------------------------------
# Small file helpers
# ---------------------------------------------------------------------------------------------------------------
def _write_durable(path: Path, data: bytes) -> None:
    """Write, fsync, rename, fsync the folder: the archive copy must outlive a power cut."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


def publish_outbox(outdir: Path, dest: Path) -> list[str]:
    """Copy circular, notice, summary and plots into ``dest`` (replaced whole); return the missing products."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    missing = []
    try:
        for name in PRODUCTS:
            if (outdir / name).is_file():
                shutil.copy2(outdir / name, tmp / name)
            else:
                missing.append(name)
        plots = sorted((outdir / "plots").glob("*.png"))
        if plots:
            (tmp / "plots").mkdir()
            for plot in plots:
                shutil.copy2(plot, tmp / "plots" / plot.name)
        else:
            missing.append("plots/*.png")
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.replace(dest, old / dest.name)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return missing


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


# ---------------------------------------------------------------------------------------------------------------
# The watcher
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class CycleReport:
    """What one pass did (for tests, the benchmark and the loop's log)."""

    taken: int = 0
    new: int = 0
    revisions: int = 0
    duplicates: int = 0
    quarantined: int = 0
    started: int = 0
    done: int = 0
    retried: int = 0
    failed: int = 0
    notified: int = 0
    errors: int = 0


_ITEM_ERRORS = (OSError, SkyscanError, InputError, subprocess.SubprocessError, ValueError)


class Watcher:
    """One pass over inbox, catalog and scans: ingest, queue, track, start, notify."""

    def __init__(self, cfg: WatchConfig, conn: sqlite3.Connection, log: logging.Logger) -> None:
        self.cfg = cfg
        self.conn = conn
        self.log = log
        self._doms: dict[str, set[tuple[int, int]]] = {}

    # -- the pass ------------------------------------------------------------------------------------------------
    def run_once(self) -> CycleReport:
        report = CycleReport()
        for folder in (self.cfg.inbox, self.cfg.archive, self.cfg.quarantine, self.cfg.outbox, self.cfg.scans):
            folder.mkdir(parents=True, exist_ok=True)
        self.ingest(report)
        self.queue_received()
        self.track(report)
        self.start_queued(report)
        self.notify(report)
        return report

    # -- inbox ---------------------------------------------------------------------------------------------------
    def inbox_ready(self) -> list[tuple[Path, os.stat_result]]:
        """Complete files: no dotfiles or *.part/*.tmp (still being written), unchanged for the settle time."""
        ready = []
        now = time.time()
        with os.scandir(self.cfg.inbox) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if entry.name.startswith(".") or entry.name.endswith((".part", ".tmp")):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < self.cfg.settle_seconds:
                continue
            ready.append((Path(entry.path), st))
        return ready

    def ingest(self, report: CycleReport) -> None:
        for path, st in self.inbox_ready():
            try:
                self.ingest_file(path, st, report)
            except _ITEM_ERRORS as exc:
                report.errors += 1
                self.log.error("inbox %s: not taken this time: %s", path.name, _one_line(str(exc)))

    def ingest_file(self, path: Path, st: os.stat_result, report: CycleReport) -> None:
        name = path.name
        with path.open("rb") as fh:
            before = os.fstat(fh.fileno())
            data = fh.read()
        if not _same_file(before, st):
            return  # replaced since the listing: the next pass sees the settled version
        sha = hashlib.sha256(data).hexdigest()
        archived = self.archive(sha, data)
        report.taken += 1
        self.log.info("archived %s (%d bytes, sha256 %s) as %s", name, len(data), sha, archived)
        now = utcnow()
        try:
            ef = self.validate(archived, name)
        except InputError as exc:
            reason = _one_line(str(exc), 500)
            catalog.record_quarantine(self.conn, name=name, sha256=sha, reason=reason, now=now)
            dest = self.quarantine(path, before, reason, sha, now)
            report.quarantined += 1
            self.log.warning("quarantined %s as %s: %s", name, dest, reason)
            return
        ev = ef.event
        result = catalog.record_revision(
            self.conn, run_id=ev.run_id, event_id=ev.event_id, sha256=sha, archive_path=str(archived),
            source_name=name, event_time=ev.time, stream=ev.stream, now=now,
        )
        removed = self.remove_from_inbox(path, before)
        label = catalog.alert_name(ev.run_id, ev.event_id, result.revision)
        if result.outcome == "duplicate":
            report.duplicates += 1
            self.log.info("duplicate %s: same content as %s (alert id %d), recorded once", name, label,
                          result.alert_id)
        else:
            if result.outcome == "new":
                report.new += 1
            else:
                report.revisions += 1
            self.log.info("%s %s from %s: alert id %d, scan %s received", "new alert" if result.outcome == "new"
                          else "new revision", label, name, result.alert_id, result.scan_id)
        if not removed:
            self.log.warning("inbox %s changed while being taken; left for the next pass", name)

    def archive(self, sha: str, data: bytes) -> Path:
        """The content-addressed copy ``archive/<2 hex>/<sha256>.json``, written once."""
        dest = self.cfg.archive / sha[:2] / f"{sha}.json"
        if dest.is_file() and hashlib.sha256(dest.read_bytes()).hexdigest() == sha:
            return dest
        _write_durable(dest, data)
        return dest

    def validate(self, archived: Path, name: str) -> EventFile:
        """Everything `skyscan run` would reject up front: schema, values, and DOMs of built-in geometries."""
        try:
            ef = read_event(archived)
            geometry = ef.event.geometry
            if geometry not in self._doms:
                from skyscan.reco.geometry import builtin

                self._doms[geometry] = builtin(geometry).keys
            check_doms(ef.event.pulses, self._doms[geometry])
        except InputError as exc:
            text = str(exc).replace(str(archived), name)
            raise InputError(text if text.startswith(name) else f"{name}: {text}") from None
        return ef

    def quarantine(self, path: Path, before: os.stat_result, reason: str, sha: str, now: str) -> Path:
        stamp = now.replace(":", "").replace("-", "")
        dest = self.cfg.quarantine / f"{stamp}-{path.name}"
        n = 1
        while dest.exists() or dest.with_name(dest.name + ".reason").exists():
            n += 1
            dest = self.cfg.quarantine / f"{stamp}-{n}-{path.name}"
        note = f"{reason}\nfile: {path.name}\nsha256: {sha}\nreceived: {now}\n"
        _write_durable(dest.with_name(dest.name + ".reason"), note.encode())
        try:
            current = os.stat(path)
        except FileNotFoundError:
            return dest
        if _same_file(current, before):
            shutil.move(str(path), str(dest))
        return dest

    def remove_from_inbox(self, path: Path, before: os.stat_result) -> bool:
        try:
            current = os.stat(path)
        except FileNotFoundError:
            return True
        if not _same_file(current, before):
            return False
        path.unlink()
        return True

    # -- scans ---------------------------------------------------------------------------------------------------
    def queue_received(self) -> None:
        for scan in catalog.scans_in_state(self.conn, "received"):
            outdir = self.cfg.scans / f"{scan.name}-s{scan.id}"
            if catalog.queue_scan(self.conn, scan.id, str(outdir), utcnow()):
                self.log.info("scan %d of %s queued, output %s", scan.id, scan.name, outdir)

    def start_queued(self, report: CycleReport) -> None:
        running = catalog.count_running(self.conn)
        for scan in catalog.scans_in_state(self.conn, "queued"):
            if running >= self.cfg.max_running:
                break
            now = utcnow()
            if scan.not_before and scan.not_before > now:
                continue
            try:
                if self.start(scan, now, report):
                    running += 1
                    report.started += 1
            except _ITEM_ERRORS as exc:
                report.errors += 1
                self.log.error("scan %d of %s: %s", scan.id, scan.name, _one_line(str(exc)))

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
        if not catalog.claim_scan(self.conn, scan.id, backend, now):
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
                catalog.set_launched(self.conn, scan.id, pid=pgid, now=utcnow())
                self.log.info("started scan %d of %s (attempt %d/%d, local, process group %d)", scan.id,
                              scan.name, attempt, self.cfg.max_attempts, pgid)
            else:
                cluster = self.submit(scan, attempt, config, launch_dir, now)
                catalog.set_launched(self.conn, scan.id, cluster_id=cluster, now=utcnow())
                self.log.info("submitted scan %d of %s (attempt %d/%d, condor, cluster %s)", scan.id, scan.name,
                              attempt, self.cfg.max_attempts, cluster if cluster is not None else "unknown")
        except _StillRunning:
            self.attempt_failed(scan, "a previous attempt still holds the scan directory", report)
            return False
        except _ITEM_ERRORS as exc:
            self.attempt_failed(scan, f"could not start: {_one_line(str(exc))}", report)
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
        return _cluster_from_output(proc.stdout + proc.stderr)

    def attempt_failed(self, scan: ScanRow, reason: str, report: CycleReport) -> None:
        now = utcnow()
        state = catalog.fail_attempt(
            self.conn, scan.id, reason, max_attempts=self.cfg.max_attempts,
            retry_at=catalog.retry_time(now, self.cfg.retry_delay_seconds), now=now,
        )
        if state == "queued":
            report.retried += 1
            self.log.warning("scan %d of %s: attempt failed, will resume in the same directory: %s", scan.id,
                             scan.name, reason)
        elif state == "failed":
            report.failed += 1
            self.log.error("scan %d of %s failed after %d attempts: %s", scan.id, scan.name,
                           self.cfg.max_attempts, reason)

    def track(self, report: CycleReport) -> None:
        for scan in catalog.scans_in_state(self.conn, "running"):
            try:
                self.track_one(scan, report)
            except _ITEM_ERRORS as exc:
                report.errors += 1
                self.log.error("scan %d of %s: tracking failed: %s", scan.id, scan.name, _one_line(str(exc)))

    def status_of(self, outdir: str) -> dict[str, Any]:
        try:
            return scan_status(outdir)
        except Exception as exc:  # a broken scan directory must not stop the pass
            return {"state": "unknown", "stages": [], "failed_nodes": [], "updated": None,
                    "error": f"{exc.__class__.__name__}: {exc}"}

    def track_one(self, scan: ScanRow, report: CycleReport) -> None:
        """Done -> finish; process gone (local) or DAG gone (condor) -> failed attempt; stalled -> kill, retry."""
        assert scan.outdir is not None
        launch_dir = launch_dir_of(scan.outdir)
        if scan.backend == "condor":
            alive = condor_job_present(scan.cluster_id)
        else:
            alive = lock_held(launch_dir / LOCK_NAME)
            if alive and scan.pid is None:  # the watcher died between launch and recording the pid
                pgid = _read_int(launch_dir / PID_NAME)
                if pgid is not None:
                    catalog.set_launched(self.conn, scan.id, pid=pgid, now=utcnow())
                    self.log.info("scan %d of %s: recovered process group %d", scan.id, scan.name, pgid)
        status = self.status_of(scan.outdir)
        state = status.get("state")
        if state == "done" and not (scan.backend != "condor" and alive):
            self.finish(scan, report)
            return
        if scan.backend != "condor" and not alive:
            self.attempt_failed(scan, self.exit_reason(status, launch_dir), report)
            return
        if scan.backend == "condor":
            if state == "failed":
                self.attempt_failed(scan, "the DAG failed" + _failed_nodes(status), report)
                return
            if alive is False:
                self.attempt_failed(scan, f"the DAGMan job (cluster {scan.cluster_id}) left the queue before "
                                          "the scan finished", report)
                return
        now = utcnow()
        fingerprint = _fingerprint(status)
        if fingerprint != scan.progress:
            catalog.record_progress(self.conn, scan.id, fingerprint, now)
            return
        quiet = (parse_stamp(now) - parse_stamp(scan.progress_at or now)).total_seconds()
        if quiet > self.cfg.stall_seconds:
            if scan.backend == "condor":
                try:
                    condor_remove(scan.cluster_id, batch_name(scan.run_id, scan.event_id), scan.outdir)
                    killed = "DAGMan job removed"
                except SkyscanError as exc:
                    killed = str(exc)
            else:
                stopped = kill_detached(launch_dir, scan.pid, self.cfg.kill_grace_seconds)
                killed = "scan process killed" if stopped else "scan process could not be stopped"
            self.attempt_failed(scan, f"no progress for {quiet:.0f} s ({killed})", report)

    def exit_reason(self, status: Mapping[str, Any], launch_dir: Path) -> str:
        """Why a local scan whose process is gone is not done: exit code, failed nodes, its last log line."""
        rc = _read_int(launch_dir / EXIT_NAME)
        if rc is None:
            reason = "the scan process vanished before the scan finished"
        elif rc == 0:
            reason = f"the scan command exited with code 0 but the scan is {status.get('state')}"
        else:
            reason = f"the scan command exited with code {rc}"
        reason += _failed_nodes(status)
        tail = _last_log_line(launch_dir)
        return f"{reason}: {tail}" if tail else reason

    def finish(self, scan: ScanRow, report: CycleReport) -> None:
        assert scan.outdir is not None
        summary_path = ScanLayout.at(scan.outdir).summary
        try:
            summary = catalog.read_summary_row(summary_path)
        except InputError as exc:
            self.attempt_failed(scan, f"the scan is done but its summary is unusable: {_one_line(str(exc))}", report)
            return
        box = self.cfg.outbox / scan.name
        missing = publish_outbox(Path(scan.outdir), box)
        if catalog.mark_done(self.conn, scan.id, summary, str(summary_path),
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
        for scan in catalog.notify_pending(self.conn, self.cfg.notify_max_attempts):
            summary = self.cfg.outbox / scan.name / "summary.json"
            cmd = [*self.cfg.notify_command, str(summary)]
            env = dict(os.environ, SKYSCAN_WATCH_ALERT=scan.name, SKYSCAN_WATCH_SCAN_ID=str(scan.id),
                       SKYSCAN_WATCH_OUTBOX=str(summary.parent))
            error: str | None = None
            try:
                proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                                      timeout=self.cfg.notify_timeout_seconds)
                if proc.returncode != 0:
                    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
                    error = f"exit {proc.returncode}" + (f": {_one_line(lines[-1])}" if lines else "")
            except (OSError, subprocess.SubprocessError) as exc:
                error = _one_line(f"{exc.__class__.__name__}: {exc}")
            state = catalog.record_notification(self.conn, scan.id, error,
                                                max_attempts=self.cfg.notify_max_attempts, now=utcnow())
            if error is None:
                report.notified += 1
                self.log.info("notified %s (scan %d): %s", scan.name, scan.id, shlex.join(cmd))
            elif state == "failed":
                self.log.error("notification of %s (scan %d) failed, giving up after %d attempts: %s", scan.name,
                               scan.id, self.cfg.notify_max_attempts, error)
            else:
                self.log.warning("notification of %s (scan %d) failed, will retry: %s", scan.name, scan.id, error)


def _failed_nodes(status: Mapping[str, Any]) -> str:
    nodes = [str(n) for n in status.get("failed_nodes") or []]
    if not nodes:
        return ""
    more = f" and {len(nodes) - 5} more" if len(nodes) > 5 else ""
    return f" (failed nodes: {', '.join(nodes[:5])}{more})"


# ---------------------------------------------------------------------------------------------------------------
# Entry point: lock, log, loop
# ---------------------------------------------------------------------------------------------------------------
class _UTCFormatter(logging.Formatter):
    def __init__(self, fmt: str, datefmt: str) -> None:
        super().__init__(fmt, datefmt)
        self.converter = time.gmtime


def open_log(cfg: WatchConfig) -> logging.Logger:
    """A private logger: the rotating log file and stderr, one line per action."""
    logger = logging.Logger("skyscan.watch")
    fmt = _UTCFormatter("%(asctime)s watch[%(process)d] %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    cfg.log_file.parent.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [
        logging.handlers.RotatingFileHandler(cfg.log_file, maxBytes=cfg.log_max_bytes,
                                             backupCount=cfg.log_backups, encoding="utf-8"),
        logging.StreamHandler(sys.stderr),
    ]
    for handler in handlers:
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    return logger


def close_log(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def _log_file_only(logger: logging.Logger, message: str) -> None:
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "%s", (message,), None)
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


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
            conn = catalog.connect(cfg.database)
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
            _log_file_only(log, f"catalog database {cfg.database}: {exc}")
            raise SkyscanError(f"catalog database {cfg.database}: {exc}") from None
        except SkyscanError as exc:
            _log_file_only(log, str(exc))  # stderr gets the CLI's one-line error
            raise
        finally:
            os.close(fd)
    finally:
        close_log(log)


# ---------------------------------------------------------------------------------------------------------------
# Operator commands
# ---------------------------------------------------------------------------------------------------------------
def cancel_alert(conn: sqlite3.Connection, spec: str, *, force: bool = False, grace: float = 10.0) -> list[str]:
    """Cancel every active scan of the alert: stop its process group / remove its DAG, mark it cancelled."""
    alert_id = catalog.resolve_alert(conn, spec)
    scans = catalog.scans_of_alert(conn, alert_id, *catalog.ACTIVE_STATES)
    if not scans:
        raise SkyscanError(f"alert {spec}: no active scan to cancel")
    messages = []
    now = utcnow()
    for scan in scans:
        reason = f"cancelled by operator at {now}"
        if scan.state == "running" and scan.backend == "condor":
            assert scan.outdir is not None
            try:
                condor_remove(scan.cluster_id, batch_name(scan.run_id, scan.event_id), scan.outdir)
            except SkyscanError as exc:
                if not force:
                    raise
                reason += f" (forced; {exc})"
        if not catalog.mark_cancelled(conn, scan.id, reason, now):
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
    alert_id = catalog.resolve_alert(conn, spec)
    config = None
    if scan_config is not None:
        p = Path(scan_config)
        if not p.is_file():
            raise InputError(f"--config: {p}: no such file")
        config = str(p.absolute())
    return int(catalog.add_scan(conn, alert_id, config, utcnow()))
