"""The PRE script of a later stage (``skyscan node plan``): choose its pixels, write its batches and sub-DAG.

Only once every earlier stage has run are the pixels to refine known, so stage k's sub-DAG is written here, at
run time, from every result so far (the choice itself is ``skyscan.graph.refine``'s; the sub-DAG is
``skyscan.graph.build.stage_workflow``). Safe to re-run: the same results give the same files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from skyscan.atomic import write_json, write_text
from skyscan.errors import InputError, SkyscanError
from skyscan.graph.build import (
    PRE_SKIP_CODE,
    WRAPPER_CALL,
    dag_header,
    scan_config,
    stage_workflow,
    write_declared_outputs,
)
from skyscan.graph.layout import ScanLayout, stage_dag_name, stage_node_name
from skyscan.graph.refine import (
    Resolution,
    Selection,
    region_resolution,
    resolve_nside,
    resolve_refine_cap,
    select_resolve_stage,
    select_stage,
    split_batches,
)
from skyscan.nodes.results import read_batch, read_planned_result, write_stage_batches
from skyscan.settings.scan import ScanConfig, Stage
from skyscan.workflow import Script, Workflow

PLAN_SCHEMA = "skyscan-plan/1"

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Results:
    """Every pixel scanned so far (all stages, mixed nsides), NESTED."""

    nside: IntArray
    ipix: IntArray
    llh: npt.NDArray[np.float64]


def read_results(outdir: str | os.PathLike[str], below: int, config: ScanConfig) -> Results:
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
    """What ``plan_stage`` decided: ``skipped`` when nothing is left to refine (then no sub-DAG, ``dag`` None)."""

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


def plan_stage(outdir: str | os.PathLike[str], stage: int) -> PlanOutcome:
    """`skyscan node plan`: choose stage ``stage``'s pixels from every result so far; write its batches and DAG.

    Safe to re-run: the same results give the same files. The sub-DAG's rescue files are deleted when the
    DAG changes (they describe another plan) and kept when it is unchanged (so a resubmitted scan resumes).
    """
    from skyscan.condor.dagwriter import dag_text

    folder = Path(outdir)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such scan directory")
    config = scan_config(folder)
    if stage >= 1 and stage >= len(config.stages):
        return _plan_resolve_stage(folder, config, stage)
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
        write_stage_batches(folder, stage, [])
        _remove_rescue_files(folder, stage)
        if dag_path.exists():
            dag_path.unlink()
        return PlanOutcome(stage, spec.nside, 0, 0, skipped=True, dag=None)
    write_stage_batches(folder, stage, batches)
    wf = stage_workflow(config, stage, [int(b.size) for b in batches])
    if stage == len(config.stages) - 1:
        _add_resolve_node(wf, config, stage)
    text = dag_text(wf, dag_header(f"skyscan stage {stage} sub-DAG (nside {spec.nside}), written by its PRE script"))
    if old_text != text:
        _remove_rescue_files(folder, stage)
        write_text(dag_path, text)
    write_declared_outputs(wf, dag_path)
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


# ---------------------------------------------------------------------------------------------------------------
# Resolving stages: refinement past the last configured stage while the region is unresolved (docs/graph.md)
# ---------------------------------------------------------------------------------------------------------------
def _add_resolve_node(wf: Workflow, config: ScanConfig, stage: int) -> None:
    """Append the next resolving stage to the sub-DAG of ``stage`` (the last configured or a resolving stage).

    Its nside depends on the results of ``stage``, so, like every later stage, it is a SUBDAG EXTERNAL node whose
    PRE script (``plan . --stage k+1``) writes it, or exits with PRE_SKIP when the region is resolved. Nothing is
    added when resolving is off (``scan.resolve.min_pixels`` 0) or ``stage`` already reached ``max_nside``; the
    top-level DAG never changes.
    """
    resolve = config.resolve
    if resolve.min_pixels == 0 or config.stages[stage].nside >= resolve.max_nside:
        return
    scans = list(wf.nodes)
    nxt = stage + 1
    wf.add_subdag(
        stage_node_name(nxt),
        stage_dag_name(nxt),
        pre=Script(WRAPPER_CALL, ("plan", ".", "--stage", str(nxt))),
        pre_skip=PRE_SKIP_CODE,
    )
    for name in scans:
        wf.add_edge(name, stage_node_name(nxt))


def _read_plan_record(folder: Path, stage: int) -> dict[str, object]:
    path = ScanLayout(folder).plan_record(stage)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SkyscanError(f"{path}: cannot read the plan of resolving stage {stage} ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise SkyscanError(f"{path}: not a plan record")
    return doc


def with_resolve_stages(folder: Path, config: ScanConfig, below: int) -> ScanConfig:
    """``config`` with the resolving stages before ``below`` appended, their nsides read from their plan records
    (a resolving stage's nside is chosen at run time, so only its plan knows it). Stage k is ``stages[k]``."""
    stages = list(config.stages)
    last = config.stages[-1]
    for k in range(len(config.stages), below):
        doc = _read_plan_record(folder, k)
        nside = doc.get("nside")
        where = ScanLayout(folder).plan_record(k)
        if doc.get("rule") != "resolve" or doc.get("skipped") or not isinstance(nside, int):
            raise SkyscanError(f"{where}: stage {k} is not a resolving stage that was scanned")
        if nside <= stages[-1].nside:
            raise SkyscanError(f"{where}: nside {nside} does not refine nside {stages[-1].nside}")
        stages.append(Stage(index=k, nside=nside, pixels_per_job=last.pixels_per_job))
    return replace(config, stages=tuple(stages))


def _plan_resolve_stage(folder: Path, config: ScanConfig, stage: int) -> PlanOutcome:
    """Plan resolving stage ``stage`` (after the configured ones): skip it when the ``scan.adaptive.level``
    region holds ``scan.resolve.min_pixels`` finest pixels or ``max_nside`` is reached, else refine around it."""
    from skyscan.condor.dagwriter import dag_text

    resolve = config.resolve
    last = config.stages[-1]
    if resolve.min_pixels == 0 or last.nside >= resolve.max_nside:
        raise InputError(
            f"--stage: must be 1..{len(config.stages) - 1} for this configuration (no resolving stages: "
            f"scan.resolve.min_pixels {resolve.min_pixels}, max_nside {resolve.max_nside}), got {stage}"
        )
    prev_record = ScanLayout(folder).plan_record(stage - 1)
    if not prev_record.is_file() or _read_plan_record(folder, stage - 1).get("skipped"):
        raise InputError(
            f"--stage: must be 1..{len(config.stages) - 1} for this configuration, or a resolving stage that "
            f"follows a scanned stage; stage {stage - 1} has not been planned or was skipped, got {stage}"
        )
    extended = with_resolve_stages(folder, config, stage)
    results = read_results(folder, stage, extended)
    threshold = config.threshold(config.adaptive.level)
    resolution = region_resolution(results.nside, results.ipix, results.llh, threshold, resolve.min_pixels)
    nside = resolve_nside(resolution, resolve.max_nside)
    layout = ScanLayout(folder)
    dag_path = layout.stage_dag(stage)
    selection: Selection | None = None
    if nside is not None:
        selection = select_resolve_stage(
            stage, results.nside, results.ipix, results.llh, nside, threshold, config.adaptive.margin,
            resolve_refine_cap(config.adaptive.max_refine, resolve.min_pixels),
        )
    if selection is None or selection.pixels.size == 0:
        write_stage_batches(folder, stage, [])
        _remove_rescue_files(folder, stage)
        if dag_path.exists():
            dag_path.unlink()
        _write_resolve_record(folder, config, stage, resolution, None, 0)
        return PlanOutcome(stage, resolution.nside, 0, 0, skipped=True, dag=None)
    old_text = dag_path.read_text(encoding="utf-8") if dag_path.is_file() else None
    batches = split_batches(selection.pixels, last.pixels_per_job)
    _write_resolve_record(folder, config, stage, resolution, selection, len(batches))
    write_stage_batches(folder, stage, batches)
    planned = replace(extended, stages=(*extended.stages, Stage(stage, selection.nside, last.pixels_per_job)))
    wf = stage_workflow(planned, stage, [int(b.size) for b in batches])
    _add_resolve_node(wf, planned, stage)
    title = f"skyscan stage {stage} sub-DAG (nside {selection.nside}, resolving the region), written by its PRE script"
    text = dag_text(wf, dag_header(title))
    if old_text != text:
        _remove_rescue_files(folder, stage)
        write_text(dag_path, text)
    write_declared_outputs(wf, dag_path)
    return PlanOutcome(stage, selection.nside, int(selection.pixels.size), len(batches), skipped=False, dag=dag_path)


def _write_resolve_record(
    folder: Path, config: ScanConfig, stage: int, res: Resolution, sel: Selection | None, batches: int
) -> None:
    """stage<k>/plan.json of a resolving stage: the region's resolution that decided it, and what was refined.

    ``resolve.resolved`` is the state before this stage: true (skipped: nothing to do), or false (refined, or
    skipped because ``max_nside`` is reached: the region stays unresolved and the products say so)."""
    doc: dict[str, object] = {
        "schema": PLAN_SCHEMA,
        "stage": stage,
        "nside": sel.nside if sel is not None else res.nside,
        "rule": "resolve",
        "resolve": {
            "level": config.adaptive.level,
            "dllh2": res.threshold,
            "min_pixels": res.min_pixels,
            "max_nside": config.resolve.max_nside,
            "finest_nside": res.nside,
            "pixels": res.pixels,
            "resolved": res.resolved,
        },
    }
    if sel is not None:
        ra, dec = sel.best.radec_deg()
        doc["best_fit"] = {
            "nside": sel.best.nside,
            "ipix": sel.best.ipix,
            "llh": sel.best.llh,
            "ra_deg": round(ra, 6),
            "dec_deg": round(dec, 6),
        }
        doc["refined"] = {"nside": sel.prev_nside, "ipix": [int(p) for p in sel.refined]}
        doc["margin"] = config.adaptive.margin
    doc["npix"] = 0 if sel is None else int(sel.pixels.size)
    doc["batches"] = batches
    doc["skipped"] = batches == 0
    layout = ScanLayout(folder)
    layout.stage_dir(stage).mkdir(parents=True, exist_ok=True)
    write_json(layout.plan_record(stage), doc)
