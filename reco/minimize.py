"""A BFGS minimiser that advances many small independent problems in lockstep.

Each pixel's vertex fit has only three parameters, so the cost of one likelihood call is
dominated by numpy's per-call overhead; evaluating all pixels of a batch in one call and
stepping them together makes the fit several times faster than one scipy call per pixel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: f(x[rows], rows) -> (f (K,), gradient (K, n))
BatchFunction = Callable[[FloatArray, IntArray], tuple[FloatArray, FloatArray]]

ARMIJO = 1e-4
BACKTRACK = 0.3
MAX_BACKTRACKS = 12


@dataclass
class BatchResult:
    x: FloatArray  # (P, n)
    fun: FloatArray  # (P,)
    converged: npt.NDArray[np.bool_]
    evaluations: npt.NDArray[np.int32]
    iterations: npt.NDArray[np.int32]


def minimize_bfgs_batch(
    fg: BatchFunction,
    x0: FloatArray,
    scale: FloatArray,
    *,
    max_iterations: int = 200,
    ftol: float = 2e-3,
    gtol: float = 1e-2,
    start: tuple[FloatArray, FloatArray] | None = None,
    inverse_hessian: FloatArray | None = None,
) -> BatchResult:
    """Minimise P independent functions of n variables from starting points x0 (P, n).

    ``scale`` (n,) is the typical step of each variable; it sets the initial inverse Hessian.
    A problem stops when an accepted step lowers f by less than ``ftol`` (absolute) while its
    gradient norm is below ``gtol`` times the number of variables, or when no step along the
    search direction lowers f (then the point is reported as converged only if the gradient is small).

    ``start`` is (f (P,), gradient (P, n)) at x0 when the caller has already evaluated them (a warm start
    that chose x0 among several candidates); the minimiser then does not evaluate x0 again, and that
    evaluation is still counted once in ``evaluations``. The iterations are the same either way.
    ``inverse_hessian`` (P, n, n) replaces the scaled identity as each problem's first inverse-Hessian
    estimate (a warm start that knows the curvature); a problem restarts from the scaled identity as usual.
    """
    n_pix, n_var = x0.shape
    x = x0.astype(np.float64).copy()
    rows_all = np.arange(n_pix)
    if start is None:
        f, g = fg(x, rows_all)
    else:
        f = np.asarray(start[0], dtype=np.float64).copy()
        g = np.asarray(start[1], dtype=np.float64).copy()
    evals = np.ones(n_pix, dtype=np.int32)
    iters = np.zeros(n_pix, dtype=np.int32)
    h0 = np.diag(np.asarray(scale, dtype=np.float64) ** 2)
    if inverse_hessian is None:
        hinv = np.repeat(h0[None, :, :], n_pix, axis=0)
    else:
        hinv = np.asarray(inverse_hessian, dtype=np.float64).copy()
    active = np.isfinite(f) & np.all(np.isfinite(g), axis=1)
    converged = np.zeros(n_pix, dtype=bool)
    gnorm_scale = np.asarray(scale, dtype=np.float64)

    for _ in range(max_iterations):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        iters[idx] += 1
        direction = -np.einsum("kij,kj->ki", hinv[idx], g[idx])
        slope = np.einsum("ki,ki->k", direction, g[idx])
        bad = ~(slope < 0)
        if bad.any():  # not a descent direction: restart from the scaled gradient
            hinv[idx[bad]] = h0
            direction[bad] = -g[idx[bad]] * gnorm_scale**2
            slope[bad] = np.einsum("ki,ki->k", direction[bad], g[idx[bad]])
        alpha = np.ones(idx.size)
        # limit the first trial step to a few typical scales (robust far from the minimum)
        step_len = np.max(np.abs(direction) / gnorm_scale, axis=1)
        alpha = np.minimum(alpha, 20.0 / np.maximum(step_len, 1e-12))
        accepted = np.zeros(idx.size, dtype=bool)
        x_new = x[idx].copy()
        f_new = f[idx].copy()
        g_new = g[idx].copy()
        pending = np.arange(idx.size)
        for _ in range(MAX_BACKTRACKS):
            if pending.size == 0:
                break
            rows = idx[pending]
            trial = x[rows] + alpha[pending, None] * direction[pending]
            ft, gt = fg(trial, rows)
            evals[rows] += 1
            ok = (
                np.isfinite(ft)
                & np.all(np.isfinite(gt), axis=1)
                & (ft <= f[rows] + ARMIJO * alpha[pending] * slope[pending])
            )
            good = pending[ok]
            x_new[good], f_new[good], g_new[good] = trial[ok], ft[ok], gt[ok]
            accepted[good] = True
            pending = pending[~ok]
            alpha[pending] *= BACKTRACK
        # problems where no step helped: stop them
        stuck = idx[~accepted]
        if stuck.size:
            active[stuck] = False
            converged[stuck] = np.linalg.norm(g[stuck] * gnorm_scale, axis=1) < gtol * 100 * n_var
        acc = idx[accepted]
        if acc.size == 0:
            continue
        s = x_new[accepted] - x[acc]
        y = g_new[accepted] - g[acc]
        df = f[acc] - f_new[accepted]
        x[acc], f[acc], g[acc] = x_new[accepted], f_new[accepted], g_new[accepted]
        sy = np.einsum("ki,ki->k", s, y)
        upd = sy > 1e-12
        if upd.any():
            rows = acc[upd]
            su, yu, rho = s[upd], y[upd], 1.0 / sy[upd]
            hk = hinv[rows]
            eye = np.eye(n_var)[None, :, :]
            left = eye - rho[:, None, None] * su[:, :, None] * yu[:, None, :]
            right = eye - rho[:, None, None] * yu[:, :, None] * su[:, None, :]
            hinv[rows] = left @ hk @ right + rho[:, None, None] * su[:, :, None] * su[:, None, :]
        done = (df < ftol) & (np.linalg.norm(g[acc] * gnorm_scale, axis=1) < gtol * 100 * n_var)
        done |= df < ftol * 1e-3  # no meaningful progress any more
        converged[acc[done]] = True
        active[acc[done]] = False
    return BatchResult(x=x, fun=f, converged=converged, evaluations=evals, iterations=iters)
