"""Synthetic scans for tests, benchmarks and demonstrations: a paraboloid -ln L in the scan-node formats.

:func:`write_synthetic_scan` writes a scan directory (event.json, config.yaml, batch and result files) as the scan
nodes would, so the merge and everything after it can run without reconstructing anything. healpy is imported
inside the functions.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from skyscan.graph.layout import ScanLayout
from skyscan.nodes.results import BatchResult, ResultProvenance, write_batch, write_result


def paraboloid_llh(
    nside: int, ipix: npt.ArrayLike, centre_radec: tuple[float, float], sigma_deg: float, floor: float = 100.0
) -> npt.NDArray[np.float64]:
    """-ln L = floor + d^2 / (2 sigma^2) at NESTED pixel centres, d the angular distance to the centre (degrees).

    Then 2*delta-llh = (d / sigma)^2, so the Wilks 90% region is a disc of radius sqrt(4.61) sigma around the centre.
    """
    import healpy as hp

    theta, phi = hp.pix2ang(nside, np.asarray(ipix, dtype=np.int64), nest=True)
    v = np.asarray(hp.ang2vec(theta, phi))
    c = hp.ang2vec(math.radians(90.0 - centre_radec[1]), math.radians(centre_radec[0]))
    d = np.degrees(np.arccos(np.clip(v @ c, -1.0, 1.0)))
    return np.asarray(floor + 0.5 * (d / sigma_deg) ** 2, dtype=np.float64)


def write_result_file(
    path: Path, nside: int, ipix: npt.ArrayLike, llh: npt.ArrayLike, run_id: int, event_id: int
) -> None:
    """A result file in the scan-node contract format (x, y, z, t are dummy values)."""
    pix = np.asarray(ipix, dtype=np.int64)
    values = np.asarray(llh, dtype=np.float64)
    n = pix.size
    x, y, z, t = (np.full(n, float(i)) for i in range(4))
    fits = BatchResult(
        nside=nside,
        ipix=pix,
        llh=values,
        x=x,
        y=y,
        z=z,
        t=t,
        status=np.where(np.isfinite(values), 0, 1).astype(np.int32),
        seconds=np.full(n, 0.5),
    )
    write_result(path, fits, ResultProvenance(run_id, event_id, config_digest="synthetic"))


def refine_plan(
    centre_radec: tuple[float, float], plan: Sequence[tuple[int, int]]
) -> list[tuple[int, npt.NDArray[np.int64]]]:
    """(nside, NESTED pixels) per stage: stage 0 is the whole sky; stage k re-scans, at its nside, every child of
    the `count` pixels of stage k-1 closest to the centre. `plan` is [(nside, count of parents to refine), ...]."""
    import healpy as hp

    stages: list[tuple[int, npt.NDArray[np.int64]]] = []
    c = hp.ang2vec(math.radians(90.0 - centre_radec[1]), math.radians(centre_radec[0]))
    nside0 = plan[0][0]
    stages.append((nside0, np.arange(12 * nside0 * nside0, dtype=np.int64)))
    for nside, count in plan[1:]:
        prev_nside, prev_pix = stages[-1]
        v = np.asarray(hp.pix2vec(prev_nside, prev_pix, nest=True)).T
        closest = prev_pix[np.argsort(-(v @ c), kind="stable")[:count]]
        factor = (nside // prev_nside) ** 2
        children = (closest[:, None] * factor + np.arange(factor)[None, :]).reshape(-1)
        stages.append((nside, np.sort(children)))
    return stages


def write_synthetic_scan(
    outdir: str | os.PathLike[str],
    centre_radec: tuple[float, float] = (77.36, 5.69),
    sigma_deg: float = 1.0,
    plan: Sequence[tuple[int, int]] = ((8, 0), (64, 12), (512, 24)),
    batch_size: int = 768,
    run_id: int = 12,
    event_id: int = 345,
    event_time: str = "2026-03-14T15:09:26.123456Z",
    stream: str | None = "gold",
    config_text: str = "containment: wilks\nmerge:\n  flat_nside: auto\n",
    failed: Mapping[int, Sequence[int]] | None = None,
) -> Path:
    """A scan directory with a paraboloid llh in the scan-node contract format (event.json, config.yaml, batches).

    The default plan is the default scan's shape: 768 pixels at nside 8, then the 12 best refined to nside 64
    (768 pixels), then the 24 best of those to nside 512 (1536 pixels). `failed` maps a stage to indices (into
    that stage's pixel list) whose fit is marked failed (NaN).
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    event = {
        "schema": "skyscan-event/1",
        "run_id": run_id,
        "event_id": event_id,
        "time": event_time,
        "pulses": {"string": [36], "om": [30], "time": [10000.0], "charge": [1.0]},
    }
    if stream is not None:
        event["stream"] = stream
    layout = ScanLayout(out)
    layout.event.write_text(json.dumps(event), encoding="utf-8")
    layout.config.write_text(config_text, encoding="utf-8")
    for k, (nside, pix) in enumerate(refine_plan(centre_radec, plan)):
        llh = paraboloid_llh(nside, pix, centre_radec, sigma_deg)
        if failed and k in failed:
            llh[np.asarray(list(failed[k]), dtype=np.int64)] = np.nan
        layout.stage_dir(k).mkdir(exist_ok=True)
        for b, start in enumerate(range(0, pix.size, batch_size)):
            chunk = slice(start, start + batch_size)
            write_batch(layout.batch_file(k, b), pix[chunk])
            write_result_file(layout.result_file(k, b), nside, pix[chunk], llh[chunk], run_id, event_id)
    return out


__all__ = ["paraboloid_llh", "refine_plan", "write_result_file", "write_synthetic_scan"]
