"""The skyscan-event/1 format: what it accepts, what it rejects (one line naming the field), and the truth policy."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyscan.errors import InputError
from skyscan.reco import event as event_mod
from skyscan.reco.event import (
    SCHEMA,
    Event,
    EventFile,
    event_from_dict,
    event_to_dict,
    format_time,
    parse_time,
    read_event,
)
from skyscan.reco.geometry import builtin, ic86

if TYPE_CHECKING:
    from conftest import BadInput, SimulatedEvent


def _write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _minimal_doc() -> dict[str, Any]:
    """Only the required fields; two pulses on one DOM and one on another."""
    return {
        "schema": SCHEMA,
        "run_id": 0,
        "event_id": 0,
        "time": "2026-01-01T00:00:00Z",
        "pulses": {"string": [36, 36, 37], "om": [30, 30, 31], "time": [10.0, 60.5, 12.25], "charge": [1.0, 0.4, 2.5]},
    }


def _load(path: Path) -> EventFile:
    """Read as the scan node does: the event, then its geometry and the DOM check."""
    ef = read_event(path, known_doms=ic86().keys)
    builtin(ef.event.geometry)
    return ef


# --- accepted input -----------------------------------------------------------------------------------------------
def test_simulated_event_reads_back(sim_event: SimulatedEvent) -> None:
    ef = read_event(sim_event.path, known_doms=ic86().keys)
    ev, orig = ef.event, sim_event.event
    assert (ev.run_id, ev.event_id, ev.stream, ev.geometry) == (12, 345, "gold", "ic86")
    assert ev.time == orig.time and ev.time.tzinfo is not None
    assert ev.energy_gev == pytest.approx(orig.energy_gev)
    np.testing.assert_array_equal(ev.pulses.string, orig.pulses.string)
    np.testing.assert_array_equal(ev.pulses.om, orig.pulses.om)
    np.testing.assert_allclose(ev.pulses.time, orig.pulses.time, atol=5e-4)
    np.testing.assert_allclose(ev.pulses.charge, orig.pulses.charge, atol=5e-4)
    assert ev.pulses.string.dtype == np.int64 and ev.pulses.time.dtype == np.float64
    assert ef.truth == sim_event.truth


def test_minimal_event_defaults(tmp_path: Path) -> None:
    ef = read_event(_write(tmp_path / "e.json", _minimal_doc()))
    ev = ef.event
    assert ev.geometry == "ic86"
    assert ev.stream is None and ev.energy_gev is None and ev.signalness is None and ev.far_per_year is None
    assert ev.seed is None and ef.truth is None
    assert len(ev.pulses) == 3


def test_several_pulses_on_one_dom_are_kept(tmp_path: Path) -> None:
    ev = read_event(_write(tmp_path / "e.json", _minimal_doc()), known_doms=ic86().keys).event
    doms = Counter(zip(ev.pulses.string.tolist(), ev.pulses.om.tolist(), strict=True))
    assert doms[(36, 30)] == 2
    np.testing.assert_array_equal(ev.pulses.time, [10.0, 60.5, 12.25])


def test_null_optional_fields_mean_absent(tmp_path: Path) -> None:
    doc = _minimal_doc() | {"stream": None, "seed": None, "truth": None, "energy_gev": None}
    ef = read_event(_write(tmp_path / "e.json", doc))
    assert ef.event.stream is None and ef.event.seed is None and ef.truth is None and ef.event.energy_gev is None


def test_all_optional_fields(tmp_path: Path) -> None:
    doc = _minimal_doc() | {
        "stream": "bronze",
        "energy_gev": 2.5e5,
        "signalness": 0.4,
        "far_per_year": 1.2,
        "geometry": "ic86",
        "seed": {"zenith_deg": 110, "azimuth_deg": -30},
        "truth": {"zenith_deg": 111.0, "azimuth_deg": 331.0, "x": 1, "y": 2, "z": 3, "t": 4.5, "energy_gev": 3e5},
    }
    ef = read_event(_write(tmp_path / "e.json", doc))
    ev = ef.event
    assert (ev.stream, ev.energy_gev, ev.signalness, ev.far_per_year) == ("bronze", 2.5e5, 0.4, 1.2)
    assert ev.seed is not None
    assert ev.seed.zenith_deg == 110.0
    assert ev.seed.azimuth_deg == pytest.approx(330.0)  # azimuth folded into [0, 360)
    assert ef.truth is not None and (ef.truth.x, ef.truth.t, ef.truth.energy_gev) == (1.0, 4.5, 3e5)


def test_round_trip_through_dict(sim_event: SimulatedEvent) -> None:
    doc = event_to_dict(sim_event.event, sim_event.truth)
    assert doc["schema"] == SCHEMA
    again = event_from_dict(json.loads(json.dumps(doc)))
    assert event_to_dict(again.event, again.truth) == doc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-14T15:09:26Z", datetime(2026, 3, 14, 15, 9, 26, tzinfo=timezone.utc)),
        ("2026-03-14T15:09:26.535Z", datetime(2026, 3, 14, 15, 9, 26, 535_000, tzinfo=timezone.utc)),
        ("2026-03-14T16:09:26+01:00", datetime(2026, 3, 14, 15, 9, 26, tzinfo=timezone.utc)),
        ("2026-03-14T15:09:26", datetime(2026, 3, 14, 15, 9, 26, tzinfo=timezone.utc)),  # no zone: UTC
    ],
)
def test_times_are_utc(text: str, expected: datetime) -> None:
    t = parse_time(text)
    assert t == expected
    assert t.utcoffset() == timedelta(0)
    assert parse_time(format_time(t)) == t
    assert format_time(t).endswith("Z")


# --- truth policy -------------------------------------------------------------------------------------------------
def test_event_cannot_carry_truth(sim_event: SimulatedEvent) -> None:
    names = {f.name for f in dataclasses.fields(Event)}
    assert "truth" not in names
    ef = read_event(sim_event.path)
    assert ef.truth is not None
    for value in dataclasses.asdict(ef.event).values():
        assert value != dataclasses.asdict(ef.truth)
    assert not hasattr(ef.event, "truth")


def test_event_without_truth_writes_no_truth(sim_event: SimulatedEvent) -> None:
    assert "truth" not in event_to_dict(sim_event.event)


# --- rejected input -------------------------------------------------------------------------------------------------
def test_bad_event_is_rejected(bad_event: tuple[Path, BadInput]) -> None:
    path, case = bad_event
    with pytest.raises(InputError) as info:
        _load(path)
    message = str(info.value)
    assert "\n" not in message
    for word in case.expect:
        assert word in message, (word, message)
    if not (case.missing or case.directory or case.id == "geometry-unknown"):
        assert str(path) in message  # names the file too


def test_geometry_only_problems_pass_without_geometry(geometry_only_bad_event: Path, sim_event: SimulatedEvent) -> None:
    """DOM and geometry-name checks need the geometry; without one the rest of the event still validates."""
    assert len(read_event(geometry_only_bad_event).event.pulses) == len(sim_event.event.pulses)


def test_dict_level_errors_do_not_name_a_file() -> None:
    doc = _minimal_doc()
    doc["pulses"]["charge"][1] = -1.0
    with pytest.raises(InputError, match=r"^pulses\.charge\[1\]: negative charge"):
        event_from_dict(doc)
    with pytest.raises(InputError, match="JSON object"):
        event_from_dict([doc])


def test_nan_literal_names_the_field(tmp_path: Path) -> None:
    text = json.dumps(_minimal_doc()).replace('"charge": [1.0', '"charge": [NaN')
    path = tmp_path / "e.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=r"pulses\.charge\[0\]"):
        read_event(path)




_ELEMENTS = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from([2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, 2**70]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([True, False, None, "7", [1], {"a": 1}]),
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(values=st.lists(st.one_of(st.sampled_from([1, 2, 3.5, 6.25]), _ELEMENTS), max_size=12),
       integer=st.booleans())
def test_pulse_columns_checked_as_arrays_give_the_element_walks_array_and_error(values: list[Any], integer: bool) -> None:
    """The whole-array check of a pulse column is an optimisation: same array, same first bad element named."""

    def outcome(fn: Any, arg: Any) -> tuple[str, Any]:
        try:
            return "ok", fn(arg, "time", integer).tolist()
        except InputError as exc:
            return "error", str(exc)
        except OverflowError:  # a Python int beyond the float range, in a number column (not reachable from JSON)
            return "overflow", None

    fast = outcome(event_mod._column, {"time": values})
    walked = outcome(event_mod._walk_column, values)
    assert fast[0] == walked[0]
    if fast[0] == "ok":
        np.testing.assert_array_equal(np.asarray(fast[1]), np.asarray(walked[1]))
    else:
        assert fast == walked
