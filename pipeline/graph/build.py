"""skyscan's graph: the nodes of a scan, the files of its directory, and what the graph nodes themselves do.

The top-level DAG (written by ``skyscan submit``/``skyscan run``)::

    prepare -> scan-s0-0000 .. scan-s0-NNNN -> stage1 -> stage2 -> ... -> merge        FINAL final

``stage<k>`` is an external sub-DAG whose file is written at run time by its PRE script
(``./skyscan-node plan . --stage k``): only then are the pixels to refine known. docs/graph.md explains
every node and how a scan resumes. The directory's file names are ``skyscan.graph.layout``'s; the batch and
result files are read and written by ``skyscan.nodes.results``.
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from skyscan.atomic import write_json, write_text
from skyscan.errors import InputError, SkyscanError
from skyscan.graph.layout import END_STATE as END_STATE
from skyscan.graph.layout import TOP_DAG as TOP_DAG
from skyscan.graph.layout import WRAPPER as WRAPPER
from skyscan.graph.layout import ScanLayout, stage_node_name, submit_file_name
from skyscan.graph.layout import batch_name as batch_name
from skyscan.graph.layout import batch_path as batch_path
from skyscan.graph.layout import jobstate_log_name as jobstate_log_name
from skyscan.graph.layout import result_path as result_path
from skyscan.graph.layout import scan_node_name as scan_node_name
from skyscan.graph.layout import stage_dag_name as stage_dag_name
from skyscan.graph.layout import stage_dir as stage_dir
from skyscan.graph.layout import status_file_name as status_file_name
from skyscan.graph.refine import Selection, all_pixels, batch_count, select_stage, split_batches
from skyscan.nodes.results import read_batch, read_planned_result, write_batch
from skyscan.resources import data_dir
from skyscan.settings.scan import ScanConfig, load_config
from skyscan.settings.site import SiteProfile
from skyscan.workflow import Script, Workflow

WRAPPER_CALL = "./" + WRAPPER
PRE_SKIP_CODE = 100  # `node plan`: nothing left to refine, the stage node counts as done
BAD_INPUT_EXIT = 2  # never retried: the same input would fail again
SCAN_CATEGORY = "scan"
END_STATE_SCHEMA = "skyscan-end-state/1"
PREPARE_SCHEMA = "skyscan-prepare/1"
PLAN_SCHEMA = "skyscan-plan/1"

IntArray = npt.NDArray[np.int64]


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


def _dag_header(title: str) -> str:
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
    from skyscan.nodes.scan import load_event

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
    write_dag(top_workflow(config), dag, _dag_header(title))
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


# ---------------------------------------------------------------------------------------------------------------
# Node commands
# ---------------------------------------------------------------------------------------------------------------
def _scan_config(outdir: Path) -> ScanConfig:
    path = ScanLayout(outdir).config
    return load_config(path) if path.is_file() else load_config()


def _write_batches(outdir: Path, stage: int, batches: list[IntArray]) -> None:
    """Write stage<k>/batch-*.txt (one NESTED index per line) and delete stale ones beyond them."""
    layout = ScanLayout(outdir)
    layout.stage_dir(stage).mkdir(parents=True, exist_ok=True)
    wanted = set()
    for b, pixels in enumerate(batches):
        path = layout.batch_file(stage, b)
        wanted.add(path.name)
        write_batch(path, pixels)  # unchanged files are left alone
    for old in layout.list_batch_files(stage):
        if old.name not in wanted:
            old.unlink()


def prepare_scan(event_path: str | Path, outdir: str | Path) -> dict[str, Any]:
    """`skyscan node prepare`: validate the event, first guess (prepare.json), stage-0 batch files."""
    from skyscan import iers_cache
    from skyscan.nodes.scan import load_event
    from skyscan.reco.coords import local_to_equatorial
    from skyscan.reco.linefit import first_guess
    from skyscan.version import __version__

    iers_cache.install()

    folder = Path(outdir)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such scan directory")
    ef, geometry = load_event(event_path)
    config = _scan_config(folder)
    guess = first_guess(ef.event, geometry)
    ra, dec = local_to_equatorial(np.radians(guess.zenith_deg), np.radians(guess.azimuth_deg), ef.event.time)
    first = config.stages[0]
    batches = split_batches(all_pixels(first.nside), first.pixels_per_job)
    _write_batches(folder, 0, batches)
    doc = {
        "schema": PREPARE_SCHEMA,
        "run_id": ef.event.run_id,
        "event_id": ef.event.event_id,
        "time": ef.event.time_iso,
        "first_guess": {
            "zenith_deg": round(float(guess.zenith_deg), 6),
            "azimuth_deg": round(float(guess.azimuth_deg), 6),
            "ra_deg": round(float(np.degrees(ra)) % 360.0, 6),
            "dec_deg": round(float(np.degrees(dec)), 6),
        },
        "stage0": {"nside": first.nside, "npix": int(12 * first.nside**2), "batches": len(batches)},
        "software_version": __version__,
    }
    write_json(ScanLayout(folder).prepare_record, doc)
    return doc


@dataclass(frozen=True)
class Results:
    """Every pixel scanned so far (all stages, mixed nsides), NESTED."""

    nside: IntArray
    ipix: IntArray
    llh: npt.NDArray[np.float64]


def read_results(outdir: str | Path, below: int, config: ScanConfig) -> Results:
    """Every result of the stages before ``below``: each batch file must have its result file."""
    layout = ScanLayout.at(outdir)
    ns: list[IntArray] = []
    px: list[IntArray] = []
    lh: list[npt.NDArray[np.float64]] = []
    for stage in range(below):
        nside = config.stages[stage].nside
        batches = layout.list_batches(stage)
        if stage == 0 and not batches:
            raise SkyscanError(f"{layout.stage_dir(0)}: no batch files (has the prepare node run?)")
        for b in batches:
            expected = read_batch(layout.batch_file(stage, b))
            ipix, llh = read_planned_result(layout.result_file(stage, b), nside, expected)
            ns.append(np.full(ipix.size, nside, dtype=np.int64))
            px.append(ipix)
            lh.append(llh)
    if not px:
        empty = np.zeros(0, dtype=np.int64)
        return Results(empty, empty, np.zeros(0, dtype=np.float64))
    return Results(np.concatenate(ns), np.concatenate(px), np.concatenate(lh))


@dataclass(frozen=True)
class PlanOutcome:
    stage: int
    nside: int
    npix: int
    batches: int
    skipped: bool
    dag: Path | None


def _remove_rescue_files(folder: Path, stage: int) -> None:
    """Rescue DAGs of a stage's sub-DAG: they describe an earlier plan once the DAG changes."""
    for rescue in ScanLayout(folder).list_rescue_dags(stage):
        rescue.unlink()


def plan_stage(outdir: str | Path, stage: int) -> PlanOutcome:
    """`skyscan node plan`: choose stage ``stage``'s pixels from every result so far; write its batches and DAG.

    Safe to re-run: the same results give the same files. The sub-DAG's rescue files are deleted when the
    DAG changes (they describe another plan) and kept when it is unchanged (so a resubmitted scan resumes).
    """
    from skyscan.condor.dagwriter import dag_text

    folder = Path(outdir)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such scan directory")
    config = _scan_config(folder)
    if stage < 1 or stage >= len(config.stages):
        raise InputError(f"--stage: must be 1..{len(config.stages) - 1} for this configuration, got {stage}")
    spec = config.stages[stage]
    prev = config.stages[stage - 1]
    results = read_results(folder, stage, config)
    selection = select_stage(
        stage,
        results.nside,
        results.ipix,
        results.llh,
        prev_nside=prev.nside,
        nside=spec.nside,
        rule=config.rule,
        refine=spec.refine,
        threshold=config.threshold(config.adaptive.level),
        margin=config.adaptive.margin,
        max_refine=config.adaptive.max_refine,
    )
    dag_path = ScanLayout(folder).stage_dag(stage)
    old_text = dag_path.read_text(encoding="utf-8") if dag_path.is_file() else None
    batches = split_batches(selection.pixels, spec.pixels_per_job)
    _write_plan_record(folder, selection, config, len(batches))
    if not batches:
        _write_batches(folder, stage, [])
        _remove_rescue_files(folder, stage)
        if dag_path.exists():
            dag_path.unlink()
        return PlanOutcome(stage, spec.nside, 0, 0, skipped=True, dag=None)
    _write_batches(folder, stage, batches)
    wf = stage_workflow(config, stage, [int(b.size) for b in batches])
    text = dag_text(wf, _dag_header(f"skyscan stage {stage} sub-DAG (nside {spec.nside}), written by its PRE script"))
    if old_text != text:
        _remove_rescue_files(folder, stage)
        write_text(dag_path, text)
    return PlanOutcome(stage, spec.nside, int(selection.pixels.size), len(batches), skipped=False, dag=dag_path)


def _write_plan_record(folder: Path, sel: Selection, config: ScanConfig, batches: int) -> None:
    """stage<k>/plan.json: what was refined and why (no timestamp: identical on a re-run)."""
    ra, dec = sel.best.radec_deg()
    doc = {
        "schema": PLAN_SCHEMA,
        "stage": sel.stage,
        "nside": sel.nside,
        "rule": sel.rule,
        "best_fit": {
            "nside": sel.best.nside,
            "ipix": sel.best.ipix,
            "llh": sel.best.llh,
            "ra_deg": round(ra, 6),
            "dec_deg": round(dec, 6),
        },
        "refined": {"nside": sel.prev_nside, "ipix": [int(p) for p in sel.refined]},
        "npix": int(sel.pixels.size),
        "batches": batches,
        "skipped": batches == 0,
    }
    if config.rule == "adaptive":
        doc["contour"] = {
            "level": config.adaptive.level,
            "dllh2": config.threshold(config.adaptive.level),
            "margin": config.adaptive.margin,
        }
    layout = ScanLayout(folder)
    layout.stage_dir(sel.stage).mkdir(parents=True, exist_ok=True)
    write_json(layout.plan_record(sel.stage), doc)


def end_state(dag_status: int, failed_count: int) -> dict[str, Any]:
    state = "done" if dag_status == 0 and failed_count == 0 else "failed"
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "schema": END_STATE_SCHEMA,
        "state": state,
        "dag_status": dag_status,
        "failed_count": failed_count,
        "time": now,
    }


def write_end_state(outdir: str | Path, dag_status: int, failed_count: int) -> dict[str, Any]:
    """`skyscan node final`: record how the DAG ended (end_state.json)."""
    folder = Path(outdir)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such scan directory")
    doc = end_state(dag_status, failed_count)
    write_json(ScanLayout(folder).end_state, doc)
    return doc


def read_end_state(outdir: str | Path) -> dict[str, Any] | None:
    path = ScanLayout.at(outdir).end_state
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == END_STATE_SCHEMA else None
