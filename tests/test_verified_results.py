"""Verified results: a damaged finished batch result is redone on resume, never used and never blocking.

One scan of the fastest configuration the end-to-end tests use (TINY of tests/test_run_e2e.py, with no
refinement past its last stage) is run until its
stage 0 is finished and then stopped; copies of that directory get one damage each (a result truncated,
deleted, with ``complete`` unset, with its llh values overwritten in place) and are resumed with ``skyscan run``.
Each must redo exactly the damaged node (the DAG's local log and run state say which nodes ran) and end with
the products of the undamaged copy resumed the same way.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from skyscan.cli import cli
from skyscan.condor.schedd import submit_environment
from skyscan.graph.build import top_workflow, write_scan
from skyscan.graph.layout import RESULT_CHECK
from skyscan.graph.status import format_status, scan_status
from skyscan.local.events import BaseObserver, NodeEvent
from skyscan.local.executor import run_dag
from skyscan.local.verify import outputs_path, read_outputs
from skyscan.nodes.results import read_result, verify_result
from skyscan.reco.event import event_to_dict
from skyscan.reco.geometry import ic86
from skyscan.reco.simulate import TrackSpec, simulate_track
from skyscan.settings.scan import load_config
from skyscan.settings.site import load_site

WHEN = datetime(2026, 4, 2, 22, 10, 5, 250_000, tzinfo=timezone.utc)
TINY = """
scan:
  stages:
    - {nside: 2, pixels_per_job: 24}
    - {nside: 4, refine: 2, pixels_per_job: 4}
  resolve: {min_pixels: 0}
reco: {max_iterations: 20}
merge: {flat_nside: 4, plots: false}
"""
DAMAGED = "scan-s0-0001"
LOG = "skyscan.dag.local.log"
_NODE_DONE = re.compile(r"^\S+ (?:(\S+\.dag): )?node (\S+) done\b")


class _StopAtStage1(BaseObserver):
    """Stops the run as soon as the stage 1 node starts: stage 0 is finished, nothing after it is."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def node_changed(self, event: NodeEvent) -> None:
        if event.node == "stage1" and event.state in ("pre", "running"):
            self.stop.set()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("verified")
    spec = TrackSpec(zenith_deg=112.0, azimuth_deg=75.0, energy_gev=3e5, vertex=(30.0, 20.0, -40.0))
    event, truth = simulate_track(spec, ic86(), np.random.default_rng(31), run_id=900, event_id=42,
                                  event_time=WHEN, stream="gold")
    event_path = folder / "event.json"
    event_path.write_text(json.dumps(event_to_dict(event, truth)))
    config_path = folder / "tiny.yaml"
    config_path.write_text(TINY)
    return event_path, config_path


@pytest.fixture(scope="module")
def stage0_done(inputs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scan stopped right after its stage 0 finished (results written and verified, no merge)."""
    event, config_path = inputs
    site = load_site("local")
    paths = write_scan(event, tmp_path_factory.mktemp("base") / "scan", load_config(config_path), site)
    os.environ.update(submit_environment(site))
    stop = threading.Event()
    result = run_dag(paths.dag, jobs=2, observer=_StopAtStage1(stop), stop_event=stop, handle_signals=False)
    assert result.interrupted, result
    out = paths.outdir
    state = _runstate(out)
    assert all(state[f"scan-s0-{b:04d}"]["state"] == "done" for b in range(2))
    assert state["merge"]["state"] == "waiting" and not (out / "summary.json").exists()
    return out


def _runstate(out: Path, dag: str = "skyscan.dag") -> dict[str, Any]:
    nodes: dict[str, Any] = json.loads((out / f"{dag}.runstate.json").read_text())["nodes"]
    return nodes


def _copy(base: Path, tmp_path: Path) -> Path:
    target = tmp_path / "scan"
    shutil.copytree(base, target, symlinks=True)
    return target


def _resume(out: Path, inputs: tuple[Path, Path]) -> tuple[set[str], str]:
    """`skyscan run` on ``out``: (the nodes that ran to done in this run, the log lines it added)."""
    event, config_path = inputs
    log = out / LOG
    before = log.stat().st_size if log.exists() else 0
    result = CliRunner().invoke(cli, ["run", str(event), "-o", str(out), "--config", str(config_path),
                                      "--jobs", "2"])
    assert result.exit_code == 0, result.output
    added = log.read_text(encoding="utf-8")[before:]
    ran = set()
    for line in added.splitlines():
        m = _NODE_DONE.match(line)
        if m and m.group(1) is None:  # a node of this DAG, not of a sub-DAG
            ran.add(m.group(2))
    return ran, added


def _products(out: Path) -> dict[str, Any]:
    doc = json.loads((out / "summary.json").read_text())
    best = doc["best_fit"]
    areas = {k: v["area_deg2"] for k, v in doc["containment"].get("regions", doc["containment"]).items()
             if isinstance(v, dict) and "area_deg2" in v}
    return {"best_fit": (best["ra_deg"], best["dec_deg"], best["llh"]), "areas": areas,
            "pixels": doc["pixels"]}


@pytest.fixture(scope="module")
def reference(stage0_done: Path, inputs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, set[str], dict[str, Any]]:
    """The undamaged copy resumed: which nodes that run did, and its products."""
    out = _copy(stage0_done, tmp_path_factory.mktemp("reference"))
    ran, _ = _resume(out, inputs)
    return out, ran, _products(out)


def test_graph_declares_every_nodes_outputs(stage0_done: Path) -> None:
    declared = read_outputs(stage0_done / "skyscan.dag")
    assert declared is not None and outputs_path(stage0_done / "skyscan.dag").name == "skyscan.outputs.json"
    assert [o.path for o in declared.nodes[DAMAGED]] == ["stage0/scan-s0-0001.h5"]
    assert declared.nodes[DAMAGED][0].check == RESULT_CHECK
    assert [o.check for o in declared.nodes["stage1"]] == ["subdag"]
    assert {o.path for o in declared.nodes["prepare"]} == {"prepare.json", "stage0/batch-0000.txt",
                                                          "stage0/batch-0001.txt"}
    wf = top_workflow(load_config(stage0_done / "config.yaml"))
    assert set(declared.nodes) == {n.name for n in wf.all_nodes()}


def test_results_record_their_inputs_and_a_checksum(stage0_done: Path) -> None:
    path = stage0_done / "stage0" / f"{DAMAGED}.h5"
    assert verify_result(path) is None
    with h5py.File(path, "r") as f:
        attrs = dict(f.attrs)
    assert str(attrs["sha256"]).startswith("sha256:") and len(str(attrs["sha256"])) == 71
    assert str(attrs["event_digest"]).startswith("sha256:")
    assert str(attrs["pixels_digest"]).startswith("sha256:") and attrs["config_digest"]


def test_undamaged_resume_redoes_nothing_that_was_done(reference: tuple[Path, set[str], dict[str, Any]]) -> None:
    out, ran, products = reference
    assert ran == {"stage1", "merge", "final"}
    assert json.loads((out / "end_state.json").read_text())["state"] == "done"
    assert math.isfinite(products["best_fit"][2]) and set(products["areas"]) == {"50", "90"}


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _delete(path: Path) -> None:
    path.unlink()


def _unset_complete(path: Path) -> None:
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False


def _overwrite_llh(path: Path) -> None:
    with h5py.File(path, "a") as f:  # a better "best fit" than any real one, in place: the file stays "complete"
        llh = f["llh"][()]
        f["llh"][...] = np.full_like(llh, -1e6)


DAMAGES = {"truncated": _truncate, "deleted": _delete, "complete-unset": _unset_complete,
           "llh-overwritten": _overwrite_llh}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_result_is_redone_on_resume(damage: str, stage0_done: Path, inputs: tuple[Path, Path],
                                            reference: tuple[Path, set[str], dict[str, Any]],
                                            tmp_path: Path) -> None:
    _, reference_ran, reference_products = reference
    out = _copy(stage0_done, tmp_path)
    result_file = out / "stage0" / f"{DAMAGED}.h5"
    DAMAGES[damage](result_file)
    before = _runstate(out)
    # `skyscan status` does not count the damaged node done, names it, and stage 0 is not complete
    st = scan_status(out)
    assert st.stages[0].state != "done" and st.stages[0].nodes.done == 1
    assert list(st.damaged_nodes) == [DAMAGED]
    assert f"damaged output of {DAMAGED}: stage0/{DAMAGED}.h5" in format_status(st)

    ran, log = _resume(out, inputs)
    assert ran == reference_ran | {DAMAGED}  # exactly the damaged node among those done before
    assert f"{DAMAGED}: its output stage0/{DAMAGED}.h5:" in log
    assert log.count("running it again") == 1
    after = _runstate(out)
    assert after[DAMAGED]["started"] != before[DAMAGED]["started"]
    for name in ("prepare", "scan-s0-0000"):
        assert after[name]["started"] == before[name]["started"], f"{name} was redone"
    assert verify_result(result_file) is None
    assert _products(out) == reference_products
    assert scan_status(out).state == "done" and scan_status(out).damaged_nodes == {}


def test_damaged_result_of_a_finished_scan_is_redone_inside_its_stage(
    reference: tuple[Path, set[str], dict[str, Any]], inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    finished, _, products = reference
    out = _copy(finished, tmp_path)
    path = out / "stage1" / "scan-s1-0000.h5"
    _overwrite_llh(path)
    st = scan_status(out)
    assert st.stages[1].state != "done"
    assert set(st.damaged_nodes) == {"stage1", "scan-s1-0000"}
    stage_before = _runstate(out, "stage1.dag")
    summary_mtime = (out / "summary.json").stat().st_mtime_ns
    ran, log = _resume(out, inputs)
    assert ran == {"stage1", "final"}  # the stage node (its sub-DAG resumes) and FINAL, which reports again
    assert "stage1: its output stage1.dag: node scan-s1-0000 of stage1.dag: stage1/scan-s1-0000.h5:" in log
    stage_after = _runstate(out, "stage1.dag")
    redone = {n for n in stage_after if stage_after[n]["started"] != stage_before[n]["started"]}
    assert redone == {"scan-s1-0000"}
    assert verify_result(path) is None
    assert (out / "summary.json").stat().st_mtime_ns == summary_mtime  # the merge (of good data) stands
    assert _products(out) == products
    assert scan_status(out).state == "done"


def test_plan_refuses_a_damaged_result_naming_it(stage0_done: Path, tmp_path: Path) -> None:
    from skyscan.errors import SkyscanError
    from skyscan.nodes.plan import plan_stage

    out = _copy(stage0_done, tmp_path)
    _overwrite_llh(out / "stage0" / f"{DAMAGED}.h5")
    with pytest.raises(SkyscanError, match=rf"{DAMAGED}\.h5: result file fails verification \(checksum mismatch"):
        plan_stage(out, 1)


def test_verified_reader_refuses_other_inputs(stage0_done: Path, tmp_path: Path) -> None:
    from skyscan.errors import InputError

    out = _copy(stage0_done, tmp_path)
    path = out / "stage0" / f"{DAMAGED}.h5"
    with h5py.File(path, "a") as f:
        f.attrs["config_digest"] = "0123456789abcdef"  # the node's input changed after the fact
    assert "checksum mismatch" in (verify_result(path) or "")
    with pytest.raises(InputError, match="fails verification"):
        read_result(path, 900, 42)


def test_a_stopped_scan_shows_interrupted(stage0_done: Path) -> None:
    # stopped like Ctrl-C stops it (the stop request of run_dag): `skyscan status` says so, as campaigns do
    assert scan_status(stage0_done).state == "interrupted"
    result = CliRunner().invoke(cli, ["status", str(stage0_done)])
    assert result.exit_code == 0 and result.stdout.startswith(f"{stage0_done}: interrupted (backend local")


def test_writing_a_result_removes_what_a_killed_attempt_left(tmp_path: Path) -> None:
    from skyscan.atomic import part_files
    from skyscan.nodes.synthetic import write_result_file

    path = tmp_path / "stage0" / "scan-s0-0000.h5"
    path.parent.mkdir()
    stale = path.parent / ".scan-s0-0000.h5.abc123.part"  # a SIGKILL between writing and renaming
    other = path.parent / ".scan-s0-0001.h5.abc123.part"  # another node's: left alone
    stale.write_bytes(b"half")
    other.write_bytes(b"half")
    assert part_files(path) == [stale]
    write_result_file(path, 2, [0, 1, 2], [1.0, 2.0, 3.0], 900, 42)
    assert not stale.exists() and other.exists() and verify_result(path) is None
