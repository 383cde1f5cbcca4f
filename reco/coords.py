"""Detector-frame and equatorial (J2000/ICRS) directions, and HEALPix pixel centres.

Detector frame (IceCube-like, documented in docs/coordinates.md):
- x points to grid east (towards 90° E longitude), y to grid north (along the Greenwich
  meridian), z up; right-handed.
- A direction is where the particle comes FROM: zenith 0 = down-going, azimuth measured from
  +x towards +y (counter-clockwise seen from above).
- The horizontal (AltAz) azimuth measured from true north eastwards is
  ``az = 90° - azimuth - longitude``; altitude is ``90° - zenith``.

Degrees at the edges, radians inside. Pixels are HEALPix NESTED, equatorial, theta = 90° - Dec,
phi = RA. Conversions go through astropy's AltAz frame without refraction, and never download
Earth-orientation tables (the bundled ones are used; beyond them accuracy degrades gracefully,
far below a HEALPix pixel).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
from astropy import units as u
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.time import Time
from astropy.utils import iers

from skyscan.reco.healpix import nest_to_ang

FloatArray = npt.NDArray[np.float64]

iers.conf.auto_download = False
iers.conf.auto_max_age = None
iers.conf.iers_degraded_accuracy = "warn"


@dataclass(frozen=True)
class Site:
    """Geodetic position of the detector (degrees, metres)."""

    lat_deg: float
    lon_deg: float
    height_m: float = 2835.0


ICECUBE = Site(lat_deg=-89.99, lon_deg=-63.45)
IDEAL_POLE = Site(lat_deg=-90.0, lon_deg=0.0)


def _frame(time: datetime, site: Site) -> AltAz:
    loc = EarthLocation.from_geodetic(lon=site.lon_deg * u.deg, lat=site.lat_deg * u.deg, height=site.height_m * u.m)
    return AltAz(obstime=Time(time), location=loc, pressure=0 * u.hPa)


def local_to_equatorial(
    zenith: npt.ArrayLike, azimuth: npt.ArrayLike, time: datetime, site: Site = ICECUBE
) -> tuple[FloatArray, FloatArray]:
    """Detector (zenith, azimuth) in radians -> (ra, dec) in radians, J2000/ICRS."""
    zen = np.asarray(zenith, dtype=np.float64)
    azi = np.asarray(azimuth, dtype=np.float64)
    alt = np.pi / 2 - zen
    az = np.mod(np.pi / 2 - azi - np.radians(site.lon_deg), 2 * np.pi)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sky = SkyCoord(alt=alt * u.rad, az=az * u.rad, frame=_frame(time, site)).icrs
    return np.asarray(sky.ra.rad, dtype=np.float64), np.asarray(sky.dec.rad, dtype=np.float64)


def equatorial_to_local(
    ra: npt.ArrayLike, dec: npt.ArrayLike, time: datetime, site: Site = ICECUBE
) -> tuple[FloatArray, FloatArray]:
    """(ra, dec) in radians, J2000/ICRS -> detector (zenith, azimuth) in radians."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sky = SkyCoord(ra=np.asarray(ra) * u.rad, dec=np.asarray(dec) * u.rad, frame="icrs")
        hor = sky.transform_to(_frame(time, site))
    zen = np.pi / 2 - np.asarray(hor.alt.rad, dtype=np.float64)
    azi = np.mod(np.pi / 2 - np.asarray(hor.az.rad, dtype=np.float64) - np.radians(site.lon_deg), 2 * np.pi)
    return zen, azi


def pixel_radec(nside: int, ipix_nested: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Centres of NESTED pixels as (ra, dec) in radians."""
    theta, phi = nest_to_ang(nside, np.asarray(ipix_nested, dtype=np.int64))
    return np.asarray(phi, dtype=np.float64), np.asarray(np.pi / 2 - theta, dtype=np.float64)


def pixel_directions(
    nside: int, ipix_nested: npt.ArrayLike, time: datetime, site: Site = ICECUBE
) -> tuple[FloatArray, FloatArray]:
    """Detector (zenith, azimuth) in radians of NESTED equatorial pixel centres."""
    ra, dec = pixel_radec(nside, ipix_nested)
    return equatorial_to_local(ra, dec, time, site)


def direction_vector(zenith: npt.ArrayLike, azimuth: npt.ArrayLike) -> FloatArray:
    """Unit vector(s) of the particle's *travel* direction, shape (..., 3)."""
    zen = np.asarray(zenith, dtype=np.float64)
    azi = np.asarray(azimuth, dtype=np.float64)
    return -np.stack([np.sin(zen) * np.cos(azi), np.sin(zen) * np.sin(azi), np.cos(zen)], axis=-1)


def angular_distance(lon1: npt.ArrayLike, lat1: npt.ArrayLike, lon2: npt.ArrayLike, lat2: npt.ArrayLike) -> FloatArray:
    """Great-circle distance (radians) between (lon, lat) pairs in radians (Vincenty form)."""
    l1, b1, l2, b2 = (np.asarray(v, dtype=np.float64) for v in (lon1, lat1, lon2, lat2))
    dl = l2 - l1
    num = np.hypot(np.cos(b2) * np.sin(dl), np.cos(b1) * np.sin(b2) - np.sin(b1) * np.cos(b2) * np.cos(dl))
    den = np.sin(b1) * np.sin(b2) + np.cos(b1) * np.cos(b2) * np.cos(dl)
    return np.asarray(np.arctan2(num, den), dtype=np.float64)
