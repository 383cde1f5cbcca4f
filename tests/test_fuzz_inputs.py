"""Property-based fuzzing of the input boundary: the event loader, the config loader and the pixel-spec parser
each return a valid object or raise the project's InputError -- never any other exception.

Bounded for CI (``SKYSCAN_FUZZ_EXAMPLES``, default 150 examples per property, a few seconds each). A long run:
``SKYSCAN_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz_inputs.py``.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyscan.errors import InputError
from skyscan.nodes.scan import parse_pixel_spec
from skyscan.reco.event import STREAM_PATTERN, Event, read_event
from skyscan.settings.scan import ScanConfig, load_config

EXAMPLES = int(os.environ.get("SKYSCAN_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 1000,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])

# JSON-ish values, including the hostile ones: huge integers, non-finite floats, lone surrogates, control chars
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-02-30T00:00:00Z",
                     "2026-03-14T15:09:26Z", "\ud800", "gold\n", "ic86", "skyscan-event/1", "1e400"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _check_event(path: Path) -> None:
    try:
        ef = read_event(path)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    ev = ef.event
    assert isinstance(ev, Event)
    assert 0 <= ev.run_id < 2**63 and 0 <= ev.event_id < 2**63
    assert np.isfinite(ev.pulses.time).all() and np.isfinite(ev.pulses.charge).all()
    assert ev.stream is None or STREAM_PATTERN.fullmatch(ev.stream)
    ev.time_iso.encode("ascii")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every example (each overwrites its file): a temporary folder per example is slow."""
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def base_event(sim_event: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(Path(sim_event.path).read_text())
    doc.pop("truth", None)
    doc["pulses"] = {k: v[:5] for k, v in doc["pulses"].items()}
    return doc


@FUZZ
@given(key=st.sampled_from(["run_id", "event_id", "time", "stream", "energy_gev", "signalness", "far_per_year",
                            "geometry", "seed", "truth", "pulses", "schema", "extra"]), value=values)
def test_fuzz_event_field(scratch: Path, base_event: dict[str, Any], key: str,
                          value: Any) -> None:
    doc = copy.deepcopy(base_event)
    doc[key] = value
    text = json.dumps(doc, ensure_ascii=True, default=str)
    _check_event(_write(scratch / "e.json", text.encode()))


@FUZZ
@given(column=st.sampled_from(["string", "om", "time", "charge"]), value=values)
def test_fuzz_event_pulse_column(scratch: Path, base_event: dict[str, Any],
                                 column: str, value: Any) -> None:
    doc = copy.deepcopy(base_event)
    doc["pulses"][column] = value if isinstance(value, list) else [value] * 5
    _check_event(_write(scratch / "e.json", json.dumps(doc, default=str).encode()))


@FUZZ
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_fuzz_event_bytes(scratch: Path, data: bytes) -> None:
    _check_event(_write(scratch / "e.json", data))


@FUZZ
@given(cut=st.integers(min_value=0, max_value=10_000), junk=st.binary(max_size=8))
def test_fuzz_event_truncated_or_spliced(scratch: Path, base_event: dict[str, Any],
                                         cut: int, junk: bytes) -> None:
    text = json.dumps(base_event).encode()
    cut %= len(text) + 1
    _check_event(_write(scratch / "e.json", text[:cut] + junk + text[cut:]))


config_keys = st.sampled_from(["schema", "scan", "containment", "dag", "jobs", "merge", "reco", "other"])
yaml_text = st.one_of(
    st.text(max_size=120),
    st.builds(lambda k, v: f"{k}: {v}\n", config_keys, st.sampled_from(
        ["1" * 5000, "1e400", "1.0e+400", ".nan", "2020-02-30", "0001-01-01T00:00:00+01:00", "[a", "{a: 1, a: 2}",
         "&a [*a]", "!!python/object:os.system", '"\\ud800"', "5,1", "{retries: 100000000000000000000}"])),
    st.builds(lambda k, v: f"{k}: {json.dumps(v, default=str)}\n", config_keys, values),
    st.builds(lambda k, v: f"dag:\n  {k}: {json.dumps(v, default=str)}\n", st.sampled_from(["retries", "maxjobs"]),
              values),
)


@FUZZ
@given(text=yaml_text | st.binary(max_size=120).map(lambda b: b.decode("latin-1")))
def test_fuzz_config_loader(scratch: Path, text: str) -> None:
    path = scratch / "c.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        cfg = load_config(path)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(cfg, ScanConfig)
    assert 0 <= cfg.retries <= 100
    levels = sorted(cfg.containment.values())
    assert all(np.isfinite(levels))


pixel_specs = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789-, ", max_size=40),
    st.builds(lambda a, b: f"{a}-{b}", st.integers(min_value=-5, max_value=10**30), st.integers(-5, 10**30)),
    st.builds(lambda n: "9" * n, st.integers(min_value=1, max_value=6000)),
)


@FUZZ
@given(spec=pixel_specs, nside=st.sampled_from([1, 2, 8, 64]), as_file=st.booleans())
def test_fuzz_pixel_spec(scratch: Path, spec: str, nside: int, as_file: bool) -> None:
    arg = spec
    if as_file:
        path = scratch / "p.txt"
        path.write_bytes(spec.encode("utf-8", "surrogatepass"))
        arg = str(path)
    try:
        pix = parse_pixel_spec(arg, nside)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert pix.dtype == np.int64 and pix.size > 0
    assert (pix >= 0).all() and (pix < 12 * nside * nside).all()
    assert (np.diff(pix) > 0).all()
