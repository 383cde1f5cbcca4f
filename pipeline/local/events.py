"""What the local executor tells the outside world: node states, events, results and observers.

Progress displays and logs plug into the executor through :class:`DagObserver`; the executor itself knows
nothing about skyscan's nodes. The one-line formats here are those of ``<dagfile>.local.log``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

__all__ = [
    "ACTIVE_STATES",
    "STATES",
    "SUCCESS_STATES",
    "TRACE_ENV",
    "BaseObserver",
    "DagFinished",
    "DagObserver",
    "DagStarted",
    "LogObserver",
    "NodeEvent",
    "NodeInfo",
    "RunResult",
    "TraceObserver",
    "format_dag_finished",
    "format_dag_started",
    "format_node_event",
]

#: Environment variable naming a file to which the executor appends a timing trace (one JSON line per event).
TRACE_ENV = "SKYSCAN_EXECUTOR_TRACE"
#: Node states, in the order a node normally passes through them (``skipped``: its PRE script said so).
STATES = ("waiting", "pre", "running", "post", "done", "failed", "skipped")
#: States that count as success for the node's children and for resuming.
SUCCESS_STATES = frozenset({"done", "skipped"})
#: States in which a node holds its worker thread (and usually a process slot).
ACTIVE_STATES = frozenset({"pre", "running", "post"})


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
    elif event.state in ACTIVE_STATES and event.attempt > 1:
        line = f"{head} (attempt {event.attempt})"
    else:
        line = head
    return f"{line}: {event.error}" if event.error else line


def format_dag_started(event: DagStarted) -> str:
    done = sum(1 for n in event.nodes if n.state in SUCCESS_STATES)
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

    def write_line(self, line: str) -> None:
        """Write a line that is not an event (a note, an observer error) in the same stream."""
        self.stream.write(line + "\n")
        self.stream.flush()

    def dag_started(self, event: DagStarted) -> None:
        self.write_line(format_dag_started(event))

    def node_changed(self, event: NodeEvent) -> None:
        self.write_line(format_node_event(event))

    def dag_finished(self, event: DagFinished) -> None:
        self.write_line(format_dag_finished(event))


class TraceObserver(BaseObserver):
    """Append one JSON line per event, stamped with the wall clock in seconds since the epoch (sub-second).

    The file log and the run-state file stamp events to the second; this trace (``SKYSCAN_EXECUTOR_TRACE``)
    is for timing the critical path of a run (``benchmarks/scan.py``). Events go on to ``inner`` unchanged.
    """

    def __init__(self, path: str | Path, inner: DagObserver | None = None) -> None:
        self.path = Path(path)
        self.inner = inner
        self._lock = threading.Lock()

    def _write(self, record: dict[str, object]) -> None:
        record["t"] = time.time()
        line = json.dumps(record, sort_keys=True) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)

    def dag_started(self, event: DagStarted) -> None:
        self._write({"event": "dag_started", "dag": str(event.dag), "depth": event.depth,
                     "parent_node": event.parent_node})
        if self.inner is not None:
            self.inner.dag_started(event)

    def node_changed(self, event: NodeEvent) -> None:
        self._write({"event": "node_changed", "dag": str(event.dag), "depth": event.depth, "node": event.node,
                     "state": event.state, "attempt": event.attempt, "return_code": event.return_code,
                     "seconds": event.seconds})
        if self.inner is not None:
            self.inner.node_changed(event)

    def dag_finished(self, event: DagFinished) -> None:
        self._write({"event": "dag_finished", "dag": str(event.dag), "depth": event.depth,
                     "dag_status": event.result.dag_status, "seconds": event.result.seconds})
        if self.inner is not None:
            self.inner.dag_finished(event)
