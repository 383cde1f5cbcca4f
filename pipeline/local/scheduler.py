"""The scheduling engine of the local executor: one :class:`DagRun` per DAG file, and :func:`run_dag`.

All bookkeeping of a DAG happens in the thread that calls :meth:`DagRun.run`; each started node gets a
:class:`~skyscan.local.worker.NodeWorker` thread that reports back through a queue. A SUBDAG EXTERNAL node
runs its DAG as a nested :class:`DagRun` inside its worker thread, sharing the run's process slots and stop
request (:class:`~skyscan.local.runtime.Runtime`).
"""

from __future__ import annotations

import heapq
import os
import queue
import threading
import time
from collections import Counter
from pathlib import Path

from skyscan.atomic import write_json
from skyscan.dagman.parse import Dag, DagNode, parse_dag
from skyscan.errors import InputError, SkyscanError
from skyscan.local.events import (
    ACTIVE_STATES,
    SUCCESS_STATES,
    TRACE_ENV,
    DagFinished,
    DagObserver,
    DagStarted,
    LogObserver,
    NodeEvent,
    NodeInfo,
    RunResult,
    TraceObserver,
)
from skyscan.local.forkserver import ForkServers, fork_server_enabled
from skyscan.local.processes import POLL_SECONDS, StopControl, Stopped, signal_handlers
from skyscan.local.runstate import (
    NodeRecord,
    local_log_path,
    read_previous_run,
    restore_records,
    runstate_document,
    runstate_path,
)
from skyscan.local.runtime import Runtime
from skyscan.local.worker import NodeReport, NodeWorker
from skyscan.timestamps import utcnow

__all__ = ["DagRun", "run_dag"]

_STATE_FLUSH_SECONDS = 0.25  # coalesce run-state rewrites (a big DAG changes state many times a second)


def run_dag(
    dag_path: str | Path,
    jobs: int | None = None,
    observer: DagObserver | None = None,
    stop_event: threading.Event | None = None,
    *,
    grace: float = 3.0,
    handle_signals: bool = True,
    fork_server: bool | None = None,
) -> RunResult:
    """Run a DAG file locally, resuming from its run-state file; see docs/local-executor.md.

    ``jobs`` limits the processes (jobs and scripts) running at once over all nesting levels (default: the
    CPU count). Setting ``stop_event`` (or Ctrl-C/SIGTERM when called from the main thread) stops the run:
    children get SIGTERM, then SIGKILL after ``grace`` seconds, and the result says ``interrupted``.
    Raises ``InputError`` for a malformed top-level DAG; node failures are reported in the result.
    ``fork_server`` runs ``skyscan node …`` commands in forks of a warm process (default: on, unless the
    environment variable ``SKYSCAN_FORK_SERVER`` is ``0``; see "Warm node processes" in docs/local-executor.md).
    """
    dag = parse_dag(dag_path)
    limit = jobs if jobs is not None else (os.cpu_count() or 1)
    if limit < 1:
        raise InputError(f"the number of parallel jobs must be at least 1, not {limit}")
    use_forks = fork_server_enabled() if fork_server is None else fork_server and fork_server_enabled({})
    forks = ForkServers() if use_forks else None
    trace = os.environ.get(TRACE_ENV)
    if trace:
        observer = TraceObserver(trace, observer)
    rt = Runtime(jobs=limit, stop=stop_event or threading.Event(), force=threading.Event(), grace=grace,
                 observer=observer, launcher=forks)
    try:
        with signal_handlers(rt.stop, rt.force, handle_signals):
            try:
                return DagRun(dag, rt).run()
            except OSError as exc:  # e.g. the run-state file or log cannot be written
                raise SkyscanError(f"local executor: {exc}") from exc
    finally:
        if forks is not None:
            forks.close()


class DagRun:
    """Schedules the nodes of one DAG file (the top-level DAG, or a sub-DAG inside a SUBDAG node's worker)."""

    def __init__(self, dag: Dag, rt: Runtime, parent: DagRun | None = None, parent_node: str | None = None):
        self.dag = dag
        self.rt = rt
        self.parent = parent
        self.depth: int = 0 if parent is None else parent.depth + 1
        self.parent_node = parent_node
        self.ancestors: tuple[Path, ...] = (parent.ancestors if parent else ()) + (dag.path.resolve(),)
        self.halt = threading.Event()  # stops this DAG (and its sub-DAGs) only, e.g. after an internal error
        self.control = StopControl(stopped=self.stopped, grace=rt.grace, force=rt.force)
        self.queue: queue.Queue[NodeReport] = queue.Queue()
        self.records: dict[str, NodeRecord] = {}
        self.remaining: dict[str, int] = {}  # per node: parents not yet done or skipped
        self.ready: list[tuple[int, int, str]] = []  # heap of (-priority, file order, name)
        self.order = {name: i for i, name in enumerate(dag.nodes)}
        self.active: set[str] = set()
        self.cat_active: Counter[str] = Counter()
        self.threads: list[threading.Thread] = []
        self.failed_count = 0
        self.final_macros: dict[str, str] = {}
        self.state_path = runstate_path(dag.path)
        self.started = utcnow()
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
        run: DagRun | None = self
        while run is not None:
            if run.halt.is_set():
                return True
            run = run.parent
        return self.rt.stop.is_set()

    # -- setup -------------------------------------------------------------------------------------
    def _load_previous(self) -> None:
        """Keep done/skipped nodes from a run-state file of the same DAG content; everything else reruns."""
        previous = read_previous_run(self.dag, self.state_path)
        self.notes.extend(previous.notes)
        self.resumed = previous.resumed
        self.records = restore_records(self.dag, previous)

    def _push_ready(self, name: str) -> None:
        heapq.heappush(self.ready, (-self.dag.nodes[name].priority, self.order[name], name))

    def _init_ready(self) -> None:
        for name, node in self.dag.nodes.items():
            if node.final:
                continue
            self.remaining[name] = sum(1 for p in node.parents if self.records[p].state not in SUCCESS_STATES)
            if self.records[name].state == "waiting" and self.remaining[name] == 0:
                self._push_ready(name)

    # -- events and state file ---------------------------------------------------------------------
    def _emit_node(self, name: str, seconds: float | None = None) -> None:
        rec = self.records[name]
        node = self.dag.nodes[name]
        event = NodeEvent(
            dag=self.dag.path, depth=self.depth, node=name, state=rec.state, attempt=rec.attempts,
            vars=dict(node.vars), return_code=rec.return_code, seconds=seconds, error=rec.error, time=utcnow(),
        )
        self.rt.emit(self.log, "node_changed", event)

    def _write_state(self, force: bool = False) -> None:
        """Atomically rewrite the run-state file (coalesced unless forced)."""
        if not force and (not self.dirty or time.monotonic() - self.last_flush < _STATE_FLUSH_SECONDS):
            return
        doc = runstate_document(
            self.dag, self.records, jobs=self.rt.jobs, started=self.started, updated=utcnow(),
            finished=self.finished, dag_status=self.dag_status, interrupted=self.interrupted,
        )
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
                    self.log.write_line(f"{utcnow()} {note}")
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
            time=utcnow(),
        ))
        self._init_ready()
        self._drive()
        final = self.dag.final
        if final is not None and self.records[final].state not in SUCCESS_STATES and not self.stopped():
            status = "1" if self.failed_count else "0"
            self.final_macros = {"DAG_STATUS": status, "FAILED_COUNT": str(self.failed_count)}
            self._push_ready(final)
            self._drive()
        self._join()
        return self._finish()

    def _drive(self) -> None:
        """Apply worker reports and start ready nodes until nothing is running or can start.

        Ready nodes are started before the first wait for a report: a DAG (a sub-DAG of each stage, the FINAL
        node's second pass) starts its nodes at once, not one poll interval later.
        """
        while True:
            if not self.stopped():
                self._launch()
            self._write_state()
            if not self.active and (self.stopped() or not self.ready):
                return
            msg: NodeReport | None
            try:
                msg = self.queue.get(timeout=POLL_SECONDS)
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

    def _start(self, node: DagNode, holds_slot: bool) -> None:
        rec = self.records[node.name]
        rec.t0 = time.monotonic()
        rec.started = utcnow()
        rec.finished = None
        rec.error = None
        rec.return_code = None
        self.active.add(node.name)
        if node.category:
            self.cat_active[node.category] += 1
        worker = NodeWorker(
            dag=self.dag, node=node, holds_slot=holds_slot, runtime=self.rt, control=self.control,
            report=self.queue.put, failed_count=self._failed_count, run_subdag=self._subdag,
            final_macros=dict(self.final_macros) if node.final else {},
        )
        thread = threading.Thread(target=worker.run, name=f"dagrun-{node.name}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def _apply(self, msg: NodeReport) -> None:
        rec = self.records[msg.node]
        node = self.dag.nodes[msg.node]
        rec.state = msg.state
        rec.attempts = max(rec.attempts, msg.attempt + 1)
        seconds: float | None = None
        if msg.state in ACTIVE_STATES:
            rec.error = None
        else:
            rec.return_code = msg.return_code
            rec.error = msg.error
        if msg.last:
            self.active.discard(msg.node)
            if node.category:
                self.cat_active[node.category] -= 1
            if msg.state in ("done", "failed", "skipped"):
                rec.finished = utcnow()
                seconds = time.monotonic() - rec.t0 if rec.t0 is not None else None
            if msg.state in SUCCESS_STATES:
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
        unfinished = [n for n, r in self.records.items() if r.state not in SUCCESS_STATES and r.state != "failed"]
        self.interrupted = self.stopped() and any(n not in blocked for n in unfinished)
        for name in blocked:
            self.records[name].error = "not run: an ancestor failed"
        failed = tuple(n for n, r in self.records.items() if r.state == "failed")
        self.dag_status = None if self.interrupted else (1 if failed else 0)
        self.finished = utcnow()
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
            dag=self.dag.path, depth=self.depth, parent_node=self.parent_node, result=result, time=utcnow(),
        ))
        return result

    # -- what node workers call back -----------------------------------------------------------------
    def _failed_count(self) -> int:
        return self.failed_count

    def _subdag(self, node: DagNode) -> tuple[int, str | None]:
        """Run a SUBDAG EXTERNAL node's DAG (parsed only now: a PRE script may just have written it)."""
        path = (self.dag.node_dir(node) / node.file).absolute()
        if path.resolve() in self.ancestors:
            return 1, f"sub-DAG {node.file} would run itself recursively"
        try:
            sub = parse_dag(path)
            result = DagRun(sub, self.rt, parent=self, parent_node=node.name).run()
        except (InputError, SkyscanError, OSError) as exc:
            return 1, f"sub-DAG {node.file}: {exc}"
        if result.interrupted:
            raise Stopped
        if result.dag_status == 0:
            return 0, None
        names = ", ".join(result.failed[:3]) + (", ..." if len(result.failed) > 3 else "")
        return result.dag_status or 1, f"sub-DAG {node.file} failed ({len(result.failed)} failed: {names})"
