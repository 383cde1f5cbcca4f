"""Export of a scan in IceCube's skyreader result format (the JSON that ``skyreader.SkyScanResult.read_json`` reads).

The format (data version 1) is one object per scanned nside, keyed ``"nside-N"``, each with:

* ``columns``: ``["index", "llh", "E_in", "E_tot", "X", "Y", "Z", "T"]``;
* ``metadata``: ``run_id``, ``event_id``, ``mjd``, ``event_type``, ``nside``, ``is_real_event``, ``version`` (1);
* ``data``: one 8-value row per pixel, sorted by index: the HEALPix **RING** index at that nside (equatorial,
  theta = 90 deg - Dec, phi = RA), -ln L, the energies deposited inside / in total, and the fitted vertex.

A number that is not known (skyscan does not fit the two energies; an imported file may lack the vertex) is written
as the format's NaN marker string, which the reader turns back into NaN. Pixels without a finite fit are left out:
the reader's best fit is the minimum over all rows, which a NaN would spoil. A pixel scanned twice at one nside
keeps its lower -ln L, as in the multi-order map. ``is_real_event`` is false for simulations and for run numbers
outside IceCube's six-digit range (the reader refuses those as real events). See docs/skymap-format.md, "skyreader export".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from skyscan.products.meta import SkymapMeta, StageRecord, mjd_of

COLUMNS = ("index", "llh", "E_in", "E_tot", "X", "Y", "Z", "T")
DATA_VERSION = 1
NAN_MARKER = "<skyreader.nan>"
"""How the format writes NaN (JSON has none)."""
REAL_RUN_IDS = (100_000, 1_000_000)
"""Run numbers [lo, hi) of real IceCube events: the reader refuses a real event with any other run number."""


def is_real_event(meta: SkymapMeta) -> bool:
    """Not a simulation, and a run number real IceCube events can have (synthetic test scans use small ones)."""
    return not meta.simulated and REAL_RUN_IDS[0] <= int(meta.run_id) < REAL_RUN_IDS[1]


def file_name(run_id: int, event_id: int, event_type: str) -> str:
    """``run{run:08d}.evt{event:012d}.{event_type}.json``: the name skyreader gives an event's files."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in event_type) or "unknown"
    return f"run{int(run_id):08d}.evt{int(event_id):012d}.{safe}.json"


def _value(v: float) -> float | str:
    return float(v) if np.isfinite(v) else NAN_MARKER


def _column_values(column: npt.NDArray[Any]) -> list[float | str]:
    """``_value`` of every entry, in one pass over the column (the same floats, NaN marker where not finite)."""
    col = np.asarray(column, dtype=np.float64)
    values: list[float | str] = list(col.tolist())
    for i in np.flatnonzero(~np.isfinite(col)).tolist():
        values[i] = NAN_MARKER
    return values


def _rows(cols: dict[str, npt.NDArray[Any]], rows: npt.NDArray[np.int64]) -> list[tuple[float | str, ...]]:
    """The value columns of ``COLUMNS`` (all but the index) for ``rows``, row by row."""
    return list(zip(*(_column_values(cols[c][rows]) for c in COLUMNS[1:]), strict=True))


def _per_nside(records: Sequence[StageRecord]) -> dict[int, dict[str, npt.NDArray[Any]]]:
    """Rows of every record grouped by nside (NESTED ipix), with the two energies where a record has them."""
    groups: dict[int, list[dict[str, npt.NDArray[Any]]]] = {}
    for rec in records:
        n = len(rec)
        nan = np.full(n, np.nan)
        cols = {
            "nside": np.asarray(rec.nside, dtype=np.int64),
            "ipix": np.asarray(rec.ipix, dtype=np.int64),
            "llh": np.asarray(rec.llh, dtype=np.float64),
            "E_in": np.asarray(rec.extra.get("E_in", nan), dtype=np.float64),
            "E_tot": np.asarray(rec.extra.get("E_tot", nan), dtype=np.float64),
            "X": np.asarray(rec.x, dtype=np.float64),
            "Y": np.asarray(rec.y, dtype=np.float64),
            "Z": np.asarray(rec.z, dtype=np.float64),
            "T": np.asarray(rec.t, dtype=np.float64),
        }
        for nside in np.unique(cols["nside"]):
            sel = cols["nside"] == nside
            groups.setdefault(int(nside), []).append({k: v[sel] for k, v in cols.items()})
    return {nside: {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} for nside, parts in groups.items()}


def document(records: Sequence[StageRecord], meta: SkymapMeta) -> dict[str, Any]:
    """The skyreader JSON document of a scan's raw results (see the module docstring)."""
    from skyscan.products.healpix import healpy

    hp = healpy()
    mjd = 0.0 if meta.event_time is None else mjd_of(meta.event_time)  # skyreader writes 0 when unknown
    doc: dict[str, Any] = {}
    for nside, cols in sorted(_per_nside(records).items()):
        llh = cols["llh"]
        keep = np.flatnonzero(np.isfinite(llh))
        # one row per pixel: lowest -ln L first, then the first of equal ones
        keep = keep[np.lexsort((llh[keep], cols["ipix"][keep]))]
        ipix = cols["ipix"][keep]
        first = np.ones(ipix.size, dtype=bool)
        first[1:] = ipix[1:] != ipix[:-1]
        keep = keep[first]
        ring = np.asarray(hp.nest2ring(nside, cols["ipix"][keep]), dtype=np.int64)
        order = np.argsort(ring, kind="stable")
        rows = keep[order]
        data = [[int(r), *values] for r, values in zip(ring[order].tolist(), _rows(cols, rows), strict=True)]
        doc[f"nside-{nside}"] = {
            "columns": list(COLUMNS),
            "metadata": {
                "run_id": int(meta.run_id),
                "event_id": int(meta.event_id),
                "mjd": mjd,
                "event_type": meta.type_of_event,
                "nside": nside,
                "is_real_event": is_real_event(meta),
                "version": DATA_VERSION,
            },
            "data": data,
        }
    return doc


__all__ = ["COLUMNS", "DATA_VERSION", "NAN_MARKER", "REAL_RUN_IDS", "document", "file_name", "is_real_event"]
