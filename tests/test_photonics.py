"""The Pandel delay PDF and its tabulated Gaussian convolution, checked against direct numerical integration."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy import integrate, stats

from skyscan.reco import photonics as ph

FloatArray = npt.NDArray[np.float64]

SIGMAS = (3.0, 5.0)  # the default jitter and a wider one
DEFAULT_SIGMA = 3.0


@pytest.fixture(scope="module", params=SIGMAS, ids=[f"sigma{s:g}" for s in SIGMAS])
def table(request: pytest.FixtureRequest) -> ph.ConvolvedPandel:
    return ph.convolved_pandel(float(request.param))


def _grid(table: ph.ConvolvedPandel, t_max: float = 30_000.0) -> FloatArray:
    """Integration grid: fine where the table is fine, 1 ns beyond, far past the table into its exponential tail."""
    return np.concatenate([np.arange(table.t_lo, ph.T_SPLIT_NS, 0.05), np.arange(ph.T_SPLIT_NS, t_max, 1.0)])


def _cumulative(p: FloatArray, t: FloatArray) -> FloatArray:
    return np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(t))])


# --- the plain Pandel function ----------------------------------------------------------------------------------
@pytest.mark.parametrize("xi", [0.3, 1.0, 3.0, 8.0])
def test_pandel_normalised(xi: float) -> None:
    def pdf(t: float) -> float:
        return math.exp(float(ph.pandel_logpdf(t, xi)))

    head, _ = integrate.quad(pdf, 0.0, 1.0, limit=200)
    tail, _ = integrate.quad(pdf, 1.0, math.inf, limit=200)
    assert head + tail == pytest.approx(1.0, abs=1e-6)


def test_pandel_is_a_gamma_distribution() -> None:
    t = np.array([0.5, 10.0, 300.0, 2000.0])
    for xi in (0.3, 2.0, 8.0):
        ref = stats.gamma(a=xi, scale=1.0 / ph.RHO_PER_NS)
        np.testing.assert_allclose(ph.pandel_logpdf(t, xi), ref.logpdf(t), rtol=1e-10)
        np.testing.assert_allclose(ph.pandel_logsf(t, xi), ref.logsf(t), rtol=1e-10, atol=1e-14)
    assert np.all(ph.pandel_logpdf([-1.0, 0.0], 2.0) == -np.inf)
    np.testing.assert_allclose(ph.pandel_logsf([-5.0, 0.0], 2.0), 0.0)


def test_rho_from_ice_parameters() -> None:
    assert ph.RHO_PER_NS == pytest.approx(1 / ph.TAU_NS + ph.C_VACUUM / ph.N_ICE / ph.ABSORPTION_M)
    assert math.degrees(math.acos(ph.COS_CHERENKOV)) == pytest.approx(40.7, abs=0.3)


# --- the tabulated convolution ------------------------------------------------------------------------------------
XI_CHECK = (0.1, 0.25, 0.6, 1.5, 4.0, 8.0)


def test_table_matches_exact_convolution() -> None:
    table = ph.convolved_pandel(DEFAULT_SIGMA)
    sigma = table.sigma
    residuals = np.concatenate([np.linspace(-3 * sigma, 40.0, 12), [63.0, 64.0, 66.0, 70.0, 150.0, 400.0, 1000.0]])
    worst = 0.0
    for xi in XI_CHECK:
        for t in residuals:
            exact = ph.convolved_pdf_exact(float(t), xi, sigma)
            if not exact > 0.0:  # underflow: ln p undefined, nothing to compare
                continue
            diff = abs(float(table.logpdf(t, xi)) - math.log(exact))
            worst = max(worst, diff)
            assert diff < 0.05, (xi, t, diff)
    assert worst > 0.0  # the comparison did run


@pytest.mark.parametrize(("sigma", "xi", "t"), [(5.0, 8.0, 66.0), (2.0, 0.1, -6.0)])
def test_table_matches_exact_convolution_other_jitters(sigma: float, xi: float, t: float) -> None:
    table = ph.convolved_pandel(sigma)
    assert abs(float(table.logpdf(t, xi)) - math.log(ph.convolved_pdf_exact(t, xi, sigma))) < 0.05


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
def test_exact_convolution_normalised() -> None:
    """The reference itself integrates to one (guards the comparison above)."""
    xi, sigma = 1.5, 3.0
    total, _ = integrate.quad(lambda t: ph.convolved_pdf_exact(t, xi, sigma), -30.0, 5000.0, limit=200, points=[0.0, 50.0])
    assert total == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("xi", [0.3, 0.7, 1.5, 4.0, 8.0])
def test_table_pdf_normalised(table: ph.ConvolvedPandel, xi: float) -> None:
    t = _grid(table)
    p = np.exp(table.logpdf(t, np.full(t.size, xi)))
    assert float(np.trapezoid(p, t)) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("xi", [0.3, 1.5, 8.0])
def test_table_survival_is_one_minus_integral(table: ph.ConvolvedPandel, xi: float) -> None:
    t = _grid(table)
    logpdf, logsf = table.logpdf_logsf(t, np.full(t.size, xi))
    sf = np.exp(logsf)
    np.testing.assert_allclose(sf, 1.0 - _cumulative(np.exp(logpdf), t), atol=0.01)
    assert np.all(np.diff(sf) <= 1e-9)  # a survival function never rises
    assert sf[0] == pytest.approx(1.0, abs=1e-3)


def test_table_approaches_plain_pandel_late(table: ph.ConvolvedPandel) -> None:
    """Long after the direct time the jitter no longer matters."""
    t = np.array([300.0, 800.0, 2000.0])
    for xi in (0.5, 2.0, 6.0):
        np.testing.assert_allclose(table.logpdf(t, np.full(3, xi)), ph.pandel_logpdf(t, xi), atol=0.02)


def _cell_centres(table: ph.ConvolvedPandel) -> tuple[FloatArray, FloatArray]:
    """Points in the middle of table cells: the interpolant is smooth there, so finite differences apply."""
    t_grid = table.t_grid
    cols = np.array([2, table.n_fine // 3, table.n_fine - 3, table.n_fine + 5, t_grid.size - 20])
    rows = np.array([10, 120, 250, 330])
    t_mid = 0.5 * (t_grid[cols] + t_grid[cols + 1])
    ln_xi_mid = table.ln_xi_min + table.ln_xi_step * (rows + 0.5)
    tt, xx = np.meshgrid(t_mid, np.exp(ln_xi_mid))
    return tt.ravel(), xx.ravel()


def test_gradients_match_finite_differences(table: ph.ConvolvedPandel) -> None:
    t, xi = _cell_centres(table)
    t = np.concatenate([t, [5000.0, 9000.0]])  # beyond the table: the exponential tail
    xi = np.concatenate([xi, [2.0, 5.0]])
    lp, ls, dlp_dt, dlp_dxi, dls_dt, dls_dxi = table.logpdf_logsf_grad(t, xi)
    lp0, ls0 = table.logpdf_logsf(t, xi)
    np.testing.assert_allclose(lp, lp0)
    np.testing.assert_allclose(ls, ls0)

    h_t = 1e-3
    lp_p, ls_p = table.logpdf_logsf(t + h_t, xi)
    lp_m, ls_m = table.logpdf_logsf(t - h_t, xi)
    h_x = 1e-6 * xi
    lp_px, ls_px = table.logpdf_logsf(t, xi + h_x)
    lp_mx, ls_mx = table.logpdf_logsf(t, xi - h_x)
    for analytic, numeric in (
        (dlp_dt, (lp_p - lp_m) / (2 * h_t)),
        (dls_dt, (ls_p - ls_m) / (2 * h_t)),
        (dlp_dxi, (lp_px - lp_mx) / (2 * h_x)),
        (dls_dxi, (ls_px - ls_mx) / (2 * h_x)),
    ):
        np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-7)
    assert np.any(np.abs(dlp_dt) > 1e-3) and np.any(np.abs(dlp_dxi) > 1e-3)  # not trivially zero
    assert dlp_dt[-1] < 0  # the tail decays


def test_outside_xi_range_is_clamped_with_zero_slope(table: ph.ConvolvedPandel) -> None:
    t = np.array([5.0, 30.0])
    for xi in (ph.XI_MIN / 2, ph.XI_MAX * 2):
        grads = table.logpdf_logsf_grad(t, np.full(2, xi))
        np.testing.assert_array_equal(grads[3], 0.0)
        np.testing.assert_array_equal(grads[5], 0.0)
        assert np.all(np.isfinite(grads[0])) and np.all(np.isfinite(grads[1]))


def test_table_built_once_per_jitter() -> None:
    assert ph.convolved_pandel(3.0) is ph.convolved_pandel(3.0)
    assert ph.convolved_pandel(3.0) is not ph.convolved_pandel(5.0)
