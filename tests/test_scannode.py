"""`skyscan node scan`: result file layout, atomicity, re-run behaviour."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from skyscan.cli import cli
from skyscan.nodes.scan import parse_pixel_spec
from skyscan.reco.event import event_to_dict
from skyscan.reco.geometry import ic86
from skyscan.reco.simulate import TrackSpec, simulate_track
from skyscan.version import __version__


@pytest.fixture(scope="module")
def event_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = TrackSpec(zenith_deg=110.0, azimuth_deg=40.0, energy_gev=2e5)
    event, truth = simulate_track(
        spec,
        ic86(),
        np.random.default_rng(4),
        run_id=7,
        event_id=9,
        event_time=datetime(2026, 2, 3, 4, 5, 6, tzinfo=timezone.utc),
    )
    path = tmp_path_factory.mktemp("ev") / "event.json"
    path.write_text(json.dumps(event_to_dict(event, truth)))
    return path


def test_scan_writes_the_documented_layout(event_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "res.h5"
    result = CliRunner().invoke(
        cli, ["node", "scan", str(event_file), "--nside", "2", "--pixels", "0-5,40", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as f:
        assert int(f["nside"][()]) == 2
        np.testing.assert_array_equal(f["ipix"][:], [0, 1, 2, 3, 4, 5, 40])
        for name in ("llh", "x", "y", "z", "t", "seconds"):
            assert f[name].shape == (7,)
        assert np.all(np.isfinite(f["llh"][:]))
        assert f["status"].dtype == np.int32
        assert int(f.attrs["run_id"]) == 7 and int(f.attrs["event_id"]) == 9
        assert f.attrs["software_version"] == __version__
        assert len(str(f.attrs["config_digest"])) == 16
    assert not list(tmp_path.glob(".*part"))


def test_rerun_with_complete_output_does_nothing(event_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "res.h5"
    runner = CliRunner()
    assert (
        runner.invoke(cli, ["node", "scan", str(event_file), "--nside", "1", "--pixels", "3", "-o", str(out)]).exit_code
        == 0
    )
    before = out.stat().st_mtime_ns
    again = runner.invoke(cli, ["node", "scan", str(event_file), "--nside", "1", "--pixels", "3", "-o", str(out)])
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert out.stat().st_mtime_ns == before


def test_incomplete_output_is_redone(event_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "res.h5"
    out.write_bytes(b"not hdf5")
    result = CliRunner().invoke(cli, ["node", "scan", str(event_file), "--nside", "1", "--pixels", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as f:
        assert f["llh"].shape == (1,)


def test_pixel_file_and_config(event_file: Path, tmp_path: Path) -> None:
    pixels = tmp_path / "batch.txt"
    pixels.write_text("5\n7\n")
    config = tmp_path / "config.yaml"
    config.write_text("reco:\n  use_mpe: false\n")
    out = tmp_path / "res.h5"
    result = CliRunner().invoke(
        cli,
        [
            "node",
            "scan",
            str(event_file),
            "--nside",
            "2",
            "--pixels",
            str(pixels),
            "-o",
            str(out),
            "--config",
            str(config),
        ],
    )
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["ipix"][:], [5, 7])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nside", "3", "--pixels", "0"], "power of two"),
        (["--nside", "2", "--pixels", "48"], "out of range"),
        (["--nside", "2", "--pixels", "x-y"], "--pixels"),
        (["--nside", "2", "--pixels", "missing/batch.txt"], "no such pixel file"),
    ],
)
def test_bad_arguments_exit_2_and_write_nothing(
    event_file: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "res.h5"
    result = CliRunner().invoke(cli, ["node", "scan", str(event_file), *args, "-o", str(out)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_bad_config_exit_2(event_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("reco:\n  noise_rate_hz: .nan\n")
    out = tmp_path / "res.h5"
    result = CliRunner().invoke(
        cli, ["node", "scan", str(event_file), "--nside", "1", "--pixels", "0", "-o", str(out), "--config", str(config)]
    )
    assert result.exit_code == 2 and "reco.noise_rate_hz" in result.output
    assert not out.exists()


def test_parse_pixel_spec_dedups_and_sorts(tmp_path: Path) -> None:
    np.testing.assert_array_equal(parse_pixel_spec("5,1-3,2", 1), [1, 2, 3, 5])
    assert math.isclose(float(parse_pixel_spec("0-767", 8).size), 768)
