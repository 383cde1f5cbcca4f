"""`skyscan coords --json`: one JSON object {time, zenith_deg, azimuth_deg, ra_deg, dec_deg}."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from skyscan.cli import cli
from skyscan.reco import coords as co

if TYPE_CHECKING:
    from conftest import InputErrorCheck

WHEN = "2026-03-14T15:09:26Z"
WHEN_DT = datetime(2026, 3, 14, 15, 9, 26, tzinfo=timezone.utc)
KEYS = ["time", "zenith_deg", "azimuth_deg", "ra_deg", "dec_deg"]


def _json(cli_runner: CliRunner, *args: str) -> dict[str, object]:
    result = cli_runner.invoke(cli, ["coords", "--time", WHEN, *args, "--json"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1, lines  # one object on one line, nothing else on stdout
    doc = json.loads(lines[0])
    assert isinstance(doc, dict)
    return doc


def test_from_the_detector_frame(cli_runner: CliRunner) -> None:
    doc = _json(cli_runner, "--zenith", "118", "--azimuth", "591")  # 591 deg = 231 deg
    assert list(doc) == KEYS
    assert doc["time"] == "2026-03-14T15:09:26.000000Z"
    assert doc["zenith_deg"] == 118.0 and doc["azimuth_deg"] == pytest.approx(231.0)
    ra, dec = co.local_to_equatorial(math.radians(118.0), math.radians(231.0), WHEN_DT)
    assert doc["ra_deg"] == pytest.approx(math.degrees(float(ra)) % 360.0, abs=1e-9)
    assert doc["dec_deg"] == pytest.approx(math.degrees(float(dec)), abs=1e-9)
    assert all(isinstance(doc[k], float) for k in KEYS[1:])


def test_from_equatorial_and_back(cli_runner: CliRunner) -> None:
    sky = _json(cli_runner, "--ra", "-282.64", "--dec", "5.69")  # -282.64 deg = 77.36 deg
    assert list(sky) == KEYS
    assert sky["ra_deg"] == pytest.approx(77.36) and sky["dec_deg"] == 5.69
    assert 0.0 <= float(sky["azimuth_deg"]) < 360.0 and 0.0 <= float(sky["zenith_deg"]) <= 180.0  # type: ignore[arg-type]
    # the detector direction it printed converts back to the same sky position
    back = _json(cli_runner, "--zenith", repr(sky["zenith_deg"]), "--azimuth", repr(sky["azimuth_deg"]))
    assert back["ra_deg"] == pytest.approx(77.36, abs=1e-6)
    assert back["dec_deg"] == pytest.approx(5.69, abs=1e-6)


def test_the_table_form_is_unchanged(cli_runner: CliRunner) -> None:
    result = cli_runner.invoke(cli, ["coords", "--time", WHEN, "--zenith", "118", "--azimuth", "231"])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].startswith("time     2026-03-14T15:09:26")
    assert "{" not in result.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--zenith", "200", "--azimuth", "0"], ("--zenith",)),
        (["--ra", "10"], ("--ra", "--dec")),
        ([], ("either",)),
    ],
)
def test_bad_input_with_json_is_one_line(
    cli_runner: CliRunner, input_error: InputErrorCheck, args: list[str], words: tuple[str, ...]
) -> None:
    input_error(cli_runner.invoke(cli, ["coords", "--time", WHEN, *args, "--json"]), *words)
