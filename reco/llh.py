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
        ref = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
        e1 = np.cross(d, ref)
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(d, e1)
        return cls(d=d, e1=e1, e2=e2)

    def point(self, a: float, b: float) -> FloatArray:
        return np.asarray(a * self.e1 + b * self.e2, dtype=np.float64)


class TrackLikelihood:
    """-ln L of one event for one fixed direction, as a function of (a, b, t0)."""

    def __init__(self, prep: PreparedEvent, frame: TrackFrame, start_ab: tuple[float, float]) -> None:
        self.prep = prep
        self.frame = frame
        s = prep.settings
        self.table = ph.convolved_pandel(float(s.jitter_ns))
        pos = prep.dom_pos
        u_all = pos @ frame.e1
        v_all = pos @ frame.e2
        hit = prep.hit_dom
        self.u_h, self.v_h = u_all[hit], v_all[hit]
        self.s_h = pos[hit] @ frame.d
        self.t_h = prep.hit_time
        self.eff_h = prep.dom_eff[hit] * prep.light_scale
        self.ln_npe = np.log(prep.hit_npe)
        self.npe_m1 = prep.hit_npe - 1.0
        self.e1z, self.e2z, self.dz = float(frame.e1[2]), float(frame.e2[2]), float(frame.d[2])
        unhit = np.ones(pos.shape[0], dtype=bool)
        unhit[hit] = False
        a0, b0 = start_ab
        dist0 = np.hypot(u_all - a0, v_all - b0)
        near = unhit & (dist0 <= NEAR_RADIUS_M)
        far = unhit & ~near
        self.u_n, self.v_n = u_all[near], v_all[near]
        self.eff_n = prep.dom_eff[near] * prep.light_scale
        # far unhit DOMs: their expected charge barely changes while (a, b) moves by tens of metres
        self.far_mu = float(np.sum(prep.dom_eff[far] * prep.light_scale * ph.charge_per_yield(dist0[far])))
        self.n_unhit = int(np.count_nonzero(unhit))
        self.ln_noise_term = math.log(prep.mu_noise) + math.log(max(prep.noise_density, 1e-300))

    def nll(self, params: npt.ArrayLike) -> FloatArray:
        """-ln L for each row (a, b, t0) of ``params`` (shape (K, 3) or (3,))."""
        p = np.atleast_2d(np.asarray(params, dtype=np.float64))
        return np.array([self.nll_grad(row)[0] for row in p], dtype=np.float64)

    def nll_grad(self, params: npt.ArrayLike) -> tuple[float, FloatArray]:
        """-ln L and its gradient by (a, b, t0) at one point (analytic, from the tabulated PDF)."""
        a, b, t0 = (float(v) for v in np.asarray(params, dtype=np.float64))
        prep = self.prep
        du = self.u_h - a
        dv = self.v_h - b
        rho = np.sqrt(du * du + dv * dv)
        rho_safe = np.maximum(rho, 1e-3)
        drho_da = -du / rho_safe
        drho_db = -dv / rho_safe
        resid = self.t_h - t0 - (self.s_h + rho * ph.TAN_CHERENKOV) * (1.0 / ph.C_VACUUM)
        w = (self.e1z * du + self.e2z * dv) / rho_safe
        cos_eta = ph.COS_CHERENKOV * self.dz + ph.SIN_CHERENKOV * w
        dw_da = (-self.e1z - w * drho_da) / rho_safe
        dw_db = (-self.e2z - w * drho_db) / rho_safe
        da0 = -3.9 + 9.2 * cos_eta
        xi = (ph.a0_deff(cos_eta) + ph.A1_DEFF * rho) * (1.0 / ph.LAMBDA_M)
        dxi_da = (da0 * ph.SIN_CHERENKOV * dw_da + ph.A1_DEFF * drho_da) * (1.0 / ph.LAMBDA_M)
        dxi_db = (da0 * ph.SIN_CHERENKOV * dw_db + ph.A1_DEFF * drho_db) * (1.0 / ph.LAMBDA_M)
        lp, ls, lp_t, lp_x, ls_t, ls_x = self.table.logpdf_logsf_grad(resid, xi)
        if prep.settings.use_mpe:
            lp = lp + self.ln_npe + self.npe_m1 * ls
            lp_t = lp_t + self.npe_m1 * ls_t
            lp_x = lp_x + self.npe_m1 * ls_x
        dres_da = -(ph.TAN_CHERENKOV / ph.C_VACUUM) * drho_da
        dres_db = -(ph.TAN_CHERENKOV / ph.C_VACUUM) * drho_db
        dlp_da = lp_t * dres_da + lp_x * dxi_da
        dlp_db = lp_t * dres_db + lp_x * dxi_db
        dlp_dt0 = -lp_t
        mu_s = self.eff_h * ph.CHARGE_NORM * np.exp(-rho * (1.0 / ph.ABSORPTION_M)) / (rho + ph.CHARGE_SOFT_M)
        dlnmu_drho = -(1.0 / ph.ABSORPTION_M) - 1.0 / (rho + ph.CHARGE_SOFT_M)
        mu_tot = mu_s + prep.mu_noise
        ln_signal = np.log(mu_s) + lp
        ln_sum = np.logaddexp(ln_signal, self.ln_noise_term)
        frac = np.exp(ln_signal - ln_sum)  # share of the signal in the hit-time density
        share = mu_s / mu_tot
        # d ln_time = frac * (dln mu_s + dlp) - share * dln mu_s
        g_mu = (frac - share) * dlnmu_drho
        total = -float(np.sum(ln_sum - np.log(mu_tot)))
        ga = -float(np.sum(g_mu * drho_da + frac * dlp_da))
        gb = -float(np.sum(g_mu * drho_db + frac * dlp_db))
        gt = -float(np.sum(frac * dlp_dt0))
        if prep.settings.use_hit_no_hit:
            total -= float(np.sum(np.log(-np.expm1(-mu_tot))))
            coef = mu_s * dlnmu_drho / np.expm1(mu_tot)
            ga -= float(np.sum(coef * drho_da))
            gb -= float(np.sum(coef * drho_db))
            du_n = self.u_n - a
            dv_n = self.v_n - b
            rho_n = np.sqrt(du_n * du_n + dv_n * dv_n)
            rho_n_safe = np.maximum(rho_n, 1e-3)
            mu_n = self.eff_n * ph.CHARGE_NORM * np.exp(-rho_n * (1.0 / ph.ABSORPTION_M)) / (rho_n + ph.CHARGE_SOFT_M)
            dmu = mu_n * (-(1.0 / ph.ABSORPTION_M) - 1.0 / (rho_n + ph.CHARGE_SOFT_M)) / rho_n_safe
            total += float(mu_n.sum()) + self.far_mu + self.n_unhit * prep.mu_noise
            ga += float(np.sum(dmu * -du_n))
            gb += float(np.sum(dmu * -dv_n))
        return total, np.array([ga, gb, gt])

    def start_time(self, a: float, b: float) -> float:
        """A robust t0 for a crossing point: early quantile of the direct-light offsets of nearby hits."""
        rho = np.hypot(self.u_h - a, self.v_h - b)
        offsets = self.t_h - (self.s_h + rho * ph.TAN_CHERENKOV) / ph.C_VACUUM
        near = (rho < 80.0) & self.prep.hit_clean
        if np.count_nonzero(near) < 3:
            near = self.prep.hit_clean
        return float(np.quantile(offsets[near], 0.2))
