"""Child processes of the local executor: each in its own process group, stoppable, never left behind.

Jobs and scripts run in a new session, so a terminal Ctrl-C reaches only the executor; it then stops
children itself (SIGTERM to the group, SIGKILL after a grace period) and records them as interrupted.
POSIX only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any, Protocol

__all__ = [
    "POLL_SECONDS",
    "RC_NOT_STARTED",
    "Launcher",
    "StopControl",
    "Stopped",
    "describe_exit",
    "pid_alive",
    "run_process",
    "signal_handlers",
]

#: ``$RETURN`` (and the node's return code) when a job could not be started at all (bad submit file,
#: missing executable); DAGMan uses negative values for "no exit code" too.
RC_NOT_STARTED = -1001
#: How often (seconds) waiting loops look at the stop flags.
POLL_SECONDS = 0.1


class Stopped(Exception):
    """The run is being stopped: the current process was terminated."""


@dataclass(frozen=True)
class StopControl:
    """How running children are stopped: when, and how long SIGTERM gets before SIGKILL."""

    stopped: Callable[[], bool]  # true once the run, or the DAG the child belongs to, is stopping
    grace: float  # seconds between SIGTERM and SIGKILL
    force: threading.Event  # set by a second Ctrl-C: skip the grace period


class Launcher(Protocol):
    """Another way to start some commands (the warm fork server): returns None for a command it does not take."""

    def run(self, argv: Sequence[str], cwd: Path, control: StopControl, stdin: IO[Any] | int, stdout: IO[Any] | int,
            stderr: IO[Any] | int, env: Mapping[str, str] | None) -> int | None: ...


def pid_alive(pid: object) -> bool:
    """True if a process with this id exists (an int > 0; anything else is not a live pid)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate(proc: subprocess.Popen[bytes], control: StopControl) -> None:
    """SIGTERM the child's process group, then SIGKILL after the grace period."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + control.grace
    while proc.poll() is None and time.monotonic() < deadline and not control.force.is_set():
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_process(
    argv: Sequence[str],
    cwd: Path,
    control: StopControl,
    stdin: IO[Any] | int,
    stdout: IO[Any] | int,
    stderr: IO[Any] | int,
    env: Mapping[str, str] | None = None,
    launcher: Launcher | None = None,
) -> int:
    """Run a child in its own process group and return its exit code; raise ``Stopped`` if stopped meanwhile.

    A ``launcher`` (the warm fork server) gets the command first; it runs the commands it knows and returns
    their exit code, or None, and then the command runs as a fresh process.
    """
    if launcher is not None:
        rc = launcher.run(argv, cwd, control, stdin, stdout, stderr, env)
        if rc is not None:
            return rc
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        close_fds=True,
    )
    while True:
        try:
            return proc.wait(timeout=POLL_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        if control.stopped():
            _terminate(proc, control)
            raise Stopped


def describe_exit(rc: int) -> str:
    """``exited with 1``, ``was killed by SIGTERM`` or ``could not be started``, for error messages."""
    if rc == RC_NOT_STARTED:
        return "could not be started"
    if rc < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-rc).name}"
        return f"was killed by signal {-rc}"
    return f"exited with {rc}"


@contextlib.contextmanager
def signal_handlers(stop: threading.Event, force: threading.Event, enabled: bool) -> Iterator[None]:
    """Ctrl-C / SIGTERM set ``stop`` (a clean stop); a second one also sets ``force`` (skip the grace period)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            force.set()
        stop.set()

    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
