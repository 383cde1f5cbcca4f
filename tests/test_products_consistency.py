"""Products that agree with themselves: the FITS map's credible regions equal the quoted ones, both FITS maps carry
the same identity cards, the skyreader export reads back with IceCube's own reader, and the plots' colour scales."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np
import pytest
from astropy.io import fits

from skyscan.nodes.merge import merge_scan
from skyscan.nodes.synthetic import write_synthetic_scan
from skyscan.products.fits import read_multiorder_fits

CENTRE = (77.36, 5.69)
SIGMA = 0.5  # calibrated 90% contour: a disc of radius sqrt(64.2) * 0.5 = 4.0 deg, inside the nside-64 refinement
PLAN = ((8, 0), (64, 12))


def _scan(tmp: Path, containment: str, sigma: float = SIGMA) -> Path:
    out: Path = write_synthetic_scan(
        tmp / containment,
        centre_radec=CENTRE,
        sigma_deg=sigma,
        plan=PLAN,
        batch_size=256,
        config_text=f"containment: {containment}\nmerge:\n  plots: false\n",
    )
    return out


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    out = _scan(tmp_path_factory.mktemp("products"), "calibrated")
    return out, merge_scan(out)


@pytest.fixture(scope="module")
def wilks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    # Wilks' 90% disc (radius 2.15 sigma) must span several nside-64 pixels: sigma 2 deg (radius 4.3 deg).
    out = _scan(tmp_path_factory.mktemp("products"), "wilks", sigma=2.0)
    return out, merge_scan(out)


def _credible_areas_from_fits(path: Path, probabilities: tuple[float, ...]) -> list[float]:
    """ligo.skymap's rule, written out here: sort by density, accumulate probability, area up to p (deg2)."""
    moc = read_multiorder_fits(path)
    order = np.floor(np.log2(moc.uniq / 4) / 2).astype(int)
    area = 4 * math.pi / (12 * 4.0**order)
    rank = np.argsort(-moc.probdensity)
    prob = np.cumsum(moc.probdensity[rank] * area[rank])
    cum_area = np.cumsum(area[rank]) * (180 / math.pi) ** 2
    return [float(cum_area[np.searchsorted(prob, p)]) for p in probabilities]


@pytest.mark.parametrize("which", ["calibrated", "wilks"])
def test_fits_credible_areas_agree_with_the_summary(which: str, request: pytest.FixtureRequest) -> None:
    out, _result = request.getfixturevalue(which)
    summary = json.loads((out / "summary.json").read_text())
    quoted = [summary["containment"][k]["area_deg2"] for k in ("50", "90")]
    a50, a90 = _credible_areas_from_fits(out / "skymap.multiorder.fits", (0.5, 0.9))
    assert a90 == pytest.approx(quoted[1], rel=0.2)
    # The 50% region is not matched; for a Gaussian-like likelihood it still comes out close (see containment.md).
    assert a50 == pytest.approx(quoted[0], rel=0.5)
    mp = summary["map_probability"]
    assert mp["credible_area_deg2"]["90"] == pytest.approx(a90, rel=1e-6)
    assert mp["contour_area_deg2"]["90"] == pytest.approx(quoted[1], rel=1e-9)


def test_ligo_skymap_agrees_where_installed(calibrated: tuple[Path, Any]) -> None:
    postprocess = pytest.importorskip("ligo.skymap.postprocess")
    io = pytest.importorskip("ligo.skymap.io")
    out, _ = calibrated
    summary = json.loads((out / "summary.json").read_text())
    sky = io.read_sky_map(str(out / "skymap.multiorder.fits"), moc=True)
    result = postprocess.crossmatch(sky, contours=(0.5, 0.9))
    assert result.contour_areas[1] == pytest.approx(summary["containment"]["90"]["area_deg2"], rel=0.2)


def test_weight_of_a_gaussian_likelihood(calibrated: tuple[Path, Any], wilks: tuple[Path, Any]) -> None:
    """For 2*delta-llh = (d/sigma)^2 the map exp(-w delta-llh) is a Gaussian of sigma/sqrt(w), whose 90% region
    is 2*delta-llh <= 4.61 / w: matching the calibrated 64.2 needs w = 4.61 / 64.2 (approximate: pixelised, flat-sky
    Gaussian), and Wilks keeps w = 1."""
    out, _ = calibrated
    weight = json.loads((out / "summary.json").read_text())["map_probability"]["weight"]
    assert weight == pytest.approx(4.61 / 64.2, rel=0.1)
    with fits.open(out / "skymap.multiorder.fits") as hdus:
        assert hdus[1].header["MAPWEIGHT"] == pytest.approx(weight)
        assert hdus[1].header["MAPMATCH"] == "90"
    w_out, _ = wilks
    doc = json.loads((w_out / "summary.json").read_text())["map_probability"]
    assert doc["weight"] == 1.0 and doc["matched_level"] is None


def test_both_fits_maps_carry_the_same_identity(calibrated: tuple[Path, Any]) -> None:
    out, _ = calibrated
    with fits.open(out / "skymap.multiorder.fits") as a, fits.open(out / "skymap.2dllh.fits") as b:
        ha, hb = a[1].header, b[1].header
        for key in ("OBJECT", "ORIGIN", "INSTRUME", "TELESCOP", "EVTTYPE", "MAPWEIGHT"):
            assert ha[key] == hb[key], key
        assert ha["OBJECT"] == "12_345" and ha["EVTTYPE"] == "gold" and ha["INSTRUME"] == "IC86"
        assert hb["EXTNAME"] == "SKYMAP_2DLLH" and ha["EXTNAME"] == "SKYMAP"
        assert hp.read_map(str(out / "skymap.2dllh.fits")).size == 12 * hb["NSIDE"] ** 2


def test_skyreader_export_reads_back(calibrated: tuple[Path, Any]) -> None:
    skyreader = pytest.importorskip("skyreader")
    out, result = calibrated
    products = result.summary["products"]
    key = next(k for k in products if "skyreader" in k)
    path = out / products[key]
    assert path.name == "run00000012.evt000000000345.gold.json"
    res = skyreader.SkyScanResult.read_json(path)
    meta = res.get_event_metadata()
    # Run 12 cannot be a real IceCube run (six digits), and the reader refuses it as a real event.
    assert (meta.run_id, meta.event_id, meta.event_type, meta.is_real_event) == (12, 345, "gold", False)
    assert res.nsides == [8, 64]
    best = result.summary["best_fit"]
    assert float(res.min_llh) == pytest.approx(best["llh"])
    ra, dec = res.best_dir
    assert math.degrees(float(ra)) == pytest.approx(best["ra_deg"], abs=1e-9)
    assert math.degrees(float(dec)) == pytest.approx(best["dec_deg"], abs=1e-9)
    # Every pixel's llh at its RING index equals the merged map's value at that pixel (stage 1 = nside 64).
    m = result.map
    pix64 = res.get_results_per_nside(64)
    rows = m.locate(64, hp.ring2nest(64, pix64["index"]))
    assert np.all(rows >= 0)
    assert np.allclose(m.llh[rows], pix64["llh"])


def test_imported_simulation_stays_simulated(tmp_path: Path) -> None:
    """--import-npz honours is_real_event: a file that says False is drafted as a simulation (notice, export)."""
    from skyscan.nodes.merge import merge_npz
    from skyscan.nodes.synthetic import paraboloid_llh

    llh = paraboloid_llh(8, hp.ring2nest(8, np.arange(768)), CENTRE, 5.0)
    arr = np.array([(i, v, 1.0, 2.0) for i, v in enumerate(llh)],
                   dtype=[("index", int), ("llh", float), ("E_in", float), ("E_tot", float)])
    header = np.array([(139000, 42, 60000.5, "gfu-gold", 8, False, 0)],
                      dtype=[("run_id", int), ("event_id", int), ("mjd", float), ("event_type", "U8"),
                             ("nside", int), ("is_real_event", bool), ("version", int)])
    npz = tmp_path / "sim.npz"
    np.savez(npz, header=header, **{"nside-8": arr})
    res = merge_npz(npz, tmp_path / "imported", plots=False)
    notice = json.loads((res.outdir / "notice.json").read_text())
    assert notice["alert_tense"] == "test"
    assert "SIMULATED" in (res.outdir / "circular.txt").read_text()
    export = json.loads((res.outdir / res.summary["products"]["skyreader_json"]).read_text())
    assert export["nside-8"]["metadata"]["is_real_event"] is False
    assert export["nside-8"]["metadata"]["event_type"] == "gfu-gold"


def test_plot_scales(calibrated: tuple[Path, Any]) -> None:
    from skyscan.products.plot import fullsky_norm, region_ring_deg, zoom_vmax

    _, result = calibrated
    m, meta = result.map, result.meta
    norm = fullsky_norm(m)
    d2 = m.dllh2
    band = np.clip(np.searchsorted(norm.boundaries, d2, side="right") - 1, 0, norm.boundaries.size - 2)
    share = np.bincount(band, weights=m.area_sr, minlength=norm.boundaries.size - 1) / m.area_sr.sum()
    # No colour band holds most of the sky (a fixed 0-40 scale put ~all of it in the top colour).
    assert share.max() < 0.2
    assert norm.boundaries[-1] == pytest.approx(float(np.nanmax(d2)), rel=1e-6)
    assert zoom_vmax(meta) >= 64.2  # the calibrated 90% level is inside the zoom's colour bar
    assert region_ring_deg(meta) is None  # a 4-degree region is visible on the full sky without a ring


def test_skyreader_real_event_rule(calibrated: tuple[Path, Any]) -> None:
    from dataclasses import replace

    from skyscan.products.skyreader import is_real_event

    meta = calibrated[1].meta
    assert is_real_event(replace(meta, run_id=140123)) is True
    assert is_real_event(replace(meta, run_id=140123, truth_radec=(1.0, 2.0))) is False
    assert is_real_event(replace(meta, run_id=140123, is_real_event=False)) is False
    assert is_real_event(replace(meta, run_id=12)) is False
