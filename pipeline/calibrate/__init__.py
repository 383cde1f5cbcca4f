"""Calibrated containment: resimulation of one scan (``calibrate_scan``) and tables from campaigns (``table``).

``calibrate_scan`` takes a finished scan's best-fit track, writes a calibration directory whose graph simulates N
pseudo-events with the simulator's systematics varied and reconstructs each over a disc around its own true
direction (``pseudo``), then collects the 2*delta-llh of the truths into the levels that contain them 50% and 90%
of the time (``find``, ``collect``): calibration.json, which ``skyscan merge --containment`` accepts. The graph
runs with the local executor or on HTCondor (``--submit``) and resumes. docs/containment.md describes the method.
"""

from __future__ import annotations

import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from skyscan.errors import InputError

Backend = Literal["local", "condor"]


@dataclass(frozen=True)
class CalibrationRun:
    """What ``calibrate_scan`` did: the calibration directory, calibration.json once written, the cluster id."""

    caldir: Path
    calibration: Path | None
    cluster: int | None
    ok: bool
    failed: tuple[str, ...] = ()


def default_seed(run_id: int, event_id: int) -> int:
    """The seed of a calibration when none is given: fixed by the event, so a re-run resumes the same work."""
    return zlib.crc32(f"skyscan-calibrate {run_id} {event_id}".encode()) & 0x7FFFFFFF


def _systematics_spec(spec: str) -> str:
    text = spec.strip()
    if text in ("none", "default"):
        return text
    path = Path(text)
    if not path.is_file():
        raise InputError(f"--systematics {spec}: use none, default or a YAML file (no such file)")
    return str(path.absolute())


def calibrate_scan(
    scandir: str | os.PathLike[str],
    caldir: str | os.PathLike[str] | None = None,
    n: int = 100,
    systematics: str = "default",
    seed: int | None = None,
    backend: Backend = "local",
    *,
    batch_size: int | None = None,
    disc_deg: float | None = None,
    jobs: int | None = None,
    site: str = "local",
    stream: IO[str] | None = None,
) -> CalibrationRun:
    """Calibrate the containment levels of the finished scan in ``scandir`` (see the package docstring).

    ``caldir`` defaults to SCANDIR/calibration. ``backend`` "local" runs the graph here and returns once
    calibration.json is written (or a node failed); "condor" submits it to HTCondor and returns the cluster id.
    Running again with the same arguments resumes; a CALDIR holding a different request is refused.
    This is the function the watcher calls for automatic calibration.
    """
    from skyscan.calibrate.dag import (
        CALIBRATION_DAG,
        CALIBRATION_FILE,
        DEFAULT_BATCH_SIZE,
        Request,
        node_environment,
        write_caldir,
    )
    from skyscan.calibrate.pseudo import systematics_record
    from skyscan.calibrate.source import read_source
    from skyscan.version import __version__

    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise InputError(f"--n: need at least 2 pseudo-events, got {n!r}")
    size = batch_size if batch_size is not None else min(DEFAULT_BATCH_SIZE, n)
    if size < 1:
        raise InputError(f"--batch-size: must be at least 1, got {size}")
    if backend not in ("local", "condor"):
        raise InputError(f"backend: local or condor, got {backend!r}")
    spec = _systematics_spec(systematics)
    record = systematics_record(spec)
    source = read_source(scandir, disc_deg)
    folder = Path(caldir) if caldir is not None else Path(scandir) / "calibration"
    request = Request(
        source=source,
        n=n,
        batch_size=size,
        seed=seed if seed is not None else default_seed(source.run_id, source.event_id),
        systematics=spec,
        systematics_record=record,
        software_version=__version__,
        site=site,
    )
    if request.seed < 0:
        raise InputError(f"--seed: must be >= 0, got {request.seed}")
    write_caldir(folder, request)
    env = node_environment(site)
    if backend == "condor":
        from skyscan.condor.schedd import submit_dag

        name = f"calibrate-{source.run_id}-{source.event_id}"
        cluster = submit_dag(folder.absolute(), CALIBRATION_DAG, name, env)
        return CalibrationRun(folder, None, cluster, True)
    from skyscan.local.events import LogObserver
    from skyscan.local.scheduler import run_dag

    os.environ.update(env)
    result = run_dag(folder / CALIBRATION_DAG, jobs=jobs, observer=LogObserver(stream or sys.stderr))
    out = folder / CALIBRATION_FILE
    return CalibrationRun(folder, out if result.ok and out.is_file() else None, None, result.ok, result.failed)


__all__ = ["Backend", "CalibrationRun", "calibrate_scan", "default_seed"]
