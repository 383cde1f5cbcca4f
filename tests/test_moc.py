"""Multi-order map assembly: exact coverage, NUNIQ convention, densities and flattening."""

from __future__ import annotations

import math
from pathlib import Path

import healpy as hp
import numpy as np
import numpy.typing as npt
import pytest

from skyscan.errors import InputError
from skyscan.products.moc import (
    MultiOrderMap,
    StageResult,
    build_multiorder,
    flatten,
    nside_ipix_to_uniq,
    probability_density,
    uniq_to_nside_ipix,
)


def _stage(nside: int, ipix: npt.ArrayLike, llh: npt.ArrayLike | None = None, tag: float = 0.0) -> StageResult:
    """A stage with given llh (default: a value encoding nside and pixel) and x = tag, status = nside."""
    pix = np.asarray(ipix, dtype=np.int64)
    values = np.asarray(llh, dtype=np.float64) if llh is not None else nside * 1e6 + pix.astype(np.float64)
    n = pix.size
    return StageResult(
        nside,
        pix,
        values,
        np.full(n, tag),
        np.zeros(n),
        np.zeros(n),
        np.zeros(n),
        np.full(n, nside, dtype=np.int32),
    )


def _children(parents: npt.ArrayLike, factor: int) -> npt.NDArray[np.int64]:
    p = np.asarray(parents, dtype=np.int64)
    n = factor * factor
    return (p[:, None] * n + np.arange(n)[None, :]).reshape(-1)


def _assert_exact_cover(m: MultiOrderMap) -> None:
    """Independent check: every pixel as an interval of NESTED indices at order 29 tiles [0, 12*4**29) exactly."""
    nside, ipix = m.nside, m.ipix
    order = np.log2(nside).round().astype(np.int64)
    start = ipix << (2 * (29 - order))
    end = (ipix + 1) << (2 * (29 - order))
    perm = np.argsort(start)
    start, end = start[perm], end[perm]
    assert start[0] == 0
    assert end[-1] == 12 * 4**29
    assert np.array_equal(start[1:], end[:-1])
    assert m.area_sr.sum() == pytest.approx(4 * math.pi, rel=1e-12)


def _assert_points_covered_once(m: MultiOrderMap, n_points: int = 20000) -> None:
    """Random points on the sphere fall in exactly one map pixel (checked order by order with ang2pix)."""
    rng = np.random.default_rng(3)
    z = rng.uniform(-1, 1, n_points)
    phi = rng.uniform(0, 2 * math.pi, n_points)
    theta = np.arccos(z)
    hits = np.zeros(n_points, dtype=int)
    for nside in np.unique(m.nside):
        pix = hp.ang2pix(int(nside), theta, phi, nest=True)
        uniq = 4 * int(nside) ** 2 + pix
        hits += np.isin(uniq, m.uniq)
    assert np.all(hits == 1)


def test_uniq_round_trip_and_known_values() -> None:
    assert int(nside_ipix_to_uniq(1, 0)) == 4
    assert int(nside_ipix_to_uniq(1, 11)) == 15
    assert int(nside_ipix_to_uniq(2, 0)) == 16
    assert int(nside_ipix_to_uniq(8, 0)) == 256
    assert int(nside_ipix_to_uniq(2**29, 12 * 4**29 - 1)) == 16 * 4**29 - 1
    rng = np.random.default_rng(1)
    order = rng.integers(0, 30, 5000)
    nside = np.left_shift(1, order).astype(np.int64)
    ipix = (rng.random(5000) * 12 * nside.astype(np.float64) ** 2).astype(np.int64)
    ipix = np.minimum(ipix, 12 * nside * nside - 1)
    # edge cases: first and last pixel of every order
    nside = np.concatenate([nside, 2 ** np.arange(30), 2 ** np.arange(30)]).astype(np.int64)
    ipix = np.concatenate([ipix, np.zeros(30, dtype=np.int64), 12 * 4 ** np.arange(30, dtype=np.int64) - 1])
    uniq = nside_ipix_to_uniq(nside, ipix)
    assert np.array_equal(uniq, 4 * nside * nside + ipix)
    back_nside, back_ipix = uniq_to_nside_ipix(uniq)
    assert np.array_equal(back_nside, nside)
    assert np.array_equal(back_ipix, ipix)


@pytest.mark.parametrize("nside, ipix", [(3, 0), (0, 0), (8, 768), (8, -1), (2**30, 0)])
def test_uniq_rejects_bad_input(nside: int, ipix: int) -> None:
    with pytest.raises(InputError):
        nside_ipix_to_uniq(nside, ipix)


def test_uniq_rejects_out_of_range() -> None:
    for bad in (0, 3, 16 * 4**29):
        with pytest.raises(InputError):
            uniq_to_nside_ipix(bad)


def test_stage0_only_is_the_same_map() -> None:
    m = build_multiorder([_stage(8, np.arange(768))])
    assert len(m) == 768
    assert np.array_equal(m.uniq, 256 + np.arange(768))
    assert np.all(m.nside == 8)
    assert np.array_equal(m.llh, 8e6 + np.arange(768))
    _assert_exact_cover(m)


def test_full_refinement_replaces_parents() -> None:
    parents = np.array([0, 100, 101, 500])
    fine = _children(parents, 8)  # nside 64
    finer = _children(fine[:3], 8)  # nside 512 inside the first nside-64 pixels
    m = build_multiorder([_stage(8, np.arange(768)), _stage(64, fine), _stage(512, finer)])
    expected = set((256 + np.setdiff1d(np.arange(768), parents)).tolist())
    expected |= set((4 * 64**2 + np.setdiff1d(fine, fine[:3])).tolist())
    expected |= set((4 * 512**2 + finer).tolist())
    assert set(m.uniq.tolist()) == expected
    assert len(m) == len(expected)
    assert np.all(np.diff(m.uniq) > 0)
    # Values belong to the pixel's own stage.
    assert np.array_equal(m.llh, m.nside * 1e6 + m.ipix)
    _assert_exact_cover(m)
    _assert_points_covered_once(m)


def test_partial_refinement_splits_the_coarse_remainder() -> None:
    # nside-8 pixel 5: only children 20, 21 at nside 16 are scanned -> 22, 23 inherit pixel 5's values.
    # nside-8 pixel 100: one nside-128 pixel inside -> 3 siblings at each of orders 7, 6, 5, 4 inherit.
    q = 100 * 256 + 7
    m = build_multiorder(
        [_stage(8, np.arange(768), tag=1.0), _stage(16, [20, 21], tag=2.0), _stage(128, [q], tag=3.0)]
    )
    uniq = set(m.uniq.tolist())
    assert 256 + 5 not in uniq and 256 + 100 not in uniq
    for child in (20, 21, 22, 23):
        assert 4 * 16**2 + child in uniq
    expected_pieces = {4 * 128**2 + q}
    for level in range(1, 5):  # ancestors of q at orders 6..3 -> their other children
        nside = 128 >> (level - 1)
        ancestor = q >> (2 * level)
        for child in range(4 * ancestor, 4 * ancestor + 4):
            if child != q >> (2 * (level - 1)):
                expected_pieces.add(4 * nside**2 + child)
    assert len(expected_pieces) == 13
    assert expected_pieces <= uniq
    assert len(m) == 766 + 4 + 13
    row = {u: i for i, u in enumerate(m.uniq.tolist())}
    assert m.x[row[4 * 16**2 + 22]] == 1.0 and m.llh[row[4 * 16**2 + 22]] == 8e6 + 5
    assert m.x[row[4 * 16**2 + 20]] == 2.0
    assert m.x[row[4 * 128**2 + q]] == 3.0
    inherited = [row[u] for u in expected_pieces if u != 4 * 128**2 + q]
    assert np.all(m.llh[inherited] == 8e6 + 100)
    assert np.all(m.status[inherited] == 8)
    _assert_exact_cover(m)
    _assert_points_covered_once(m)


def test_children_from_separate_batches_and_out_of_order_stages() -> None:
    kids = _children([7], 2)
    m = build_multiorder([_stage(16, kids[2:]), _stage(8, np.arange(768)), _stage(16, kids[:2])])
    assert set((4 * 256 + kids).tolist()) <= set(m.uniq.tolist())
    assert 256 + 7 not in set(m.uniq.tolist())
    _assert_exact_cover(m)


def test_duplicate_pixel_keeps_the_lower_finite_llh() -> None:
    base = _stage(8, np.arange(768), llh=np.full(768, 10.0))
    first = _stage(8, [3, 4, 5], llh=[5.0, np.nan, 20.0], tag=1.0)
    second = _stage(8, [3, 4, 5], llh=[np.nan, 7.0, np.nan], tag=2.0)
    m = build_multiorder([base, first, second])
    assert len(m) == 768
    row = {u: i for i, u in enumerate(m.uniq.tolist())}
    assert m.llh[row[256 + 3]] == 5.0 and m.x[row[256 + 3]] == 1.0
    assert m.llh[row[256 + 4]] == 7.0 and m.x[row[256 + 4]] == 2.0
    assert m.llh[row[256 + 5]] == 10.0 and m.x[row[256 + 5]] == 0.0


def test_incomplete_sky_and_bad_stages_are_rejected() -> None:
    with pytest.raises(InputError):
        build_multiorder([_stage(8, np.arange(700))])
    with pytest.raises(InputError):
        build_multiorder([])
    with pytest.raises(InputError):
        _stage(12, [0])
    with pytest.raises(InputError):
        _stage(8, [768])
    with pytest.raises(InputError):
        StageResult(8, np.arange(3), np.zeros(2), np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3),
                    np.zeros(3, dtype=np.int32))


def test_large_refinement_is_exact() -> None:
    """~60,000 pixels over four orders with ragged partial refinement."""
    rng = np.random.default_rng(7)
    s0 = _stage(8, np.arange(768))
    p1 = rng.choice(768, 60, replace=False)
    c1 = _children(p1, 4)  # nside 32
    c1 = c1[rng.random(c1.size) < 0.8]  # partial
    c2 = _children(c1[:300], 8)  # nside 256
    c2 = c2[rng.random(c2.size) < 0.9]
    c3 = _children(c2[:500], 4)  # nside 1024
    m = build_multiorder([s0, _stage(32, c1), _stage(256, c2), _stage(1024, c3)])
    _assert_exact_cover(m)
    _assert_points_covered_once(m, 5000)
    # All scanned leaf pixels survive unchanged.
    assert set((4 * 1024**2 + c3).tolist()) <= set(m.uniq.tolist())


def test_map_helpers() -> None:
    llh = np.arange(768, dtype=np.float64)
    llh[0] = np.nan
    llh[[5, 9]] = [-3.0, np.nan]
    m = build_multiorder([_stage(8, np.arange(768), llh=llh)])
    assert m.best_index == 5
    assert m.n_failed == 2
    d = m.dllh2
    assert d[5] == 0.0
    assert d[6] == pytest.approx(2 * (6 + 3))
    assert np.isnan(d[0]) and np.isnan(d[9])
    assert np.all(m.order == 3)
    assert np.allclose(m.area_sr, 4 * math.pi / 768)
    # unsorted input is sorted on construction
    perm = np.random.default_rng(0).permutation(768)
    m2 = MultiOrderMap(m.uniq[perm], m.llh[perm], m.x[perm], m.y[perm], m.z[perm], m.t[perm], m.status[perm])
    assert np.array_equal(m2.uniq, m.uniq)
    assert np.array_equal(m2.llh, m.llh, equal_nan=True)


def test_probability_density_is_normalised() -> None:
    fine = _children([10, 11], 4)
    llh8 = np.linspace(0.0, 30.0, 768)
    llh8[[100, 200]] = np.nan
    m = build_multiorder([_stage(8, np.arange(768), llh=llh8), _stage(32, fine, llh=np.linspace(-1, 2, fine.size))])
    dens = probability_density(m)
    assert np.sum(dens * m.area_sr) == pytest.approx(1.0, rel=1e-12)
    assert np.all(dens[np.isnan(m.llh)] == 0.0)
    assert np.all(dens >= 0)
    # density ratio follows exp(-delta llh), whatever the pixel sizes
    i, j = m.best_index, int(np.nanargmax(m.llh))
    assert dens[j] / dens[i] == pytest.approx(math.exp(-(m.llh[j] - m.llh[i])), rel=1e-9)


def test_flatten_coarse_map_matches_and_ring_is_reordered() -> None:
    values = np.arange(768, dtype=np.float64)
    m = build_multiorder([_stage(8, np.arange(768), llh=values)])
    nested = flatten(m, 8, "NESTED", values=m.llh)
    assert np.array_equal(nested, values)
    ring = flatten(m, 8, values=m.llh)
    assert np.array_equal(ring, values[hp.ring2nest(8, np.arange(768))])
    # Finer output: each flat pixel copies its parent.
    up = flatten(m, 32, "NESTED", values=m.llh)
    assert np.array_equal(up, np.repeat(values, 16))
    # default quantity is 2*delta-llh
    assert np.array_equal(flatten(m, 8, "NESTED"), 2 * values)
    with pytest.raises(InputError):
        flatten(m, 8, "GALACTIC")
    with pytest.raises(InputError):
        flatten(m, 8, values=np.zeros(5))


def test_flatten_uses_the_pixel_containing_the_centre() -> None:
    fine = _children(np.arange(40, 48), 16)  # nside 128 inside eight nside-8 pixels
    m = build_multiorder([_stage(8, np.arange(768)), _stage(128, fine[::2])])  # partial: every other child
    flat = flatten(m, 32, "NESTED", values=m.uniq.astype(np.float64)).astype(np.int64)
    assert set(flat.tolist()) <= set(m.uniq.tolist())
    # Independent check: the chosen pixel contains the flat pixel's centre. Centres of flat pixels are corners of
    # finer pixels, so the point is nudged a hair towards the chosen pixel's own centre before the lookup.
    centre = np.asarray(hp.pix2vec(32, np.arange(12 * 32**2), nest=True)).T
    nside, ipix = uniq_to_nside_ipix(flat)
    for n in np.unique(nside):
        sel = nside == n
        own = np.asarray(hp.pix2vec(int(n), ipix[sel], nest=True)).T
        nudged = centre[sel] + 1e-7 * (own - centre[sel])
        assert np.array_equal(hp.vec2pix(int(n), *nudged.T, nest=True), ipix[sel])
    # Away from the refined area the flat pixel copies its nside-8 parent.
    coarse = np.setdiff1d(np.arange(768), np.arange(40, 48))
    assert np.array_equal(flat.reshape(768, 16)[coarse], np.repeat(256 + coarse, 16).reshape(-1, 16))


def test_flatten_is_readable_by_healpy(tmp_path: Path) -> None:
    m = build_multiorder([_stage(8, np.arange(768)), _stage(16, _children([3], 2))])
    flat = flatten(m, 16, values=m.llh)
    path = str(tmp_path) + "/map.fits"
    hp.write_map(path, flat, nest=False, dtype=np.float64)
    back = hp.read_map(path)
    assert np.array_equal(back, flat)
