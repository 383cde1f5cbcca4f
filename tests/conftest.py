"""Shared fixtures: a small simulated event, tables of bad inputs, and a checker for CLI input errors.

The bad-input tables are parametrised fixtures so that the library tests (tests/test_event.py,
tests/test_geometry.py) and the command-line tests (tests/test_cli_inputs.py) walk through the same cases.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from skyscan.reco.event import Event, Truth, event_to_dict
from skyscan.reco.geometry import ic86, to_csv
from skyscan.reco.simulate import TrackSpec, simulate_track

EVENT_TIME = datetime(2026, 3, 14, 15, 9, 26, tzinfo=timezone.utc)
# A modest through-going track without dark noise: a few dozen pulses, simulated in milliseconds.
SMALL_TRACK = TrackSpec(zenith_deg=100.0, azimuth_deg=40.0, energy_gev=1e4, noise_rate_hz=0.0)


@dataclass(frozen=True)
class SimulatedEvent:
    """The shared event: its file (do not modify it), the decoded document, the event and its truth."""

    path: Path
    doc: dict[str, Any]
    event: Event
    truth: Truth


@pytest.fixture(scope="session")
def sim_event(tmp_path_factory: pytest.TempPathFactory) -> SimulatedEvent:
    event, truth = simulate_track(
        SMALL_TRACK, ic86(), np.random.default_rng(7), run_id=12, event_id=345, event_time=EVENT_TIME, stream="gold"
    )
    doc = event_to_dict(event, truth)
    path = tmp_path_factory.mktemp("event") / "event.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return SimulatedEvent(path=path, doc=doc, event=event, truth=truth)


@pytest.fixture
def event_doc(sim_event: SimulatedEvent) -> dict[str, Any]:
    """A fresh copy of the shared event's document, free to mutate."""
    return copy.deepcopy(sim_event.doc)


# --- bad event files ----------------------------------------------------------------------------------------------
Mutation = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class BadInput:
    """One bad input file: how to make it and the words its one-line error message must contain."""

    id: str
    expect: tuple[str, ...]
    mutate: Mutation | None = None  # applied to a copy of the valid document, then written as JSON (or CSV)
    text: str | None = None  # literal file content, or (with a mutation) a rendering of the mutated document
    raw: bytes | None = None  # literal bytes
    missing: bool = False  # the file is not created
    directory: bool = False  # a directory stands where the file should be
    needs_geometry: bool = False  # detected only once the event meets its geometry


def _set(key: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc[key] = value

    return mutate


def _drop(key: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        del doc[key]

    return mutate


def _pulse(column: str, index: int, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc["pulses"][column][index] = value

    return mutate


def _pulses(change: Callable[[dict[str, Any]], None]) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        change(doc["pulses"])

    return mutate


def _empty_pulses(pulses: dict[str, Any]) -> None:
    for column in pulses:
        pulses[column] = []


BAD_EVENTS: tuple[BadInput, ...] = (
    BadInput("missing-file", ("no such event file",), missing=True),
    BadInput("directory", ("directory",), directory=True),
    BadInput("empty-file", ("empty",), text=""),
    BadInput("not-utf8", ("cannot read",), raw=b'{"schema": "\xff\xfe"}'),
    BadInput("invalid-json", ("invalid JSON", "line 1"), text='{"schema": "skyscan-event/1", "run_id": }'),
    BadInput("truncated-json", ("invalid JSON",), text='{"schema": "skyscan-event/1", "pulses": {"string": [1, 2'),
    BadInput("top-level-array", ("JSON object",), text="[1, 2, 3]"),
    BadInput("schema-missing", ("schema",), mutate=_drop("schema")),
    BadInput("schema-version", ("schema", "skyscan-event/2"), mutate=_set("schema", "skyscan-event/2")),
    BadInput("run_id-missing", ("run_id", "missing"), mutate=_drop("run_id")),
    BadInput("event_id-missing", ("event_id", "missing"), mutate=_drop("event_id")),
    BadInput("time-missing", ("time", "missing"), mutate=_drop("time")),
    BadInput("pulses-missing", ("pulses", "missing"), mutate=_drop("pulses")),
    BadInput("unknown-field", ("colour", "unknown"), mutate=_set("colour", "blue")),
    BadInput("run_id-string", ("run_id",), mutate=_set("run_id", "12")),
    BadInput("run_id-negative", ("run_id",), mutate=_set("run_id", -1)),
    BadInput("run_id-fraction", ("run_id",), mutate=_set("run_id", 1.5)),
    BadInput("event_id-bool", ("event_id",), mutate=_set("event_id", True)),
    BadInput("time-number", ("time",), mutate=_set("time", 1773500966)),
    BadInput("time-garbage", ("time", "ISO 8601"), mutate=_set("time", "yesterday at noon")),
    BadInput("stream-number", ("stream",), mutate=_set("stream", 5)),
    BadInput("energy-negative", ("energy_gev",), mutate=_set("energy_gev", -3.0)),
    BadInput("signalness-string", ("signalness",), mutate=_set("signalness", "high")),
    BadInput("geometry-number", ("geometry",), mutate=_set("geometry", 86)),
    BadInput("geometry-unknown", ("ic79", "geometry"), mutate=_set("geometry", "ic79"), needs_geometry=True),
    BadInput("seed-string", ("seed",), mutate=_set("seed", "north")),
    BadInput("seed-zenith-range", ("seed.zenith_deg",), mutate=_set("seed", {"zenith_deg": 200.0, "azimuth_deg": 0.0})),
    BadInput("seed-no-azimuth", ("seed", "azimuth_deg"), mutate=_set("seed", {"zenith_deg": 20.0})),
    BadInput("truth-incomplete", ("truth", "azimuth_deg"), mutate=_set("truth", {"zenith_deg": 20.0})),
    BadInput("pulses-list", ("pulses",), mutate=_set("pulses", [[1, 1, 0.0, 1.0]])),
    BadInput("pulses-no-charge", ("charge", "missing"), mutate=_pulses(lambda p: p.pop("charge"))),
    BadInput("pulses-extra-column", ("width", "unknown"), mutate=_pulses(lambda p: p.update(width=[1.0]))),
    BadInput("pulses-column-not-array", ("pulses.time",), mutate=_pulses(lambda p: p.update(time=3.0))),
    BadInput("string-not-integer", ("pulses.string[0]",), mutate=_pulse("string", 0, 1.5)),
    BadInput("om-string", ("pulses.om[1]",), mutate=_pulse("om", 1, "7")),
    BadInput("time-null", ("pulses.time[2]",), mutate=_pulse("time", 2, None)),
    BadInput("unequal-length", ("unequal length", "charge"), mutate=_pulses(lambda p: p["charge"].pop())),
    BadInput("nan-literal", ("NaN",), mutate=_pulse("time", 0, "__NAN__"), text="nan"),
    BadInput("infinity-literal", ("Infinity",), mutate=_pulse("charge", 0, "__INF__"), text="inf"),
    BadInput("overflow-to-infinity", ("pulses.time[0]", "finite"), mutate=_pulse("time", 0, "__BIG__"), text="big"),
    BadInput("negative-charge", ("pulses.charge[3]", "negative"), mutate=_pulse("charge", 3, -0.5)),
    BadInput("empty-pulses", ("pulses", "empty"), mutate=_pulses(_empty_pulses)),
    BadInput("dom-unknown-string", ("string 87", "not in the geometry"), mutate=_pulse("string", 0, 87), needs_geometry=True),
    BadInput("dom-unknown-om", ("om 61", "not in the geometry"), mutate=_pulse("om", 0, 61), needs_geometry=True),
    BadInput("dom-negative-om", ("om -1", "not in the geometry"), mutate=_pulse("om", 0, -1), needs_geometry=True),
)

# JSON numbers Python's json module cannot write as such: placeholders replaced in the rendered text.
_LITERALS = {"nan": ('"__NAN__"', "NaN"), "inf": ('"__INF__"', "Infinity"), "big": ('"__BIG__"', "1e999")}


def write_bad_input(case: BadInput, base: dict[str, Any] | str, folder: Path, name: str) -> Path:
    """Materialise a bad input in ``folder``; ``base`` is the valid document (dict for JSON, str for CSV)."""
    path = folder / name
    if case.missing:
        return path
    if case.directory:
        path.mkdir()
        return path
    if case.raw is not None:
        path.write_bytes(case.raw)
        return path
    if case.mutate is None:
        path.write_text(case.text or "", encoding="utf-8")
        return path
    if isinstance(base, dict):
        doc = copy.deepcopy(base)
        case.mutate(doc)
        text = json.dumps(doc)
        if case.text is not None:
            placeholder, literal = _LITERALS[case.text]
            text = text.replace(placeholder, literal)
        path.write_text(text, encoding="utf-8")
        return path
    raise TypeError("mutations apply to JSON documents only")


@pytest.fixture(params=BAD_EVENTS, ids=[c.id for c in BAD_EVENTS])
def bad_event(request: pytest.FixtureRequest, sim_event: SimulatedEvent, tmp_path: Path) -> tuple[Path, BadInput]:
    """A bad event file in its own folder (the folder holds nothing else) and its case."""
    case: BadInput = request.param
    folder = tmp_path / "in"
    folder.mkdir()
    return write_bad_input(case, sim_event.doc, folder, "event.json"), case


@pytest.fixture(params=[c for c in BAD_EVENTS if c.needs_geometry], ids=lambda c: str(c.id))
def geometry_only_bad_event(request: pytest.FixtureRequest, sim_event: SimulatedEvent, tmp_path: Path) -> Path:
    """The bad events whose problem shows only once the event meets its geometry."""
    case: BadInput = request.param
    return write_bad_input(case, sim_event.doc, tmp_path, "event.json")


# --- bad geometry tables ------------------------------------------------------------------------------------------
def _geometry_csv(rows: list[str], header: str = "string,om,x,y,z,efficiency") -> str:
    return "\n".join([header, *rows]) + "\n"


_GOOD_ROWS = ["1,1,0.0,0.0,500.0,1.0", "1,2,0.0,0.0,483.0,1.0"]

BAD_GEOMETRIES: tuple[BadInput, ...] = (
    BadInput("missing-file", ("no such geometry file",), missing=True),
    BadInput("empty-file", ("empty",), text=""),
    BadInput("header-only", ("no DOMs",), text=_geometry_csv([])),
    BadInput("missing-column-z", ("missing column", "'z'"), text=_geometry_csv(["1,1,0,0"], header="string,om,x,y")),
    BadInput("short-row", (":3:", "columns"), text=_geometry_csv([_GOOD_ROWS[0], "1,2,0.0,0.0"])),
    BadInput("string-not-integer", (":2:", "integer"), text=_geometry_csv(["one,1,0,0,500,1"])),
    BadInput("om-fraction", (":2:", "integer"), text=_geometry_csv(["1,1.5,0,0,500,1"])),
    BadInput("x-not-number", (":3:", "number"), text=_geometry_csv([_GOOD_ROWS[0], "1,2,east,0,483,1"])),
    BadInput("z-nan", (":2:", "NaN"), text=_geometry_csv(["1,1,0,0,nan,1"])),
    BadInput("y-infinite", (":2:", "infinite"), text=_geometry_csv(["1,1,0,inf,500,1"])),
    BadInput("negative-efficiency", (":2:", "efficiency"), text=_geometry_csv(["1,1,0,0,500,-0.5"])),
    BadInput("duplicate-dom", (":3:", "duplicate", "string 1 om 1"), text=_geometry_csv([_GOOD_ROWS[0], _GOOD_ROWS[0]])),
    BadInput("om-out-of-range", (":2:", "om"), text=_geometry_csv(["1,1000,0,0,500,1"])),
    BadInput("not-utf8", ("cannot read",), raw=b"string,om,x,y,z\n1,1,0,0,\xff\n"),
)


@pytest.fixture(params=BAD_GEOMETRIES, ids=[c.id for c in BAD_GEOMETRIES])
def bad_geometry(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, BadInput]:
    """A bad geometry CSV in its own folder and its case."""
    case: BadInput = request.param
    folder = tmp_path / "geo"
    folder.mkdir()
    return write_bad_input(case, "", folder, "geometry.csv"), case


@pytest.fixture(scope="session")
def ic86_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in geometry written as CSV by the library."""
    path = tmp_path_factory.mktemp("geometry") / "ic86.csv"
    path.write_text(to_csv(ic86()), encoding="utf-8")
    return path


# --- command line -----------------------------------------------------------------------------------------------
@pytest.fixture
def cli_runner() -> CliRunner:
    return CliRunner()


InputErrorCheck = Callable[..., None]


def check_input_error(result: Result, *expect: str) -> None:
    """Exit code 2, a single stderr line naming the problem, no traceback, nothing on stdout."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("skyscan: error: "), lines[0]
    for word in expect:
        assert word in lines[0], (word, lines[0])
    assert result.stdout == ""


@pytest.fixture
def input_error() -> InputErrorCheck:
    """The checker for CLI input errors (a fixture, so test modules need not import this file)."""
    return check_input_error
