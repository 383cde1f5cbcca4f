"""Round trips of the skymap files: HDF5, the multi-order FITS map (also through ligo.skymap) and the flat map."""

from __future__ import annotations

import json
import math
import warnings
from datetime import datetime, timezone
from pathlib import Path

import healpy as hp
import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from skyscan.errors import InputError
from skyscan.nodes.synthetic import paraboloid_llh, refine_plan
from skyscan.products.containment import best_fit_radec
from skyscan.products.fits import header_config, read_multiorder_fits, write_flat_fits, write_multiorder_fits
from skyscan.products.hdf5 import read_skymap_h5, write_skymap_h5
from skyscan.products.meta import SkymapMeta, StageRecord
from skyscan.products.moc import MultiOrderMap, StageResult, build_multiorder, flatten
from skyscan.products.write import best_fit_of, measure_regions

CENTRE = (200.0, -30.0)
EVENT_TIME = datetime(2026, 3, 14, 15, 9, 26, 123456, tzinfo=timezone.utc)
CONFIG = (
    "# resolved configuration\ncontainment: wilks\nscan:\n  stages:\n    - {nside: 8}\n"
    "comment: a line that is much longer than one FITS card can hold, with  double  spaces   and more text "
    "to wrap over several cards\n"
)
FAILED = (3, 40)  # rows of the stage-1 list whose fit failed


def _stages() -> list[StageResult]:
    out = []
    for k, (nside, pix) in enumerate(refine_plan(CENTRE, ((8, 0), (32, 8)))):
        llh = paraboloid_llh(nside, pix, CENTRE, 3.0)
        if k == 1:
            llh[list(FAILED)] = np.nan
        n = pix.size
        out.append(StageResult(nside, pix, llh, np.full(n, 1.0), np.full(n, 2.0), np.full(n, 3.0), np.full(n, 4.0),
                               np.where(np.isfinite(llh), 0, 3).astype(np.int32)))
    return out


@pytest.fixture(scope="module")
def case() -> tuple[MultiOrderMap, SkymapMeta, list[StageRecord]]:
    stages = _stages()
    m = build_multiorder(stages)
    meta = SkymapMeta(
        run_id=138632,
        event_id=31747601,
        event_time=EVENT_TIME,
        stream="bronze",
        best_fit=best_fit_of(m, None),
        containment_method="wilks",
        regions=measure_regions(m, {"50": 1.39, "90": 4.61}),
        config_yaml=CONFIG,
        created=datetime(2026, 3, 14, 16, 0, 0, tzinfo=timezone.utc),
        software_version="9.9.9",
        git_revision="0123456789abcdef0123456789abcdef01234567",
        far_per_year=0.25,
        signalness=0.41,
        energy_gev=1.5e5,
    )
    records = [
        StageRecord(
            name=f"stage{k}", nside=np.full(s.ipix.size, s.nside, dtype=np.int64), ipix=s.ipix, llh=s.llh, x=s.x,
            y=s.y, z=s.z, t=s.t, status=s.status, seconds=np.full(s.ipix.size, 0.25),
            extra={"E_in": np.arange(s.ipix.size, dtype=np.float64)}, sources=[f"stage{k}/scan-s{k}-0000.h5"],
        )
        for k, s in enumerate(stages)
    ]
    return m, meta, records


def test_hdf5_round_trip(tmp_path: Path, case: tuple[MultiOrderMap, SkymapMeta, list[StageRecord]]) -> None:
    m, meta, records = case
    path = tmp_path / "skymap.h5"
    write_skymap_h5(path, m, meta, records, event_json='{"schema": "skyscan-event/1"}')
    back = read_skymap_h5(path)
    assert np.array_equal(back.map.uniq, m.uniq)
    assert np.array_equal(back.map.llh, m.llh, equal_nan=True)
    assert np.array_equal(back.map.status, m.status)
    assert int(np.count_nonzero(np.isnan(back.map.llh))) == len(FAILED)
    assert float(np.sum(back.probdensity * m.area_sr)) == pytest.approx(1.0, rel=1e-12)
    a = back.attrs
    assert a["config_yaml"] == CONFIG and back.config_yaml == CONFIG
    assert a["software_version"] == "9.9.9"
    assert a["git_revision"] == meta.git_revision
    assert (a["run_id"], a["event_id"]) == (138632, 31747601)
    assert a["event_time"] == "2026-03-14T15:09:26.123456Z"
    assert a["created"] == "2026-03-14T16:00:00.000000Z"
    assert math.isnan(a["best_fit_zenith_deg"])  # unknown here: stored as NaN
    cont = json.loads(a["containment_json"])
    assert cont["method"] == "wilks"
    assert cont["90"]["area_deg2"] == pytest.approx(meta.regions["90"].area_deg2)
    assert back.event_json == '{"schema": "skyscan-event/1"}'
    assert sorted(back.stages) == ["stage0", "stage1"]
    st = back.stages["stage1"]
    assert np.array_equal(st.ipix, records[1].ipix)
    assert np.array_equal(st.extra["E_in"], records[1].extra["E_in"])
    assert st.sources == ["stage1/scan-s1-0000.h5"]


def test_hdf5_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such"):
        read_skymap_h5(tmp_path / "absent.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(InputError, match=r"junk\.h5"):
        read_skymap_h5(junk)


def _region_area_from_density(uniq: np.ndarray, dens: np.ndarray, level: float) -> float:
    """Area (deg2) where p >= p_max exp(-level/2), i.e. 2*delta-llh <= level, from the FITS columns alone."""
    order = np.floor(np.log2(uniq / 4) / 2).astype(np.int64)
    nside = 2**order
    inside = dens >= dens.max() * math.exp(-level / 2) * (1 - 1e-12)
    area_sr = 4 * math.pi / (12 * nside.astype(np.float64) ** 2)
    return float(np.sum(area_sr[inside])) * (180 / math.pi) ** 2


def test_multiorder_fits_layout(tmp_path: Path, case: tuple[MultiOrderMap, SkymapMeta, list[StageRecord]]) -> None:
    m, meta, _ = case
    path = tmp_path / "skymap.multiorder.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. astropy's warnings about over-long keywords or cards
        write_multiorder_fits(path, m, meta)
    moc = read_multiorder_fits(path)
    h = moc.header
    assert h["ORDERING"] == "NUNIQ" and h["COORDSYS"] == "C"
    assert np.array_equal(np.sort(moc.uniq), m.uniq)
    order = np.floor(np.log2(moc.uniq / 4) / 2)
    area = 4 * math.pi / (12 * 4.0**order)
    assert float(np.sum(moc.probdensity * area)) == pytest.approx(1.0, rel=1e-12)
    assert np.all(moc.probdensity[np.isnan(m.llh[np.searchsorted(m.uniq, moc.uniq)])] == 0)
    with fits.open(path) as hdus:
        header = hdus[1].header
        assert hdus[1].columns["PROBDENSITY"].unit == "sr-1"
    ra, dec = best_fit_radec(m)
    assert header["RA"] == pytest.approx(ra, abs=1e-6) and header["DEC"] == pytest.approx(dec, abs=1e-6)
    assert (header["RUNID"], header["EVENTID"]) == (138632, 31747601)
    assert header["DATE-OBS"] == "2026-03-14T15:09:26.123456"
    assert header["MJD-OBS"] == pytest.approx(61113.631552, abs=1e-6)
    for label in ("50", "90"):
        reg = meta.regions[label]
        assert header[f"RA_ERR_PLUS_{label}"] == pytest.approx(reg.ra_plus_deg, abs=1e-6)
        assert header[f"RA_ERR_MINUS_{label}"] == pytest.approx(reg.ra_minus_deg, abs=1e-6)
        assert header[f"DEC_ERR_PLUS_{label}"] == pytest.approx(reg.dec_plus_deg, abs=1e-6)
        assert header[f"DEC_ERR_MINUS_{label}"] == pytest.approx(reg.dec_minus_deg, abs=1e-6)
        assert header[f"CONTOUR_AREA_{label}"] == pytest.approx(reg.area_deg2, abs=1e-6)
        # The areas follow from the density column too: the region is where p >= p_max exp(-level / 2).
        assert _region_area_from_density(moc.uniq, moc.probdensity, reg.level_2dllh) == pytest.approx(reg.area_deg2)
    assert header["SOFTWARE_VERSION"] == "9.9.9" and header["GIT_REVISION"] == meta.git_revision
    assert header["FAR"] == 0.25 and header["STREAM"] == "bronze"
    assert header_config(path) == CONFIG.rstrip("\n")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside ligo.skymap's own imports
def test_multiorder_fits_read_by_ligo_skymap(
    tmp_path: Path, case: tuple[MultiOrderMap, SkymapMeta, list[StageRecord]]
) -> None:
    io = pytest.importorskip("ligo.skymap.io", reason="ligo.skymap (test-only dependency) is not installed")
    m, meta, _ = case
    path = tmp_path / "skymap.multiorder.fits"
    write_multiorder_fits(path, m, meta)
    table = io.read_sky_map(str(path), moc=True)
    uniq = np.asarray(table["UNIQ"], dtype=np.int64)
    dens = np.asarray(table["PROBDENSITY"], dtype=np.float64)
    assert int(uniq[np.argmax(dens)]) == int(m.uniq[m.best_index])  # the same best fit
    for label in ("50", "90"):
        reg = meta.regions[label]
        assert _region_area_from_density(uniq, dens, reg.level_2dllh) == pytest.approx(reg.area_deg2)
        assert table.meta[f"CONTOUR_AREA_{label}"] == pytest.approx(reg.area_deg2, abs=1e-6)
    assert table.meta["RUNID"] == 138632 and table.meta["EVENTID"] == 31747601
    gps = Time("2026-03-14T15:09:26.123456", scale="utc").gps
    assert table.meta["gps_time"] == pytest.approx(gps, abs=1e-3)  # DATE-OBS as ligo.skymap reads it
    flat, _meta = io.read_sky_map(str(path))  # rasterised by ligo.skymap: still one peak at the best fit
    nside = hp.npix2nside(flat.size)
    ra, dec = best_fit_radec(m)
    assert hp.ang2pix(nside, ra, dec, lonlat=True) == int(np.argmax(flat))


def test_flat_map_read_by_healpy(tmp_path: Path, case: tuple[MultiOrderMap, SkymapMeta, list[StageRecord]]) -> None:
    m, meta, _ = case
    path = tmp_path / "skymap.2dllh.fits"
    nside = int(m.nside.max())  # the finest order present: the flat map represents the map exactly
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_flat_fits(path, flatten(m, nside, "RING"), meta)
    values, header = hp.read_map(str(path), h=True, nest=False)
    header = dict(header)
    assert header["ORDERING"] == "RING" and header["NSIDE"] == nside and header["TTYPE1"] == "2DLLH"
    assert values.size == hp.nside2npix(nside)
    finite = np.isfinite(values)
    assert np.count_nonzero(~finite) == len(FAILED) * (nside // 32) ** 2  # failed pixels stay NaN
    best = int(np.argmin(np.where(finite, values, np.inf)))
    ra, dec = best_fit_radec(m)
    lon, lat = hp.pix2ang(nside, best, lonlat=True)
    assert (lon, lat) == pytest.approx((ra, dec), abs=1e-9)
    pix_area = hp.nside2pixarea(nside, degrees=True)
    for label in ("50", "90"):
        reg = meta.regions[label]
        area = np.count_nonzero(finite & (values <= np.float32(reg.level_2dllh))) * pix_area
        assert area == pytest.approx(reg.area_deg2, rel=1e-9)
    assert header["RUNID"] == 138632 and header["CONTOUR_AREA_90"] == pytest.approx(meta.regions["90"].area_deg2)


def test_unknown_time_leaves_keys_out(tmp_path: Path, case: tuple[MultiOrderMap, SkymapMeta, list[StageRecord]]) -> None:
    from dataclasses import replace

    m, meta, _ = case
    path = tmp_path / "skymap.multiorder.fits"
    write_multiorder_fits(path, m, replace(meta, event_time=None, stream=None, far_per_year=None, git_revision=None))
    with fits.open(path) as hdus:
        header = hdus[1].header
    for key in ("DATE-OBS", "MJD-OBS", "STREAM", "FAR", "GIT_REVISION"):
        assert key not in header
    assert header["RUNID"] == 138632
