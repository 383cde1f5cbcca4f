"""The scan node: reconstruct one batch of HEALPix pixels and write the result atomically.

The result file's format is ``skyscan.nodes.results``'s; this module only computes what goes into it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from skyscan import iers_cache
from skyscan.errors import InputError
from skyscan.graph.event import load_event
from skyscan.nodes.results import BatchResult, ResultProvenance, is_complete
from skyscan.nodes.results import write_result as write_result_file
from skyscan.reco import coords, untrusted
from skyscan.reco.fit import FitTable, make_reconstruction
from skyscan.reco.healpix import nside_to_npix
from skyscan.reco.settings import RecoSettings
from skyscan.settings.scan import is_valid_nside

DEFAULT_RECONSTRUCTION = "pandel-track"

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_pixel_spec(spec: str, nside: int) -> npt.NDArray[np.int64]:
    """NESTED indices from a file (one per line, or whitespace/comma separated) or `0-767` / `1,5,9`.

    Untrusted text: every problem (a non-UTF-8 file, a 5,000-digit index, a name too long for the file
    system, a range of more pixels than the sky has) is one InputError.
    """
    with untrusted.guarded("--pixels"):
        return _parse_pixel_spec(spec, nside)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, or with a NUL: not a file
        return False


def _pixel_index(text: str, where: str, npix: int) -> int:
    if not text.isascii() or not text.isdigit():
        raise InputError(f"{where}: not a pixel index: {untrusted.shown(text)}")
    if len(text.lstrip("0")) > 20:
        raise InputError(f"{where}: pixel {untrusted.shown(text)} out of range (0..{npix - 1})")
    return int(text)


def _parse_pixel_spec(spec: str, nside: int) -> npt.NDArray[np.int64]:
    npix = nside_to_npix(nside)
    path = Path(spec)
    if _is_file(path):
        text = untrusted.read_text(path, "pixel file")
        tokens = [t for line in text.splitlines() for t in re.split(r"[\s,]+", line.split("#", 1)[0]) if t]
        where = str(path)
        values: list[int] = [_pixel_index(tok, where, npix) for tok in tokens]
    else:
        if os.sep in spec or spec.endswith(".txt"):
            raise InputError(f"{untrusted.shown(spec)[1:-1]}: no such pixel file")
        where = "--pixels"
        values = []
        for part in spec.split(","):
            m = _RANGE.match(part)
            if not m:
                raise InputError(f"--pixels: cannot read {untrusted.shown(part)} (use a file, a range like 0-767 "
                                 "or a list 1,5,9)")
            lo = _pixel_index(m.group(1), where, npix)
            hi = _pixel_index(m.group(2), where, npix) if m.group(2) is not None else lo
            if hi < lo:
                raise InputError(f"--pixels: empty range {part!r}")
            if hi >= npix:
                raise InputError(f"{where}: pixel {hi} out of range for nside {nside} (0..{npix - 1})")
            values.extend(range(lo, hi + 1))
            if len(values) > npix:
                raise InputError(f"{where}: more pixels than the {npix} of the sky at nside {nside}")
    if not values:
        raise InputError(f"{where}: no pixels given")
    big = [v for v in values if v >= npix]
    if big:
        raise InputError(f"{where}: pixel {big[0]} out of range for nside {nside} (0..{npix - 1})")
    arr = np.asarray(values, dtype=np.int64)
    return np.unique(arr)


def check_nside_option(nside: int) -> None:
    """``--nside``: the configuration's rule (a power of two up to 2**29), in the option's own words."""
    if not is_valid_nside(nside):
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
    check_nside_option(nside)
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
    """The scan node's result file (``skyscan.nodes.results.write_result``), stamped with the time it was written."""
    fits = BatchResult(
        nside=nside,
        ipix=ipix,
        llh=table.llh,
        x=table.x,
        y=table.y,
        z=table.z,
        t=table.t,
        status=table.status,
        seconds=table.seconds,
        evaluations=table.evaluations,
    )
    provenance = ResultProvenance(run_id, event_id, digest, reconstruction, created=ResultProvenance.now())
    write_result_file(out, fits, provenance)
