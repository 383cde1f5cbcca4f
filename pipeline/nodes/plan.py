"""The PRE script of a later stage (``skyscan node plan``): choose its pixels, write its batches and sub-DAG.

Only once every earlier stage has run are the pixels to refine known, so stage k's sub-DAG is written here, at
run time, from every result so far (the choice itself is ``skyscan.graph.refine``'s; the sub-DAG is
``skyscan.graph.build.stage_workflow``). Safe to re-run: the same results give the same files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from skyscan.atomic import write_json, write_text
from skyscan.errors import InputError, SkyscanError
from skyscan.graph.build import dag_header, scan_config, stage_workflow
from skyscan.graph.layout import ScanLayout
from skyscan.graph.refine import Selection, select_stage, split_batches
from skyscan.nodes.results import read_batch, read_planned_result, write_stage_batches
from skyscan.settings.scan import ScanConfig

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
    text = dag_text(wf, dag_header(f"skyscan stage {stage} sub-DAG (nside {spec.nside}), written by its PRE script"))
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
