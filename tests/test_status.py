"""`skyscan status` on hand-made run-state files (local executor) and DAGMan node status files (HTCondor)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from skyscan.cli.graph import status as status_command
from skyscan.condor import dagwriter as condor
from skyscan.dagman.nodestatus import parse_jobstate_log, parse_node_status
from skyscan.graph import build as scangraph
from skyscan.graph.status import format_status, scan_status
from skyscan.nodes.final import write_end_state
from skyscan.nodes.synthetic import write_result_file
from skyscan.settings.scan import ScanConfig, load_config
from skyscan.settings.site import load_site

# The tests pin 64-pixel jobs (the golden files and the node counts below assume it), whatever the
# shipped default of pixels_per_job is.
_STAGES_64 = [
    {"nside": 8, "pixels_per_job": 64},
    {"nside": 64, "refine": 12, "pixels_per_job": 64},
    {"nside": 512, "refine": 24, "pixels_per_job": 64},
]


def _config() -> ScanConfig:
    return load_config(None, {"scan": {"stages": _STAGES_64}})

EVENT: dict[str, Any] = {
    "schema": "skyscan-event/1",
    "run_id": 7,
    "event_id": 8,
    "time": "2026-01-02T03:04:05Z",
    "pulses": {"string": [35, 36, 44], "om": [20, 24, 28], "time": [10000.0, 10200.0, 10400.0],
               "charge": [1.0, 2.0, 1.5]},
}
STAGE1_SIZES = [64] * 11 + [10]  # 714 pixels at nside 64 in 12 jobs
ISO = "2026-01-02T03:05:00Z"


@pytest.fixture
def scan_dir(tmp_path: Path) -> Path:
    """A written scan (default configuration) whose stage 1 has been planned."""
    event = tmp_path / "event.json"
    event.write_text(json.dumps(EVENT), encoding="utf-8")
    out = tmp_path / "scan"
    config = _config()
    scangraph.write_scan(event, out, config, load_site("local"), python="python3")
    condor.write_dag(scangraph.stage_workflow(config, 1, STAGE1_SIZES), out / "stage1.dag")
    _write_outputs(out)
    return out


def _write_outputs(out: Path) -> None:
    """What the nodes would have written (the local backend checks the outputs of nodes marked done)."""
    (out / "prepare.json").write_text("{}\n", encoding="utf-8")
    for b in range(12):
        (out / "stage0").mkdir(exist_ok=True)
        pixels = range(64 * b, 64 * (b + 1))
        (out / "stage0" / f"batch-{b:04d}.txt").write_text("".join(f"{p}\n" for p in pixels), encoding="utf-8")
        write_result_file(out / "stage0" / f"scan-s0-{b:04d}.h5", 8, list(pixels), [1.0] * 64, 7, 8)
    for b, size in enumerate(STAGE1_SIZES):
        write_result_file(out / "stage1" / f"scan-s1-{b:04d}.h5", 64, list(range(size)), [1.0] * size, 7, 8)
    (out / "summary.json").write_text("{}\n", encoding="utf-8")


def node(state: str, subdag: str | None = None) -> dict[str, Any]:
    return {"state": state, "attempts": 1, "return_code": 0 if state == "done" else None, "started": ISO,
            "finished": ISO if state in ("done", "failed", "skipped") else None, "vars": {}, "subdag": subdag,
            "error": None}


def runstate(dag: str, nodes: dict[str, str], pid: int, finished: bool = False, dag_status: int | None = None) -> dict[str, Any]:
    return {"schema": "skyscan-runstate/1", "dag": dag, "pid": pid, "started": ISO, "updated": ISO,
            "finished": ISO if finished else None, "dag_status": dag_status,
            "nodes": {name: node(state, f"{name}.dag" if name.startswith("stage") else None)
                      for name, state in nodes.items()}}


def top_nodes(stage1: str, stage2: str = "waiting", merge: str = "waiting", final: str = "waiting",
              stage0: str = "done") -> dict[str, str]:
    nodes = {"prepare": "done", **{f"scan-s0-{b:04d}": stage0 for b in range(12)}}
    nodes.update({"stage1": stage1, "stage2": stage2, "merge": merge, "final": final})
    return nodes


STAGE1_STATES = ["done"] * 5 + ["running", "pre", "failed"] + ["waiting"] * 4


def stage1_nodes() -> dict[str, str]:
    return {f"scan-s1-{b:04d}": s for b, s in enumerate(STAGE1_STATES)}


def expected_pixels(states: list[str], buckets: dict[str, str]) -> dict[str, int]:
    out = {"done": 0, "running": 0, "failed": 0, "waiting": 0}
    for size, state in zip(STAGE1_SIZES, states, strict=True):
        out[buckets[state]] += size
    return out


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc), encoding="utf-8")


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_not_started(scan_dir: Path) -> None:
    st = scan_status(scan_dir).as_json()
    assert st["schema"] == "skyscan-status/1" and st["backend"] == "unknown" and st["state"] == "not-started"
    assert [(s["stage"], s["nside"], s["state"]) for s in st["stages"]] == [(0, 8, "waiting"), (1, 64, "waiting"),
                                                                          (2, 512, "waiting")]
    assert st["stages"][0]["nodes"] == {"done": 0, "running": 0, "failed": 0, "waiting": 12}
    assert st["stages"][0]["pixels"]["waiting"] == 768
    assert st["failed_nodes"] == [] and st["end_state"] is None


def test_local_running(scan_dir: Path) -> None:
    write_json(scan_dir / "skyscan.dag.runstate.json", runstate("skyscan.dag", top_nodes("running"), os.getpid()))
    write_json(scan_dir / "stage1.dag.runstate.json", runstate("stage1.dag", stage1_nodes(), os.getpid()))
    st = scan_status(scan_dir).as_json()
    assert (st["backend"], st["state"]) == ("local", "running")
    s0, s1, s2 = st["stages"]
    assert s0["state"] == "done" and s0["nodes"]["done"] == 12 and s0["pixels"] == {
        "done": 768, "running": 0, "failed": 0, "waiting": 0}
    assert s1["state"] == "failed"  # a node of stage 1 has failed for good
    assert s1["nodes"] == {"done": 5, "running": 2, "failed": 1, "waiting": 4}
    buckets = {"done": "done", "running": "running", "pre": "running", "failed": "failed", "waiting": "waiting"}
    assert s1["pixels"] == expected_pixels(STAGE1_STATES, buckets)
    assert s2["state"] == "waiting" and s2["nodes"]["waiting"] == 0  # not planned yet: no nodes known
    assert st["failed_nodes"] == ["scan-s1-0007"]
    assert st["end_state"] is None
    assert st["updated"].endswith("Z")


def test_local_finished_failed_and_interrupted(scan_dir: Path) -> None:
    write_json(scan_dir / "skyscan.dag.runstate.json",
               runstate("skyscan.dag", top_nodes("failed", final="failed"), dead_pid(), finished=True, dag_status=1))
    write_json(scan_dir / "stage1.dag.runstate.json",
               runstate("stage1.dag", stage1_nodes(), dead_pid(), finished=True, dag_status=1))
    write_end_state(scan_dir, 1, 2)
    st = scan_status(scan_dir).as_json()
    assert st["state"] == "failed"
    assert st["failed_nodes"] == ["stage1", "final", "scan-s1-0007"]
    assert st["end_state"]["state"] == "failed" and st["end_state"]["failed_count"] == 2
    # The executor died without finishing and without an end state: not running, so interrupted (a rerun resumes).
    (scan_dir / "end_state.json").unlink()
    write_json(scan_dir / "skyscan.dag.runstate.json", runstate("skyscan.dag", top_nodes("running"), dead_pid()))
    assert scan_status(scan_dir).state == "interrupted"


def test_local_done_with_a_skipped_stage(scan_dir: Path) -> None:
    stage1 = {f"scan-s1-{b:04d}": "done" for b in range(12)}
    write_json(scan_dir / "skyscan.dag.runstate.json", runstate(
        "skyscan.dag", top_nodes("done", stage2="skipped", merge="done", final="done"), dead_pid(), True, 0))
    write_json(scan_dir / "stage1.dag.runstate.json", runstate("stage1.dag", stage1, dead_pid(), True, 0))
    (scan_dir / "stage2").mkdir()
    write_json(scan_dir / "stage2" / "plan.json", {"schema": "skyscan-plan/1", "skipped": True})
    write_end_state(scan_dir, 0, 0)
    st = scan_status(scan_dir)
    assert st.state == "done"
    assert [s.state for s in st.stages] == ["done", "done", "skipped"]
    assert st.stages[1].pixels.done == sum(STAGE1_SIZES)
    text = format_status(st)
    assert "end state: done" in text and "failed nodes: none" in text


NODE_STATUS = """[
  Type = "DagStatus";
  DagFiles = {
    "{dag}"
  };
  Timestamp = 1767323100; /* "Fri Jan  2 03:05:00 2026" */
  DagStatus = 3; /* "DAG_STATUS_SUBMITTED ()" */
  NodesTotal = {total};
]
{nodes}[
  Type = "StatusEnd";
  EndTime = 1767323100; /* "Fri Jan  2 03:05:00 2026" */
  NextUpdate = 1767323130; /* "Fri Jan  2 03:05:30 2026" */
]
"""
CODE_NAMES = {0: "STATUS_NOT_READY", 1: "STATUS_READY", 2: "STATUS_PRERUN", 3: "STATUS_SUBMITTED",
              4: "STATUS_POSTRUN", 5: "STATUS_DONE", 6: "STATUS_ERROR", 7: "STATUS_FUTILE"}


def node_status_file(dag: str, codes: dict[str, int]) -> str:
    ads = "".join(
        f'[\n  Type = "NodeStatus";\n  Node = "{name}";\n  NodeStatus = {code}; /* "{CODE_NAMES[code]}" */\n'
        f'  StatusDetails = "";\n  RetryCount = 0;\n  JobProcsQueued = 0;\n  JobProcsHeld = 0;\n]\n'
        for name, code in codes.items()
    )
    return NODE_STATUS.replace("{dag}", dag).replace("{total}", str(len(codes))).replace("{nodes}", ads)


STAGE1_CODES = [5, 5, 5, 5, 3, 2, 6, 7, 1, 1, 0, 4]


def write_condor_files(scan_dir: Path) -> None:
    top = {"prepare": 5, **{f"scan-s0-{b:04d}": 5 for b in range(12)}, "stage1": 3, "stage2": 0, "merge": 0,
           "final": 0}
    (scan_dir / "skyscan.dag.status").write_text(node_status_file("skyscan.dag", top), encoding="utf-8")
    stage1 = {f"scan-s1-{b:04d}": code for b, code in enumerate(STAGE1_CODES)}
    (scan_dir / "stage1.dag.status").write_text(node_status_file("stage1.dag", stage1), encoding="utf-8")
    (scan_dir / "skyscan.dag.jobstate.log").write_text(
        "1767323000 INTERNAL *** DAGMAN_STARTED 48.0 ***\n1767323010 prepare PRE_SCRIPT_STARTED - local - 1\n"
        "1767323020 prepare SUBMIT 49.0 local - 1\n", encoding="utf-8")


def test_condor_running(scan_dir: Path) -> None:
    write_condor_files(scan_dir)
    st = scan_status(scan_dir).as_json()
    assert (st["backend"], st["state"]) == ("condor", "running")
    s0, s1, s2 = st["stages"]
    assert s0["nodes"]["done"] == 12 and s0["pixels"]["done"] == 768
    assert s1["nodes"] == {"done": 4, "running": 3, "failed": 1, "waiting": 4}
    buckets = {"5": "done", "3": "running", "2": "running", "4": "running", "6": "failed", "7": "waiting",
               "1": "waiting", "0": "waiting"}
    assert s1["pixels"] == expected_pixels([str(c) for c in STAGE1_CODES], buckets)
    assert s2["state"] == "waiting"
    assert st["failed_nodes"] == ["scan-s1-0006"]


def test_condor_finished_then_resumed(scan_dir: Path) -> None:
    write_condor_files(scan_dir)
    log = scan_dir / "skyscan.dag.jobstate.log"
    log.write_text(log.read_text(encoding="utf-8") + "1767323500 INTERNAL *** DAGMAN_FINISHED 1 ***\n",
                   encoding="utf-8")
    assert scan_status(scan_dir).state == "failed"  # finished with status 1, no end state (yet)
    write_end_state(scan_dir, 2, 1)
    assert scan_status(scan_dir).state == "failed"
    # Resubmitted: DAGMan runs the rescue DAG; the old end state does not count while it runs.
    log.write_text(log.read_text(encoding="utf-8") + "1767324000 INTERNAL *** DAGMAN_STARTED 50.0 ***\n",
                   encoding="utf-8")
    assert scan_status(scan_dir).state == "running"


def test_parsers_tolerate_json_and_truncation() -> None:
    text = node_status_file("x.dag", {"a": 5, "b": 6})
    dag_ad, nodes = parse_node_status(text)
    assert nodes == {"a": 5, "b": 6} and dag_ad is not None and dag_ad["DagFiles"] == ["x.dag"]
    cut = text[: text.index('Node = "b"')]
    assert parse_node_status(cut)[1] == {"a": 5}
    json_lines = '{"MyType": "NodeStatus", "Node": "a", "NodeStatus": 3}\n{"Type": "NodeStatus", "Node": "b", "NodeStatus": 5}\n'
    assert parse_node_status(json_lines)[1] == {"a": 3, "b": 5}
    assert parse_node_status("[" + json_lines.replace("\n", ",", 1).rstrip() + "]")[1] == {"a": 3, "b": 5}
    assert parse_jobstate_log("garbage\n5 INTERNAL *** DAGMAN_STARTED 1.0 ***\n9 INTERNAL *** DAGMAN_FINISHED 0 ***\n") \
        == (5, 9, 0)


def test_human_table_is_aligned(scan_dir: Path) -> None:
    write_condor_files(scan_dir)
    lines = format_status(scan_status(scan_dir)).splitlines()
    table = lines[1:5]
    assert table[0].split() == ["stage", "nside", "state", "nodes", "done", "run", "fail", "wait", "pixels", "done",
                                "run", "fail", "wait"]
    assert len({len(line) for line in table}) == 1
    assert table[2].split()[:7] == ["1", "64", "failed", "4", "3", "1", "4"]
    assert lines[5] == "failed nodes: scan-s1-0006"


def test_status_command(scan_dir: Path) -> None:
    group = click.Group("skyscan")
    group.add_command(status_command)
    write_condor_files(scan_dir)
    result = CliRunner().invoke(group, ["status", str(scan_dir), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"schema", "outdir", "backend", "state", "stages", "failed_nodes", "end_state", "updated",
                        "damaged_nodes"}
    assert all(set(s) >= {"stage", "nside", "nodes", "pixels"} for s in doc["stages"])
    human = CliRunner().invoke(group, ["status", str(scan_dir)])
    assert human.exit_code == 0 and "backend condor" in human.stdout


def test_local_interrupted_by_ctrl_c(scan_dir: Path) -> None:
    # what the executor writes after Ctrl-C/SIGTERM: finished, interrupted, no DAG status, no FINAL
    doc = runstate("skyscan.dag", top_nodes("waiting"), os.getpid(), finished=True, dag_status=None)
    doc["interrupted"] = True
    write_json(scan_dir / "skyscan.dag.runstate.json", doc)
    st = scan_status(scan_dir)
    assert st.state == "interrupted"
    assert format_status(st).splitlines()[0].startswith(f"{scan_dir}: interrupted (backend local")
    group = click.Group("skyscan")
    group.add_command(status_command)
    result = CliRunner().invoke(group, ["status", str(scan_dir), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["state"] == "interrupted"
    # an end state of an earlier attempt does not hide the interruption of the later one
    write_end_state(scan_dir, 1, 1)
    assert scan_status(scan_dir).state == "interrupted"
    # the same run finished normally is not interrupted
    doc.update(interrupted=False, dag_status=1)
    write_json(scan_dir / "skyscan.dag.runstate.json", doc)
    assert scan_status(scan_dir).state == "failed"


def test_a_damaged_result_is_not_counted_done(scan_dir: Path) -> None:
    import h5py

    write_json(scan_dir / "skyscan.dag.runstate.json", runstate("skyscan.dag", top_nodes("waiting"), dead_pid()))
    assert scan_status(scan_dir).stages[0].state == "done"
    with h5py.File(scan_dir / "stage0" / "scan-s0-0003.h5", "a") as f:
        f["llh"][0] = 0.0  # overwritten in place
    (scan_dir / "stage0" / "scan-s0-0007.h5").unlink()
    st = scan_status(scan_dir)
    s0 = st.stages[0]
    assert s0.state == "running" and s0.nodes.done == 10 and s0.nodes.waiting == 2 and s0.pixels.waiting == 128
    assert set(st.damaged_nodes) == {"scan-s0-0003", "scan-s0-0007"}
    assert "checksum mismatch" in st.damaged_nodes["scan-s0-0003"]
    assert st.damaged_nodes["scan-s0-0007"] == "stage0/scan-s0-0007.h5: missing"
    assert st.as_json()["damaged_nodes"] == st.damaged_nodes
    assert "damaged output of scan-s0-0007: stage0/scan-s0-0007.h5: missing" in format_status(st)
