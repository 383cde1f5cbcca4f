"""Containment regions of a multi-order likelihood map: area and asymmetric RA/Dec errors.

A region at level L is the union of map pixels with 2*delta-llh <= L. Errors are measured from the best-fit
pixel centre to the extremes of the region's pixel boundaries. See docs/containment.md for the definitions,
the RA = 0 wrap, the pole rule and what is approximate. Pixel indices are NESTED; angles are degrees at the
interface and radians inside.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from skyscan.products.healpix import healpy
from skyscan.products.levels import LEVELS, LevelSpec, level_value, resolve_levels
from skyscan.products.moc import MultiOrderMap

__all__ = [
    "BOUNDARY_STEPS",
    "LEVELS",
    "LevelSpec",
    "Region",
    "best_fit_radec",
    "connected_components",
    "count_islands",
    "region",
    "regions",
    "resolve_levels",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BOUNDARY_STEPS = 4
"""Samples per pixel side in `healpy.boundaries`: pixel edges are curves, so corners alone can miss the extremes."""

_CHUNK = 20000  # pixels per `healpy.boundaries` call, to bound memory on wide regions
_SR_TO_DEG2 = (180.0 / math.pi) ** 2


@dataclass
class Region:
    """One containment region; errors are positive distances (degrees) from the best fit to the region's edges."""

    level_2dllh: float
    area_deg2: float
    ra_plus_deg: float
    ra_minus_deg: float
    dec_plus_deg: float
    dec_minus_deg: float
    n_pixels: int
    n_islands: int
    contains_pole: bool
    ra_errors_meaningful: bool
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary."""
        return asdict(self)


def best_fit_radec(m: MultiOrderMap) -> tuple[float, float]:
    """(RA, Dec) in degrees of the centre of the best-fit pixel (lowest finite llh)."""
    best = m.best_index
    theta, phi = healpy().pix2ang(int(m.nside[best]), int(m.ipix[best]), nest=True)
    return float(np.degrees(phi)) % 360.0, 90.0 - float(np.degrees(theta))


def _wrap180(deg: FloatArray) -> FloatArray:
    """Angles wrapped into (-180, 180]."""
    return np.asarray(180.0 - np.remainder(180.0 - deg, 360.0), dtype=np.float64)


def _touches_pole(order: IntArray, ipix: IntArray) -> tuple[bool, bool]:
    """(north, south): whether any of these NESTED pixels has a celestial pole as a corner.

    In NESTED numbering child 3 is the northern and child 0 the southern quarter, so the pixels meeting at the
    north pole are the last descendants of base pixels 0-3 and those at the south pole the first of base pixels 8-11.
    """
    per_base = np.left_shift(np.int64(1), 2 * order)
    base = ipix // per_base
    sub = ipix % per_base
    north = bool(np.any((base <= 3) & (sub == per_base - 1)))
    south = bool(np.any((base >= 8) & (sub == 0)))
    return north, south


@dataclass
class _Extent:
    dec_min: float
    dec_max: float
    ra_lo: float  # most negative RA offset from the best fit, degrees (may pass -180 if the region wraps)
    ra_hi: float  # most positive RA offset


def _extent(order: IntArray, ipix: IntArray, ra0: float, with_ra: bool) -> _Extent:
    """Dec range and RA offsets (relative to ra0) of the sampled boundaries of the given pixels.

    The RA span of each pixel is taken relative to its own centre (never more than 180 deg wide for a pixel that
    does not touch a pole), then shifted by the centre's wrapped offset from ra0: a pixel straddling the meridian
    opposite the best fit therefore shows up as an offset beyond +-180 rather than being silently folded.
    """
    hp = healpy()
    dec_min, dec_max, ra_lo, ra_hi = 90.0, -90.0, 0.0, 0.0
    for o in np.unique(order):
        nside = 1 << int(o)
        pix_all = ipix[order == o]
        for i in range(0, pix_all.size, _CHUNK):
            pix = pix_all[i : i + _CHUNK]
            vec = np.asarray(hp.boundaries(nside, pix, step=BOUNDARY_STEPS, nest=True)).reshape(pix.size, 3, -1)
            z = np.clip(vec[:, 2, :], -1.0, 1.0)
            dec = np.degrees(np.arcsin(z))
            dec_min = min(dec_min, float(dec.min()))
            dec_max = max(dec_max, float(dec.max()))
            if not with_ra:
                continue
            phi = np.degrees(np.arctan2(vec[:, 1, :], vec[:, 0, :]))
            _, phi_c = hp.pix2ang(nside, pix, nest=True)
            centre = np.degrees(np.asarray(phi_c, dtype=np.float64))
            local = _wrap180(phi - centre[:, None])
            offset = _wrap180(centre - ra0)
            ra_lo = min(ra_lo, float(np.min(offset + local.min(axis=1))))
            ra_hi = max(ra_hi, float(np.max(offset + local.max(axis=1))))
    return _Extent(dec_min, dec_max, ra_lo, ra_hi)


def count_islands(m: MultiOrderMap, rows: IntArray) -> int:
    """Number of connected components of the given map rows (pixels touching at an edge or a corner connect).

    For each pixel, its 8 neighbours at its own order are looked up in the map; a neighbour lying inside a coarser
    or equal map pixel links to it. Links to finer map pixels are found from the finer side, so all links are seen.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size <= 1:
        return int(rows.size)
    hp = healpy()
    local = np.full(len(m), -1, dtype=np.int64)
    local[rows] = np.arange(rows.size, dtype=np.int64)
    order_all, ipix_all = m.order, m.ipix
    src_parts: list[IntArray] = []
    dst_parts: list[IntArray] = []
    region_order = order_all[rows]
    for o in np.unique(region_order):
        nside = 1 << int(o)
        sel = rows[region_order == o]
        neigh = np.asarray(hp.get_all_neighbours(nside, ipix_all[sel], nest=True), dtype=np.int64).reshape(8, -1)
        src = np.broadcast_to(sel, neigh.shape).reshape(-1)
        flat = neigh.reshape(-1)
        valid = flat >= 0
        target = m.locate(nside, flat[valid])
        src = src[valid]
        hit = target >= 0
        src, target = src[hit], target[hit]
        inside = local[target] >= 0
        src_parts.append(local[src[inside]])
        dst_parts.append(local[target[inside]])
    a = np.concatenate(src_parts)
    b = np.concatenate(dst_parts)
    return connected_components(int(rows.size), a, b)


def connected_components(n: int, a: IntArray, b: IntArray) -> int:
    """Number of connected components of the undirected graph of nodes 0..n-1 with edges (a[i], b[i]).

    Label propagation with pointer jumping: every node starts as its own label, each pass gives both ends of every
    edge the smaller of their labels and then follows labels to their own label, until no edge joins two labels.
    A label is always a node of the same component, so the distinct labels left are the components. (numpy only:
    scipy's sparse graphs cost a merge a tenth of a second to import, for a few thousand pixels.)
    """
    label = np.arange(n, dtype=np.int64)
    if a.size == 0:
        return n
    while True:
        low = np.minimum(label[a], label[b])
        new = label.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        while True:  # jump: every label points at a smaller or equal node of the same component
            jumped = new[new]
            if np.array_equal(jumped, new):
                break
            new = jumped
        if np.array_equal(new, label):
            break
        label = new
    return int(np.unique(label).size)


def region(m: MultiOrderMap, level: float) -> Region:
    """The containment region at `level` (2*delta-llh): area, asymmetric errors around the best fit, islands.

    Failed (NaN) pixels are never inside; a coarse pixel counts with its whole area and extent.
    """
    lvl = level_value(level, repr(level), allow_zero=True)
    best = m.best_index
    d = m.dllh2
    rows = np.flatnonzero(np.isfinite(d) & (d <= lvl)).astype(np.int64)
    if not np.any(rows == best):  # cannot happen (its 2*delta-llh is 0); kept so the rule holds by construction
        rows = np.union1d(rows, [best]).astype(np.int64)
    ra0, dec0 = best_fit_radec(m)
    order, ipix = m.order[rows], m.ipix[rows]
    area = float(np.sum(m.area_sr[rows])) * _SR_TO_DEG2

    north, south = _touches_pole(order, ipix)
    pole = north or south
    ext = _extent(order, ipix, ra0, with_ra=not pole)
    notes: list[str] = []
    ra_plus, ra_minus = ext.ra_hi, -ext.ra_lo
    meaningful = True
    if pole:
        which = "north" if north and not south else "south" if south and not north else "north and south"
        notes.append(f"region contains the {which} celestial pole: RA errors set to 180 and not meaningful")
        meaningful = False
    elif ra_plus >= 180.0 or ra_minus >= 180.0:
        notes.append(
            "region reaches the meridian opposite the best fit (it wraps around a pole in RA): "
            "RA errors set to 180 and not meaningful"
        )
        meaningful = False
    if not meaningful:
        ra_plus = ra_minus = 180.0

    n_islands = count_islands(m, rows)
    if n_islands > 1:
        notes.append(f"region has {n_islands} separate islands; the errors span all of them")

    return Region(
        level_2dllh=lvl,
        area_deg2=area,
        ra_plus_deg=float(ra_plus),
        ra_minus_deg=float(ra_minus),
        dec_plus_deg=max(0.0, ext.dec_max - dec0),
        dec_minus_deg=max(0.0, dec0 - ext.dec_min),
        n_pixels=int(rows.size),
        n_islands=n_islands,
        contains_pole=pole,
        ra_errors_meaningful=meaningful,
        note="; ".join(notes),
    )


def regions(m: MultiOrderMap, spec: LevelSpec = "wilks") -> dict[str, Region]:
    """`region` at every level of a level specification (see `resolve_levels`), keyed by the level's label."""
    return {label: region(m, value) for label, value in resolve_levels(spec).items()}

