"""`skyscan run` end to end: the real graph, real scan nodes, the local executor, the merge products.

Also failure injection (a node failing once, a node failing always) and a killed-then-resumed run.
The configurations are small (nside 8 -> 16 -> 32 or less) so each run takes seconds.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import h5py
import healpy as hp
import numpy as np
import pytest
from click.testing import CliRunner

from skyscan.cli import cli
from skyscan.graph.build import write_scan
from skyscan.graph.status import scan_status
from skyscan.local.executor import run_dag
from skyscan.products.hdf5 import read_skymap_h5
from skyscan.reco import coords
from skyscan.reco.event import event_to_dict
from skyscan.reco.geometry import ic86
from skyscan.reco.simulate import TrackSpec, simulate_track
from skyscan.settings.scan import load_config
from skyscan.settings.site import load_site

WHEN = datetime(2026, 4, 2, 22, 10, 5, 250_000, tzinfo=timezone.utc)

FAST = """
scan:
  stages:
    - {nside: 8, pixels_per_job: 256}
    - {nside: 16, refine: 4, pixels_per_job: 64}
    - {nside: 32, refine: 4, pixels_per_job: 64}
    - {nside: 128, refine: 4, pixels_per_job: 64}
  resolve: {min_pixels: 0}  # the configured stages only (resolving: tests/test_resolved_regions.py)
reco: {max_iterations: 60}
merge: {flat_nside: 32}
"""

RESUME = """
scan:
  stages:
    - {nside: 4, pixels_per_job: 32}
    - {nside: 8, refine: 2, pixels_per_job: 8}
  resolve: {min_pixels: 0}
reco: {max_iterations: 30}
merge: {flat_nside: 8, plots: false}
"""

TINY = """
scan:
  stages:
    - {nside: 2, pixels_per_job: 24}
    - {nside: 4, refine: 2, pixels_per_job: 4}
  resolve: {min_pixels: 0}
reco: {max_iterations: 20}
merge: {flat_nside: 4, plots: false}
"""


@pytest.fixture(scope="module")
def event_and_truth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, float]:
    spec = TrackSpec(zenith_deg=112.0, azimuth_deg=75.0, energy_gev=3e5, vertex=(30.0, 20.0, -40.0))
    event, truth = simulate_track(spec, ic86(), np.random.default_rng(31), run_id=900, event_id=42, event_time=WHEN, stream="gold")
    path = tmp_path_factory.mktemp("e2e") / "event.json"
    path.write_text(json.dumps(event_to_dict(event, truth)))
    ra, dec = coords.local_to_equatorial(math.radians(truth.zenith_deg), math.radians(truth.azimuth_deg), WHEN)
    return path, math.degrees(float(ra)), math.degrees(float(dec))


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return path


def test_run_produces_every_stage_and_product(event_and_truth: tuple[Path, float, float], tmp_path: Path) -> None:
    event, ra_true, dec_true = event_and_truth
    out = tmp_path / "scan"
    result = CliRunner().invoke(cli, ["run", str(event), "-o", str(out), "--config", str(_config(tmp_path, FAST)), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    assert "scan done" in result.output
    for stage, nside in ((0, 8), (1, 16), (2, 32), (3, 128)):
        files = sorted((out / f"stage{stage}").glob("scan-*.h5"))
        assert files, f"no results for stage {stage}"
        for path in files:
            with h5py.File(path, "r") as f:
                assert int(f["nside"][()]) == nside
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pixels"]["by_nside"] == {"8": 768, "16": 16, "32": 16, "128": 64}
    assert summary["pixels"]["failed"] == 0
    for name in ("skymap.h5", "skymap.multiorder.fits", "circular.txt", "notice.json", "plots/skymap-zoom.png", "end_state.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "end_state.json").read_text())["state"] == "done"
    best = summary["best_fit"]
    offset = math.degrees(float(coords.angular_distance(
        math.radians(best["ra_deg"]), math.radians(best["dec_deg"]), math.radians(ra_true), math.radians(dec_true))))
    assert offset < 1.0, offset  # nside 128 pixels are ~0.46 deg across
    # the truth lies inside the 90% region of the multi-order map
    sky = read_skymap_h5(out / "skymap.h5")
    theta, phi = math.radians(90.0 - dec_true), math.radians(ra_true)
    fine = int(hp.ang2pix(8192, theta, phi, nest=True))
    row = int(sky.map.locate(8192, [fine])[0])
    assert row >= 0
    level90 = summary["containment"]["90"]["level_2dllh"]
    assert sky.map.dllh2[row] <= level90, (sky.map.dllh2[row], level90)
    status = scan_status(out).as_json()
    assert status["state"] == "done" and status["backend"] == "local"


def _install_flaky_wrapper(out: Path, node_arg: str, failures: int) -> None:
    """Replace the scan directory's node wrapper by one that fails `failures` times for one result file."""
    wrapper = out / "skyscan-node"
    real = out / "skyscan-node.real"
    wrapper.rename(real)
    counter = out / "flaky.count"
    wrapper.write_text(
        "#!/bin/bash\n"
        f'if [[ " $* " == *" {node_arg} "* ]]; then\n'
        f"  n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}\n"
        f"  if [ $n -lt {failures} ]; then echo injected failure >&2; exit 1; fi\n"
        "fi\n"
        f'exec "{real}" "$@"\n'
    )
    wrapper.chmod(0o755)


def _prepared_scan(event: Path, tmp_path: Path) -> Path:
    config = load_config(_config(tmp_path, TINY))
    site = load_site("local")
    paths = write_scan(event, tmp_path / "scan", config, site)
    from skyscan.condor.schedd import submit_environment

    os.environ.update(submit_environment(site))
    return paths.outdir


def test_node_failing_once_is_retried_and_the_scan_completes(event_and_truth: tuple[Path, float, float], tmp_path: Path) -> None:
    out = _prepared_scan(event_and_truth[0], tmp_path)
    _install_flaky_wrapper(out, "stage0/scan-s0-0001.h5", failures=1)
    result = run_dag(out / "skyscan.dag", jobs=2, handle_signals=False)
    assert result.ok, result
    assert (out / "flaky.count").read_text().strip() == "2"  # failed once, then succeeded
    assert json.loads((out / "end_state.json").read_text())["state"] == "done"
    assert (out / "summary.json").is_file()


def test_node_failing_always_fails_the_scan_and_is_named(event_and_truth: tuple[Path, float, float], tmp_path: Path) -> None:
    out = _prepared_scan(event_and_truth[0], tmp_path)
    _install_flaky_wrapper(out, "stage0/scan-s0-0001.h5", failures=99)
    result = run_dag(out / "skyscan.dag", jobs=2, handle_signals=False)
    assert not result.ok
    assert "scan-s0-0001" in result.failed
    assert int((out / "flaky.count").read_text()) == 4  # the first try and RETRY 3
    assert not (out / "summary.json").exists() and not (out / "skymap.h5").exists()
    assert json.loads((out / "end_state.json").read_text())["state"] == "failed"
    status = CliRunner().invoke(cli, ["status", str(out), "--json"])
    doc = json.loads(status.output)
    assert doc["state"] == "failed"
    assert "scan-s0-0001" in doc["failed_nodes"]


def test_bad_input_node_is_not_retried(event_and_truth: tuple[Path, float, float], tmp_path: Path) -> None:
    out = _prepared_scan(event_and_truth[0], tmp_path)
    # a batch the prepare node will write is replaced by nonsense after prepare: exit 2, UNLESS-EXIT 2
    wrapper = out / "skyscan-node"
    real = out / "skyscan-node.real"
    wrapper.rename(real)
    wrapper.write_text(
        "#!/bin/bash\n"
        'if [[ " $* " == *" stage0/scan-s0-0000.h5 "* ]]; then echo 999999 > stage0/batch-0000.txt; '
        f"echo x >> {out}/bad.count; fi\n"
        f'exec "{real}" "$@"\n'
    )
    wrapper.chmod(0o755)
    result = run_dag(out / "skyscan.dag", jobs=1, handle_signals=False)
    assert not result.ok
    assert len((out / "bad.count").read_text().split()) == 1


def test_killed_run_resumes_without_redoing_finished_nodes(event_and_truth: tuple[Path, float, float], tmp_path: Path) -> None:
    event = event_and_truth[0]
    out = tmp_path / "scan"
    config = _config(tmp_path, RESUME)
    cmd = [sys.executable, "-m", "skyscan.cli", "run", str(event), "-o", str(out), "--config", str(config), "--jobs", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if len(list((out / "stage0").glob("scan-*.h5"))) >= 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the run did not get going")
        os.killpg(proc.pid, signal.SIGKILL)  # a real kill of the executor and its children
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    done_before = {p.name: p.stat().st_mtime_ns for p in (out / "stage0").glob("scan-*.h5")}
    assert 2 <= len(done_before) < 6
    assert not (out / "summary.json").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    for name, mtime in done_before.items():
        assert (out / "stage0" / name).stat().st_mtime_ns == mtime, f"{name} was redone"
    assert len(list((out / "stage0").glob("scan-*.h5"))) == 6
    assert json.loads((out / "end_state.json").read_text())["state"] == "done"


def test_ctrl_c_stops_within_seconds_and_leaves_nothing_half_written(
    event_and_truth: tuple[Path, float, float], tmp_path: Path
) -> None:
    event = event_and_truth[0]
    out = tmp_path / "scan"
    config = _config(tmp_path, RESUME)
    cmd = [sys.executable, "-m", "skyscan.cli", "run", str(event), "-o", str(out), "--config", str(config), "--jobs", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not list((out / "stage0").glob("scan-*.h5")):
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=30)
        stopped_after = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-1000:]
    assert stopped_after < 10.0
    assert "resume" in err
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
    state = json.loads((out / "skyscan.dag.runstate.json").read_text())
    # nothing is left marked as running: interrupted nodes go back to waiting and are redone on resume
    assert {n["state"] for n in state["nodes"].values()} <= {"done", "waiting"}
    assert state["dag_status"] is None
    assert not (out / "summary.json").exists()
