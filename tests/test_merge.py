"""The merge step on synthetic scans: products, their numbers, failed pixels, bad inputs and the commands."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import click
import h5py
import healpy as hp
import numpy as np
import pytest
from click.testing import CliRunner

from skyscan.cli import cli
from skyscan.errors import InputError
from skyscan.nodes.merge import merge_scan
from skyscan.nodes.results import read_fits
from skyscan.nodes.synthetic import write_result_file, write_synthetic_scan
from skyscan.products.fits import read_multiorder_fits
from skyscan.products.hdf5 import read_skymap_h5
from skyscan.products.summary import PRODUCT_FILES
from skyscan.products.write import product_levels
from skyscan.settings.merge import merge_options

CENTRE = (77.0, 5.0)
SIGMA = 2.0
PLAN = ((8, 0), (64, 12))  # 768 + 768 pixels: fast, and the 90% disc (radius ~4.3 deg) is fully refined
SUMMARY_KEYS = {"schema", "run_id", "event_id", "event_time", "stream", "best_fit", "containment", "pixels",
                "software", "products"}
REGION_KEYS = {"level_2dllh", "area_deg2", "ra_plus_deg", "ra_minus_deg", "dec_plus_deg", "dec_minus_deg"}


def _scan(tmp: Path, name: str = "scan", **kw: Any) -> Path:
    args: dict[str, Any] = {"centre_radec": CENTRE, "sigma_deg": SIGMA, "plan": PLAN, "batch_size": 256}
    args.update(kw)
    out: Path = write_synthetic_scan(tmp / name, **args)
    return out


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    out = _scan(tmp_path_factory.mktemp("merge"), config_text="containment: wilks\nmerge:\n  plots: false\n")
    return out, merge_scan(out)


def _cap_area_deg2(radius_deg: float) -> float:
    return 2 * math.pi * (1 - math.cos(math.radians(radius_deg))) * (180 / math.pi) ** 2


def test_summary_follows_the_contract(merged: tuple[Path, Any]) -> None:
    out, result = merged
    doc = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(doc)
    assert doc["schema"] == "skyscan-summary/1"
    assert (doc["run_id"], doc["event_id"], doc["stream"]) == (12, 345, "gold")
    assert doc["event_time"] == "2026-03-14T15:09:26.123456Z"
    assert set(doc["best_fit"]) >= {"ra_deg", "dec_deg", "zenith_deg", "azimuth_deg", "llh", "nside"}
    assert doc["containment"]["method"] == "wilks"
    for label in ("50", "90"):
        assert REGION_KEYS <= set(doc["containment"][label])
    assert doc["pixels"] == {"scanned": 1536, "failed": 0, "by_nside": {"8": 768, "64": 768}}
    assert doc["software"]["version"]
    for key, rel in doc["products"].items():
        assert (out / rel).is_file(), key
    assert doc == result.summary


def test_numbers_match_the_paraboloid(merged: tuple[Path, Any]) -> None:
    _, result = merged
    s = result.summary
    bf = s["best_fit"]
    offset = hp.rotator.angdist([bf["ra_deg"], bf["dec_deg"]], list(CENTRE), lonlat=True)
    assert math.degrees(float(offset[0])) < math.degrees(hp.nside2resol(64))
    assert bf["nside"] == 64
    assert bf["llh"] == pytest.approx(100.0, abs=0.1)
    pixel = math.degrees(hp.nside2resol(64))
    for label, level in (("50", 1.39), ("90", 4.61)):
        reg = s["containment"][label]
        radius = math.sqrt(level) * SIGMA  # 2*delta-llh = (d / sigma)^2
        assert reg["level_2dllh"] == level
        assert reg["area_deg2"] == pytest.approx(_cap_area_deg2(radius), rel=0.12)
        # Errors measured from the best-fit pixel centre to the pixel edges of the region.
        for key in ("dec_plus_deg", "dec_minus_deg"):
            assert abs(reg[key] - radius) < 1.5 * pixel
        for key in ("ra_plus_deg", "ra_minus_deg"):
            assert abs(reg[key] * math.cos(math.radians(CENTRE[1])) - radius) < 1.5 * pixel


def test_zenith_azimuth_match_the_detector_frame(merged: tuple[Path, Any]) -> None:
    from skyscan.reco.coords import local_to_equatorial
    from skyscan.reco.event import parse_time

    bf = merged[1].summary["best_fit"]
    ra, dec = local_to_equatorial(
        math.radians(bf["zenith_deg"]), math.radians(bf["azimuth_deg"]), parse_time("2026-03-14T15:09:26.123456Z")
    )
    assert math.degrees(float(ra)) == pytest.approx(bf["ra_deg"], abs=1e-4)
    assert math.degrees(float(dec)) == pytest.approx(bf["dec_deg"], abs=1e-4)


def test_products_agree_with_each_other(merged: tuple[Path, Any]) -> None:
    out, result = merged
    s = result.summary
    h5 = read_skymap_h5(out / "skymap.h5")
    assert h5.attrs["best_fit_ra_deg"] == pytest.approx(s["best_fit"]["ra_deg"])
    assert json.loads(h5.attrs["containment_json"]) == s["containment"]
    assert h5.attrs["config_yaml"] == (out / "config.yaml").read_text()
    assert h5.event_json == (out / "event.json").read_text()
    assert sorted(h5.stages) == ["stage0", "stage1"]
    assert h5.stages["stage1"].sources == [f"stage1/scan-s1-{b:04d}.h5" for b in range(3)]
    assert np.array_equal(h5.map.uniq, result.map.uniq)
    fits_map = read_multiorder_fits(out / "skymap.multiorder.fits")
    assert fits_map.header["CONTOUR_AREA_90"] == pytest.approx(s["containment"]["90"]["area_deg2"], abs=1e-5)
    assert fits_map.header["RUNID"] == 12 and fits_map.header["EVENTID"] == 345
    notice = json.loads((out / "notice.json").read_text())
    assert notice["ra"] == pytest.approx(s["best_fit"]["ra_deg"], abs=1e-4)
    circular = (out / "circular.txt").read_text()
    assert f"RA: {s['best_fit']['ra_deg']:.2f} (+" in circular
    assert not list(out.rglob("*.part")), "temporary files left behind"


def test_config_options_are_honoured(merged: tuple[Path, Any]) -> None:
    out, result = merged
    assert not (out / "plots").exists()  # merge.plots: false
    assert "plot_fullsky" not in result.summary["products"]
    assert result.summary["flat_nside"] == 64  # auto: the finest nside of the map


def test_failed_pixels_stay_in_the_map_and_are_never_the_best_fit(tmp_path: Path) -> None:
    # Stage 1 lists the children of the 12 nside-8 pixels nearest the centre; fail the ones nearest the centre.
    from skyscan.nodes.synthetic import refine_plan

    nside, pix = refine_plan(CENTRE, PLAN)[1]
    theta, phi = hp.pix2ang(nside, pix, nest=True)
    dist = hp.rotator.angdist(np.vstack([theta, phi]), [math.radians(90 - CENTRE[1]), math.radians(CENTRE[0])])
    nearest = np.argsort(dist)[:5]
    out = _scan(tmp_path, failed={1: nearest.tolist(), 0: [0, 1]}, config_text="merge: {plots: false}\n")
    result = merge_scan(out)
    s = result.summary
    assert s["pixels"]["failed"] == 7
    assert s["map_pixels"]["failed"] == 7
    best_uniq = result.map.uniq[result.map.best_index]
    failed_uniq = 4 * nside**2 + pix[nearest]
    assert best_uniq not in failed_uniq
    assert np.isfinite(result.map.llh[result.map.best_index])
    with h5py.File(out / "skymap.h5") as f:
        assert int(np.count_nonzero(np.isnan(f["multiorder/llh"][()]))) == 7
        assert int(np.count_nonzero(np.isnan(f["stages/stage1/llh"][()]))) == 5
    assert json.loads((out / "summary.json").read_text())["pixels"]["failed"] == 7


def test_containment_from_config_and_override(tmp_path: Path) -> None:
    out = _scan(tmp_path, config_text="containment: calibrated\nmerge: {plots: false}\n")
    s = merge_scan(out).summary
    assert s["containment"]["method"] == "calibrated"
    assert s["containment"]["90"]["level_2dllh"] == 64.2
    s2 = merge_scan(out, containment="2.3,5.9").summary
    assert s2["containment"]["method"] == "explicit"
    assert (s2["containment"]["50"]["level_2dllh"], s2["containment"]["90"]["level_2dllh"]) == (2.3, 5.9)
    assert s2["containment"]["90"]["area_deg2"] < s["containment"]["90"]["area_deg2"]


def test_product_levels() -> None:
    assert product_levels("wilks") == ("wilks", {"50": 1.39, "90": 4.61})
    assert product_levels([5.9, 2.3]) == ("explicit", {"50": 2.3, "90": 5.9})
    assert product_levels({"50": 1.0, "90": 3.0, "99": 9.0})[1]["99"] == 9.0
    for bad in ("1,2,3", {"68": 2.3}, "gold", "-1,2"):
        with pytest.raises(InputError):
            product_levels(bad)


def test_merge_options() -> None:
    assert merge_options({}).flat_nside is None
    opts = merge_options({"merge": {"flat_nside": 128, "plots": True, "zoom_plot": False}})
    assert (opts.flat_nside, opts.plots, opts.zoom_plot) == (128, True, False)
    for bad in ({"flat_nside": 100}, {"flat_nside": 4096}, {"plots": "yes"}, {"colour": 1}, "fast"):
        with pytest.raises(InputError):
            merge_options({"merge": bad})


def _expect_error(out: Path, *words: str) -> None:
    with pytest.raises(InputError) as err:
        merge_scan(out)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)
    for product in PRODUCT_FILES.values():
        assert not (out / product).exists(), product


@pytest.fixture
def scan(tmp_path: Path) -> Path:
    return _scan(tmp_path, config_text="merge: {plots: false}\n")


def test_missing_result_file(scan: Path) -> None:
    (scan / "stage1" / "scan-s1-0001.h5").unlink()
    _expect_error(scan, "stage1/scan-s1-0001.h5", "missing")


def test_corrupt_result_file(scan: Path) -> None:
    (scan / "stage0" / "scan-s0-0002.h5").write_bytes(b"\x89HDF\r\n garbage")
    _expect_error(scan, "stage0/scan-s0-0002.h5", "corrupt")


def test_result_file_missing_a_dataset(scan: Path) -> None:
    with h5py.File(scan / "stage1" / "scan-s1-0000.h5", "a") as f:
        del f["llh"]
    _expect_error(scan, "stage1/scan-s1-0000.h5", "llh")


def test_result_of_another_event(scan: Path) -> None:
    with h5py.File(scan / "stage1" / "scan-s1-0000.h5", "a") as f:
        f.attrs["event_id"] = 999
    _expect_error(scan, "stage1/scan-s1-0000.h5", "event_id")


def test_result_with_out_of_range_pixels(scan: Path) -> None:
    # written whole, with a valid checksum, by a faulty writer: the pixel check still names the file
    path = scan / "stage0" / "scan-s0-0000.h5"
    fits = read_fits(path)
    ipix = np.asarray(fits.ipix).copy()
    ipix[0] = 10_000
    write_result_file(path, fits.nside, ipix, fits.llh, 12, 345)
    _expect_error(scan, "stage0/scan-s0-0000.h5", "out of range")


def test_result_changed_in_place_fails_verification(scan: Path) -> None:
    # the case: one batch's llh overwritten in place once moved the published best fit; now refused
    with h5py.File(scan / "stage0" / "scan-s0-0000.h5", "a") as f:
        f["llh"][...] = f["llh"][()][::-1]
    _expect_error(scan, "stage0/scan-s0-0000.h5", "fails verification", "checksum mismatch")


def test_result_changed_pixels_in_place_fails_verification(scan: Path) -> None:
    with h5py.File(scan / "stage0" / "scan-s0-0000.h5", "a") as f:
        f["ipix"][0] = 10_000
    _expect_error(scan, "stage0/scan-s0-0000.h5", "checksum mismatch")


def test_result_with_complete_unset_or_no_checksum_is_refused(scan: Path) -> None:
    path = scan / "stage1" / "scan-s1-0000.h5"
    with h5py.File(path, "a") as f:
        del f.attrs["complete"]
    _expect_error(scan, "stage1/scan-s1-0000.h5", "not marked complete")
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = True
        del f.attrs["sha256"]
    _expect_error(scan, "stage1/scan-s1-0000.h5", "no checksum")


def test_truncated_result_is_refused(scan: Path) -> None:
    path = scan / "stage0" / "scan-s0-0001.h5"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _expect_error(scan, "stage0/scan-s0-0001.h5")


def test_merge_removes_temporary_files_a_killed_merge_left(scan: Path) -> None:
    # what a SIGKILL between writing and renaming leaves (skyscan.atomic's temporary names)
    stale = [scan / ".skymap.h5.k2j3h4.part", scan / ".summary.json.x9y8.part"]
    (scan / "plots").mkdir()
    stale.append(scan / "plots" / ".skymap-fullsky.png.abc.part")
    for p in stale:
        p.write_bytes(b"half")
    other = scan / ".skyscan.dag.runstate.json.q1w2.part"  # not the merge's: left alone
    other.write_bytes(b"x")
    merge_scan(scan)
    assert [p for p in stale if p.exists()] == []
    assert other.exists()
    assert (scan / "summary.json").is_file()


def test_sky_not_covered(scan: Path) -> None:
    (scan / "stage0" / "scan-s0-0001.h5").unlink()
    (scan / "stage0" / "batch-0001.txt").unlink()
    _expect_error(scan, "cover")


def test_no_results_and_no_event(scan: Path) -> None:
    shutil.rmtree(scan / "stage0")
    shutil.rmtree(scan / "stage1")
    _expect_error(scan, "no scan results")
    (scan / "event.json").unlink()
    _expect_error(scan, "event.json")


def test_bad_config(scan: Path) -> None:
    (scan / "config.yaml").write_text("merge: {flat_nside: 3}\n")
    _expect_error(scan, "merge.flat_nside")
    (scan / "config.yaml").write_text("containment: [1.0, 2.0, 3.0]\n")
    _expect_error(scan, "50% and 90%")
    (scan / "config.yaml").write_text("containment: wilks\n  bad: [\n")
    _expect_error(scan, "invalid YAML")


def test_every_pixel_failed(tmp_path: Path) -> None:
    out = _scan(tmp_path, plan=((8, 0),), failed={0: list(range(768))}, config_text="merge: {plots: false}\n")
    _expect_error(out, "failed")


# --- commands ---------------------------------------------------------------------------------------------------


def _cli() -> click.Group:
    """The real `skyscan` command tree (merge and node merge are registered there)."""
    return cli


def test_cli_merge(scan: Path) -> None:
    result = CliRunner().invoke(_cli(), ["merge", str(scan), "--containment", "calibrated", "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "best fit RA" in result.output and "90% (calibrated" in result.output
    assert json.loads((scan / "summary.json").read_text())["containment"]["method"] == "calibrated"


def test_cli_node_merge_reports_bad_input(scan: Path, input_error: Any) -> None:
    (scan / "stage1" / "scan-s1-0002.h5").unlink()
    result = CliRunner().invoke(_cli(), ["node", "merge", str(scan)])
    input_error(result, "stage1/scan-s1-0002.h5")


def test_cli_merge_refuses_a_damaged_result(scan: Path, input_error: Any) -> None:
    with h5py.File(scan / "stage1" / "scan-s1-0001.h5", "a") as f:
        f["llh"][0] = -1e9  # a better "best fit" than any real one
    result = CliRunner().invoke(_cli(), ["merge", str(scan), "--no-plots"])
    input_error(result, "stage1/scan-s1-0001.h5", "fails verification")
    assert not (scan / "summary.json").exists()


def test_cli_argument_errors(scan: Path, input_error: Any) -> None:
    runner = CliRunner()
    input_error(runner.invoke(_cli(), ["merge"]), "OUTDIR")
    input_error(runner.invoke(_cli(), ["merge", str(scan), "-o", str(scan)]), "--import-npz")
    input_error(runner.invoke(_cli(), ["merge", str(scan), "--containment", "nonsense"]), "nonsense")
    input_error(runner.invoke(_cli(), ["merge", "--import-npz", str(scan / "x.npz")]), "-o")
