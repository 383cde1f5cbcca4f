"""Detector frame <-> J2000 equatorial: invariants that follow from the geometry of the South Pole.

Small arrays throughout: the first astropy transformation of a process costs a second or two, later ones milliseconds.
"""

from __future__ import annotations

import math
import warnings
from datetime import datetime, timedelta, timezone

import healpy as hp
import numpy as np
import numpy.typing as npt
import pytest
from astropy.coordinates import ITRS, CartesianRepresentation, SkyCoord, UnitSphericalRepresentation
from astropy.time import Time
from astropy.utils import iers

from skyscan.reco import coords as co

FloatArray = npt.NDArray[np.float64]

J2000_NOON = datetime(2000, 1, 1, 12, 0, 0, tzinfo=timezone.utc)  # precession negligible
ALERT_TIME = datetime(2026, 3, 14, 15, 9, 26, tzinfo=timezone.utc)
SIDEREAL_DAY_S = 86164.0905

# A handful of directions away from the zenith/nadir, where azimuth is ill-defined.
ZEN = np.radians([15.0, 60.0, 90.0, 118.0, 165.0])
AZI = np.radians([0.0, 45.0, 200.0, 231.0, 330.0])


def _wrap_deg(a: npt.ArrayLike) -> FloatArray:
    """Angle difference folded into [-180, 180)."""
    return np.asarray((np.asarray(a) + 180.0) % 360.0 - 180.0, dtype=np.float64)


def _earth_fixed_to_icrs(zenith: FloatArray, azimuth: FloatArray, time: datetime) -> tuple[FloatArray, FloatArray]:
    """Independent route: at the South Pole, grid east (+x) is ITRS +Y (90° E), grid north (+y) is ITRS +X
    (towards Greenwich) and up (+z) is ITRS -Z. Rotate the from-direction into ITRS and let astropy take it to ICRS."""
    n = np.stack([np.sin(zenith) * np.cos(azimuth), np.sin(zenith) * np.sin(azimuth), np.cos(zenith)])
    rep = CartesianRepresentation(n[1], n[0], -n[2]).represent_as(UnitSphericalRepresentation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        icrs = SkyCoord(ITRS(rep, obstime=Time(time))).icrs
    return np.asarray(icrs.ra.rad), np.asarray(icrs.dec.rad)


def test_ideal_pole_declination_is_zenith_minus_90() -> None:
    ra, dec = co.local_to_equatorial(ZEN, AZI, J2000_NOON, co.IDEAL_POLE)
    np.testing.assert_allclose(np.degrees(dec), np.degrees(ZEN) - 90.0, atol=0.02)
    assert np.all((ra >= 0) & (ra < 2 * math.pi))


def test_overhead_is_south_celestial_pole() -> None:
    """Particles from straight above (zenith 0, down-going) come from Dec -90; from below from Dec +90."""
    _, dec = co.local_to_equatorial([0.0, math.pi], [0.0, 0.0], J2000_NOON, co.ICECUBE)
    np.testing.assert_allclose(np.degrees(dec), [-90.0, 90.0], atol=0.02)
    zen, _ = co.equatorial_to_local([1.0, 1.0], [-math.pi / 2, math.pi / 2], J2000_NOON, co.ICECUBE)
    np.testing.assert_allclose(np.degrees(zen), [0.0, 180.0], atol=0.02)


@pytest.mark.parametrize(("site", "tol_deg"), [(co.IDEAL_POLE, 1e-4), (co.ICECUBE, 0.02)])
def test_detector_axes_match_earth_fixed_frame(site: co.Site, tol_deg: float) -> None:
    """The azimuth origin and sense (from +x = grid east, counter-clockwise) agree with an ITRS construction."""
    ra, dec = co.local_to_equatorial(ZEN, AZI, ALERT_TIME, site)
    ra_ref, dec_ref = _earth_fixed_to_icrs(ZEN, AZI, ALERT_TIME)
    sep = np.degrees(co.angular_distance(ra, dec, ra_ref, dec_ref))
    assert sep.max() < tol_deg


def test_ra_returns_after_one_sidereal_day() -> None:
    later = ALERT_TIME + timedelta(seconds=SIDEREAL_DAY_S)
    ra0, dec0 = co.local_to_equatorial(ZEN[1:4], AZI[1:4], ALERT_TIME)
    ra1, dec1 = co.local_to_equatorial(ZEN[1:4], AZI[1:4], later)
    assert np.abs(_wrap_deg(np.degrees(ra1 - ra0))).max() < 0.01
    assert np.abs(np.degrees(dec1 - dec0)).max() < 0.01


@pytest.mark.parametrize(("when", "tol_deg"), [(J2000_NOON, 0.02), (ALERT_TIME, 0.5)])
def test_ra_grows_90_degrees_in_a_quarter_sidereal_day(when: datetime, tol_deg: float) -> None:
    """A fixed local direction drifts eastwards in RA with the Earth's rotation. Far from J2000 the rotation axis
    is tilted from the ICRS pole by precession (~0.15° in 2026), hence the wider tolerance there."""
    ra0, _ = co.local_to_equatorial(ZEN[1:4], AZI[1:4], when)
    ra1, _ = co.local_to_equatorial(ZEN[1:4], AZI[1:4], when + timedelta(seconds=SIDEREAL_DAY_S / 4))
    np.testing.assert_allclose(_wrap_deg(np.degrees(ra1 - ra0)), 90.0, atol=tol_deg)


def test_round_trip_local_equatorial_local() -> None:
    ra, dec = co.local_to_equatorial(ZEN, AZI, ALERT_TIME)
    zen, azi = co.equatorial_to_local(ra, dec, ALERT_TIME)
    np.testing.assert_allclose(zen, ZEN, atol=1e-6)
    np.testing.assert_allclose(np.angle(np.exp(1j * (azi - AZI))), 0.0, atol=1e-6)
    assert np.all((azi >= 0) & (azi < 2 * math.pi))


def test_round_trip_equatorial_local_equatorial() -> None:
    ra = np.radians([0.0, 77.36, 180.0, 301.5])
    dec = np.radians([-60.0, 5.69, 0.0, 45.0])
    zen, azi = co.equatorial_to_local(ra, dec, ALERT_TIME)
    ra2, dec2 = co.local_to_equatorial(zen, azi, ALERT_TIME)
    assert co.angular_distance(ra, dec, ra2, dec2).max() < 1e-6


def test_scalars_are_accepted() -> None:
    ra, dec = co.local_to_equatorial(1.0, 2.0, ALERT_TIME)
    assert np.ndim(ra) == 0 and np.ndim(dec) == 0
    zen, azi = co.equatorial_to_local(float(ra), float(dec), ALERT_TIME)
    assert float(zen) == pytest.approx(1.0, abs=1e-6) and float(azi) == pytest.approx(2.0, abs=1e-6)


def test_no_iers_downloads_and_far_future_times_work() -> None:
    assert iers.conf.auto_download is False
    far = datetime(2045, 6, 1, tzinfo=timezone.utc)  # beyond the bundled Earth-orientation tables
    ra, dec = co.local_to_equatorial(ZEN[:2], AZI[:2], far)
    assert np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))


# --- HEALPix pixels --------------------------------------------------------------------------------------------------
def test_pixel_radec_is_nested_equatorial() -> None:
    nside = 4
    ring = np.arange(hp.nside2npix(nside))
    ra, dec = co.pixel_radec(nside, hp.ring2nest(nside, ring))
    theta, phi = hp.pix2ang(nside, ring)  # RING, via its own ordering
    np.testing.assert_allclose(dec, math.pi / 2 - theta, atol=1e-12)
    np.testing.assert_allclose(ra, phi, atol=1e-12)
    assert co.pixel_radec(1, [0])[1][0] > 0  # NESTED pixel 0 of nside 1 is a northern base pixel


def test_pixel_directions_are_converted_centres() -> None:
    ipix = np.array([0, 17, 100, 191])
    zen, azi = co.pixel_directions(4, ipix, ALERT_TIME)
    ra, dec = co.pixel_radec(4, ipix)
    zen2, azi2 = co.equatorial_to_local(ra, dec, ALERT_TIME)
    np.testing.assert_allclose(zen, zen2)
    np.testing.assert_allclose(azi, azi2)


# --- helpers -----------------------------------------------------------------------------------------------------
def test_direction_vector_points_along_travel() -> None:
    vec = co.direction_vector([0.0, math.pi / 2, math.pi / 2, math.pi], [0.0, 0.0, math.pi / 2, 0.0])
    expected = [[0, 0, -1], [-1, 0, 0], [0, -1, 0], [0, 0, 1]]  # down-going, from +x, from +y, up-going
    np.testing.assert_allclose(vec, expected, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(co.direction_vector(ZEN, AZI), axis=-1), 1.0)


def test_angular_distance() -> None:
    lon1, lat1 = np.radians([10.0, 0.0, 30.0, 0.0]), np.radians([20.0, 0.0, -89.0, 0.0])
    lon2, lat2 = np.radians([10.0, 180.0, 210.0, 1e-7]), np.radians([21.0, 0.0, -89.0, 0.0])
    got = co.angular_distance(lon1, lat1, lon2, lat2)
    v1 = hp.ang2vec(math.pi / 2 - lat1, lon1)
    v2 = hp.ang2vec(math.pi / 2 - lat2, lon2)
    ref = np.arctan2(np.linalg.norm(np.cross(v1, v2), axis=1), np.sum(v1 * v2, axis=1))
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-15)
    assert got[1] == pytest.approx(math.pi)
    assert got[2] == pytest.approx(math.radians(2.0), rel=1e-9)  # across the pole
    assert got[3] == pytest.approx(1e-7 * math.pi / 180, rel=1e-6)  # tiny angles stay accurate
