"""The run-state file ``<dagfile>.runstate.json``: the local executor's resume record, like a rescue DAG.

One file per DAG file, beside it, in the shared ``skyscan-runstate/1`` format (docs/local-executor.md). A run
keeps the done/skipped nodes of a previous run of the *same DAG content* (same digest) and reruns the rest;
a done node whose declared outputs are missing, incomplete or fail their checksum (``skyscan.local.verify``) is
run again, and so is the FINAL node then (it reports the new outcome).
Status readers (``skyscan status``, campaigns) read the file through :func:`read_runstate`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyscan.dagman.parse import Dag, DagNode
from skyscan.errors import InputError, SkyscanError
from skyscan.local.events import SUCCESS_STATES
from skyscan.local.processes import pid_alive
from skyscan.local.verify import damaged_nodes

__all__ = [
    "RUNSTATE_SCHEMA",
    "NodeRecord",
    "PreviousRun",
    "local_log_path",
    "read_previous_run",
    "read_runstate",
    "restore_records",
    "runstate_document",
    "runstate_path",
]

RUNSTATE_SCHEMA = "skyscan-runstate/1"


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


@dataclass
class NodeRecord:
    """The mutable run-state entry of one node (owned by its DAG's scheduler thread)."""

    state: str = "waiting"
    attempts: int = 0
    return_code: int | None = None
    started: str | None = None  # UTC time stamps (events.utcnow)
    finished: str | None = None
    error: str | None = None
    subdag: str | None = None  # a SUBDAG node's DAG file, relative to the DAG's directory
    t0: float | None = None  # time.monotonic() at the start, for the node's wall time in seconds

    def to_json(self, node: DagNode) -> dict[str, Any]:
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


@dataclass(frozen=True)
class PreviousRun:
    """What an earlier run's run-state file lets this run keep (nothing when starting afresh)."""

    nodes: Mapping[str, Any]  # the file's node entries, by node name
    succeeded: bool  # its dag_status was 0: only then is a done FINAL node kept
    resumed: bool  # the file belongs to this DAG content
    notes: tuple[str, ...]  # why a file was ignored, for the DAG's local log


def read_previous_run(dag: Dag, state_path: Path) -> PreviousRun:
    """Read the run-state file of an earlier run of ``dag``, if it may be resumed.

    Raises ``SkyscanError`` if the file says another live process is running this DAG right now.
    """
    if not state_path.exists():
        return PreviousRun(nodes={}, succeeded=False, resumed=False, notes=())
    try:
        doc = read_runstate(state_path)
    except InputError as exc:
        return PreviousRun(nodes={}, succeeded=False, resumed=False, notes=(f"ignoring the run-state file: {exc}",))
    pid = doc.get("pid")
    if doc.get("finished") is None and isinstance(pid, int) and pid != os.getpid() and pid_alive(pid):
        raise SkyscanError(
            f"{dag.path.name} is already being run by process {pid} "
            f"(remove {state_path.name} if that is wrong)"
        )
    if doc.get("dag_digest") != dag.digest:
        note = f"{state_path.name} belongs to different DAG content: starting afresh"
        return PreviousRun(nodes={}, succeeded=False, resumed=False, notes=(note,))
    nodes: dict[str, Any] = dict(doc["nodes"])
    done = [name for name, prev in nodes.items() if isinstance(prev, dict) and prev.get("state") == "done"]
    damaged = damaged_nodes(dag, done)
    notes = tuple(f"{name}: its output {why}: running it again" for name, why in damaged.items())
    for name in damaged:
        del nodes[name]
    succeeded = doc.get("dag_status") == 0 and not damaged
    return PreviousRun(nodes=nodes, succeeded=succeeded, resumed=True, notes=notes)


def restore_records(dag: Dag, previous: PreviousRun) -> dict[str, NodeRecord]:
    """One record per node, in file order: DONE nodes and nodes done/skipped before are kept, the rest rerun."""
    records: dict[str, NodeRecord] = {}
    for name, node in dag.nodes.items():
        rec = NodeRecord()
        if node.kind == "subdag":
            rec.subdag = os.path.relpath(dag.node_dir(node) / node.file, dag.directory)
        prev = previous.nodes.get(name)
        if node.done:
            rec.state = "done"
        elif isinstance(prev, dict) and prev.get("state") in SUCCESS_STATES and (not node.final or previous.succeeded):
            # the FINAL node always reruns after a run that did not succeed: it reports the new outcome
            rec.state = str(prev["state"])
            rec.attempts = prev["attempts"] if isinstance(prev.get("attempts"), int) else 0
            rec.return_code = prev["return_code"] if isinstance(prev.get("return_code"), int) else None
            rec.started = prev["started"] if isinstance(prev.get("started"), str) else None
            rec.finished = prev["finished"] if isinstance(prev.get("finished"), str) else None
        records[name] = rec
    return records


def runstate_document(
    dag: Dag,
    records: Mapping[str, NodeRecord],
    *,
    jobs: int,
    started: str,
    updated: str,
    finished: str | None,
    dag_status: int | None,
    interrupted: bool,
) -> dict[str, Any]:
    """The run-state file's content (key order is part of the format)."""
    return {
        "schema": RUNSTATE_SCHEMA,
        "dag": dag.path.name,
        "dag_digest": dag.digest,
        "pid": os.getpid(),
        "jobs": jobs,
        "started": started,
        "updated": updated,
        "finished": finished,
        "dag_status": dag_status,
        "interrupted": interrupted,
        "nodes": {name: rec.to_json(dag.nodes[name]) for name, rec in records.items()},
    }
