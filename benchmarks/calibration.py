"""The coverage demonstration of calibrated containment (docs/containment.md, "What was shown").

Two simulated campaigns with the default systematics switched on and different seeds:

* a calibration campaign (seed ``--cal-seed``): each event scanned, its truth's 2*delta-llh T recorded, and the
  calibration table derived from them (``skyscan.calibrate.table.table_document``, binned in total charge);
* a test campaign (seed ``--test-seed``): each event scanned; coverage of its 50% / 90% regions with Wilks' levels
  and with the table's levels (looked up by the event's total charge), with central 68% and 95% Clopper-Pearson
  intervals; then on the first ``--resim-events`` events, per-event resimulation (``skyscan calibrate``'s
  pseudo-events: the event's own best-fit track, ``--resim-n`` pseudo-events, default systematics) and the
  fraction of truths inside their own calibrated 90% (and 50%) regions, with the CPU-seconds per calibration.

Each event is scanned in this process with the scan's own stages and likelihood (``reconstruct_disc`` with a
180 degree disc is exactly a scan's pixel selection: stage 0 is the whole sky, later stages refine as
``skyscan.graph.refine`` does), which saves the per-node process start-up of a real campaign but fits the same
pixels. Results go to a JSON file; every number printed is in it, with per event T, total charge and the table
levels used. The table is written beside it (``OUTPUT.table.json``) and looked up per test event through the
products' own ``containment: {table: FILE}`` code. ``--jobs N`` spreads the events and pseudo-events over N
processes; every event and pseudo-event has its own random stream, so the numbers do not depend on N.
``--cache DIR`` keeps every scanned event and pseudo-event, so a re-run with more events computes only the new
ones (the recorded CPU seconds are then the original ones).

    python benchmarks/calibration.py --quick            # minutes: small campaigns, a coarse plan
    python benchmarks/calibration.py --jobs 2           # the full one: 100 + 300 events, the built-in stages
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pickle
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from skyscan import iers_cache
from skyscan.atomic import atomic_path, write_json
from skyscan.calibrate.find import product_levels
from skyscan.calibrate.pseudo import reconstruct_disc, run_pseudo
from skyscan.calibrate.source import DISC_FACTOR, MIN_DISC_DEG, SourceTrack, StagePlan, disc_radius_deg, r99_deg
from skyscan.calibrate.table import table_document
from skyscan.campaign.report.rows import dllh2_at
from skyscan.campaign.report.stats import clopper_pearson
from skyscan.errors import InputError
from skyscan.products.levels import LEVELS, LevelContext, choose_levels, event_observables
from skyscan.reco.coords import equatorial_to_local
from skyscan.reco.geometry import ic86
from skyscan.reco.simbatch import BatchSpec, iter_batch, truth_radec_deg
from skyscan.reco.systematics import load_systematics
from skyscan.settings.scan import load_config
from skyscan.timestamps import utcnow

QUICK_PLAN = {
    "scan": {
        "stages": [{"nside": 8}, {"nside": 32, "refine": 6}, {"nside": 256, "refine": 6}],
        "resolve": {"min_pixels": 0},
    },
    "reco": {"max_iterations": 60, "compiled_kernel": True},
}
"""The quick version's plan: 768 + 192 + 384 pixels per scan (nside-256 pixels are 0.23 deg), the compiled
likelihood kernel (the same numbers as numpy, about twice as fast here), no resolving stages."""


FULL_PLAN = {"scan": {"resolve": {"min_pixels": 0}}}
"""The full version's plan: the built-in stages (768 nside-8 pixels, 12 refined to nside 64, 24 to nside 512: 3072
pixels, about 8 CPU-s per scan) and ``reco:`` settings, without the resolving stages (``scan.resolve``). Those add
only a few hundred pixels at nside 1024-4096, but here each scan is ``reconstruct_disc`` over a 180 degree disc,
which intersects every resolving stage's pixels with the whole sky's pixel list at that nside (2e8 pixels at
nside 4096): about 100 CPU-s per scan, which the campaigns cannot afford. ``--config`` gives any other plan."""


def _template(config: Any) -> SourceTrack:
    """A SourceTrack carrying the plan (stages, rule, adaptive, resolve, reco); per event only the track changes."""
    from datetime import datetime, timezone

    resolve = getattr(config, "resolve", None)
    return SourceTrack(
        scandir="", run_id=0, event_id=0, event_time=datetime(2026, 1, 1, tzinfo=timezone.utc), stream="gold",
        geometry="ic86", ra_deg=0.0, dec_deg=0.0, zenith_deg=90.0, azimuth_deg=0.0, vertex=(0.0, 0.0, 0.0),
        time_ns=1e4, energy_gev=1e5, energy_from="event", llh=0.0, nside=0, rule=config.rule,
        stages=tuple(StagePlan(s.nside, s.refine) for s in config.stages),
        adaptive={"threshold": config.threshold(config.adaptive.level), "margin": config.adaptive.margin,
                  "max_refine": config.adaptive.max_refine},
        resolve={"min_pixels": int(resolve.min_pixels), "max_nside": int(resolve.max_nside)} if resolve else
        {"min_pixels": 0, "max_nside": 0},
        reco=dict(config.reco), disc_deg=180.0, r99_deg=0.0, config_sha256="", event_sha256="",
    )  # fmt: skip


def scan_event(template: SourceTrack, be: Any) -> dict[str, Any]:
    """Scan one simulated event (whole sky, the plan's stages): T, observables, the map, CPU seconds."""
    geo = ic86()
    t0 = time.process_time()
    ra, dec = truth_radec_deg(be.event, be.truth)
    src = replace(template, ra_deg=ra, dec_deg=dec, event_time=be.event.time, run_id=be.event.run_id,
                  event_id=be.event.event_id, disc_deg=180.0)  # fmt: skip
    m, fitted = reconstruct_disc(src, be.event, geo)
    t = dllh2_at(m, ra, dec)
    p = be.event.pulses
    obs = event_observables(p.string, p.om, p.charge)
    return {"index": be.index, "event": be.event, "truth_radec": (ra, dec), "map": m,
            "T": float(t) if math.isfinite(t) else math.inf, "pixels": fitted,
            "energy_gev": be.spec.energy_gev, **obs, "cpu": time.process_time() - t0}  # fmt: skip


def _scan_task(args: tuple[SourceTrack, Any]) -> dict[str, Any]:
    return scan_event(*args)


def _pseudo_task(args: tuple[SourceTrack, int, int, Any]) -> Any:
    src, index, seed, systematics = args
    return run_pseudo(src, index, seed, systematics, ic86())


def _map(pool: Any, fn: Any, tasks: Iterable[Any]) -> Iterator[Any]:
    """fn over tasks in order: in this process (no pool) or over the pool's worker processes."""
    if pool is None:
        return map(fn, tasks)
    out: Iterator[Any] = pool.map(fn, tasks, chunksize=1)
    return out


def _cache_file(cache: Path | None, batch: BatchSpec, template: SourceTrack, index: int) -> Path | None:
    """Where a scanned event is kept between runs: named by the batch's seed and run, the plan's digest, the index."""
    if cache is None:
        return None
    plan = repr((template.stages, template.rule, template.adaptive, template.resolve, sorted(template.reco.items()),
                 batch.systematics, batch.energy_range_gev, batch.directions))  # fmt: skip
    digest = hashlib.sha256(plan.encode("utf-8")).hexdigest()[:16]
    return cache / f"scan-{batch.seed}-{batch.run_id}-{digest}-{index}.pkl"


def scan_campaign(batch: BatchSpec, template: SourceTrack, label: str, pool: Any = None,
                  cache: Path | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Scan every event of a batch; per event T, observables, best fit, CPU time (in event order).

    Every event is simulated from its own stream (seed, index) and scanned deterministically, so the results
    do not depend on how many worker processes share the work. With ``cache`` (``--cache DIR``) each scanned
    event is kept in a file and a re-run reads it back instead of scanning again (its recorded CPU time is the
    original scan's)."""
    out: list[dict[str, Any]] = []
    done: dict[int, dict[str, Any]] = {}
    for index in range(batch.count):
        f = _cache_file(cache, batch, template, index)
        if f is not None and f.is_file():
            done[index] = pickle.loads(f.read_bytes())
    tasks = ((template, be) for be in iter_batch(batch, ic86()) if be.index not in done)
    fresh = _map(pool, _scan_task, tasks)
    for index in range(batch.count):
        if index in done:
            rec = done[index]
        else:
            rec = next(fresh)
            f = _cache_file(cache, batch, template, index)
            if f is not None:
                with atomic_path(f) as tmp:
                    tmp.write_bytes(pickle.dumps(rec))
        out.append(rec)
        print(f"[{label} {len(out)}/{batch.count}] T={rec['T']:.3g} charge={rec['total_charge']:.0f} "
              f"pixels={rec['pixels']} cpu={rec['cpu']:.1f}s", file=sys.stderr, flush=True)  # fmt: skip
    return out


def _record(rec: dict[str, Any]) -> dict[str, Any]:
    """What the output keeps of one scanned event (enough to redo every coverage number)."""
    return {"index": rec["index"], "T": rec["T"] if math.isfinite(rec["T"]) else None,
            "total_charge": rec["total_charge"], "hit_doms": rec["hit_doms"], "energy_gev": rec["energy_gev"],
            "pixels": rec["pixels"], "cpu_seconds": rec["cpu"]}  # fmt: skip


def _fraction(flags: list[bool]) -> dict[str, Any]:
    k, n = sum(flags), len(flags)
    f68, f95 = clopper_pearson(k, n, 0.6827), clopper_pearson(k, n, 0.95)
    return {"k": k, "n": n, "fraction": k / n if n else None, "ci68": [f68.lo, f68.hi], "ci95": [f95.lo, f95.hi]}


def source_of(rec: dict[str, Any], template: SourceTrack) -> SourceTrack:
    """The SourceTrack of a scanned test event, as `skyscan calibrate` reads it from a scan directory."""
    import healpy as hp

    m = rec["map"]
    best = m.best_index
    theta, phi = hp.pix2ang(int(m.nside[best]), int(m.ipix[best]), nest=True)
    ra, dec = float(phi), 0.5 * math.pi - float(theta)
    ev = rec["event"]
    zen, azi = equatorial_to_local(np.array([ra]), np.array([dec]), ev.time)
    r99 = r99_deg(m)
    return replace(
        template, run_id=ev.run_id, event_id=ev.event_id, event_time=ev.time, ra_deg=math.degrees(ra) % 360.0,
        dec_deg=math.degrees(dec), zenith_deg=math.degrees(float(zen[0])), azimuth_deg=math.degrees(float(azi[0])) % 360,
        vertex=(float(m.x[best]), float(m.y[best]), float(m.z[best])), time_ns=float(m.t[best]),
        energy_gev=float(ev.energy_gev or 1e5), llh=float(m.llh[best]), nside=int(m.nside[best]),
        disc_deg=disc_radius_deg(r99), r99_deg=r99,
    )  # fmt: skip


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (the worker processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _pseudo_cache_file(cache: Path | None, src: SourceTrack, index: int, seed: int, systematics: Any) -> Path | None:
    """Where a pseudo-event's result is kept between runs: named by a digest of its source, seed and systematics."""
    if cache is None:
        return None
    digest = hashlib.sha256(repr((src, seed, systematics)).encode("utf-8")).hexdigest()[:16]
    return cache / f"pseudo-{digest}-{index}.pkl"


def resimulate(records: list[dict[str, Any]], template: SourceTrack, n: int, seed: int, systematics: Any,
               pool: Any = None, cache: Path | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Per-event calibration of each record: ``n`` pseudo-events of its best-fit track, seed ``seed + index``.

    Pseudo-event i of an event is the same whatever ``n`` (stream (seed + index, i)); with ``cache`` a re-run
    with a larger ``n`` simulates only the new ones."""
    sources = [source_of(rec, template) for rec in records]
    tasks = [(src, i, seed + rec["index"], systematics) for rec, src in zip(records, sources, strict=True)
             for i in range(n)]  # fmt: skip
    files = [_pseudo_cache_file(cache, *task) for task in tasks]
    done = {j: pickle.loads(f.read_bytes()) for j, f in enumerate(files) if f is not None and f.is_file()}
    fresh = _map(pool, _pseudo_task, [task for j, task in enumerate(tasks) if j not in done])
    results = []
    for j, f in enumerate(files):
        if j in done:
            results.append(done[j])
            continue
        results.append(next(fresh))
        if f is not None:
            with atomic_path(f) as tmp:
                tmp.write_bytes(pickle.dumps(results[-1]))
    resim: list[dict[str, Any]] = []
    for j, (rec, src) in enumerate(zip(records, sources, strict=True)):
        mine = results[j * n:(j + 1) * n]
        t_values = [math.inf if r.dllh2 is None else r.dllh2 for r in mine]
        cpu = sum(r.cpu_seconds for r in mine)
        try:
            levels = {label: lv.level for label, lv in product_levels(t_values).items()}
        except InputError as exc:  # a level out of reach (too many failed truths): recorded, not fatal
            print(f"resimulation of event {rec['index']}: {exc}", file=sys.stderr)
            resim.append({"index": rec["index"], "T": rec["T"], "levels": None, "error": str(exc),
                          "cpu_seconds": cpu, "disc_deg": src.disc_deg})  # fmt: skip
            continue
        resim.append({"index": rec["index"], "T": rec["T"], "levels": levels, "cpu_seconds": cpu,
                      "disc_deg": src.disc_deg, "in50": rec["T"] <= levels["50"], "in90": rec["T"] <= levels["90"],
                      "wilks_in50": rec["T"] <= LEVELS["wilks"]["50"], "wilks_in90": rec["T"] <= LEVELS["wilks"]["90"],
                      "pseudo_T": [r.dllh2 for r in mine]})  # fmt: skip
        print(f"[resim {j + 1}/{len(records)}] event {rec['index']}: levels {levels} T={rec['T']:.3g} "
              f"cpu={cpu:.1f}s", file=sys.stderr, flush=True)  # fmt: skip
    return resim


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small campaigns and a coarse plan (minutes)")
    parser.add_argument("--n-test", type=int, help="test campaign events (default 100; quick 30)")
    parser.add_argument("--n-cal", type=int, help="calibration campaign events (default 300; quick 40)")
    parser.add_argument("--resim-events", type=int, help="test events resimulated one by one (default 10; quick 3)")
    parser.add_argument("--resim-n", type=int, help="pseudo-events per resimulation (default 30; quick 10)")
    parser.add_argument("--min-per-bin", type=int, help="table: fewest events per bin (default 60; quick 20)")
    parser.add_argument("--config", help="scan configuration YAML (default: the built-in stages without resolving "
                        "stages; quick: a coarse plan)")
    parser.add_argument("--test-seed", type=int, default=101)
    parser.add_argument("--cal-seed", type=int, default=202)
    parser.add_argument("--resim-seed", type=int, default=303)
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes over events and pseudo-events (default 1; results do not depend on it)")
    parser.add_argument("--cache", help="folder keeping every scanned event, so a re-run scans only new events")
    parser.add_argument("-o", "--output", default="calibration-benchmark.json")
    args = parser.parse_args(argv)
    q = args.quick
    n_test = args.n_test or (30 if q else 100)
    n_cal = args.n_cal or (40 if q else 300)
    resim_events = args.resim_events if args.resim_events is not None else (3 if q else 10)
    resim_n = args.resim_n or (10 if q else 30)
    min_per_bin = args.min_per_bin or (20 if q else 60)
    config = load_config(args.config, None if args.config else QUICK_PLAN if q else FULL_PLAN)
    template = _template(config)
    iers_cache.install()
    systematics = load_systematics("default")
    common = {"energy_range_gev": (1e4, 1e6), "directions": "upgoing", "systematics": systematics}
    if args.jobs < 1:
        parser.error(f"--jobs: at least 1, got {args.jobs}")
    t_start = time.time()
    cpu_start = _cpu_seconds()
    cache = Path(args.cache) if args.cache else None
    pool = None
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("fork"))
    try:
        cal = scan_campaign(BatchSpec(count=n_cal, seed=args.cal_seed, run_id=2, **common), template, "cal", pool, cache)
        table = table_document([(r["total_charge"], r["T"]) for r in cal], "total_charge", min_per_bin, 5)
        # The table goes through a file and the products' own lookup (containment: {table: FILE}).
        table_path = Path(args.output).with_suffix(".table.json")
        write_json(table_path, {**table, "created": utcnow()})
        test = scan_campaign(BatchSpec(count=n_test, seed=args.test_seed, run_id=1, **common), template, "test", pool, cache)
        resim = resimulate(test[:resim_events], template, resim_n, args.resim_seed, systematics, pool, cache)
    finally:
        if pool is not None:
            pool.shutdown()

    def table_levels(rec: dict[str, Any]) -> dict[str, float]:
        ev = rec["event"]
        context = LevelContext(int(ev.run_id), int(ev.event_id), {k: rec[k] for k in ("total_charge", "hit_doms")})
        return choose_levels({"table": str(table_path)}, context).levels

    coverage: dict[str, Any] = {}
    looked_up = [table_levels(r) for r in test]
    for label, p in (("50", 0.5), ("90", 0.9)):
        wilks = _fraction([r["T"] <= LEVELS["wilks"][label] for r in test])
        cal_cov = _fraction([r["T"] <= lv[label] for r, lv in zip(test, looked_up, strict=True)])
        coverage[label] = {"nominal": p, "wilks": wilks, "table": cal_cov,
                           "nominal_in_table_ci95": cal_cov["ci95"][0] <= p <= cal_cov["ci95"][1]}  # fmt: skip

    ok = [r for r in resim if r["levels"] is not None]
    doc = {
        "command": " ".join(["python", "benchmarks/calibration.py", *(argv if argv is not None else sys.argv[1:])]),
        "quick": q,
        "plan": {"stages": [{"nside": s.nside, "refine": s.refine} for s in template.stages], "rule": template.rule,
                 "resolve": template.resolve, "reco": template.reco},
        "seeds": {"test": args.test_seed, "calibration": args.cal_seed, "resimulation": args.resim_seed},
        "systematics": systematics.to_dict(),
        "n_test": n_test,
        "n_cal": n_cal,
        "table": {k: table[k] for k in ("observable", "n", "min_per_bin")} | {
            "bins": [{k: b[k] for k in ("lo", "hi", "n", "levels")} for b in table["bins"]]},
        "calibration_campaign_wilks": table["wilks"],
        "coverage": coverage,
        "resimulation": {
            "events": resim,
            "n_pseudo_events": resim_n,
            "failed": [r["index"] for r in resim if r["levels"] is None],
            "in90": _fraction([r["in90"] for r in ok]),
            "in50": _fraction([r["in50"] for r in ok]),
            "wilks_in90": _fraction([r["wilks_in90"] for r in ok]),
            "wilks_in50": _fraction([r["wilks_in50"] for r in ok]),
            "cpu_seconds_per_calibration": float(np.mean([r["cpu_seconds"] for r in resim])) if resim else None,
            "cpu_seconds_per_pseudo_event": (float(np.sum([r["cpu_seconds"] for r in resim])) / (resim_n * len(resim))
                                             if resim else None),
            "disc_rule": f"max({MIN_DISC_DEG} deg, {DISC_FACTOR} x Wilks-99% radius)",
        },
        "cpu_seconds_per_scan": float(np.mean([r["cpu"] for r in test + cal])),
        "wall_seconds": time.time() - t_start,
        "cpu_seconds_total": _cpu_seconds() - cpu_start,
        "jobs": args.jobs,
        "load_average": list(os.getloadavg()),
        "test_events": [_record(r) | {"table_levels": lv} for r, lv in zip(test, looked_up, strict=True)],
        "calibration_events": [_record(r) for r in cal],
    }
    write_json(Path(args.output), json.loads(json.dumps(doc, default=str)))
    for label in ("50", "90"):
        c = coverage[label]
        w, t = c["wilks"], c["table"]
        print(f"{label}%: Wilks {w['k']}/{w['n']} = {w['fraction']:.3f} (95% {w['ci95'][0]:.3f}-{w['ci95'][1]:.3f}); "
              f"table {t['k']}/{t['n']} = {t['fraction']:.3f} (95% {t['ci95'][0]:.3f}-{t['ci95'][1]:.3f})")  # fmt: skip
    r = doc["resimulation"]
    if ok:
        print(f"resimulation on {len(ok)} events ({resim_n} pseudo-events each): in own 90% "
              f"{r['in90']['k']}/{r['in90']['n']}, in own 50% {r['in50']['k']}/{r['in50']['n']}, Wilks 90% "
              f"{r['wilks_in90']['k']}/{r['wilks_in90']['n']}; {r['cpu_seconds_per_calibration']:.1f} CPU-s per "
              "calibration")  # fmt: skip
    print(f"table bins: {[(round(b['lo']), round(b['hi']), b['n'], b['levels']) for b in table['bins']]}")
    print(f"wrote {args.output} ({doc['wall_seconds']:.0f} s wall, {doc['cpu_seconds_per_scan']:.1f} CPU-s per scan)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
