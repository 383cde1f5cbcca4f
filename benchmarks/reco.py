"""Reconstruction throughput on the benchmark event (prints figures; not a test).

Usage: python benchmarks/reco.py [--pixels N]

Scans the whole sky at nside 8 (768 pixels) and N nside-64 pixels nearest the true direction
(the kind of pixels the refinement stages scan), first in one process, then split over all
cores. Target: >= 100 pixels/s per core.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import healpy as hp
import numpy as np

from skyscan.reco import coords
from skyscan.reco.fit import PandelTrackFit
from skyscan.reco.geometry import ic86
from skyscan.reco.simulate import BENCHMARK_SEED, BENCHMARK_TIME, benchmark_spec, simulate_track


def _pixels(n_fine: int) -> list[tuple[int, np.ndarray]]:
    spec = benchmark_spec()
    ra, dec = coords.local_to_equatorial(math.radians(spec.zenith_deg), math.radians(spec.azimuth_deg), BENCHMARK_TIME)
    vec = hp.ang2vec(math.pi / 2 - float(dec), float(ra))
    fine = hp.query_disc(64, vec, math.radians(15.0), nest=True)
    r, d = coords.pixel_radec(64, fine)
    order = np.argsort(coords.angular_distance(r, d, float(ra), float(dec)))
    return [(8, np.arange(hp.nside2npix(8))), (64, np.sort(fine[order[:n_fine]]))]


def _scan(job: tuple[int, np.ndarray]) -> tuple[int, float]:
    nside, ipix = job
    geo = ic86()
    event, _ = simulate_track(benchmark_spec(), geo, np.random.default_rng(BENCHMARK_SEED), event_time=BENCHMARK_TIME)
    t0 = time.perf_counter()
    zen, azi = coords.pixel_directions(nside, ipix, event.time)
    table = PandelTrackFit(event, geo).fit_directions(zen, azi)
    return int(np.count_nonzero(table.status == 0)), time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=768, help="nside-64 pixels near the truth (default 768)")
    args = parser.parse_args()
    jobs = _pixels(args.pixels)
    total = sum(len(p) for _, p in jobs)
    geo = ic86()
    event, _ = simulate_track(benchmark_spec(), geo, np.random.default_rng(BENCHMARK_SEED), event_time=BENCHMARK_TIME)
    n_doms = len(set(zip(event.pulses.string.tolist(), event.pulses.om.tolist())))
    print(
        f"benchmark event: {len(event.pulses)} pulses on {n_doms} DOMs; {total} pixels (768 at nside 8, {args.pixels} at nside 64)"
    )

    t0 = time.perf_counter()
    for job in jobs:
        _scan(job)
    one = time.perf_counter() - t0
    print(f"1 core:   {total / one:7.1f} pixels/s  ({one:.1f} s)")

    cores = os.cpu_count() or 1
    chunks = [(nside, part) for nside, ipix in jobs for part in np.array_split(ipix, cores)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=cores) as pool:
        list(pool.map(_scan, chunks))
    many = time.perf_counter() - t0
    print(f"{cores} cores:  {total / many:7.1f} pixels/s  ({many:.1f} s, {total / many / cores:.1f} pixels/s per core)")
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak memory: {peak_self:.0f} MB (main process), {peak_child:.0f} MB (largest worker)")


if __name__ == "__main__":
    main()
