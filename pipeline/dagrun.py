"""Run HTCondor DAGMan files on the local machine, without HTCondor.

``skyscan run`` writes the same ``.dag``/``.sub`` files that ``condor_submit_dag`` would get and hands them
to :func:`run_dag`, so a laptop or CI run exercises exactly the graph a grid run uses. The executor is
generic: it knows DAGMan semantics (PRE/POST scripts, RETRY, PRE_SKIP, SUBDAG EXTERNAL, FINAL, MAXJOBS)
but nothing about skyscan's nodes; progress displays plug in through :class:`DagObserver`.

Each DAG file gets a run-state file ``<dagfile>.runstate.json`` (the resume record, like a rescue DAG)
and a plain-text log ``<dagfile>.local.log`` beside it. POSIX only (process groups, signals).
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import IO, Any, Protocol

from skyscan.atomic import write_json
from skyscan.dagparse import Dag, Node, Script, parse_dag, parse_environment, split_arguments
from skyscan.errors import InputError, SkyscanError

__all__ = [
    "RUNSTATE_SCHEMA",
    "RC_NOT_STARTED",
    "BaseObserver",
    "DagFinished",
    "DagObserver",
    "DagStarted",
    "LogObserver",
    "NodeEvent",
    "NodeInfo",
    "RunResult",
    "local_log_path",
    "main",
    "parse_dag",
    "read_runstate",
    "run_dag",
    "runstate_path",
]

RUNSTATE_SCHEMA = "skyscan-runstate/1"
#: ``$RETURN`` (and the node's return code) when a job could not be started at all (bad submit file,
#: missing executable); DAGMan uses negative values for "no exit code" too.
RC_NOT_STARTED = -1001

STATES = ("waiting", "pre", "running", "post", "done", "failed", "skipped")
_SUCCESS = frozenset({"done", "skipped"})
_ACTIVE = frozenset({"pre", "running", "post"})
_STATE_FLUSH_SECONDS = 0.25  # coalesce run-state rewrites (a big DAG changes state many times a second)
_POLL_SECONDS = 0.1
_SCRIPT_MACRO = re.compile(
    r"\$(PRE_SCRIPT_RETURN|MAX_RETRIES|FAILED_COUNT|DAG_STATUS|RETURN|RETRY|JOBID|JOB|NODE)(?![A-Za-z0-9_])"
)


# ----------------------------------------------------------------------------------------------------
# Public data: events, results
# ----------------------------------------------------------------------------------------------------
def _utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class NodeInfo:
    """A node as announced when its DAG starts (``vars`` are the raw VARS, e.g. ``stage``/``npix``)."""

    name: str
    kind: str  # "job" | "subdag"
    final: bool
    state: str
    vars: Mapping[str, str]
    category: str | None


@dataclass(frozen=True)
class DagStarted:
    dag: Path  # absolute path of the DAG file
    depth: int  # 0 for the top-level DAG, 1 for its sub-DAGs, ...
    parent_node: str | None  # the SUBDAG EXTERNAL node running this DAG
    nodes: tuple[NodeInfo, ...]
    resumed: bool  # a matching run-state file was found and its done nodes are kept
    time: str


@dataclass(frozen=True)
class NodeEvent:
    dag: Path
    depth: int
    node: str
    state: str  # one of STATES
    attempt: int  # 1-based attempt number in this run (0 if the node never started)
    vars: Mapping[str, str]
    return_code: int | None
    seconds: float | None  # wall time of the node so far, on done/failed/skipped
    error: str | None
    time: str


@dataclass(frozen=True)
class RunResult:
    """Outcome of one DAG run. ``dag_status`` is DAGMan's $DAG_STATUS (0 ok, 1 failed), None if interrupted."""

    dag: Path
    dag_status: int | None
    interrupted: bool
    counts: Mapping[str, int]
    failed: tuple[str, ...]
    not_run: tuple[str, ...]  # blocked by a failed ancestor
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.interrupted and self.dag_status == 0


@dataclass(frozen=True)
class DagFinished:
    dag: Path
    depth: int
    parent_node: str | None
    result: RunResult
    time: str


class DagObserver(Protocol):
    """Receives executor events. Calls are serialised (never concurrent) but come from worker threads."""

    def dag_started(self, event: DagStarted) -> None: ...

    def node_changed(self, event: NodeEvent) -> None: ...

    def dag_finished(self, event: DagFinished) -> None: ...


class BaseObserver:
    """An observer that ignores everything; subclass and override what you need."""

    def dag_started(self, event: DagStarted) -> None:
        return None

    def node_changed(self, event: NodeEvent) -> None:
        return None

    def dag_finished(self, event: DagFinished) -> None:
        return None


def _prefix(dag: Path, depth: int) -> str:
    return f"{dag.name}: " if depth > 0 else ""


def format_node_event(event: NodeEvent) -> str:
    """One plain line, e.g. ``2026-11-24T12:00:00Z node scan-s0-0001 done (rc 0, 1.2 s)``."""
    head = f"{event.time} {_prefix(event.dag, event.depth)}node {event.node} {event.state}"
    if event.state in ("done", "failed", "skipped"):
        rc = "-" if event.return_code is None else str(event.return_code)
        secs = "" if event.seconds is None else f", {event.seconds:.1f} s"
        line = f"{head} (rc {rc}{secs})"
    elif event.state in _ACTIVE and event.attempt > 1:
        line = f"{head} (attempt {event.attempt})"
    else:
        line = head
    return f"{line}: {event.error}" if event.error else line


def format_dag_started(event: DagStarted) -> str:
    done = sum(1 for n in event.nodes if n.state in _SUCCESS)
    how = "resuming" if event.resumed else "fresh start"
    return f"{event.time} {_prefix(event.dag, event.depth)}dag {event.dag.name} started: {len(event.nodes)} nodes, {done} already done ({how})"


def format_dag_finished(event: DagFinished) -> str:
    r = event.result
    counts = f"{r.counts.get('done', 0) + r.counts.get('skipped', 0)} done, {len(r.failed)} failed, {len(r.not_run)} not run"
    what = "interrupted" if r.interrupted else f"finished with status {r.dag_status}"
    return f"{event.time} {_prefix(event.dag, event.depth)}dag {event.dag.name} {what} ({counts}, {r.seconds:.1f} s)"


class LogObserver(BaseObserver):
    """Write one plain line per event to a text stream (the default console output and the file log)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def dag_started(self, event: DagStarted) -> None:
        self._write(format_dag_started(event))

    def node_changed(self, event: NodeEvent) -> None:
        self._write(format_node_event(event))

    def dag_finished(self, event: DagFinished) -> None:
        self._write(format_dag_finished(event))


# ----------------------------------------------------------------------------------------------------
# Paths and the run-state file
# ----------------------------------------------------------------------------------------------------
def runstate_path(dag_path: str | Path) -> Path:
    """``<dagfile>.runstate.json`` beside the DAG file."""
    p = Path(dag_path)
    return p.with_name(p.name + ".runstate.json")


def local_log_path(dag_path: str | Path) -> Path:
    """``<dagfile>.local.log`` beside the DAG file (appended to on every run)."""
    p = Path(dag_path)
    return p.with_name(p.name + ".local.log")


def read_runstate(path: str | Path) -> dict[str, Any]:
    """Read a run-state file (given it or the DAG file it belongs to); ``InputError`` if missing or not one."""
    p = Path(path)
    if not p.name.endswith(".json"):
        p = runstate_path(p)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"no run-state file {p}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read run-state file {p}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != RUNSTATE_SCHEMA or not isinstance(doc.get("nodes"), dict):
        raise InputError(f"{p} is not a {RUNSTATE_SCHEMA} run-state file")
    return doc


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------------------------------
# Shared runtime (one per run_dag call, shared by nested sub-DAGs)
# ----------------------------------------------------------------------------------------------------
@dataclass
class _Runtime:
    jobs: int
    stop: threading.Event
    force: threading.Event  # a second Ctrl-C: skip the SIGTERM grace period
    grace: float
    observer: DagObserver | None
    slots: threading.BoundedSemaphore = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.slots = threading.BoundedSemaphore(self.jobs)

    def acquire_slot(self) -> bool:
        """Block until a process slot is free; False if the run is being stopped."""
        while not self.stop.is_set():
            if self.slots.acquire(timeout=_POLL_SECONDS):
                return True
        return False

    def emit(self, local: LogObserver | None, method: str, event: Any) -> None:
        """Deliver an event to the DAG's file log and the caller's observer, one at a time."""
        with self.lock:
            for obs in (local, self.observer):
                if obs is None:
                    continue
                try:
                    getattr(obs, method)(event)
                except Exception as exc:  # noqa: BLE001 - a broken display must not break the run
                    if local is not None and obs is not local:
                        with contextlib.suppress(Exception):
                            local._write(f"{_utcnow()} observer error in {method}: {type(exc).__name__}: {exc}")


class _Stopped(Exception):
    """The run is being stopped: the current process was terminated."""


class _NodeError(Exception):
    """A node's job could not be prepared or started (bad submit file, missing executable)."""


@dataclass
class _Record:
    """The mutable run-state entry of one node (owned by its DAG's scheduler thread)."""

    state: str = "waiting"
    attempts: int = 0
    return_code: int | None = None
    started: str | None = None
    finished: str | None = None
    error: str | None = None
    subdag: str | None = None
    t0: float | None = None

    def to_json(self, node: Node) -> dict[str, Any]:
        return {
            "state": self.state,
            "attempts": self.attempts,
            "return_code": self.return_code,
            "started": self.started,
            "finished": self.finished,
            "vars": dict(node.vars),
            "subdag": self.subdag,
            "error": self.error,
        }


@dataclass
class _Msg:
    """A state change reported by a node worker to its scheduler."""

    node: str
    state: str
    attempt: int  # 0-based
    return_code: int | None = None
    error: str | None = None
    last: bool = False  # the worker has finished with this node


# ----------------------------------------------------------------------------------------------------
# Processes
# ----------------------------------------------------------------------------------------------------
def _terminate(proc: subprocess.Popen[bytes], rt: _Runtime) -> None:
    """SIGTERM the child's process group, then SIGKILL after the grace period."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + rt.grace
    while proc.poll() is None and time.monotonic() < deadline and not rt.force.is_set():
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _run_process(
    argv: Sequence[str],
    cwd: Path,
    rt: _Runtime,
    stdin: IO[Any] | int,
    stdout: IO[Any] | int,
    stderr: IO[Any] | int,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run a child in its own process group; raise ``_Stopped`` if the run is stopped meanwhile."""
    proc = subprocess.Popen(  # noqa: S603 - running the DAG's own commands is the point
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
            return proc.wait(timeout=_POLL_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        if rt.stop.is_set():
            _terminate(proc, rt)
            raise _Stopped


def _tail(data: bytes, limit: int = 300) -> str:
    """The last non-empty line of a script's output, for the one-line error message."""
    for line in reversed(data.decode("utf-8", "replace").splitlines()):
        if line.strip():
            return line.strip()[-limit:]
    return ""


def _substitute_script_macros(word: str, macros: Mapping[str, str]) -> str:
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


@dataclass
class _JobSpec:
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    stdin: Path | None
    stdout: Path | None
    stderr: Path | None


def _submit_value(sub: Any, *keys: str) -> str | None:
    """The expanded value of the first key present; '' if it expands to nothing; None if absent."""
    for key in keys:
        if key in sub:
            try:
                return str(sub.expand(key)).strip()
            except KeyError:  # htcondor2 raises KeyError when the expansion is empty
                return ""
            except Exception as exc:  # noqa: BLE001
                raise _NodeError(f"cannot expand {key}: {exc}") from None
    return None


def _prepare_job(dag: Dag, node: Node, attempt: int, macros: Mapping[str, str]) -> _JobSpec:
    """Read the submit file, apply VARS and DAGMan's macros, and work out argv, directories and files."""
    import htcondor2  # deferred: importing the bindings is slow and not needed to parse DAGs

    node_dir = dag.node_dir(node)
    sub_path = node_dir / node.file
    try:
        text = sub_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _NodeError(f"cannot read submit file {node.file}: {exc.strerror or exc}") from None
    try:
        sub = htcondor2.Submit(text)
    except Exception as exc:  # noqa: BLE001 - the bindings raise several types
        raise _NodeError(f"cannot parse submit file {node.file}: {exc}") from None
    qargs = (sub.getQArgs() or "").strip()
    if qargs not in ("", "1"):
        raise _NodeError(f"submit file {node.file}: only one job per node is supported locally (queue {qargs})")
    base = {"Cluster": "0", "ClusterId": "0", "Process": "0", "ProcId": "0", "JOB": node.name,
            "RETRY": str(attempt), "dag_node_name": node.name}
    try:
        for key, value in {**base, **macros}.items():
            sub[key] = value
        for key, value in node.vars.items():
            if key in node.prepend_vars and key in sub:
                continue
            sub[key] = value
    except Exception as exc:  # noqa: BLE001
        raise _NodeError(f"cannot set macros for submit file {node.file}: {exc}") from None
    executable = _submit_value(sub, "executable")
    if not executable:
        raise _NodeError(f"submit file {node.file} has no executable")
    exe = Path(executable).expanduser()
    if not exe.is_absolute():
        exe = node_dir / exe  # like condor_submit: relative to where the submit happens, not initialdir
    initialdir = _submit_value(sub, "initialdir", "initial_dir")
    cwd = node_dir / Path(initialdir).expanduser() if initialdir else node_dir
    try:
        argv = [str(exe), *split_arguments(_submit_value(sub, "arguments", "args") or "")]
        env = dict(os.environ)
        env.update(parse_environment(_submit_value(sub, "environment", "env") or ""))
    except ValueError as exc:
        raise _NodeError(f"submit file {node.file}: {exc}") from None

    def in_cwd(key: str) -> Path | None:
        value = _submit_value(sub, key)
        return cwd / Path(value).expanduser() if value else None

    return _JobSpec(argv=argv, cwd=cwd, env=env, stdin=in_cwd("input"), stdout=in_cwd("output"),
                    stderr=in_cwd("error"))


def _run_job(spec: _JobSpec, rt: _Runtime) -> int:
    """Start the job with its stdio files (truncated, like HTCondor), wait, return its exit code."""
    with contextlib.ExitStack() as stack:
        opened: dict[Path, IO[bytes]] = {}

        def open_out(path: Path | None) -> IO[bytes] | int:
            if path is None:
                return subprocess.DEVNULL
            key = path.absolute()
            if key not in opened:
                key.parent.mkdir(parents=True, exist_ok=True)
                opened[key] = stack.enter_context(open(key, "wb"))  # noqa: SIM115
            return opened[key]

        stdout = open_out(spec.stdout)
        stderr = open_out(spec.stderr)
        stdin: IO[bytes] | int = subprocess.DEVNULL
        if spec.stdin is not None:
            try:
                stdin = stack.enter_context(open(spec.stdin, "rb"))  # noqa: SIM115
            except OSError as exc:
                raise _NodeError(f"cannot open input file {spec.stdin}: {exc.strerror or exc}") from None
        if not spec.cwd.is_dir():
            raise _NodeError(f"initial directory {spec.cwd} does not exist")
        try:
            return _run_process(spec.argv, spec.cwd, rt, stdin, stdout, stderr, spec.env)
        except OSError as exc:
            raise _NodeError(f"cannot start {spec.argv[0]}: {exc.strerror or exc}") from None
