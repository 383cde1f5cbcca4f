"""Containment regions on synthetic multi-order maps with analytically known answers.

The synthetic likelihood is a paraboloid in angular distance: 2*delta-llh = (angle / sigma)**2 around one or more
centres, evaluated at pixel centres. A region at level L is then a disc of angular radius r = sigma * sqrt(L):
area 2*pi*(1 - cos r) sr, Dec errors r, RA errors asin(sin r / cos Dec). Pixelisation moves the edge by at most
about a pixel, which sets the tolerances.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import healpy as hp
import numpy as np
import numpy.typing as npt
import pytest

from skyscan.errors import InputError
from skyscan.products.containment import LEVELS, best_fit_radec, region, regions, resolve_levels
from skyscan.products.moc import MultiOrderMap, StageResult, build_multiorder

SIGMA = 1.0  # degrees
NSIDE_FINE = 512
PIX_FINE = math.degrees(hp.nside2resol(NSIDE_FINE))  # ~0.115 deg, side of a fine pixel
PIX_MID = math.degrees(hp.nside2resol(64))
SR_TO_DEG2 = (180.0 / math.pi) ** 2


def _unit(ra_deg: float, dec_deg: float) -> npt.NDArray[np.float64]:
    return np.asarray(hp.ang2vec(math.radians(90.0 - dec_deg), math.radians(ra_deg)), dtype=np.float64)


def _stage(nside: int, ipix: npt.NDArray[np.int64], centres: Sequence[tuple[float, float]]) -> StageResult:
    """A scan stage whose llh is 0.5 * (angle to the nearest centre / SIGMA)**2 at each pixel centre."""
    vec = np.asarray(hp.pix2vec(nside, ipix, nest=True)).T
    angle = np.full(ipix.size, np.inf)
    for ra, dec in centres:
        cosang = np.clip(vec @ _unit(ra, dec), -1.0, 1.0)
        angle = np.minimum(angle, np.degrees(np.arccos(cosang)))
    llh = 0.5 * (angle / SIGMA) ** 2
    zeros = np.zeros(ipix.size)
    return StageResult(nside, ipix, llh, zeros, zeros, zeros, zeros, np.zeros(ipix.size, dtype=np.int32))


def _children(parents: npt.NDArray[np.int64], factor: int) -> npt.NDArray[np.int64]:
    """All NESTED descendants of `parents` at nside * factor."""
    n = factor * factor
    return (parents[:, None] * n + np.arange(n)[None, :]).reshape(-1).astype(np.int64)


def _disc(nside: int, centres: Sequence[tuple[float, float]], radius_deg: float) -> npt.NDArray[np.int64]:
    found = [hp.query_disc(nside, _unit(ra, dec), math.radians(radius_deg), inclusive=True, nest=True)
             for ra, dec in centres]
    return np.unique(np.concatenate(found)).astype(np.int64)


def paraboloid_map(centres: Sequence[tuple[float, float]], r_mid: float = 9.0, r_fine: float = 3.5) -> MultiOrderMap:
    """nside 8 everywhere, nside 64 within r_mid of each centre, nside 512 within r_fine (full refinement)."""
    s0 = _stage(8, np.arange(768, dtype=np.int64), centres)
    s1 = _stage(64, _children(_disc(8, centres, r_mid), 8), centres)
    s2 = _stage(NSIDE_FINE, _children(_disc(64, centres, r_fine), 8), centres)
    return build_multiorder([s0, s1, s2])


def _expected_ra_error(radius: float, dec: float) -> float:
    return math.degrees(math.asin(math.sin(math.radians(radius)) / math.cos(math.radians(dec))))


def _cap_area_deg2(radius: float) -> float:
    return 2.0 * math.pi * (1.0 - math.cos(math.radians(radius))) * SR_TO_DEG2


def _area_tolerance(radius: float, pixel: float) -> float:
    # The pixelised edge wanders by up to about half a pixel along the whole perimeter.
    return 2.0 * math.pi * radius * 0.5 * pixel


def _angle_between(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    return math.degrees(math.acos(min(1.0, float(_unit(ra1, dec1) @ _unit(ra2, dec2)))))


@pytest.fixture(scope="module")
def single_map() -> MultiOrderMap:
    return paraboloid_map([(123.4, 30.0)])


@pytest.mark.parametrize("label", ["50", "90"])
def test_disc_area_and_errors_at_wilks_levels(single_map: MultiOrderMap, label: str) -> None:
    level = LEVELS["wilks"][label]
    radius = SIGMA * math.sqrt(level)
    reg = region(single_map, level)
    ra0, dec0 = best_fit_radec(single_map)
    assert _angle_between(ra0, dec0, 123.4, 30.0) < PIX_FINE
    assert reg.area_deg2 == pytest.approx(_cap_area_deg2(radius), abs=_area_tolerance(radius, PIX_FINE))
    tol = 1.5 * PIX_FINE  # edge pixel half-size plus the best fit's offset from the true centre
    assert reg.dec_plus_deg == pytest.approx(radius, abs=tol)
    assert reg.dec_minus_deg == pytest.approx(radius, abs=tol)
    ra_err = _expected_ra_error(radius, 30.0)
    ra_tol = tol / math.cos(math.radians(30.0))
    assert reg.ra_plus_deg == pytest.approx(ra_err, abs=ra_tol)
    assert reg.ra_minus_deg == pytest.approx(ra_err, abs=ra_tol)
    assert reg.n_islands == 1
    assert not reg.contains_pole
    assert reg.ra_errors_meaningful
    assert reg.level_2dllh == level
    # Every fine pixel is PIX_FINE**2 in area (equal-area): the count must match the area.
    assert reg.n_pixels == pytest.approx(reg.area_deg2 / hp.nside2pixarea(NSIDE_FINE, degrees=True), rel=1e-9)


def test_calibrated_level_spans_two_orders_and_stays_one_island(single_map: MultiOrderMap) -> None:
    level = LEVELS["calibrated"]["50"]
    radius = SIGMA * math.sqrt(level)  # 4.7 deg: crosses from the nside-512 zone into nside-64 pixels
    reg = region(single_map, level)
    assert reg.n_islands == 1
    assert reg.area_deg2 == pytest.approx(_cap_area_deg2(radius), abs=_area_tolerance(radius, PIX_MID))
    assert reg.dec_plus_deg == pytest.approx(radius, abs=1.5 * PIX_MID)
    assert reg.dec_minus_deg == pytest.approx(radius, abs=1.5 * PIX_MID)


def test_region_grows_with_level_and_level_zero_is_the_best_pixel(single_map: MultiOrderMap) -> None:
    small = region(single_map, 0.0)
    assert small.n_pixels >= 1
    assert small.area_deg2 <= hp.nside2pixarea(8, degrees=True)
    a, b = region(single_map, 1.39), region(single_map, 4.61)
    assert a.area_deg2 < b.area_deg2
    assert a.n_pixels < b.n_pixels


def test_region_straddling_ra_zero() -> None:
    m = paraboloid_map([(359.5, 10.0)])
    ra0, _ = best_fit_radec(m)
    assert 0.0 <= ra0 < 360.0
    radius = SIGMA * math.sqrt(4.61)
    reg = region(m, 4.61)
    ra_err = _expected_ra_error(radius, 10.0)
    ra_tol = 1.5 * PIX_FINE / math.cos(math.radians(10.0))
    assert reg.ra_plus_deg == pytest.approx(ra_err, abs=ra_tol)
    assert reg.ra_minus_deg == pytest.approx(ra_err, abs=ra_tol)
    assert reg.ra_errors_meaningful
    assert reg.n_islands == 1


def test_region_containing_the_south_pole_is_flagged() -> None:
    m = paraboloid_map([(40.0, -89.0)])
    _, dec0 = best_fit_radec(m)
    radius = SIGMA * math.sqrt(4.61)
    reg = region(m, 4.61)
    assert reg.contains_pole
    assert not reg.ra_errors_meaningful
    assert reg.ra_plus_deg == 180.0 and reg.ra_minus_deg == 180.0
    assert "pole" in reg.note
    assert reg.dec_minus_deg == pytest.approx(dec0 + 90.0, abs=1e-6)  # the region reaches Dec = -90
    assert reg.dec_plus_deg == pytest.approx((-89.0 + radius) - dec0, abs=1.5 * PIX_FINE)
    assert reg.area_deg2 == pytest.approx(_cap_area_deg2(radius), abs=_area_tolerance(radius, PIX_FINE))
    assert reg.n_islands == 1


def test_ring_around_the_pole_without_the_pole_is_flagged() -> None:
    """A likelihood valley along colatitude 5 deg: the region circles the north pole but excludes it."""
    nside_mid = 64
    cap = _children(_disc(8, [(0.0, 90.0)], 15.0), 8)
    stage0 = np.arange(768, dtype=np.int64)

    def ring_stage(nside: int, ipix: npt.NDArray[np.int64]) -> StageResult:
        theta, _ = hp.pix2ang(nside, ipix, nest=True)
        llh = 0.5 * ((np.degrees(theta) - 5.0) / SIGMA) ** 2
        zeros = np.zeros(ipix.size)
        return StageResult(nside, ipix, llh, zeros, zeros, zeros, zeros, np.zeros(ipix.size, dtype=np.int32))

    m = build_multiorder([ring_stage(8, stage0), ring_stage(nside_mid, cap)])
    reg = region(m, 4.61)
    assert not reg.contains_pole
    assert not reg.ra_errors_meaningful
    assert reg.ra_plus_deg == 180.0 and reg.ra_minus_deg == 180.0
    assert reg.n_islands == 1
    assert reg.note


def test_two_islands_and_extent_covers_both() -> None:
    centres = [(100.0, 0.0), (120.0, 0.0)]  # equal depth, 20 deg apart
    m = paraboloid_map(centres)
    radius = SIGMA * math.sqrt(4.61)
    reg = region(m, 4.61)
    assert reg.n_islands == 2
    assert "islands" in reg.note
    ra0, _ = best_fit_radec(m)
    near_first = abs(ra0 - 100.0) < abs(ra0 - 120.0)
    far, near = (reg.ra_plus_deg, reg.ra_minus_deg) if near_first else (reg.ra_minus_deg, reg.ra_plus_deg)
    tol = 1.5 * PIX_FINE
    assert far == pytest.approx(20.0 + radius, abs=tol)
    assert near == pytest.approx(radius, abs=tol)
    assert reg.dec_plus_deg == pytest.approx(radius, abs=tol)
    assert reg.area_deg2 == pytest.approx(2 * _cap_area_deg2(radius), abs=2 * _area_tolerance(radius, PIX_FINE))
    # At the 50% level the islands are still separate; a level reaching the saddle (10 deg -> 2dllh 100) joins them.
    assert region(m, 1.39).n_islands == 2
    assert region(m, 110.0).n_islands == 1


def _with_nan(m: MultiOrderMap, rows: npt.NDArray[np.int64]) -> MultiOrderMap:
    llh = m.llh.copy()
    llh[rows] = np.nan
    return MultiOrderMap(m.uniq, llh, m.x, m.y, m.z, m.t, m.status)


def test_nan_pixels_are_never_the_best_fit(single_map: MultiOrderMap) -> None:
    best_three = np.argsort(single_map.llh)[:3].astype(np.int64)
    m = _with_nan(single_map, best_three)
    assert m.n_failed == 3
    assert m.best_index not in best_three
    assert np.isfinite(m.llh[m.best_index])
    ra0, dec0 = best_fit_radec(m)
    for row in best_three:
        theta, phi = hp.pix2ang(int(m.nside[row]), int(m.ipix[row]), nest=True)
        assert (ra0, dec0) != pytest.approx((math.degrees(phi), 90.0 - math.degrees(theta)))
    assert np.isnan(m.dllh2[best_three]).all()


def test_nan_pixels_are_never_in_the_region(single_map: MultiOrderMap) -> None:
    level = 4.61
    base = region(single_map, level)
    # Pixels between 0.3 and 0.6 sigma from the centre: well inside the region, never the best fit.
    theta, phi = hp.pix2ang(single_map.nside, single_map.ipix, nest=True)
    ra, dec = np.degrees(phi), 90.0 - np.degrees(theta)
    dist = np.array([_angle_between(a, d, 123.4, 30.0) for a, d in zip(ra, dec, strict=True)])
    rows = np.flatnonzero((dist > 0.3) & (dist < 0.6))[::3].astype(np.int64)
    assert rows.size > 3
    m = _with_nan(single_map, rows)
    reg = region(m, level)
    assert m.n_failed == rows.size
    assert reg.n_pixels == base.n_pixels - rows.size
    removed = float(np.sum(single_map.area_sr[rows])) * SR_TO_DEG2
    assert reg.area_deg2 == pytest.approx(base.area_deg2 - removed, rel=1e-12)


def test_all_failed_map_has_no_best_fit(single_map: MultiOrderMap) -> None:
    m = _with_nan(single_map, np.arange(len(single_map), dtype=np.int64))
    with pytest.raises(InputError):
        region(m, 4.61)


def test_coarse_pixel_counts_whole() -> None:
    """Only stage 0: the region is made of whole nside-8 pixels."""
    m = build_multiorder([_stage(8, np.arange(768, dtype=np.int64), [(200.0, -40.0)])])
    reg = region(m, 4.61)
    assert reg.area_deg2 == pytest.approx(reg.n_pixels * hp.nside2pixarea(8, degrees=True))
    # The best pixel alone reaches at least half a pixel out on every side.
    half = 0.4 * math.degrees(hp.nside2resol(8))
    assert min(reg.dec_plus_deg, reg.dec_minus_deg) > half


def test_resolve_levels() -> None:
    assert resolve_levels("wilks") == {"50": 1.39, "90": 4.61}
    assert resolve_levels(" Calibrated ") == {"50": 22.2, "90": 64.2}
    assert resolve_levels("2.3,5.9") == {"2.3": 2.3, "5.9": 5.9}
    assert resolve_levels({"68": 2.3}) == {"68": 2.3}
    assert resolve_levels([2.3]) == {"2.3": 2.3}
    assert resolve_levels(4.61) == {"4.61": 4.61}
    for bad in ("nonsense", "", "2.3,", "1,-2", "nan", {}, {"x": "y"}, [], [0.0], True, None):
        with pytest.raises(InputError):
            resolve_levels(bad)


def test_regions_and_bad_level(single_map: MultiOrderMap) -> None:
    out = regions(single_map, "wilks")
    assert set(out) == {"50", "90"}
    assert out["50"].area_deg2 < out["90"].area_deg2
    assert out["90"].as_dict()["n_islands"] == 1
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(InputError):
            region(single_map, bad)
