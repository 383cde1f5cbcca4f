"""Batches of simulated events (skyscan.reco.simbatch) and `skyscan simulate --count`."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from click.testing import CliRunner

from skyscan.cli import cli
from skyscan.reco.errors import InputError
from skyscan.reco.event import event_to_dict, read_event
from skyscan.reco.geometry import ic86
from skyscan.reco.simbatch import (
    BatchSpec,
    draw_track,
    event_rng,
    instrumented_cylinder,
    iter_batch,
    simulate_batch,
    truth_radec_deg,
)

if TYPE_CHECKING:
    from conftest import InputErrorCheck

# Low energies without noise: a few dozen pulses per event, simulated in milliseconds.
SMALL = BatchSpec(count=4, seed=11, energy_range_gev=(2e3, 2e4), noise_rate_hz=0.0)


def _draws(batch: BatchSpec, n: int) -> list[tuple[float, float, float, tuple[float, float, float], float]]:
    cyl = instrumented_cylinder(ic86())
    out = []
    for i in range(n):
        spec, offset = draw_track(batch, event_rng(batch.seed, i), cyl)
        out.append((spec.energy_gev, spec.zenith_deg, spec.azimuth_deg, spec.vertex, offset.total_seconds()))
    return out


def test_same_seed_same_events_and_prefix_stability() -> None:
    a = simulate_batch(SMALL, ic86())
    b = simulate_batch(SMALL, ic86())
    longer = simulate_batch(replace(SMALL, count=6), ic86())
    docs = [event_to_dict(x.event, x.truth) for x in a]
    assert docs == [event_to_dict(x.event, x.truth) for x in b]
    assert docs == [event_to_dict(x.event, x.truth) for x in longer[:4]]  # event i does not depend on count
    other = simulate_batch(replace(SMALL, seed=12), ic86())
    assert docs != [event_to_dict(x.event, x.truth) for x in other]


def test_ids_times_and_truth() -> None:
    events = simulate_batch(replace(SMALL, run_id=9, first_event_id=100, time_span_days=10.0), ic86())
    assert [(e.event.run_id, e.event.event_id) for e in events] == [(9, 100), (9, 101), (9, 102), (9, 103)]
    for e in events:
        assert SMALL.start_time <= e.event.time <= SMALL.start_time + timedelta(days=10)
        assert e.truth.zenith_deg == e.spec.zenith_deg and e.truth.energy_gev == e.spec.energy_gev
        assert e.event.energy_gev == e.spec.energy_gev
        assert len(e.event.pulses) > 0
    assert len({e.event.time for e in events}) == len(events)


def test_energy_spread_is_log_uniform_within_the_range() -> None:
    batch = BatchSpec(count=1, seed=3, energy_range_gev=(1e4, 1e6))
    energies = np.array([d[0] for d in _draws(batch, 400)])
    assert energies.min() >= 1e4 * (1 - 1e-6) and energies.max() <= 1e6 * (1 + 1e-6)
    # log-uniform: a quarter of the draws per half-decade, within generous statistical bounds
    per_bin = np.histogram(np.log10(energies), bins=4, range=(4, 6))[0]
    assert all(60 <= n <= 140 for n in per_bin), per_bin
    assert abs(np.median(np.log10(energies)) - 5.0) < 0.15


def test_directions_isotropic_and_upgoing() -> None:
    iso = _draws(BatchSpec(count=1, seed=5), 400)
    cos_zen = np.cos(np.radians([d[1] for d in iso]))
    assert (cos_zen > 0).sum() > 150 and (cos_zen < 0).sum() > 150  # both hemispheres
    assert abs(float(np.mean(cos_zen))) < 0.1  # cos(zenith) uniform: mean 0
    azimuths = np.array([d[2] for d in iso])
    assert azimuths.min() >= 0 and azimuths.max() < 360 and np.ptp(azimuths) > 300
    up = _draws(BatchSpec(count=1, seed=5, directions="upgoing"), 400)
    assert all(d[1] > 90.0 for d in up)
    assert max(d[1] for d in up) > 170.0 and min(d[1] for d in up) < 100.0


def test_vertices_inside_the_detector() -> None:
    geo = ic86()
    pos = geo.pos
    radius_doms = np.hypot(pos[:, 0] - pos[:, 0].mean(), pos[:, 1] - pos[:, 1].mean()).max()
    for _, _, _, (x, y, z), _ in _draws(BatchSpec(count=1, seed=8), 300):
        assert math.hypot(x - pos[:, 0].mean(), y - pos[:, 1].mean()) <= radius_doms
        assert pos[:, 2].min() <= z <= pos[:, 2].max()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"count": 0}, ("count",)),
        ({"energy_range_gev": (1e5, 1e4)}, ("energy range",)),
        ({"energy_range_gev": (0.0, 1e4)}, ("energy range",)),
        ({"directions": "downgoing"}, ("directions", "downgoing")),
        ({"time_span_days": -1.0}, ("time span",)),
        ({"noise_rate_hz": float("nan")}, ("noise rate",)),
        ({"vertex_fraction": 1.5}, ("vertex fraction",)),
        ({"systematics": "default"}, ("systematics", "str")),
    ],
)
def test_bad_batch_specs(change: dict[str, object], words: tuple[str, ...]) -> None:
    with pytest.raises(InputError) as info:
        list(iter_batch(replace(SMALL, **change), ic86()))
    for word in words:
        assert word in str(info.value)


def test_systematics_vary_the_photons_not_the_tracks() -> None:
    from skyscan.reco.systematics import DEFAULT_SYSTEMATICS

    plain = simulate_batch(SMALL, ic86())
    varied = simulate_batch(replace(SMALL, systematics=DEFAULT_SYSTEMATICS), ic86())
    longer = simulate_batch(replace(SMALL, count=6, systematics=DEFAULT_SYSTEMATICS), ic86())
    assert [e.spec for e in varied] == [e.spec for e in plain]
    assert [(e.truth.zenith_deg, e.truth.x, e.truth.t) for e in varied] == [
        (e.truth.zenith_deg, e.truth.x, e.truth.t) for e in plain
    ]
    docs = [event_to_dict(e.event, e.truth) for e in varied]
    assert docs == [event_to_dict(e.event, e.truth) for e in longer[:4]]  # still independent of count
    assert all(e.truth.systematics is not None and e.truth.systematics["delay_model"] == "two_component" for e in varied)
    assert all(p.truth.systematics is None for p in plain)
    assert any(v.event.pulses.time.tolist() != p.event.pulses.time.tolist() for v, p in zip(varied, plain, strict=True))


def test_truth_radec_matches_the_coordinate_conversion() -> None:
    from skyscan.reco.coords import local_to_equatorial

    e = simulate_batch(replace(SMALL, count=1), ic86())[0]
    ra, dec = truth_radec_deg(e.event, e.truth)
    r, d = local_to_equatorial(math.radians(e.truth.zenith_deg), math.radians(e.truth.azimuth_deg), e.event.time)
    assert ra == pytest.approx(math.degrees(float(r)) % 360.0)
    assert dec == pytest.approx(math.degrees(float(d)))
    assert 0.0 <= ra < 360.0 and -90.0 <= dec <= 90.0


# --- command line ---------------------------------------------------------------------------------------------------
COUNT_ARGS = ["simulate", "--count", "3", "--energy-range", "2e3", "2e4", "--noise-rate", "0", "--seed", "4",
              "--run-id", "5", "--event-id", "10"]  # fmt: skip


def test_cli_count_writes_distinct_events_and_a_truth_table(cli_runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "sims"
    result = cli_runner.invoke(cli, [*COUNT_ARGS, "-o", str(out)])
    assert result.exit_code == 0, result.output
    files = sorted(out.glob("*.json"))
    assert [f.name for f in files] == ["run5-evt10.json", "run5-evt11.json", "run5-evt12.json"]
    events = [read_event(f, known_doms=ic86().keys) for f in files]
    assert len({(e.event.run_id, e.event.event_id) for e in events}) == 3
    assert all(e.truth is not None and 2e3 <= e.truth.energy_gev <= 2e4 for e in events)
    with (out / "truth.csv").open(encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert [(int(r["run_id"]), int(r["event_id"]), r["file"]) for r in table] == [
        (5, 10 + i, f.name) for i, f in enumerate(files)
    ]
    for row, ef in zip(table, events, strict=True):
        assert ef.truth is not None
        ra, dec = truth_radec_deg(ef.event, ef.truth)
        assert float(row["ra"]) == pytest.approx(ra, abs=1e-5) and float(row["dec"]) == pytest.approx(dec, abs=1e-5)
    # the same command again: the same bytes; the library gives the same events
    again = tmp_path / "again"
    assert cli_runner.invoke(cli, [*COUNT_ARGS, "-o", str(again)]).exit_code == 0
    for f in files:
        assert (again / f.name).read_bytes() == f.read_bytes()
    lib = simulate_batch(
        BatchSpec(count=3, seed=4, energy_range_gev=(2e3, 2e4), noise_rate_hz=0.0, run_id=5, first_event_id=10), ic86()
    )
    assert [event_to_dict(x.event, x.truth) for x in lib] == [json.loads(f.read_text()) for f in files]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--count", "2", "--zenith", "30"], ("--zenith", "--count")),
        (["--count", "2", "--preset", "benchmark"], ("--preset",)),
        (["--count", "0"], ("--count",)),
        (["--count", "2", "--energy-range", "5e4", "1e3"], ("--energy-range",)),
        (["--energy-range", "1e3", "1e4"], ("--energy-range", "--count")),
        (["--directions", "upgoing"], ("--directions", "--count")),
        (["--count", "2", "--time-span", "-3"], ("--time-span",)),
    ],
)
def test_cli_count_bad_options(
    cli_runner: CliRunner, input_error: InputErrorCheck, tmp_path: Path, args: list[str], words: tuple[str, ...]
) -> None:
    out = tmp_path / "sims"
    result = cli_runner.invoke(cli, ["simulate", *args, "-o", str(out)])
    input_error(result, *words)
    assert not out.exists()


def test_cli_count_output_must_be_a_directory(
    cli_runner: CliRunner, input_error: InputErrorCheck, tmp_path: Path
) -> None:
    existing = tmp_path / "file.json"
    existing.write_text("{}", encoding="utf-8")
    result = cli_runner.invoke(cli, ["simulate", "--count", "2", "-o", str(existing)])
    input_error(result, "not a directory")
    # and without --count a directory is not an event file
    input_error(cli_runner.invoke(cli, ["simulate", "-o", str(tmp_path)]), "is a directory")
