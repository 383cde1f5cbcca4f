"""Command-line input handling: bad input exits 2 with one line naming the problem and writes nothing.

Also: --version, an example in every command's --help, the coords command both ways, simulate, geometry export,
and that `skyscan node scan` leaves a complete result alone.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click
import h5py
import numpy as np
import pytest
from click.testing import CliRunner, Result

from skyscan.cli import cli
from skyscan.reco import coords as co
from skyscan.reco.event import parse_time, read_event
from skyscan.reco.geometry import ic86, read_csv
from skyscan.version import __version__

if TYPE_CHECKING:
    from conftest import BadInput, InputErrorCheck, SimulatedEvent

T_ALERT = "2026-03-14T15:09:26Z"


def _nothing_written(folder: Path) -> None:
    """The output folder was never created (or is empty: no stray temporary file either)."""
    assert not folder.exists() or not any(folder.iterdir()), sorted(folder.iterdir())


def _check_usage_error(result: Result, option: str) -> None:
    """click's own usage errors: exit 2, no traceback, an `Error:` line naming the option."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and option in errors[0], result.output


# --- version and help ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(cli_runner: CliRunner, flag: str) -> None:
    result = cli_runner.invoke(cli, [flag])
    assert result.exit_code == 0
    assert "skyscan" in result.output and __version__ in result.output


def _walk(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _walk(command, (*path, name))


def test_every_command_help_shows_an_example(cli_runner: CliRunner) -> None:
    commands = list(_walk(cli))
    leaves = [path for path, command in commands if not isinstance(command, click.Group)]
    assert {("simulate",), ("coords",), ("geometry", "export"), ("node", "scan")} <= set(leaves)
    for path, command in commands:
        result = cli_runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        if isinstance(command, click.Group):
            for sub in command.commands:
                assert sub in result.output, (path, sub)
            continue
        assert "Example" in result.output, f"skyscan {' '.join(path)} --help shows no example"
        invocation = "skyscan " + " ".join(path)
        assert any(line.strip().startswith(invocation) for line in result.output.splitlines()), (
            f"no example line starting with {invocation!r}"
        )


def test_root_help_shows_quick_start(cli_runner: CliRunner) -> None:
    result = cli_runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert any(line.strip().startswith("skyscan simulate") for line in result.output.splitlines())


# --- bad events and geometries ------------------------------------------------------------------------------------
def test_node_scan_bad_event(
    cli_runner: CliRunner, input_error: InputErrorCheck, bad_event: tuple[Path, BadInput], tmp_path: Path
) -> None:
    path, case = bad_event
    out = tmp_path / "out" / "scan.h5"
    result = cli_runner.invoke(cli, ["node", "scan", str(path), "--nside", "1", "--pixels", "0-3", "-o", str(out)])
    input_error(result, *case.expect)  # a directory too: our one-line error, not click's usage text
    _nothing_written(out.parent)


def test_node_scan_bad_geometry(
    cli_runner: CliRunner,
    input_error: InputErrorCheck,
    bad_geometry: tuple[Path, BadInput],
    sim_event: SimulatedEvent,
    tmp_path: Path,
) -> None:
    path, case = bad_geometry
    out = tmp_path / "out" / "scan.h5"
    args = ["node", "scan", str(sim_event.path), "--nside", "1", "--pixels", "0", "--geometry", str(path), "-o", str(out)]
    input_error(cli_runner.invoke(cli, args), *case.expect)
    _nothing_written(out.parent)


def test_simulate_bad_geometry(
    cli_runner: CliRunner, input_error: InputErrorCheck, bad_geometry: tuple[Path, BadInput], tmp_path: Path
) -> None:
    path, case = bad_geometry
    out = tmp_path / "out" / "event.json"
    input_error(cli_runner.invoke(cli, ["simulate", "--geometry", str(path), "-o", str(out)]), *case.expect)
    _nothing_written(out.parent)


def test_node_scan_event_dom_missing_from_custom_geometry(
    cli_runner: CliRunner, input_error: InputErrorCheck, sim_event: SimulatedEvent, tmp_path: Path
) -> None:
    """A geometry file replaces the built-in one: a pulse on a DOM it lacks is bad input."""
    geo = tmp_path / "few.csv"
    first = (int(sim_event.event.pulses.string[0]), int(sim_event.event.pulses.om[0]))
    geo.write_text(f"string,om,x,y,z\n{first[0]},{first[1]},0,0,0\n", encoding="utf-8")
    out = tmp_path / "out" / "scan.h5"
    args = ["node", "scan", str(sim_event.path), "--nside", "1", "--pixels", "0", "--geometry", str(geo), "-o", str(out)]
    input_error(cli_runner.invoke(cli, args), "not in the geometry", str(sim_event.path))
    _nothing_written(out.parent)


# --- node scan arguments ------------------------------------------------------------------------------------------
NODE_ARG_CASES = [
    pytest.param(["--nside", "3", "--pixels", "0"], ("--nside", "power of two"), id="nside-not-power-of-two"),
    pytest.param(["--nside", "0", "--pixels", "0"], ("--nside",), id="nside-zero"),
    pytest.param(["--nside", "-4", "--pixels", "0"], ("--nside",), id="nside-negative"),
    pytest.param(["--nside", "1", "--pixels", "abc"], ("--pixels", "'abc'"), id="pixels-garbage"),
    pytest.param(["--nside", "1", "--pixels", "5-2"], ("--pixels", "5-2"), id="pixels-reversed-range"),
    pytest.param(["--nside", "1", "--pixels", "1,,2"], ("--pixels",), id="pixels-empty-item"),
    pytest.param(["--nside", "2", "--pixels", "40-48"], ("pixel 48", "nside 2", "0..47"), id="pixels-out-of-range"),
    pytest.param(["--nside", "1", "--pixels", "missing-pixels.txt"], ("missing-pixels.txt", "no such"), id="pixel-file-missing"),
    pytest.param(["--nside", "1", "--pixels", "@bad-pixels"], ("not a pixel index", "'x7'"), id="pixel-file-garbage"),
    pytest.param(["--nside", "1", "--pixels", "@empty-pixels"], ("no pixels",), id="pixel-file-empty"),
    pytest.param(["--nside", "1", "--pixels", "@far-pixels"], ("pixel 12", "nside 1"), id="pixel-file-out-of-range"),
    pytest.param(["--nside", "1", "--pixels", "0", "--config", "missing.yaml"], ("missing.yaml", "no such"), id="config-missing"),
    pytest.param(["--nside", "1", "--pixels", "0", "--config", "@broken.yaml"], ("invalid YAML",), id="config-invalid-yaml"),
    pytest.param(["--nside", "1", "--pixels", "0", "--config", "@list.yaml"], ("mapping",), id="config-not-mapping"),
    pytest.param(["--nside", "1", "--pixels", "0", "--config", "@unknown.yaml"], ("reco.speed", "unknown"), id="config-unknown-key"),
    pytest.param(["--nside", "1", "--pixels", "0", "--config", "@jitter.yaml"], ("reco.jitter_ns",), id="config-bad-value"),
    pytest.param(["--nside", "1", "--pixels", "0", "--geometry", "ic79"], ("ic79",), id="geometry-unknown"),
]

_AUX_FILES = {
    "bad-pixels": "0\n1\nx7\n",
    "empty-pixels": "\n\n",
    "far-pixels": "3 4\n12\n",
    "broken.yaml": "reco: [unclosed\n",
    "list.yaml": "- 1\n- 2\n",
    "unknown.yaml": "reco:\n  speed: 3\n",
    "jitter.yaml": "reco:\n  jitter_ns: -1\n",
}


@pytest.mark.parametrize(("args", "expect"), NODE_ARG_CASES)
def test_node_scan_bad_arguments(
    cli_runner: CliRunner,
    input_error: InputErrorCheck,
    sim_event: SimulatedEvent,
    tmp_path: Path,
    args: list[str],
    expect: tuple[str, ...],
) -> None:
    aux = tmp_path / "aux"
    aux.mkdir()
    resolved = []
    for arg in args:
        if arg.startswith("@"):
            target = aux / arg[1:]
            target.write_text(_AUX_FILES[arg[1:]], encoding="utf-8")
            arg = str(target)
        resolved.append(arg)
    out = tmp_path / "out" / "scan.h5"
    result = cli_runner.invoke(cli, ["node", "scan", str(sim_event.path), *resolved, "-o", str(out)])
    input_error(result, *expect)
    _nothing_written(out.parent)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        pytest.param(["--pixels", "0"], "--nside", id="nside-missing"),
        pytest.param(["--nside", "eight", "--pixels", "0"], "--nside", id="nside-not-integer"),
        pytest.param(["--nside", "1"], "--pixels", id="pixels-missing"),
    ],
)
def test_node_scan_usage_errors(
    cli_runner: CliRunner, sim_event: SimulatedEvent, tmp_path: Path, args: list[str], option: str
) -> None:
    out = tmp_path / "out" / "scan.h5"
    _check_usage_error(cli_runner.invoke(cli, ["node", "scan", str(sim_event.path), *args, "-o", str(out)]), option)
    _nothing_written(out.parent)


def test_pixel_file_comment_lines(sim_event: SimulatedEvent, tmp_path: Path) -> None:
    from skyscan.nodes.scan import parse_pixel_spec

    pixels = tmp_path / "pixels.txt"
    pixels.write_text("# batch 3 of 4\n7\n9\n", encoding="utf-8")
    np.testing.assert_array_equal(parse_pixel_spec(str(pixels), 4), [7, 9])


def test_real_process_bad_event_exit_code(tmp_path: Path) -> None:
    """Once through a real interpreter: the exit status and stderr seen by DAGMan, not by the test runner."""
    out = tmp_path / "out" / "scan.h5"
    args = ["node", "scan", str(tmp_path / "nope.json"), "--nside", "1", "--pixels", "0", "-o", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "SKYSCAN_DEBUG"}
    proc = subprocess.run(
        [sys.executable, "-m", "skyscan.cli", *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"skyscan: error: {tmp_path / 'nope.json'}: no such event file"]
    assert proc.stdout == ""
    _nothing_written(out.parent)


# --- node scan: a complete result is left alone -------------------------------------------------------------------
def test_node_scan_writes_once_then_skips(cli_runner: CliRunner, sim_event: SimulatedEvent, tmp_path: Path) -> None:
    out = tmp_path / "scan.h5"
    out.write_bytes(b"left over from a killed job")  # not a complete result: must be replaced
    args = ["node", "scan", str(sim_event.path), "--nside", "1", "--pixels", "5,0", "-o", str(out)]
    first = cli_runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert str(out) in first.output
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["ipix"][()], [0, 5])
        assert int(f["nside"][()]) == 1
        assert f["llh"].shape == (2,) and f["status"].shape == (2,)
        assert bool(f.attrs["complete"]) and f.attrs["ordering"] == "NESTED"
        assert int(f.attrs["run_id"]) == sim_event.event.run_id and int(f.attrs["event_id"]) == sim_event.event.event_id
    before = (out.stat().st_mtime_ns, out.read_bytes())
    assert [p.name for p in tmp_path.iterdir()] == ["scan.h5"]  # no temporary file left behind

    again = cli_runner.invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "already complete" in again.output and "nothing to do" in again.output
    assert (out.stat().st_mtime_ns, out.read_bytes()) == before


# --- coords -------------------------------------------------------------------------------------------------------
_LOCAL = re.compile(r"detector zenith\s+(\S+) deg\s+azimuth\s+(\S+) deg")
_SKY = re.compile(r"J2000\s+RA\s+(\S+) deg\s+Dec\s+(\S+) deg")


def _coords(cli_runner: CliRunner, *args: str) -> tuple[float, float, float, float]:
    result = cli_runner.invoke(cli, ["coords", "--time", T_ALERT, *args])
    assert result.exit_code == 0, result.output
    local, sky = _LOCAL.search(result.output), _SKY.search(result.output)
    assert local and sky, result.output
    return float(local[1]), float(local[2]), float(sky[1]), float(sky[2])


@pytest.mark.parametrize(("zenith", "azimuth"), [(118.0, 231.0), (35.5, 10.25), (150.0, 300.0)])
def test_coords_both_directions_agree(cli_runner: CliRunner, zenith: float, azimuth: float) -> None:
    zen, azi, ra, dec = _coords(cli_runner, "--zenith", str(zenith), "--azimuth", str(azimuth))
    assert (zen, azi) == (zenith, azimuth)
    assert 0.0 <= ra < 360.0 and -90.0 <= dec <= 90.0
    # the library gives the same numbers
    ra_lib, dec_lib = co.local_to_equatorial(math.radians(zenith), math.radians(azimuth), parse_time(T_ALERT))
    assert ra == pytest.approx(math.degrees(float(ra_lib)), abs=1e-4)
    assert dec == pytest.approx(math.degrees(float(dec_lib)), abs=1e-4)
    # and back through the command line (printed to 1e-4 deg)
    zen2, azi2, ra2, dec2 = _coords(cli_runner, "--ra", str(ra), "--dec", str(dec))
    assert (ra2, dec2) == (ra, dec)
    assert zen2 == pytest.approx(zenith, abs=2e-3)
    assert abs((azi2 - azimuth + 180.0) % 360.0 - 180.0) < 2e-3 / math.sin(math.radians(zenith))


def test_coords_normalises_angles(cli_runner: CliRunner) -> None:
    _, azi, _, _ = _coords(cli_runner, "--zenith", "100", "--azimuth", "-90")
    assert azi == pytest.approx(270.0)
    _, _, ra, _ = _coords(cli_runner, "--ra", "370", "--dec", "-20")
    assert ra == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        pytest.param([], ("either",), id="no-direction"),
        pytest.param(["--zenith", "1", "--azimuth", "2", "--ra", "3", "--dec", "4"], ("either",), id="both-forms"),
        pytest.param(["--zenith", "100"], ("--azimuth",), id="zenith-alone"),
        pytest.param(["--dec", "10"], ("--ra",), id="dec-alone"),
        pytest.param(["--zenith", "190", "--azimuth", "0"], ("--zenith",), id="zenith-range"),
        pytest.param(["--zenith", "nan", "--azimuth", "0"], ("--zenith",), id="zenith-nan"),
        pytest.param(["--ra", "10", "--dec", "95"], ("--dec",), id="dec-range"),
        pytest.param(["--ra", "inf", "--dec", "5"], ("--ra",), id="ra-infinite"),
    ],
)
def test_coords_bad_direction(cli_runner: CliRunner, input_error: InputErrorCheck, args: list[str], expect: tuple[str, ...]) -> None:
    input_error(cli_runner.invoke(cli, ["coords", "--time", T_ALERT, *args]), *expect)


def test_coords_bad_time(cli_runner: CliRunner, input_error: InputErrorCheck) -> None:
    result = cli_runner.invoke(cli, ["coords", "--time", "half past noon", "--ra", "1", "--dec", "2"])
    input_error(result, "--time", "half past noon")
    _check_usage_error(cli_runner.invoke(cli, ["coords", "--ra", "1", "--dec", "2"]), "--time")


# --- simulate -----------------------------------------------------------------------------------------------------
def _simulate_args(seed: int, out: Path) -> list[str]:
    return ["simulate", "--zenith", "75", "--azimuth", "-20", "--energy", "5e4", "--seed", str(seed),
            "--run-id", "7", "--event-id", "8", "--event-time", "2026-05-01T01:02:03Z", "-o", str(out)]  # fmt: skip


def test_simulate_writes_a_valid_event_with_truth(cli_runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "new" / "ev.json"
    result = cli_runner.invoke(cli, _simulate_args(3, out))
    assert result.exit_code == 0, result.output
    ef = read_event(out, known_doms=ic86().keys)
    assert (ef.event.run_id, ef.event.event_id, ef.event.stream) == (7, 8, "gold")
    assert ef.event.time == parse_time("2026-05-01T01:02:03Z")
    assert ef.truth is not None
    assert (ef.truth.zenith_deg, ef.truth.azimuth_deg, ef.truth.energy_gev) == (75.0, 340.0, 5e4)
    assert json.loads(out.read_text(encoding="utf-8"))["schema"] == "skyscan-event/1"

    again, other = tmp_path / "again.json", tmp_path / "other.json"
    assert cli_runner.invoke(cli, _simulate_args(3, again)).exit_code == 0
    assert again.read_bytes() == out.read_bytes()  # same seed, same event
    assert cli_runner.invoke(cli, _simulate_args(4, other)).exit_code == 0
    assert other.read_bytes() != out.read_bytes()


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        pytest.param(["--zenith", "200"], ("--zenith",), id="zenith-range"),
        pytest.param(["--zenith", "nan"], ("--zenith",), id="zenith-nan"),
        pytest.param(["--energy", "-5"], ("--energy",), id="energy-negative"),
        pytest.param(["--energy", "inf"], ("--energy",), id="energy-infinite"),
        pytest.param(["--noise-rate", "-1"], ("--noise-rate",), id="noise-negative"),
        pytest.param(["--run-id", "-1"], ("--run-id",), id="run-id-negative"),
        pytest.param(["--event-time", "tomorrow"], ("--event-time", "tomorrow"), id="event-time"),
        pytest.param(["--geometry", "nowhere.csv"], ("nowhere.csv", "no such geometry file"), id="geometry-missing"),
    ],
)
def test_simulate_bad_options(
    cli_runner: CliRunner, input_error: InputErrorCheck, tmp_path: Path, args: list[str], expect: tuple[str, ...]
) -> None:
    out = tmp_path / "out" / "ev.json"
    input_error(cli_runner.invoke(cli, ["simulate", *args, "-o", str(out)]), *expect)
    _nothing_written(out.parent)


def test_simulate_with_custom_geometry(cli_runner: CliRunner, ic86_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "ev.json"
    result = cli_runner.invoke(cli, ["simulate", "--geometry", str(ic86_csv), "--energy", "2e4", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert len(read_event(out, known_doms=read_csv(ic86_csv).keys).event.pulses) > 0


# --- geometry export ---------------------------------------------------------------------------------------------
def test_geometry_export_round_trip(cli_runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "ic86.csv"
    result = cli_runner.invoke(cli, ["geometry", "export", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "5160 DOMs" in result.output and "86 strings" in result.output
    geo, back = ic86(), read_csv(out)
    assert back.keys == geo.keys
    rows = geo.index_of(back.string, back.om)
    np.testing.assert_allclose(back.pos, geo.pos[rows], atol=0.005)
    np.testing.assert_allclose(back.efficiency, geo.efficiency[rows])


def test_geometry_export_unknown_name(cli_runner: CliRunner, input_error: InputErrorCheck, tmp_path: Path) -> None:
    out = tmp_path / "out" / "x.csv"
    input_error(cli_runner.invoke(cli, ["geometry", "export", "--name", "ic40", "-o", str(out)]), "ic40")
    _nothing_written(out.parent)
