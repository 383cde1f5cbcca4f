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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import IO, Any, Protocol

from skyscan.atomic import write_json
from skyscan.dagman.parse import Dag, Node, Script, parse_dag, parse_environment, split_arguments
from skyscan.errors import InputError, SkyscanError

__all__ = [
    "RC_NOT_STARTED",
    "RUNSTATE_SCHEMA",
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
_SUBMIT_LOCK = threading.Lock()
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
    head = f"{event.time} {_prefix(event.dag, event.depth)}dag {event.dag.name} started"
    return f"{head}: {len(event.nodes)} nodes, {done} already done ({how})"


def format_dag_finished(event: DagFinished) -> str:
    r = event.result
    done = r.counts.get("done", 0) + r.counts.get("skipped", 0)
    counts = f"{done} done, {len(r.failed)} failed, {len(r.not_run)} not run"
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

    def acquire_slot(self, stopped: Callable[[], bool]) -> bool:
        """Block until a process slot is free; False if the run is being stopped."""
        while not stopped():
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
                except Exception as exc:  # a broken display must not break the run
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
    stopped: Callable[[], bool],
    stdin: IO[Any] | int,
    stdout: IO[Any] | int,
    stderr: IO[Any] | int,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run a child in its own process group; raise ``_Stopped`` if the run is stopped meanwhile."""
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
            return proc.wait(timeout=_POLL_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        if stopped():
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
            except Exception as exc:
                raise _NodeError(f"cannot expand {key}: {exc}") from None
    return None


def _prepare_job(dag: Dag, node: Node, attempt: int, macros: Mapping[str, str]) -> _JobSpec:
    """Read the submit file, apply VARS and DAGMan's macros, and work out argv, directories and files."""
    with _SUBMIT_LOCK:  # the HTCondor bindings are not documented as thread-safe; this step is quick
        return _prepare_job_locked(dag, node, attempt, macros)


def _prepare_job_locked(dag: Dag, node: Node, attempt: int, macros: Mapping[str, str]) -> _JobSpec:
    import htcondor2  # deferred: importing the bindings is slow and not needed to parse DAGs

    node_dir = dag.node_dir(node)
    sub_path = node_dir / node.file
    try:
        text = sub_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _NodeError(f"cannot read submit file {node.file}: {exc.strerror or exc}") from None
    try:
        sub = htcondor2.Submit(text)
    except Exception as exc:  # the bindings raise several exception types
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
    except Exception as exc:
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


def _run_job(spec: _JobSpec, rt: _Runtime, stopped: Callable[[], bool]) -> int:
    """Start the job with its stdio files (truncated, like HTCondor), wait, return its exit code."""
    with contextlib.ExitStack() as stack:
        opened: dict[Path, IO[bytes]] = {}

        def open_out(path: Path | None) -> IO[bytes] | int:
            if path is None:
                return subprocess.DEVNULL
            key = path.absolute()
            if key not in opened:
                key.parent.mkdir(parents=True, exist_ok=True)
                opened[key] = stack.enter_context(open(key, "wb"))
            return opened[key]

        stdout = open_out(spec.stdout)
        stderr = open_out(spec.stderr)
        stdin: IO[bytes] | int = subprocess.DEVNULL
        if spec.stdin is not None:
            try:
                stdin = stack.enter_context(open(spec.stdin, "rb"))
            except OSError as exc:
                raise _NodeError(f"cannot open input file {spec.stdin}: {exc.strerror or exc}") from None
        if not spec.cwd.is_dir():
            raise _NodeError(f"initial directory {spec.cwd} does not exist")
        try:
            return _run_process(spec.argv, spec.cwd, rt, stopped, stdin, stdout, stderr, spec.env)
        except OSError as exc:
            raise _NodeError(f"cannot start {spec.argv[0]}: {exc.strerror or exc}") from None


def _describe_exit(rc: int) -> str:
    if rc == RC_NOT_STARTED:
        return "could not be started"
    if rc < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-rc).name}"
        return f"was killed by signal {-rc}"
    return f"exited with {rc}"


# ----------------------------------------------------------------------------------------------------
# One DAG run (the top-level DAG, or a sub-DAG inside a SUBDAG EXTERNAL node's worker thread)
# ----------------------------------------------------------------------------------------------------
class _DagRun:
    """Schedules the nodes of one DAG file.

    All bookkeeping happens in the thread calling :meth:`run`; each started node gets a worker thread
    that runs PRE, job (or nested sub-DAG) and POST, with retries, and reports back through a queue.
    """

    def __init__(self, dag: Dag, rt: _Runtime, parent: _DagRun | None = None, parent_node: str | None = None):
        self.dag = dag
        self.rt = rt
        self.parent = parent
        self.depth: int = 0 if parent is None else parent.depth + 1
        self.parent_node = parent_node
        self.ancestors: tuple[Path, ...] = (parent.ancestors if parent else ()) + (dag.path.resolve(),)
        self.halt = threading.Event()  # stops this DAG (and its sub-DAGs) only, e.g. after an internal error
        self.queue: queue.Queue[_Msg] = queue.Queue()
        self.records: dict[str, _Record] = {}
        self.remaining: dict[str, int] = {}
        self.ready: list[tuple[int, int, str]] = []  # heap of (-priority, file order, name)
        self.order = {name: i for i, name in enumerate(dag.nodes)}
        self.active: set[str] = set()
        self.cat_active: Counter[str] = Counter()
        self.threads: list[threading.Thread] = []
        self.failed_count = 0
        self.final_macros: dict[str, str] = {}
        self.state_path = runstate_path(dag.path)
        self.started = _utcnow()
        self.t0 = time.monotonic()
        self.finished: str | None = None
        self.dag_status: int | None = None
        self.interrupted = False
        self.resumed = False
        self.notes: list[str] = []
        self.dirty = False
        self.last_flush = 0.0
        self.log: LogObserver | None = None

    def stopped(self) -> bool:
        """True once the whole run (Ctrl-C, stop_event) or this DAG or any enclosing DAG is stopping."""
        run: _DagRun | None = self
        while run is not None:
            if run.halt.is_set():
                return True
            run = run.parent
        return self.rt.stop.is_set()

    # -- setup -------------------------------------------------------------------------------------
    def _load_previous(self) -> None:
        """Keep done/skipped nodes from a run-state file of the same DAG content; everything else reruns."""
        prev_nodes: Mapping[str, Any] = {}
        prev_ok = False
        if self.state_path.exists():
            try:
                doc = read_runstate(self.state_path)
            except InputError as exc:
                self.notes.append(f"ignoring the run-state file: {exc}")
            else:
                pid = doc.get("pid")
                if doc.get("finished") is None and isinstance(pid, int) and pid != os.getpid() and pid_alive(pid):
                    raise SkyscanError(
                        f"{self.dag.path.name} is already being run by process {pid} "
                        f"(remove {self.state_path.name} if that is wrong)"
                    )
                if doc.get("dag_digest") != self.dag.digest:
                    self.notes.append(f"{self.state_path.name} belongs to different DAG content: starting afresh")
                else:
                    prev_nodes = doc["nodes"]
                    prev_ok = doc.get("dag_status") == 0
                    self.resumed = True
        for name, node in self.dag.nodes.items():
            rec = _Record()
            if node.kind == "subdag":
                rec.subdag = os.path.relpath(self.dag.node_dir(node) / node.file, self.dag.directory)
            prev = prev_nodes.get(name)
            if node.done:
                rec.state = "done"
            elif isinstance(prev, dict) and prev.get("state") in _SUCCESS and (not node.final or prev_ok):
                # the FINAL node always reruns after a run that did not succeed: it reports the new outcome
                rec.state = str(prev["state"])
                rec.attempts = prev["attempts"] if isinstance(prev.get("attempts"), int) else 0
                rec.return_code = prev["return_code"] if isinstance(prev.get("return_code"), int) else None
                rec.started = prev["started"] if isinstance(prev.get("started"), str) else None
                rec.finished = prev["finished"] if isinstance(prev.get("finished"), str) else None
            self.records[name] = rec

    def _push_ready(self, name: str) -> None:
        heapq.heappush(self.ready, (-self.dag.nodes[name].priority, self.order[name], name))

    def _init_ready(self) -> None:
        for name, node in self.dag.nodes.items():
            if node.final:
                continue
            self.remaining[name] = sum(1 for p in node.parents if self.records[p].state not in _SUCCESS)
            if self.records[name].state == "waiting" and self.remaining[name] == 0:
                self._push_ready(name)

    # -- events and state file ---------------------------------------------------------------------
    def _emit_node(self, name: str, seconds: float | None = None) -> None:
        rec = self.records[name]
        node = self.dag.nodes[name]
        event = NodeEvent(
            dag=self.dag.path, depth=self.depth, node=name, state=rec.state, attempt=rec.attempts,
            vars=dict(node.vars), return_code=rec.return_code, seconds=seconds, error=rec.error, time=_utcnow(),
        )
        self.rt.emit(self.log, "node_changed", event)

    def _write_state(self, force: bool = False) -> None:
        """Atomically rewrite the run-state file (coalesced unless forced)."""
        if not force and (not self.dirty or time.monotonic() - self.last_flush < _STATE_FLUSH_SECONDS):
            return
        doc = {
            "schema": RUNSTATE_SCHEMA,
            "dag": self.dag.path.name,
            "dag_digest": self.dag.digest,
            "pid": os.getpid(),
            "jobs": self.rt.jobs,
            "started": self.started,
            "updated": _utcnow(),
            "finished": self.finished,
            "dag_status": self.dag_status,
            "interrupted": self.interrupted,
            "nodes": {name: rec.to_json(self.dag.nodes[name]) for name, rec in self.records.items()},
        }
        write_json(self.state_path, doc)
        self.dirty = False
        self.last_flush = time.monotonic()

    # -- main loop ---------------------------------------------------------------------------------
    def run(self) -> RunResult:
        self._load_previous()
        with open(local_log_path(self.dag.path), "a", encoding="utf-8") as fh:
            self.log = LogObserver(fh)
            try:
                for note in self.notes:
                    self.log._write(f"{_utcnow()} {note}")
                return self._run()
            except BaseException:
                self.halt.set()  # never leave children running behind an error
                self._join()
                raise
            finally:
                self.log = None

    def _run(self) -> RunResult:
        self._write_state(force=True)
        nodes = tuple(
            NodeInfo(name=n.name, kind=n.kind, final=n.final, state=self.records[n.name].state, vars=dict(n.vars),
                     category=n.category)
            for n in self.dag.nodes.values()
        )
        self.rt.emit(self.log, "dag_started", DagStarted(
            dag=self.dag.path, depth=self.depth, parent_node=self.parent_node, nodes=nodes, resumed=self.resumed,
            time=_utcnow(),
        ))
        self._init_ready()
        self._drive()
        final = self.dag.final
        if final is not None and self.records[final].state not in _SUCCESS and not self.stopped():
            status = "1" if self.failed_count else "0"
            self.final_macros = {"DAG_STATUS": status, "FAILED_COUNT": str(self.failed_count)}
            self._push_ready(final)
            self._drive()
        self._join()
        return self._finish()

    def _drive(self) -> None:
        """Apply worker reports and start ready nodes until nothing is running or can start."""
        while True:
            msg: _Msg | None
            try:
                msg = self.queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                msg = None
            except KeyboardInterrupt:  # only reachable when no signal handler is installed
                self.rt.stop.set()
                msg = None
            while msg is not None:
                self._apply(msg)
                try:
                    msg = self.queue.get_nowait()
                except queue.Empty:
                    msg = None
            if not self.stopped():
                self._launch()
            self._write_state()
            if not self.active and (self.stopped() or not self.ready):
                return

    def _launch(self) -> None:
        """Start ready nodes in priority order within the global process slots and MAXJOBS limits."""
        held: list[tuple[int, int, str]] = []
        slots_exhausted = False
        while self.ready:
            item = heapq.heappop(self.ready)
            node = self.dag.nodes[item[2]]
            limit = self.dag.maxjobs.get(node.category) if node.category else None
            if limit is not None and self.cat_active[node.category or ""] >= limit:
                held.append(item)
                continue
            needs_slot = node.kind == "job" and not (node.noop and node.pre is None and node.post is None)
            if needs_slot and (slots_exhausted or not self.rt.slots.acquire(blocking=False)):
                slots_exhausted = True
                held.append(item)
                continue
            self._start(node, holds_slot=needs_slot)
        for item in held:
            heapq.heappush(self.ready, item)

    def _start(self, node: Node, holds_slot: bool) -> None:
        rec = self.records[node.name]
        rec.t0 = time.monotonic()
        rec.started = _utcnow()
        rec.finished = None
        rec.error = None
        rec.return_code = None
        self.active.add(node.name)
        if node.category:
            self.cat_active[node.category] += 1
        thread = threading.Thread(
            target=self._worker, args=(node, holds_slot), name=f"dagrun-{node.name}", daemon=True
        )
        self.threads.append(thread)
        thread.start()

    def _apply(self, msg: _Msg) -> None:
        rec = self.records[msg.node]
        node = self.dag.nodes[msg.node]
        rec.state = msg.state
        rec.attempts = max(rec.attempts, msg.attempt + 1)
        seconds: float | None = None
        if msg.state in _ACTIVE:
            rec.error = None
        else:
            rec.return_code = msg.return_code
            rec.error = msg.error
        if msg.last:
            self.active.discard(msg.node)
            if node.category:
                self.cat_active[node.category] -= 1
            if msg.state in ("done", "failed", "skipped"):
                rec.finished = _utcnow()
                seconds = time.monotonic() - rec.t0 if rec.t0 is not None else None
            if msg.state in _SUCCESS:
                for child in node.children:
                    self.remaining[child] -= 1
                    if self.remaining[child] == 0 and self.records[child].state == "waiting":
                        self._push_ready(child)
            elif msg.state == "failed":
                self.failed_count += 1
        self.dirty = True
        self._emit_node(msg.node, seconds)

    def _join(self) -> None:
        for thread in self.threads:
            thread.join()
        while True:  # reports that arrived after the loop stopped (only after an error or interrupt)
            try:
                self._apply(self.queue.get_nowait())
            except queue.Empty:
                break

    def _blocked(self) -> set[str]:
        """Waiting nodes that can never run because an ancestor failed."""
        blocked: set[str] = set()
        stack = [name for name, rec in self.records.items() if rec.state == "failed"]
        while stack:
            for child in self.dag.nodes[stack.pop()].children:
                if child not in blocked and self.records[child].state == "waiting":
                    blocked.add(child)
                    stack.append(child)
        return blocked

    def _finish(self) -> RunResult:
        blocked = self._blocked()
        unfinished = [n for n, r in self.records.items() if r.state not in _SUCCESS and r.state != "failed"]
        self.interrupted = self.stopped() and any(n not in blocked for n in unfinished)
        for name in blocked:
            self.records[name].error = "not run: an ancestor failed"
        failed = tuple(n for n, r in self.records.items() if r.state == "failed")
        self.dag_status = None if self.interrupted else (1 if failed else 0)
        self.finished = _utcnow()
        self._write_state(force=True)
        result = RunResult(
            dag=self.dag.path,
            dag_status=self.dag_status,
            interrupted=self.interrupted,
            counts=dict(Counter(r.state for r in self.records.values())),
            failed=failed,
            not_run=tuple(n for n in self.dag.nodes if n in blocked),
            seconds=time.monotonic() - self.t0,
        )
        self.rt.emit(self.log, "dag_finished", DagFinished(
            dag=self.dag.path, depth=self.depth, parent_node=self.parent_node, result=result, time=_utcnow(),
        ))
        return result

    # -- node workers ------------------------------------------------------------------------------
    def _worker(self, node: Node, holds_slot: bool) -> None:
        """Run one node to completion: attempts with PRE/job/POST, retried as RETRY says."""
        attempt = 0
        state, rc, error = "failed", None, None
        try:
            while True:
                state, rc, error = self._attempt(node, attempt, holds_slot)
                if state != "failed" or self.stopped() or attempt >= node.retry:
                    break
                if node.retry_unless_exit is not None and rc == node.retry_unless_exit:
                    error = f"{error}; not retried (UNLESS-EXIT {rc})"
                    break
                note = f"attempt {attempt + 1} failed: {error}; retry {attempt + 1} of {node.retry}"
                self.queue.put(_Msg(node.name, "waiting", attempt, rc, note))
                attempt += 1
        except _Stopped:
            state, rc, error = "waiting", None, "interrupted"
        except BaseException as exc:  # report it; never leave the scheduler waiting
            state, rc, error = "failed", None, f"internal error: {type(exc).__name__}: {exc}"
        finally:
            if holds_slot:
                self.rt.slots.release()
            self.queue.put(_Msg(node.name, state, attempt, rc, error, last=True))

    def _script_macros(self, node: Node, attempt: int) -> dict[str, str]:
        if node.final and self.final_macros:
            status, failed = self.final_macros["DAG_STATUS"], self.final_macros["FAILED_COUNT"]
        else:
            status, failed = ("1" if self.failed_count else "0"), str(self.failed_count)
        return {"JOB": node.name, "NODE": node.name, "RETRY": str(attempt), "MAX_RETRIES": str(node.retry),
                "DAG_STATUS": status, "FAILED_COUNT": failed}

    def _attempt(self, node: Node, attempt: int, holds_slot: bool) -> tuple[str, int | None, str | None]:
        """One try of PRE, job, POST. Returns (state, deciding exit code, error)."""
        macros = self._script_macros(node, attempt)
        pre_rc: int | None = None
        if node.pre is not None:
            self.queue.put(_Msg(node.name, "pre", attempt))
            pre_rc, tail = self._script(node.pre, node, macros, holds_slot)
            if node.pre_skip is not None and pre_rc == node.pre_skip:
                return "skipped", pre_rc, None
            if pre_rc != 0:
                return "failed", pre_rc, f"PRE script {_describe_exit(pre_rc)}" + (f": {tail}" if tail else "")
        self.queue.put(_Msg(node.name, "running", attempt))
        job_rc, job_error = self._job(node, attempt)
        if node.post is not None:
            self.queue.put(_Msg(node.name, "post", attempt))
            post_macros = {**macros, "RETURN": str(job_rc), "JOBID": "0.0",
                           "PRE_SCRIPT_RETURN": str(pre_rc if pre_rc is not None else -1)}
            post_rc, tail = self._script(node.post, node, post_macros, holds_slot)
            if post_rc == 0:
                return "done", 0, None
            error = f"POST script {_describe_exit(post_rc)}" + (f": {tail}" if tail else "")
            if job_rc != 0:
                error += f" (job: {job_error})"
            return "failed", post_rc, error
        if job_rc == 0:
            return "done", 0, None
        return "failed", job_rc, job_error

    def _job(self, node: Node, attempt: int) -> tuple[int, str | None]:
        if node.noop:
            return 0, None
        if node.kind == "subdag":
            return self._subdag(node)
        try:
            spec = _prepare_job(self.dag, node, attempt, self.final_macros if node.final else {})
            rc = _run_job(spec, self.rt, self.stopped)
        except _NodeError as exc:
            return RC_NOT_STARTED, f"job could not be started: {exc}"
        if rc == 0:
            return 0, None
        where = f" (stderr in {self._rel(spec.stderr)})" if spec.stderr is not None else ""
        return rc, f"job {_describe_exit(rc)}{where}"

    def _rel(self, path: Path) -> str:
        try:
            return os.path.relpath(path, self.dag.directory)
        except ValueError:
            return str(path)

    def _subdag(self, node: Node) -> tuple[int, str | None]:
        """Run a SUBDAG EXTERNAL node's DAG (parsed only now: a PRE script may just have written it)."""
        path = (self.dag.node_dir(node) / node.file).absolute()
        if path.resolve() in self.ancestors:
            return 1, f"sub-DAG {node.file} would run itself recursively"
        try:
            sub = parse_dag(path)
            result = _DagRun(sub, self.rt, parent=self, parent_node=node.name).run()
        except (InputError, SkyscanError, OSError) as exc:
            return 1, f"sub-DAG {node.file}: {exc}"
        if result.interrupted:
            raise _Stopped
        if result.dag_status == 0:
            return 0, None
        names = ", ".join(result.failed[:3]) + (", ..." if len(result.failed) > 3 else "")
        return result.dag_status or 1, f"sub-DAG {node.file} failed ({len(result.failed)} failed: {names})"

    def _script(self, script: Script, node: Node, macros: Mapping[str, str], holds_slot: bool) -> tuple[int, str]:
        """Run a PRE/POST script (again while it exits with its DEFER status). Returns (exit code, last line)."""
        cwd = self.dag.node_dir(node)
        argv = [_resolve_script(script.executable, cwd)]
        argv += [_substitute_script_macros(a, macros) for a in script.arguments]
        while True:
            if not holds_slot and not self.rt.acquire_slot(self.stopped):
                raise _Stopped
            try:
                rc, out, err = self._run_script_once(argv, cwd)
            finally:
                if not holds_slot:
                    self.rt.slots.release()
            if script.debug_file:
                self._write_script_debug(script, node, cwd, rc, out, err)
            if script.defer_status is not None and rc == script.defer_status:
                deadline = time.monotonic() + script.defer_seconds
                while time.monotonic() < deadline:
                    if self.stopped():
                        raise _Stopped
                    time.sleep(min(_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
                continue
            return rc, _tail(err) or _tail(out)

    def _run_script_once(self, argv: list[str], cwd: Path) -> tuple[int, bytes, bytes]:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                rc = _run_process(argv, cwd, self.rt, self.stopped, subprocess.DEVNULL, out, err)
            except OSError as exc:
                return RC_NOT_STARTED, b"", f"cannot start {argv[0]}: {exc.strerror or exc}".encode()
            out.seek(0)
            err.seek(0)
            return rc, out.read(), err.read()

    @staticmethod
    def _write_script_debug(script: Script, node: Node, cwd: Path, rc: int, out: bytes, err: bytes) -> None:
        """SCRIPT DEBUG file type: append the script's output with a header line."""
        assert script.debug_file is not None
        path = cwd / script.debug_file
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as fh:
            fh.write(f"--- {_utcnow()} {script.when} script of node {node.name} exited with {rc}\n".encode())
            if script.debug_type in ("STDOUT", "ALL"):
                fh.write(out)
            if script.debug_type in ("STDERR", "ALL"):
                fh.write(err)


# ----------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _signal_handlers(rt: _Runtime, enabled: bool) -> Iterator[None]:
    """Ctrl-C / SIGTERM request a clean stop; a second one skips the grace period."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if rt.stop.is_set():
            rt.force.set()
        rt.stop.set()

    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def run_dag(
    dag_path: str | Path,
    jobs: int | None = None,
    observer: DagObserver | None = None,
    stop_event: threading.Event | None = None,
    *,
    grace: float = 3.0,
    handle_signals: bool = True,
) -> RunResult:
    """Run a DAG file locally, resuming from its run-state file; see docs/local-executor.md.

    ``jobs`` limits the processes (jobs and scripts) running at once over all nesting levels (default: the
    CPU count). Setting ``stop_event`` (or Ctrl-C/SIGTERM when called from the main thread) stops the run:
    children get SIGTERM, then SIGKILL after ``grace`` seconds, and the result says ``interrupted``.
    Raises ``InputError`` for a malformed top-level DAG; node failures are reported in the result.
    """
    dag = parse_dag(dag_path)
    limit = jobs if jobs is not None else (os.cpu_count() or 1)
    if limit < 1:
        raise InputError(f"the number of parallel jobs must be at least 1, not {limit}")
    rt = _Runtime(jobs=limit, stop=stop_event or threading.Event(), force=threading.Event(), grace=grace,
                  observer=observer)
    with _signal_handlers(rt, handle_signals):
        try:
            return _DagRun(dag, rt).run()
        except OSError as exc:  # e.g. the run-state file or log cannot be written
            raise SkyscanError(f"local executor: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m skyscan.dagrun DAG [-j N]``: exit 0 ok, 1 DAG failed, 2 bad input, 130 interrupted."""
    parser = argparse.ArgumentParser(prog="python -m skyscan.dagrun", description="Run a DAGMan DAG locally.")
    parser.add_argument("dag", help="the .dag file")
    parser.add_argument("-j", "--jobs", type=int, default=None, help="processes at once (default: CPU count)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no event lines on stderr")
    args = parser.parse_args(argv)
    try:
        result = run_dag(args.dag, jobs=args.jobs, observer=None if args.quiet else LogObserver(sys.stderr))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SkyscanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result.interrupted:
        return 130
    return 0 if result.dag_status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
