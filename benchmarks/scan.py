"""Wall time of `skyscan run` on the benchmark event with the default plan, node by node (prints figures).

Usage: python benchmarks/scan.py [--jobs N] [--keep DIR] [--config FILE] [--no-fixed-cost]

Runs `skyscan run` as a user would (a fresh process; warm node processes unless SKYSCAN_FORK_SERVER=0 is
set) with the executor's timing trace (SKYSCAN_EXECUTOR_TRACE) and prints:

- the critical path node by node: prepare, each stage's scan jobs, each plan step (the PRE script of a stage),
  merge and final, with start and end (seconds after `skyscan run` was started) and duration; for each scan
  job also its fit time (what the job itself reports) and the rest, the job's fixed cost;
- where the wall time goes: start-up, prepare, the stages' scan jobs, plan steps, merge, final, the rest;
- the wall time and the overhead ratio: wall / (summed scan-job time / parallel jobs);
- a scan node's fixed cost (interpreter, imports, event preparation, compiled-kernel load) measured apart:
  a one-pixel scan node with the scan's configuration as a fresh process and as a fork of a warm process.

Targets (issue "Speed to the limit", 2 cores): wall <= 6 s, overhead <= 1.15, node fixed cost <= 0.5 s.
Timings on a shared machine are noisy: run it a few times and compare minima.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

SKYSCAN = [sys.executable, "-m", "skyscan.cli"]
_FIT_SECONDS = re.compile(r"pixels at nside \d+, \d+ failed, ([0-9.]+) s")


@dataclass
class Span:
    """One node of one DAG: when its PRE script, job and POST script ran (epoch seconds; None if not)."""

    dag: str
    node: str
    depth: int
    times: dict[str, float] = field(default_factory=dict)  # first time of each state
    end: float | None = None
    state: str = ""

    @property
    def start(self) -> float | None:
        found = [self.times[s] for s in ("pre", "running", "post") if s in self.times]
        return min(found) if found else None


def read_trace(path: Path) -> dict[tuple[str, str], Span]:
    spans: dict[tuple[str, str], Span] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec["event"] != "node_changed":
            continue
        key = (Path(rec["dag"]).name, rec["node"])
        span = spans.setdefault(key, Span(key[0], key[1], rec["depth"]))
        span.times.setdefault(rec["state"], rec["t"])
        if rec["state"] in ("done", "failed", "skipped"):
            span.end, span.state = rec["t"], rec["state"]
    return spans


def fit_seconds(scan_dir: Path, node: str) -> float | None:
    """The fit time a scan job printed ("... 3.8 s (101.5 pixels/s)"), None if not found."""
    out = scan_dir / "logs" / f"{node}.out"
    if not out.is_file():
        return None
    match = _FIT_SECONDS.search(out.read_text(encoding="utf-8", errors="replace"))
    return float(match.group(1)) if match else None


def print_critical_path(spans: dict[tuple[str, str], Span], t0: float, scan_dir: Path) -> float:
    """Print the path node by node; return the summed wall time of all scan jobs (job step only)."""

    def rel(t: float | None) -> str:
        return "    -" if t is None else f"{t - t0:5.2f}"

    def row(label: str, start: float | None, end: float | None, extra: str = "") -> None:
        dur = "    -" if start is None or end is None else f"{end - start:5.2f}"
        print(f"  {label:<28} {rel(start)} {rel(end)} {dur}{extra}")

    print(f"  {'node':<28} start   end   dur  (s after `skyscan run` started)")
    by_dag: dict[str, list[Span]] = defaultdict(list)
    for span in spans.values():
        by_dag[span.dag].append(span)
    scan_total = 0.0

    def stage_jobs(dag: str, stage_label: str) -> None:
        nonlocal scan_total
        jobs = sorted((s for s in by_dag.get(dag, []) if s.node.startswith("scan-")), key=lambda s: s.start or 0.0)
        if not jobs:
            return
        starts = [s.times.get("running") for s in jobs if s.times.get("running")]
        ends = [s.end for s in jobs if s.end]
        row(f"{stage_label} ({len(jobs)} jobs)", min(starts) if starts else None, max(ends) if ends else None)
        for job in jobs:
            start = job.times.get("running")
            extra = ""
            if start is not None and job.end is not None:
                scan_total += job.end - start
                fit = fit_seconds(scan_dir, job.node)
                if fit is not None:
                    extra = f"  fit {fit:.2f}, fixed {job.end - start - fit:.2f}"
            row(f"  {job.node}", start, job.end, extra)

    top = sorted(by_dag.get("skyscan.dag", []), key=lambda s: s.start or 0.0)
    for span in top:
        if span.node.startswith("scan-"):
            continue
        if span.node == "prepare":
            row("prepare", span.start, span.end)
            stage_jobs("skyscan.dag", "stage 0 scan")
        elif span.node.startswith("stage"):
            plan_end = span.times.get("running") or span.end
            row(f"plan {span.node} (PRE)", span.times.get("pre"), plan_end,
                "  (nothing to refine)" if span.state == "skipped" else "")
            stage_jobs(f"{span.node}.dag", f"{span.node} scan")
            for sub in sorted(by_dag.get(f"{span.node}.dag", []), key=lambda s: s.start or 0.0):
                if sub.node.startswith("stage"):  # a nested stage of an adaptive plan
                    row(f"  plan {sub.node} (PRE)", sub.times.get("pre"), sub.times.get("running") or sub.end)
                    stage_jobs(f"{sub.node}.dag", f"  {sub.node} scan")
        else:
            row(span.node, span.start, span.end)
    return scan_total


def print_shares(spans: dict[tuple[str, str], Span], t0: float, wall: float) -> None:
    """The wall time split into what sets it: start-up, prepare, the stages' scan jobs, plan steps, merge, final."""
    parts: dict[str, float] = defaultdict(float)
    top = {s.node: s for s in spans.values() if s.dag == "skyscan.dag"}
    prepare = top.get("prepare")
    if prepare is not None and prepare.start is not None and prepare.end is not None:
        parts["start-up (before prepare)"] = prepare.start - t0
        parts["prepare"] = prepare.end - prepare.start
    by_dag: dict[str, list[Span]] = defaultdict(list)
    for span in spans.values():
        by_dag[span.dag].append(span)
        if span.node.startswith("stage") and "pre" in span.times:
            parts["plan steps (PRE)"] += (span.times.get("running") or span.end or span.times["pre"]) - span.times["pre"]
    for jobs in by_dag.values():
        starts = [j.times["running"] for j in jobs if j.node.startswith("scan-") and "running" in j.times]
        ends = [j.end for j in jobs if j.node.startswith("scan-") and j.end is not None]
        if starts and ends:
            parts["scan stages (first start to last end)"] += max(ends) - min(starts)
    for name in ("merge", "final"):
        span = top.get(name)
        if span is not None and span.start is not None and span.end is not None:
            parts[name] = span.end - span.start
    parts["the rest (gaps between nodes, exit)"] = wall - sum(parts.values())
    print("where the wall time goes:")
    for name, seconds in parts.items():
        print(f"  {name:<40} {seconds:5.2f} s  {100 * seconds / wall:4.1f}%")


def _wall(cmd: list[str], cwd: Path | None = None) -> tuple[float, str]:
    t = time.perf_counter()
    run = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if run.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(cmd)} failed: {run.stderr}")
    return time.perf_counter() - t, run.stdout + run.stderr


def node_fixed_cost(scan_dir: Path, repeat: int = 3) -> None:
    """A one-pixel scan node with the scan's config: fresh process vs warm fork; minus its fit time."""
    from skyscan.local.forkserver import ForkServers
    from skyscan.local.processes import StopControl

    out = scan_dir.parent / "one-pixel.h5"
    node = ["node", "scan", "event.json", "--nside", "8", "--pixels", "0", "-o", str(out), "--config", "config.yaml"]

    def cold() -> tuple[float, float]:
        out.unlink(missing_ok=True)
        wall, text = _wall([*SKYSCAN, *node], cwd=scan_dir)
        match = _FIT_SECONDS.search(text)
        return wall, float(match.group(1)) if match else 0.0

    interp = min(_wall([sys.executable, "-c", "pass"])[0] for _ in range(repeat))
    imports = min(_wall([sys.executable, "-c", "import skyscan.cli, skyscan.nodes.scan"])[0] for _ in range(repeat))
    kernel_code = "from skyscan.reco import kernel; how, s = kernel.warm(); print(how, s)"
    kernel = [_wall([sys.executable, "-c", kernel_code])[1].split() for _ in range(repeat)]
    kernel_s = min(float(k[1]) for k in kernel)
    colds = [cold() for _ in range(repeat)]
    cold_fixed = min(w - f for w, f in colds)
    print(f"scan node fixed cost (one-pixel node, minimum of {repeat}):")
    print(f"  fresh process: {cold_fixed:.2f} s = interpreter {interp:.2f} + imports {imports - interp:.2f} "
          f"+ kernel load {kernel_s:.2f} ({kernel[0][0]}) + event preparation and the rest "
          f"{max(cold_fixed - imports - kernel_s, 0.0):.2f}")
    forks = ForkServers()
    try:
        ready = forks.warm()
        ctl = StopControl(stopped=lambda: False, grace=1.0, force=threading.Event())
        warm: list[float] = []
        for _ in range(repeat):
            out.unlink(missing_ok=True)
            log = scan_dir.parent / "one-pixel.out"
            with open(log, "wb") as fh:
                t = time.perf_counter()
                rc = forks.run([sys.executable, "-m", "skyscan.cli", *node], scan_dir, ctl, subprocess.DEVNULL,
                               fh, fh, None)
                wall = time.perf_counter() - t
            match = _FIT_SECONDS.search(log.read_text())
            if rc != 0 or match is None:
                print(f"  warm fork: failed (exit {rc}): {log.read_text()[-300:]}")
                return
            warm.append(wall - float(match.group(1)))
        print(f"  warm fork:     {min(warm):.2f} s (event preparation and writing the result; the server "
              f"{'was warm' if ready else 'was NOT warm yet'})  (target <= 0.5 s)")
    finally:
        forks.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", help="scan directory to keep (default: a temporary one)")
    parser.add_argument("--config", help="a scan configuration file for `skyscan run --config` (default: none)")
    parser.add_argument("--no-fixed-cost", action="store_true", help="skip the node fixed-cost measurement")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="skyscan-bench-"))
    event = work / "benchmark.json"
    out = work / "scan"
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run([*SKYSCAN, "simulate", "--preset", "benchmark", "-o", str(event)], check=True, capture_output=True)
    # warm the per-user caches once, as any installation has after its first scan
    subprocess.run([*SKYSCAN, "coords", "--time", "2026-01-01T00:00:00Z", "--ra", "0", "--dec", "0"], check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "skyscan.reco.kernel"], check=True, capture_output=True)
    trace = work / "trace.jsonl"
    trace.unlink(missing_ok=True)
    env = dict(os.environ, SKYSCAN_EXECUTOR_TRACE=str(trace))

    t0 = time.time()
    start = time.perf_counter()
    extra = ["--config", args.config] if args.config else []
    run = subprocess.run([*SKYSCAN, "run", str(event), "-o", str(out), "--jobs", str(args.jobs), *extra],
                         capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        print(run.stdout, run.stderr, sep="\n")
        raise SystemExit(f"skyscan run failed with exit code {run.returncode}")

    summary = json.loads((out / "summary.json").read_text())
    forked = os.environ.get("SKYSCAN_FORK_SERVER", "").strip().lower() not in ("0", "false", "no", "off")
    print(f"default plan on the benchmark event, {args.jobs} parallel jobs, "
          f"warm node processes {'on' if forked else 'off (SKYSCAN_FORK_SERVER=0)'}")
    print(f"pixels per stage: {summary['pixels']['by_nside']} (total {summary['pixels']['scanned']}, "
          f"failed {summary['pixels']['failed']})")
    print("critical path:")
    spans = read_trace(trace)
    scan_seconds = print_critical_path(spans, t0, out)
    ideal = scan_seconds / args.jobs
    print_shares(spans, t0, wall)
    print(f"wall time: {wall:.2f} s (target <= 6 s)")
    print(f"scan jobs summed {scan_seconds:.2f} s; ideal {ideal:.2f} s on {args.jobs} jobs")
    print(f"overhead ratio (wall / ideal): {wall / ideal:.2f} (target <= 1.15)")
    best = summary["best_fit"]
    print(f"best fit RA {best['ra_deg']:.2f} Dec {best['dec_deg']:.2f}; "
          f"90% area {summary['containment']['90']['area_deg2']:.2f} deg2")
    if not args.no_fixed_cost:
        node_fixed_cost(out)


if __name__ == "__main__":
    main()
