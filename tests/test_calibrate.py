"""Calibrated containment without a scan: the level finder, calibration.json, calibration tables, level specs.

The level finder is checked on draws with a known answer (the truths' 2*delta-llh drawn from chi-square with 2
degrees of freedom: the 50% and 90% levels must come out as its quantiles 1.386 and 4.605); the file readers on
hand-made good and bad files; the tables on synthetic (observable, T) pairs whose spread depends on the observable.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import chi2

from skyscan.calibrate.collect import calibration_document
from skyscan.calibrate.dag import Request
from skyscan.calibrate.find import find_level, level_curve, level_result, product_levels, quantile_interval
from skyscan.calibrate.pseudo import PseudoResult
from skyscan.calibrate.source import SourceTrack, StagePlan, disc_radius_deg
from skyscan.calibrate.table import table_document
from skyscan.errors import InputError
from skyscan.products.levels import (
    CALIBRATION_SCHEMA,
    TABLE_SCHEMA,
    LevelContext,
    check_product_levels,
    choose_levels,
    event_observables,
    is_calibrated_method,
    level_context,
    read_calibration,
    read_calibration_table,
    resolve_levels,
)

CHI2_50 = float(chi2.ppf(0.5, 2))  # 1.386
CHI2_90 = float(chi2.ppf(0.9, 2))  # 4.605


# --- the level finder ------------------------------------------------------------------------------------------
def test_levels_of_chi2_truths_are_its_quantiles() -> None:
    t = np.random.default_rng(11).chisquare(2, 20000)
    levels = product_levels(t)
    assert levels["50"].level == pytest.approx(CHI2_50, rel=0.04)
    assert levels["90"].level == pytest.approx(CHI2_90, rel=0.04)
    for label, p in (("50", 0.5), ("90", 0.9)):
        lv = levels[label]
        assert lv.k / lv.n >= p  # the promise: at least p of the truths inside
        assert lv.level_lo <= lv.level <= lv.level_hi
        assert lv.coverage_lo <= p <= lv.coverage_hi


def test_scaled_truths_scale_the_levels() -> None:
    """Regions too small by a factor: truths at 4x the chi2 draws need 4x the Wilks levels."""
    t = 4.0 * np.random.default_rng(5).chisquare(2, 20000)
    levels = product_levels(t)
    assert levels["90"].level == pytest.approx(4.0 * CHI2_90, rel=0.05)


def test_find_level_takes_rank_ceil_p_times_n_plus_one() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]  # sorted 1..5; N + 1 = 6
    assert find_level(values, 0.5) == 3.0  # rank ceil(3.0) = 3
    assert find_level(values, 0.2) == 2.0  # rank ceil(1.2) = 2 (the plain empirical quantile would take 1)
    assert find_level(values, 0.1) == 1.0  # rank ceil(0.6) = 1
    assert find_level(values, 0.9) == 5.0  # rank ceil(5.4) = 6 > N: the largest truth
    assert find_level([0.0, 0.0, 7.0], 0.5) == 0.0  # the truth in the best-fit pixel: level 0
    assert find_level(np.arange(1.0, 31.0), 0.9) == 28.0  # 30 truths: rank ceil(27.9) = 28, not 27
    assert find_level(np.arange(1.0, 31.0), 0.5) == 16.0  # rank ceil(15.5) = 16, not 15


def test_levels_cover_new_events_at_least_at_nominal_on_average() -> None:
    """The levels are applied to a new event: over many calibrations of 30 truths, a fresh truth from the same
    distribution must fall inside the 90% level at least 90% of the time (the empirical 27th of 30 gives 87%)."""
    rng = np.random.default_rng(17)
    trials = 4000
    cal = rng.chisquare(2, (trials, 30))
    fresh = rng.chisquare(2, trials)
    for p, lo in ((0.9, 0.89), (0.5, 0.495)):
        inside = np.mean([fresh[i] <= find_level(cal[i], p) for i in range(trials)])
        assert lo <= inside <= p + 0.04, (p, inside)


def test_failed_truths_count_as_outside() -> None:
    values = [1.0, 2.0, 3.0, float("nan"), math.inf]
    assert find_level(values, 0.5) == 3.0
    with pytest.raises(InputError, match="cannot be reached"):
        find_level(values, 0.9)
    curve = level_curve(values, (0.5, 0.9))
    assert curve[0]["level_2dllh"] == 3.0 and curve[1]["level_2dllh"] is None


def test_quantile_interval_covers_the_true_quantile_about_68_percent_of_the_time() -> None:
    rng = np.random.default_rng(3)
    inside = 0
    trials = 300
    for _ in range(trials):
        lo, hi = quantile_interval(rng.chisquare(2, 60), 0.9)
        inside += lo <= CHI2_90 <= hi
    assert 0.58 <= inside / trials <= 0.85


def test_level_result_rejects_bad_coverage() -> None:
    with pytest.raises(InputError):
        level_result([1.0, 2.0], "x", 1.0)
    with pytest.raises(InputError, match="no pseudo-events"):
        find_level([], 0.5)


# --- calibration.json -----------------------------------------------------------------------------------------
def _source(tmp_path: Path) -> SourceTrack:
    return SourceTrack(
        scandir=str(tmp_path / "scan"), run_id=7, event_id=8,
        event_time=datetime(2026, 5, 1, 6, 30, tzinfo=timezone.utc), stream="gold", geometry="ic86",
        ra_deg=120.0, dec_deg=-5.0, zenith_deg=95.0, azimuth_deg=10.0, vertex=(1.0, 2.0, 3.0), time_ns=1e4,
        energy_gev=2e5, energy_from="event", llh=1000.0, nside=512, rule="fixed",
        stages=(StagePlan(8, None), StagePlan(64, 12)), adaptive={"threshold": 4.61, "margin": 2.0, "max_refine": 48},
        resolve={"min_pixels": 0, "max_nside": 0}, reco={}, disc_deg=5.0, r99_deg=1.0, config_sha256="c" * 64,
        event_sha256="e" * 64,
    )  # fmt: skip


def _request(tmp_path: Path, n: int) -> Request:
    return Request(_source(tmp_path), n=n, batch_size=10, seed=4, systematics="default",
                   systematics_record={"schema": "skyscan-systematics/1"}, software_version="x", site="local")  # fmt: skip


def _pseudo(values: list[float | None]) -> list[PseudoResult]:
    return [PseudoResult(i, v, 0.1, 50.0, 100, 300, 900.0, 0.5) for i, v in enumerate(values)]


def test_calibration_document_schema(tmp_path: Path) -> None:
    t = list(np.random.default_rng(2).chisquare(2, 200) * 3.0)
    values: list[float | None] = [*t[:-1], None]  # one truth pixel failed
    doc = calibration_document(_request(tmp_path, 200), _pseudo(values))
    json.dumps(doc, allow_nan=False)  # strict JSON
    assert doc["schema"] == CALIBRATION_SCHEMA
    assert set(doc["levels"]) == {"50", "90"} and doc["levels"]["90"] > doc["levels"]["50"] > 0
    assert doc["n"] == 200
    for label in ("50", "90"):
        cov = doc["coverage"][label]
        lo, hi = cov["coverage_interval_68"]
        assert lo <= cov["coverage"] <= hi and cov["n"] == 200
    assert doc["wilks"]["90"]["coverage"] < 0.9  # the truths are 3x too spread for Wilks
    assert doc["systematics"] == {"schema": "skyscan-systematics/1"}
    assert doc["seeds"]["seed"] == 4
    assert doc["software"]["version"]
    assert doc["config_sha256"] == "c" * 64
    src = doc["source"]
    assert (src["run_id"], src["event_id"]) == (7, 8) and len(src["path_sha256"]) == 64
    assert doc["cost"]["cpu_seconds_per_pseudo_event"] == pytest.approx(0.5)
    assert doc["disc"]["radius_deg"] == 5.0 and doc["disc"]["too_small"] == 0
    assert len(doc["pseudo_events"]) == 200


def _write_calibration(tmp_path: Path, **changes: Any) -> Path:
    doc = calibration_document(_request(tmp_path, 50), _pseudo(list(np.linspace(0.5, 30.0, 50))))
    doc.update(changes)
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(doc))
    return path


def test_calibration_file_gives_levels_and_a_record(tmp_path: Path) -> None:
    path = _write_calibration(tmp_path)
    cal = read_calibration(path)
    choice = choose_levels(str(path), LevelContext(7, 8, {}))
    assert choice.levels == cal.levels and choice.calibrated
    assert choice.calibration is not None and choice.calibration["sha256"] == cal.sha256
    assert is_calibrated_method(choice.method) and "calibration.json" in choice.method
    method, levels = check_product_levels(str(path))
    assert levels == cal.levels and method == choice.method
    assert resolve_levels(str(path)) == cal.levels  # what the scan configuration sees


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"schema": "skyscan-calibration/9"}, "not a calibration file"),
        ({"schema": TABLE_SCHEMA}, "calibration table"),
        ({"levels": {"50": 2.0}}, "missing the 90% level"),
        ({"levels": {"50": 5.0, "90": 2.0}}, "below the 50% level"),
        ({"levels": {"50": "a", "90": 2.0}}, "must be a number"),
        ({"n": 0}, "n must be"),
        ({"source": None}, "source"),
    ],
)
def test_bad_calibration_files_are_one_input_error(tmp_path: Path, changes: dict[str, Any], words: str) -> None:
    path = _write_calibration(tmp_path, **changes)
    with pytest.raises(InputError, match=words):
        check_product_levels(str(path))


def test_unreadable_calibration_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such calibration file"):
        check_product_levels(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        check_product_levels(str(bad))


def test_calibration_of_another_event_is_refused(tmp_path: Path) -> None:
    path = _write_calibration(tmp_path)
    with level_context(LevelContext(7, 9, {})), pytest.raises(InputError, match="run 7 event 8, not of"):
        check_product_levels(str(path))


# --- calibration tables ---------------------------------------------------------------------------------------
def _pairs(n: int, seed: int) -> list[tuple[float, float]]:
    """Bright events (charge > 1000 pe) have truths 4x as spread as Wilks says, faint ones 1x."""
    rng = np.random.default_rng(seed)
    charge = 10 ** rng.uniform(2, 4, n)
    scale = np.where(charge > 1000.0, 4.0, 1.0)
    return list(zip(charge.tolist(), (scale * rng.chisquare(2, n)).tolist(), strict=True))


def test_table_levels_follow_the_observable(tmp_path: Path) -> None:
    doc = table_document(_pairs(3000, 1), "total_charge", min_per_bin=500, max_bins=2)
    json.dumps(doc, allow_nan=False)
    assert doc["schema"] == TABLE_SCHEMA and len(doc["bins"]) == 2
    faint, bright = doc["bins"]
    assert faint["lo"] == 0.0 and math.isclose(faint["hi"], bright["lo"])
    assert faint["levels"]["90"] == pytest.approx(CHI2_90, rel=0.12)
    assert bright["levels"]["90"] == pytest.approx(4 * CHI2_90, rel=0.12)
    path = tmp_path / "table.json"
    path.write_text(json.dumps(doc))
    table = read_calibration_table(path)
    assert table.lookup(150.0)[0] == 0 and table.lookup(5000.0)[0] == 1 and table.lookup(1e9)[0] == 1
    spec = {"table": str(path)}
    assert resolve_levels(spec) == bright["levels"]  # the widest bin: what a scan refines around
    choice = choose_levels(spec, LevelContext(1, 2, event_observables([1, 1], [1, 2], [3000.0, 2000.0])))
    assert choice.levels == bright["levels"] and choice.calibration is not None
    assert choice.calibration["bin"] == 1 and choice.calibration["value"] == 5000.0
    assert is_calibrated_method(choice.method)


def test_table_needs_enough_events() -> None:
    with pytest.raises(InputError, match="min-per-bin"):
        table_document(_pairs(10, 2), "total_charge", min_per_bin=30, max_bins=5)


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda d: d.update(observable="energy"), "observable"),
        (lambda d: d.update(bins=[]), "bins"),
        (lambda d: d["bins"][1].update(lo=d["bins"][1]["lo"] + 1.0), "does not continue"),
        (lambda d: d["bins"][0]["levels"].pop("50"), "missing the 50% level"),
    ],
)
def test_bad_tables_are_one_input_error(tmp_path: Path, mutate: Any, words: str) -> None:
    doc = table_document(_pairs(400, 3), "total_charge", min_per_bin=100, max_bins=2)
    mutate(doc)
    path = tmp_path / "table.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=words):
        check_product_levels({"table": str(path)})  # type: ignore[arg-type]


def test_scan_configuration_accepts_a_table(tmp_path: Path) -> None:
    from skyscan.settings.scan import load_config

    path = tmp_path / "table.json"
    path.write_text(json.dumps(table_document(_pairs(400, 4), "hit_doms", min_per_bin=100, max_bins=2)))
    config = tmp_path / "c.yaml"
    config.write_text(f"containment: {{table: {path}}}\n")
    cfg = load_config(config)
    assert set(cfg.containment) == {"50", "90"} and cfg.threshold("90") > cfg.threshold("50")


def test_disc_radius_rule() -> None:
    assert disc_radius_deg(0.1) == 6.0  # at least MIN_DISC_DEG
    assert disc_radius_deg(4.0) == pytest.approx(14.0)
    assert disc_radius_deg(40.0) == 60.0
    assert disc_radius_deg(1.0, 2.5) == 2.5
    with pytest.raises(InputError, match="--disc-deg"):
        disc_radius_deg(1.0, 0.0)
