"""DAGMan files from a workflow (``skyscan.workflow``), written by ``htcondor2.dags``.

``htcondor2.dags`` (HTCondor 25.x) writes the DAG text, with defects that this module works around (each checked
against the installed bindings; tests/test_condor.py and tests/test_campaign.py pin the result):

1. ``DAG(max_jobs_by_category=...)`` is written as ``CATEGORY <cat> <N>``, which DAGMan reads as "put node
   <cat> into category <N>"; the throttle DAGMan needs is ``MAXJOBS <cat> <N>``. ``_fix_meta`` rewrites those
   lines of the META block (a no-op once the writer is fixed); it is the only edit of the writer's text.
2. ``DAG.final()`` writes the ``FINAL`` line but never the FINAL node's submit file, and
3. ``str(htcondor2.Submit)`` drops inline item lists (``queue x from ( ... )`` loses its items), so the
   writer's own submit files cannot be trusted either. We therefore take only the DAG text from the writer;
   ``skyscan.condor.submit`` renders every submit file from its template.
4. The writer looks up each node's children through ``DAG.node_to_children``, which rebuilds the map of the
   whole DAG on every call: one call is quadratic in the number of nodes (about 8 s for 1,000 campaign
   events). ``_FrozenDAG`` computes that map (and the parents') once the DAG is built; the text is the same.

The writer names a layer's submit file ``<layer>.sub`` (and writes absolute paths for ``Path`` submit
descriptions), so a group of job nodes becomes a layer named after its submit file, and a name formatter
maps (layer, index) back to the workflow's node names. A node's ``dir`` is the writer's own ``DIR``. No path in
the written files is absolute.

The writer costs about a millisecond for a small graph, and a campaign writes the same top-level graph for each
of its events (only the header comment differs), so ``dag_text`` keeps the texts of the last few workflows,
keyed by the workflow's full ``repr`` (every node, option and edge): an equal workflow gets the same text.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from skyscan.atomic import write_text
from skyscan.errors import InputError, SkyscanError
from skyscan.workflow import Node, Script, Workflow

#: Seconds between DAGMan's rewrites of the node status file.
NODE_STATUS_UPDATE_SECONDS = 30
#: Workflows whose DAG text (without its header) ``dag_text`` remembers.
TEXT_CACHE_SIZE = 8
_texts: OrderedDict[str, str] = OrderedDict()


def _script(script: Script | None) -> Any:
    if script is None:
        return None
    from htcondor2 import dags

    return dags.Script(script.executable, list(script.arguments))


def _dir(node: Node) -> Path | None:
    return None if node.dir is None else Path(node.dir)


def _group_key(node: Node, parents: list[str], children: list[str]) -> tuple[object, ...]:
    """Job nodes with the same key become one writer layer (one submit file, the same options and edges)."""
    if node.kind != "job":
        return (node.kind, node.name)
    return (
        "job",
        node.submit,
        node.dir,
        node.retries,
        node.retry_unless_exit,
        node.pre,
        node.post,
        node.pre_skip,
        node.category,
        tuple(parents),
        tuple(children),
    )


def _layer_name(node: Node) -> str:
    submit = node.submit or ""
    if "/" in submit or not submit.endswith(".sub") or len(submit) <= 4:
        raise InputError(f"node {node.name}: submit file {submit!r} must be a plain name ending in .sub")
    return submit[: -len(".sub")]


def _writer_dag(**options: Any) -> Any:
    """A ``htcondor2.dags.DAG`` whose child/parent maps can be frozen once it is built (defect 4)."""
    from htcondor2 import dags

    class _FrozenDAG(dags.DAG):  # type: ignore[misc]
        """``node_to_children``/``node_to_parents`` computed once by ``freeze()`` instead of on every lookup."""

        _frozen: tuple[Any, Any] | None = None

        def freeze(self) -> None:
            self._frozen = (super().node_to_children, super().node_to_parents)

        @property
        def node_to_children(self) -> Any:
            return self._frozen[0] if self._frozen is not None else super().node_to_children

        @property
        def node_to_parents(self) -> Any:
            return self._frozen[1] if self._frozen is not None else super().node_to_parents

    return _FrozenDAG(**options)


def dag_text(wf: Workflow, header: str = "") -> str:
    """The DAGMan file of a workflow, produced by ``htcondor2.dags`` (see the module docstring).

    The text of an equal workflow (same ``repr``) is taken from the cache of the last ``TEXT_CACHE_SIZE``.
    """
    key = repr(wf)
    body = _texts.get(key)
    if body is None:
        body = _render(wf)
        _texts[key] = body
        while len(_texts) > TEXT_CACHE_SIZE:
            _texts.popitem(last=False)
    else:
        _texts.move_to_end(key)
    return header + body


def _render(wf: Workflow) -> str:
    """The writer's DAG text of ``wf`` with the workarounds, without a header."""
    from htcondor2 import Submit, dags
    from htcondor2.dags.writer import DAGWriter

    wf.check_acyclic()
    names: dict[tuple[str, int], str] = {}
    by_name: dict[str, tuple[str, int]] = {}

    class _Names(dags.NodeNameFormatter):  # type: ignore[misc]
        """The workflow's own node names instead of the writer's ``layer:index``."""

        def generate(self, layer_name: str, node_index: int) -> str:
            try:
                return names[(layer_name, node_index)]
            except KeyError:
                raise InputError(f"the DAG writer asked for an unknown node {layer_name}:{node_index}") from None

        def parse(self, node_name: str) -> tuple[str, int]:
            if len(by_name) != len(names):  # built once the names are complete (the writer only generates)
                by_name.clear()
                by_name.update((value, key) for key, value in names.items())
            try:
                return by_name[node_name]
            except KeyError:
                raise InputError(f"unknown node name {node_name!r}") from None

    nsf = None
    if wf.node_status_file:
        nsf = dags.NodeStatusFile(Path(wf.node_status_file), update_time=NODE_STATUS_UPDATE_SECONDS)
    dag = _writer_dag(
        max_jobs_by_category=dict(wf.maxjobs) or None,
        jobstate_log=Path(wf.jobstate_log) if wf.jobstate_log else None,
        node_status_file=nsf,
    )
    parents_of, children_of_node = wf.parents_map(), wf.children_map()
    groups: dict[tuple[object, ...], list[Node]] = {}
    for node in wf.nodes.values():
        key = _group_key(node, parents_of[node.name], children_of_node[node.name])
        groups.setdefault(key, []).append(node)
    layer_of: dict[str, Any] = {}
    seen_layers: set[str] = set()
    for members in groups.values():
        first = members[0]
        common: dict[str, Any] = {
            "dir": _dir(first),
            "retries": first.retries,
            "retry_unless_exit": first.retry_unless_exit,
            "pre": _script(first.pre),
            "post": _script(first.post),
            "pre_skip_exit_code": first.pre_skip,
            "category": first.category,
        }
        if first.kind == "job":
            name = _layer_name(first)
            if name in seen_layers:
                raise InputError(f"{first.submit}: nodes with different edges or options share one submit file")
            layer = dag.layer(name=name, submit_description=Submit(), vars=[dict(n.vars) for n in members], **common)
        else:
            name = first.name
            if name in seen_layers:
                raise InputError(f"node name {name!r} clashes with a submit file's name")
            layer = dag.subdag(name=name, dag_file=Path(first.dag_file or ""), **common)
        seen_layers.add(name)
        for i, node in enumerate(members):
            names[(name, i)] = node.name
            layer_of[node.name] = layer
    linked: set[tuple[str, str]] = set()
    for parent, child in wf.edges:
        lp, lc = layer_of[parent], layer_of[child]
        if (lp.name, lc.name) not in linked:
            if len(lp) > 1 and len(lc) > 1:
                raise InputError(f"edges {lp.name} -> {lc.name}: many-to-many groups are not supported")
            lp.add_children(lc)
            linked.add((lp.name, lc.name))
    child_groups: dict[str, int] = {}
    for p, _ in linked:
        child_groups[p] = child_groups.get(p, 0) + 1
    crowded = [p for p, n in child_groups.items() if n > 1]
    if crowded:
        # The writer orders several children by set iteration (string hashing): the file would vary.
        raise InputError(f"node group {crowded[0]} has several child groups; the DAG text would not be reproducible")
    if wf.final is not None:
        f = wf.final
        _layer_name(f)  # the writer names the FINAL node's file <name>.sub
        if f.submit != f"{f.name}.sub":
            raise InputError(f"FINAL node {f.name}: its submit file must be {f.name}.sub (writer convention)")
        if f.dir is not None:
            raise InputError(f"FINAL node {f.name}: the DAG writer cannot give the FINAL node a DIR")
        final_name = f.name
        names[(final_name, 0)] = final_name
        dag.final(name=final_name, submit_description=Submit(), pre=_script(f.pre), post=_script(f.post))

    dag.freeze()
    writer = DAGWriter(dag, node_name_formatter=_Names())
    lines = list(writer.yield_dag_file_lines())
    if writer.join_factory.joins:
        raise InputError("the DAG writer inserted join nodes; skyscan does not write their submit file")
    lines = _fix_meta(lines, wf)
    return "\n".join(lines) + "\n"


def _fix_meta(lines: list[str], wf: Workflow) -> list[str]:
    """Defect 1: ``CATEGORY cat N`` in the META block means ``MAXJOBS cat N``; add ``ENV GET``."""
    out: list[str] = []
    in_meta = False
    throttles = 0
    for line in lines:
        if line == "# BEGIN META":
            in_meta = True
            out.append(line)
            if wf.getenv:
                out.append("ENV GET " + " ".join(wf.getenv))
            continue
        if line == "# END META":
            in_meta = False
        words = line.split()
        if in_meta and len(words) == 3 and words[0] in ("CATEGORY", "MAXJOBS") and words[1] in wf.maxjobs:
            line = f"MAXJOBS {words[1]} {words[2]}"
            throttles += 1
        out.append(line)
    if throttles != len(wf.maxjobs):
        raise SkyscanError("the DAG writer's category throttles were not found; cannot write MAXJOBS")
    return out


def write_dag(wf: Workflow, path: str | Path, header: str = "") -> str:
    """Write the DAG file atomically; return its text."""
    text = dag_text(wf, header)
    write_text(path, text)
    return text
