"""Wall time of `skyscan run` on the benchmark event with the default 8/64/512 plan (prints figures).

Usage: python benchmarks/scan.py [--jobs N] [--keep DIR]

Reports the wall time, the pixels per stage, and the orchestration overhead: the wall time
divided by the ideal time, i.e. the summed wall times of all scan jobs (process start included)
divided by the number of parallel jobs. Targets: <= 60 s and overhead <= 1.25 on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", help="scan directory to keep (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="skyscan-bench-"))
    event = work / "benchmark.json"
    out = work / "scan"
    work.mkdir(parents=True, exist_ok=True)
    skyscan = [sys.executable, "-m", "skyscan.cli"]
    subprocess.run([*skyscan, "simulate", "--preset", "benchmark", "-o", str(event)], check=True, capture_output=True)
    # warm the per-user caches once, as any installation has after its first scan
    subprocess.run([*skyscan, "coords", "--time", "2026-01-01T00:00:00Z", "--ra", "0", "--dec", "0"], check=True, capture_output=True)

    t0 = time.perf_counter()
    run = subprocess.run([*skyscan, "run", str(event), "-o", str(out), "--jobs", str(args.jobs)], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        print(run.stdout, run.stderr, sep="\n")
        raise SystemExit(f"skyscan run failed with exit code {run.returncode}")

    summary = json.loads((out / "summary.json").read_text())
    scan_seconds = 0.0
    node_seconds: dict[str, float] = {}
    for state_file in sorted(out.glob("*.dag.runstate.json")):
        state = json.loads(state_file.read_text())
        for name, node in state["nodes"].items():
            if node.get("started") and node.get("finished"):
                from datetime import datetime

                start = datetime.fromisoformat(node["started"].replace("Z", "+00:00"))
                end = datetime.fromisoformat(node["finished"].replace("Z", "+00:00"))
                seconds = (end - start).total_seconds()
                node_seconds[name] = seconds
                if name.startswith("scan-"):
                    scan_seconds += seconds
    ideal = scan_seconds / args.jobs
    print(f"default plan (nside 8/64/512) on the benchmark event, {args.jobs} parallel jobs")
    print(f"pixels per stage: {summary['pixels']['by_nside']} (total {summary['pixels']['scanned']}, failed {summary['pixels']['failed']})")
    print(f"wall time: {wall:.1f} s (target <= 60 s)")
    print(f"scan jobs: {sum(1 for n in node_seconds if n.startswith('scan-'))}, summed {scan_seconds:.1f} s; ideal {ideal:.1f} s")
    print(f"overhead (wall / ideal): {wall / ideal:.2f} (target <= 1.25)")
    for name in ("prepare", "stage1", "stage2", "merge", "final"):
        if name in node_seconds:
            print(f"  {name}: {node_seconds[name]:.1f} s")
    best = summary["best_fit"]
    print(f"best fit RA {best['ra_deg']:.2f} Dec {best['dec_deg']:.2f}; 90% area {summary['containment']['90']['area_deg2']:.2f} deg2")


if __name__ == "__main__":
    main()
