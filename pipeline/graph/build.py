"""skyscan's graph of one scan: its workflows, and the scan directory ``skyscan submit``/``skyscan run`` write.

The top-level DAG::

    prepare -> scan-s0-0000 .. scan-s0-NNNN -> stage1 -> stage2 -> ... -> merge        FINAL final

``stage<k>`` is an external sub-DAG whose file is written at run time by its PRE script
(``./skyscan-node plan . --stage k``, ``skyscan.nodes.plan``): only then are the pixels to refine known.
Each node declares its outputs (``skyscan.workflow.Output``), written beside each DAG file as
``<name>.outputs.json`` (:func:`write_declared_outputs`): what a resuming executor re-checks.
docs/graph.md explains every node and how a scan resumes. What each node does is ``skyscan.nodes``'s; the
directory's file names are ``skyscan.graph.layout``'s.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyscan.atomic import write_text
from skyscan.errors import InputError
from skyscan.graph.layout import (
    CONFIG_FILE,
    END_STATE,
    LOGS_DIR,
    PREPARE_RECORD,
    RESULT_CHECK,
    TOP_DAG,
    WRAPPER,
    ScanLayout,
    batch_name,
    batch_path,
    jobstate_log_name,
    outputs_name,
    result_path,
    scan_node_name,
    setup_prefix,
    stage_dag_name,
    stage_node_name,
    status_file_name,
    submit_file_name,
)
from skyscan.graph.refine import batch_count
from skyscan.products.summary import SUMMARY_FILE
from skyscan.resources import data_dir
from skyscan.settings.scan import ScanConfig, load_config
from skyscan.settings.site import SiteProfile
from skyscan.workflow import Output, Script, Workflow

WRAPPER_CALL = "./" + WRAPPER
PRE_SKIP_CODE = 100  # `node plan`: nothing left to refine, the stage node counts as done
BAD_INPUT_EXIT = 2  # never retried: the same input would fail again
SCAN_CATEGORY = "scan"


# ---------------------------------------------------------------------------------------------------------------
# Workflows
# ---------------------------------------------------------------------------------------------------------------
def _add_scan_nodes(wf: Workflow, config: ScanConfig, stage: int, sizes: list[int]) -> list[str]:
    nside = config.stages[stage].nside
    names = []
    for b, npix in enumerate(sizes):
        name = scan_node_name(stage, b)
        wf.add_job(
            name,
            submit_file_name("scan"),
            vars={
                "stage": str(stage),
                "nside": str(nside),
                "batch": batch_path(stage, b),
                "out": result_path(stage, b),
                "npix": str(npix),
            },
            retries=config.retries or None,
            retry_unless_exit=BAD_INPUT_EXIT if config.retries else None,
            category=SCAN_CATEGORY,
            outputs=(Output(result_path(stage, b), RESULT_CHECK),),
        )
        names.append(name)
    return names


def batch_sizes(npix: int, pixels_per_job: int) -> list[int]:
    n = batch_count(npix, pixels_per_job)
    return [min(pixels_per_job, npix - b * pixels_per_job) for b in range(n)]


def top_workflow(config: ScanConfig) -> Workflow:
    """The top-level graph: known entirely from the configuration (stage 0 covers the whole sky)."""
    wf = Workflow(
        maxjobs={k: v for k, v in config.maxjobs.items()},
        node_status_file=status_file_name(TOP_DAG),
        jobstate_log=jobstate_log_name(TOP_DAG),
        getenv=("SKYSCAN_PYTHON", "SKYSCAN_SETUP"),
    )
    first = config.stages[0]
    sizes = batch_sizes(first.npix_sky, first.pixels_per_job)
    prepared = (Output(PREPARE_RECORD), *(Output(batch_path(0, b)) for b in range(len(sizes))))
    wf.add_job("prepare", submit_file_name("prepare"), outputs=prepared)
    previous = _add_scan_nodes(wf, config, 0, sizes)
    for name in previous:
        wf.add_edge("prepare", name)
    for stage in config.stages[1:]:
        k = stage.index
        wf.add_subdag(
            stage_node_name(k),
            stage_dag_name(k),
            pre=Script(WRAPPER_CALL, ("plan", ".", "--stage", str(k))),
            pre_skip=PRE_SKIP_CODE,
            outputs=(Output(stage_dag_name(k), "subdag"),),  # every result its scan nodes declare
        )
        for name in previous:
            wf.add_edge(name, stage_node_name(k))
        previous = [stage_node_name(k)]
    wf.add_job("merge", submit_file_name("merge"), outputs=(Output(SUMMARY_FILE),))  # written after the maps
    for name in previous:
        wf.add_edge(name, "merge")
    # DAGMan expands $DAG_STATUS and $FAILED_COUNT in scripts only: the FINAL node's PRE script records them.
    wf.set_final(
        "final",
        submit_file_name("final"),
        pre=Script(WRAPPER_CALL, ("final", ".", "--dag-status", "$DAG_STATUS", "--failed-count", "$FAILED_COUNT")),
        outputs=(Output(END_STATE),),
    )
    return wf


def stage_workflow(config: ScanConfig, stage: int, sizes: list[int]) -> Workflow:
    """The sub-DAG of a later stage: one scan node per batch, throttled like the top-level DAG."""
    dag = stage_dag_name(stage)
    wf = Workflow(
        maxjobs={k: v for k, v in config.maxjobs.items()},
        node_status_file=status_file_name(dag),
        jobstate_log=jobstate_log_name(dag),
    )
    _add_scan_nodes(wf, config, stage, sizes)
    return wf


def write_declared_outputs(
    wf: Workflow,
    dag_path: str | os.PathLike[str],
    *,
    dag_text: str | None = None,
    write: Callable[[Path, str], None] = write_text,
) -> Path:
    """Write ``<name>.outputs.json``: the outputs ``wf``'s nodes declare, for the DAG file ``dag_path`` (written
    already from ``wf``: the declaration records its digest). ``write_scan`` calls it for the top-level DAG, the
    plan step for each stage's sub-DAG. ``dag_text``: the DAG file's text, when the caller has it (saves reading
    it back); ``write``: as in :func:`install_wrapper`."""
    from skyscan.local.verify import write_outputs

    dag_bytes = None if dag_text is None else dag_text.encode("utf-8")
    return write_outputs(dag_path, wf.declared_outputs(), dag_bytes=dag_bytes, write=write)


def dag_header(title: str) -> str:
    """The comment that opens every DAG file skyscan writes (the top-level DAG and the stage sub-DAGs)."""
    return f"# {title}\n# Written by skyscan; regenerate it rather than editing it (docs/graph.md).\n"


# ---------------------------------------------------------------------------------------------------------------
# Writing a scan directory
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanPaths:
    """What ``write_scan`` wrote."""

    outdir: Path
    dag: Path
    event: Path
    config: Path
    wrapper: Path
    submit_files: dict[str, Path]
    batch_name: str
    reused: bool


def _event_identity(path: Path) -> tuple[Any, ...]:
    from skyscan.reco.event import event_to_dict, read_event

    ef = read_event(path)
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in event_to_dict(ef.event, ef.truth).items()))


def _setup_names() -> set[str]:
    """Every name set-up writes (a folder holding only these and no event.json is a set-up cut short)."""
    from skyscan.condor.submit import SUBMIT_KINDS

    names = {CONFIG_FILE, WRAPPER, LOGS_DIR, TOP_DAG, outputs_name(TOP_DAG)}
    return names | {submit_file_name(kind) for kind in SUBMIT_KINDS}


def _partial_setup(outdir: Path) -> bool:
    """True if ``outdir`` holds only what an interrupted set-up writes (no event.json, an empty logs/)."""
    names = _setup_names()
    for entry in outdir.iterdir():
        if entry.name.startswith(".") and entry.name.endswith(".part"):
            continue  # a temporary file of skyscan.atomic left by a killed set-up
        if entry.name not in names:
            return False
        if entry.name == LOGS_DIR and (not entry.is_dir() or any(entry.iterdir())):
            return False
    return True


def _check_outdir(outdir: Path, event_path: Path, config: ScanConfig) -> str:
    """What ``outdir`` is: ``"new"`` (absent), ``"empty"``, ``"partial"`` (a set-up cut short, completed now) or
    ``"reuse"`` (this scan: resume); raise if it holds anything else."""
    if not outdir.exists():
        return "new"
    if not outdir.is_dir():
        raise InputError(f"{outdir}: exists and is not a directory")
    if not any(outdir.iterdir()):
        return "empty"
    layout = ScanLayout(outdir)
    existing = layout.event
    if not existing.is_file():
        if _partial_setup(outdir):
            return "partial"
        raise InputError(f"{outdir}: not empty and holds no skyscan scan (no event.json); choose another directory")
    try:
        same = _event_identity(existing) == _event_identity(event_path)
    except InputError:
        same = False
    if not same:
        raise InputError(f"{outdir}: holds a scan of a different event; choose another directory")
    old_config = layout.config
    if old_config.is_file():
        try:
            previous = load_config(old_config)
        except InputError:
            raise InputError(f"{old_config}: unreadable configuration of the existing scan") from None
        if previous.doc != config.doc:
            raise InputError(
                f"{outdir}: holds a scan of this event with a different configuration; choose another directory"
            )
    return "reuse"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Parent folder -> its modification time (ns) when this process last swept it and finished its own set-up there.
#: A stale set-up folder is a folder another process made there, which changes that time: while it is unchanged
#: there is nothing new to sweep, so the N set-ups of a campaign in one events/ folder list it once, not N times.
_SWEPT: dict[Path, int] = {}


def _parent_mtime(parent: Path) -> int | None:
    try:
        return parent.stat().st_mtime_ns
    except OSError:
        return None


def _remove_stale_setups(outdir: Path) -> None:
    """Temporary set-up folders beside ``outdir`` whose process is gone (killed during set-up).

    The parent folder is listed only when it changed since this process last swept it (see ``_SWEPT``); any
    stale set-up folder there is removed, whichever scan directory it was building.
    """
    parent = outdir.parent
    key = parent.absolute()
    mtime = _parent_mtime(parent)
    if mtime is not None and _SWEPT.get(key) == mtime:
        return
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        m = _SETUP_NAME.match(entry.name)
        if m is None or not entry.is_dir(follow_symlinks=False):
            continue
        pid = int(m.group(1))
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(entry.path, ignore_errors=True)
    _remember_swept(parent)


def _remember_swept(parent: Path) -> None:
    mtime = _parent_mtime(parent)
    if mtime is not None:
        _SWEPT[parent.absolute()] = mtime


_SETUP_NAME = re.compile(r"\A\..+\.setup-(\d+)-")
"""A temporary set-up folder's name (``setup_prefix(name)`` + ``<pid>-<random>``); group 1 is the pid."""


def wrapper_text() -> str:
    """The text of scripts/skyscan-node, the executable every node runs."""
    return data_dir("scripts").joinpath(WRAPPER).read_text(encoding="utf-8")


def install_wrapper(outdir: Path, text: str | None = None, write: Callable[[Path, str], None] = write_text) -> Path:
    """Copy scripts/skyscan-node (or ``text``, its content read before) into the scan directory with its
    executable bits set."""
    target = ScanLayout(outdir).wrapper
    write(target, wrapper_text() if text is None else text)
    mode = target.stat().st_mode
    target.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRUSR)
    return target


def _write_plain(path: Path, text: str) -> None:
    """Write a file of a folder nobody else sees yet (``_build_beside``): the folder's rename is the atomic step,
    so a file needs no temporary name of its own. Same bytes and permissions as ``skyscan.atomic.write_text``."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


@dataclass(frozen=True)
class ScanFiles:
    """The texts of one scan directory's set-up files, before they are written."""

    config_yaml: str
    wrapper: str
    submit_texts: dict[str, str]  # node kind -> submit file
    workflow: Workflow  # the top-level graph (its declared outputs are written beside the DAG)
    dag: str  # skyscan.dag


def _title(run_id: int, event_id: int) -> str:
    return f"skyscan top-level DAG of run {run_id} event {event_id}"


def render_files(
    config: ScanConfig, site: SiteProfile, run_id: int, event_id: int, python: str | None = None
) -> ScanFiles:
    """Every set-up text of the scan of one event, rendered from scratch (what :class:`ScanRendering` caches)."""
    from skyscan.condor.dagwriter import dag_text
    from skyscan.condor.submit import SUBMIT_KINDS, render_submit

    name = batch_name(run_id, event_id)
    wf = top_workflow(config)
    return ScanFiles(
        config_yaml=config.to_yaml(),
        wrapper=wrapper_text(),
        submit_texts={kind: render_submit(kind, site, config, name, python) for kind in SUBMIT_KINDS},
        workflow=wf,
        dag=dag_text(wf, dag_header(_title(run_id, event_id))),
    )


_BATCH_PLACEHOLDER = "SKYSCAN0BATCH0NAME0PLACEHOLDER"
"""Stands for the batch name while a submit file is rendered once for many events (never in a real file)."""
_PLAIN_BATCH_NAME = re.compile(r"\A[A-Za-z0-9_.+-]+\Z")


@dataclass(frozen=True)
class ScanRendering:
    """The set-up texts that are the same for every event of one configuration, site and interpreter, rendered
    once: config.yaml, the wrapper, each submit file up to its batch name, and the DAG's text below its header.

    A campaign writes hundreds of scan directories from one configuration; rendering and checking the submit
    files, the YAML and the DAG per event cost more than writing them. :meth:`files` adds the event-specific
    parts (the batch name, the DAG's title) and gives exactly what :func:`render_files` gives (tests compare the
    written directories byte for byte).
    """

    config: ScanConfig
    site: SiteProfile
    python: str | None
    config_yaml: str
    wrapper: str
    submit_parts: dict[str, tuple[str, ...]]  # node kind -> its text split at the batch name
    workflow: Workflow
    dag_body: str

    @classmethod
    def of(cls, config: ScanConfig, site: SiteProfile, python: str | None = None) -> ScanRendering:
        """Render everything once (the submit files are checked by the bindings here, with a placeholder name)."""
        from skyscan.condor.dagwriter import dag_text
        from skyscan.condor.submit import SUBMIT_KINDS, render_submit

        parts = {
            kind: tuple(render_submit(kind, site, config, _BATCH_PLACEHOLDER, python).split(_BATCH_PLACEHOLDER))
            for kind in SUBMIT_KINDS
        }
        wf = top_workflow(config)
        return cls(config, site, python, config.to_yaml(), wrapper_text(), parts, wf, dag_text(wf))

    def serves(self, config: ScanConfig, site: SiteProfile, python: str | None) -> bool:
        """Whether this rendering was made for these settings."""
        return (self.config is config or self.config == config) and (self.site is site or self.site == site) and (
            self.python == python
        )

    def files(self, run_id: int, event_id: int) -> ScanFiles:
        """The set-up texts of one event's scan directory."""
        name = batch_name(run_id, event_id)
        if not _PLAIN_BATCH_NAME.match(name):  # cannot happen for integer ids; kept so the check always holds
            return render_files(self.config, self.site, run_id, event_id, self.python)
        return ScanFiles(
            config_yaml=self.config_yaml,
            wrapper=self.wrapper,
            submit_texts={kind: name.join(parts) for kind, parts in self.submit_parts.items()},
            workflow=self.workflow,
            dag=dag_header(_title(run_id, event_id)) + self.dag_body,
        )


def _populate(folder: Path, event_file: Path, files: ScanFiles, write_event: bool, fresh: bool = False) -> None:
    """Write every set-up file into ``folder``; event.json last: it marks a whole set-up.

    Each file is written atomically, except in a ``fresh`` folder (one ``_build_beside`` renames into place
    whole, so nobody sees it half-written).
    """
    write = _write_plain if fresh else write_text
    layout = ScanLayout(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layout.logs.mkdir(exist_ok=True)
    write(layout.config, files.config_yaml)
    install_wrapper(folder, files.wrapper, write)
    for kind, text in files.submit_texts.items():
        write(layout.submit_file(kind), text)
    write(layout.top_dag, files.dag)
    write_declared_outputs(files.workflow, layout.top_dag, dag_text=files.dag, write=write)
    if write_event:
        write(layout.event, event_file.read_text(encoding="utf-8"))


def _setup_error(folder: Path, exc: OSError) -> InputError:
    reason = exc.strerror or exc.__class__.__name__
    return InputError(f"{folder}: cannot write the scan directory ({reason}); free space or fix it and run again")


def write_scan(
    event_path: str | Path,
    outdir: str | Path,
    config: ScanConfig,
    site: SiteProfile,
    python: str | None = None,
    *,
    rendering: ScanRendering | None = None,
) -> ScanPaths:
    """Validate the event and write everything a scan needs into ``outdir`` (nothing written on bad input).

    A directory that already holds this event (and configuration) is reused: the files are rewritten
    identically, so DAGMan's rescue DAG or the local executor's run state resumes the scan.

    Set-up is recoverable: a new directory is built under a temporary name beside it (``.<name>.setup-<pid>-…``)
    and renamed into place, so it appears whole or not at all; an existing empty directory, or one holding only
    what an interrupted set-up writes (no event.json yet), is completed in place, event.json last. A write that
    fails (a full disk) is an InputError naming the directory; the same command succeeds once it can write.

    ``rendering``: the texts shared by many scans of these settings, rendered once (``ScanRendering.of``); the
    files are the same with or without it.
    """
    from skyscan.graph.event import load_event

    if rendering is not None and not rendering.serves(config, site, python):
        raise ValueError("write_scan: the rendering was made for other settings")
    event_file = Path(event_path)
    folder = Path(outdir)
    ef, _ = load_event(event_file)  # raises InputError: nothing written yet
    run_id, event_id = ef.event.run_id, ef.event.event_id
    if rendering is not None:
        files = rendering.files(run_id, event_id)
    else:
        files = render_files(config, site, run_id, event_id, python)
    state = _check_outdir(folder, event_file, config)
    _remove_stale_setups(folder)
    if state == "new":
        state = _build_beside(folder, event_file, config, files)
    if state != "built":
        try:
            _populate(folder, event_file, files, write_event=state != "reuse")
        except OSError as exc:
            raise _setup_error(folder, exc) from None
    layout = ScanLayout(folder)
    return ScanPaths(
        outdir=folder,
        dag=layout.top_dag,
        event=layout.event,
        config=layout.config,
        wrapper=layout.wrapper,
        submit_files={kind: layout.submit_file(kind) for kind in files.submit_texts},
        batch_name=batch_name(run_id, event_id),
        reused=state == "reuse",
    )


def _build_beside(folder: Path, event_file: Path, config: ScanConfig, files: ScanFiles) -> str:
    """Build a new scan directory under a temporary name in its parent, then rename it into place.

    ``"built"``; or, if another process created ``folder`` meanwhile, what :func:`_check_outdir` says it is now.
    """
    tmp = folder.parent / f"{setup_prefix(folder.name)}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        _populate(tmp, event_file, files, write_event=True, fresh=True)
        os.rename(tmp, folder)
    except OSError as exc:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and folder.is_dir():
            return _check_outdir(folder, event_file, config)  # a concurrent set-up won: reuse or complete it
        raise _setup_error(folder, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    _remember_swept(folder.parent)  # our own set-up changed the parent folder: nothing new to sweep there
    return "built"


def scan_config(outdir: str | os.PathLike[str]) -> ScanConfig:
    """The configuration ``write_scan`` wrote into ``outdir`` (the defaults when there is none): what the nodes run."""
    path = ScanLayout.at(outdir).config
    return load_config(path) if path.is_file() else load_config()
