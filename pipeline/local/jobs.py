"""A job node's submit file, read as HTCondor would and run here: VARS and DAGMan's macros applied.

The submit file is read at run time (a PRE script may have written it) with the HTCondor bindings, which are
imported only here, when a job starts: parsing DAGs and starting the executor stay fast without them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from skyscan.dagman.parse import Dag, DagNode
from skyscan.dagman.quoting import parse_environment, split_arguments
from skyscan.local.processes import Launcher, StopControl, run_process

__all__ = ["JobSpec", "NodeError", "prepare_job", "run_job"]

_SUBMIT_LOCK = threading.Lock()


class NodeError(Exception):
    """A node's job could not be prepared or started (bad submit file, missing executable)."""


@dataclass
class JobSpec:
    """One job process as its submit file describes it (absolute paths; a stdio file of None is /dev/null)."""

    argv: list[str]
    cwd: Path  # the job's initialdir
    env: dict[str, str]  # the executor's environment plus the submit file's ``environment``
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
                raise NodeError(f"cannot expand {key}: {exc}") from None
    return None


def prepare_job(dag: Dag, node: DagNode, attempt: int, macros: Mapping[str, str]) -> JobSpec:
    """Read the submit file, apply VARS and DAGMan's macros, and work out argv, directories and files."""
    with _SUBMIT_LOCK:  # the HTCondor bindings are not documented as thread-safe; this step is quick
        return _prepare_job_locked(dag, node, attempt, macros)


def _prepare_job_locked(dag: Dag, node: DagNode, attempt: int, macros: Mapping[str, str]) -> JobSpec:
    import htcondor2  # deferred: importing the bindings is slow and not needed to parse DAGs

    node_dir = dag.node_dir(node)
    sub_path = node_dir / node.file
    try:
        text = sub_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NodeError(f"cannot read submit file {node.file}: {exc.strerror or exc}") from None
    try:
        sub = htcondor2.Submit(text)
    except Exception as exc:  # the bindings raise several exception types
        raise NodeError(f"cannot parse submit file {node.file}: {exc}") from None
    qargs = (sub.getQArgs() or "").strip()
    if qargs not in ("", "1"):
        raise NodeError(f"submit file {node.file}: only one job per node is supported locally (queue {qargs})")
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
        raise NodeError(f"cannot set macros for submit file {node.file}: {exc}") from None
    executable = _submit_value(sub, "executable")
    if not executable:
        raise NodeError(f"submit file {node.file} has no executable")
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
        raise NodeError(f"submit file {node.file}: {exc}") from None

    def in_cwd(key: str) -> Path | None:
        value = _submit_value(sub, key)
        return cwd / Path(value).expanduser() if value else None

    return JobSpec(argv=argv, cwd=cwd, env=env, stdin=in_cwd("input"), stdout=in_cwd("output"),
                    stderr=in_cwd("error"))


def run_job(spec: JobSpec, control: StopControl, launcher: Launcher | None = None) -> int:
    """Start the job with its stdio files (truncated, like HTCondor), wait, return its exit code.

    ``launcher``: the warm fork server, which runs ``skyscan node …`` commands (docs/local-executor.md).
    """
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
                raise NodeError(f"cannot open input file {spec.stdin}: {exc.strerror or exc}") from None
        if not spec.cwd.is_dir():
            raise NodeError(f"initial directory {spec.cwd} does not exist")
        try:
            return run_process(spec.argv, spec.cwd, control, stdin, stdout, stderr, spec.env, launcher)
        except OSError as exc:
            raise NodeError(f"cannot start {spec.argv[0]}: {exc.strerror or exc}") from None

