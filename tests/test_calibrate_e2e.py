"""`skyscan calibrate` end to end on a tiny real scan, then `skyscan merge --containment CALDIR/calibration.json`.

The scan is tiny (nside 4 -> 8, few iterations, no resolving stages) and the calibration has 4 pseudo-events in
2 batch nodes with the default systematics, so the whole module runs in well under a minute.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from skyscan.cli import cli
from skyscan.reco.event import event_to_dict
from skyscan.reco.geometry import ic86
from skyscan.reco.simulate import TrackSpec, simulate_track
from skyscan.settings.scan import ScanConfig

WHEN = datetime(2026, 4, 2, 22, 10, 5, tzinfo=timezone.utc)
PLAN = """
scan:
  stages:
    - {nside: 4, pixels_per_job: 192}
    - {nside: 8, refine: 2, pixels_per_job: 8}
RESOLVE
reco: {max_iterations: 20}
merge: {flat_nside: 8, plots: false}
"""


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("calscan")
    spec = TrackSpec(zenith_deg=112.0, azimuth_deg=75.0, energy_gev=3e5, vertex=(30.0, 20.0, -40.0))
    event, truth = simulate_track(spec, ic86(), np.random.default_rng(31), run_id=900, event_id=42, event_time=WHEN)
    (root / "event.json").write_text(json.dumps(event_to_dict(event, truth)))
    resolve = "  resolve: {min_pixels: 0}" if hasattr(ScanConfig, "resolve") else ""
    (root / "plan.yaml").write_text(PLAN.replace("RESOLVE", resolve))
    result = CliRunner().invoke(cli, ["run", str(root / "event.json"), "-o", str(root / "scan"), "--config",
                                      str(root / "plan.yaml")])  # fmt: skip
    assert result.exit_code == 0, result.output
    return root / "scan"


@pytest.fixture(scope="module")
def caldir(scan: Path) -> Path:
    out = scan.parent / "cal"
    result = CliRunner().invoke(cli, ["calibrate", str(scan), "-o", str(out), "--n", "4", "--batch-size", "2",
                                      "--seed", "5", "--systematics", "default", "--disc-deg", "20"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "calibrated run 900 event 42 with 4 pseudo-events" in result.stdout
    return out


def test_calibration_json_of_a_real_scan(caldir: Path, scan: Path) -> None:
    doc = json.loads((caldir / "calibration.json").read_text())
    assert doc["schema"] == "skyscan-calibration/1" and doc["n"] == 4
    assert doc["levels"]["90"] >= doc["levels"]["50"] >= 0.0
    assert (doc["source"]["run_id"], doc["source"]["event_id"]) == (900, 42)
    assert doc["systematics"].get("schema") == "skyscan-systematics/1"  # the default spreads were applied
    assert doc["seeds"]["seed"] == 5 and doc["disc"]["radius_deg"] == 20.0
    assert doc["disc"]["stages"] == [{"nside": 4, "refine": None}, {"nside": 8, "refine": 2}]
    events = doc["pseudo_events"]
    assert [e["index"] for e in events] == [0, 1, 2, 3]
    assert all(e["pixels"] > 0 and e["cpu_seconds"] > 0 for e in events)
    assert len({e["total_charge"] for e in events}) == 4  # each pseudo-event is its own simulation
    summary = json.loads((scan / "summary.json").read_text())
    src = doc["source"]["best_fit"]
    assert src["ra_deg"] == pytest.approx(summary["best_fit"]["ra_deg"], abs=1e-6)
    # the graph: one node per batch and collect, run by the local executor
    dag = (caldir / "calibration.dag").read_text()
    assert "JOB batch-0000" in dag and "JOB batch-0001" in dag and "JOB collect" in dag
    assert sorted(p.name for p in (caldir / "batches").iterdir()) == ["batch-0000.json", "batch-0001.json"]


def test_rerun_resumes_and_another_request_is_refused(caldir: Path, scan: Path) -> None:
    batch = caldir / "batches" / "batch-0000.json"
    before = batch.stat().st_mtime_ns
    args = ["calibrate", str(scan), "-o", str(caldir), "--n", "4", "--batch-size", "2", "--seed", "5",
            "--disc-deg", "20"]  # fmt: skip
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert batch.stat().st_mtime_ns == before  # nothing recomputed
    other = CliRunner().invoke(cli, [*args[:-4], "--seed", "6", "--disc-deg", "20"])
    assert other.exit_code == 2
    assert len(other.stderr.splitlines()) == 1 and "different calibration" in other.stderr


def test_merge_with_the_calibration_changes_and_records_the_regions(caldir: Path, scan: Path, tmp_path: Path) -> None:
    import shutil

    work = tmp_path / "scan"
    shutil.copytree(scan, work)
    cal = caldir / "calibration.json"
    levels = json.loads(cal.read_text())["levels"]
    before = json.loads((work / "summary.json").read_text())["containment"]
    result = CliRunner().invoke(cli, ["merge", str(work), "--containment", str(cal), "--no-plots"])
    assert result.exit_code == 0, result.output
    after = json.loads((work / "summary.json").read_text())["containment"]
    assert after["method"].startswith("resimulation (calibration.json, N=4, sha256 ")
    assert before["method"] == "wilks"
    for label in ("50", "90"):
        assert after[label]["level_2dllh"] == pytest.approx(levels[label])
        assert after[label]["level_2dllh"] != before[label]["level_2dllh"]
    with fits.open(work / "skymap.multiorder.fits") as hdul:
        assert "resimulation" in str(hdul[1].header["CONTMETH"])
    # the circular's draft note about uncalibrated levels is gone (it is there for the Wilks levels)
    assert "containment levels are 'wilks'" in (scan / "circular.txt").read_text()
    assert "containment levels are" not in (work / "circular.txt").read_text()


def test_mismatched_or_bad_calibration_is_one_line_exit_2(caldir: Path, scan: Path, tmp_path: Path) -> None:
    doc = json.loads((caldir / "calibration.json").read_text())
    doc["source"]["event_id"] = 43
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "skyscan-calibration/1", "levels": {"50": 1}}')
    for path, words in ((other, "not of this scan's run 900 event 42"), (bad, "levels")):
        result = CliRunner().invoke(cli, ["merge", str(scan), "--containment", str(path), "--no-plots"])
        assert result.exit_code == 2, result.output
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("skyscan: error: ") and words in lines[0], lines
        assert "Traceback" not in result.output


def test_calibrate_bad_inputs(tmp_path: Path) -> None:
    for args, words in (
        (["calibrate", str(tmp_path / "none")], "no such scan directory"),
        (["calibrate"], "missing SCANDIR"),
        (["calibrate", str(tmp_path), "--campaign", str(tmp_path)], "not both"),
    ):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
        assert len(result.stderr.splitlines()) == 1 and words in result.stderr, result.stderr
