"""One node's life in its worker thread: attempts of PRE script, job (or sub-DAG) and POST script, with RETRY.

The worker never touches its DAG's bookkeeping: it reports every state change to the scheduler as a
:class:`NodeReport`, and the scheduler (one thread per DAG) applies them in order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from skyscan.dagman.parse import Dag, DagNode, DagScript
from skyscan.local.jobs import NodeError, prepare_job, run_job
from skyscan.local.processes import RC_NOT_STARTED, StopControl, Stopped, describe_exit
from skyscan.local.runtime import Runtime
from skyscan.local.scripts import run_script

__all__ = ["NodeReport", "NodeWorker"]


@dataclass
class NodeReport:
    """A state change reported by a node worker to its scheduler."""

    node: str
    state: str
    attempt: int  # 0-based
    return_code: int | None = None
    error: str | None = None
    last: bool = False  # the worker has finished with this node


@dataclass
class NodeWorker:
    """Runs one node to completion; :meth:`run` is the thread's target."""

    dag: Dag
    node: DagNode
    holds_slot: bool  # took a process slot when it started, released when it ends
    runtime: Runtime
    control: StopControl
    report: Callable[[NodeReport], None]
    failed_count: Callable[[], int]  # failed nodes of the DAG so far, for $DAG_STATUS/$FAILED_COUNT
    run_subdag: Callable[[DagNode], tuple[int, str | None]]  # a SUBDAG node's job step: (exit code, error)
    final_macros: Mapping[str, str]  # DAG_STATUS and FAILED_COUNT for the FINAL node; empty for the others

    def run(self) -> None:
        """All attempts, retried as RETRY says; always ends with a ``last`` report."""
        node = self.node
        attempt = 0
        state, rc, error = "failed", None, None
        try:
            while True:
                state, rc, error = self._attempt(attempt)
                if state != "failed" or self.control.stopped() or attempt >= node.retry:
                    break
                if node.retry_unless_exit is not None and rc == node.retry_unless_exit:
                    error = f"{error}; not retried (UNLESS-EXIT {rc})"
                    break
                note = f"attempt {attempt + 1} failed: {error}; retry {attempt + 1} of {node.retry}"
                self.report(NodeReport(node.name, "waiting", attempt, rc, note))
                attempt += 1
        except Stopped:
            state, rc, error = "waiting", None, "interrupted"
        except BaseException as exc:  # report it; never leave the scheduler waiting
            state, rc, error = "failed", None, f"internal error: {type(exc).__name__}: {exc}"
        finally:
            if self.holds_slot:
                self.runtime.slots.release()
            self.report(NodeReport(node.name, state, attempt, rc, error, last=True))

    def _script_macros(self, attempt: int) -> dict[str, str]:
        node = self.node
        if self.final_macros:
            status, failed = self.final_macros["DAG_STATUS"], self.final_macros["FAILED_COUNT"]
        else:
            failed_count = self.failed_count()
            status, failed = ("1" if failed_count else "0"), str(failed_count)
        return {"JOB": node.name, "NODE": node.name, "RETRY": str(attempt), "MAX_RETRIES": str(node.retry),
                "DAG_STATUS": status, "FAILED_COUNT": failed}

    def _attempt(self, attempt: int) -> tuple[str, int | None, str | None]:
        """One try of PRE, job, POST. Returns (state, deciding exit code, error)."""
        node = self.node
        macros = self._script_macros(attempt)
        pre_rc: int | None = None
        if node.pre is not None:
            self.report(NodeReport(node.name, "pre", attempt))
            pre_rc, tail = self._script(node.pre, macros)
            if node.pre_skip is not None and pre_rc == node.pre_skip:
                return "skipped", pre_rc, None
            if pre_rc != 0:
                return "failed", pre_rc, f"PRE script {describe_exit(pre_rc)}" + (f": {tail}" if tail else "")
        self.report(NodeReport(node.name, "running", attempt))
        job_rc, job_error = self._job(attempt)
        if node.post is not None:
            self.report(NodeReport(node.name, "post", attempt))
            post_macros = {**macros, "RETURN": str(job_rc), "JOBID": "0.0",
                           "PRE_SCRIPT_RETURN": str(pre_rc if pre_rc is not None else -1)}
            post_rc, tail = self._script(node.post, post_macros)
            if post_rc == 0:
                return "done", 0, None
            error = f"POST script {describe_exit(post_rc)}" + (f": {tail}" if tail else "")
            if job_rc != 0:
                error += f" (job: {job_error})"
            return "failed", post_rc, error
        if job_rc == 0:
            return "done", 0, None
        return "failed", job_rc, job_error

    def _script(self, script: DagScript, macros: Mapping[str, str]) -> tuple[int, str]:
        cwd = self.dag.node_dir(self.node)
        return run_script(script, self.node, cwd, macros, self.runtime, self.control, self.holds_slot)

    def _job(self, attempt: int) -> tuple[int, str | None]:
        """The job step: (exit code, error). NOOP nodes succeed without reading their submit file."""
        node = self.node
        if node.noop:
            return 0, None
        if node.kind == "subdag":
            return self.run_subdag(node)
        try:
            spec = prepare_job(self.dag, node, attempt, self.final_macros)
            rc = run_job(spec, self.control, self.runtime.launcher)
        except NodeError as exc:
            return RC_NOT_STARTED, f"job could not be started: {exc}"
        if rc == 0:
            return 0, None
        where = f" (stderr in {self._rel(spec.stderr)})" if spec.stderr is not None else ""
        return rc, f"job {describe_exit(rc)}{where}"

    def _rel(self, path: Path) -> str:
        """A path as shown in messages: relative to the DAG's directory when possible."""
        try:
            return os.path.relpath(path, self.dag.directory)
        except ValueError:
            return str(path)
