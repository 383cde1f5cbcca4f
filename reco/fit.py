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

    def fit_directions(self, zenith: FloatArray, azimuth: FloatArray) -> FitTable:
        zen = np.asarray(zenith, dtype=np.float64)
        azi = np.asarray(azimuth, dtype=np.float64)
        table = FitTable.empty(zen.size)
        for lo in range(0, zen.size, CHUNK):
            chunk = slice(lo, min(lo + CHUNK, zen.size))
            t_start = time.perf_counter()
            try:
                self._fit_chunk(zen[chunk], azi[chunk], table, chunk)
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

    def _fit_chunk(self, zen: FloatArray, azi: FloatArray, table: FitTable, chunk: slice) -> None:
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
            result = minimize_bfgs_batch(like.nll_grad, x0, STEP_SCALE, max_iterations=self.settings.max_iterations)
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
        table.evaluations[chunk] = result.evaluations


def make_reconstruction(name: str, event: Event, geometry: Geometry, settings: RecoSettings) -> Reconstruction:
    """Factory keyed by the configuration's reconstruction name."""
    if name == PandelTrackFit.name:
        return PandelTrackFit(event, geometry, settings)
    from skyscan.reco.errors import InputError

    raise InputError(f"reconstruction {name!r}: unknown (known: {PandelTrackFit.name})")
