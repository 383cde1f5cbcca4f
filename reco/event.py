"""The `skyscan-event/1` event format: parsing, validation and writing.

The simulation truth is returned *beside* the event, never inside it: a reconstruction is
handed an :class:`Event`, which has no field that could hold the truth.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from skyscan.reco import untrusted
from skyscan.reco.errors import InputError

SCHEMA = "skyscan-event/1"

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_REQUIRED = ("schema", "run_id", "event_id", "time", "pulses")
_OPTIONAL = ("stream", "energy_gev", "signalness", "far_per_year", "geometry", "seed", "truth")
_PULSE_COLUMNS = ("string", "om", "time", "charge")
_MAX_DOM_NUMBER = 2**31
_MAX_ID = 2**63
_TRUTH_KEYS = ("zenith_deg", "azimuth_deg", "x", "y", "z", "t", "energy_gev")
STREAM_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
"""What a ``stream`` may look like (docs/event-format.md): it is written into circulars, notices, log lines and
catalog tables, so it is a short word -- letters, digits and ``_ . + -`` -- never free text."""
MAX_PULSES = 10_000_000
"""More pulses than any detector readout: a larger array is refused before it is converted."""


@dataclass(frozen=True)
class Pulses:
    """Columnar pulse series; one DOM (string, om) may appear several times."""

    string: IntArray
    om: IntArray
    time: FloatArray  # ns
    charge: FloatArray  # photoelectrons

    def __len__(self) -> int:
        return int(self.time.size)


@dataclass(frozen=True)
class Direction:
    """A direction in the detector frame, where the particle comes FROM (degrees)."""

    zenith_deg: float
    azimuth_deg: float


@dataclass(frozen=True)
class Truth:
    """Simulated truth: only the simulator writes it and only tests and reports read it."""

    zenith_deg: float
    azimuth_deg: float
    x: float
    y: float
    z: float
    t: float
    energy_gev: float
    systematics: dict[str, Any] | None = field(default=None, hash=False)
    """The detector variations drawn for this event (skyscan.reco.systematics.DrawnSystematics.to_dict);
    None for an event simulated with the nominal model."""


@dataclass(frozen=True)
class Event:
    """What a reconstruction may see of an alert event."""

    run_id: int
    event_id: int
    time: datetime  # UTC
    pulses: Pulses
    stream: str | None = None
    energy_gev: float | None = None
    signalness: float | None = None
    far_per_year: float | None = None
    geometry: str = "ic86"
    seed: Direction | None = None

    @property
    def time_iso(self) -> str:
        return format_time(self.time)


@dataclass(frozen=True)
class EventFile:
    """An event as read from disk, with the simulation truth kept apart."""

    event: Event
    truth: Truth | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def format_time(t: datetime) -> str:
    """ISO 8601 UTC with microseconds and a trailing Z."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: Any, where: str = "time") -> datetime:
    """An ISO 8601 time as an aware UTC datetime, in the range of :func:`skyscan.reco.untrusted.parse_time`."""
    return untrusted.parse_time(value, where)


def _show(value: float) -> str:
    """NaN and infinities spelt as in JSON, so the message matches what is in the file."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def _number(value: Any, where: str, *, integer: bool = False, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "an integer" if integer else "a number"
        raise InputError(f"{where}: expected {kind}, got {json.dumps(value)[:40]}")
    if integer and not isinstance(value, int):
        raise InputError(f"{where}: expected an integer, got {value!r}")
    if not math.isfinite(value):
        raise InputError(f"{where}: must be finite, got {_show(value)}")
    if minimum is not None and value < minimum:
        raise InputError(f"{where}: must be >= {minimum:g}, got {value!r}")
    if integer and value >= _MAX_ID:
        raise InputError(f"{where}: too large (must be < 2**63), got {value!r}")
    if not integer and abs(value) > 1e300:
        raise InputError(f"{where}: out of range, got {value!r}")
    return value


_NUMBER_TYPES = frozenset((int, float))
_INTEGER_TYPES = frozenset((int,))


def _column(pulses: dict[str, Any], name: str, integer: bool) -> np.ndarray:
    """One pulse column as an array, every element checked; the first bad one is named in the error.

    The common case (every element of an allowed type) is checked with whole-array operations; only a column
    holding some other type is walked element by element. Both give the same array and the same error.
    """
    values = pulses[name]
    if not isinstance(values, list):
        raise InputError(f"pulses.{name}: expected an array")
    if len(values) > MAX_PULSES:
        raise InputError(f"pulses.{name}: more than {MAX_PULSES} pulses")
    if set(map(type, values)) <= (_INTEGER_TYPES if integer else _NUMBER_TYPES):  # bool is a type of its own
        try:
            array = np.asarray(values, dtype=np.int64 if integer else np.float64)
        except (OverflowError, ValueError):  # a Python int beyond 64 bits: the walk says which
            return _walk_column(values, name, integer)
        if integer:
            bad = np.flatnonzero((array < -_MAX_DOM_NUMBER) | (array >= _MAX_DOM_NUMBER))
        else:
            bad = np.flatnonzero(~np.isfinite(array))
        if not bad.size:
            return array
        values = values[: int(bad[0]) + 1]  # the walk below names that element
    return _walk_column(values, name, integer)


def _walk_column(values: list[Any], name: str, integer: bool) -> np.ndarray:
    """:func:`_column` element by element: raises for the first element that is not a valid pulse value."""
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
            kind = "integers" if integer else "numbers"
            raise InputError(f"pulses.{name}[{i}]: expected {kind}, got {json.dumps(v)[:40]}")
        if not integer and not math.isfinite(v):
            raise InputError(f"pulses.{name}[{i}]: must be finite, got {_show(v)}")
        if integer and not -_MAX_DOM_NUMBER <= v < _MAX_DOM_NUMBER:
            raise InputError(f"pulses.{name}[{i}]: DOM number out of range, got {v!r}")
    return np.asarray(values, dtype=np.int64 if integer else np.float64)


def _parse_pulses(raw: Any) -> Pulses:
    if not isinstance(raw, dict):
        raise InputError("pulses: expected an object of columns string, om, time, charge")
    missing = [c for c in _PULSE_COLUMNS if c not in raw]
    if missing:
        raise InputError(f"pulses: missing column {missing[0]!r}")
    extra = sorted(set(raw) - set(_PULSE_COLUMNS))
    if extra:
        raise InputError(f"pulses: unknown column {extra[0]!r}")
    cols = {c: _column(raw, c, c in ("string", "om")) for c in _PULSE_COLUMNS}
    lengths = {c: v.size for c, v in cols.items()}
    if len(set(lengths.values())) != 1:
        desc = ", ".join(f"{c}={n}" for c, n in lengths.items())
        raise InputError(f"pulses: arrays of unequal length ({desc})")
    if lengths["time"] == 0:
        raise InputError("pulses: empty (the event has no pulses)")
    bad = np.flatnonzero(cols["charge"] < 0)
    if bad.size:
        raise InputError(f"pulses.charge[{bad[0]}]: negative charge {cols['charge'][bad[0]]!r}")
    return Pulses(string=cols["string"], om=cols["om"], time=cols["time"], charge=cols["charge"])


def _parse_direction(raw: Any, where: str) -> Direction:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected an object with zenith_deg and azimuth_deg")
    for key in ("zenith_deg", "azimuth_deg"):
        if key not in raw:
            raise InputError(f"{where}: missing field {key!r}")
    zen = _number(raw["zenith_deg"], f"{where}.zenith_deg")
    azi = _number(raw["azimuth_deg"], f"{where}.azimuth_deg")
    if not 0.0 <= zen <= 180.0:
        raise InputError(f"{where}.zenith_deg: must lie in [0, 180], got {zen!r}")
    return Direction(zenith_deg=float(zen), azimuth_deg=float(azi) % 360.0)


def _parse_truth(raw: Any) -> Truth:
    if not isinstance(raw, dict):
        raise InputError("truth: expected an object")
    values: dict[str, float] = {}
    for key in _TRUTH_KEYS:
        if key not in raw:
            raise InputError(f"truth: missing field {key!r}")
        values[key] = float(_number(raw[key], f"truth.{key}"))
    systematics = raw.get("systematics")
    if systematics is not None:
        _check_systematics(systematics, "truth.systematics", 0)
    return Truth(**values, systematics=systematics)


_MAX_SYSTEMATICS_DEPTH = 3
_MAX_SYSTEMATICS_ITEMS = 64


def _check_systematics(value: Any, where: str, depth: int) -> None:
    """A small JSON object of numbers, short strings, booleans and nulls (nested at most 3 deep).

    Only reports read it; it is checked so that what a later reader meets is bounded and finite.
    """
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected an object")
    if depth >= _MAX_SYSTEMATICS_DEPTH or len(value) > _MAX_SYSTEMATICS_ITEMS:
        raise InputError(f"{where}: too large or nested too deeply")
    for key, item in value.items():
        if not isinstance(key, str) or not STREAM_PATTERN.fullmatch(key):
            raise InputError(f"{where}: bad key {untrusted.shown(key)}")
        inner = f"{where}.{key}"
        if isinstance(item, dict):
            _check_systematics(item, inner, depth + 1)
        elif isinstance(item, list):
            if len(item) > _MAX_SYSTEMATICS_ITEMS:
                raise InputError(f"{inner}: too many items")
            for i, v in enumerate(item):
                _number(v, f"{inner}[{i}]")
        elif isinstance(item, str):
            if len(item) > 64:
                raise InputError(f"{inner}: string longer than 64 characters")
        elif item is not None and not isinstance(item, bool):
            _number(item, inner)


def event_from_dict(doc: Any, known_doms: set[tuple[int, int]] | None = None) -> EventFile:
    """Validate a decoded JSON document; raise :class:`InputError` naming the first problem.

    Any other exception raised while validating (whatever the document holds) becomes an InputError too.
    """
    with untrusted.guarded("event"):
        return _event_from_dict(doc, known_doms)


def _event_from_dict(doc: Any, known_doms: set[tuple[int, int]] | None) -> EventFile:
    if not isinstance(doc, dict):
        raise InputError("event: expected a JSON object at the top level")
    if "schema" not in doc:
        raise InputError("schema: missing field (expected 'skyscan-event/1')")
    if doc["schema"] != SCHEMA:
        raise InputError(f"schema: unsupported version {untrusted.shown(doc['schema'])} "
                         f"(this software reads {SCHEMA!r})")
    for key in _REQUIRED:
        if key not in doc:
            raise InputError(f"{key}: missing required field")
    unknown = sorted(set(doc) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise InputError(f"{untrusted.shown(str(unknown[0]))[1:-1]}: unknown field")
    run_id = int(_number(doc["run_id"], "run_id", integer=True, minimum=0))
    event_id = int(_number(doc["event_id"], "event_id", integer=True, minimum=0))
    time = parse_time(doc["time"])
    pulses = _parse_pulses(doc["pulses"])

    stream = doc.get("stream")
    if stream is not None and not isinstance(stream, str):
        raise InputError("stream: expected a string")
    if stream is not None and not STREAM_PATTERN.fullmatch(stream):
        raise InputError(f"stream: {untrusted.shown(stream)} is not a stream name (1-64 letters, digits or _.+-, "
                         "starting with a letter or digit)")
    optional_numbers: dict[str, float | None] = {}
    for key in ("energy_gev", "signalness", "far_per_year"):
        value = doc.get(key)
        optional_numbers[key] = None if value is None else float(_number(value, key, minimum=0))
    geometry = doc.get("geometry", "ic86")
    if not isinstance(geometry, str) or not STREAM_PATTERN.fullmatch(geometry):
        raise InputError("geometry: expected the name of a built-in geometry")
    seed = None if doc.get("seed") is None else _parse_direction(doc["seed"], "seed")
    truth = None if doc.get("truth") is None else _parse_truth(doc["truth"])

    if known_doms is not None:
        check_doms(pulses, known_doms)

    event = Event(
        run_id=run_id,
        event_id=event_id,
        time=time,
        pulses=pulses,
        stream=stream,
        energy_gev=optional_numbers["energy_gev"],
        signalness=optional_numbers["signalness"],
        far_per_year=optional_numbers["far_per_year"],
        geometry=geometry,
        seed=seed,
    )
    return EventFile(event=event, truth=truth)


def check_doms(pulses: Pulses, known_doms: set[tuple[int, int]]) -> None:
    """Raise if a pulse sits on a DOM the geometry does not have."""
    for i, key in enumerate(zip(pulses.string.tolist(), pulses.om.tolist())):
        if key not in known_doms:
            raise InputError(f"pulses[{i}]: DOM string {key[0]} om {key[1]} is not in the geometry")


def read_event(path: str | os.PathLike[str], known_doms: set[tuple[int, int]] | None = None) -> EventFile:
    """Read and validate an event file: every problem is an InputError starting with the path."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such event file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not an event file")
    text = untrusted.read_text(p, "event file")
    if not text.strip():
        raise InputError(f"{p}: empty file, not a JSON event")
    doc = untrusted.loads_json(text, str(p))
    try:
        return event_from_dict(doc, known_doms)
    except InputError as exc:
        raise InputError(f"{p}: {exc}") from None


def event_to_dict(event: Event, truth: Truth | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "run_id": event.run_id,
        "event_id": event.event_id,
        "time": event.time_iso,
    }
    for key in ("stream", "energy_gev", "signalness", "far_per_year"):
        value = getattr(event, key)
        if value is not None:
            doc[key] = value
    doc["geometry"] = event.geometry
    if event.seed is not None:
        doc["seed"] = {"zenith_deg": event.seed.zenith_deg, "azimuth_deg": event.seed.azimuth_deg}
    doc["pulses"] = {
        "string": event.pulses.string.tolist(),
        "om": event.pulses.om.tolist(),
        "time": [round(v, 3) for v in event.pulses.time.tolist()],
        "charge": [round(v, 3) for v in event.pulses.charge.tolist()],
    }
    if truth is not None:
        doc["truth"] = {key: getattr(truth, key) for key in _TRUTH_KEYS}
        if truth.systematics is not None:
            doc["truth"]["systematics"] = copy.deepcopy(truth.systematics)  # the document never aliases the truth
    return doc
