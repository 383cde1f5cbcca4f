"""Merge throughput: a default-sized scan (768 + 768 + 1536 pixels at nside 8/64/512) into all products.

Usage: python benchmarks/merge.py [--repeat N] [--no-plots] [--keep DIR] [--scan DIR]

Writes a synthetic scan in the scan-node format (a paraboloid -ln L), or takes a finished scan (--scan, e.g. one
of `skyscan run` of the benchmark event; it is copied, not changed), then times `skyscan merge` in fresh
processes, imports included (the issue's target: <= 1.0 s wall; the CPU time of the process and its children is
printed beside it, as the wall time of a shared machine says little), and `merge_scan` in this process, producing
skymap.h5, the multi-order and flat FITS files, both plots, the GCN drafts and summary.json. Peak memory is
reported twice: Python allocations seen by tracemalloc (numpy included) during the merge, and the process's
maximum resident set size. Targets: a fresh `skyscan merge` <= 1.0 s, and <= 500 MB.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

TARGET_SECONDS = 5.0
"""In-process merge (imports paid once before)."""
TARGET_CLI_SECONDS = 1.0
"""A fresh ``skyscan merge`` process, imports included."""
TARGET_MB = 500.0


def _load() -> float:
    """The 1-minute load average: a wall time means little without it on a shared machine."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _cli_merge(outdir: Path, plots: bool) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``skyscan merge`` in a fresh interpreter; CPU includes its child processes."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd = [sys.executable, "-m", "skyscan.cli", "merge", str(outdir)] + ([] if plots else ["--no-plots"])
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="merges to time (default 3; the first pays imports)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--keep", type=Path, help="write the scan and products here instead of a temporary folder")
    parser.add_argument("--scan", type=Path, help="merge a copy of this finished scan instead of a synthetic one")
    args = parser.parse_args()

    load_before = _load()
    t0 = time.perf_counter()
    from skyscan.nodes.merge import merge_scan
    from skyscan.nodes.synthetic import write_synthetic_scan

    t_import = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        outdir = args.keep or Path(tmp) / "scan"
        if args.scan:
            shutil.copytree(args.scan, outdir, dirs_exist_ok=True)
        else:
            write_synthetic_scan(outdir)
        plots = False if args.no_plots else None
        cli_times = [_cli_merge(outdir, not args.no_plots) for _ in range(max(1, args.repeat))]
        times: list[float] = []
        for _ in range(max(1, args.repeat)):
            t1 = time.perf_counter()
            result = merge_scan(outdir, plots=plots)
            times.append(time.perf_counter() - t1)
        # One more merge under tracemalloc for the peak (tracing slows it down, so it is not timed).
        tracemalloc.start()
        merge_scan(outdir, plots=plots)
        peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux
        s = result.summary_model
        map_total = s.map_pixels.total if s.map_pixels is not None else None
        print(f"scan: {s.pixels.scanned} pixels {s.pixels.by_nside} -> {map_total} map pixels")
        print(f"products: {', '.join(s.products.values())} (flat nside {s.flat_nside})")
        for i, (wall, cpu) in enumerate(cli_times):
            print(f"fresh `skyscan merge` {i + 1}: {wall:.2f} s wall, {cpu:.2f} s CPU (imports included)")
        print(f"imports: {t_import:.2f} s")
        for i, t in enumerate(times):
            print(f"merge {i + 1}: {t:.2f} s")
        print(f"peak of Python allocations during a merge (tracemalloc): {peak_mb:.0f} MB")
        print(f"max RSS of the process: {rss_mb:.0f} MB")
        worst = max(times)
        best_cli = min(w for w, _ in cli_times)
        ok = worst <= TARGET_SECONDS and best_cli <= TARGET_CLI_SECONDS and max(peak_mb, rss_mb) <= TARGET_MB
        print(f"slowest merge {worst:.2f} s (+{t_import:.2f} s of imports once per process)")
        print(f"fastest fresh `skyscan merge` {best_cli:.2f} s wall")
        print(f"load average (1 min) before/after: {load_before:.2f} / {_load():.2f} on {os.cpu_count()} cores")
        print(f"targets: fresh process <= {TARGET_CLI_SECONDS:g} s, in-process <= {TARGET_SECONDS:g} s, "
              f"<= {TARGET_MB:g} MB: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
