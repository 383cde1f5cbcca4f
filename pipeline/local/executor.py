"""Run HTCondor DAGMan files on the local machine, without HTCondor: the public face of :mod:`skyscan.local`.

``skyscan run`` writes the same ``.dag``/``.sub`` files that ``condor_submit_dag`` would get and hands them
to :func:`run_dag`, so a laptop or CI run exercises exactly the graph a grid run uses. The executor is
generic: it knows DAGMan semantics (PRE/POST scripts, RETRY, PRE_SKIP, SUBDAG EXTERNAL, FINAL, MAXJOBS)
but nothing about skyscan's nodes; progress displays plug in through :class:`DagObserver`.

Each DAG file gets a run-state file ``<dagfile>.runstate.json`` (the resume record, like a rescue DAG)
and a plain-text log ``<dagfile>.local.log`` beside it. POSIX only (process groups, signals).

This module re-exports the API other code uses and holds ``python -m skyscan.dagrun``; the work is done in
``events`` (events, results, observers), ``runstate`` (the run-state file), ``scheduler`` (:func:`run_dag`),
``worker`` (one node's attempts), ``jobs`` and ``scripts`` (a node's job and PRE/POST scripts) and
``processes`` (process groups and signals).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from skyscan.dagman.parse import parse_dag
from skyscan.errors import InputError, SkyscanError
from skyscan.local.events import (
    STATES,
    BaseObserver,
    DagFinished,
    DagObserver,
    DagStarted,
    LogObserver,
    NodeEvent,
    NodeInfo,
    RunResult,
    format_dag_finished,
    format_dag_started,
    format_node_event,
)
from skyscan.local.processes import RC_NOT_STARTED, pid_alive
from skyscan.local.runstate import RUNSTATE_SCHEMA, local_log_path, read_runstate, runstate_path
from skyscan.local.scheduler import run_dag

__all__ = [
    "RC_NOT_STARTED",
    "RUNSTATE_SCHEMA",
    "STATES",
    "BaseObserver",
    "DagFinished",
    "DagObserver",
    "DagStarted",
    "LogObserver",
    "NodeEvent",
    "NodeInfo",
    "RunResult",
    "format_dag_finished",
    "format_dag_started",
    "format_node_event",
    "local_log_path",
    "main",
    "parse_dag",
    "pid_alive",
    "read_runstate",
    "run_dag",
    "runstate_path",
]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m skyscan.dagrun DAG [-j N]``: exit 0 ok, 1 DAG failed, 2 bad input, 130 interrupted."""
    parser = argparse.ArgumentParser(prog="python -m skyscan.dagrun", description="Run a DAGMan DAG locally.")
    parser.add_argument("dag", help="the .dag file")
    parser.add_argument("-j", "--jobs", type=int, default=None, help="processes at once (default: CPU count)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no event lines on stderr")
    parser.add_argument("--no-fork-server", action="store_true",
                        help="start every job as a fresh process (no warm node processes)")
    args = parser.parse_args(argv)
    try:
        result = run_dag(args.dag, jobs=args.jobs, observer=None if args.quiet else LogObserver(sys.stderr),
                         fork_server=False if args.no_fork_server else None)
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
