"""Declared outputs of a DAG's nodes, and checking them: a node marked done is only done if its outputs are whole.

The graph declares what each node produces (``skyscan.workflow.Output``) in a file beside the DAG file,
``<dag name>.outputs.json`` (``skyscan.dag`` -> ``skyscan.outputs.json``; schema ``skyscan-outputs/1``, written with the DAG by whoever writes it; DAGMan never
reads it, so the DAG and submit files stay what HTCondor runs). It records the DAG file's content digest: a
declaration of other DAG content is ignored. docs/local-executor.md ("Verified results and recovery").

On resume the executor (``skyscan.local.runstate.read_previous_run``) checks the outputs of every node the
previous run finished and runs again any whose output is missing, incomplete or fails its checksum;
``skyscan status`` applies the same check so a damaged result never shows as a finished stage.

The executor is generic: it knows the checks ``file`` and ``subdag``; any other check is named by the graph as
``module:function`` inside the ``skyscan`` package (e.g. the scan results' own reader), looked up here by name,
so this layer never imports the code that owns a file format.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyscan.atomic import json_text, write_text
from skyscan.dagman.parse import Dag, dag_digest, parse_dag
from skyscan.errors import InputError, SkyscanError
from skyscan.workflow import Output

__all__ = [
    "OUTPUTS_SCHEMA",
    "OUTPUTS_SUFFIX",
    "DeclaredOutputs",
    "check_output",
    "damaged_nodes",
    "outputs_path",
    "read_outputs",
    "write_outputs",
]

OUTPUTS_SCHEMA = "skyscan-outputs/1"
OUTPUTS_SUFFIX = ".outputs.json"
_BUILTIN_CHECKS = ("file", "subdag")
_MAX_DEPTH = 8  # sub-DAGs inside sub-DAGs: far more than any skyscan graph has

Checker = Callable[[Path], "str | None"]
_CHECKERS: dict[str, Checker] = {}


def outputs_path(dag_path: str | os.PathLike[str]) -> Path:
    """``<name>.outputs.json`` beside the DAG file ``<name>.dag`` (not ``<dag>.*``: those are DAGMan's files)."""
    p = Path(dag_path)
    stem = p.name[: -len(".dag")] if p.name.endswith(".dag") else p.name
    return p.with_name(stem + OUTPUTS_SUFFIX)


@dataclass(frozen=True)
class DeclaredOutputs:
    """The outputs declared for one DAG file: {node name: its outputs}, paths relative to the DAG's folder."""

    dag: Path
    nodes: Mapping[str, tuple[Output, ...]]


def _valid_check(check: str) -> bool:
    if check in _BUILTIN_CHECKS:
        return True
    module, sep, func = check.partition(":")
    return bool(sep) and module.startswith("skyscan.") and func.isidentifier()


def write_outputs(
    dag_path: str | os.PathLike[str],
    outputs: Mapping[str, Sequence[Output]],
    *,
    dag_bytes: bytes | None = None,
    write: Callable[[Path, str], None] = write_text,
) -> Path:
    """Write the declaration of ``dag_path`` (already written: its digest is recorded), atomically by default.

    ``dag_bytes``: the DAG file's content when the caller has it (else the file is read); ``write``: how the
    text is written (a folder nobody sees yet needs no temporary names, see ``skyscan.graph.build``).
    """
    dag = Path(dag_path)
    nodes: dict[str, list[dict[str, str]]] = {}
    for name, outs in outputs.items():
        for out in outs:
            if not _valid_check(out.check):
                raise InputError(f"node {name}: unknown output check {out.check!r}")
            if Path(out.path).is_absolute() or ".." in Path(out.path).parts:
                raise InputError(f"node {name}: output {out.path!r} must lie inside the DAG's folder")
        nodes[name] = [{"path": o.path, "check": o.check} for o in outs]
    content = dag.read_bytes() if dag_bytes is None else dag_bytes
    doc = {"schema": OUTPUTS_SCHEMA, "dag": dag.name, "dag_digest": dag_digest(content), "nodes": nodes}
    target = outputs_path(dag)
    write(target, json_text(doc))
    return target


def read_outputs(dag_path: str | os.PathLike[str], digest: str | None = None) -> DeclaredOutputs | None:
    """The declaration of a DAG file; None if there is none, it is unreadable or it declares other DAG content.

    ``digest``: the DAG's content digest if the caller has parsed it (else the file is read for it).
    """
    dag = Path(dag_path)
    path = outputs_path(dag)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        want = digest if digest is not None else dag_digest(dag.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("schema") != OUTPUTS_SCHEMA or doc.get("dag_digest") != want:
        return None
    raw = doc.get("nodes")
    if not isinstance(raw, dict):
        return None
    nodes: dict[str, tuple[Output, ...]] = {}
    for name, entries in raw.items():
        if not isinstance(entries, list):
            return None
        outs = []
        for e in entries:
            if not (isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("check"), str)):
                return None
            if not _valid_check(e["check"]):
                return None
            outs.append(Output(e["path"], e["check"]))
        nodes[str(name)] = tuple(outs)
    return DeclaredOutputs(dag=dag, nodes=nodes)


def _checker(check: str) -> Checker:
    """The function a ``module:function`` check names (inside the skyscan package only)."""
    if check not in _CHECKERS:
        module_name, _, func_name = check.partition(":")
        try:
            func: Any = getattr(importlib.import_module(module_name), func_name)
        except (ImportError, AttributeError) as exc:
            raise SkyscanError(f"output check {check!r} cannot be loaded ({exc})") from None
        if not callable(func):
            raise SkyscanError(f"output check {check!r} is not a function")
        _CHECKERS[check] = func
    return _CHECKERS[check]


def _check_file(path: Path) -> str | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc.__class__.__name__})"
    if not path.is_file():
        return "not a regular file"
    if st.st_size == 0:
        return "empty"
    return None


def _check_subdag(path: Path, depth: int) -> str | None:
    """Every output the sub-DAG's declaration names; a sub-DAG without a declaration is only checked to exist."""
    problem = _check_file(path)
    if problem is not None:
        return f"sub-DAG {problem}"
    if depth >= _MAX_DEPTH:
        return "sub-DAGs nested too deeply"
    try:
        sub = parse_dag(path)
    except InputError as exc:
        return f"unreadable sub-DAG ({exc})"
    declared = read_outputs(path, sub.digest)
    if declared is None:
        return None
    for name, outs in declared.nodes.items():
        for out in outs:
            reason = check_output(path.parent, out, depth + 1)
            if reason is not None:
                return f"node {name} of {path.name}: {reason}"
    return None


def check_output(directory: Path, output: Output, depth: int = 0) -> str | None:
    """None if ``output`` (relative to ``directory``, the DAG's folder) is whole, else the reason it is not."""
    path = directory / output.path
    if output.check == "file":
        reason = _check_file(path)
    elif output.check == "subdag":
        reason = _check_subdag(path, depth)
    else:
        reason = _check_file(path)
        if reason is None:
            reason = _checker(output.check)(path)
    return None if reason is None else f"{output.path}: {reason}"


def damaged_nodes(dag: Dag, done: Iterable[str]) -> dict[str, str]:
    """{node: why} for the nodes in ``done`` whose declared outputs are not whole (nothing declared: none)."""
    declared = read_outputs(dag.path, dag.digest)
    if declared is None:
        return {}
    damaged: dict[str, str] = {}
    for name in done:
        for out in declared.nodes.get(name, ()):
            reason = check_output(dag.directory, out)
            if reason is not None:
                damaged[name] = reason
                break
    return damaged
