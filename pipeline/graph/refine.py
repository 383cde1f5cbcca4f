"""Which pixels each stage scans: pure functions on arrays (nside, ipix, llh), HEALPix NESTED throughout.

Stage 0 scans the whole sky. Every later stage k refines an area around the *global* best fit (the pixel
with the lowest finite llh over every result so far, whatever its stage): a chosen pixel at the previous
stage's nside is replaced by all its children at nside_k. Two rules pick the chosen pixels:

* fixed: the N pixels at the previous nside whose centres are nearest the best fit's centre;
* adaptive: every previous-stage pixel whose 2*delta-llh lies below a containment level plus a margin,
  plus its neighbours (so the refined area follows the contour), plus the pixel under the best fit (so a
  best fit that moved outside the previous stage's area is still refined); at most ``max_refine`` of
  them, nearest the best fit first.

Failed fits (llh NaN) are never the best fit and never selected by the adaptive rule. Everything is
deterministic for the same inputs (ties break on the pixel index), so a re-run PRE script rewrites the
same files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from skyscan.errors import InputError, SkyscanError
from skyscan.reco.healpix import nest_to_ang
from skyscan.settings.scan import is_valid_nside

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class BestPixel:
    """The global best fit of a scan so far: its pixel (NESTED at ``nside``) and llh.

    Not ``skyscan.products.meta.BestFit`` (the merged map's best-fit direction, with detector angles)."""

    nside: int
    ipix: int
    llh: float

    def vector(self) -> FloatArray:
        return _pix2vec(self.nside, np.array([self.ipix]))[:, 0]

    def radec_deg(self) -> tuple[float, float]:
        theta, phi = nest_to_ang(self.nside, np.array([self.ipix]))
        return float(np.degrees(phi[0])) % 360.0, 90.0 - float(np.degrees(theta[0]))


def _pix2vec(nside: int, ipix: IntArray) -> FloatArray:
    """Unit vectors (3, N) of NESTED pixel centres, without importing healpy (slow to import)."""
    theta, phi = nest_to_ang(nside, ipix)
    sin_t = np.sin(theta)
    return np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), np.cos(theta)])


#: Up to this many pixels, nearest_pixels ranks every pixel centre instead of querying a disc.
BRUTE_FORCE_NPIX = 12 * 256 * 256


def _check_nside(nside: int) -> None:
    """The configuration's nside rule (``skyscan.settings.scan.is_valid_nside``), for arguments of this module."""
    if not is_valid_nside(nside):
        raise InputError(f"nside must be a power of two from 1 to 2**29, got {nside}")


def all_pixels(nside: int) -> IntArray:
    """Every NESTED pixel of the sky (stage 0)."""
    _check_nside(nside)
    return np.arange(12 * nside * nside, dtype=np.int64)


def split_batches(ipix: npt.ArrayLike, pixels_per_job: int) -> list[IntArray]:
    """Sorted, unique pixels cut into consecutive batches of at most ``pixels_per_job``."""
    if pixels_per_job < 1:
        raise InputError(f"pixels_per_job must be >= 1, got {pixels_per_job}")
    pix = np.unique(np.asarray(ipix, dtype=np.int64))
    return [pix[i : i + pixels_per_job] for i in range(0, pix.size, pixels_per_job)]


def batch_count(npix: int, pixels_per_job: int) -> int:
    return -(-npix // pixels_per_job)


def _as_arrays(nside: npt.ArrayLike, ipix: npt.ArrayLike, llh: npt.ArrayLike) -> tuple[IntArray, IntArray, FloatArray]:
    ns = np.asarray(nside, dtype=np.int64).reshape(-1)
    px = np.asarray(ipix, dtype=np.int64).reshape(-1)
    lh = np.asarray(llh, dtype=np.float64).reshape(-1)
    if ns.size == 1 and px.size != 1:
        ns = np.full(px.size, ns[0], dtype=np.int64)
    if not ns.size == px.size == lh.size:
        raise InputError(f"nside, ipix and llh differ in length ({ns.size}, {px.size}, {lh.size})")
    return ns, px, lh


def global_best(nside: npt.ArrayLike, ipix: npt.ArrayLike, llh: npt.ArrayLike) -> BestPixel | None:
    """The pixel with the lowest finite llh; ties go to the finer nside, then the lower index. None if none."""
    ns, px, lh = _as_arrays(nside, ipix, llh)
    ok = np.flatnonzero(np.isfinite(lh))
    if ok.size == 0:
        return None
    order = np.lexsort((px[ok], -ns[ok], lh[ok]))
    i = ok[order[0]]
    return BestPixel(nside=int(ns[i]), ipix=int(px[i]), llh=float(lh[i]))


def children(nside_from: int, ipix: npt.ArrayLike, nside_to: int) -> IntArray:
    """All NESTED descendants at ``nside_to`` of pixels at ``nside_from`` (sorted, unique)."""
    _check_nside(nside_from)
    _check_nside(nside_to)
    if nside_to < nside_from:
        raise InputError(f"cannot refine nside {nside_from} into the coarser nside {nside_to}")
    factor = (nside_to // nside_from) ** 2
    parents = np.unique(np.asarray(ipix, dtype=np.int64))
    return (parents[:, None] * factor + np.arange(factor, dtype=np.int64)[None, :]).reshape(-1)


def _by_distance(nside: int, ipix: IntArray, centre: FloatArray) -> IntArray:
    """``ipix`` ordered by the angle between their centres and ``centre``, ties by index."""
    if ipix.size == 0:
        return ipix
    vec = _pix2vec(nside, ipix)
    cos = np.clip(centre @ vec, -1.0, 1.0)
    return ipix[np.lexsort((ipix, -cos))]


def nearest_pixels(nside: int, centre: FloatArray, n: int) -> IntArray:
    """The ``n`` pixels at ``nside`` whose centres are nearest the unit vector ``centre`` (sorted by index)."""
    _check_nside(nside)
    npix = 12 * nside * nside
    if n < 1 or n > npix:
        raise InputError(f"cannot pick {n} of the {npix} pixels at nside {nside}")
    if npix <= BRUTE_FORCE_NPIX:  # every centre: exact, and no healpy import for the usual stages
        return np.sort(_by_distance(nside, np.arange(npix, dtype=np.int64), centre)[:n])
    import healpy as hp  # imported here: costly, and only the finest stages need it

    radius = max(2.0 * np.sqrt(n * hp.nside2pixarea(nside) / np.pi), hp.nside2resol(nside))
    while True:
        radius = min(radius, np.pi)
        candidates = np.asarray(hp.query_disc(nside, centre, radius, inclusive=False, nest=True), dtype=np.int64)
        # Every centre inside the disc is nearer than every centre outside it: n inside suffice.
        if candidates.size >= n or radius >= np.pi:
            break
        radius *= 1.6
    return np.sort(_by_distance(nside, candidates, centre)[:n])


def refine_fixed(best: BestPixel, prev_nside: int, nside: int, n: int) -> tuple[IntArray, IntArray]:
    """Fixed rule: (chosen pixels at ``prev_nside``, their children at ``nside``)."""
    chosen = nearest_pixels(prev_nside, best.vector(), n)
    return chosen, children(prev_nside, chosen, nside)


def refine_adaptive(
    nside_arr: npt.ArrayLike,
    ipix_arr: npt.ArrayLike,
    llh_arr: npt.ArrayLike,
    best: BestPixel,
    prev_nside: int,
    nside: int,
    threshold: float,
    margin: float,
    max_refine: int,
) -> tuple[IntArray, IntArray]:
    """Adaptive rule: (chosen pixels at ``prev_nside``, their children at ``nside``).

    ``threshold`` is the containment level's 2*delta-llh; delta is taken from the global best llh.
    """
    import healpy as hp  # imported here: costly, and prepare does not need it

    ns, px, lh = _as_arrays(nside_arr, ipix_arr, llh_arr)
    at_prev = ns == prev_nside
    with np.errstate(invalid="ignore"):
        inside = at_prev & np.isfinite(lh) & (2.0 * (lh - best.llh) <= threshold + margin)
    theta, phi = hp.pix2ang(best.nside, best.ipix, nest=True)
    under_best = int(hp.ang2pix(prev_nside, theta, phi, nest=True))
    core = np.union1d(px[inside], [under_best]).astype(np.int64)
    neighbours = np.asarray(hp.get_all_neighbours(prev_nside, core, nest=True), dtype=np.int64).reshape(-1)
    area = np.union1d(core, neighbours[neighbours >= 0]).astype(np.int64)
    chosen = np.sort(_by_distance(prev_nside, area, best.vector())[:max_refine])
    return chosen, children(prev_nside, chosen, nside)


@dataclass(frozen=True)
class Selection:
    """What a stage scans: ``refined`` pixels at ``prev_nside`` and the new ``pixels`` at ``nside``."""

    stage: int
    nside: int
    prev_nside: int
    rule: str
    best: BestPixel
    refined: IntArray
    pixels: IntArray  # sorted; already-scanned pixels at ``nside`` removed


def select_stage(
    stage: int,
    nside_arr: npt.ArrayLike,
    ipix_arr: npt.ArrayLike,
    llh_arr: npt.ArrayLike,
    prev_nside: int,
    nside: int,
    rule: str,
    refine: int | None = None,
    threshold: float = 0.0,
    margin: float = 0.0,
    max_refine: int = 1,
) -> Selection:
    """Pick the pixels of stage ``stage`` from every result so far (all stages, any nside).

    Raises ``SkyscanError`` when no pixel has a finite llh (there is no best fit to refine around).
    """
    ns, px, lh = _as_arrays(nside_arr, ipix_arr, llh_arr)
    best = global_best(ns, px, lh)
    if best is None:
        raise SkyscanError(f"stage {stage}: no scanned pixel has a finite llh, so there is no best fit to refine")
    if rule == "fixed":
        if refine is None:
            raise InputError(f"stage {stage}: the fixed rule needs the number of pixels to refine")
        refined, pixels = refine_fixed(best, prev_nside, nside, refine)
    elif rule == "adaptive":
        refined, pixels = refine_adaptive(ns, px, lh, best, prev_nside, nside, threshold, margin, max_refine)
    else:
        raise InputError(f"unknown refinement rule {rule!r}")
    done = px[ns == nside]
    pixels = np.setdiff1d(pixels, done).astype(np.int64)
    return Selection(stage=stage, nside=nside, prev_nside=prev_nside, rule=rule, best=best, refined=refined, pixels=pixels)


# ---------------------------------------------------------------------------------------------------------------
# Resolving the region: refinement past the last configured stage (docs/graph.md, "Resolving the region")
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resolution:
    """How finely the containment region at one level is sampled: its pixels at the finest scanned nside.

    ``pixels`` counts the finest-nside pixels with a finite llh and 2*delta-llh (from the global best) at most
    ``threshold``; the region is resolved when that is at least ``min_pixels``."""

    nside: int
    pixels: int
    threshold: float
    min_pixels: int

    @property
    def resolved(self) -> bool:
        return self.pixels >= self.min_pixels


def region_resolution(
    nside_arr: npt.ArrayLike, ipix_arr: npt.ArrayLike, llh_arr: npt.ArrayLike, threshold: float, min_pixels: int
) -> Resolution:
    """The ``Resolution`` of the region 2*delta-llh <= ``threshold`` over every result so far (any nsides).

    Raises ``SkyscanError`` when no pixel has a finite llh (there is no region)."""
    ns, px, lh = _as_arrays(nside_arr, ipix_arr, llh_arr)
    best = global_best(ns, px, lh)
    if best is None:
        raise SkyscanError("no scanned pixel has a finite llh, so there is no containment region")
    finest = int(ns.max())
    with np.errstate(invalid="ignore"):
        inside = (ns == finest) & np.isfinite(lh) & (2.0 * (lh - best.llh) <= threshold)
    pixels = int(np.unique(px[inside]).size)
    return Resolution(nside=finest, pixels=pixels, threshold=float(threshold), min_pixels=int(min_pixels))


def resolve_nside(resolution: Resolution, max_nside: int) -> int | None:
    """The nside of the next resolving stage, None when the region is resolved or ``max_nside`` is reached.

    The factor is the smallest power of two f with pixels * f**2 >= min_pixels (a region of n pixels holds about
    n * f**2 pixels at f times the nside), at least 2, and the result is capped at ``max_nside``. One stage thus
    normally suffices; if the region shrinks as it is resolved (a best fit that sharpens), the next stage goes on.
    """
    _check_nside(max_nside)
    if resolution.resolved or resolution.nside >= max_nside:
        return None
    have = max(resolution.pixels, 1)
    factor = 2
    while have * factor * factor < resolution.min_pixels:
        factor *= 2
    return min(resolution.nside * factor, max_nside)


def resolve_refine_cap(max_refine: int, min_pixels: int) -> int:
    """Pixels of the finest stage a resolving stage may refine: the region (fewer than ``min_pixels``), its
    margin and its ring of neighbours fit in 3 * min_pixels; never fewer than ``scan.adaptive.max_refine``."""
    return max(int(max_refine), 3 * int(min_pixels), 1)


def select_resolve_stage(
    stage: int,
    nside_arr: npt.ArrayLike,
    ipix_arr: npt.ArrayLike,
    llh_arr: npt.ArrayLike,
    nside: int,
    threshold: float,
    margin: float,
    max_refine: int,
) -> Selection:
    """A resolving stage's pixels: the adaptive rule applied at the finest scanned nside (the region's pixels
    within ``threshold + margin``, their neighbours and the pixel under the best fit, nearest first), refined to
    ``nside``. Only the region's neighbourhood is scanned, so the cost follows the region, not the sky."""
    ns, px, lh = _as_arrays(nside_arr, ipix_arr, llh_arr)
    best = global_best(ns, px, lh)
    if best is None:
        raise SkyscanError(f"stage {stage}: no scanned pixel has a finite llh, so there is no best fit to refine")
    prev_nside = int(ns.max())
    refined, pixels = refine_adaptive(ns, px, lh, best, prev_nside, nside, threshold, margin, max_refine)
    pixels = np.setdiff1d(pixels, px[ns == nside]).astype(np.int64)
    return Selection(stage=stage, nside=nside, prev_nside=prev_nside, rule="resolve", best=best, refined=refined,
                     pixels=pixels)
