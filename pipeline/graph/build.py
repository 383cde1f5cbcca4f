"""skyscan's graph of one scan: its workflows, and the scan directory ``skyscan submit``/``skyscan run`` write.

The top-level DAG::

    prepare -> scan-s0-0000 .. scan-s0-NNNN -> stage1 -> stage2 -> ... -> merge        FINAL final

``stage<k>`` is an external sub-DAG whose file is written at run time by its PRE script
(``./skyscan-node plan . --stage k``, ``skyscan.nodes.plan``): only then are the pixels to refine known.
docs/graph.md explains every node and how a scan resumes. What each node does is ``skyscan.nodes``'s; the
directory's file names are ``skyscan.graph.layout``'s.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyscan.atomic import write_text
from skyscan.errors import InputError
from skyscan.graph.layout import (
    TOP_DAG,
    WRAPPER,
    ScanLayout,
    batch_name,
    batch_path,
    jobstate_log_name,
    result_path,
    scan_node_name,
    stage_dag_name,
    stage_node_name,
    status_file_name,
    submit_file_name,
)
from skyscan.graph.refine import batch_count
from skyscan.resources import data_dir
from skyscan.settings.scan import ScanConfig, load_config
from skyscan.settings.site import SiteProfile
from skyscan.workflow import Script, Workflow

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
    wf.add_job("prepare", submit_file_name("prepare"))
    first = config.stages[0]
    previous = _add_scan_nodes(wf, config, 0, batch_sizes(first.npix_sky, first.pixels_per_job))
    for name in previous:
        wf.add_edge("prepare", name)
    for stage in config.stages[1:]:
        k = stage.index
        wf.add_subdag(
            stage_node_name(k),
            stage_dag_name(k),
            pre=Script(WRAPPER_CALL, ("plan", ".", "--stage", str(k))),
            pre_skip=PRE_SKIP_CODE,
        )
        for name in previous:
            wf.add_edge(name, stage_node_name(k))
        previous = [stage_node_name(k)]
    wf.add_job("merge", submit_file_name("merge"))
    for name in previous:
        wf.add_edge(name, "merge")
    # DAGMan expands $DAG_STATUS and $FAILED_COUNT in scripts only: the FINAL node's PRE script records them.
    wf.set_final(
        "final",
        submit_file_name("final"),
        pre=Script(WRAPPER_CALL, ("final", ".", "--dag-status", "$DAG_STATUS", "--failed-count", "$FAILED_COUNT")),
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


def _check_outdir(outdir: Path, event_path: Path, config: ScanConfig) -> bool:
    """True if ``outdir`` already holds this scan (resume); raise if it holds anything else."""
    if not outdir.exists():
        return False
    if not outdir.is_dir():
        raise InputError(f"{outdir}: exists and is not a directory")
    if not any(outdir.iterdir()):
        return False
    layout = ScanLayout(outdir)
    existing = layout.event
    if not existing.is_file():
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
    return True


def install_wrapper(outdir: Path) -> Path:
    """Copy scripts/skyscan-node into the scan directory with its executable bits set."""
    text = data_dir("scripts").joinpath(WRAPPER).read_text(encoding="utf-8")
    target = ScanLayout(outdir).wrapper
    write_text(target, text)
    mode = target.stat().st_mode
    target.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRUSR)
    return target


def write_scan(
    event_path: str | Path,
    outdir: str | Path,
    config: ScanConfig,
    site: SiteProfile,
    python: str | None = None,
) -> ScanPaths:
    """Validate the event and write everything a scan needs into ``outdir`` (nothing written on bad input).

    A directory that already holds this event (and configuration) is reused: the files are rewritten
    identically, so DAGMan's rescue DAG or the local executor's run state resumes the scan.
    """
    from skyscan.condor.dagwriter import write_dag
    from skyscan.condor.submit import SUBMIT_KINDS, render_submit
    from skyscan.graph.event import load_event

    event_file = Path(event_path)
    folder = Path(outdir)
    ef, _ = load_event(event_file)  # raises InputError: nothing written yet
    name = batch_name(ef.event.run_id, ef.event.event_id)
    submit_texts = {kind: render_submit(kind, site, config, name, python) for kind in SUBMIT_KINDS}
    reused = _check_outdir(folder, event_file, config)

    layout = ScanLayout(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layout.logs.mkdir(exist_ok=True)
    event_copy = layout.event
    if not reused:
        write_text(event_copy, event_file.read_text(encoding="utf-8"))
    config_path = layout.config
    write_text(config_path, config.to_yaml())
    wrapper = install_wrapper(folder)
    subs: dict[str, Path] = {}
    for kind, text in submit_texts.items():
        subs[kind] = layout.submit_file(kind)
        write_text(subs[kind], text)
    dag = layout.top_dag
    title = f"skyscan top-level DAG of run {ef.event.run_id} event {ef.event.event_id}"
    write_dag(top_workflow(config), dag, dag_header(title))
    return ScanPaths(
        outdir=folder,
        dag=dag,
        event=event_copy,
        config=config_path,
        wrapper=wrapper,
        submit_files=subs,
        batch_name=name,
        reused=reused,
    )


def scan_config(outdir: str | os.PathLike[str]) -> ScanConfig:
    """The configuration ``write_scan`` wrote into ``outdir`` (the defaults when there is none): what the nodes run."""
    path = ScanLayout.at(outdir).config
    return load_config(path) if path.is_file() else load_config()
