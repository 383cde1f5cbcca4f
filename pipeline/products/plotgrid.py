"""Where the plots sample the map: their RA/Dec grids, the zoom window and the map row under each grid point.

Kept apart from :mod:`skyscan.products.plot` (matplotlib) so that the merging process can look the rows up (with
healpy, which it has imported anyway) while a child process that has imported only matplotlib draws them
(``skyscan.products.write``): neither process imports what only the other needs. numpy and healpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from skyscan.products.healpix import healpy
from skyscan.products.meta import SkymapMeta
from skyscan.products.moc import MultiOrderMap

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

FULLSKY_DEC_CELLS = 180
"""Dec cells of the full-sky view (half-degree cells; twice as many in RA): it shows where, the zoom the detail."""
FULLSKY_WIDTH = 1080
"""Width (pixels) of the full-sky PNG."""
ZOOM_SIZE = 760
"""Width and height (pixels) of the zoom PNG."""


def sample_rows(m: MultiOrderMap, ra_deg: npt.ArrayLike, dec_deg: npt.ArrayLike) -> IntArray:
    """Row of the map pixel containing each (RA, Dec) point (degrees), looked up at the map's deepest order."""
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.clip(np.asarray(dec_deg, dtype=np.float64), -90.0, 90.0)
    nside = int(m.nside.max())
    theta = np.radians(90.0 - dec).reshape(-1)
    phi = np.radians(np.mod(ra, 360.0)).reshape(-1)
    pix = np.asarray(healpy().ang2pix(nside, theta, phi, nest=True), dtype=np.int64)
    return np.asarray(m.locate(nside, pix).reshape(ra.shape), dtype=np.int64)


@dataclass(frozen=True)
class FullskyCells:
    """The full-sky view's cells: edges in Mollweide projection coordinates (radians), samples at cell centres."""

    lon_edges: FloatArray
    lat_edges: FloatArray
    lon_g: FloatArray
    lat_g: FloatArray
    ra_g: FloatArray  # degrees
    dec_g: FloatArray


def fullsky_cells(n_dec: int = FULLSKY_DEC_CELLS) -> FullskyCells:
    n_ra = 2 * n_dec
    lon_edges = np.linspace(-math.pi, math.pi, n_ra + 1)
    lat_edges = np.linspace(-math.pi / 2, math.pi / 2, n_dec + 1)
    lon_c = 0.5 * (lon_edges[1:] + lon_edges[:-1])
    lat_c = 0.5 * (lat_edges[1:] + lat_edges[:-1])
    lon_g, lat_g = np.meshgrid(lon_c, lat_c)
    ra_g = np.mod(-np.degrees(lon_g), 360.0)
    dec_g = np.degrees(lat_g)
    return FullskyCells(lon_edges, lat_edges, lon_g, lat_g, ra_g, dec_g)


@dataclass
class ZoomWindow:
    """RA/Dec window of the zoom (degrees); RA bounds may run past 0/360 (labels wrap).

    `polar` is +1 or -1 when the window reaches the north or south celestial pole: the zoom is then drawn as a
    polar view around that pole out to `polar_radius` degrees, because an RA/Dec box is not local there.
    """

    ra_lo: float
    ra_hi: float
    dec_lo: float
    dec_hi: float
    polar: int = 0
    polar_radius: float = 0.0


def _resolution_deg(nside: int) -> float:
    """healpy's ``nside2resol`` in degrees: the square root of a pixel's area."""
    return math.degrees(healpy().nside2resol(nside))


def zoom_window(m: MultiOrderMap, meta: SkymapMeta, margin: float = 1.5) -> ZoomWindow:
    """A window centred on the best fit, about `margin` times the 90% region's extent, at least a few pixels wide."""
    bf = meta.best_fit
    reg = meta.regions.get("90") or max(meta.regions.values(), key=lambda r: r.level_2dllh)
    cos_dec = max(math.cos(math.radians(bf.dec_deg)), 1e-3)
    finest = _resolution_deg(int(m.nside.max()))
    coarse_best = _resolution_deg(int(bf.nside))
    half = max(reg.dec_plus_deg, reg.dec_minus_deg)
    if reg.ra_errors_meaningful:
        half = max(half, reg.ra_plus_deg * cos_dec, reg.ra_minus_deg * cos_dec)
    half = max(half * margin, 4.0 * finest, 1.5 * coarse_best, 0.2)
    half = min(half, 60.0)
    dec_lo, dec_hi = bf.dec_deg - half, bf.dec_deg + half
    if not reg.ra_errors_meaningful or dec_hi >= 89.0 or dec_lo <= -89.0:
        # Near a pole a box in RA is not local: look down on the pole, out to beyond the region.
        sign = 1 if bf.dec_deg >= 0 else -1
        extent = 90.0 - min(bf.dec_deg - reg.dec_minus_deg, 90.0) if sign > 0 else 90.0 + max(
            bf.dec_deg + reg.dec_plus_deg, -90.0
        )
        radius = min(max(extent * margin, (90.0 - abs(bf.dec_deg)) + half, 1.0), 90.0)
        return ZoomWindow(
            bf.ra_deg - 180.0,
            bf.ra_deg + 180.0,
            max(dec_lo, -90.0),
            min(dec_hi, 90.0),
            polar=sign,
            polar_radius=radius,
        )
    half_ra = min(half / cos_dec, 180.0)
    return ZoomWindow(bf.ra_deg - half_ra, bf.ra_deg + half_ra, dec_lo, dec_hi)


@dataclass(frozen=True)
class ZoomCells:
    """The zoom's cells. A box: x = RA, y = Dec (degrees). Polar: x = RA angle (radians), y = distance from the
    pole (degrees). Samples at cell centres (``x_g``, ``y_g``), looked up at (``ra_g``, ``dec_g``)."""

    x_edges: FloatArray
    y_edges: FloatArray
    x_g: FloatArray
    y_g: FloatArray
    ra_g: FloatArray
    dec_g: FloatArray


def zoom_cells(win: ZoomWindow, size: int = ZOOM_SIZE) -> ZoomCells:
    if win.polar:
        n_r = max(150, size // 4)
        n_t = 720
        r_edges = np.linspace(0.0, win.polar_radius, n_r + 1)
        t_edges = np.linspace(0.0, 2 * math.pi, n_t + 1)
        r_c = 0.5 * (r_edges[1:] + r_edges[:-1])
        t_c = 0.5 * (t_edges[1:] + t_edges[:-1])
        t_g, r_g = np.meshgrid(t_c, r_c)
        return ZoomCells(t_edges, r_edges, t_g, r_g, np.degrees(t_g), win.polar * (90.0 - r_g))
    n = max(200, size // 2)
    ra_edges = np.linspace(win.ra_lo, win.ra_hi, n + 1)
    dec_edges = np.linspace(win.dec_lo, win.dec_hi, n + 1)
    ra_c = 0.5 * (ra_edges[1:] + ra_edges[:-1])
    dec_c = 0.5 * (dec_edges[1:] + dec_edges[:-1])
    ra_g, dec_g = np.meshgrid(ra_c, dec_c)
    return ZoomCells(ra_edges, dec_edges, ra_g, dec_g, ra_g, dec_g)


@dataclass(frozen=True)
class PlotSamples:
    """What the plots of one map need from healpy, looked up before drawing: the map row under every grid point
    of the full sky and of the zoom, and the zoom's window (None where that plot is not drawn)."""

    fullsky_rows: IntArray | None
    zoom_window: ZoomWindow | None
    zoom_rows: IntArray | None


def plot_samples(m: MultiOrderMap, meta: SkymapMeta, fullsky: bool = True, zoom: bool = True) -> PlotSamples:
    """The :class:`PlotSamples` of the default-sized plots."""
    fullsky_rows = None
    if fullsky:
        cells = fullsky_cells()
        fullsky_rows = sample_rows(m, cells.ra_g, cells.dec_g)
    win = zoom_window(m, meta) if zoom else None
    zoom_rows = None
    if win is not None:
        zc = zoom_cells(win)
        zoom_rows = sample_rows(m, zc.ra_g, zc.dec_g)
    return PlotSamples(fullsky_rows, win, zoom_rows)


__all__ = [
    "FullskyCells",
    "PlotSamples",
    "ZoomCells",
    "ZoomWindow",
    "fullsky_cells",
    "plot_samples",
    "sample_rows",
    "zoom_cells",
    "zoom_window",
]
