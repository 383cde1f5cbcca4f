"""Detached local scans: the launch folder beside OUTDIR, its lock, pid and exit-code files, and stopping a scan.

A local scan runs detached: a shell in a new session (its pid is the scan's process group, which
``skyscan cancel`` signals) starts the scan command in the background with stdin from /dev/null and
its output appended to ``<OUTDIR>.launch/scan.log``, records the command's exit code in
``<OUTDIR>.launch/exit-code`` and exits at once, so a cron call returns in seconds. The scan process holds
an ``flock`` on ``<OUTDIR>.launch/scan.lock`` for as long as it lives: whether a scan is alive is read from
that lock, never from a pid that might have been reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from skyscan.errors import SkyscanError

__all__ = [
    "ATTEMPT_MARK",
    "EXIT_NAME",
    "LOCK_NAME",
    "LOG_NAME",
    "PID_NAME",
    "StillRunning",
    "kill_detached",
    "last_log_line",
    "launch_detached",
    "launch_dir_of",
    "lock_held",
    "read_int",
]

LOCK_NAME = "scan.lock"  # held by the detached scan process for as long as it lives
LOG_NAME = "scan.log"
PID_NAME = "pgid"  # the process group of the detached scan (the launching shell's pid)
EXIT_NAME = "exit-code"  # the scan command's exit code, written when it ends
ATTEMPT_MARK = "=== skyscan watch: "  # starts the launch log's section of each attempt

# The detached launcher: records its pid (= the new session's process group), then runs the command in
# the background with the launch lock inherited, writing the exit code atomically when it ends.
_LAUNCH_SCRIPT = (
    'exitf=$1; logf=$2; pidf=$3; shift 3; '
    'printf "%s\\n" "$$" > "$pidf.part" && mv -f "$pidf.part" "$pidf" || exit 1; '
    '( rc=0; "$@" || rc=$?; printf "%s\\n" "$rc" > "$exitf.part" && mv -f "$exitf.part" "$exitf" ) '
    '</dev/null >>"$logf" 2>&1 &'
)


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


class StillRunning(Exception):
    """A previous attempt's process still holds the launch lock (raised by :func:`launch_detached`)."""


def launch_detached(command: list[str], launch_dir: Path, env: Mapping[str, str], header: str) -> int:
    """Start ``command`` detached (own session, stdin /dev/null, output to scan.log); return its process group."""
    launch_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(launch_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StillRunning() from None
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


def read_int(path: Path) -> int | None:
    """The integer in a small file (pid or exit code); None while it is missing or half-written."""
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def kill_detached(launch_dir: Path, pgid: int | None, grace: float) -> bool:
    """SIGTERM the scan's process group, SIGKILL after ``grace`` s; True once its launch lock is free."""
    lock = launch_dir / LOCK_NAME
    if not lock_held(lock):
        return True
    group = pgid or read_int(launch_dir / PID_NAME)
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


def last_log_line(launch_dir: Path, limit: int = 300) -> str:
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
