"""The numpy likelihood: the reference the compiled kernel is tested against.

:class:`ReferenceTrackLikelihood` is :class:`skyscan.reco.llh.TrackLikelihood` with -ln L and its
gradient computed by numpy on (pixels, DOMs) arrays, the implementation every scan used before the
compiled kernel (:mod:`skyscan.reco.kernel`). It is the oracle of the equality tests
(tests/test_reco_kernel.py), the readable statement of the formulas, and the default path of a scan
(``reco.compiled_kernel: false``: a fresh scan-node process would spend longer importing numba than the
kernel saves). ``PandelTrackFit(..., reference=True)`` fits with it whatever the settings.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from skyscan.reco import photonics as ph
from skyscan.reco.llh import FloatArray, TrackLikelihood


class ReferenceTrackLikelihood(TrackLikelihood):
    """The same likelihood as :class:`TrackLikelihood`, evaluated with numpy (the test oracle)."""

    def nll_grad(
        self, params: npt.ArrayLike, rows: npt.NDArray[np.int64] | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """-ln L (shape (K,)) and its gradient by (a, b, t0) (shape (K, 3)) for pixels ``rows``.

        ``params`` is (K, 3); ``rows`` selects which K pixels of the batch they belong to (default: all).
        The numpy formulas, term by term as in docs/likelihood.md.
        """
        p = np.atleast_2d(np.asarray(params, dtype=np.float64))
        sel = slice(None) if rows is None else rows
        a = p[:, 0:1]
        b = p[:, 1:2]
        t0 = p[:, 2:3]
        prep = self.prep
        e1z, e2z, dz = self.e1z[sel], self.e2z[sel], self.dz[sel]
        du = self.u_h[sel] - a
        dv = self.v_h[sel] - b
        rho = np.sqrt(du * du + dv * dv)
        inv_rho = 1.0 / np.maximum(rho, 1e-3)
        drho_da = -du * inv_rho
        drho_db = -dv * inv_rho
        resid = self.t_h - t0 - (self.s_h[sel] + rho * ph.TAN_CHERENKOV) * (1.0 / ph.C_VACUUM)
        w = (e1z * du + e2z * dv) * inv_rho
        cos_eta = ph.COS_CHERENKOV * dz + ph.SIN_CHERENKOV * w
        k_eta = (-3.9 + 9.2 * cos_eta) * (ph.SIN_CHERENKOV / ph.LAMBDA_M)
        xi = (3.1 + cos_eta * (-3.9 + 4.6 * cos_eta) + ph.A1_DEFF * rho) * (1.0 / ph.LAMBDA_M)
        a1l = ph.A1_DEFF / ph.LAMBDA_M
        dxi_da = k_eta * (-e1z - w * drho_da) * inv_rho + a1l * drho_da
        dxi_db = k_eta * (-e2z - w * drho_db) * inv_rho + a1l * drho_db
        lp, ls, lp_t, lp_x, ls_t, ls_x = self.table.logpdf_logsf_grad(resid, xi)
        if prep.settings.use_mpe:
            lp = lp + self.ln_npe + self.npe_m1 * ls
            lp_t = lp_t + self.npe_m1 * ls_t
            lp_x = lp_x + self.npe_m1 * ls_x
        k_res = -(ph.TAN_CHERENKOV / ph.C_VACUUM) * lp_t
        dlp_da = k_res * drho_da + lp_x * dxi_da
        dlp_db = k_res * drho_db + lp_x * dxi_db
        mu_s = self.eff_h * ph.CHARGE_NORM * np.exp(-rho * (1.0 / ph.ABSORPTION_M)) / (rho + ph.CHARGE_SOFT_M)
        dlnmu_drho = -(1.0 / ph.ABSORPTION_M) - 1.0 / (rho + ph.CHARGE_SOFT_M)
        mu_tot = mu_s + prep.mu_noise
        # hit-time density: signal (share mu_s) plus a flat noise floor (share mu_noise)
        sig = mu_s * np.exp(np.minimum(lp, 700.0))
        dens = sig + self.noise_term
        frac = sig / dens  # share of the signal in the hit-time density
        # d ln_time = frac * (dln mu_s + dlp) - (mu_s / mu_tot) * dln mu_s
        g_mu = (frac - mu_s / mu_tot) * dlnmu_drho
        total = -np.sum(np.log(dens / mu_tot), axis=1)
        ga = -np.sum(g_mu * drho_da + frac * dlp_da, axis=1)
        gb = -np.sum(g_mu * drho_db + frac * dlp_db, axis=1)
        gt = np.sum(frac * lp_t, axis=1)
        if prep.settings.use_hit_no_hit:
            miss = np.exp(-mu_tot)
            total -= np.sum(np.log1p(-miss), axis=1)
            coef = mu_s * dlnmu_drho * miss / (1.0 - miss)
            ga -= np.sum(coef * drho_da, axis=1)
            gb -= np.sum(coef * drho_db, axis=1)
            du_n = self.u_n[sel] - a
            dv_n = self.v_n[sel] - b
            rho_n = np.sqrt(du_n * du_n + dv_n * dv_n)
            mu_n = (
                self.eff_n[sel] * ph.CHARGE_NORM * np.exp(-rho_n * (1.0 / ph.ABSORPTION_M)) / (rho_n + ph.CHARGE_SOFT_M)
            )
            dmu = mu_n * (-(1.0 / ph.ABSORPTION_M) - 1.0 / (rho_n + ph.CHARGE_SOFT_M)) / np.maximum(rho_n, 1e-3)
            total += mu_n.sum(axis=1) + self.far_mu[sel] + self.n_unhit * prep.mu_noise
            ga -= np.sum(dmu * du_n, axis=1)
            gb -= np.sum(dmu * dv_n, axis=1)
        return np.asarray(total, dtype=np.float64), np.stack([ga, gb, gt], axis=1)
