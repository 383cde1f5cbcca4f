"""Pixel selection on synthetic llh maps: fixed and adaptive rules, NaN pixels, a best fit that moves."""

from __future__ import annotations

import healpy as hp
import numpy as np
import numpy.typing as npt
import pytest

from skyscan.errors import InputError, SkyscanError
from skyscan.graph.refine import (
    BestPixel,
    all_pixels,
    children,
    global_best,
    nearest_pixels,
    refine_adaptive,
    refine_fixed,
    select_stage,
    split_batches,
)

IntArray = npt.NDArray[np.int64]


def bowl(
    nside: int, ipix: npt.ArrayLike, centre: tuple[float, float], depth: float = 50.0, curvature: float = 2000.0
) -> npt.NDArray[np.float64]:
    """A synthetic -lnL: quadratic in the angle (radians) to ``centre`` (theta, phi), minimum ``depth``."""
    vec = np.asarray(hp.pix2vec(nside, np.asarray(ipix), nest=True)).T
    c = hp.ang2vec(*centre)
    ang = np.arccos(np.clip(vec @ c, -1.0, 1.0))
    return np.asarray(depth + curvature * ang**2, dtype=np.float64)


def brute_nearest(nside: int, centre: npt.NDArray[np.float64], n: int) -> IntArray:
    """Independent reference: every pixel's centre, sorted by angle."""
    pix = np.arange(12 * nside * nside)
    vec = np.asarray(hp.pix2vec(nside, pix, nest=True)).T
    ang = np.arccos(np.clip(vec @ centre, -1.0, 1.0))
    return np.sort(pix[np.argsort(ang, kind="stable")[:n]])


def test_batches_and_children() -> None:
    batches = split_batches(np.array([5, 1, 3, 3, 9, 7, 11]), 2)
    assert [b.tolist() for b in batches] == [[1, 3], [5, 7], [9, 11]]
    assert all_pixels(8).size == 768
    kids = children(8, [0, 99], 64)
    assert kids.size == 2 * 64
    # NESTED: a child's parent is its index divided by 4**(order difference).
    assert set((kids // 64).tolist()) == {0, 99}
    # and every child's centre lies inside its parent pixel.
    theta, phi = hp.pix2ang(64, kids, nest=True)
    assert set(hp.ang2pix(8, theta, phi, nest=True).tolist()) == {0, 99}
    with pytest.raises(InputError):
        children(64, [1], 8)
    with pytest.raises(InputError):
        split_batches([1, 2], 0)


def test_best_fit_ignores_nan_and_breaks_ties_deterministically() -> None:
    llh = np.array([5.0, np.nan, 3.0, 3.0, np.inf])
    best = global_best(8, [10, 11, 12, 13, 14], llh)
    assert best == BestPixel(nside=8, ipix=12, llh=3.0)
    # A tie between nsides goes to the finer pixel.
    best = global_best([8, 64], [3, 400], [1.0, 1.0])
    assert best is not None and (best.nside, best.ipix) == (64, 400)
    assert global_best(8, [1, 2], [np.nan, np.nan]) is None


@pytest.mark.parametrize("nside", [8, 64])
@pytest.mark.parametrize("n", [1, 12, 24, 100])
def test_nearest_pixels_match_brute_force(nside: int, n: int) -> None:
    rng = np.random.default_rng(nside + n)
    for _ in range(5):
        centre = rng.normal(size=3)
        centre /= np.linalg.norm(centre)
        assert nearest_pixels(nside, centre, n).tolist() == brute_nearest(nside, centre, n).tolist()
    assert nearest_pixels(1, np.array([0.0, 0.0, 1.0]), 12).tolist() == list(range(12))


def test_fixed_rule_default_stages_and_moving_best_fit() -> None:
    true_a = (1.2, 4.0)
    pix0 = all_pixels(8)
    llh0 = bowl(8, pix0, true_a)
    # Stage 1: the 12 nside-8 pixels nearest the stage-0 best fit, refined into 768 nside-64 pixels.
    sel1 = select_stage(1, 8, pix0, llh0, prev_nside=8, nside=64, rule="fixed", refine=12)
    best0 = int(np.nanargmin(llh0))
    assert sel1.best.ipix == best0 and sel1.best.nside == 8
    assert sel1.refined.size == 12 and best0 in sel1.refined
    assert sel1.pixels.size == 768
    assert sel1.refined.tolist() == brute_nearest(8, np.asarray(hp.pix2vec(8, best0, nest=True)), 12).tolist()

    # Stage 1 finds a deeper minimum elsewhere in its area: stage 2 follows it (global best, any stage).
    llh1 = bowl(64, sel1.pixels, true_a)
    moved = int(sel1.pixels[-1])
    llh1[sel1.pixels == moved] = llh1.min() - 10.0
    nside = np.concatenate([np.full(768, 8), np.full(768, 64)])
    ipix = np.concatenate([pix0, sel1.pixels])
    llh = np.concatenate([llh0, llh1])
    sel2 = select_stage(2, nside, ipix, llh, prev_nside=64, nside=512, rule="fixed", refine=24)
    assert (sel2.best.nside, sel2.best.ipix) == (64, moved)
    assert moved in sel2.refined and sel2.pixels.size == 24 * 64
    assert sel2.refined.tolist() == brute_nearest(64, np.asarray(hp.pix2vec(64, moved, nest=True)), 24).tolist()


def test_nan_pixels_never_poison_the_choice() -> None:
    pix = all_pixels(8)
    llh = bowl(8, pix, (2.0, 1.0))
    best = int(np.argmin(llh))
    poisoned = llh.copy()
    poisoned[best] = np.nan  # the true minimum failed
    poisoned[::7] = np.nan
    sel = select_stage(1, 8, pix, poisoned, 8, 64, "fixed", refine=12)
    assert sel.best.ipix != best and np.isfinite(sel.best.llh)
    ok = np.isfinite(poisoned)
    expect = pix[ok][np.argmin(poisoned[ok])]
    assert sel.best.ipix == expect
    # Adaptive: a failed pixel behaves exactly like a pixel that was never scanned.
    keep = ~np.isnan(poisoned)
    a = select_stage(1, 8, pix, poisoned, 8, 64, "adaptive", threshold=4.61, margin=2.0, max_refine=500)
    b = select_stage(1, 8, pix[keep], poisoned[keep], 8, 64, "adaptive", threshold=4.61, margin=2.0, max_refine=500)
    assert a.refined.tolist() == b.refined.tolist()
    with pytest.raises(SkyscanError, match="no scanned pixel has a finite llh"):
        select_stage(1, 8, pix, np.full(pix.size, np.nan), 8, 64, "fixed", refine=12)


def test_adaptive_rule_follows_the_contour() -> None:
    pix = all_pixels(8)
    llh = bowl(8, pix, (0.7, 3.0), depth=10.0, curvature=100.0)
    threshold, margin = 4.61, 2.0
    best = global_best(8, pix, llh)
    assert best is not None
    refined, kids = refine_adaptive(8, pix, llh, best, 8, 64, threshold, margin, max_refine=10_000)
    inside = pix[2 * (llh - llh.min()) <= threshold + margin]
    assert inside.size > 1  # the contour spans several pixels: a real test of the rule
    neighbours = hp.get_all_neighbours(8, inside, nest=True).reshape(-1)
    expect = np.union1d(inside, neighbours[neighbours >= 0])
    assert refined.tolist() == expect.tolist()
    assert kids.tolist() == children(8, expect, 64).tolist()
    # A wider margin refines a wider area.
    wider, _ = refine_adaptive(8, pix, llh, best, 8, 64, threshold, margin + 40.0, max_refine=10_000)
    assert set(refined.tolist()) < set(wider.tolist())
    # The cap keeps the pixels nearest the best fit.
    capped, _ = refine_adaptive(8, pix, llh, best, 8, 64, threshold, margin, max_refine=5)
    assert capped.tolist() == brute_nearest(8, best.vector(), 5).tolist()


def test_adaptive_rule_refines_a_best_fit_outside_the_previous_area() -> None:
    pix0 = all_pixels(8)
    llh0 = bowl(8, pix0, (1.0, 1.0))
    far = int(np.argmax(llh0))
    llh0[far] = llh0.min() - 5.0  # stage 0's global best lies far from stage 1's area
    stage1 = children(8, [int(np.argmin(bowl(8, pix0, (1.0, 1.0))))], 64)
    llh1 = bowl(64, stage1, (1.0, 1.0)) + 100.0  # everything at nside 64 is worse
    ns = np.concatenate([np.full(pix0.size, 8), np.full(stage1.size, 64)])
    sel = select_stage(2, ns, np.concatenate([pix0, stage1]), np.concatenate([llh0, llh1]), 64, 512,
                       "adaptive", threshold=4.61, margin=2.0, max_refine=48)
    assert (sel.best.nside, sel.best.ipix) == (8, far)
    theta, phi = hp.pix2ang(8, far, nest=True)
    assert int(hp.ang2pix(64, theta, phi, nest=True)) in sel.refined
    assert set((sel.pixels // 64**1).tolist()) == set(sel.refined.tolist())


def test_selection_is_independent_of_input_order_and_skips_scanned_pixels() -> None:
    pix = all_pixels(8)
    llh = bowl(8, pix, (2.5, 5.5))
    order = np.random.default_rng(3).permutation(pix.size)
    for rule in ("fixed", "adaptive"):
        a = select_stage(1, 8, pix, llh, 8, 64, rule, refine=12, threshold=4.61, margin=2.0, max_refine=20)
        b = select_stage(1, 8, pix[order], llh[order], 8, 64, rule, refine=12, threshold=4.61, margin=2.0,
                         max_refine=20)
        assert a.pixels.tolist() == b.pixels.tolist() and a.refined.tolist() == b.refined.tolist()
    # Pixels already scanned at the target nside are not scanned again; none left -> nothing to refine.
    first = select_stage(1, 8, pix, llh, 8, 64, "fixed", refine=2)
    done_ns = np.concatenate([np.full(pix.size, 8), np.full(first.pixels.size, 64)])
    done_px = np.concatenate([pix, first.pixels])
    done_llh = np.concatenate([llh, np.full(first.pixels.size, 1e9)])
    again = select_stage(1, done_ns, done_px, done_llh, 8, 64, "fixed", refine=2)
    assert again.pixels.size == 0


def test_refine_fixed_returns_children_of_the_nearest() -> None:
    best = BestPixel(nside=8, ipix=300, llh=0.0)
    chosen, kids = refine_fixed(best, 8, 32, 4)
    assert 300 in chosen and chosen.size == 4 and kids.size == 4 * 16
