"""Multi-order HEALPix skymaps assembled from the stages of a scan.

A scan produces results at several nsides: stage 0 covers the whole sky coarsely, later stages re-scan selected
areas more finely. The merged product is a multi-order map in NUNIQ form (uniq = 4 * nside**2 + NESTED index)
where every point of the sky is covered exactly once, by the finest pixel scanned there.

Coordinates are equatorial: theta = 90 deg - Dec, phi = RA. All pixel indices in this module are NESTED unless a
name says otherwise (NUNIQ ``uniq``, RING ``flatten`` output).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from skyscan.errors import InputError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

MAX_ORDER = 29
"""Deepest HEALPix order that fits NESTED indices (and NUNIQ values) in int64."""

# First NUNIQ value of each order: 4 * 4**order. Used to find the order of a uniq value exactly (no float log).
_UNIQ_ORDER_STARTS = np.array([4 << (2 * o) for o in range(MAX_ORDER + 1)], dtype=np.int64)
_UNIQ_END = 16 << (2 * MAX_ORDER)

_VALUE_FIELDS = ("llh", "x", "y", "z", "t")


# --------------------------------------------------------------------------------------------------------------
# NUNIQ helpers
# --------------------------------------------------------------------------------------------------------------


def _as_int64(values: npt.ArrayLike, what: str) -> IntArray:
    """Integer array from user data; floats with a fractional part or non-numbers are rejected."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    if arr.size == 0:
        return arr.astype(np.int64)
    raise InputError(f"{what} must be integers")


def order_of_nside(nside: npt.ArrayLike) -> IntArray:
    """HEALPix order log2(nside); rejects anything that is not a power of two between 1 and 2**29."""
    n = _as_int64(nside, "nside")
    bad = (n < 1) | (n > (1 << MAX_ORDER))
    bad |= np.bitwise_and(n, n - 1) != 0
    if np.any(bad):
        first = np.atleast_1d(n)[np.atleast_1d(bad)][0]
        raise InputError(f"nside {int(first)} is not a power of two between 1 and 2**{MAX_ORDER}")
    order = np.round(np.log2(np.maximum(n, 1))).astype(np.int64)
    return order


def nside_ipix_to_uniq(nside: npt.ArrayLike, ipix: npt.ArrayLike) -> IntArray:
    """NUNIQ index 4*nside**2 + ipix of NESTED pixels (vectorised over both arguments)."""
    order = order_of_nside(nside)
    pix = _as_int64(ipix, "ipix")
    npix = 12 << (2 * order)
    if np.any((pix < 0) | (pix >= npix)):
        raise InputError("NESTED pixel index out of range for its nside")
    return np.asarray((4 << (2 * order)) + pix, dtype=np.int64)


def uniq_to_order_ipix(uniq: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    """(order, NESTED ipix) of NUNIQ indices, computed with integer arithmetic only (exact up to order 29)."""
    u = _as_int64(uniq, "uniq")
    if np.any((u < 4) | (u >= _UNIQ_END)):
        raise InputError("NUNIQ index out of range (must be 4 <= uniq < 16 * 4**29)")
    order = np.searchsorted(_UNIQ_ORDER_STARTS, u, side="right").astype(np.int64) - 1
    ipix = u - (np.int64(4) << (2 * order))
    return order, ipix


def uniq_to_nside_ipix(uniq: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    """(nside, NESTED ipix) of NUNIQ indices; the inverse of `nside_ipix_to_uniq`."""
    order, ipix = uniq_to_order_ipix(uniq)
    return np.left_shift(np.int64(1), order), ipix


# --------------------------------------------------------------------------------------------------------------
# Data classes
# --------------------------------------------------------------------------------------------------------------


def _float_array(values: npt.ArrayLike) -> FloatArray:
    return np.ascontiguousarray(values, dtype=np.float64).reshape(-1)


@dataclass
class StageResult:
    """The pixels scanned at one nside (one stage, or one batch of a stage): plain arrays, NESTED indices."""

    nside: int
    ipix: IntArray
    llh: FloatArray
    x: FloatArray
    y: FloatArray
    z: FloatArray
    t: FloatArray
    status: npt.NDArray[np.int32]

    def __post_init__(self) -> None:
        self.nside = 1 << int(order_of_nside(self.nside))  # validates: a power of two
        self.ipix = np.ascontiguousarray(_as_int64(self.ipix, "ipix").reshape(-1))
        self.llh = _float_array(self.llh)
        self.x = _float_array(self.x)
        self.y = _float_array(self.y)
        self.z = _float_array(self.z)
        self.t = _float_array(self.t)
        self.status = np.ascontiguousarray(self.status, dtype=np.int32).reshape(-1)
        n = self.ipix.size
        for name in (*_VALUE_FIELDS, "status"):
            if getattr(self, name).size != n:
                raise InputError(f"stage at nside {self.nside}: '{name}' has a different length from 'ipix'")
        if n and (self.ipix.min() < 0 or self.ipix.max() >= 12 * self.nside**2):
            raise InputError(f"stage at nside {self.nside}: NESTED pixel index out of range")


@dataclass
class MultiOrderMap:
    """A multi-order skymap: one row per NUNIQ pixel, sorted by uniq, covering the sky exactly once.

    Values are those of the scan (llh = -ln L, NaN for a failed fit; fitted vertex x, y, z, t; fit status).
    """

    uniq: IntArray
    llh: FloatArray
    x: FloatArray
    y: FloatArray
    z: FloatArray
    t: FloatArray
    status: npt.NDArray[np.int32]

    def __post_init__(self) -> None:
        self.uniq = np.ascontiguousarray(_as_int64(self.uniq, "uniq").reshape(-1))
        self.llh = _float_array(self.llh)
        self.x = _float_array(self.x)
        self.y = _float_array(self.y)
        self.z = _float_array(self.z)
        self.t = _float_array(self.t)
        self.status = np.ascontiguousarray(self.status, dtype=np.int32).reshape(-1)
        n = self.uniq.size
        for name in (*_VALUE_FIELDS, "status"):
            if getattr(self, name).size != n:
                raise InputError(f"multi-order map: '{name}' has a different length from 'uniq'")
        uniq_to_order_ipix(self.uniq)  # range check
        if n > 1 and np.any(np.diff(self.uniq) <= 0):
            # Maps read from elsewhere may come unsorted; sort once so lookups can rely on it.
            perm = np.argsort(self.uniq, kind="stable")
            self.uniq = self.uniq[perm]
            if np.any(np.diff(self.uniq) == 0):
                raise InputError("multi-order map: duplicate NUNIQ pixel")
            for name in (*_VALUE_FIELDS, "status"):
                setattr(self, name, getattr(self, name)[perm])

    def __len__(self) -> int:
        return int(self.uniq.size)

    @property
    def order(self) -> IntArray:
        """HEALPix order (log2 nside) per pixel."""
        return uniq_to_order_ipix(self.uniq)[0]

    @property
    def nside(self) -> IntArray:
        """nside per pixel."""
        return np.asarray(np.left_shift(np.int64(1), self.order), dtype=np.int64)

    @property
    def ipix(self) -> IntArray:
        """NESTED index per pixel (at that pixel's own nside)."""
        return uniq_to_order_ipix(self.uniq)[1]

    @property
    def area_sr(self) -> FloatArray:
        """Solid angle per pixel in steradians (4 pi / (12 nside**2))."""
        nside = self.nside.astype(np.float64)
        return np.asarray(math.pi / (3.0 * nside * nside), dtype=np.float64)

    @property
    def n_failed(self) -> int:
        """Number of pixels whose fit failed (non-finite llh)."""
        return int(np.count_nonzero(~np.isfinite(self.llh)))

    @property
    def best_index(self) -> int:
        """Row of the minimum finite llh (a failed pixel is never the best fit)."""
        finite = np.isfinite(self.llh)
        if not np.any(finite):
            raise InputError("every pixel of the map failed (llh is NaN everywhere): no best fit")
        return int(np.argmin(np.where(finite, self.llh, np.inf)))

    @property
    def dllh2(self) -> FloatArray:
        """2 * (llh - min llh) per pixel, the test statistic of the containment levels (NaN stays NaN)."""
        return np.asarray(2.0 * (self.llh - self.llh[self.best_index]), dtype=np.float64)

    def fine_intervals(self, order: int) -> tuple[IntArray, IntArray]:
        """[start, end) of every pixel in NESTED indices at a deeper common `order` (>= the map's deepest)."""
        own = self.order
        if self.uniq.size and order < int(own.max()):
            raise InputError(f"order {order} is coarser than the map's deepest order {int(own.max())}")
        shift = 2 * (order - own)
        pix = self.ipix
        return np.left_shift(pix, shift), np.left_shift(pix + 1, shift)

    def locate(self, nside: int, ipix: npt.ArrayLike) -> IntArray:
        """Row of the map pixel containing each NESTED pixel `ipix` at `nside`, or -1 where none contains it whole.

        -1 means the queried pixel is split among finer map pixels (or lies outside the map's coverage).
        """
        query_order = int(order_of_nside(nside))
        pix = _as_int64(ipix, "ipix").reshape(-1)
        if self.uniq.size == 0:
            return np.full(pix.size, -1, dtype=np.int64)
        common = max(query_order, int(self.order.max()))
        start, end = self.fine_intervals(common)
        perm = np.argsort(start, kind="stable")
        sorted_start = start[perm]
        q_start = np.left_shift(pix, 2 * (common - query_order))
        q_end = np.left_shift(pix + 1, 2 * (common - query_order))
        pos = np.searchsorted(sorted_start, q_start, side="right") - 1
        row = perm[np.maximum(pos, 0)]
        inside = (pos >= 0) & (start[row] <= q_start) & (q_end <= end[row])
        return np.where(inside, row, -1).astype(np.int64)


# --------------------------------------------------------------------------------------------------------------
# Building the map
# --------------------------------------------------------------------------------------------------------------


def _expand_ranges(lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray]:
    """Concatenation of arange(lo[i], hi[i]) for all i, and for each element the i it came from."""
    count = np.maximum(hi - lo, 0)
    which = np.repeat(np.arange(lo.size, dtype=np.int64), count)
    offset = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    return lo[which] + offset, which


def _decompose(a: IntArray, b: IntArray, max_order: int) -> tuple[IntArray, IntArray, IntArray]:
    """Split each interval [a, b) of NESTED indices at `max_order` into the fewest whole HEALPix pixels.

    Returns (order, ipix, source interval) of the pieces. Working upward one order at a time, the indices below
    the next multiple of 4 on the left and above the last multiple of 4 on the right cannot be merged into a parent,
    so they become pixels at the current order; what remains is aligned and moves up one order.
    """
    orders: list[IntArray] = []
    pixels: list[IntArray] = []
    sources: list[IntArray] = []
    lo, hi = a.astype(np.int64), b.astype(np.int64)
    src = np.arange(a.size, dtype=np.int64)

    def emit(order: int, start: IntArray, stop: IntArray) -> None:
        pix, which = _expand_ranges(start, stop)
        orders.append(np.full(pix.size, order, dtype=np.int64))
        pixels.append(pix)
        sources.append(src[which])

    for order in range(max_order, -1, -1):
        if order == 0:
            emit(0, lo, hi)
            break
        n_left = np.minimum(np.remainder(-lo, 4), hi - lo)
        emit(order, lo, lo + n_left)
        lo = lo + n_left
        n_right = np.where(lo < hi, np.remainder(hi, 4), 0)
        emit(order, hi - n_right, hi)
        hi = hi - n_right
        keep = lo < hi
        lo, hi, src = lo[keep] // 4, hi[keep] // 4, src[keep]
        if lo.size == 0:
            break
    if not orders:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(orders), np.concatenate(pixels), np.concatenate(sources)


def _concatenate_stages(stages: Sequence[StageResult]) -> tuple[IntArray, IntArray, dict[str, npt.NDArray[np.generic]]]:
    orders = [np.full(s.ipix.size, int(order_of_nside(s.nside)), dtype=np.int64) for s in stages]
    values: dict[str, npt.NDArray[np.generic]] = {
        name: np.concatenate([getattr(s, name) for s in stages]) for name in (*_VALUE_FIELDS, "status")
    }
    return np.concatenate(orders), np.concatenate([s.ipix for s in stages]), values


def _deduplicate(uniq: IntArray, llh: FloatArray) -> IntArray:
    """Rows to keep so each uniq appears once: the lowest finite llh wins, failed fits lose, ties keep the first."""
    key = np.where(np.isfinite(llh), llh, np.inf)
    perm = np.lexsort((key, uniq))
    sorted_uniq = uniq[perm]
    first = np.ones(perm.size, dtype=bool)
    first[1:] = sorted_uniq[1:] != sorted_uniq[:-1]
    return np.sort(perm[first])


def _paint(order: IntArray, ipix: IntArray, max_order: int) -> tuple[IntArray, IntArray]:
    """Elementary segments of the sky at `max_order` and, for each, the finest input pixel covering it (-1: none).

    HEALPix NESTED pixels are intervals of fine indices that are either nested or disjoint, so painting the inputs
    from coarse to fine leaves every segment owned by the deepest pixel containing it.
    """
    shift = 2 * (max_order - order)
    start = np.left_shift(ipix, shift)
    end = np.left_shift(ipix + 1, shift)
    total = np.int64(12) << (2 * max_order)
    bounds = np.unique(np.concatenate([start, end, np.array([0, total], dtype=np.int64)]))
    owner = np.full(bounds.size - 1, -1, dtype=np.int64)
    for o in np.unique(order):
        rows = np.flatnonzero(order == o)
        lo = np.searchsorted(bounds, start[rows]).astype(np.int64)
        hi = np.searchsorted(bounds, end[rows]).astype(np.int64)
        seg, which = _expand_ranges(lo, hi)
        owner[seg] = rows[which]
    return bounds, owner


def build_multiorder(stages: Sequence[StageResult]) -> MultiOrderMap:
    """Merge scan stages into one multi-order map covering every point of the sky exactly once.

    Each point is represented by the finest pixel scanned there. Where a coarse pixel is only partly covered by
    finer ones, its uncovered remainder is split into the fewest descendants (at whatever orders are needed) that
    inherit the coarse pixel's values. The same pixel scanned twice keeps the lower finite llh.
    """
    if not stages:
        raise InputError("no scan stages to merge")
    order, ipix, values = _concatenate_stages(stages)
    if order.size == 0:
        raise InputError("the scan stages contain no pixels")
    uniq = (np.int64(4) << (2 * order)) + ipix
    llh = np.asarray(values["llh"], dtype=np.float64)
    rows = _deduplicate(uniq, llh)
    order, ipix = order[rows], ipix[rows]
    max_order = int(order.max())

    bounds, owner = _paint(order, ipix, max_order)
    if np.any(owner < 0):
        raise InputError("the scan stages do not cover the whole sky (stage 0 must scan every pixel)")
    # Merge neighbouring segments with the same owner so the remainder of a coarse pixel splits into few pieces.
    first = np.ones(owner.size, dtype=bool)
    first[1:] = owner[1:] != owner[:-1]
    seg_start = np.flatnonzero(first)
    seg_end = np.append(seg_start[1:], owner.size)
    out_order, out_ipix, src = _decompose(bounds[seg_start], bounds[seg_end], max_order)
    source_rows = rows[owner[seg_start][src]]

    out_uniq = (np.int64(4) << (2 * out_order)) + out_ipix
    perm = np.argsort(out_uniq, kind="stable")
    picked = source_rows[perm]
    return MultiOrderMap(
        uniq=out_uniq[perm],
        llh=np.asarray(values["llh"], dtype=np.float64)[picked],
        x=np.asarray(values["x"], dtype=np.float64)[picked],
        y=np.asarray(values["y"], dtype=np.float64)[picked],
        z=np.asarray(values["z"], dtype=np.float64)[picked],
        t=np.asarray(values["t"], dtype=np.float64)[picked],
        status=np.asarray(values["status"], dtype=np.int32)[picked],
    )


# --------------------------------------------------------------------------------------------------------------
# Derived products
# --------------------------------------------------------------------------------------------------------------


def probability_density(m: MultiOrderMap, weight: float = 1.0) -> FloatArray:
    """Probability per steradian, p proportional to exp(-weight * (llh - min llh)), normalised so sum(density*area) = 1.

    Failed (NaN) pixels get 0. With weight 1 the likelihood is used as a posterior with a flat prior on the sphere;
    other weights make the map's credible regions match non-Wilks containment levels (skyscan.products.credible).
    """
    delta = m.llh - m.llh[m.best_index]
    finite = np.isfinite(delta)
    weights = np.where(finite, np.exp(-weight * np.where(finite, delta, 0.0)), 0.0)
    norm = float(np.sum(weights * m.area_sr))
    return np.asarray(weights / norm, dtype=np.float64)


def _normalise_ordering(ordering: str) -> str:
    key = str(ordering).strip().upper()
    if key == "RING":
        return "RING"
    if key in ("NEST", "NESTED"):
        return "NESTED"
    raise InputError(f"unknown HEALPix ordering {ordering!r} (use RING or NESTED)")


def flatten(
    m: MultiOrderMap,
    nside_out: int,
    ordering: str = "RING",
    values: npt.ArrayLike | None = None,
) -> npt.NDArray[np.generic]:
    """A flat single-resolution HEALPix map (RING by default, or NESTED) of a per-pixel quantity of `m`.

    Each flat pixel takes the value of the multi-order pixel that contains the flat pixel's centre; where the
    centre lies on a boundary between map pixels, the one healpy's point lookup assigns it to. A flat pixel finer
    than the map there simply copies the value of its (unique) parent. `values` defaults to 2*delta-llh.
    """
    out_order = int(order_of_nside(nside_out))
    target = _normalise_ordering(ordering)
    vals = m.dllh2 if values is None else np.asarray(values)
    if vals.ndim != 1 or vals.size != len(m):
        raise InputError(f"values must have one entry per map pixel ({len(m)}), got shape {vals.shape}")
    if len(m) == 0:
        raise InputError("cannot flatten an empty map")
    rows = _flat_rows(m, out_order)
    flat_nested = vals[rows]
    if target == "NESTED":
        return flat_nested
    nside_flat = 1 << out_order
    nest_pix = np.arange(12 * nside_flat * nside_flat, dtype=np.int64)
    from skyscan.products.healpix import healpy

    hp = healpy()
    flat_ring = np.empty_like(flat_nested)
    flat_ring[np.asarray(hp.nest2ring(nside_flat, nest_pix), dtype=np.int64)] = flat_nested
    return flat_ring


def _flat_rows(m: MultiOrderMap, out_order: int) -> IntArray:
    """For every flat NESTED pixel at ``out_order``, the row of the map pixel that holds its centre.

    A map pixel at most as fine as the output covers a whole range of flat pixels; a flat pixel split among finer
    map pixels takes the one containing its centre (looked up at the map's deepest order). The ranges and the
    split pixels, sorted, tile the sky, so the rows are one ``np.repeat`` of each piece's row over its length.
    """
    max_order = int(m.order.max())
    nside_flat = 1 << out_order
    npix = 12 * nside_flat * nside_flat
    coarse = np.flatnonzero(m.order <= out_order).astype(np.int64)
    shift = 2 * (out_order - m.order[coarse])
    lo = np.left_shift(m.ipix[coarse], shift)
    hi = np.left_shift(m.ipix[coarse] + 1, shift)
    fine = np.flatnonzero(m.order > out_order)
    split = np.unique(np.right_shift(m.ipix[fine], 2 * (m.order[fine] - out_order))).astype(np.int64)
    split_rows = np.zeros(0, dtype=np.int64)
    if split.size:
        # Only flat pixels split among finer map pixels need their centre looked up (at the map's deepest order).
        from skyscan.products.healpix import healpy

        hp = healpy()
        vx, vy, vz = hp.pix2vec(nside_flat, split, nest=True)
        deep = np.asarray(hp.vec2pix(1 << max_order, vx, vy, vz, nest=True), dtype=np.int64)
        split_rows = m.locate(1 << max_order, deep)
    starts = np.concatenate([lo, split])
    stops = np.concatenate([hi, split + 1])
    owners = np.concatenate([coarse, split_rows])
    order = np.argsort(starts, kind="stable")
    starts, stops, owners = starts[order], stops[order], owners[order]
    tiles = (
        starts.size > 0
        and starts[0] == 0
        and stops[-1] == npix
        and bool(np.all(starts[1:] == stops[:-1]))
        and bool(np.all(owners >= 0))
    )
    if not tiles:  # not exactly one cover (a map built by hand): fill pixel by pixel, as a lookup would
        return _flat_rows_by_pixel(m, out_order)
    return np.repeat(owners, stops - starts)


def _flat_rows_by_pixel(m: MultiOrderMap, out_order: int) -> IntArray:
    """``_flat_rows`` for any map: coarse pixels fill their ranges in row order, the rest is looked up."""
    max_order = int(m.order.max())
    nside_flat = 1 << out_order
    nest_pix = np.arange(12 * nside_flat * nside_flat, dtype=np.int64)
    rows = np.full(nest_pix.size, -1, dtype=np.int64)
    coarse = np.flatnonzero(m.order <= out_order).astype(np.int64)
    shift = 2 * (out_order - m.order[coarse])
    lo = np.left_shift(m.ipix[coarse], shift)
    hi = np.left_shift(m.ipix[coarse] + 1, shift)
    filled, which = _expand_ranges(lo, hi)
    rows[filled] = coarse[which]
    split = np.flatnonzero(rows < 0)
    if split.size and out_order < max_order:
        from skyscan.products.healpix import healpy

        hp = healpy()
        vx, vy, vz = hp.pix2vec(nside_flat, nest_pix[split], nest=True)
        fine = np.asarray(hp.vec2pix(1 << max_order, vx, vy, vz, nest=True), dtype=np.int64)
        rows[split] = m.locate(1 << max_order, fine)
    if np.any(rows < 0):
        raise InputError("the multi-order map does not cover the whole sky")
    return rows


__all__ = [
    "MAX_ORDER",
    "MultiOrderMap",
    "StageResult",
    "build_multiorder",
    "flatten",
    "nside_ipix_to_uniq",
    "order_of_nside",
    "probability_density",
    "uniq_to_nside_ipix",
    "uniq_to_order_ipix",
]
