"""The muon-track likelihood for a fixed direction, vectorised over several vertex hypotheses.

-ln L = - sum_hits ln p_time(residual)            (Pandel, jitter-convolved, MPE, noise floor)
        - sum_hits ln(1 - exp(-mu_i))             (hit probability)
        + sum_unhit mu_i                           (no-hit probability)

with mu_i = mu_signal(perpendicular distance) + mu_noise. See docs/likelihood.md.
The track is infinite; its free parameters for a fixed direction are the two coordinates
(a, b) of its crossing point in the plane through the origin perpendicular to it, and the time
t0 at which it passes that point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from skyscan.reco import photonics as ph
from skyscan.reco.event import Event
from skyscan.reco.geometry import Geometry
from skyscan.reco.linefit import first_pulses, isolated_hit_mask, linefit
from skyscan.reco.settings import RecoSettings

FloatArray = npt.NDArray[np.float64]

#: DOMs farther than this from a pixel's starting track enter the no-hit sum as a constant.
NEAR_RADIUS_M = 250.0


@dataclass(frozen=True)
class PreparedEvent:
    """Everything the likelihood needs about one event, computed once per node."""

    dom_pos: FloatArray  # (N, 3) all DOMs of the geometry
    dom_eff: FloatArray  # (N,)
    hit_dom: npt.NDArray[np.int64]  # (H,) geometry rows of hit DOMs
    hit_time: FloatArray  # (H,) first-pulse time, ns
    hit_npe: FloatArray  # (H,) photoelectron count used by MPE (>= 1)
    hit_clean: npt.NDArray[np.bool_]  # (H,) not isolated (used for first guesses)
    light_scale: float  # light yield relative to a minimum-ionising muon
    mu_noise: float  # expected noise hits per DOM in the readout window
    noise_density: float  # noise hits per ns per DOM
    start_point: FloatArray  # charge-weighted centre of the cleaned hits
    settings: RecoSettings


def prepare_event(event: Event, geometry: Geometry, settings: RecoSettings) -> PreparedEvent:
    fp = first_pulses(event, geometry)
    hit_pos = geometry.pos[fp.dom]
    clean = ~isolated_hit_mask(hit_pos, fp.time)
    if not clean.any():
        clean = np.ones_like(clean)
    w = fp.charge[clean]
    start = (hit_pos[clean] * w[:, None]).sum(axis=0) / max(float(w.sum()), 1e-9)
    mu_noise = settings.noise_rate_hz * 1e-9 * ph.READOUT_WINDOW_NS
    # Light yield from the total charge along the LineFit track through the charge centre.
    lf = linefit(event, geometry)
    travel = -_unit(lf.direction.zenith_deg, lf.direction.azimuth_deg)
    rel = geometry.pos - start
    along = rel @ travel
    dist = np.linalg.norm(rel - along[:, None] * travel[None, :], axis=1)
    per_yield = float(np.sum(geometry.efficiency * ph.charge_per_yield(dist)))
    signal_q = max(float(fp.charge.sum()) - mu_noise * len(geometry), 1.0)
    scale = max(signal_q / max(per_yield, 1e-9), 1.0)
    return PreparedEvent(
        dom_pos=geometry.pos,
        dom_eff=geometry.efficiency,
        hit_dom=fp.dom,
        hit_time=fp.time,
        hit_npe=np.maximum(np.rint(fp.charge), 1.0),
        hit_clean=clean,
        light_scale=scale,
        mu_noise=mu_noise,
        noise_density=settings.noise_rate_hz * 1e-9,
        start_point=np.asarray(start, dtype=np.float64),
        settings=settings,
    )


def _unit(zenith_deg: float, azimuth_deg: float) -> FloatArray:
    """Unit vector pointing to where the particle comes from."""
    z, a = math.radians(zenith_deg), math.radians(azimuth_deg)
    return np.array([math.sin(z) * math.cos(a), math.sin(z) * math.sin(a), math.cos(z)])


def _cross(a: npt.ArrayLike, b: npt.ArrayLike) -> tuple[float, float, float]:
    """``np.cross`` of two 3-vectors with the same multiplications and subtractions, without its overhead
    (tens of microseconds a call, paid for every pixel): the same numbers to the last bit."""
    a0, a1, a2 = (float(v) for v in np.asarray(a, dtype=np.float64))
    b0, b1, b2 = (float(v) for v in np.asarray(b, dtype=np.float64))
    return (a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0)


@dataclass(frozen=True)
class TrackFrame:
    """Orthonormal frame of one fixed direction: travel d and two transverse axes e1, e2."""

    d: FloatArray
    e1: FloatArray
    e2: FloatArray

    @classmethod
    def from_angles(cls, zenith: float, azimuth: float) -> TrackFrame:
        """zenith, azimuth in radians, the direction the particle comes FROM."""
        d = -np.array([math.sin(zenith) * math.cos(azimuth), math.sin(zenith) * math.sin(azimuth), math.cos(zenith)])
        ref = (0.0, 0.0, 1.0) if abs(d[2]) < 0.9 else (1.0, 0.0, 0.0)
        e1 = np.array(_cross(d, ref))
        e1 /= np.linalg.norm(e1)
        e2 = np.array(_cross(d, e1))
        return cls(d=d, e1=e1, e2=e2)

    def point(self, a: float, b: float) -> FloatArray:
        return np.asarray(a * self.e1 + b * self.e2, dtype=np.float64)


def preload_tables() -> None:
    """Build the Pandel table of the default jitter and its cell layout for the kernel now.

    A warm node process (the local executor's fork server) calls this once, so that every scan node forked
    from it inherits the table (about 0.3 s of work and 35 MB, shared copy-on-write) instead of building its own;
    a scan with another ``reco.jitter_ns`` builds its table as before.
    """
    ph.convolved_pandel(float(RecoSettings().jitter_ns)).cells  # noqa: B018 (a cached property, built here)


class TrackLikelihood:
    """-ln L of one event for a batch of P fixed directions, as functions of (a, b, t0) each.

    All arrays are (P, ...) so one numpy call serves every pixel of the batch; the no-hit DOMs
    near each pixel's starting track are padded with zero-efficiency entries to a common length.
    """

    def __init__(self, prep: PreparedEvent, frames: list[TrackFrame], starts_ab: FloatArray) -> None:
        self.prep = prep
        s = prep.settings
        self.table = ph.convolved_pandel(float(s.jitter_ns))
        pos = prep.dom_pos
        e1 = np.array([f.e1 for f in frames])  # (P, 3)
        e2 = np.array([f.e2 for f in frames])
        d = np.array([f.d for f in frames])
        u_all = e1 @ pos.T  # (P, N)
        v_all = e2 @ pos.T
        hit = prep.hit_dom
        self.u_h = np.ascontiguousarray(u_all[:, hit])
        self.v_h = np.ascontiguousarray(v_all[:, hit])
        self.s_h = d @ pos[hit].T
        self.t_h = prep.hit_time[None, :]
        self.eff_h = (prep.dom_eff[hit] * prep.light_scale)[None, :]
        self.ln_npe = np.log(prep.hit_npe)[None, :]
        self.npe_m1 = (prep.hit_npe - 1.0)[None, :]
        self.e1z, self.e2z, self.dz = e1[:, 2:3], e2[:, 2:3], d[:, 2:3]
        unhit = np.ones(pos.shape[0], dtype=bool)
        unhit[hit] = False
        a0 = starts_ab[:, 0:1]
        b0 = starts_ab[:, 1:2]
        dist0 = np.hypot(u_all - a0, v_all - b0)
        near = unhit[None, :] & (dist0 <= NEAR_RADIUS_M)
        far = unhit[None, :] & ~near
        eff_scaled = prep.dom_eff * prep.light_scale
        # far unhit DOMs: their expected charge barely changes while (a, b) moves by tens of metres
        self.far_mu = np.sum(np.where(far, eff_scaled[None, :] * ph.charge_per_yield(dist0), 0.0), axis=1)
        width = max(int(near.sum(axis=1).max()), 1)
        n_pix = len(frames)
        self.u_n = np.zeros((n_pix, width))
        self.v_n = np.zeros((n_pix, width))
        self.eff_n = np.zeros((n_pix, width))
        for k in range(n_pix):
            cols = np.flatnonzero(near[k])
            self.u_n[k, : cols.size] = u_all[k, cols]
            self.v_n[k, : cols.size] = v_all[k, cols]
            self.eff_n[k, : cols.size] = eff_scaled[cols]
        self.n_unhit = int(np.count_nonzero(unhit))
        self.noise_term = prep.mu_noise * prep.noise_density
        # the same numbers laid out for the compiled kernel
        self.axes_z = np.ascontiguousarray(np.column_stack([e1[:, 2], e2[:, 2], d[:, 2]]))
        self.kernel_scalars = np.array([prep.mu_noise, self.noise_term, self.n_unhit * prep.mu_noise])

    def nll_grad(
        self, params: npt.ArrayLike, rows: npt.NDArray[np.int64] | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """-ln L (shape (K,)) and its gradient by (a, b, t0) (shape (K, 3)) for pixels ``rows``.

        ``params`` is (K, 3); ``rows`` selects which K pixels of the batch they belong to (default: all).
        Evaluated by the compiled kernel (:mod:`skyscan.reco.kernel`); the numpy formulas it
        reproduces are :class:`skyscan.reco.llh_reference.ReferenceTrackLikelihood`, which
        :class:`skyscan.reco.fit.PandelTrackFit` uses unless ``compiled_kernel`` is set.
        """
        from skyscan.reco import kernel

        p = np.ascontiguousarray(np.atleast_2d(np.asarray(params, dtype=np.float64)))
        if rows is None:
            sel = np.arange(p.shape[0], dtype=np.int64)
        else:
            sel = np.ascontiguousarray(rows, dtype=np.int64)
        s = self.prep.settings
        return kernel.compiled()(
            p,
            sel,
            self.u_h,
            self.v_h,
            self.s_h,
            self.t_h[0],
            self.eff_h[0],
            self.ln_npe[0],
            self.npe_m1[0],
            self.axes_z,
            self.u_n,
            self.v_n,
            self.eff_n,
            self.far_mu,
            self.table.cells,
            self.table.kernel_geometry,
            self.kernel_scalars,
            bool(s.use_mpe),
            bool(s.use_hit_no_hit),
        )

    def start_times(self, starts_ab: FloatArray) -> FloatArray:
        """A robust t0 per pixel: an early quantile of the direct-light offsets of nearby hits."""
        out = np.empty(starts_ab.shape[0])
        clean = self.prep.hit_clean
        for k in range(starts_ab.shape[0]):
            rho = np.hypot(self.u_h[k] - starts_ab[k, 0], self.v_h[k] - starts_ab[k, 1])
            offsets = self.t_h[0] - (self.s_h[k] + rho * ph.TAN_CHERENKOV) / ph.C_VACUUM
            near = (rho < 80.0) & clean
            if np.count_nonzero(near) < 3:
                near = clean
            out[k] = float(np.quantile(offsets[near], 0.2))
        return out
