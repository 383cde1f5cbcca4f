"""PRE and POST scripts of a node: DAGMan's ``$MACRO`` substitution, DEFER reruns and DEBUG files.

A script's output is captured, so its last line can go into the node's one-line error message.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from skyscan.dagman.parse import DagNode, DagScript
from skyscan.local.processes import POLL_SECONDS, RC_NOT_STARTED, Launcher, StopControl, Stopped, run_process
from skyscan.local.runtime import Runtime
from skyscan.timestamps import utcnow

__all__ = ["run_script"]

_SCRIPT_MACRO = re.compile(
    r"\$(PRE_SCRIPT_RETURN|MAX_RETRIES|FAILED_COUNT|DAG_STATUS|RETURN|RETRY|JOBID|JOB|NODE)(?![A-Za-z0-9_])"
)


def run_script(
    script: DagScript,
    node: DagNode,
    cwd: Path,
    macros: Mapping[str, str],
    runtime: Runtime,
    control: StopControl,
    holds_slot: bool,
) -> tuple[int, str]:
    """Run a PRE/POST script in ``cwd`` (again while it exits with its DEFER status).

    A node that does not hold a process slot for its whole life (a sub-DAG node) takes one for each run of
    the script. Returns (exit code, last line of its output); raises ``Stopped`` if the run is stopped.
    """
    argv = [_resolve_script(script.executable, cwd)]
    argv += [_substitute_script_macros(a, macros) for a in script.arguments]
    while True:
        if not holds_slot and not runtime.acquire_slot(control.stopped):
            raise Stopped
        try:
            rc, out, err = _run_script_once(argv, cwd, control, runtime.launcher)
        finally:
            if not holds_slot:
                runtime.slots.release()
        if script.debug_file:
            _write_script_debug(script, node, cwd, rc, out, err)
        if script.defer_status is not None and rc == script.defer_status:
            deadline = time.monotonic() + script.defer_seconds
            while time.monotonic() < deadline:
                if control.stopped():
                    raise Stopped
                time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            continue
        return rc, _tail(err) or _tail(out)


def _tail(data: bytes, limit: int = 300) -> str:
    """The last non-empty line of a script's output (at most ``limit`` characters), for the error message."""
    for line in reversed(data.decode("utf-8", "replace").splitlines()):
        if line.strip():
            return line.strip()[-limit:]
    return ""


def _substitute_script_macros(word: str, macros: Mapping[str, str]) -> str:
    """Replace DAGMan's ``$JOB``, ``$RETURN``, ... inside one argument; unknown ``$WORDS`` stay as they are."""
    return _SCRIPT_MACRO.sub(lambda m: macros.get(m.group(1), m.group(0)), word)


def _resolve_script(executable: str, cwd: Path) -> str:
    """Relative to the node's directory; a bare name not found there is looked up on PATH (leniency)."""
    path = Path(executable).expanduser()
    if path.is_absolute():
        return str(path)
    local = cwd / path
    if os.sep in executable or local.exists():
        return str(local)
    found = shutil.which(executable)
    return found if found else str(local)


def _run_script_once(
    argv: list[str], cwd: Path, control: StopControl, launcher: Launcher | None = None
) -> tuple[int, bytes, bytes]:
    """Exit code, standard output and standard error of one run (stdin is /dev/null)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            rc = run_process(argv, cwd, control, subprocess.DEVNULL, out, err, None, launcher)
        except OSError as exc:
            return RC_NOT_STARTED, b"", f"cannot start {argv[0]}: {exc.strerror or exc}".encode()
        out.seek(0)
        err.seek(0)
        return rc, out.read(), err.read()


def _write_script_debug(script: DagScript, node: DagNode, cwd: Path, rc: int, out: bytes, err: bytes) -> None:
    """SCRIPT DEBUG file type: append the script's output with a header line."""
    assert script.debug_file is not None
    path = cwd / script.debug_file
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        fh.write(f"--- {utcnow()} {script.when} script of node {node.name} exited with {rc}\n".encode())
        if script.debug_type in ("STDOUT", "ALL"):
            fh.write(out)
        if script.debug_type in ("STDERR", "ALL"):
            fh.write(err)
