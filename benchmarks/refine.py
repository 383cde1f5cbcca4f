"""Warm-started refinement: likelihood evaluations per pixel per stage, cold start against warm start.

Usage: python benchmarks/refine.py [--event FILE] [--config FILE] [--keep DIR]

Runs the stages of one scan (default: the benchmark event of `skyscan simulate --preset benchmark` and the
default configuration) in this process, node by node as the graph does (prepare, the scan nodes of stage 0,
the plan of stage 1, its scan nodes, ...), twice: once with every pixel started cold (from the first-guess
track, as before warm starts) and once warm (each refinement pixel from its parent's fit and its best
neighbouring fit). Stage 0 has no parent, so its fits are computed once and shared. Prints, per stage, the
median and mean likelihood evaluations per pixel and the fit time, then the best-fit pixel after every stage
of both runs and the llh differences on the pixels both runs fitted (all, and near the best fit). Timings are wall time on a
possibly shared machine: compare evaluations, not seconds.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

#: The minimiser's absolute tolerance on -ln L (``skyscan.reco.minimize.minimize_bfgs_batch``'s ``ftol``).
FIT_TOLERANCE = 2e-3
#: Pixels whose cold llh lies within this of the stage's best (the region the contours are drawn in).
NEAR_BEST = 10.0


def _stage_fits(outdir: Path, stage: int) -> dict[str, Any]:
    import h5py

    from skyscan.graph.layout import ScanLayout
    from skyscan.nodes.results import read_fits

    parts = [read_fits(p) for p in ScanLayout(outdir).list_results(stage)]
    evals = []
    for p in ScanLayout(outdir).list_results(stage):
        with h5py.File(p, "r") as f:
            evals.append(np.asarray(f["evaluations"][()]))
    return {
        "nside": parts[0].nside,
        "ipix": np.concatenate([p.ipix for p in parts]),
        "llh": np.concatenate([p.llh for p in parts]),
        "evaluations": np.concatenate(evals),
    }


def _scan_stage(outdir: Path, stage: int, warm: bool) -> float:
    """Run the scan nodes of one stage in this process; the seconds they took."""
    import yaml

    from skyscan.graph.build import scan_config
    from skyscan.graph.layout import ScanLayout
    from skyscan.nodes.scan import run_scan_node
    from skyscan.reco.settings import RecoSettings

    layout = ScanLayout(outdir)
    doc = yaml.safe_load(layout.config.read_text(encoding="utf-8"))
    settings = RecoSettings.from_mapping(doc.get("reco"))
    nside = scan_config(outdir).stages[stage].nside
    t0 = time.perf_counter()
    for b in layout.list_batches(stage):
        run_scan_node(
            layout.event,
            nside,
            str(layout.batch_file(stage, b)),
            layout.result_file(stage, b),
            settings=settings,
            config_doc=doc,
            warm_start=warm,
        )
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--event", type=Path, help="event file (default: the benchmark preset)")
    parser.add_argument("--config", type=Path, help="scan configuration (default: the built-in one)")
    parser.add_argument("--keep", type=Path, help="write both scans here instead of a temporary folder")
    args = parser.parse_args()

    from skyscan.graph.build import write_scan
    from skyscan.graph.refine import global_best
    from skyscan.nodes.plan import plan_stage
    from skyscan.nodes.prepare import prepare_scan
    from skyscan.settings.scan import load_config
    from skyscan.settings.site import load_site

    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        event = args.event
        if event is None:  # `skyscan simulate --preset benchmark`, the command's own code path
            from skyscan.cli import cli

            event = work / "benchmark.json"
            cli.main(["simulate", "--preset", "benchmark", "-o", str(event)], standalone_mode=False)
        config = load_config(args.config) if args.config else load_config()
        dirs = {"cold": work / "cold", "warm": work / "warm"}
        for d in dirs.values():
            if d.exists():
                shutil.rmtree(d)
        write_scan(event, dirs["cold"], config, load_site("local"))
        prepare_scan(dirs["cold"] / "event.json", dirs["cold"])
        seconds: dict[str, list[float]] = {"cold": [], "warm": []}
        seconds["cold"].append(_scan_stage(dirs["cold"], 0, warm=False))
        seconds["warm"].append(seconds["cold"][0])
        shutil.copytree(dirs["cold"], dirs["warm"])
        for mode, d in dirs.items():
            for stage in range(1, len(config.stages)):
                if plan_stage(d, stage).skipped:
                    break
                seconds[mode].append(_scan_stage(d, stage, warm=mode == "warm"))

        fits = {m: [_stage_fits(d, k) for k in range(len(seconds[m]))] for m, d in dirs.items()}
        print(f"event {event}; stages {[s.nside for s in config.stages]} ({config.rule} rule)")
        print("likelihood evaluations per pixel (median / mean) and fit time per stage:")
        print(f"  {'stage':>5} {'nside':>5} {'pixels':>6}   {'cold':>15} {'s':>6}   {'warm':>15} {'s':>6}")
        for k in range(max(len(seconds["cold"]), len(seconds["warm"]))):
            cells = []
            for m in ("cold", "warm"):
                if k < len(fits[m]):
                    e = fits[m][k]["evaluations"]
                    cells.append(f"{np.median(e):7.1f} / {np.mean(e):5.1f} {seconds[m][k]:6.1f}")
                else:
                    cells.append(f"{'-':>15} {'':>6}")
            ref = fits["cold"][k] if k < len(fits["cold"]) else fits["warm"][k]
            print(f"  {k:>5} {ref['nside']:>5} {ref['ipix'].size:>6}   {cells[0]}   {cells[1]}")

        same = True
        print("global best fit after each stage (nside, ipix, llh):")
        for k in range(max(len(fits["cold"]), len(fits["warm"]))):
            best = {}
            for m in ("cold", "warm"):
                sofar = fits[m][: k + 1]
                best[m] = global_best(
                    np.concatenate([np.full(f["ipix"].size, f["nside"]) for f in sofar]),
                    np.concatenate([f["ipix"] for f in sofar]),
                    np.concatenate([f["llh"] for f in sofar]),
                )
            agree = best["cold"] is not None and best["warm"] is not None and (
                (best["cold"].nside, best["cold"].ipix) == (best["warm"].nside, best["warm"].ipix)
            )
            same &= agree
            print(f"  after stage {k}: cold {best['cold']}  warm {best['warm']}  {'same pixel' if agree else 'DIFFER'}")
        worst = 0.0
        worst_near = 0.0
        for k in range(1, min(len(fits["cold"]), len(fits["warm"]))):
            c, w = fits["cold"][k], fits["warm"][k]
            common, ic, iw = np.intersect1d(c["ipix"], w["ipix"], return_indices=True)
            diff = np.abs(c["llh"][ic] - w["llh"][iw])
            diff = diff[np.isfinite(diff)]
            lower = int(np.count_nonzero(w["llh"][iw] < c["llh"][ic] - FIT_TOLERANCE))
            higher = int(np.count_nonzero(w["llh"][iw] > c["llh"][ic] + FIT_TOLERANCE))
            dmax = float(diff.max()) if diff.size else 0.0
            rel = c["llh"][ic] - np.nanmin(c["llh"])
            near = np.abs(c["llh"][ic] - w["llh"][iw])[rel <= NEAR_BEST]
            near = near[np.isfinite(near)]
            near_max = float(near.max()) if near.size else 0.0
            worst_near = max(worst_near, near_max)
            print(f"  stage {k}: {common.size} pixels fitted by both; |llh warm - cold| median "
                  f"{float(np.median(diff)) if diff.size else 0.0:.2e}, max {dmax:.2e}; beyond the fit tolerance "
                  f"{FIT_TOLERANCE:g}: {lower} lower, {higher} higher; within {NEAR_BEST:g} of the stage's best "
                  f"llh: {near.size} pixels, max |difference| {near_max:.2e}")  # fmt: skip
            if common.size:
                worst = max(worst, float(np.quantile(diff, 0.5)))
        print(f"best-fit pixel {'the same' if same else 'DIFFERENT'} after every stage; largest median |llh "
              f"difference| of a stage {worst:.2e}; largest |llh difference| within {NEAR_BEST:g} of the best "
              f"{worst_near:.2e} (fit tolerance {FIT_TOLERANCE:g}: far from the best fit the fits of either "
              "start end in different local minima)")  # fmt: skip
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
