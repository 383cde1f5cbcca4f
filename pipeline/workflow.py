"""A small, backend-neutral workflow model: nodes, edges, scripts, retries, categories.

skyscan builds its graphs with these classes (``skyscan.graph.build``, ``skyscan.campaign.graph``) and a backend
turns them into files (``skyscan.condor.dagwriter`` writes HTCondor DAGMan files). Nothing here knows HTCondor, so
the graph's shape can be tested without the bindings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from skyscan.errors import InputError

NodeKind = Literal["job", "subdag", "final"]
NodeOption: TypeAlias = "dict[str, str] | int | str | Script | tuple[Output, ...] | None"


@dataclass(frozen=True)
class Script:
    """A PRE or POST script: an executable and its arguments (DAGMan macros such as $DAG_STATUS allowed)."""

    executable: str
    arguments: tuple[str, ...] = ()


@dataclass(frozen=True)
class Output:
    """A file a node declares it produces, relative to the workflow's folder, and how to check it.

    ``check`` names the check a resuming executor applies to a node marked done (``skyscan.local.verify``):
    ``"file"`` (exists, not empty), ``"subdag"`` (``path`` is the node's sub-workflow file: every output its
    nodes declare), or ``"module:function"`` of a ``skyscan`` function that takes the path and returns None or
    the reason the file is not a whole, verified output. Outputs are declared, never guessed from names.
    """

    path: str
    check: str = "file"


@dataclass
class Node:
    """One node: a job (``submit`` file), an external sub-workflow (``dag_file``) or the final node.

    ``dir`` is the folder the node runs from, relative to the workflow's file (DAGMan's ``DIR``): its
    ``submit`` or ``dag_file`` and every relative path in them are relative to it. None: the workflow's folder.
    ``outputs`` are the files the node produces (:class:`Output`); they are not part of the DAG file.
    """

    name: str
    kind: NodeKind
    submit: str | None = None
    dag_file: str | None = None
    dir: str | None = None
    vars: dict[str, str] = field(default_factory=dict)
    retries: int | None = None
    retry_unless_exit: int | None = None
    pre: Script | None = None
    post: Script | None = None
    pre_skip: int | None = None
    category: str | None = None
    outputs: tuple[Output, ...] = ()


@dataclass
class Workflow:
    """Nodes in insertion order, parent -> child edges, an optional final node and run-wide settings."""

    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    final: Node | None = None
    maxjobs: dict[str, int] = field(default_factory=dict)
    node_status_file: str | None = None
    jobstate_log: str | None = None
    getenv: tuple[str, ...] = ()  # environment variables the workflow manager passes to its scripts

    def _add(self, node: Node) -> Node:
        if node.name in self.nodes or (self.final is not None and self.final.name == node.name):
            raise InputError(f"duplicate node name {node.name!r}")
        if not node.name or any(c.isspace() for c in node.name):
            raise InputError(f"invalid node name {node.name!r}")
        self.nodes[node.name] = node
        return node

    def add_job(self, name: str, submit: str, **options: NodeOption) -> Node:
        """A job node running the submit file ``submit``; options are the other ``Node`` fields."""
        return self._add(_node(name, "job", options, submit=submit))

    def add_subdag(self, name: str, dag_file: str, **options: NodeOption) -> Node:
        """An external sub-workflow (its file may be written later, e.g. by the node's PRE script)."""
        return self._add(_node(name, "subdag", options, dag_file=dag_file))

    def set_final(self, name: str, submit: str, **options: NodeOption) -> Node:
        """The node that always runs last, whatever happened before (DAGMan's FINAL)."""
        if name in self.nodes:
            raise InputError(f"duplicate node name {name!r}")
        self.final = _node(name, "final", options, submit=submit)
        return self.final

    def add_edge(self, parent: str, child: str) -> None:
        for name in (parent, child):
            if name not in self.nodes:
                raise InputError(f"edge {parent} -> {child}: unknown node {name!r}")
        if parent == child:
            raise InputError(f"edge {parent} -> {child}: a node cannot be its own parent")
        if (parent, child) not in self.edges:
            self.edges.append((parent, child))

    def parents(self, name: str) -> list[str]:
        return [p for p, c in self.edges if c == name]

    def children(self, name: str) -> list[str]:
        return [c for p, c in self.edges if p == name]

    def children_map(self) -> dict[str, list[str]]:
        """Every node's children in edge order, built in one pass (``children`` scans all edges per call)."""
        out: dict[str, list[str]] = {name: [] for name in self.nodes}
        for parent, child in self.edges:
            out[parent].append(child)
        return out

    def parents_map(self) -> dict[str, list[str]]:
        """Every node's parents in edge order, built in one pass."""
        out: dict[str, list[str]] = {name: [] for name in self.nodes}
        for parent, child in self.edges:
            out[child].append(parent)
        return out

    def check_acyclic(self) -> None:
        indegree = {name: 0 for name in self.nodes}
        for _, child in self.edges:
            indegree[child] += 1
        ready = [name for name, d in indegree.items() if d == 0]
        seen = 0
        children = self.children_map()
        while ready:
            name = ready.pop()
            seen += 1
            for child in children[name]:
                indegree[child] -= 1
                if indegree[child] == 0:
                    ready.append(child)
        if seen != len(self.nodes):
            stuck = sorted(n for n, d in indegree.items() if d > 0)
            raise InputError(f"the workflow has a cycle through {', '.join(stuck[:5])}")

    def all_nodes(self) -> list[Node]:
        """Every node, the final node last."""
        return [*self.nodes.values(), *([self.final] if self.final is not None else [])]

    def declared_outputs(self) -> dict[str, tuple[Output, ...]]:
        """{node name: its declared outputs} for every node that declares any, the final node last."""
        return {node.name: node.outputs for node in self.all_nodes() if node.outputs}


_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "dir": (str,),
    "vars": (dict,),
    "retries": (int,),
    "retry_unless_exit": (int,),
    "pre": (Script,),
    "post": (Script,),
    "pre_skip": (int,),
    "category": (str,),
    "outputs": (tuple,),
}


def _node(
    name: str, kind: NodeKind, options: dict[str, NodeOption], submit: str | None = None, dag_file: str | None = None
) -> Node:
    node = Node(name=name, kind=kind, submit=submit, dag_file=dag_file)
    for key, value in options.items():
        if key not in _OPTION_TYPES:
            raise TypeError(f"unknown node option {key!r}")
        if value is not None and not isinstance(value, _OPTION_TYPES[key]):
            raise TypeError(f"node option {key!r}: unexpected {type(value).__name__}")
        if key == "outputs" and not all(isinstance(o, Output) for o in value):  # type: ignore[union-attr]
            raise TypeError("node option 'outputs': a tuple of Output")
        setattr(node, key, dict(value) if isinstance(value, dict) else value)
    return node
