"""Parse the subset of the HTCondor DAGMan language that skyscan writes.

The local executor (``skyscan.local.executor``) runs the very files that ``condor_submit_dag`` would run, so the
parser follows DAGMan's rules (case-insensitive keywords, case-sensitive node names, forward references,
"last statement wins") instead of inventing a dialect. It knows nothing about skyscan's node names.
Every problem is reported as one ``InputError`` line naming the file and line. The quoting rules (VARS values,
submit-file ``arguments``/``environment``) live in :mod:`skyscan.dagman.quoting`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from skyscan.dagman.quoting import parse_environment, parse_vars, split_arguments
from skyscan.errors import InputError

__all__ = [
    "IGNORED_COMMANDS",
    "Dag",
    "DagNode",
    "DagScript",
    "NodeKind",
    "check_acyclic",
    "dag_digest",
    "parse_dag",
    # quoting helpers, re-exported for callers that import them from here
    "parse_environment",
    "split_arguments",
]

NodeKind = Literal["job", "subdag"]

#: Commands that are accepted but have no meaning for a local run (they only affect HTCondor itself).
IGNORED_COMMANDS = frozenset({"DOT", "SET_JOB_ATTR", "ABORT-DAG-ON", "ENV", "REJECT", "MAXPRE", "MAXPOST", "MAXIDLE"})

_ALL_NODES = "ALL_NODES"
_RESERVED_NAMES = frozenset({"PARENT", "CHILD", _ALL_NODES})


@dataclass
class DagScript:
    """A PRE or POST script as written on a SCRIPT line (macros like ``$JOB`` are not yet substituted)."""

    when: Literal["PRE", "POST"]
    executable: str
    arguments: list[str]
    defer_status: int | None = None
    defer_seconds: float = 0.0
    debug_file: str | None = None
    debug_type: str = "ALL"


@dataclass
class DagNode:
    """One DAG node: a job (JOB or FINAL) or an external sub-DAG (SUBDAG EXTERNAL)."""

    name: str
    kind: NodeKind
    file: str  # submit file for a job, DAG file for a sub-DAG; relative to ``dir`` as written
    line: int
    dir: str | None = None
    noop: bool = False
    done: bool = False
    final: bool = False
    vars: dict[str, str] = field(default_factory=dict)
    prepend_vars: set[str] = field(default_factory=set)  # keys the submit file may override (VARS PREPEND)
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    pre: DagScript | None = None
    post: DagScript | None = None
    retry: int = 0
    retry_unless_exit: int | None = None
    pre_skip: int | None = None
    category: str | None = None
    priority: int = 0


@dataclass
class Dag:
    """A parsed DAG file. ``nodes`` keeps file order and includes the FINAL node (``final`` names it)."""

    path: Path
    digest: str
    nodes: dict[str, DagNode]
    final: str | None = None
    maxjobs: dict[str, int] = field(default_factory=dict)
    node_status_file: str | None = None
    jobstate_log: str | None = None
    config: str | None = None

    @property
    def directory(self) -> Path:
        """Relative paths in the DAG are resolved here (like ``condor_submit_dag -usedagdir``)."""
        return self.path.parent

    def node_dir(self, node: DagNode) -> Path:
        """The directory a node's files and scripts are relative to (its DIR, else the DAG's directory)."""
        if node.dir is None:
            return self.directory
        return self.directory / node.dir


def dag_digest(data: bytes) -> str:
    """Content digest recorded in the run-state file, so a changed DAG is never resumed by mistake."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_dag(path: str | Path) -> Dag:
    """Parse a DAG file; raise ``InputError`` (naming file and line) for anything malformed or unsupported."""
    dag_path = Path(path).absolute()
    try:
        data = dag_path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read DAG file {dag_path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{dag_path}: not a UTF-8 text file") from None
    return _Parser(dag_path, data).parse(text)


class _Parser:
    """Two passes: node definitions first (so references may come before definitions), then the rest in order."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.path = path
        self.dag = Dag(path=path, digest=dag_digest(data), nodes={})
        self.deferred: list[tuple[int, str, str]] = []  # (line number, keyword, whole line)
        self.edge_lines: dict[tuple[str, str], int] = {}

    def error(self, lineno: int, message: str) -> InputError:
        return InputError(f"{self.path.name}:{lineno}: {message}")

    def parse(self, text: str) -> Dag:
        for lineno, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            keyword = line.split(None, 1)[0].upper()
            if keyword in ("JOB", "FINAL", "SUBDAG"):
                self.define_node(lineno, keyword, line.split())
            elif keyword in _SECOND_PASS:
                self.deferred.append((lineno, keyword, line))
            elif keyword in IGNORED_COMMANDS:
                continue
            else:
                raise self.error(lineno, f"unsupported DAG command {line.split(None, 1)[0]!r}")
        for lineno, keyword, line in self.deferred:
            _SECOND_PASS[keyword](self, lineno, line)
        check_acyclic(self.dag, self.edge_lines, self.path.name)
        return self.dag

    # -- node definitions -------------------------------------------------------------------------
    def define_node(self, lineno: int, keyword: str, words: list[str]) -> None:
        kind: NodeKind = "job"
        args = words[1:]
        if keyword == "SUBDAG":
            if not args or args[0].upper() != "EXTERNAL":
                raise self.error(lineno, "only 'SUBDAG EXTERNAL name dagfile' is supported")
            kind = "subdag"
            args = args[1:]
        if len(args) < 2:
            raise self.error(lineno, f"{keyword} needs a node name and a file")
        name, file = args[0], args[1]
        self.check_new_name(lineno, name)
        node = DagNode(name=name, kind=kind, file=file, line=lineno, final=keyword == "FINAL")
        rest = args[2:]
        i = 0
        while i < len(rest):
            option = rest[i].upper()
            if option == "DIR" and i + 1 < len(rest):
                node.dir = rest[i + 1]
                i += 2
                continue
            if option == "NOOP":
                node.noop = True
            elif option == "DONE" and keyword != "FINAL":
                node.done = True
            else:
                raise self.error(lineno, f"unexpected {rest[i]!r} in {keyword} line")
            i += 1
        if node.final:
            if self.dag.final is not None:
                raise self.error(lineno, f"second FINAL node {name!r} (already have {self.dag.final!r})")
            self.dag.final = name
        self.dag.nodes[name] = node

    def check_new_name(self, lineno: int, name: str) -> None:
        if name.upper() in _RESERVED_NAMES:
            raise self.error(lineno, f"{name!r} is a reserved word, not a valid node name")
        if name in self.dag.nodes:
            first = self.dag.nodes[name].line
            raise self.error(lineno, f"duplicate node name {name!r} (first defined on line {first})")

    # -- helpers for the second pass --------------------------------------------------------------
    def node(self, lineno: int, name: str) -> DagNode:
        try:
            return self.dag.nodes[name]
        except KeyError:
            raise self.error(lineno, f"unknown node {name!r}") from None

    def targets(self, lineno: int, name: str) -> list[DagNode]:
        """Nodes a per-node command applies to; ALL_NODES means every node except FINAL (as DAGMan)."""
        if name.upper() == _ALL_NODES:
            return [n for n in self.dag.nodes.values() if not n.final]
        return [self.node(lineno, name)]

    def integer(self, lineno: int, word: str, what: str) -> int:
        try:
            return int(word)
        except ValueError:
            raise self.error(lineno, f"{what} must be an integer, not {word!r}") from None

    # -- second-pass commands ---------------------------------------------------------------------
    def cmd_parent(self, lineno: int, line: str) -> None:
        words = line.split()[1:]
        upper = [w.upper() for w in words]
        if upper.count("CHILD") != 1:
            raise self.error(lineno, "PARENT line needs exactly one CHILD keyword")
        split = upper.index("CHILD")
        parents, children = words[:split], words[split + 1 :]
        if not parents or not children:
            raise self.error(lineno, "PARENT line needs at least one parent and one child")
        for name in parents + children:
            if self.node(lineno, name).final:
                raise self.error(lineno, f"FINAL node {name!r} cannot have parents or children")
        for p in parents:
            for c in children:
                if p == c:
                    raise self.error(lineno, f"node {p!r} cannot be its own parent (cycle)")
                if (p, c) in self.edge_lines:
                    continue
                self.edge_lines[(p, c)] = lineno
                self.dag.nodes[p].children.append(c)
                self.dag.nodes[c].parents.append(p)

    def cmd_vars(self, lineno: int, line: str) -> None:
        words = line.split(None, 2)
        if len(words) < 3:
            raise self.error(lineno, "VARS needs a node name and at least one key=\"value\"")
        nodes = self.targets(lineno, words[1])
        rest = words[2]
        prepend = False
        mode = rest.split(None, 1)
        if mode[0].upper() in ("PREPEND", "APPEND"):
            prepend = mode[0].upper() == "PREPEND"
            rest = mode[1] if len(mode) > 1 else ""
        try:
            pairs = parse_vars(rest)
        except ValueError as exc:
            raise self.error(lineno, str(exc)) from None
        if not pairs:
            raise self.error(lineno, "VARS needs at least one key=\"value\"")
        for node in nodes:
            for key, value in pairs:
                node.vars[key] = value
                if prepend:
                    node.prepend_vars.add(key)
                else:
                    node.prepend_vars.discard(key)

    def cmd_script(self, lineno: int, line: str) -> None:
        words = line.split()[1:]
        defer_status: int | None = None
        defer_seconds = 0.0
        debug_file: str | None = None
        debug_type = "ALL"
        while words and words[0].upper() in ("DEFER", "DEBUG"):
            if len(words) < 3:
                raise self.error(lineno, f"SCRIPT {words[0]} needs two values")
            if words[0].upper() == "DEFER":
                defer_status = self.integer(lineno, words[1], "DEFER status")
                defer_seconds = float(self.integer(lineno, words[2], "DEFER time"))
            else:
                debug_file, debug_type = words[1], words[2].upper()
                if debug_type not in ("STDOUT", "STDERR", "ALL"):
                    raise self.error(lineno, f"SCRIPT DEBUG type must be STDOUT, STDERR or ALL, not {words[2]!r}")
            words = words[3:]
        if len(words) < 3:
            raise self.error(lineno, "SCRIPT needs PRE|POST, a node name and an executable")
        when = words[0].upper()
        if when == "HOLD":
            return  # jobs are never held locally
        if when not in ("PRE", "POST"):
            raise self.error(lineno, f"SCRIPT type must be PRE, POST or HOLD, not {words[0]!r}")
        for node in self.targets(lineno, words[1]):
            script = DagScript(
                when="PRE" if when == "PRE" else "POST",
                executable=words[2],
                arguments=list(words[3:]),
                defer_status=defer_status,
                defer_seconds=defer_seconds,
                debug_file=debug_file,
                debug_type=debug_type,
            )
            if script.when == "PRE":
                node.pre = script
            else:
                node.post = script

    def cmd_retry(self, lineno: int, line: str) -> None:
        words = line.split()[1:]
        if len(words) not in (2, 4) or (len(words) == 4 and words[2].upper() != "UNLESS-EXIT"):
            raise self.error(lineno, "expected 'RETRY name N [UNLESS-EXIT code]'")
        count = self.integer(lineno, words[1], "RETRY count")
        if count < 0:
            raise self.error(lineno, "RETRY count must not be negative")
        unless = self.integer(lineno, words[3], "UNLESS-EXIT code") if len(words) == 4 else None
        for node in self.targets(lineno, words[0]):
            node.retry = count
            node.retry_unless_exit = unless

    def cmd_pre_skip(self, lineno: int, line: str) -> None:
        words = line.split()[1:]
        if len(words) != 2:
            raise self.error(lineno, "expected 'PRE_SKIP name code'")
        code = self.integer(lineno, words[1], "PRE_SKIP code")
        for node in self.targets(lineno, words[0]):
            node.pre_skip = code

    def cmd_category(self, lineno: int, line: str) -> None:
        words = line.split()[1:]
        if len(words) != 2:
            raise self.error(lineno, "expected 'CATEGORY name category'")
        for node in self.targets(lineno, words[0]):
            node.category = words[1]

    def cmd_maxjobs(self, lineno: int, line: str) -> None:
        words = line.split()[1:]
        if len(words) != 2:
            raise self.error(lineno, "expected 'MAXJOBS category N'")
        limit = self.integer(lineno, words[1], "MAXJOBS limit")
        if limit < 0:
            raise self.error(lineno, "MAXJOBS limit must not be negative")
        if limit > 0:  # DAGMan treats 0 as "no limit"
            self.dag.maxjobs[words[0]] = limit
        else:
            self.dag.maxjobs.pop(words[0], None)

    def cmd_priority(self, lineno: int, line: str) -> None:
        words = line.split()[1:]
        if len(words) != 2:
            raise self.error(lineno, "expected 'PRIORITY name value'")
        value = self.integer(lineno, words[1], "PRIORITY")
        for node in self.targets(lineno, words[0]):
            node.priority = value

    def cmd_done(self, lineno: int, line: str) -> None:
        words = line.split()[1:]
        if len(words) != 1:
            raise self.error(lineno, "expected 'DONE name'")
        node = self.node(lineno, words[0])
        if node.final:
            raise self.error(lineno, "the FINAL node cannot be marked DONE")
        node.done = True

    def cmd_file_setting(self, lineno: int, line: str) -> None:
        words = line.split()
        if len(words) < 2:
            raise self.error(lineno, f"{words[0]} needs a file name")
        keyword = words[0].upper()
        if keyword == "NODE_STATUS_FILE":
            self.dag.node_status_file = words[1]
        elif keyword == "JOBSTATE_LOG":
            self.dag.jobstate_log = words[1]
        else:
            self.dag.config = words[1]


_SECOND_PASS = {
    "PARENT": _Parser.cmd_parent,
    "VARS": _Parser.cmd_vars,
    "SCRIPT": _Parser.cmd_script,
    "RETRY": _Parser.cmd_retry,
    "PRE_SKIP": _Parser.cmd_pre_skip,
    "CATEGORY": _Parser.cmd_category,
    "MAXJOBS": _Parser.cmd_maxjobs,
    "PRIORITY": _Parser.cmd_priority,
    "DONE": _Parser.cmd_done,
    "NODE_STATUS_FILE": _Parser.cmd_file_setting,
    "JOBSTATE_LOG": _Parser.cmd_file_setting,
    "CONFIG": _Parser.cmd_file_setting,
}


def check_acyclic(dag: Dag, edge_lines: dict[tuple[str, str], int], filename: str) -> None:
    """Kahn's algorithm; on a cycle, name the nodes caught in it and a PARENT line that closes it."""
    indegree = {name: len(node.parents) for name, node in dag.nodes.items()}
    queue = [name for name, d in indegree.items() if d == 0]
    seen = 0
    while queue:
        name = queue.pop()
        seen += 1
        for child in dag.nodes[name].children:
            indegree[child] -= 1
            if indegree[child] == 0:
                queue.append(child)
    if seen == len(dag.nodes):
        return
    stuck = sorted(name for name, d in indegree.items() if d > 0)
    lines = sorted(line for (p, c), line in edge_lines.items() if p in indegree and indegree[p] > 0 and c in stuck)
    where = f"{filename}:{lines[-1]}" if lines else filename
    shown = ", ".join(stuck[:5]) + (", ..." if len(stuck) > 5 else "")
    raise InputError(f"{where}: the DAG has a cycle involving nodes {shown}")
