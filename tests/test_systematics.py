"""Systematics in the simulator (skyscan.reco.systematics) and `skyscan simulate --systematics`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from skyscan.cli import cli
from skyscan.reco import photonics as ph
from skyscan.reco.errors import InputError
from skyscan.reco.event import event_from_dict, event_to_dict, read_event
from skyscan.reco.geometry import Geometry, ic86
from skyscan.reco.simbatch import BatchSpec, simulate_batch
from skyscan.reco.simulate import BENCHMARK_SEED, BENCHMARK_TIME, TrackSpec, benchmark_spec, simulate_track
from skyscan.reco.systematics import (
    DEFAULT_SYSTEMATICS,
    NO_SYSTEMATICS,
    SCHEMA,
    DrawnSystematics,
    Systematics,
    dom_efficiency_factors,
    load_systematics,
    sample_delays,
)

if TYPE_CHECKING:
    from conftest import InputErrorCheck

# sha256 of json.dumps(event_to_dict(...)) of events simulated BEFORE systematics existed (recorded from the
# simulator as it was): the nominal path must reproduce them bit for bit.
BENCHMARK_DOC_SHA256 = "29da62b63e533f8ab5d5344b1553f5513a6273add555209ccbf8050e25af2988"
BATCH_DOCS_SHA256 = "643e81ab2c46a0c40bc163926312a0f9bdec7c172e86d31c5e11a3d714a0eb03"  # BatchSpec(count=5, seed=3)

TRACK = TrackSpec(zenith_deg=100.0, azimuth_deg=40.0, energy_gev=1e5, noise_rate_hz=0.0)


def _sha(doc: object) -> str:
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class FixedSystematics(Systematics):
    """A test double: always 'draws' the given values (so one variation can be set exactly)."""

    fixed: dict[str, float] = dataclasses.field(default_factory=dict, compare=False, hash=False)

    def draw(self, rng: np.random.Generator, n_doms: int) -> DrawnSystematics:
        values = {"absorption_scale": 1.0, "scattering_scale": 1.0, "efficiency_scale": 1.0,
                  "noise_rate_scale": 1.0, "jitter_ns": None, **self.fixed}  # fmt: skip
        dom = self.fixed.get("dom_efficiency")
        return DrawnSystematics(
            absorption_scale=float(values["absorption_scale"]),  # type: ignore[arg-type]
            scattering_scale=float(values["scattering_scale"]),  # type: ignore[arg-type]
            efficiency_scale=float(values["efficiency_scale"]),  # type: ignore[arg-type]
            noise_rate_scale=float(values["noise_rate_scale"]),  # type: ignore[arg-type]
            jitter_ns=values["jitter_ns"],
            delay_model=self.delay_model,
            dom_efficiency_seed=0,
            dom_efficiency=np.ones(n_doms) if dom is None else np.asarray(dom, dtype=np.float64),
        )


def _fixed(**values: object) -> FixedSystematics:
    return FixedSystematics(fixed=dict(values))  # type: ignore[arg-type]


# --- the nominal model is today's simulator --------------------------------------------------------------------------
def test_no_systematics_is_todays_simulator_bit_for_bit() -> None:
    for systematics in (None, NO_SYSTEMATICS, load_systematics("none"), Systematics()):
        ev, tr = simulate_track(
            benchmark_spec(), ic86(), np.random.default_rng(BENCHMARK_SEED), event_time=BENCHMARK_TIME,
            systematics=systematics,
        )  # fmt: skip
        assert tr.systematics is None
        assert _sha(event_to_dict(ev, tr)) == BENCHMARK_DOC_SHA256
    batch = simulate_batch(BatchSpec(count=5, seed=3, systematics=NO_SYSTEMATICS), ic86())
    assert _sha([event_to_dict(x.event, x.truth) for x in batch]) == BATCH_DOCS_SHA256
    assert "systematics" not in event_to_dict(batch[0].event, batch[0].truth)["truth"]


def test_same_seed_same_event_and_other_seeds_other_draws() -> None:
    def run(seed: int) -> dict[str, object]:
        ev, tr = simulate_track(TRACK, ic86(), np.random.default_rng(seed), systematics=DEFAULT_SYSTEMATICS)
        return event_to_dict(ev, tr)

    a, b, c = run(7), run(7), run(8)
    assert a == b
    assert a != c
    sa, sc = a["truth"]["systematics"], c["truth"]["systematics"]  # type: ignore[index]
    for key in ("absorption_scale", "scattering_scale", "efficiency_scale", "noise_rate_scale", "jitter_ns",
                "dom_efficiency_seed"):  # fmt: skip
        assert sa[key] != sc[key], key
    # with the default systematics the event differs from the nominal one of the same seed
    nominal, _ = simulate_track(TRACK, ic86(), np.random.default_rng(7))
    assert event_to_dict(nominal)["pulses"] != a["pulses"]


def test_draws_have_the_configured_spreads() -> None:
    spreads = Systematics(absorption_scale_sigma=0.1, scattering_scale_sigma=0.05, efficiency_sigma=0.2,
                          dom_efficiency_sigma=0.1, noise_rate_sigma=0.3, jitter_ns=(2.0, 6.0))  # fmt: skip
    rng = np.random.default_rng(2024)
    draws = [spreads.draw(rng, 100) for _ in range(4000)]
    n = len(draws)
    for attr, sigma in (("absorption_scale", 0.1), ("scattering_scale", 0.05), ("efficiency_scale", 0.2),
                        ("noise_rate_scale", 0.3)):  # fmt: skip
        values = np.array([getattr(d, attr) for d in draws])
        assert values.min() > 0.0, attr
        assert abs(values.mean() - 1.0) < 4.0 * sigma / math.sqrt(n), attr  # mean 1 within 4 standard errors
        assert abs(values.std() / sigma - 1.0) < 0.08, attr  # std = sigma within ~4 standard errors of a std
    jitter = np.array([d.jitter_ns for d in draws], dtype=np.float64)
    assert jitter.min() >= 2.0 and jitter.max() <= 6.0
    assert abs(jitter.mean() - 4.0) < 0.1 and abs(jitter.std() - 4.0 / math.sqrt(12.0)) < 0.05  # uniform
    # per DOM: independent factors, mean 1 and std 0.1 within one event of 5,000 DOMs
    dom = spreads.draw(np.random.default_rng(5), 5000).dom_efficiency
    assert dom.shape == (5000,)
    assert abs(dom.mean() - 1.0) < 4 * 0.1 / math.sqrt(5000) and abs(dom.std() / 0.1 - 1.0) < 0.06
    assert abs(np.corrcoef(dom[:-1], dom[1:])[0, 1]) < 0.06  # no correlation between neighbours
    # two events get different per-DOM factors, which the recorded seed regenerates
    d1, d2 = spreads.draw(rng, 50), spreads.draw(rng, 50)
    assert not np.array_equal(d1.dom_efficiency, d2.dom_efficiency)
    np.testing.assert_array_equal(dom_efficiency_factors(d1.dom_efficiency_seed, 50, 0.1), d1.dom_efficiency)


def test_a_zero_spread_draws_exactly_one_and_spreads_do_not_share_draws() -> None:
    nothing = Systematics(jitter_ns=None).draw(np.random.default_rng(1), 10)
    assert (nothing.absorption_scale, nothing.scattering_scale, nothing.efficiency_scale,
            nothing.noise_rate_scale, nothing.jitter_ns) == (1.0, 1.0, 1.0, 1.0, None)  # fmt: skip
    assert np.all(nothing.dom_efficiency == 1.0)
    # widening one spread leaves the other draws of the same seed as they were
    a = DEFAULT_SYSTEMATICS.draw(np.random.default_rng(3), 10)
    b = dataclasses.replace(DEFAULT_SYSTEMATICS, efficiency_sigma=0.3).draw(np.random.default_rng(3), 10)
    assert a.absorption_scale == b.absorption_scale and a.noise_rate_scale == b.noise_rate_scale
    assert a.efficiency_scale != b.efficiency_scale
    assert (a.efficiency_scale - 1.0) * (b.efficiency_scale - 1.0) > 0  # same normal, larger spread


# --- what each variation does -------------------------------------------------------------------------------------
def _total_charge(systematics: Systematics | None, seeds: range, spec: TrackSpec = TRACK) -> np.ndarray:
    out = []
    for seed in seeds:
        ev, _ = simulate_track(spec, ic86(), np.random.default_rng(seed), systematics=systematics)
        out.append(float(ev.pulses.charge.sum()))
    return np.array(out)


def test_efficiency_plus_ten_percent_increases_the_charge() -> None:
    seeds = range(30)
    nominal = _total_charge(_fixed(efficiency_scale=1.0), seeds)
    brighter = _total_charge(_fixed(efficiency_scale=1.1), seeds)
    assert nominal.mean() > 100.0  # enough light for the ratio to mean something
    ratio = brighter.mean() / nominal.mean()
    assert 1.06 < ratio < 1.14, ratio


def test_per_dom_efficiency_applies_to_each_dom_in_geometry_order() -> None:
    geo = ic86()
    dark = np.where(geo.string % 2 == 0, 0.0, 1.0)  # even strings get no light at all
    spec = dataclasses.replace(TRACK, energy_gev=1e6)
    ev, _ = simulate_track(spec, geo, np.random.default_rng(4), systematics=_fixed(dom_efficiency=dark))
    assert len(ev.pulses) > 50
    assert np.all(ev.pulses.string % 2 == 1)
    nominal, _ = simulate_track(spec, geo, np.random.default_rng(4))
    assert np.any(nominal.pulses.string % 2 == 0)


def test_noise_rate_scale_multiplies_the_dark_hits() -> None:
    far = TrackSpec(zenith_deg=90.0, azimuth_deg=0.0, energy_gev=1e3, vertex=(0.0, 5000.0, 0.0), noise_rate_hz=500.0)
    base = np.mean([len(simulate_track(far, ic86(), np.random.default_rng(s), systematics=_fixed())[0].pulses)
                    for s in range(10)])  # fmt: skip
    triple = np.mean([len(simulate_track(far, ic86(), np.random.default_rng(s),
                                         systematics=_fixed(noise_rate_scale=3.0))[0].pulses) for s in range(10)])  # fmt: skip
    expected = len(ic86()) * 500e-9 * ph.READOUT_WINDOW_NS  # ~52 noise hits per event
    assert abs(base - expected) < 0.25 * expected
    assert 2.6 < triple / base < 3.4


def test_longer_absorption_gives_more_light_far_from_the_track() -> None:
    seeds = range(10)
    shorter = _total_charge(_fixed(absorption_scale=0.9), seeds)
    longer = _total_charge(_fixed(absorption_scale=1.1), seeds)
    assert longer.mean() > 1.03 * shorter.mean()


def test_ice_scales_move_the_delays_the_expected_way() -> None:
    for model in ("pandel", "two_component"):
        def mean_delay(**scales: float) -> float:
            return float(sample_delays(np.random.default_rng(3), model, 60.0, 20_000, **scales).mean())  # noqa: B023

        # longer scattering length: less scattering, earlier light; longer absorption: more late light survives
        assert mean_delay(scattering_scale=1.2) < 0.95 * mean_delay(scattering_scale=0.8), model
        assert mean_delay(absorption_scale=1.2) > 1.02 * mean_delay(absorption_scale=0.8), model


def _residuals(systematics: Systematics | None, seeds: range) -> np.ndarray:
    """Time residuals of every pulse, against the direct Cherenkov time computed here from the geometry."""
    geo: Geometry = ic86()
    spec = dataclasses.replace(TRACK, energy_gev=5e5)
    zen, azi = math.radians(spec.zenith_deg), math.radians(spec.azimuth_deg)
    d = -np.array([math.sin(zen) * math.cos(azi), math.sin(zen) * math.sin(azi), math.cos(zen)])
    along = geo.pos @ d
    perp = np.linalg.norm(geo.pos - along[:, None] * d[None, :], axis=1)
    t_geo = spec.time_ns + (along + perp * math.tan(math.acos(1.0 / 1.32))) / 0.299792458
    out = []
    for seed in seeds:
        ev, _ = simulate_track(spec, geo, np.random.default_rng(seed), systematics=systematics)
        rows = geo.index_of(ev.pulses.string, ev.pulses.om)
        near = perp[rows] < 150.0
        out.append((ev.pulses.time - t_geo[rows])[near])
    return np.concatenate(out)


def test_two_component_delays_differ_in_shape_from_pandel() -> None:
    # the samplers themselves, at a few distances
    for d_eff in (10.0, 40.0, 100.0):
        pandel = sample_delays(np.random.default_rng(1), "pandel", d_eff, 20_000)
        nominal = np.random.default_rng(2).gamma(d_eff / ph.LAMBDA_M, 1.0 / ph.RHO_PER_NS, 20_000)
        assert stats.ks_2samp(pandel, nominal).statistic < 0.02  # unscaled "pandel" is the likelihood's PDF
        two = sample_delays(np.random.default_rng(1), "two_component", d_eff, 20_000)
        assert two.min() >= 0.0
        assert stats.ks_2samp(pandel, two).statistic > 0.1, d_eff
    # and the residuals of whole events (no other variation), against a geometry computed here
    res_pandel = _residuals(None, range(3))
    res_two = _residuals(Systematics(delay_model="two_component"), range(3))
    assert res_pandel.size > 500 and res_two.size > 500
    assert stats.ks_2samp(res_pandel, res_two).statistic > 0.1
    q_pandel, q_two = np.quantile(res_pandel, [0.25, 0.75]), np.quantile(res_two, [0.25, 0.75])
    assert np.max(np.abs(q_pandel - q_two)) > 10.0  # ns


def test_wider_jitter_gives_more_early_pulses() -> None:
    # most pulses come hundreds of ns late (scattered light); only a Gaussian jitter makes them early
    early_nominal = np.sum(_residuals(_fixed(jitter_ns=3.0), range(2)) < -10.0)  # > 3 sigma early: ~none
    early_wide = np.sum(_residuals(_fixed(jitter_ns=15.0), range(2)) < -10.0)  # ~20 of ~3,000 pulses
    assert early_nominal <= 2 and early_wide >= 8


# --- truth: recorded, written, read back ----------------------------------------------------------------------------
def test_truth_records_the_drawn_values_and_round_trips() -> None:
    ev, tr = simulate_track(TRACK, ic86(), np.random.default_rng(9), systematics=DEFAULT_SYSTEMATICS)
    assert tr.systematics is not None
    again = DEFAULT_SYSTEMATICS.draw(np.random.default_rng(9), len(ic86()))  # drawn first from the event's stream
    assert tr.systematics == again.to_dict()
    assert tr.systematics["delay_model"] == "two_component" and tr.systematics["n_doms"] == len(ic86())
    assert tr.systematics["spreads"] == DEFAULT_SYSTEMATICS.to_dict()
    doc = json.loads(json.dumps(event_to_dict(ev, tr)))
    back = event_from_dict(doc).truth
    assert back == tr


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("x", ("truth.systematics", "object")),
        ({"a": float("nan")}, ("truth.systematics.a", "finite")),
        ({"a": "y" * 65}, ("truth.systematics.a", "64")),
        ({"bad key!": 1}, ("truth.systematics", "key")),
        ({"a": {"b": {"c": {"d": 1}}}}, ("truth.systematics", "deep")),
        ({"a": [1, "two"]}, ("truth.systematics.a[1]",)),
    ],
)
def test_bad_truth_systematics_are_refused(value: object, words: tuple[str, ...]) -> None:
    ev, tr = simulate_track(TRACK, ic86(), np.random.default_rng(1))
    doc = event_to_dict(ev, tr)
    doc["truth"]["systematics"] = value
    with pytest.raises(InputError) as info:
        event_from_dict(doc)
    for word in words:
        assert word in str(info.value)


# --- reading systematics files -------------------------------------------------------------------------------------
def test_load_none_default_and_a_file(tmp_path: Path) -> None:
    assert load_systematics("none") is NO_SYSTEMATICS and NO_SYSTEMATICS.is_null
    assert load_systematics("default") is DEFAULT_SYSTEMATICS and not DEFAULT_SYSTEMATICS.is_null
    assert DEFAULT_SYSTEMATICS.delay_model == "two_component"
    assert DEFAULT_SYSTEMATICS.absorption_scale_sigma == 0.1 and DEFAULT_SYSTEMATICS.dom_efficiency_sigma == 0.1
    # to_dict written as YAML reads back as the same value
    import yaml

    f = tmp_path / "sys.yaml"
    f.write_text(yaml.safe_dump(DEFAULT_SYSTEMATICS.to_dict()), encoding="utf-8")
    assert load_systematics(str(f)) == DEFAULT_SYSTEMATICS
    f.write_text(f"schema: {SCHEMA}\nefficiency_sigma: 0.2\njitter_ns: 4\n", encoding="utf-8")
    partial = load_systematics(str(f))
    assert partial == Systematics(efficiency_sigma=0.2, jitter_ns=(4.0, 4.0))  # missing keys: no variation
    f.write_text(f"schema: {SCHEMA}\nbase: default\ndelay_model: pandel\n", encoding="utf-8")
    assert load_systematics(str(f)) == dataclasses.replace(DEFAULT_SYSTEMATICS, delay_model="pandel")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("schema: [unclosed\n", ("invalid YAML",)),
        ("- 1\n- 2\n", ("mapping",)),
        ("efficiency_sigma: 0.1\n", ("schema", "missing")),
        ("schema: skyscan-systematics/2\n", ("schema",)),
        (f"schema: {SCHEMA}\nabsorption_sigma: 0.1\n", ("absorption_sigma", "unknown key")),
        (f"schema: {SCHEMA}\nefficiency_sigma: -0.1\n", ("efficiency_sigma", ">= 0")),
        (f"schema: {SCHEMA}\nefficiency_sigma: 1.5\n", ("efficiency_sigma", "[0, 1]")),
        (f"schema: {SCHEMA}\nnoise_rate_sigma: .nan\n", ("noise_rate_sigma", "finite")),
        (f"schema: {SCHEMA}\nnoise_rate_sigma: yes\n", ("noise_rate_sigma",)),
        (f"schema: {SCHEMA}\nscattering_scale_sigma: '0.1'\n", ("scattering_scale_sigma",)),
        (f"schema: {SCHEMA}\njitter_ns: [5, 3]\n", ("jitter_ns",)),
        (f"schema: {SCHEMA}\njitter_ns: [1, 2, 3]\n", ("jitter_ns",)),
        (f"schema: {SCHEMA}\njitter_ns: -1\n", ("jitter_ns",)),
        (f"schema: {SCHEMA}\ndelay_model: gauss\n", ("delay_model", "two_component")),
        (f"schema: {SCHEMA}\nbase: maybe\n", ("base",)),
        (f"schema: {SCHEMA}\nefficiency_sigma: 0.1\nefficiency_sigma: 0.2\n", ("duplicate key",)),
        ("schema: !!python/object:os.system x\n", ("invalid YAML",)),
    ],
)
def test_bad_systematics_files_are_one_line(tmp_path: Path, text: str, words: tuple[str, ...]) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_systematics(str(f))
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(f)), message
    for word in words:
        assert word in message, message


def test_unreadable_or_missing_systematics_files(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes(b"schema: caf\xe9\n")
    with pytest.raises(InputError, match="UTF-8"):
        load_systematics(str(f))
    with pytest.raises(InputError, match=r"none.*default"):
        load_systematics(str(tmp_path / "missing.yaml"))
    with pytest.raises(InputError, match="directory"):
        load_systematics(str(tmp_path))


def test_bad_values_in_code_are_refused_too() -> None:
    with pytest.raises(InputError, match="dom_efficiency_sigma"):
        Systematics(dom_efficiency_sigma=-0.1)
    with pytest.raises(InputError, match="delay_model"):
        Systematics(delay_model="gauss")
    with pytest.raises(InputError, match="systematics"):
        simulate_batch(BatchSpec(count=1, systematics="default"), ic86())  # type: ignore[arg-type]


# --- batches and the command line -----------------------------------------------------------------------------------
def test_batch_systematics_keep_the_tracks_and_are_reproducible() -> None:
    plain = simulate_batch(BatchSpec(count=3, seed=5, energy_range_gev=(2e3, 2e4), noise_rate_hz=0.0), ic86())
    varied_spec = BatchSpec(count=3, seed=5, energy_range_gev=(2e3, 2e4), noise_rate_hz=0.0,
                            systematics=DEFAULT_SYSTEMATICS)  # fmt: skip
    varied = simulate_batch(varied_spec, ic86())
    assert [x.spec for x in plain] == [x.spec for x in varied]  # the same tracks: drawn before the variations
    assert all(x.truth.systematics is not None for x in varied)
    assert [event_to_dict(x.event, x.truth) for x in simulate_batch(varied_spec, ic86())] == [
        event_to_dict(x.event, x.truth) for x in varied
    ]
    drawn = [x.truth.systematics["efficiency_scale"] for x in varied]  # type: ignore[index]
    assert len(set(drawn)) == 3  # each event its own draw


def test_cli_default_systematics_event_loads_back(cli_runner: CliRunner, tmp_path: Path) -> None:
    from skyscan.graph.event import load_event

    out = tmp_path / "varied.json"
    args = ["simulate", "--zenith", "100", "--azimuth", "40", "--energy", "1e5", "--seed", "3"]
    result = cli_runner.invoke(cli, [*args, "--systematics", "default", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "systematics" in result.stdout and "two_component" in result.stdout
    ef, _ = load_event(out)  # what `skyscan run` does with it
    assert ef.truth is not None and ef.truth.systematics is not None
    spreads = ef.truth.systematics["spreads"]
    assert spreads == DEFAULT_SYSTEMATICS.to_dict()
    for key in ("absorption_scale", "scattering_scale", "efficiency_scale", "noise_rate_scale"):
        assert 0.5 < ef.truth.systematics[key] < 1.5 and ef.truth.systematics[key] != 1.0
    assert 3.0 <= ef.truth.systematics["jitter_ns"] <= 5.0
    # --systematics none (the default) writes exactly the event written without the option
    plain, none = tmp_path / "plain.json", tmp_path / "none.json"
    assert cli_runner.invoke(cli, [*args, "-o", str(plain)]).exit_code == 0
    assert cli_runner.invoke(cli, [*args, "--systematics", "none", "-o", str(none)]).exit_code == 0
    assert plain.read_bytes() == none.read_bytes()
    assert "systematics" not in json.loads(plain.read_text())["truth"]


def test_cli_benchmark_preset_stays_and_takes_systematics(cli_runner: CliRunner, tmp_path: Path) -> None:
    plain, varied = tmp_path / "bench.json", tmp_path / "bench-sys.json"
    assert cli_runner.invoke(cli, ["simulate", "--preset", "benchmark", "-o", str(plain)]).exit_code == 0
    doc = json.loads(plain.read_text())
    ev, tr = simulate_track(benchmark_spec(), ic86(), np.random.default_rng(BENCHMARK_SEED), event_time=BENCHMARK_TIME)
    assert doc["pulses"] == event_to_dict(ev, tr)["pulses"]  # the standard event is unchanged
    result = cli_runner.invoke(cli, ["simulate", "--preset", "benchmark", "--systematics", "default", "-o", str(varied)])
    assert result.exit_code == 0, result.output
    assert read_event(varied).truth.systematics is not None  # type: ignore[union-attr]


def test_cli_count_with_a_systematics_file(cli_runner: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "sys.yaml"
    f.write_text(f"schema: {SCHEMA}\nefficiency_sigma: 0.2\ndelay_model: two_component\n", encoding="utf-8")
    out = tmp_path / "events"
    args = ["simulate", "--count", "2", "--energy-range", "2e3", "2e4", "--noise-rate", "0", "--seed", "4"]
    result = cli_runner.invoke(cli, [*args, "--systematics", str(f), "-o", str(out)])
    assert result.exit_code == 0, result.output
    events = [read_event(p, known_doms=ic86().keys) for p in sorted(out.glob("*.json"))]
    assert len(events) == 2
    for ef in events:
        assert ef.truth is not None and ef.truth.systematics is not None
        assert ef.truth.systematics["spreads"]["efficiency_sigma"] == 0.2
        assert ef.truth.systematics["absorption_scale"] == 1.0  # not varied by this file
    lib = simulate_batch(BatchSpec(count=2, seed=4, energy_range_gev=(2e3, 2e4), noise_rate_hz=0.0,
                                   systematics=load_systematics(str(f))), ic86())  # fmt: skip
    assert [event_to_dict(x.event, x.truth) for x in lib] == [
        json.loads(p.read_text()) for p in sorted(out.glob("*.json"))
    ]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--systematics", "maybe"], ("maybe", "none", "default")),
        (["--count", "2", "--systematics", "maybe"], ("maybe",)),
    ],
)
def test_cli_bad_systematics_is_one_line(
    cli_runner: CliRunner, input_error: InputErrorCheck, tmp_path: Path, args: list[str], words: tuple[str, ...]
) -> None:
    out = tmp_path / "out"
    input_error(cli_runner.invoke(cli, ["simulate", *args, "-o", str(out)]), *words)
    assert not out.exists()


def test_cli_bad_systematics_file_is_one_line(cli_runner: CliRunner, input_error: InputErrorCheck, tmp_path: Path) -> None:
    f = tmp_path / "sys.yaml"
    f.write_text(f"schema: {SCHEMA}\ndom_efficiency_sigma: -1\n", encoding="utf-8")
    input_error(cli_runner.invoke(cli, ["simulate", "--systematics", str(f), "-o", str(tmp_path / "e.json")]),
                "dom_efficiency_sigma")  # fmt: skip
