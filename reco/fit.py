"""The per-pixel reconstruction interface and the built-in Pandel track fit.

Interface (docs/reconstruction-interface.md): a :class:`Reconstruction` is built for one event
and turns a batch of fixed directions into a :class:`FitTable`. Another likelihood (an IceTray
reconstruction in a container, say) plugs in by implementing the same two members.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from skyscan.reco.event import Event
from skyscan.reco.geometry import Geometry
from skyscan.reco.linefit import first_guess
from skyscan.reco.llh import PreparedEvent, TrackFrame, TrackLikelihood, prepare_event
from skyscan.reco.minimize import minimize_bfgs_batch
from skyscan.reco.photonics import C_VACUUM
from skyscan.reco.settings import RecoSettings

FloatArray = npt.NDArray[np.float64]

STATUS_OK = 0
STATUS_NOT_CONVERGED = 1
STATUS_NOT_FINITE = 2
STATUS_ERROR = 3

#: Pixels fitted together in one vectorised batch.
CHUNK = 32
#: Typical steps of (a [m], b [m], t0 [ns]) for the minimiser.
STEP_SCALE = np.array([3.0, 3.0, 10.0])


@dataclass
class FitTable:
    """One row per direction. llh is -ln L at the minimum (NaN if the fit failed)."""

    llh: FloatArray
    x: FloatArray
    y: FloatArray
    z: FloatArray
    t: FloatArray
    status: npt.NDArray[np.int32]
    evaluations: npt.NDArray[np.int32]
    seconds: FloatArray

    @classmethod
    def empty(cls, n: int) -> FitTable:
        nan = np.full(n, np.nan)
        return cls(
            llh=nan.copy(),
            x=nan.copy(),
            y=nan.copy(),
            z=nan.copy(),
            t=nan.copy(),
            status=np.full(n, STATUS_ERROR, dtype=np.int32),
            evaluations=np.zeros(n, dtype=np.int32),
            seconds=np.zeros(n),
        )

    def __len__(self) -> int:
        return int(self.llh.size)


@dataclass(frozen=True)
class VertexSeeds:
    """Candidate starting tracks for a batch of directions (a warm start), up to M per direction.

    ``points`` (P, M, 3) are points on earlier fitted tracks (metres, detector frame) and ``times`` (P, M)
    the times there (ns): typically the fitted vertex of the pixel's parent at the previous stage and of its
    best neighbour. Rows or entries that are NaN are absent; a direction without any finite entry is
    started cold, exactly as without seeds. ``separation`` (P,) is the angle (radians) between each
    direction and the direction its first seed was fitted at (NaN: unknown); where it is below
    ``CURVATURE_MAX_SEPARATION`` the seed is close enough for its curvature to be measured and used.
    """

    points: FloatArray
    times: FloatArray
    separation: FloatArray | None = None

    def __post_init__(self) -> None:
        if self.points.ndim != 3 or self.points.shape[2] != 3 or self.times.shape != self.points.shape[:2]:
            raise ValueError(f"seeds: points (P, M, 3) and times (P, M) expected, got {self.points.shape} "
                             f"and {self.times.shape}")  # fmt: skip
        if self.separation is not None and self.separation.shape != self.times.shape[:1]:
            raise ValueError(f"seeds: separation (P,) expected, got {self.separation.shape}")

    def __len__(self) -> int:
        return int(self.points.shape[0])


class Reconstruction(Protocol):
    """A batch of directions in (radians, detector frame, where the particle comes from), a FitTable out."""

    name: str

    def fit_directions(self, zenith: FloatArray, azimuth: FloatArray) -> FitTable: ...


class PandelTrackFit:
    """Vertex fit with the Pandel/MPE + hit/no-hit likelihood for each fixed direction."""

    name = "pandel-track"

    def __init__(
        self, event: Event, geometry: Geometry, settings: RecoSettings | None = None, *, reference: bool = False
    ) -> None:
        """The likelihood is evaluated by the compiled kernel when ``settings.compiled_kernel`` is set and
        ``reference`` is not; otherwise by the numpy formulas (the kernel's test oracle, same numbers)."""
        self.settings = settings or RecoSettings()
        self._likelihood: type[TrackLikelihood] = TrackLikelihood
        if reference or not self.settings.compiled_kernel:
            from skyscan.reco.llh_reference import ReferenceTrackLikelihood

            self._likelihood = ReferenceTrackLikelihood
        self.prep: PreparedEvent = prepare_event(event, geometry, self.settings)
        self.first_guess = first_guess(event, geometry)
        self._reference: tuple[FloatArray, float] | None = None

    def fit_directions(
        self, zenith: FloatArray, azimuth: FloatArray, seeds: VertexSeeds | None = None
    ) -> FitTable:
        """Fit the vertex of every direction; with ``seeds``, each fit starts from its best seed (warm start).

        A warm start changes only where the minimiser begins, never the function it minimises: the
        likelihood of each direction (its choice of nearby unhit DOMs included) is built from the same
        cold starting track as without seeds. Every seed is evaluated once at the pixel's direction and
        the lowest -ln L wins; where the seed is close (``CURVATURE_MAX_SEPARATION``) the curvature there is
        measured too and starts the minimiser's inverse Hessian. All those evaluations count in ``evaluations``.
        """
        zen = np.asarray(zenith, dtype=np.float64)
        azi = np.asarray(azimuth, dtype=np.float64)
        if seeds is not None and len(seeds) != zen.size:
            raise ValueError(f"seeds: {len(seeds)} rows for {zen.size} directions")
        table = FitTable.empty(zen.size)
        for lo in range(0, zen.size, CHUNK):
            chunk = slice(lo, min(lo + CHUNK, zen.size))
            t_start = time.perf_counter()
            try:
                self._fit_chunk(zen[chunk], azi[chunk], table, chunk, seeds)
            except (ValueError, FloatingPointError, ArithmeticError, np.linalg.LinAlgError):
                table.status[chunk] = STATUS_ERROR
                table.llh[chunk] = np.nan
            n = chunk.stop - chunk.start
            table.seconds[chunk] = (time.perf_counter() - t_start) / n
        return table

    def _reference_track(self) -> tuple[FloatArray, float]:
        """A point on the track fitted at the first-guess direction, and the time there.

        Pixels start their fit from this track projected onto their own frame, which is far
        closer to their optimum than the bare charge centre when they lie near the best fit.
        """
        if self._reference is None:
            first = self.first_guess
            frame = TrackFrame.from_angles(math.radians(first.zenith_deg), math.radians(first.azimuth_deg))
            start = self.prep.start_point
            ab = np.array([[float(start @ frame.e1), float(start @ frame.e2)]])
            like = self._likelihood(self.prep, [frame], ab)
            x0 = np.column_stack([ab, like.start_times(ab)])
            with np.errstate(all="ignore"):
                res = minimize_bfgs_batch(like.nll_grad, x0, STEP_SCALE, max_iterations=self.settings.max_iterations)
            x = res.x[0] if np.all(np.isfinite(res.x)) else x0[0]
            point = frame.point(float(x[0]), float(x[1]))
            self._reference = (point, float(x[2]))
        return self._reference

    def _fit_chunk(
        self, zen: FloatArray, azi: FloatArray, table: FitTable, chunk: slice, seeds: VertexSeeds | None = None
    ) -> None:
        frames = [TrackFrame.from_angles(float(z), float(a)) for z, a in zip(zen, azi)]
        point, t_point = self._reference_track()
        starts = np.array([[float(point @ fr.e1), float(point @ fr.e2)] for fr in frames])
        like = self._likelihood(self.prep, frames, starts)
        along = np.array([float(point @ fr.d) for fr in frames])
        t_guess = t_point - along / C_VACUUM
        t_robust = like.start_times(starts)
        # keep the projected time unless it is far off what the hits say for this direction
        t0 = np.where(np.abs(t_guess - t_robust) < 100.0, t_guess, t_robust)
        x0 = np.column_stack([starts, t0])
        with np.errstate(all="ignore"):
            if seeds is None:
                result = minimize_bfgs_batch(
                    like.nll_grad, x0, STEP_SCALE, max_iterations=self.settings.max_iterations
                )
                extra = np.zeros(len(frames), dtype=np.int32)
            else:
                x0, start, extra = _warm_start(like, frames, x0, seeds.points[chunk], seeds.times[chunk])
                hinv = None
                close = _close_seeds(seeds, chunk)
                if close.any():
                    hinv = np.repeat(np.diag(STEP_SCALE**2)[None, :, :], x0.shape[0], axis=0)
                    hinv[close] = _inverse_hessian(like, x0[close], start[1][close], np.flatnonzero(close))
                    extra = extra + np.where(close, np.int32(x0.shape[1]), np.int32(0)).astype(np.int32)
                result = minimize_bfgs_batch(
                    like.nll_grad,
                    x0,
                    STEP_SCALE,
                    max_iterations=self.settings.max_iterations,
                    start=start,
                    inverse_hessian=hinv,
                )
        finite = np.isfinite(result.fun) & np.all(np.isfinite(result.x), axis=1)
        points = result.x[:, 0:1] * np.array([f.e1 for f in frames]) + result.x[:, 1:2] * np.array(
            [f.e2 for f in frames]
        )
        table.llh[chunk] = np.where(finite, result.fun, np.nan)
        table.x[chunk] = np.where(finite, points[:, 0], np.nan)
        table.y[chunk] = np.where(finite, points[:, 1], np.nan)
        table.z[chunk] = np.where(finite, points[:, 2], np.nan)
        table.t[chunk] = np.where(finite, result.x[:, 2], np.nan)
        table.status[chunk] = np.where(
            finite, np.where(result.converged, STATUS_OK, STATUS_NOT_CONVERGED), STATUS_NOT_FINITE
        )
        table.evaluations[chunk] = result.evaluations + extra


#: A warm start measures the curvature at its start (``_inverse_hessian``, three more evaluations) when its
#: seed was fitted within this angle (radians) of the pixel's direction: then the minimum is near and the
#: measured curvature is the minimum's, so the minimiser needs far fewer steps. Farther seeds (a parent of
#: several degrees) start with the minimiser's usual scaled identity, where the measurement does not pay.
CURVATURE_MAX_SEPARATION = math.radians(1.5)
#: Finite-difference steps of (a [m], b [m], t0 [ns]) for that curvature.
CURVATURE_STEP = STEP_SCALE * 0.05


def _close_seeds(seeds: VertexSeeds, chunk: slice) -> npt.NDArray[np.bool_]:
    """The directions of ``chunk`` whose first seed is close enough for a curvature measurement."""
    n = chunk.stop - chunk.start
    if seeds.separation is None:
        return np.zeros(n, dtype=bool)
    sep = seeds.separation[chunk]
    with np.errstate(invalid="ignore"):
        return np.asarray(np.isfinite(sep) & (sep < CURVATURE_MAX_SEPARATION), dtype=bool)


def _inverse_hessian(
    like: TrackLikelihood, x0: FloatArray, g0: FloatArray, which: npt.NDArray[np.int64]
) -> FloatArray:
    """The inverse Hessian at x0 of pixels ``which`` of the batch, from forward differences of the gradient.

    n evaluations per pixel. Where the estimate is not positive definite (or not finite) the minimiser's
    usual scaled identity is returned.
    """
    n_pix, n_var = x0.shape
    rows = np.tile(np.asarray(which, dtype=np.int64), n_var)
    trial = np.repeat(x0[None, :, :], n_var, axis=0)  # (n, P, n)
    for i in range(n_var):
        trial[i, :, i] += CURVATURE_STEP[i]
    _, g = like.nll_grad(trial.reshape(-1, n_var), rows)
    hess = (g.reshape(n_var, n_pix, n_var) - g0[None, :, :]) / CURVATURE_STEP[:, None, None]  # (i, P, j)
    hess = np.transpose(hess, (1, 0, 2))
    hess = 0.5 * (hess + np.transpose(hess, (0, 2, 1)))
    fallback = np.diag(STEP_SCALE**2)
    out = np.repeat(fallback[None, :, :], n_pix, axis=0)
    ok = np.all(np.isfinite(hess), axis=(1, 2))
    if ok.any():
        w, v = np.linalg.eigh(hess[ok])
        pd = w.min(axis=1) > 0
        inv = np.einsum("kij,kj,klj->kil", v[pd], 1.0 / w[pd], v[pd])
        idx = np.flatnonzero(ok)[pd]
        out[idx] = inv
    return out


def _warm_start(
    like: TrackLikelihood, frames: list[TrackFrame], x0_cold: FloatArray, points: FloatArray, times: FloatArray
) -> tuple[FloatArray, tuple[FloatArray, FloatArray], npt.NDArray[np.int32]]:
    """The start (a, b, t0) of each direction among its seeds, with -ln L and gradient there.

    A seed (a point p on an earlier track, the time t there) becomes, in a direction's frame (e1, e2, d),
    the track through p's projection (p.e1, p.e2) at time t - (p.d)/c: the same projection the cold start
    makes of the first-guess track. Directions without a finite seed, or whose seeds all give a non-finite
    -ln L, start from ``x0_cold``. Returns (x0, (f, gradient) at x0, evaluations beyond the minimiser's one).
    """
    e1 = np.array([f.e1 for f in frames])
    e2 = np.array([f.e2 for f in frames])
    d = np.array([f.d for f in frames])
    cand = np.stack(
        [
            np.einsum("kmi,ki->km", points, e1),
            np.einsum("kmi,ki->km", points, e2),
            times - np.einsum("kmi,ki->km", points, d) / C_VACUUM,
        ],
        axis=2,
    )  # (P, M, 3)
    usable = np.all(np.isfinite(cand), axis=2)
    cold = ~usable.any(axis=1)
    # column 0: the cold start, tried only where there is no seed
    cand = np.concatenate([x0_cold[:, None, :], cand], axis=1)
    usable = np.concatenate([cold[:, None], usable], axis=1)
    rows, cols = np.nonzero(usable)
    f, g = like.nll_grad(cand[rows, cols], rows.astype(np.int64))
    evaluated = usable.sum(axis=1).astype(np.int32)
    score = np.full(usable.shape, np.inf)
    good = np.isfinite(f) & np.all(np.isfinite(g), axis=1)
    score[rows[good], cols[good]] = f[good]
    grad = np.zeros((*usable.shape, 3))
    grad[rows, cols] = g
    fval = np.full(usable.shape, np.nan)
    fval[rows, cols] = f
    best = np.argmin(score, axis=1)
    # every seed failed: start cold after all (one more evaluation)
    failed = np.flatnonzero(~np.isfinite(score[np.arange(best.size), best]) & ~cold)
    if failed.size:
        fc, gc = like.nll_grad(x0_cold[failed], failed.astype(np.int64))
        fval[failed, 0], grad[failed, 0] = fc, gc
        best[failed] = 0
        evaluated[failed] += 1
    pick = np.arange(best.size)
    x0 = cand[pick, best]
    return x0, (fval[pick, best], grad[pick, best]), evaluated - 1


def make_reconstruction(name: str, event: Event, geometry: Geometry, settings: RecoSettings) -> Reconstruction:
    """Factory keyed by the configuration's reconstruction name."""
    if name == PandelTrackFit.name:
        return PandelTrackFit(event, geometry, settings)
    from skyscan.reco.errors import InputError

    raise InputError(f"reconstruction {name!r}: unknown (known: {PandelTrackFit.name})")
