"""The scan node: reconstruct one batch of HEALPix pixels and write the result atomically."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from skyscan import iers_cache
from skyscan.atomic import atomic_path
from skyscan.errors import InputError
from skyscan.reco import coords
from skyscan.reco.event import EventFile, read_event
from skyscan.reco.fit import FitTable, make_reconstruction
from skyscan.reco.geometry import Geometry, builtin, read_csv
from skyscan.reco.healpix import nside_to_npix
from skyscan.reco.settings import RecoSettings
from skyscan.version import __version__

RESULT_DATASETS = ("nside", "ipix", "llh", "x", "y", "z", "t", "status", "seconds")
DEFAULT_RECONSTRUCTION = "pandel-track"

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def load_geometry(name_or_path: str | None, event_geometry: str = "ic86") -> Geometry:
    """A geometry file if given, else the event's built-in geometry."""
    if name_or_path:
        if name_or_path in ("ic86",):
            return builtin(name_or_path)
        return read_csv(name_or_path)
    return builtin(event_geometry)


def load_event(path: str | os.PathLike[str], geometry_arg: str | None = None) -> tuple[EventFile, Geometry]:
    """Read an event and its geometry, checking every pulse's DOM exists."""
    ef = read_event(path)
    geo = load_geometry(geometry_arg, ef.event.geometry)
    from skyscan.reco.event import check_doms

    try:
        check_doms(ef.event.pulses, geo.keys)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    return ef, geo


def parse_pixel_spec(spec: str, nside: int) -> npt.NDArray[np.int64]:
    """NESTED indices from a file (one per line, or whitespace/comma separated) or `0-767` / `1,5,9`."""
    npix = nside_to_npix(nside)
    path = Path(spec)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        tokens = [t for line in text.splitlines() for t in re.split(r"[\s,]+", line.split("#", 1)[0]) if t]
        where = str(path)
        values: list[int] = []
        for tok in tokens:
            if not tok.isdigit():
                raise InputError(f"{where}: not a pixel index: {tok!r}")
            values.append(int(tok))
    else:
        if os.sep in spec or spec.endswith(".txt"):
            raise InputError(f"{spec}: no such pixel file")
        where = "--pixels"
        values = []
        for part in spec.split(","):
            m = _RANGE.match(part)
            if not m:
                raise InputError(f"--pixels: cannot read {part!r} (use a file, a range like 0-767 or a list 1,5,9)")
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) is not None else lo
            if hi < lo:
                raise InputError(f"--pixels: empty range {part!r}")
            values.extend(range(lo, hi + 1))
    if not values:
        raise InputError(f"{where}: no pixels given")
    arr = np.asarray(values, dtype=np.int64)
    bad = arr[(arr < 0) | (arr >= npix)]
    if bad.size:
        raise InputError(f"{where}: pixel {int(bad[0])} out of range for nside {nside} (0..{npix - 1})")
    return np.unique(arr)


def check_nside(nside: int) -> None:
    if nside < 1 or nside > 2**29 or (nside & (nside - 1)) != 0:
        raise InputError(f"--nside: must be a power of two, got {nside}")


def config_digest(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ScanOutcome:
    path: Path
    n_pixels: int
    n_failed: int
    seconds: float
    skipped: bool


def is_complete(path: Path) -> bool:
    """A result file written to the end (written atomically, so existence mostly suffices)."""
    try:
        with h5py.File(path, "r") as f:
            return all(name in f for name in RESULT_DATASETS) and bool(f.attrs.get("complete", False))
    except (OSError, KeyError):
        return False


def run_scan_node(
    event_path: str | os.PathLike[str],
    nside: int,
    pixel_spec: str,
    out: str | os.PathLike[str],
    *,
    settings: RecoSettings | None = None,
    config_doc: Any = None,
    geometry_arg: str | None = None,
    reconstruction: str = DEFAULT_RECONSTRUCTION,
) -> ScanOutcome:
    """Reconstruct the pixels and write ``out`` (nothing is written if the input is bad)."""
    out_path = Path(out)
    check_nside(nside)
    ef, geo = load_event(event_path, geometry_arg)
    ipix = parse_pixel_spec(pixel_spec, nside)
    if out_path.exists() and is_complete(out_path):
        return ScanOutcome(out_path, int(ipix.size), 0, 0.0, skipped=True)
    settings = settings or RecoSettings()
    event = ef.event
    t_start = time.perf_counter()
    iers_cache.install()
    zen, azi = coords.pixel_directions(nside, ipix, event.time)
    reco = make_reconstruction(reconstruction, event, geo, settings)
    table = reco.fit_directions(zen, azi)
    elapsed = time.perf_counter() - t_start
    write_result(
        out_path,
        nside,
        ipix,
        table,
        event.run_id,
        event.event_id,
        config_digest(config_doc or settings.to_mapping()),
        reconstruction,
    )
    return ScanOutcome(out_path, int(ipix.size), int(np.count_nonzero(table.status != 0)), elapsed, skipped=False)


def write_result(
    out: Path,
    nside: int,
    ipix: npt.NDArray[np.int64],
    table: FitTable,
    run_id: int,
    event_id: int,
    digest: str,
    reconstruction: str,
) -> None:
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("nside", data=np.int64(nside))
            f.create_dataset("ipix", data=ipix.astype(np.int64))
            for name in ("llh", "x", "y", "z", "t", "seconds"):
                f.create_dataset(name, data=getattr(table, name).astype(np.float64))
            f.create_dataset("status", data=table.status.astype(np.int32))
            f.create_dataset("evaluations", data=table.evaluations.astype(np.int32))
            f.attrs["run_id"] = run_id
            f.attrs["event_id"] = event_id
            f.attrs["software_version"] = __version__
            f.attrs["config_digest"] = digest
            f.attrs["reconstruction"] = reconstruction
            f.attrs["ordering"] = "NESTED"
            f.attrs["coordinates"] = "equatorial J2000 (theta = 90 deg - Dec, phi = RA)"
            f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            f.attrs["complete"] = True
