"""The campaign report: catalog rows, coverage against known answers, files (CSV, HDF5, HTML, PNG), statistics.

The events are synthetic scans with a paraboloid likelihood (2*delta-llh = (d / sigma)^2 around a known centre),
merged by the real merge step, so where a reference lies relative to the 50% and 90% regions is known in advance.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np
import pytest
from click.testing import CliRunner

import skyscan.campaign as cp
from skyscan.campaign import report as cr
from skyscan.cli.campaign import campaign as campaign_cli
from skyscan.errors import InputError
from skyscan.nodes import merge
from skyscan.nodes.synthetic import write_synthetic_scan
from skyscan.reco.event import event_to_dict, read_event
from skyscan.reco.geometry import ic86
from skyscan.reco.simbatch import BatchSpec, simulate_batch, truth_radec_deg
from skyscan.settings.scan import load_config
from skyscan.settings.site import load_site

SIGMA = 1.0
CENTRES = [(40.0, 10.0), (200.0, -30.0), (300.0, 45.0), (120.0, 5.0)]
OFFSETS = [0.6, 1.6, 4.0]  # reference offsets in sigma (Dec direction) for the first three events
BATCH = BatchSpec(count=4, seed=5, energy_range_gev=(5e3, 2e4), noise_rate_hz=0.0, run_id=8, first_event_id=1)
FINE_NSIDE = 512  # the synthetic scans' finest stage


def _distance_deg(nside: int, ipix: Any, radec: tuple[float, float]) -> Any:
    theta, phi = hp.pix2ang(nside, ipix, nest=True)
    a = np.atleast_2d(np.asarray(hp.ang2vec(theta, phi)))
    b = hp.ang2vec(math.radians(90.0 - radec[1]), math.radians(radec[0]))
    return np.degrees(np.arccos(np.clip(a @ b, -1.0, 1.0)))


def _expected_dllh2(centre: tuple[float, float], ref: tuple[float, float]) -> float:
    """2*delta-llh of the nside-512 pixel holding ref, from the paraboloid's definition (independent of the code):
    (d_ref / sigma)^2 minus the same for the best pixel, the fine pixel centre nearest the centre."""
    theta, phi = math.radians(90.0 - centre[1]), math.radians(centre[0])
    around = np.append(
        hp.get_all_neighbours(FINE_NSIDE, theta, phi, nest=True), hp.ang2pix(FINE_NSIDE, theta, phi, nest=True)
    )
    d_best = float(np.min(_distance_deg(FINE_NSIDE, around[around >= 0], centre)))
    ipix = hp.ang2pix(FINE_NSIDE, math.radians(90.0 - ref[1]), math.radians(ref[0]), nest=True)
    d_ref = float(_distance_deg(FINE_NSIDE, ipix, centre)[0])
    return (d_ref / SIGMA) ** 2 - (d_best / SIGMA) ** 2


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A campaign of 4 merged synthetic scans (+1 rejected input) and a reference file for the first three."""
    base = tmp_path_factory.mktemp("report")
    inputs = base / "inputs"
    inputs.mkdir()
    for item in simulate_batch(BATCH, ic86()):
        (inputs / f"ev{item.event.event_id}.json").write_text(json.dumps(event_to_dict(item.event, item.truth)))
    (inputs / "broken.json").write_text("{not json", encoding="utf-8")
    config = base / "c.yaml"
    config.write_text("scan: {rule: fixed, stages: [{nside: 8}, {nside: 64, refine: 12}], resolve: {min_pixels: 0}}\n", encoding="utf-8")
    camp = base / "camp"
    m = cp.create_campaign([str(inputs)], camp, load_config(config), load_site("local"), python="python3")
    assert len(m.events) == 4 and len(m.rejected) == 1
    truths = {}
    for entry, centre in zip(m.events, CENTRES, strict=True):
        folder = m.event_dir(entry)
        original = read_event(folder / "event.json")
        write_synthetic_scan(
            folder, centre_radec=centre, sigma_deg=SIGMA, run_id=entry.run_id, event_id=entry.event_id,
            event_time=original.event.time_iso,
        )  # fmt: skip
        merge.merge_scan(folder, plots=False)
        from skyscan.nodes.final import write_end_state

        write_end_state(folder, 0, 0)
        if entry.event_id == 4:  # truth only in the event file (not in the summary): the report converts it
            doc = json.loads((folder / "event.json").read_text(encoding="utf-8"))
            doc["truth"] = event_to_dict(original.event, original.truth)["truth"]
            (folder / "event.json").write_text(json.dumps(doc), encoding="utf-8")
            assert original.truth is not None
            truths[entry.name] = truth_radec_deg(original.event, original.truth)
    refs = [(c[0], c[1] + f * SIGMA) for c, f in zip(CENTRES, OFFSETS, strict=False)]
    ref_file = base / "refs.csv"
    lines = ["run_id,event_id,ra,dec,ra_err,dec_err"]
    lines += [f"8,{i + 1},{ra},{dec},0.5,0.4" for i, (ra, dec) in enumerate(refs)]
    ref_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cr.write_report(camp, reference=ref_file)
    return {"camp": camp, "refs": refs, "ref_file": ref_file, "result": result, "truths": truths}


def _row(result: cr.ReportResult, name: str) -> dict[str, Any]:
    return next(r for r in result.rows if r["name"] == name)


def test_rows_know_where_each_reference_lies(synthetic: dict[str, Any]) -> None:
    result: cr.ReportResult = synthetic["result"]
    for i, (ref, f) in enumerate(zip(synthetic["refs"], OFFSETS, strict=True)):
        row = _row(result, f"run8-evt{i + 1}")
        assert row["state"] == "done" and row["ref_source"] == "reference"
        assert (row["ref_ra_deg"], row["ref_dec_deg"]) == pytest.approx(ref)
        assert (row["ref_ra_err_deg"], row["ref_dec_err_deg"]) == (0.5, 0.4)
        assert row["ang_error_deg"] == pytest.approx(f * SIGMA, abs=0.1)  # best fit: a pixel centre near the centre
        assert row["level50_2dllh"] == pytest.approx(1.39) and row["level90_2dllh"] == pytest.approx(4.61)
        assert row["area90_deg2"] == pytest.approx(math.pi * 4.61 * SIGMA**2, rel=0.1)
    expected = [_expected_dllh2(c, r) for c, r in zip(CENTRES, synthetic["refs"][:2], strict=False)]
    got = [_row(result, f"run8-evt{i + 1}")["ref_dllh2"] for i in range(2)]
    assert got == pytest.approx(expected, abs=1e-9)
    assert 0.2 < expected[0] < 1.39 and 1.39 < expected[1] < 4.61  # far from the region boundaries
    assert _row(result, "run8-evt3")["ref_dllh2"] > 9.3  # 4 sigma: outside every plotted level
    flags = [(_row(result, f"run8-evt{i}")["ref_in50"], _row(result, f"run8-evt{i}")["ref_in90"]) for i in (1, 2, 3)]
    assert flags == [(True, True), (False, True), (False, False)]


def test_truth_in_the_event_file_is_a_reference(synthetic: dict[str, Any]) -> None:
    row = _row(synthetic["result"], "run8-evt4")
    assert row["ref_source"] == "truth"
    assert (row["ref_ra_deg"], row["ref_dec_deg"]) == pytest.approx(synthetic["truths"]["run8-evt4"])
    assert row["energy_gev"] is not None and row["ref_ra_err_deg"] is None


def test_statistics_and_coverage(synthetic: dict[str, Any]) -> None:
    stats: cr.Stats = synthetic["result"].stats
    assert stats.counts["done"] == 4 and stats.counts["rejected"] == 1 and stats.counts["events"] == 4
    assert stats.ref_sources == {"reference": 3, "truth": 1}
    rows = [r for r in synthetic["result"].rows if r["ang_error_deg"] is not None]
    assert stats.error_median == pytest.approx(float(np.median([r["ang_error_deg"] for r in rows])))
    cov50, cov90 = stats.coverage["50"], stats.coverage["90"]
    in50 = sum(1 for r in rows if r["ref_in50"])
    assert (cov50.n, cov90.n) == (4, 4) and cov50.k == in50
    assert cov90.k >= 2 and cov90.lo <= cov90.value <= cov90.hi
    levels = [level for _, level, _ in stats.curve]
    assert levels == pytest.approx([-2 * math.log(1 - p) for p in cr.NOMINAL])
    ks = [f.k for _, _, f in stats.curve]
    assert ks == sorted(ks)  # coverage can only grow with the level
    dllh = [r["ref_dllh2"] for r in rows]
    assert ks == [sum(1 for v in dllh if v is not None and v <= level) for level in levels]


def test_a_missing_skymap_is_rebuilt_from_the_stage_results(synthetic: dict[str, Any]) -> None:
    camp: Path = synthetic["camp"]
    manifest = cp.read_manifest(camp)
    entry = manifest.events[1]
    folder = manifest.event_dir(entry)
    from_file = cr.load_map(folder)
    rebuilt = cr.map_from_stages(folder)
    assert np.array_equal(from_file.uniq, rebuilt.uniq) and np.allclose(from_file.llh, rebuilt.llh)
    refs = cr.read_references(synthetic["ref_file"])
    with_h5 = cr.event_row(manifest, entry, refs)
    (folder / "skymap.h5").rename(folder / "skymap.h5.away")
    try:
        without = cr.event_row(manifest, entry, refs)
    finally:
        (folder / "skymap.h5.away").rename(folder / "skymap.h5")
    assert without["ref_dllh2"] == with_h5["ref_dllh2"] and without["ref_in90"] == with_h5["ref_in90"]


def test_catalog_files_agree(synthetic: dict[str, Any]) -> None:
    result: cr.ReportResult = synthetic["result"]
    with io.StringIO(result.files["csv"].read_text(encoding="utf-8")) as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == [c.name for c in cr.COLUMNS]
    assert [r["name"] for r in table] == [f"run8-evt{i}" for i in range(1, 5)] + ["broken.json"]
    assert table[-1]["state"] == "rejected" and "invalid JSON" in table[-1]["note"] and table[-1]["ra_deg"] == ""
    h5 = cr.read_catalog_h5(result.files["h5"])
    assert list(h5["name"]) == [r["name"] for r in table]
    assert np.allclose(h5["ra_deg"][:4], [float(r["ra_deg"]) for r in table[:4]], rtol=1e-5)
    assert math.isnan(h5["ra_deg"][4]) and h5["run_id"][4] == -1
    assert list(h5["ref_in90"]) == [int(r["ref_in90"]) if r["ref_in90"] else -1 for r in table]
    assert list(h5["run_id"][:4]) == [8, 8, 8, 8]


def test_html_report_is_self_contained(synthetic: dict[str, Any]) -> None:
    result: cr.ReportResult = synthetic["result"]
    folder = result.outdir
    text = result.files["html"].read_text(encoding="utf-8")
    for name in ("area90", "angular_error", "coverage"):
        assert f'src="figures/{name}.png"' in text
        png = folder / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "median angular error" in text and "coverage of the 90% regions" in text and "broken.json" in text
    assert str(synthetic["camp"]) not in text and "http" not in text  # offline: nothing absolute, nothing remote
    doc = json.loads(result.files["json"].read_text(encoding="utf-8"))
    assert doc["schema"] == "skyscan-campaign-report/1"
    assert doc["references"]["coverage"]["90"]["n"] == 4 and doc["references"]["n"] == 4


def test_cli_report_into_another_folder(synthetic: dict[str, Any], cli_runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere"
    args = ["report", str(synthetic["camp"]), "-o", str(out), "--reference", str(synthetic["ref_file"])]
    result = cli_runner.invoke(campaign_cli, args)
    assert result.exit_code == 0, result.output
    assert "4 with a reference" in result.output and "median angular error" in result.output
    assert (out / "report.html").is_file() and (out / "catalog.h5").is_file()
    alone = cli_runner.invoke(campaign_cli, ["report", str(synthetic["camp"]), "-o", str(tmp_path / "no-refs")])
    assert alone.exit_code == 0 and "1 with a reference" in alone.output  # only the simulation truth is left
    bad = cli_runner.invoke(campaign_cli, ["report", str(synthetic["camp"]), "--reference", str(tmp_path / "no.csv")])
    assert bad.exit_code == 2 and "no such reference file" in bad.stderr


# --- pieces ---------------------------------------------------------------------------------------------------------
def test_clopper_pearson_against_closed_forms_and_scipy() -> None:
    from scipy.stats import binomtest

    alpha = 1 - cr.CI_LEVEL
    f = cr.clopper_pearson(0, 10)
    assert (f.lo, f.hi) == (0.0, pytest.approx(1 - (alpha / 2) ** (1 / 10)))
    f = cr.clopper_pearson(10, 10)
    assert (f.lo, f.hi) == (pytest.approx((alpha / 2) ** (1 / 10)), 1.0)
    f = cr.clopper_pearson(9, 30)
    ci = binomtest(9, 30).proportion_ci(confidence_level=cr.CI_LEVEL, method="exact")
    assert (f.lo, f.hi) == (pytest.approx(ci.low), pytest.approx(ci.high)) and f.value == pytest.approx(0.3)
    assert math.isnan(cr.clopper_pearson(0, 0).value)


def test_wilks_levels() -> None:
    from scipy.stats import chi2

    for p in (0.5, 0.9, 0.99):
        assert cr.wilks_level(p) == pytest.approx(float(chi2.ppf(p, 2)))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("run_id,event_id,ra\n1,2,3\n", ("dec",)),
        ("run_id,event_id,ra,dec\n1,2,abc,4\n", (":2:",)),
        ("run_id,event_id,ra,dec\n1,2,3,95\n", (":2:", "dec")),
        ("run_id,event_id,ra,dec\n1,2,3,4\n1,2,5,6\n", (":3:", "second reference")),
    ],
)
def test_bad_reference_files(tmp_path: Path, text: str, words: tuple[str, ...]) -> None:
    path = tmp_path / "refs.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as info:
        cr.read_references(path)
    for word in words:
        assert word in str(info.value)


def test_reference_file_aliases_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "refs.csv"
    path.write_text("Run_ID,Event_ID,RA_deg,Dec_deg,err\n# published\n1,2,-10,5,0.7\n\n", encoding="utf-8")
    refs = cr.read_references(path)
    assert refs == {(1, 2): cr.Reference(350.0, 5.0, 0.7, 0.7)}


def _table(path: Path, levels: dict[str, float]) -> Path:
    """A one-bin calibration table (schema skyscan-calibration-table/1) with these levels everywhere."""
    curve = [{"nominal": p, "level_2dllh": levels["90"] if p >= 0.9 else levels["50"]} for p in cr.NOMINAL]
    doc = {"schema": "skyscan-calibration-table/1", "observable": "total_charge", "n": 50,
           "bins": [{"lo": 0.0, "hi": 1e9, "n": 50, "levels": levels, "curve": curve}]}  # fmt: skip
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_report_with_a_calibration_table_adds_the_calibrated_coverage(synthetic: dict[str, Any], tmp_path: Path) -> None:
    """Only run8-evt4 has a simulation truth: its T decides the calibrated coverage (1 event), before and after."""
    t = _row(synthetic["result"], "run8-evt4")["ref_dllh2"]
    assert t is not None and t > 0
    wide = _table(tmp_path / "wide.json", {"50": t * 1.5, "90": t * 3.0})
    narrow = _table(tmp_path / "narrow.json", {"50": t / 4.0, "90": t / 2.0})
    for table, inside in ((wide, 1), (narrow, 0)):
        out = tmp_path / table.stem
        result = cr.write_report(synthetic["camp"], out, calibration=table)
        cal = result.stats.calibrated
        assert cal is not None and cal.observable == "total_charge"
        assert (cal.coverage["90"].n, cal.coverage["90"].k) == (1, inside)
        assert (cal.coverage["50"].n, cal.coverage["50"].k) == (1, inside)
        assert [p for p, _ in cal.curve] == list(cr.NOMINAL) and all(f.k == inside for _, f in cal.curve)
        doc = json.loads((out / "report.json").read_text())
        assert doc["references"]["calibrated"]["coverage"]["90"]["k"] == inside
        assert (out / "figures" / "coverage.png").is_file()
        assert "calibrated 90% levels" in (out / "report.html").read_text()
    plain = cr.write_report(synthetic["camp"], tmp_path / "plain")
    assert plain.stats.calibrated is None and "calibrated" not in json.loads(
        (tmp_path / "plain" / "report.json").read_text())["references"]  # fmt: skip


def test_report_with_a_bad_calibration_table_is_an_input_error(synthetic: dict[str, Any], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "skyscan-calibration-table/1", "observable": "total_charge", "bins": []}')
    with pytest.raises(InputError, match="bins"):
        cr.write_report(synthetic["camp"], tmp_path / "out", calibration=bad)
