"""Warm-started refinement: a child pixel's fit starts from its parent's fitted vertex (and the best neighbour).

The likelihood is the same function either way (its nearby unhit DOMs are chosen from the cold starting track),
so warm and cold fits must find the same minimum where it is well defined (around the best fit), with fewer
evaluations for the warm start; a child without a parent fit is fitted exactly as before.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import healpy as hp
import numpy as np
import pytest
from simevents import random_track

from skyscan.nodes.results import read_fits
from skyscan.nodes.scan import PriorFits, read_prior_fits, run_scan_node, warm_start_seeds
from skyscan.reco import coords
from skyscan.reco.event import Event, event_to_dict
from skyscan.reco.fit import FitTable, PandelTrackFit, VertexSeeds
from skyscan.reco.geometry import ic86
from skyscan.reco.settings import RecoSettings

PARENT_NSIDE = 32
CHILD_NSIDE = 128
#: Around the best fit the minimum is well defined; there warm and cold fits must agree to this (in -ln L).
#: The minimiser stops when a step gains less than 2e-3, so two starts may stop that far apart, twice over.
LLH_TOLERANCE = 1e-2
NEAR_BEST = 50.0


def _truth_pixel(event: Event, zenith_deg: float, azimuth_deg: float, nside: int) -> int:
    ra, dec = coords.local_to_equatorial(math.radians(zenith_deg), math.radians(azimuth_deg), event.time)
    return int(hp.ang2pix(nside, math.pi / 2 - float(dec), float(ra), nest=True))


def _prior(fit: PandelTrackFit, event: Event, nside: int, ipix: np.ndarray) -> PriorFits:
    zen, azi = coords.pixel_directions(nside, ipix, event.time)
    table = fit.fit_directions(zen, azi)
    return PriorFits(
        nside=np.full(ipix.size, nside, dtype=np.int64),
        ipix=ipix.astype(np.int64),
        llh=table.llh,
        vertex=np.column_stack([table.x, table.y, table.z]),
        t=table.t,
    )


@pytest.fixture(scope="module", params=[5, 11])
def refined(request: pytest.FixtureRequest) -> tuple[FitTable, FitTable, np.ndarray]:
    """(cold, warm, children) for the children of the truth pixel and its neighbours of a simulated track."""
    event, spec = random_track(request.param)
    fit = PandelTrackFit(event, ic86(), RecoSettings())
    centre = _truth_pixel(event, spec.zenith_deg, spec.azimuth_deg, PARENT_NSIDE)
    around = hp.get_all_neighbours(PARENT_NSIDE, centre, nest=True)
    parents = np.unique(np.append(around[around >= 0], centre)).astype(np.int64)
    prior = _prior(fit, event, PARENT_NSIDE, parents)
    factor = (CHILD_NSIDE // PARENT_NSIDE) ** 2
    children = (parents[:, None] * factor + np.arange(factor)[None, :]).reshape(-1)
    zen, azi = coords.pixel_directions(CHILD_NSIDE, children, event.time)
    seeds = warm_start_seeds(prior, CHILD_NSIDE, children)
    assert seeds is not None and np.all(np.isfinite(seeds.times[:, 0]))
    return fit.fit_directions(zen, azi), fit.fit_directions(zen, azi, seeds), children


def test_warm_and_cold_start_find_the_same_minimum(refined: tuple[FitTable, FitTable, np.ndarray]) -> None:
    cold, warm, children = refined
    assert np.all(cold.status == 0) and np.all(warm.status == 0)
    near = cold.llh - np.min(cold.llh) <= NEAR_BEST
    assert np.count_nonzero(near) >= 5
    np.testing.assert_allclose(warm.llh[near], cold.llh[near], rtol=0, atol=LLH_TOLERANCE)
    # the same best-fit pixel, and the vertex of the best fit in the same place (metres, ns)
    assert children[np.argmin(warm.llh)] == children[np.argmin(cold.llh)]
    b = int(np.argmin(cold.llh))
    shift = math.dist((warm.x[b], warm.y[b], warm.z[b]), (cold.x[b], cold.y[b], cold.z[b]))
    assert shift < 2.0
    assert abs(warm.t[b] - cold.t[b]) < 10.0


def test_warm_start_needs_fewer_evaluations(refined: tuple[FitTable, FitTable, np.ndarray]) -> None:
    cold, warm, _ = refined
    # the warm count includes the evaluations of the seeds and of the curvature at the start
    assert np.mean(warm.evaluations) < 0.9 * np.mean(cold.evaluations)
    assert np.median(warm.evaluations) < np.median(cold.evaluations)


def test_a_child_without_parent_fit_is_fitted_cold() -> None:
    event, _ = random_track(3)
    fit = PandelTrackFit(event, ic86(), RecoSettings())
    children = np.array([100, 101, 102, 103, 5000], dtype=np.int64)  # nside 64
    # only the parent of the first four has a fit (nside 16: factor 16)
    prior = _prior(fit, event, 16, np.array([6], dtype=np.int64))
    seeds = warm_start_seeds(prior, 64, children)
    assert seeds is not None
    assert np.all(np.isfinite(seeds.times[:4, 0])) and np.all(np.isnan(seeds.times[4]))
    zen, azi = coords.pixel_directions(64, children, event.time)
    cold = fit.fit_directions(zen, azi)
    mixed = fit.fit_directions(zen, azi, seeds)
    # the orphan's fit is the cold fit of the same batch, to the bit, with the same number of evaluations
    assert mixed.llh[4] == cold.llh[4] and mixed.evaluations[4] == cold.evaluations[4]
    assert (mixed.x[4], mixed.y[4], mixed.z[4], mixed.t[4]) == (cold.x[4], cold.y[4], cold.z[4], cold.t[4])
    assert np.any(mixed.evaluations[:4] != cold.evaluations[:4])  # the others did start elsewhere
    # no parent for any pixel: no seeds at all
    assert warm_start_seeds(prior, 64, children[4:]) is None
    assert warm_start_seeds(PriorFits.empty(), 64, children) is None


def test_seeds_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ValueError, match="seeds"):
        VertexSeeds(np.zeros((3, 2, 3)), np.zeros((3, 1)))


def _event_file(tmp_path: Path) -> tuple[Path, Event, float, float]:
    event, spec = random_track(3)
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event_to_dict(event)), encoding="utf-8")
    return path, event, spec.zenith_deg, spec.azimuth_deg


def test_scan_node_warm_starts_from_the_earlier_stage_of_its_scan(tmp_path: Path) -> None:
    path, event, zen, azi = _event_file(tmp_path)
    scan = tmp_path / "scan"
    parent = _truth_pixel(event, zen, azi, 16)
    (scan / "stage0").mkdir(parents=True)
    (scan / "stage1").mkdir()
    first = run_scan_node(path, 16, str(parent), scan / "stage0" / "scan-s0-0000.h5")
    assert first.warm == 0
    children = f"{parent * 16}-{parent * 16 + 15}"
    out = scan / "stage1" / "scan-s1-0000.h5"
    warm = run_scan_node(path, 64, children, out)
    assert warm.warm == 16
    prior = read_prior_fits(out, event.run_id, event.event_id)
    assert prior.ipix.tolist() == [parent] and prior.nside.tolist() == [16]
    # the same batch outside a scan directory (a grid job in a scratch folder) starts cold
    lone = run_scan_node(path, 64, children, tmp_path / "lone.h5")
    assert lone.warm == 0
    off = run_scan_node(path, 64, children, scan / "stage1" / "scan-s1-0001.h5", warm_start=False)
    assert off.warm == 0
    a, b, c = read_fits(out), read_fits(tmp_path / "lone.h5"), read_fits(scan / "stage1" / "scan-s1-0001.h5")
    np.testing.assert_array_equal(b.llh, c.llh)  # cold is cold, wherever it runs
    near = b.llh - np.min(b.llh) <= NEAR_BEST
    np.testing.assert_allclose(a.llh[near], b.llh[near], rtol=0, atol=LLH_TOLERANCE)


def test_a_result_of_another_event_is_not_used(tmp_path: Path) -> None:
    path, event, zen, azi = _event_file(tmp_path)
    scan = tmp_path / "scan"
    (scan / "stage0").mkdir(parents=True)
    (scan / "stage1").mkdir()
    parent = _truth_pixel(event, zen, azi, 16)
    run_scan_node(path, 16, str(parent), scan / "stage0" / "scan-s0-0000.h5")
    out = scan / "stage1" / "scan-s1-0000.h5"
    assert len(read_prior_fits(out, event.run_id, event.event_id)) == 1
    assert len(read_prior_fits(out, event.run_id, event.event_id + 1)) == 0
    assert len(read_prior_fits(scan / "stage0" / "scan-s0-0001.h5", event.run_id, event.event_id)) == 0


def test_a_node_reads_only_the_earlier_results_its_pixels_descend_from(tmp_path: Path) -> None:
    from skyscan.nodes.results import BatchResult, ResultProvenance, write_batch, write_result
    from skyscan.settings.scan import load_config

    scan = tmp_path / "scan"
    (scan / "stage0").mkdir(parents=True)
    (scan / "stage1").mkdir()
    config = load_config()
    (scan / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    nside0 = config.stages[0].nside
    halves = np.array_split(np.arange(12 * nside0 * nside0, dtype=np.int64), 2)
    for b, pixels in enumerate(halves):
        write_batch(scan / "stage0" / f"batch-{b:04d}.txt", pixels)
        n = pixels.size
        fits = BatchResult(nside0, pixels, np.full(n, 1.0 + b), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n),
                           np.zeros(n, dtype=np.int32), seconds=np.zeros(n))  # fmt: skip
        write_result(scan / "stage0" / f"scan-s0-{b:04d}.h5", fits, ResultProvenance(7, 9, "digest"))
    out = scan / "stage1" / "scan-s1-0000.h5"
    nside1 = config.stages[1].nside
    factor = (nside1 // nside0) ** 2
    children = np.arange(5 * factor, 6 * factor, dtype=np.int64)  # the children of pixel 5: in batch 0
    some = read_prior_fits(out, 7, 9, (nside1, children))
    assert set(some.llh.tolist()) == {1.0} and some.ipix.size == halves[0].size
    everything = read_prior_fits(out, 7, 9)
    assert everything.ipix.size == 12 * nside0 * nside0
