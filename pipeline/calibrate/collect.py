"""The batch node's work and the collect node's: batch files of pseudo-events, then calibration.json.

calibration.json (schema ``skyscan-calibration/1``, docs/containment.md): the levels {"50", "90"}, N, the binomial
68% interval of each coverage, the coverage Wilks' levels would have had on the same pseudo-events, the
systematics, the seeds, the software version, the configuration digest and the source scan.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from skyscan.atomic import write_json
from skyscan.calibrate.dag import (
    BATCH_SCHEMA,
    CALIBRATION_FILE,
    Request,
    batch_file,
    read_request,
)
from skyscan.calibrate.find import coverage_at, level_curve, product_levels
from skyscan.calibrate.pseudo import PseudoResult, load_systematics, run_pseudo
from skyscan.campaign.report.stats import CI_LEVEL, clopper_pearson
from skyscan.errors import InputError
from skyscan.products.levels import CALIBRATION_SCHEMA, LEVELS
from skyscan.timestamps import utcnow


def _read_batch(path: Path, digest: str) -> list[dict[str, Any]] | None:
    """The pseudo-events of a batch file written for this request, None if absent or from another request."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("schema") != BATCH_SCHEMA or doc.get("request_sha256") != digest:
        return None
    events = doc.get("pseudo_events")
    return events if isinstance(events, list) else None


def run_batch(caldir: str | os.PathLike[str], batch: int) -> Path:
    """Simulate and reconstruct the pseudo-events of batch ``batch``; a file already written is kept."""
    from skyscan import iers_cache
    from skyscan.graph.event import load_geometry

    folder = Path(caldir)
    request = read_request(folder)
    if not 0 <= batch < request.n_batches:
        raise InputError(f"batch {batch}: out of range (0..{request.n_batches - 1})")
    path = batch_file(folder, batch)
    if _read_batch(path, request.digest) is not None:
        return path
    iers_cache.install()
    systematics = load_systematics(request.systematics)
    geometry = load_geometry(None, request.source.geometry)
    results = [run_pseudo(request.source, i, request.seed, systematics, geometry).as_dict()
               for i in request.batch_indices(batch)]  # fmt: skip
    write_json(path, {"schema": BATCH_SCHEMA, "request_sha256": request.digest, "batch": batch,
                      "pseudo_events": results})  # fmt: skip
    return path


def _results(folder: Path, request: Request) -> list[PseudoResult]:
    out: list[PseudoResult] = []
    for b in range(request.n_batches):
        events = _read_batch(batch_file(folder, b), request.digest)
        if events is None:
            raise InputError(f"{batch_file(folder, b)}: missing or from another request (run the batch first)")
        out.extend(PseudoResult(**e) for e in events)
    return out


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def calibration_document(request: Request, results: list[PseudoResult]) -> dict[str, Any]:
    """calibration.json's content (see the module docstring); pure."""
    from skyscan.version import __version__, git_revision

    values = [math.inf if r.dllh2 is None else r.dllh2 for r in results]
    levels = product_levels(values)
    src = request.source
    wilks = {}
    for label, level in LEVELS["wilks"].items():
        k, n = coverage_at(values, level)
        f = clopper_pearson(k, n, CI_LEVEL)
        wilks[label] = {"level_2dllh": level, "k": k, "n": n, "coverage": k / n if n else None,
                        "coverage_interval_68": [f.lo, f.hi]}  # fmt: skip
    edge = [r.edge_dllh2 for r in results]
    too_small = sum(1 for e in edge if e is not None and e < levels["90"].level)
    cpu = sum(r.cpu_seconds for r in results)
    scandir = str(Path(src.scandir).absolute())
    return {
        "schema": CALIBRATION_SCHEMA,
        "created": utcnow(),
        "levels": {label: lv.level for label, lv in levels.items()},
        "n": len(results),
        "coverage": {label: lv.as_dict() for label, lv in levels.items()},
        "interval": f"central {CI_LEVEL:.2%}: Clopper-Pearson for coverages, order statistics for levels",
        "curve": level_curve(values),
        "wilks": wilks,
        "systematics": request.systematics_record,
        "systematics_spec": request.systematics,
        "seeds": {"seed": request.seed, "streams": f"numpy default_rng([{request.seed}, i]) for i in 0..{request.n - 1}"},
        "software": {"version": __version__, "git_revision": git_revision()},
        "config_sha256": src.config_sha256,
        "request_sha256": request.digest,
        "source": {
            "run_id": src.run_id,
            "event_id": src.event_id,
            "event_time": src.as_dict()["event_time"],
            "stream": src.stream,
            "path": src.scandir,
            "path_sha256": _sha(scandir),
            "event_sha256": src.event_sha256,
            "best_fit": {"ra_deg": src.ra_deg, "dec_deg": src.dec_deg, "zenith_deg": src.zenith_deg,
                         "azimuth_deg": src.azimuth_deg, "vertex_m": list(src.vertex), "time_ns": src.time_ns,
                         "nside": src.nside, "llh": src.llh},
            "energy_gev": src.energy_gev,
            "energy_from": src.energy_from,
        },
        "disc": {
            "radius_deg": src.disc_deg,
            "wilks99_radius_deg": src.r99_deg,
            "stages": [{"nside": s.nside, "refine": s.refine} for s in src.stages],
            "rule": src.rule,
            "resolve": dict(src.resolve),
            "too_small": too_small,
        },
        "cost": {
            "cpu_seconds": cpu,
            "cpu_seconds_per_pseudo_event": cpu / len(results) if results else None,
            "pixels_per_pseudo_event": sum(r.pixels for r in results) / len(results) if results else None,
        },
        "pseudo_events": [r.as_dict() for r in results],
    }


def collect(caldir: str | os.PathLike[str]) -> Path:
    """Read every batch file and write CALDIR/calibration.json (atomically)."""
    folder = Path(caldir)
    request = read_request(folder)
    doc = calibration_document(request, _results(folder, request))
    path = folder / CALIBRATION_FILE
    write_json(path, doc)
    return path


__all__ = ["calibration_document", "collect", "run_batch"]
