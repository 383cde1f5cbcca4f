"""HTCondor backend: submit files from templates + site profiles, DAG files with ``htcondor2.dags``, submission.

``htcondor2.dags`` (HTCondor 25.x) writes the DAG text, with three defects that this module works around
(each checked against the installed bindings; tests/test_condor.py pins the result):

1. ``DAG(max_jobs_by_category=...)`` is written as ``CATEGORY <cat> <N>``, which DAGMan reads as "put node
   <cat> into category <N>"; the throttle DAGMan needs is ``MAXJOBS <cat> <N>``. We rewrite those lines of
   the META block (a no-op once the writer is fixed).
2. ``DAG.final()`` writes the ``FINAL`` line but never the FINAL node's submit file, and
3. ``str(htcondor2.Submit)`` drops inline item lists (``queue x from ( ... )`` loses its items), so the
   writer's own submit files cannot be trusted either. We therefore take only the DAG text from the writer
   and write every submit file ourselves, from the rendered template text.

The writer names a layer's submit file ``<layer>.sub`` (and writes absolute paths for ``Path`` submit
descriptions), so a group of job nodes becomes a layer named after its submit file, and a name formatter
maps (layer, index) back to the workflow's node names. No path in the written files is absolute.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from skyscan.atomic import write_text
from skyscan.errors import InputError, SkyscanError
from skyscan.graph.workflow import Node, Script, Workflow
from skyscan.settings.scan import ScanConfig, SiteProfile, data_dir, resolve_python

SUBMIT_KINDS = ("prepare", "scan", "merge", "final")
#: Environment variables DAGMan passes on to the PRE scripts (``ENV GET``; the wrapper reads them).
WRAPPER_ENV = ("SKYSCAN_PYTHON", "SKYSCAN_SETUP")
NODE_STATUS_UPDATE_SECONDS = 30
#: Files ``condor_submit_dag`` creates; if one exists and no rescue DAG does, it refuses to submit again.
DAGMAN_OUTPUTS = (".condor.sub", ".lib.out", ".lib.err", ".dagman.log")

_MACRO = re.compile(r"\$\(SKYSCAN_([A-Z0-9_]+)\)")


# ---------------------------------------------------------------------------------------------------------------
# Submit files
# ---------------------------------------------------------------------------------------------------------------
def template_text(kind: str) -> str:
    """The shipped template ``submit_templates/<kind>.sub``."""
    if kind not in SUBMIT_KINDS:
        raise InputError(f"no submit template for node kind {kind!r}")
    return str(data_dir("submit_templates").joinpath(f"{kind}.sub").read_text(encoding="utf-8"))


def environment_value(env: Mapping[str, str]) -> str:
    """An ``environment`` value in HTCondor's new syntax: ``"A=1 B='x y'"``."""
    words = []
    for key, value in env.items():
        text = value.replace('"', '""')
        if any(c.isspace() for c in value) or "'" in value or not value:
            text = "'" + text.replace("'", "''") + "'"
        words.append(f"{key}={text}")
    return '"' + " ".join(words) + '"'


def submit_macros(
    kind: str, site: SiteProfile, config: ScanConfig, batch_name: str, python: str | None = None
) -> dict[str, str | None]:
    """The SKYSCAN_* values of one node kind; None leaves the template line out.

    ``python`` stands for the interpreter writing the graph (the profiles' ``current``); tests pass a
    fixed name so that the written files do not depend on the machine.
    """
    universe = site.universe_of(kind)
    on_submit_host = universe == "local"
    transfer = not site.shared_filesystem and not on_submit_host
    res = site.resources_of(kind, config)
    env: dict[str, str] = {}
    py = resolve_python(site.submit_python if on_submit_host else site.job_python, python)
    setup = site.submit_setup if on_submit_host else site.job_setup
    if py:
        env["SKYSCAN_PYTHON"] = py
    if setup:
        env["SKYSCAN_SETUP"] = setup
    env.update(site.environment)
    scan_transfer = transfer and kind == "scan"
    if transfer and kind != "scan":
        raise InputError(f"site {site.name}: the {kind} node cannot run without the scan directory")
    hold = site.on_exit_hold
    return {
        "UNIVERSE": universe,
        "BATCH_NAME": batch_name,
        "BATCH": "$Fnx(batch)" if scan_transfer else "$(batch)",
        "OUT": "$Fnx(out)" if scan_transfer else "$(out)",
        "REQUEST_CPUS": None if on_submit_host else str(res.request_cpus),
        "REQUEST_MEMORY": None if on_submit_host else f"{res.request_memory_mb}MB",
        "REQUEST_DISK": None if on_submit_host else f"{res.request_disk_mb}MB",
        "SHOULD_TRANSFER_FILES": None if on_submit_host else ("YES" if transfer else "NO"),
        "WHEN_TO_TRANSFER_OUTPUT": "ON_EXIT" if scan_transfer else None,
        "TRANSFER_INPUT_FILES": "event.json, config.yaml, $(batch)" if scan_transfer else None,
        "TRANSFER_OUTPUT_FILES": "$Fnx(out)" if scan_transfer else None,
        "TRANSFER_OUTPUT_REMAPS": '"$Fnx(out) = $(out)"' if scan_transfer else None,
        "CONTAINER_IMAGE": site.container_image if universe == "container" else None,
        "SINGULARITY_IMAGE": (
            f'"{site.singularity_image}"' if site.singularity_image and universe == "vanilla" else None
        ),
        "ACCOUNTING_GROUP": site.accounting_group,
        "REQUIREMENTS": None if on_submit_host else site.requirements_of(kind),
        "ENVIRONMENT": environment_value(env) if env else None,
        "ON_EXIT_HOLD": hold,
        "ON_EXIT_HOLD_SUBCODE": (
            str(site.on_exit_hold_subcode) if hold and site.on_exit_hold_subcode is not None else None
        ),
        "ON_EXIT_HOLD_REASON": f'"{site.on_exit_hold_reason}"' if hold and site.on_exit_hold_reason else None,
        "PERIODIC_RELEASE": site.periodic_release,
        "PERIODIC_REMOVE": site.periodic_remove,
        "EXTRA": "\n".join(f"{key:<23} = {value}" for key, value in site.extra.items()) or None,
    }


def render_template(text: str, macros: Mapping[str, str | None], source: str = "template") -> str:
    """Fill the SKYSCAN_* macros of a template; drop each line that uses a macro without a value."""
    out: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        names = _MACRO.findall(line)
        if not names:
            out.append(line)
            continue
        unknown = [n for n in names if n not in macros]
        if unknown:
            raise InputError(f"{source}:{lineno}: unknown macro $(SKYSCAN_{unknown[0]})")
        if any(macros[n] is None for n in names):
            continue
        out.append(_MACRO.sub(lambda m: str(macros[m.group(1)]), line))
    return "\n".join(out) + "\n"


def render_submit(
    kind: str, site: SiteProfile, config: ScanConfig, batch_name: str, python: str | None = None
) -> str:
    """The submit file of one node kind for a site, checked by the bindings' parser."""
    body = render_template(template_text(kind), submit_macros(kind, site, config, batch_name, python), f"{kind}.sub")
    text = f"# Written by skyscan from submit_templates/{kind}.sub for site profile {site.name!r}.\n" + body
    check_submit(text, f"{kind}.sub")
    return text


def check_submit(text: str, name: str) -> Any:
    """Parse a submit description with ``htcondor2.Submit``; InputError naming the file if it does not."""
    import htcondor2

    try:
        return htcondor2.Submit(text)
    except Exception as exc:  # the bindings raise several exception types
        raise InputError(f"{name}: HTCondor cannot parse the submit description ({exc})") from None


# ---------------------------------------------------------------------------------------------------------------
# DAG files
# ---------------------------------------------------------------------------------------------------------------
def _script(script: Script | None) -> Any:
    if script is None:
        return None
    from htcondor2 import dags

    return dags.Script(script.executable, list(script.arguments))


def _group_key(wf: Workflow, node: Node) -> tuple[object, ...]:
    if node.kind != "job":
        return (node.kind, node.name)
    return (
        "job",
        node.submit,
        node.retries,
        node.retry_unless_exit,
        node.pre,
        node.post,
        node.pre_skip,
        node.category,
        tuple(wf.parents(node.name)),
        tuple(wf.children(node.name)),
    )


def _layer_name(node: Node) -> str:
    submit = node.submit or ""
    if "/" in submit or not submit.endswith(".sub") or len(submit) <= 4:
        raise InputError(f"node {node.name}: submit file {submit!r} must be a plain name ending in .sub")
    return submit[: -len(".sub")]


def dag_text(wf: Workflow, header: str = "") -> str:
    """The DAGMan file of a workflow, produced by ``htcondor2.dags`` (see the module docstring)."""
    from htcondor2 import Submit, dags
    from htcondor2.dags.writer import DAGWriter

    wf.check_acyclic()
    names: dict[tuple[str, int], str] = {}

    class _Names(dags.NodeNameFormatter):  # type: ignore[misc]
        """The workflow's own node names instead of the writer's ``layer:index``."""

        def generate(self, layer_name: str, node_index: int) -> str:
            try:
                return names[(layer_name, node_index)]
            except KeyError:
                raise InputError(f"the DAG writer asked for an unknown node {layer_name}:{node_index}") from None

        def parse(self, node_name: str) -> tuple[str, int]:
            for key, value in names.items():
                if value == node_name:
                    return key
            raise InputError(f"unknown node name {node_name!r}")

    nsf = None
    if wf.node_status_file:
        nsf = dags.NodeStatusFile(Path(wf.node_status_file), update_time=NODE_STATUS_UPDATE_SECONDS)
    dag = dags.DAG(
        max_jobs_by_category=dict(wf.maxjobs) or None,
        jobstate_log=Path(wf.jobstate_log) if wf.jobstate_log else None,
        node_status_file=nsf,
    )
    groups: dict[tuple[object, ...], list[Node]] = {}
    for node in wf.nodes.values():
        groups.setdefault(_group_key(wf, node), []).append(node)
    layer_of: dict[str, Any] = {}
    seen_layers: set[str] = set()
    for members in groups.values():
        first = members[0]
        common: dict[str, Any] = {
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
    children_of: dict[str, int] = {}
    for p, _ in linked:
        children_of[p] = children_of.get(p, 0) + 1
    crowded = [p for p, n in children_of.items() if n > 1]
    if crowded:
        # The writer orders several children by set iteration (string hashing): the file would vary.
        raise InputError(f"node group {crowded[0]} has several child groups; the DAG text would not be reproducible")
    if wf.final is not None:
        f = wf.final
        _layer_name(f)  # the writer names the FINAL node's file <name>.sub
        if f.submit != f"{f.name}.sub":
            raise InputError(f"FINAL node {f.name}: its submit file must be {f.name}.sub (writer convention)")
        final_name = f.name
        names[(final_name, 0)] = final_name
        dag.final(name=final_name, submit_description=Submit(), pre=_script(f.pre), post=_script(f.post))

    writer = DAGWriter(dag, node_name_formatter=_Names())
    lines = list(writer.yield_dag_file_lines())
    if writer.join_factory.joins:
        raise InputError("the DAG writer inserted join nodes; skyscan does not write their submit file")
    lines = _fix_meta(lines, wf)
    return header + "\n".join(lines) + "\n"


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


# ---------------------------------------------------------------------------------------------------------------
# Submission
# ---------------------------------------------------------------------------------------------------------------
def find_schedd() -> Any:
    """The local schedd (separate so that tests can make the lookup fail)."""
    import htcondor2

    return htcondor2.Schedd()


@contextlib.contextmanager
def _in_directory(path: Path, env: Mapping[str, str]) -> Iterator[None]:
    """Run in ``path`` with extra environment (DAGMan copies both: relative paths, ENV GET)."""
    old_cwd = Path.cwd()
    old_env = {key: os.environ.get(key) for key in env}
    os.chdir(path)
    os.environ.update(env)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def submit_environment(site: SiteProfile, python: str | None = None) -> dict[str, str]:
    """SKYSCAN_PYTHON / SKYSCAN_SETUP for DAGMan and so for the PRE scripts on the submit host."""
    env: dict[str, str] = {}
    py = resolve_python(site.submit_python, python)
    if py:
        env["SKYSCAN_PYTHON"] = py
    if site.submit_setup:
        env["SKYSCAN_SETUP"] = site.submit_setup
    return env


def submit_command(outdir: Path, dag_name: str, batch_name: str, env: Mapping[str, str]) -> str:
    """The shell command that submits the DAG by hand (what ``--dry-run`` prints)."""
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    cmd = f"condor_submit_dag -batch-name {shlex.quote(batch_name)} {shlex.quote(dag_name)}"
    return f"cd {shlex.quote(str(outdir))} && " + (f"{prefix} {cmd}" if prefix else cmd)


def rescue_files(outdir: Path, dag_name: str) -> list[Path]:
    return sorted(outdir.glob(f"{dag_name}.rescue[0-9][0-9][0-9]"))


def check_resubmission(outdir: Path, dag_name: str) -> None:
    """Refuse what ``condor_submit_dag`` would refuse, with advice; drop a stale generated .condor.sub."""
    if (outdir / f"{dag_name}.lock").exists():
        raise SkyscanError(
            f"{outdir / (dag_name + '.lock')} exists: a DAGMan may still be running this scan "
            "(check condor_q; delete the lock only if it is stale)"
        )
    if rescue_files(outdir, dag_name):
        return  # condor_submit_dag runs the newest rescue DAG: the scan resumes
    ran = [s for s in DAGMAN_OUTPUTS[1:] if (outdir / f"{dag_name}{s}").exists()]
    if ran:
        raise SkyscanError(
            f"{outdir}: a DAGMan already ran this scan ({dag_name}{ran[0]} exists) and left no rescue DAG "
            "to resume; see `skyscan status`, or submit by hand with condor_submit_dag -force to start over"
        )
    stale = outdir / f"{dag_name}.condor.sub"
    if stale.exists():
        stale.unlink()


def submit_dag(outdir: str | Path, dag_name: str, batch_name: str, env: Mapping[str, str]) -> int:
    """Submit the DAG with the bindings; return the DAGMan job's cluster id.

    The schedd is looked up first: when none is reachable, nothing is written and the directory stays
    ready to submit by hand.
    """
    import htcondor2

    folder = Path(outdir).absolute()
    check_resubmission(folder, dag_name)
    command = submit_command(folder, dag_name, batch_name, env)
    with _in_directory(folder, env):
        try:
            schedd = find_schedd()
        except Exception as exc:  # the bindings raise HTCondorException and others
            reason = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            raise SkyscanError(
                f"no HTCondor schedd reachable ({reason}); the scan directory is ready, submit it by hand: {command}"
            ) from None
        try:
            sub = htcondor2.Submit.from_dag(dag_name, {"batch-name": batch_name})
            result = schedd.submit(sub)
        except Exception as exc:
            reason = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            raise SkyscanError(f"submitting {folder / dag_name} failed: {reason}") from None
    return int(result.cluster())
