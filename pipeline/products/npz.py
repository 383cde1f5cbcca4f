"""Import of IceCube Skymap Scanner results saved in the `skyreader` .npz layout.

Such a file holds one structured array per scanned nside under the key ``"nside-N"``, with fields ``index``
(HEALPix **RING** index, equatorial, theta = 90 deg - Dec, phi = RA), ``llh`` (-ln L), ``E_in``, ``E_tot`` and,
in newer files, the fitted vertex ``X, Y, Z, T``. An optional ``header`` array has one row per nside with
``run_id``, ``event_id``, ``mjd``, ``event_type`` and ``nside`` (and, in newer files, ``is_real_event`` and
``version``; a file that says it is not a real event is drafted as a simulation). skyscan works in NESTED indices, so every index
is converted RING -> NESTED on import. Anything malformed is an InputError naming the file and the problem.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from skyscan.errors import InputError
from skyscan.products.meta import StageRecord
from skyscan.products.moc import StageResult, order_of_nside

FloatArray = npt.NDArray[np.float64]

_KEY = re.compile(r"^nside-(\d+)$")
_VERTEX = {"X": "x", "Y": "y", "Z": "z", "T": "t"}
_MAX_NSIDE = 1 << 16  # far beyond any scan; guards against absurd keys before allocating anything


@dataclass
class ImportedScan:
    """An imported scan: merge inputs (NESTED) and raw records, plus whatever event metadata the file holds."""

    stages: list[StageResult]
    records: list[StageRecord]
    run_id: int | None = None
    event_id: int | None = None
    event_time: datetime | None = None
    event_type: str | None = None
    is_real_event: bool | None = None  # None: the header does not say
    notes: list[str] = field(default_factory=list)


def mjd_to_datetime(mjd: float) -> datetime:
    """UTC datetime of a modified Julian date."""
    from astropy.time import Time  # imported here: slow to import, and only an imported file's time needs it

    t: datetime = Time(float(mjd), format="mjd", scale="utc").to_datetime()
    return t.replace(tzinfo=timezone.utc)


def _field(arr: np.ndarray, name: str, where: str) -> FloatArray:
    try:
        values = np.asarray(arr[name], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: field {name!r} is not numeric") from None
    return values.reshape(-1)


def _read_nside(key: str, arr: Any, where: str) -> tuple[StageResult, StageRecord]:
    nside = int(_KEY.match(key).group(1))  # type: ignore[union-attr]  # caller matched the key
    if nside < 1 or nside > _MAX_NSIDE or (nside & (nside - 1)):
        raise InputError(f"{where}: key {key!r}: nside must be a power of two")
    order_of_nside(nside)
    if not isinstance(arr, np.ndarray) or arr.dtype.names is None:
        raise InputError(f"{where}: {key!r} is not a structured array with fields index and llh")
    names = set(arr.dtype.names)
    for required in ("index", "llh"):
        if required not in names:
            raise InputError(f"{where}: {key!r} has no field {required!r} (fields: {', '.join(arr.dtype.names)})")
    if arr.size == 0:
        raise InputError(f"{where}: {key!r} holds no pixels")
    index_f = _field(arr, "index", f"{where}: {key!r}")
    if not np.all(np.isfinite(index_f)) or np.any(index_f != np.round(index_f)):
        raise InputError(f"{where}: {key!r}: pixel indices must be integers")
    ring = index_f.astype(np.int64)
    npix = 12 * nside * nside
    bad = ring[(ring < 0) | (ring >= npix)]
    if bad.size:
        raise InputError(f"{where}: {key!r}: pixel index {int(bad[0])} out of range for nside {nside} (0..{npix - 1})")
    uniq_ring, counts = np.unique(ring, return_counts=True)
    if np.any(counts > 1):
        raise InputError(f"{where}: {key!r}: pixel index {int(uniq_ring[counts > 1][0])} appears more than once")
    from skyscan.products.healpix import healpy

    hp = healpy()
    nest = np.asarray(hp.ring2nest(nside, ring), dtype=np.int64)
    llh = _field(arr, "llh", f"{where}: {key!r}")
    failed = ~np.isfinite(llh)
    llh = np.where(failed, np.nan, llh)
    n = ring.size
    vertex = {
        ours: (_field(arr, theirs, f"{where}: {key!r}") if theirs in names else np.full(n, np.nan))
        for theirs, ours in _VERTEX.items()
    }
    status = failed.astype(np.int32)
    stage = StageResult(nside, nest, llh, vertex["x"], vertex["y"], vertex["z"], vertex["t"], status)
    extra: dict[str, npt.NDArray[Any]] = {
        name: _field(arr, name, f"{where}: {key!r}") for name in ("E_in", "E_tot") if name in names
    }
    extra["ring_index"] = ring
    record = StageRecord(
        name=key,
        nside=np.full(n, nside, dtype=np.int64),
        ipix=nest,
        llh=llh,
        x=vertex["x"],
        y=vertex["y"],
        z=vertex["z"],
        t=vertex["t"],
        status=status,
        seconds=np.full(n, np.nan),
        extra=extra,
        sources=[Path(where).name],
    )
    return stage, record


def _header_value(header: np.ndarray, name: str, where: str) -> Any:
    """The single value of a header column that every row (one per nside) must agree on, or None if absent."""
    if header.dtype.names is None or name not in header.dtype.names:
        return None
    values = {v.item() if isinstance(v, np.generic) else v for v in np.asarray(header[name]).reshape(-1).tolist()}
    if len(values) > 1:
        raise InputError(f"{where}: header rows disagree on {name!r} ({sorted(map(str, values))})")
    return next(iter(values)) if values else None


def _header_int(header: np.ndarray, name: str, where: str) -> int | None:
    value = _header_value(header, name, where)
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: header {name!r} is not an integer: {value!r}") from None
    if number < 0 or number != value:
        raise InputError(f"{where}: header {name!r} must be a non-negative integer, got {value!r}")
    return number


def read_skyreader_npz(path: str | os.PathLike[str]) -> ImportedScan:
    """Read a skyreader-style .npz scan into merge inputs (NESTED); see the module docstring for the layout."""
    p = Path(path)
    where = str(p)
    if not p.exists():
        raise InputError(f"{where}: no such file")
    if p.is_dir():
        raise InputError(f"{where}: is a directory, not an .npz file")
    if not zipfile.is_zipfile(p):
        raise InputError(f"{where}: not a readable .npz archive (expected a zip file of .npy arrays)")
    try:
        with np.load(p, allow_pickle=False) as npz:
            contents = {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{where}: not a readable .npz archive ({exc})") from None
    except ValueError as exc:
        if "pickle" in str(exc):
            raise InputError(f"{where}: holds object (pickled) arrays, which are not read for safety") from None
        raise InputError(f"{where}: cannot read .npz contents ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise InputError(f"{where}: cannot read ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(contents, dict):
        raise InputError(f"{where}: not an .npz archive of named arrays")

    header = contents.pop("header", None)
    unknown = sorted(k for k in contents if not _KEY.match(k))
    if unknown:
        raise InputError(f"{where}: unexpected array {unknown[0]!r} (expected keys 'nside-N' and optionally 'header')")
    if not contents:
        raise InputError(f"{where}: no 'nside-N' arrays: not a skyreader scan")

    keys = sorted(contents, key=lambda k: int(_KEY.match(k).group(1)))  # type: ignore[union-attr]
    stages: list[StageResult] = []
    records: list[StageRecord] = []
    for key in keys:
        stage, record = _read_nside(key, contents[key], where)
        stages.append(stage)
        records.append(record)

    result = ImportedScan(stages=stages, records=records)
    if header is None:
        result.notes.append("the file has no header: run and event ids and the event time are unknown")
        return result
    if not isinstance(header, np.ndarray) or header.dtype.names is None:
        raise InputError(f"{where}: 'header' is not a structured array")
    result.run_id = _header_int(header, "run_id", where)
    result.event_id = _header_int(header, "event_id", where)
    event_type = _header_value(header, "event_type", where)
    result.event_type = None if event_type in (None, "") else str(event_type)
    real = _header_value(header, "is_real_event", where)
    if real is not None:
        if isinstance(real, (bool, int, np.bool_)) and int(real) in (0, 1):
            result.is_real_event = bool(real)
        else:
            raise InputError(f"{where}: header 'is_real_event' must be true or false, got {real!r}")
    mjd = _header_value(header, "mjd", where)
    if mjd is not None:
        try:
            mjd_f = float(mjd)
        except (TypeError, ValueError):
            raise InputError(f"{where}: header 'mjd' is not a number: {mjd!r}") from None
        if not math.isfinite(mjd_f) or mjd_f < 0:
            raise InputError(f"{where}: header 'mjd' must be a finite non-negative number, got {mjd!r}")
        if mjd_f > 0:  # skyreader writes 0 when the time is unknown
            result.event_time = mjd_to_datetime(mjd_f)
    if "nside" in (header.dtype.names or ()):
        listed = {int(v) for v in np.asarray(header["nside"]).reshape(-1).tolist()}
        present = {s.nside for s in stages}
        if listed != present:
            raise InputError(
                f"{where}: header lists nsides {sorted(listed)} but the file holds {sorted(present)} (partial file?)"
            )
    return result


def stream_of(event_type: str | None) -> str | None:
    """Alert stream ('gold', 'bronze') named in a skyreader event type, else the event type itself."""
    if event_type is None:
        return None
    low = event_type.lower()
    for name in ("gold", "bronze"):
        if name in low:
            return name
    return event_type


__all__ = ["ImportedScan", "mjd_to_datetime", "read_skyreader_npz", "stream_of"]
