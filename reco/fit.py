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
from scipy import optimize

from skyscan.reco.event import Event
from skyscan.reco.geometry import Geometry
from skyscan.reco.llh import PreparedEvent, TrackFrame, TrackLikelihood, prepare_event
from skyscan.reco.settings import RecoSettings

FloatArray = npt.NDArray[np.float64]

STATUS_OK = 0
STATUS_NOT_CONVERGED = 1
STATUS_NOT_FINITE = 2
STATUS_ERROR = 3



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
            llh=nan.copy(), x=nan.copy(), y=nan.copy(), z=nan.copy(), t=nan.copy(),
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

    def __init__(self, event: Event, geometry: Geometry, settings: RecoSettings | None = None) -> None:
        self.settings = settings or RecoSettings()
        self.prep: PreparedEvent = prepare_event(event, geometry, self.settings)

    def fit_directions(self, zenith: FloatArray, azimuth: FloatArray) -> FitTable:
        zen = np.asarray(zenith, dtype=np.float64)
        azi = np.asarray(azimuth, dtype=np.float64)
        table = FitTable.empty(zen.size)
        for i in range(zen.size):
            t_start = time.perf_counter()
            try:
                self._fit_one(float(zen[i]), float(azi[i]), table, i)
            except (ValueError, FloatingPointError, ArithmeticError, np.linalg.LinAlgError):
                table.status[i] = STATUS_ERROR
                table.llh[i] = np.nan
            table.seconds[i] = time.perf_counter() - t_start
        return table

    def _fit_one(self, zenith: float, azimuth: float, table: FitTable, i: int) -> None:
        frame = TrackFrame.from_angles(zenith, azimuth)
        start = self.prep.start_point
        a0, b0 = float(start @ frame.e1), float(start @ frame.e2)
        like = TrackLikelihood(self.prep, frame, (a0, b0))
        x0 = np.array([a0, b0, like.start_time(a0, b0)])
        evals = 0

        def fun_and_grad(x: FloatArray) -> tuple[float, FloatArray]:
            nonlocal evals
            evals += 1
            return like.nll_grad(x)

        result = optimize.minimize(
            fun_and_grad,
            x0,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": self.settings.max_iterations, "ftol": 1e-10, "gtol": 1e-3},
        )
        x = np.asarray(result.x, dtype=np.float64)
        llh = float(like.nll_grad(x)[0])
        point = frame.point(float(x[0]), float(x[1]))
        table.evaluations[i] = evals
        if not math.isfinite(llh):
            table.status[i] = STATUS_NOT_FINITE
            table.llh[i] = np.nan
            return
        table.llh[i] = llh
        table.x[i], table.y[i], table.z[i] = (float(v) for v in point)
        table.t[i] = float(x[2])
        table.status[i] = STATUS_OK if result.success else STATUS_NOT_CONVERGED


def make_reconstruction(name: str, event: Event, geometry: Geometry, settings: RecoSettings) -> Reconstruction:
    """Factory keyed by the configuration's reconstruction name."""
    if name == PandelTrackFit.name:
        return PandelTrackFit(event, geometry, settings)
    from skyscan.reco.errors import InputError

    raise InputError(f"reconstruction {name!r}: unknown (known: {PandelTrackFit.name})")
