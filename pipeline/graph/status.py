"""Progress of a scan directory, for both backends: DAGMan (HTCondor) and the local executor.

Sources, per DAG file (``skyscan.dag`` and each ``stage<k>.dag``):
* HTCondor: DAGMan's node status file ``<dag>.status`` (ClassAds, or JSON) and, for "is DAGMan still
  running?", the ``DAGMAN_STARTED``/``DAGMAN_FINISHED`` lines of the jobstate log ``<dag>.jobstate.log``;
* local: the executor's run-state file ``<dag>.runstate.json``.
The DAG files give each node's pixel count (VARS npix); ``end_state.json`` the outcome once FINAL ran.
With the local backend, a node counted done whose declared outputs are damaged (missing, truncated, failing their checksum:
``skyscan.local.verify``) counts as waiting, as the local executor will run it again, and is listed under
``damaged_nodes``; so a stage whose result is damaged never shows complete. A local run stopped before its end
(Ctrl-C, a killed executor) is ``interrupted``, as ``campaign status`` says.
``scan_status(...).as_json()`` is the ``skyscan-status/1`` document the alert watcher reads. The file names are
``skyscan.graph.layout``'s; DAGMan's own files are parsed by ``skyscan.dagman.nodestatus``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from skyscan.dagman.nodestatus import CONDOR_NODE_STATES as CONDOR_NODE_STATES
from skyscan.dagman.nodestatus import parse_jobstate_log as parse_jobstate_log
from skyscan.dagman.nodestatus import parse_node_status as parse_node_status
from skyscan.errors import InputError, SkyscanError
from skyscan.graph.endstate import read_end_state
from skyscan.graph.layout import TOP_DAG, ScanLayout, parse_scan_node_name, stage_dag_name, stage_node_name
from skyscan.timestamps import utcnow

STATUS_SCHEMA = "skyscan-status/1"
BUCKETS = ("done", "running", "failed", "waiting")

LOCAL_NODE_STATES = {
    "waiting": "waiting",
    "pre": "running",
    "running": "running",
    "post": "running",
    "done": "done",
    "skipped": "done",
    "failed": "failed",
}


@dataclass
class Counts:
    done: int = 0
    running: int = 0
    failed: int = 0
    waiting: int = 0

    def add(self, bucket: str, n: int = 1) -> None:
        setattr(self, bucket, getattr(self, bucket) + n)

    def as_dict(self) -> dict[str, int]:
        return {b: int(getattr(self, b)) for b in BUCKETS}

    @property
    def total(self) -> int:
        return self.done + self.running + self.failed + self.waiting


@dataclass
class StageStatus:
    stage: int
    nside: int
    state: str  # waiting | planning | running | done | failed | skipped
    nodes: Counts = field(default_factory=Counts)
    pixels: Counts = field(default_factory=Counts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "nside": self.nside,
            "state": self.state,
            "nodes": self.nodes.as_dict(),
            "pixels": self.pixels.as_dict(),
        }


@dataclass
class ScanStatus:
    outdir: str
    backend: str  # local | condor | unknown
    state: str  # not-started | running | done | failed | interrupted
    stages: list[StageStatus]
    failed_nodes: list[str]
    end_state: dict[str, Any] | None
    updated: str
    damaged_nodes: dict[str, str] = field(default_factory=dict)  # node -> why its output is not whole

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": STATUS_SCHEMA,
            "outdir": self.outdir,
            "backend": self.backend,
            "state": self.state,
            "stages": [s.as_dict() for s in self.stages],
            "failed_nodes": list(self.failed_nodes),
            "end_state": self.end_state,
            "updated": self.updated,
            "damaged_nodes": dict(self.damaged_nodes),
        }


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------
def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _dag_nodes(path: Path) -> dict[str, int]:
    """{node name: pixels} of a DAG file's scan nodes (other nodes count 0 pixels)."""
    from skyscan.dagman.parse import parse_dag

    if not path.is_file():
        return {}
    try:
        dag = parse_dag(path)
    except InputError:
        return {}
    out: dict[str, int] = {}
    for name, node in dag.nodes.items():
        try:
            out[name] = int(node.vars.get("npix", "0"))
        except ValueError:
            out[name] = 0
    return out


# ---------------------------------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class DagState:
    """Node states of one DAG file, in our buckets; ``None`` if that DAG has no state yet."""

    nodes: dict[str, str]
    running: bool | None = None  # the DAG manager itself (None: unknown)
    status: int | None = None  # DAG exit status once finished
    interrupted: bool = False  # stopped before its end (Ctrl-C, killed): a rerun resumes it


def local_dag_state(runstate: dict[str, Any]) -> DagState:
    """Node states of a DAG from its run-state document (skyscan-runstate/1, as ``read_runstate`` returns it);
    running while the document is unfinished and its runner's pid is alive. Campaign status asks the same."""
    from skyscan.local.processes import pid_alive

    nodes = {}
    for name, info in runstate["nodes"].items():
        state = info.get("state") if isinstance(info, dict) else None
        nodes[str(name)] = LOCAL_NODE_STATES.get(str(state), "waiting")
    finished = runstate.get("finished")
    running = finished is None and pid_alive(runstate.get("pid"))
    status = runstate.get("dag_status") if finished is not None else None
    interrupted = not running and (finished is None or runstate.get("interrupted") is True)
    return DagState(nodes, running=running, status=status if isinstance(status, int) else None,
                    interrupted=interrupted)


def _local_state(folder: Path, dag: str) -> DagState | None:
    from skyscan.local.runstate import read_runstate

    path = ScanLayout(folder).runstate(dag)
    if not path.is_file():
        return None
    try:
        doc = read_runstate(path)
    except InputError:
        return None
    return local_dag_state(doc)


def _condor_state(folder: Path, dag: str) -> DagState | None:
    layout = ScanLayout(folder)
    status_text = _read(layout.status_file(dag))
    log_text = _read(layout.jobstate_log(dag))
    if status_text is None and log_text is None:
        return None
    nodes: dict[str, str] = {}
    if status_text is not None:
        _, codes = parse_node_status(status_text)
        nodes = {name: CONDOR_NODE_STATES.get(code, "waiting") for name, code in codes.items()}
    running: bool | None = None
    status: int | None = None
    if log_text is not None:
        started, finished, exit_status = parse_jobstate_log(log_text)
        if started is not None:
            running = finished is None or finished < started
            status = None if running else exit_status
    return DagState(nodes, running=running, status=status)


def _mark_damaged(dag_path: Path, state: DagState | None, damaged: dict[str, str]) -> None:
    """Move done nodes of ``state`` whose declared outputs are not whole to waiting, recording why."""
    if state is None or not any(s == "done" for s in state.nodes.values()):
        return
    from skyscan.dagman.parse import parse_dag
    from skyscan.local.verify import damaged_nodes

    try:
        dag = parse_dag(dag_path)
        found = damaged_nodes(dag, [n for n, s in state.nodes.items() if s == "done"])
    except (InputError, SkyscanError):
        return
    for name, why in found.items():
        state.nodes[name] = "waiting"
        damaged.setdefault(name, why)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def detect_backend(outdir: str | Path) -> str:
    """``local`` if the executor ran here, ``condor`` if DAGMan did (the newer wins), else ``unknown``."""
    layout = ScanLayout.at(outdir)
    local = _mtime(layout.runstate(TOP_DAG))
    condor = max((t for t in (_mtime(f) for f in layout.condor_files(TOP_DAG)) if t is not None), default=None)
    if local is None and condor is None:
        return "unknown"
    if condor is None or (local is not None and local >= condor):
        return "local"
    return "condor"


def _iso(ts: float) -> str:
    return utcnow(datetime.fromtimestamp(ts, timezone.utc))


def _stage_nsides(folder: Path) -> list[int]:
    from skyscan.settings.scan import load_config

    path = ScanLayout(folder).config
    try:
        config = load_config(path) if path.is_file() else load_config()
    except InputError:
        return []
    return [s.nside for s in config.stages]


def _stage_state(counts: Counts, node_state: str | None, planned: bool, skipped: bool) -> str:
    if skipped:
        return "skipped"
    if node_state == "failed" or counts.failed:
        return "failed"
    if node_state == "done" or (counts.total and counts.done == counts.total):
        return "done"
    if node_state == "running" and not planned:
        return "planning"
    if node_state == "running" or counts.running or counts.done:
        return "running"
    return "waiting"


def _plan_skipped(folder: Path, stage: int) -> bool:
    text = _read(ScanLayout(folder).plan_record(stage))
    if text is None:
        return False
    try:
        return bool(json.loads(text).get("skipped"))
    except (ValueError, AttributeError):
        return False


def _resolve_record(folder: Path, stage: int) -> int | None:
    """The nside of resolving stage ``stage`` when its plan record says it was scanned, else None."""
    text = _read(ScanLayout(folder).plan_record(stage))
    if text is None:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("rule") != "resolve" or doc.get("skipped"):
        return None
    nside = doc.get("nside")
    return nside if isinstance(nside, int) and not isinstance(nside, bool) and nside > 0 else None


def scan_status(outdir: str | Path) -> ScanStatus:
    """The status of a scan directory (InputError if it is not one)."""
    folder = Path(outdir)
    layout = ScanLayout(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such scan directory")
    if not layout.top_dag.is_file():
        raise InputError(f"{folder}: not a skyscan scan directory (no {TOP_DAG})")
    backend = detect_backend(folder)

    def state_of(dag: str) -> DagState | None:
        if backend == "local":
            return _local_state(folder, dag)
        if backend == "condor":
            return _condor_state(folder, dag)
        return None

    nsides = _stage_nsides(folder)
    damaged: dict[str, str] = {}
    top = state_of(TOP_DAG)
    if backend == "local":  # the local executor redoes a damaged node on resume; DAGMan does not look
        _mark_damaged(layout.top_dag, top, damaged)
    top_nodes = _dag_nodes(layout.top_dag)
    failed_nodes: list[str] = []
    sources = [layout.runstate(TOP_DAG), layout.status_file(TOP_DAG), layout.jobstate_log(TOP_DAG)]

    stages: list[StageStatus] = []
    for k, nside in enumerate(nsides):
        if k == 0:
            counts, pixels = _collect(top_nodes, top, 0)
            state = _stage_state(counts, None, True, False)
        else:
            dag = stage_dag_name(k)
            sub = state_of(dag)
            if backend == "local":
                _mark_damaged(layout.dag(dag), sub, damaged)
            sources.extend([layout.runstate(dag), layout.status_file(dag)])
            counts, pixels = _collect(_dag_nodes(layout.dag(dag)), sub, k)
            node_state = top.nodes.get(stage_node_name(k)) if top else None
            state = _stage_state(counts, node_state, layout.dag(dag).is_file(), _plan_skipped(folder, k))
            if sub:
                failed_nodes.extend(n for n, s in sub.nodes.items() if s == "failed")
        stages.append(StageStatus(stage=k, nside=nside, state=state, nodes=counts, pixels=pixels))
    # resolving stages (docs/graph.md, "Resolving the region"): planned at run time past the configured ones,
    # each known from its plan record; one that was skipped (the region was resolved) is not listed
    k = len(nsides)
    while nsides:
        record = _resolve_record(folder, k)
        if record is None:
            break
        dag = stage_dag_name(k)
        sub = state_of(dag)
        if backend == "local":
            _mark_damaged(layout.dag(dag), sub, damaged)
        sources.extend([layout.runstate(dag), layout.status_file(dag)])
        counts, pixels = _collect(_dag_nodes(layout.dag(dag)), sub, k)
        state = _stage_state(counts, None, layout.dag(dag).is_file(), False)
        if sub:
            failed_nodes.extend(n for n, s in sub.nodes.items() if s == "failed")
        stages.append(StageStatus(stage=k, nside=record, state=state, nodes=counts, pixels=pixels))
        k += 1
    if top:
        top_failed = [n for n, s in top.nodes.items() if s == "failed"]
        failed_nodes = top_failed + [n for n in failed_nodes if n not in top_failed]

    end = read_end_state(folder)
    state = _overall_state(top, end)
    times = [t for t in (_mtime(p) for p in [*sources, layout.end_state]) if t is not None]
    updated = _iso(max(times)) if times else utcnow()
    return ScanStatus(
        outdir=str(folder),
        backend=backend,
        state=state,
        stages=stages,
        failed_nodes=failed_nodes,
        end_state=end,
        updated=updated,
        damaged_nodes=damaged,
    )


def _collect(nodes: dict[str, int], dag_state: DagState | None, stage: int) -> tuple[Counts, Counts]:
    """(node counts, pixel counts) of the scan nodes of ``stage`` among ``nodes`` ({name: npix})."""
    node_counts, pixel_counts = Counts(), Counts()
    for name, npix in nodes.items():
        parsed = parse_scan_node_name(name)
        if parsed is None or parsed[0] != stage:
            continue
        bucket = dag_state.nodes.get(name, "waiting") if dag_state else "waiting"
        node_counts.add(bucket)
        pixel_counts.add(bucket, npix)
    return node_counts, pixel_counts


def _overall_state(top: DagState | None, end: dict[str, Any] | None) -> str:
    end_state = end.get("state") if end else None
    if end_state not in ("done", "failed"):
        end_state = None
    if top is None:
        return str(end_state) if end_state else "not-started"
    if top.running:
        return "running"  # an end_state.json of an earlier attempt does not count while a resumed run goes on
    if top.interrupted:
        return "interrupted"  # stopped (Ctrl-C, killed) before the FINAL node: `skyscan run` again resumes it
    if end_state:
        return str(end_state)
    if top.status is not None:
        return "done" if top.status == 0 else "failed"
    if top.running is False:
        return "failed"  # the DAG manager stopped without the FINAL node's end state
    return "running"


# ---------------------------------------------------------------------------------------------------------------
# Human form
# ---------------------------------------------------------------------------------------------------------------
def format_status(status: ScanStatus) -> str:
    """A small aligned table, then the failing nodes and the end state."""
    head = ["stage", "nside", "state", "nodes", "done", "run", "fail", "wait", "pixels", "done", "run", "fail", "wait"]
    rows = [head]
    for s in status.stages:
        n, p = s.nodes, s.pixels
        rows.append(
            [str(s.stage), str(s.nside), s.state, "", str(n.done), str(n.running), str(n.failed), str(n.waiting),
             "", str(p.done), str(p.running), str(p.failed), str(p.waiting)]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"{status.outdir}: {status.state} (backend {status.backend}, updated {status.updated})"]
    for r in rows:
        cells = [c.ljust(w) if i in (2,) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    lines.append("failed nodes: " + (", ".join(status.failed_nodes) if status.failed_nodes else "none"))
    for name, why in status.damaged_nodes.items():
        lines.append(f"damaged output of {name}: {why} (run the scan again to redo it)")
    if status.end_state:
        e = status.end_state
        lines.append(
            f"end state: {e.get('state')} (dag_status {e.get('dag_status')}, failed_count {e.get('failed_count')},"
            f" {e.get('time')})"
        )
    else:
        lines.append("end state: none yet")
    return "\n".join(lines)
