"""skymap.h5: the multi-order map (NUNIQ) with every fitted value, the raw results per stage (NESTED), provenance.

The layout is documented in docs/skymap-format.md; :func:`read_skymap_h5` follows that document (the tests and
tools that do not want to depend on ligo.skymap use it). The file is written atomically.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from skyscan.atomic import atomic_path
from skyscan.errors import InputError
from skyscan.products.meta import SkymapMeta, StageRecord
from skyscan.products.moc import MultiOrderMap, probability_density

FloatArray = npt.NDArray[np.float64]

SKYMAP_SCHEMA = "skyscan-skymap/1"
COORDINATES = "equatorial J2000/ICRS (theta = 90 deg - Dec, phi = RA)"

_MAX_ATTR_BYTES = 60_000  # HDF5 compact attributes are limited to 64 kB; longer texts live in /provenance only
_MAP_FIELDS = ("llh", "x", "y", "z", "t")
_STAGE_FIELDS = ("nside", "ipix", "llh", "x", "y", "z", "t", "status", "seconds")


def _text_attr(value: str | None) -> str:
    return "" if value is None else value


def _float_attr(value: float | None) -> float:
    return math.nan if value is None else float(value)


def write_skymap_h5(
    path: str | os.PathLike[str],
    m: MultiOrderMap,
    meta: SkymapMeta,
    stages: Sequence[StageRecord],
    event_json: str | None = None,
) -> None:
    """Write skymap.h5: the multi-order map (NUNIQ), the raw results per stage (NESTED) and all provenance."""
    dens = probability_density(m, meta.map_weight)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            a = f.attrs
            a["schema"] = SKYMAP_SCHEMA
            a["run_id"] = int(meta.run_id)
            a["event_id"] = int(meta.event_id)
            a["event_time"] = _text_attr(meta.event_time_iso)
            a["stream"] = _text_attr(meta.stream)
            a["map_weight"] = float(meta.map_weight)  # probdensity ~ exp(-map_weight * delta-llh)
            a["far_per_year"] = _float_attr(meta.far_per_year)
            a["signalness"] = _float_attr(meta.signalness)
            a["energy_gev"] = _float_attr(meta.energy_gev)
            a["created"] = meta.created_iso
            a["software_version"] = meta.software_version
            a["git_revision"] = _text_attr(meta.git_revision)
            a["source"] = meta.source
            a["coordinates"] = COORDINATES
            a["config_sha256"] = meta.config_sha256
            if len(meta.config_yaml.encode("utf-8")) <= _MAX_ATTR_BYTES:
                a["config_yaml"] = meta.config_yaml
            else:
                a["config_yaml"] = "(too long for an attribute: see the dataset /provenance/config_yaml)"
            bf = meta.best_fit
            a["best_fit_ra_deg"] = bf.ra_deg
            a["best_fit_dec_deg"] = bf.dec_deg
            a["best_fit_zenith_deg"] = _float_attr(bf.zenith_deg)
            a["best_fit_azimuth_deg"] = _float_attr(bf.azimuth_deg)
            a["best_fit_llh"] = bf.llh
            a["best_fit_nside"] = int(bf.nside)
            a["containment_method"] = meta.containment_method
            a["containment_json"] = json.dumps(meta.containment_dict(), allow_nan=False)

            g = f.create_group("multiorder")
            g.attrs["ordering"] = "NUNIQ"
            g.attrs["n_pixels"] = len(m)
            g.attrs["n_failed"] = m.n_failed
            g.create_dataset("uniq", data=m.uniq)
            for name in _MAP_FIELDS:
                g.create_dataset(name, data=getattr(m, name))
            g.create_dataset("status", data=m.status.astype(np.int32))
            g.create_dataset("dllh2", data=m.dllh2)
            g.create_dataset("probdensity", data=dens)

            sg = f.create_group("stages")
            for st in stages:
                s = sg.create_group(st.name)
                s.attrs["ordering"] = "NESTED"
                s.attrs["sources"] = json.dumps(st.sources)
                for name in _STAGE_FIELDS:
                    s.create_dataset(name, data=getattr(st, name))
                for name, values in st.extra.items():
                    s.create_dataset(name, data=values)

            cg = f.create_group("containment")
            cg.attrs["method"] = meta.containment_method
            for label, reg in meta.regions.items():
                r = cg.create_group(label)
                for key, value in reg.as_dict().items():
                    r.attrs[key] = value

            pg = f.create_group("provenance")
            pg.create_dataset("config_yaml", data=meta.config_yaml)
            if event_json is not None:
                pg.create_dataset("event_json", data=event_json)


@dataclass
class SkymapFile:
    """Contents of a skymap.h5 as read back."""

    map: MultiOrderMap
    probdensity: FloatArray
    attrs: dict[str, Any]
    stages: dict[str, StageRecord]
    config_yaml: str
    event_json: str | None


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_skymap_h5(path: str | os.PathLike[str]) -> SkymapFile:
    """Read a skymap.h5 written by `write_skymap_h5`; a missing or malformed file is an InputError naming it."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such skymap file")
    try:
        with h5py.File(p, "r") as f:
            attrs = {k: _decode(v) for k, v in f.attrs.items()}
            if attrs.get("schema") != SKYMAP_SCHEMA:
                raise InputError(f"{p}: not a {SKYMAP_SCHEMA} file (schema {attrs.get('schema')!r})")
            g = f["multiorder"]
            m = MultiOrderMap(
                uniq=g["uniq"][()],
                llh=g["llh"][()],
                x=g["x"][()],
                y=g["y"][()],
                z=g["z"][()],
                t=g["t"][()],
                status=g["status"][()],
            )
            dens = np.asarray(g["probdensity"][()], dtype=np.float64)
            stages: dict[str, StageRecord] = {}
            for name, s in f["stages"].items():
                core = {k: s[k][()] for k in _STAGE_FIELDS}
                extra = {k: np.asarray(s[k][()]) for k in s if k not in _STAGE_FIELDS}
                stages[name] = StageRecord(
                    name=name, extra=extra, sources=json.loads(_decode(s.attrs.get("sources", "[]"))), **core
                )
            config_yaml = _decode(f["provenance/config_yaml"][()])
            event_json = _decode(f["provenance/event_json"][()]) if "provenance/event_json" in f else None
    except InputError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise InputError(f"{p}: unreadable skymap file ({exc.__class__.__name__}: {exc})") from None
    return SkymapFile(m, dens, attrs, stages, str(config_yaml), event_json)


__all__ = ["COORDINATES", "SKYMAP_SCHEMA", "SkymapFile", "read_skymap_h5", "write_skymap_h5"]
