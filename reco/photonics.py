"""Light model shared by the simulator and the likelihood: Cherenkov geometry, the Pandel
photon-delay PDF (Ahrens et al. 2004, NIM A 524, 169) and a simple expected-charge model.

The Pandel function is a gamma distribution of the delay t (ns) after the direct Cherenkov time,

    p(t | d) = rho^xi t^(xi-1) exp(-rho t) / Gamma(xi),  xi = d_eff / lambda,
    rho = 1/tau + c_ice / lambda_a,

with the bulk-ice parameters tau = 557 ns, lambda = 33.3 m, lambda_a = 98 m. The effective
distance follows Ahrens et al.: d_eff = a0(eta) + 0.84 d, a0 = 3.1 - 3.9 cos(eta) + 4.6 cos^2(eta) m,
eta being the angle between the PMT axis (down) and the reversed photon direction.

The Gaussian convolution for PMT jitter and negative residuals (van Eijndhoven, Fadiran,
Japaridze 2007, arXiv:0704.1706) is evaluated from a table built once per jitter and kept in the
per-user cache (:mod:`skyscan.reco.diskcache`), so later processes read it instead of building it:
the Pandel mass in 0.1 ns bins of the delay, convolved with the Gaussian, on a grid of residuals
(0.5 ns steps up to 64 ns; 8 ns steps beyond, where the table holds the Pandel with its
second-order small-jitter correction), interpolated bilinearly in (residual, xi). The same is done for the
survival function used by the MPE likelihood. :func:`convolved_pdf_exact` integrates the exact
convolution numerically; tests compare the table with it.
"""

from __future__ import annotations

import math
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from skyscan.reco import diskcache

FloatArray = npt.NDArray[np.float64]

C_VACUUM = 0.299792458  # m/ns
N_ICE = 1.32  # one refractive index for angle and speed (approximation, documented)
C_ICE = C_VACUUM / N_ICE
COS_CHERENKOV = 1.0 / N_ICE
SIN_CHERENKOV = math.sqrt(1.0 - COS_CHERENKOV**2)
TAN_CHERENKOV = SIN_CHERENKOV / COS_CHERENKOV

TAU_NS = 557.0
LAMBDA_M = 33.3
ABSORPTION_M = 98.0
RHO_PER_NS = 1.0 / TAU_NS + C_ICE / ABSORPTION_M
A1_DEFF = 0.84

# Expected-charge model: mu = eff * yield(E) * CHARGE_NORM * exp(-d / ABSORPTION_M) / (d + CHARGE_SOFT_M)
CHARGE_NORM = 1.2  # photoelectrons * m per unit light yield (a 500 TeV track: ~5,000 pe on ~500 DOMs)
CHARGE_SOFT_M = 5.0
CRITICAL_ENERGY_GEV = 700.0  # above it stochastic losses dominate and light grows ~ linearly with E
READOUT_WINDOW_NS = 20_000.0


def light_yield(energy_gev: float) -> float:
    """Relative light yield of a muon of this energy (1 for a minimum-ionising muon)."""
    return 1.0 + max(energy_gev, 0.0) / CRITICAL_ENERGY_GEV


def charge_per_yield(distance_m: npt.ArrayLike) -> FloatArray:
    """Expected photoelectrons per unit light yield at perpendicular distance d (efficiency 1)."""
    d = np.asarray(distance_m, dtype=np.float64)
    return np.asarray(CHARGE_NORM * np.exp(-d / ABSORPTION_M) / (d + CHARGE_SOFT_M), dtype=np.float64)


def a0_deff(cos_eta: npt.ArrayLike) -> FloatArray:
    c = np.asarray(cos_eta, dtype=np.float64)
    return np.asarray(3.1 - 3.9 * c + 4.6 * c * c, dtype=np.float64)


def effective_distance(distance_m: npt.ArrayLike, cos_eta: npt.ArrayLike) -> FloatArray:
    """Ahrens et al. effective distance (m) from the perpendicular distance and the PMT orientation."""
    return np.asarray(a0_deff(cos_eta) + A1_DEFF * np.asarray(distance_m, dtype=np.float64), dtype=np.float64)


def _special() -> Any:
    """scipy.special, imported on first use: a scan node that reads its table from the cache never needs it."""
    from scipy import special

    return special


def pandel_logpdf(t: npt.ArrayLike, xi: npt.ArrayLike, rho: float = RHO_PER_NS) -> FloatArray:
    """ln of the (unconvolved) Pandel PDF; -inf for t <= 0."""
    special = _special()
    tt = np.asarray(t, dtype=np.float64)
    x = np.asarray(xi, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = x * math.log(rho) + (x - 1.0) * np.log(tt) - rho * tt - special.gammaln(x)
    return np.asarray(np.where(tt > 0, out, -np.inf), dtype=np.float64)


def pandel_logsf(t: npt.ArrayLike, xi: npt.ArrayLike, rho: float = RHO_PER_NS) -> FloatArray:
    """ln of the Pandel survival function 1 - CDF (0 for t <= 0)."""
    tt = np.maximum(np.asarray(t, dtype=np.float64), 0.0)
    sf = _special().gammaincc(np.asarray(xi, dtype=np.float64), rho * tt)
    return np.asarray(np.log(np.maximum(sf, 1e-300)), dtype=np.float64)


def convolved_pdf_exact(t: float, xi: float, sigma: float, rho: float = RHO_PER_NS) -> float:
    """The exact Gaussian-convolved Pandel PDF at one residual, by numerical integration.

    Integrates over the Pandel CDF u = P(s) (s = P^-1(u)), which removes the t^(xi-1) singularity.
    """
    special = _special()

    def integrand(q: float) -> float:
        s = float(special.gammaincinv(xi, q)) / rho
        return math.exp(-0.5 * ((t - s) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))

    from scipy import integrate  # only the tests need numerical integration

    # split the unit interval where the Gaussian window around t lies, for accuracy
    lo_q = float(special.gammainc(xi, rho * max(t - 10 * sigma, 0.0)))
    hi_q = float(special.gammainc(xi, rho * max(t + 10 * sigma, 0.0)))
    value, _ = integrate.quad(integrand, lo_q, hi_q, limit=400, epsabs=0.0, epsrel=1e-9)
    return float(value)


# --- tabulated convolution -------------------------------------------------------------------
XI_MIN, XI_MAX, XI_COUNT = 0.05, 40.0, 400  # rows equally spaced in ln(xi)
T_SPLIT_NS = 64.0
T_FINE_STEP = 0.5
T_COARSE_STEP = 8.0
T_MAX_NS = 4096.0
S_BIN_NS = 0.1


class ConvolvedPandel:
    """Tabulated ln pdf and ln survival function of the jitter-convolved Pandel distribution.

    Rows are equally spaced in ln(xi), columns in the residual (fine below 64 ns, coarse above).
    Both tables are stored flat so one index serves the four corners of the bilinear cell.
    """

    def __init__(self, sigma_ns: float, rho: float = RHO_PER_NS) -> None:
        self.sigma = float(sigma_ns)
        self.rho = rho
        self.t_lo = -10.0 * self.sigma
        n_fine = math.ceil((T_SPLIT_NS - self.t_lo) / T_FINE_STEP)
        self.t_lo = T_SPLIT_NS - n_fine * T_FINE_STEP  # the fine grid ends exactly at T_SPLIT_NS
        t_fine: FloatArray = self.t_lo + T_FINE_STEP * np.arange(n_fine, dtype=np.float64)
        t_coarse: FloatArray = np.arange(T_SPLIT_NS, T_MAX_NS + T_COARSE_STEP / 2, T_COARSE_STEP, dtype=np.float64)
        self.n_fine = n_fine
        self.t_grid = np.concatenate([t_fine, t_coarse])
        self.ln_xi_min = math.log(XI_MIN)
        self.ln_xi_step = (math.log(XI_MAX) - self.ln_xi_min) / (XI_COUNT - 1)
        xi = np.exp(self.ln_xi_min + self.ln_xi_step * np.arange(XI_COUNT))
        self.xi_grid = xi
        self.n_cols = self.t_grid.size
        name = _table_file(self.sigma, rho)
        cached = diskcache.load_array(name, (2, xi.size * self.n_cols))
        if cached is None:
            logpdf, logsf = self._build(t_fine, t_coarse, xi, rho)
            cached = np.stack([np.ascontiguousarray(logpdf).ravel(), np.ascontiguousarray(logsf).ravel()])
            diskcache.save_array(name, cached)
        self.logpdf_flat = np.ascontiguousarray(cached[0])
        self.logsf_flat = np.ascontiguousarray(cached[1])

    def _build(
        self, t_fine: FloatArray, t_coarse: FloatArray, xi: FloatArray, rho: float
    ) -> tuple[FloatArray, FloatArray]:
        """The ln pdf and ln sf tables (rows xi, columns the fine then the coarse residuals), computed."""
        special = _special()
        n_fine = self.n_fine
        logpdf = np.empty((xi.size, self.t_grid.size))
        logsf = np.empty_like(logpdf)
        # Coarse part: the Pandel with the small-jitter (second-order) convolution correction,
        # ln g = ln p + sigma^2/2 (l'^2 + l''), and likewise for the survival function.
        tc = t_coarse[None, :]
        xc = xi[:, None]
        lp_c = pandel_logpdf(tc, xc, rho)
        ls_c = pandel_logsf(tc, xc, rho)
        slope = (xc - 1.0) / tc - rho
        curv = -(xc - 1.0) / (tc * tc)
        half_var = 0.5 * self.sigma**2
        logpdf[:, n_fine:] = lp_c + half_var * (slope * slope + curv)
        logsf[:, n_fine:] = ls_c + half_var * (-np.exp(lp_c - ls_c) * slope)
        # Fine part: the exact Pandel mass in small bins of the delay (finer near 0, where the
        # density diverges for xi < 1), convolved with the Gaussian.
        s_max = T_SPLIT_NS + 12 * self.sigma
        s_edges = np.concatenate([np.arange(0.0, 1.0, 0.01), np.arange(1.0, s_max + S_BIN_NS, S_BIN_NS)])
        cdf = special.gammainc(xi[:, None], rho * s_edges[None, :])
        mass = np.diff(cdf, axis=1)
        beyond = 1.0 - cdf[:, -1]
        s_mid = 0.5 * (s_edges[1:] + s_edges[:-1])
        z = (t_fine[:, None] - s_mid[None, :]) / self.sigma
        gauss = np.exp(-0.5 * z * z) / (self.sigma * math.sqrt(2.0 * math.pi))
        pdf_fine = mass @ gauss.T
        sf_fine = mass @ special.ndtr(-z).T + beyond[:, None]
        logpdf[:, :n_fine] = np.log(np.maximum(pdf_fine, 1e-300))
        logsf[:, :n_fine] = np.log(np.clip(sf_fine, 1e-300, 1.0))
        return logpdf, logsf

    def _cells(
        self, t: npt.ArrayLike, xi: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.int64], FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
        tt = np.asarray(t, dtype=np.float64)
        x = np.asarray(xi, dtype=np.float64)
        tc = np.clip(tt, self.t_lo, T_MAX_NS - 1e-6)
        fine = tc < T_SPLIT_NS
        inv_step = np.where(fine, 1.0 / T_FINE_STEP, 1.0 / T_COARSE_STEP)
        u = np.where(fine, (tc - self.t_lo) * inv_step, self.n_fine + (tc - T_SPLIT_NS) * inv_step)
        iu = u.astype(np.int64)
        fu = np.asarray(u - iu, dtype=np.float64)
        v_raw = (np.log(x) - self.ln_xi_min) * (1.0 / self.ln_xi_step)
        v = np.clip(v_raw, 0.0, XI_COUNT - 1.000001)
        iv = v.astype(np.int64)
        fv = np.asarray(v - iv, dtype=np.float64)
        idx = iv * self.n_cols + iu
        # d(u)/dt and d(v)/dxi, zero where the argument was clipped to the table's edge
        du_dt = np.where((tt > self.t_lo) & (tt < T_MAX_NS), inv_step, 0.0)
        dv_dxi = np.where(v == v_raw, 1.0 / (self.ln_xi_step * x), 0.0)
        over = np.maximum(tt - T_MAX_NS, 0.0)
        return (
            np.asarray(idx, dtype=np.int64),
            fu,
            fv,
            np.asarray(du_dt, dtype=np.float64),
            np.asarray(dv_dxi, dtype=np.float64),
            np.asarray(over, dtype=np.float64),
        )

    def _interp(
        self, flat: FloatArray, idx: npt.NDArray[np.int64], fu: FloatArray, fv: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        a = flat.take(idx)
        b = flat.take(idx + 1)
        c = flat.take(idx + self.n_cols)
        d = flat.take(idx + self.n_cols + 1)
        ba = b - a
        dc = d - c
        top = a + ba * fu
        bot = c + dc * fu
        value = top + (bot - top) * fv
        d_u = ba + (dc - ba) * fv
        d_v = bot - top
        return value, d_u, d_v

    def logpdf_logsf(self, t: npt.ArrayLike, xi: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """ln pdf and ln survival function at residuals t (ns) for shape parameters xi."""
        idx, fu, fv, _, _, over = self._cells(t, xi)
        lp = self._interp(self.logpdf_flat, idx, fu, fv)[0]
        ls = self._interp(self.logsf_flat, idx, fu, fv)[0]
        # beyond the table: continue with the exponential tail of the Pandel function
        return lp - self.rho * over, ls - self.rho * over

    def logpdf_logsf_grad(self, t: npt.ArrayLike, xi: npt.ArrayLike) -> tuple[FloatArray, ...]:
        """As :meth:`logpdf_logsf`, plus the partial derivatives of both by t and by xi."""
        idx, fu, fv, du_dt, dv_dxi, over = self._cells(t, xi)
        lp, lp_u, lp_v = self._interp(self.logpdf_flat, idx, fu, fv)
        ls, ls_u, ls_v = self._interp(self.logsf_flat, idx, fu, fv)
        tail = np.where(over > 0, self.rho, 0.0)
        return (
            lp - self.rho * over,
            ls - self.rho * over,
            lp_u * du_dt - tail,
            lp_v * dv_dxi,
            ls_u * du_dt - tail,
            ls_v * dv_dxi,
        )

    def logpdf(self, t: npt.ArrayLike, xi: npt.ArrayLike) -> FloatArray:
        return self.logpdf_logsf(t, xi)[0]

    @cached_property
    def cells(self) -> FloatArray:
        """Both tables cell by cell for the compiled likelihood (:mod:`skyscan.reco.kernel`).

        Row ``iv * n_cols + iu`` holds, for the bilinear cell with lower corner (iv, iu), the
        corner a and the differences b - a, c and d - c of the ln pdf and then of the ln sf (a, b
        along the residual at iv; c, d the same at iv + 1): the eight numbers one interpolation
        reads, on one 64-byte cache line (the array is aligned), and the same subtractions
        :meth:`_interp` makes, done once. The last column and row are never a lower corner.
        """
        n_cols = self.n_cols
        n_rows = self.logpdf_flat.size // n_cols
        raw = np.zeros(n_rows * n_cols * 8 + 8)
        offset = (-raw.ctypes.data % 64) // 8  # first element on a cache-line boundary
        out = raw[offset : offset + n_rows * n_cols * 8].reshape(n_rows, n_cols, 8)
        for slot, flat in ((0, self.logpdf_flat), (4, self.logsf_flat)):
            t = flat.reshape(n_rows, n_cols)
            out[:-1, :-1, slot] = t[:-1, :-1]
            out[:-1, :-1, slot + 1] = t[:-1, 1:] - t[:-1, :-1]
            out[:-1, :-1, slot + 2] = t[1:, :-1]
            out[:-1, :-1, slot + 3] = t[1:, 1:] - t[1:, :-1]
        return out.reshape(n_rows * n_cols, 8)

    @cached_property
    def kernel_geometry(self) -> FloatArray:
        """(t_lo ns, fine columns, columns, ln xi_min, 1/ln-step, ln-step, rho 1/ns) for the kernel."""
        return np.array(
            [
                self.t_lo,
                float(self.n_fine),
                float(self.n_cols),
                self.ln_xi_min,
                1.0 / self.ln_xi_step,
                self.ln_xi_step,
                self.rho,
            ]
        )


def _table_file(sigma_ns: float, rho: float) -> str:
    """The cache file of the table for this jitter and rho: named by everything its numbers depend on."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        scipy_version = version("scipy")
    except PackageNotFoundError:
        scipy_version = "unknown"
    source = Path(__file__).read_bytes()  # the grids and formulas are this module's
    key = diskcache.digest(source, repr(float(sigma_ns)), repr(float(rho)), np.__version__, scipy_version)
    return f"pandel-table-{key}.npy"


@lru_cache(maxsize=4)
def convolved_pandel(sigma_ns: float) -> ConvolvedPandel:
    """The table for one jitter, built once per process (a fraction of a second), or read from the per-user cache
    (:mod:`skyscan.reco.diskcache`, milliseconds) where an earlier process built it."""
    return ConvolvedPandel(sigma_ns)
