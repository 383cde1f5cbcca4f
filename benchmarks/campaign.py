"""Campaign benchmarks: creating a 1,000-event campaign, and (with --accuracy N) localisation accuracy over N events.

Usage:
  python benchmarks/campaign.py [--events 1000] [--profile] [--keep DIR]
  python benchmarks/campaign.py --accuracy 30 [--jobs J] [--config FILE] [--keep DIR]

Create: simulates a few realistic alert events (1e4..1e6 GeV, with dark noise), writes --events distinct copies
(event ids differ), then times `skyscan.campaign.create_campaign` with the default configuration and the local
site: validation, checksums, one scan directory per event (`write_scan`), campaign.dag and the manifest. It
prints the time, the share spent inside write_scan, and the peak memory (max RSS of the process, which includes
the imports and the simulated inputs); the CPU time beside the wall time, as the wall time of a shared machine says
little. --profile adds the functions that cost most. Target: <= 5 s, <= 500 MB.

Accuracy: simulates N tracks of >= 100 TeV (log-uniform 1e5..1e7 GeV, isotropic, seeded), runs them as a local
campaign with the default configuration (or --config) and the local executor, and prints the median angular
error of the best fits to the truth and the coverage of the 50% and 90% regions (Clopper-Pearson 68% interval).
Goal: median <= 0.5 deg and 90% coverage within 85-95% (for N >= 30). With --keep DIR an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CREATE_TARGET_SECONDS = 5.0
CREATE_TARGET_MB = 500.0
ACCURACY_MEDIAN_DEG = 0.5
COVERAGE90_RANGE = (0.85, 0.95)


def _load() -> float:
    """The 1-minute load average: a wall time means little without it on a shared machine."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def _write_inputs(folder: Path, count: int, distinct: int = 20) -> list[str]:
    """``count`` event files (run 1, event ids 1..count) cycling over ``distinct`` simulated events."""
    from skyscan.reco.event import event_to_dict
    from skyscan.reco.geometry import ic86
    from skyscan.reco.simbatch import BatchSpec, simulate_batch

    folder.mkdir(parents=True, exist_ok=True)
    base = [event_to_dict(e.event, e.truth) for e in simulate_batch(BatchSpec(count=min(distinct, count)), ic86())]
    paths = []
    for i in range(count):
        doc = dict(base[i % len(base)])
        doc["event_id"] = i + 1
        path = folder / f"event-{i + 1:05d}.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        paths.append(str(path))
    return paths


def bench_create(args: argparse.Namespace, work: Path) -> bool:
    import skyscan.campaign as campaign
    from skyscan.graph import build as scangraph
    from skyscan.settings.scan import load_config
    from skyscan.settings.site import load_site

    load_before = _load()
    t0 = time.perf_counter()
    inputs = _write_inputs(work / "inputs", args.events)
    pulses = [len(json.loads(Path(p).read_text())["pulses"]["time"]) for p in inputs[:20]]
    print(f"inputs: {len(inputs)} event files, {min(pulses)}..{max(pulses)} pulses each "
          f"(simulated and written in {time.perf_counter() - t0:.1f} s, not timed)")  # fmt: skip
    config, site = load_config(), load_site("local")
    inside = [0.0]
    original: Callable[..., Any] = scangraph.write_scan

    def timed_write_scan(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            inside[0] += time.perf_counter() - t

    scangraph.write_scan = timed_write_scan  # create_campaign looks it up at call time
    profiler = cProfile.Profile() if args.profile else None
    camp = (args.keep or work) / "campaign"
    t1, c1 = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    m = campaign.create_campaign(inputs, camp, config, site)
    if profiler:
        profiler.disable()
    seconds, cpu = time.perf_counter() - t1, time.process_time() - c1
    scangraph.write_scan = original
    rss = _max_rss_mb()
    print(f"created {len(m.events)} event directories ({len(m.rejected)} rejected) in {seconds:.2f} s "
          f"= {1000 * seconds / len(inputs):.1f} ms per event; {cpu:.2f} s CPU")  # fmt: skip
    print(f"  inside write_scan: {inside[0]:.2f} s ({100 * inside[0] / seconds:.0f}%); campaign's own work: "
          f"{seconds - inside[0]:.2f} s")  # fmt: skip
    print(f"max RSS of the process: {rss:.0f} MB")
    if profiler:
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(25)
        print(buf.getvalue())
    print(f"load average (1 min) before/after: {load_before:.2f} / {_load():.2f} on {os.cpu_count()} cores")
    ok = seconds <= CREATE_TARGET_SECONDS and rss <= CREATE_TARGET_MB
    print(f"target <= {CREATE_TARGET_SECONDS:g} s and <= {CREATE_TARGET_MB:g} MB: {'met' if ok else 'NOT met'}")
    return ok


def bench_accuracy(args: argparse.Namespace, work: Path) -> bool:
    import skyscan.campaign as campaign
    from skyscan.campaign.report import write_report
    from skyscan.reco.event import event_to_dict
    from skyscan.reco.geometry import ic86
    from skyscan.reco.simbatch import BatchSpec, iter_batch
    from skyscan.settings.scan import load_config
    from skyscan.settings.site import load_site

    base = args.keep or work
    camp = base / "accuracy"
    if not (camp / campaign.MANIFEST).is_file():
        folder = base / "accuracy-inputs"
        folder.mkdir(parents=True, exist_ok=True)
        batch = BatchSpec(count=args.accuracy, seed=args.seed, energy_range_gev=(1e5, 1e7), run_id=2)
        for item in iter_batch(batch, ic86()):
            path = folder / f"run{item.event.run_id}-evt{item.event.event_id}.json"
            path.write_text(json.dumps(event_to_dict(item.event, item.truth)), encoding="utf-8")
        campaign.create_campaign([str(folder)], camp, load_config(args.config), load_site("local"))
        print(f"created {camp} with {args.accuracy} events of 1e5..1e7 GeV (seed {args.seed})")
    else:
        print(f"resuming {camp}")
    t0 = time.perf_counter()
    run = campaign.run_campaign(camp, jobs=args.jobs, stream=sys.stderr)
    print(f"ran in {time.perf_counter() - t0:.0f} s: {run.status.counts}")
    result = write_report(camp)
    s = result.stats
    cov50, cov90 = s.coverage["50"], s.coverage["90"]
    n = sum(s.ref_sources.values())
    print(f"events with truth: {n}; median 90% area {s.area90_median or float('nan'):.3g} deg2")
    print(f"median angular error: {s.error_median if s.error_median is not None else float('nan'):.3f} deg "
          f"(goal <= {ACCURACY_MEDIAN_DEG} deg); 68% quantile {s.error_q68 or float('nan'):.3f} deg")  # fmt: skip
    print(f"coverage 50%: {cov50.value:.3f} [{cov50.lo:.3f}, {cov50.hi:.3f}] ({cov50.k}/{cov50.n})")
    print(f"coverage 90%: {cov90.value:.3f} [{cov90.lo:.3f}, {cov90.hi:.3f}] ({cov90.k}/{cov90.n}) "
          f"(goal {COVERAGE90_RANGE[0]:.0%}-{COVERAGE90_RANGE[1]:.0%})")  # fmt: skip
    print(f"report: {result.files['html']}")
    ok = (
        s.error_median is not None
        and s.error_median <= ACCURACY_MEDIAN_DEG
        and COVERAGE90_RANGE[0] <= cov90.value <= COVERAGE90_RANGE[1]
    )
    if n < 30:
        print(f"note: {n} events are too few to judge the goals (use --accuracy 30 or more)")
    print(f"goals: {'met' if ok else 'NOT met'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000, help="events of the created campaign (default 1000)")
    parser.add_argument("--profile", action="store_true", help="print the costliest functions of the create")
    parser.add_argument(
        "--accuracy", type=int, metavar="N", help="instead: run a local campaign of N tracks of >= 100 TeV"
    )
    parser.add_argument("--jobs", type=int, help="processes at once for --accuracy (default: all cores)")
    parser.add_argument("--config", help="scan configuration for --accuracy (default: the built-in one)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the --accuracy events (default 2026)")
    parser.add_argument("--keep", type=Path, help="work here instead of a temporary folder (and keep it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ok = bench_accuracy(args, work) if args.accuracy else bench_create(args, work)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
