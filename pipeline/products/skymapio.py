"""Files of the merge products: the HDF5 skymap, the multi-order FITS map and the flat 2*delta-llh FITS map.

Every file carries the same provenance (event ids and time, software version and git revision, configuration,
creation time) so that any one of them is enough to cite and reproduce a localisation. The layouts are documented
in docs/skymap-format.md; the readers here follow that document (they are used by the tests and by tools that do
not want to depend on ligo.skymap). Orderings are stated everywhere: NUNIQ for multi-order maps, NESTED for raw
scan results, RING for the flat map. All files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import healpy as hp
import numpy as np
import numpy.typing as npt
from astropy.io import fits
from astropy.time import Time

from skyscan.atomic import atomic_path
from skyscan.errors import InputError
from skyscan.products.containment import Region
from skyscan.products.moc import MultiOrderMap, probability_density

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SKYMAP_SCHEMA = "skyscan-skymap/1"
COORDINATES = "equatorial J2000/ICRS (theta = 90 deg - Dec, phi = RA)"
PRODUCT_LEVELS = ("50", "90")
"""Containment labels that every product reports (the FITS keys and the circular need exactly these)."""

_MAX_ATTR_BYTES = 60_000  # HDF5 compact attributes are limited to 64 kB; longer texts live in /provenance only
_CONFIG_CHUNK = 64  # characters of configuration per COMMENT card (72 minus the "config: " prefix)
_MAP_FIELDS = ("llh", "x", "y", "z", "t")
_STAGE_FIELDS = ("nside", "ipix", "llh", "x", "y", "z", "t", "status", "seconds")


# --------------------------------------------------------------------------------------------------------------
# What every product records
# --------------------------------------------------------------------------------------------------------------


@dataclass
class BestFit:
    """The best-fit pixel: its centre (degrees, J2000), detector direction when the time is known, -ln L, nside."""

    ra_deg: float
    dec_deg: float
    zenith_deg: float | None
    azimuth_deg: float | None
    llh: float
    nside: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "ra_deg": self.ra_deg,
            "dec_deg": self.dec_deg,
            "zenith_deg": self.zenith_deg,
            "azimuth_deg": self.azimuth_deg,
            "llh": self.llh,
            "nside": self.nside,
        }


@dataclass
class SkymapMeta:
    """Event, result and provenance shared by all products of one merge."""

    run_id: int
    event_id: int
    event_time: datetime | None
    stream: str | None
    best_fit: BestFit
    containment_method: str
    regions: dict[str, Region]
    config_yaml: str
    created: datetime
    software_version: str
    git_revision: str | None
    far_per_year: float | None = None
    signalness: float | None = None
    energy_gev: float | None = None
    truth_radec: tuple[float, float] | None = None
    source: str = "skyscan scan"

    @property
    def event_time_iso(self) -> str | None:
        """ISO 8601 UTC with microseconds and a trailing Z, or None when unknown."""
        return None if self.event_time is None else iso_z(self.event_time)

    @property
    def created_iso(self) -> str:
        return iso_z(self.created)

    @property
    def config_sha256(self) -> str:
        return hashlib.sha256(self.config_yaml.encode("utf-8")).hexdigest()

    def containment_dict(self) -> dict[str, Any]:
        """{"method": ..., label: region fields, ...}: the `containment` object of summary.json."""
        out: dict[str, Any] = {"method": self.containment_method}
        for label, reg in self.regions.items():
            out[label] = reg.as_dict()
        return out

    def region90(self) -> Region:
        return self.regions["90"]


def iso_z(t: datetime) -> str:
    """ISO 8601 UTC with microseconds and a trailing Z (naive times are taken as UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def mjd_of(t: datetime) -> float:
    """Modified Julian date (UTC) of a time."""
    return float(Time(t.astimezone(timezone.utc).replace(tzinfo=None), scale="utc").mjd)


@dataclass
class StageRecord:
    """Raw scan results of one stage (or of one nside of an imported scan), rows in file order, NESTED indices."""

    name: str
    nside: IntArray
    ipix: IntArray
    llh: FloatArray
    x: FloatArray
    y: FloatArray
    z: FloatArray
    t: FloatArray
    status: npt.NDArray[np.int32]
    seconds: FloatArray
    extra: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.ipix.size)


# --------------------------------------------------------------------------------------------------------------
# HDF5
# --------------------------------------------------------------------------------------------------------------


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
    dens = probability_density(m)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            a = f.attrs
            a["schema"] = SKYMAP_SCHEMA
            a["run_id"] = int(meta.run_id)
            a["event_id"] = int(meta.event_id)
            a["event_time"] = _text_attr(meta.event_time_iso)
            a["stream"] = _text_attr(meta.stream)
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


# --------------------------------------------------------------------------------------------------------------
# FITS
# --------------------------------------------------------------------------------------------------------------


def _ascii(text: str) -> str:
    """FITS headers hold printable ASCII only."""
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)


def _put(header: fits.Header, key: str, value: Any, comment: str = "") -> None:
    """Set a header card, as HIERARCH when the keyword is longer than 8 characters; skips unknown numbers."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        return
    if isinstance(value, str):
        value = _ascii(value)
    name = f"HIERARCH {key}" if len(key) > 8 else key
    shown = f"'{value}'" if isinstance(value, str) else str(value)
    if len(name) + len(shown) + len(comment) + 6 > 80:
        comment = ""  # a card is 80 characters; the value matters, the comment does not
    header[name] = (value, comment)


def _chunks(text: str, size: int) -> list[str]:
    """Pieces of at most `size` characters that do not end in a space (FITS readers strip trailing blanks)."""
    out: list[str] = []
    while len(text) > size:
        cut = size
        while cut > 1 and text[cut - 1] == " ":
            cut -= 1
        out.append(text[:cut])
        text = text[cut:]
    out.append(text)
    return out


def event_cards(header: fits.Header, meta: SkymapMeta) -> None:
    """IceCube-style event keys plus provenance: shared by the multi-order and the flat FITS files."""
    _put(header, "RUNID", int(meta.run_id), "run number")
    _put(header, "EVENTID", int(meta.event_id), "event number")
    if meta.event_time is not None:
        t = meta.event_time.astimezone(timezone.utc)
        _put(header, "DATE-OBS", t.strftime("%Y-%m-%dT%H:%M:%S.%f"), "UTC date of the event")
        _put(header, "MJD-OBS", mjd_of(t), "modified Julian date of the event (UTC)")
    _put(header, "STREAM", meta.stream, "alert stream")
    _put(header, "ENERGY", meta.energy_gev, "[GeV] event energy from the alert")
    _put(header, "SIGNAL", meta.signalness, "signalness from the alert")
    _put(header, "FAR", meta.far_per_year, "[yr-1] false-alarm rate from the alert")
    bf = meta.best_fit
    _put(header, "RA", round(bf.ra_deg, 6), "[deg] best-fit right ascension (J2000)")
    _put(header, "DEC", round(bf.dec_deg, 6), "[deg] best-fit declination (J2000)")
    _put(header, "LLH", bf.llh, "-ln L at the best fit")
    for label in PRODUCT_LEVELS:
        reg = meta.regions[label]
        _put(header, f"RA_ERR_PLUS_{label}", round(reg.ra_plus_deg, 6), f"[deg] {label}% region")
        _put(header, f"RA_ERR_MINUS_{label}", round(reg.ra_minus_deg, 6), f"[deg] {label}% region")
        _put(header, f"DEC_ERR_PLUS_{label}", round(reg.dec_plus_deg, 6), f"[deg] {label}% region")
        _put(header, f"DEC_ERR_MINUS_{label}", round(reg.dec_minus_deg, 6), f"[deg] {label}% region")
        _put(header, f"CONTOUR_AREA_{label}", round(reg.area_deg2, 6), f"[deg2] {label}% region")
        _put(header, f"LEVEL_{label}", reg.level_2dllh, f"2*delta-llh of the {label}% region")
    _put(header, "CONTMETH", meta.containment_method, "containment levels")
    _put(header, "DATE", meta.created.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f"), "file creation")
    _put(header, "CREATOR", "skyscan", "program that created this file")
    _put(header, "SOFTWARE_VERSION", meta.software_version, "skyscan version")
    _put(header, "GIT_REVISION", meta.git_revision, "skyscan git revision")
    _put(header, "SOURCE", meta.source, "where the scan results came from")
    _put(header, "CONFIG_SHA256", meta.config_sha256, "sha256 of the configuration text")
    for line in meta.config_yaml.splitlines():
        text = _ascii(line)
        chunks = _chunks(text, _CONFIG_CHUNK)
        header.add_comment(f"config: {chunks[0]}")
        for chunk in chunks[1:]:
            header.add_comment(f"config+ {chunk}")


def write_multiorder_fits(path: str | os.PathLike[str], m: MultiOrderMap, meta: SkymapMeta) -> None:
    """Write skymap.multiorder.fits: UNIQ (NUNIQ) and PROBDENSITY (sr^-1) columns, as ligo.skymap reads them."""
    dens = probability_density(m)
    hdu = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="UNIQ", format="K", array=m.uniq),
            fits.Column(name="PROBDENSITY", format="D", unit="sr-1", array=dens),
        ],
        name="SKYMAP",
    )
    h = hdu.header
    _put(h, "PIXTYPE", "HEALPIX", "HEALPix pixelisation")
    _put(h, "ORDERING", "NUNIQ", "pixel ordering: 4 * nside**2 + NESTED index")
    _put(h, "COORDSYS", "C", "equatorial (celestial) coordinates")
    _put(h, "MOCORDER", int(m.order.max()), "deepest HEALPix order")
    _put(h, "INDXSCHM", "EXPLICIT", "indexing: explicit")
    _put(h, "OBJECT", f"{meta.run_id}_{meta.event_id}", "run_event")
    event_cards(h, meta)
    _write_hdus(path, hdu)


def write_flat_fits(
    path: str | os.PathLike[str], values_ring: npt.ArrayLike, meta: SkymapMeta, column: str = "2DLLH"
) -> None:
    """Write a flat RING-ordered single-column HEALPix map (float32, NaN for failed pixels) readable by healpy."""
    values = np.asarray(values_ring, dtype=np.float32).reshape(-1)
    nside = int(hp.npix2nside(values.size))
    hdu = fits.BinTableHDU.from_columns([fits.Column(name=column, format="E", array=values)], name="xtension")
    h = hdu.header
    _put(h, "PIXTYPE", "HEALPIX", "HEALPix pixelisation")
    _put(h, "ORDERING", "RING", "pixel ordering")
    _put(h, "COORDSYS", "C", "equatorial (celestial) coordinates")
    _put(h, "NSIDE", nside, "HEALPix resolution")
    _put(h, "FIRSTPIX", 0, "first pixel")
    _put(h, "LASTPIX", values.size - 1, "last pixel")
    _put(h, "INDXSCHM", "IMPLICIT", "indexing: implicit")
    _put(h, "OBJECT", "FULLSKY", "sky coverage")
    event_cards(h, meta)
    _write_hdus(path, hdu)


def _write_hdus(path: str | os.PathLike[str], hdu: fits.BinTableHDU) -> None:
    hdus = fits.HDUList([fits.PrimaryHDU(), hdu])
    with atomic_path(path) as tmp:
        hdus.writeto(tmp, overwrite=True, checksum=True)


@dataclass
class MocFits:
    """A multi-order FITS map as read back: NUNIQ pixels, density per steradian and the header as a dictionary."""

    uniq: IntArray
    probdensity: FloatArray
    header: dict[str, Any]


def read_multiorder_fits(path: str | os.PathLike[str]) -> MocFits:
    """Read skymap.multiorder.fits following docs/skymap-format.md (no ligo.skymap needed)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such FITS file")
    try:
        with fits.open(p) as hdus:
            hdu = hdus[1]
            header = {k: v for k, v in hdu.header.items() if k not in ("COMMENT", "HISTORY", "")}
            if header.get("ORDERING") != "NUNIQ":
                raise InputError(f"{p}: ORDERING is {header.get('ORDERING')!r}, expected 'NUNIQ'")
            uniq = np.asarray(hdu.data["UNIQ"], dtype=np.int64)
            dens = np.asarray(hdu.data["PROBDENSITY"], dtype=np.float64)
    except InputError:
        raise
    except (OSError, KeyError, IndexError, ValueError, TypeError) as exc:
        raise InputError(f"{p}: unreadable multi-order FITS file ({exc.__class__.__name__}: {exc})") from None
    return MocFits(uniq, dens, header)


def header_config(path: str | os.PathLike[str]) -> str:
    """The configuration text recorded in a FITS file's COMMENT cards ("config: " starts a line, "config+ " goes on)."""
    with fits.open(path) as hdus:
        comments = [str(c) for c in hdus[1].header.get("COMMENT", [])]
    lines: list[str] = []
    for c in comments:
        if c.startswith("config:"):
            lines.append(c[8:])
        elif c.startswith("config+") and lines:
            lines[-1] += c[8:]
    return "\n".join(lines)


def json_ready(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with non-finite floats replaced by None (JSON has no NaN)."""

    def fix(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, Mapping):
            return {str(k): fix(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [fix(x) for x in v]
        return v

    return {str(k): fix(v) for k, v in doc.items()}


__all__ = [
    "COORDINATES",
    "PRODUCT_LEVELS",
    "SKYMAP_SCHEMA",
    "BestFit",
    "MocFits",
    "SkymapFile",
    "SkymapMeta",
    "StageRecord",
    "event_cards",
    "header_config",
    "iso_z",
    "json_ready",
    "mjd_of",
    "read_multiorder_fits",
    "read_skymap_h5",
    "write_flat_fits",
    "write_multiorder_fits",
    "write_skymap_h5",
]
