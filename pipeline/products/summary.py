"""summary.json (schema ``skyscan-summary/1``): the localisation in numbers, as one typed model.

The merge builds a :class:`Summary` and writes :meth:`Summary.to_json`; every reader (the alert catalog, the
campaign report, ``skyscan run``) goes through :meth:`Summary.from_json` or :func:`read_summary`, so the document
has one owner. The format is a contract (docs/summary-format.md): keys are never renamed, readers ignore keys
they do not know, and unknown values are null. Reading is therefore lenient: only what every reader needs (the
schema and a finite best-fit direction) is required; any other field that is absent or of the wrong type reads
as None. Angles are in degrees (J2000/ICRS), times ISO 8601 UTC with a trailing Z.

Pure standard library on purpose: the watcher and the catalog read summaries without importing numpy or healpy.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyscan.errors import InputError

SUMMARY_SCHEMA = "skyscan-summary/1"
SUMMARY_FILE = "summary.json"

RESOLVE_MIN_PIXELS = 30
"""A containment region is *resolved* when it holds at least this many pixels of the finest scanned nside
(``scan.resolve.min_pixels``): its area is then known to a few per cent instead of being one pixel's area."""
RESOLVE_MAX_NSIDE = 4096
"""The finest nside the refinement past the last configured stage may reach (``scan.resolve.max_nside``):
0.0002 deg2 pixels, 0.014 deg across; each further factor 2 costs four times the pixels of the region."""

# name in `products` -> file written by the merge, relative to OUTDIR (docs/summary-format.md, "Product names").
PRODUCT_FILES = {
    "skymap_h5": "skymap.h5",
    "multiorder_fits": "skymap.multiorder.fits",
    "flat_fits": "skymap.2dllh.fits",
    "plot_fullsky": "plots/skymap-fullsky.png",
    "plot_zoom": "plots/skymap-zoom.png",
    "circular": "circular.txt",
    "notice": "notice.json",
    "summary": SUMMARY_FILE,
}


# --------------------------------------------------------------------------------------------------------------
# Lenient field readers: a value of the wrong type is an unknown value (None), as the contract asks of readers
# --------------------------------------------------------------------------------------------------------------
def _num(value: Any) -> float | None:
    """A finite JSON number as a float, else None (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------------------------------------------
# The parts of the document
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BestFitRecord:
    """`best_fit`: centre of the pixel with the lowest finite -ln L; detector frame only when the time is known."""

    ra_deg: float
    dec_deg: float
    zenith_deg: float | None = None
    azimuth_deg: float | None = None
    llh: float | None = None
    nside: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ra_deg": self.ra_deg,
            "dec_deg": self.dec_deg,
            "zenith_deg": self.zenith_deg,
            "azimuth_deg": self.azimuth_deg,
            "llh": self.llh,
            "nside": self.nside,
        }

    @classmethod
    def from_json(cls, value: Any, where: str) -> BestFitRecord:
        if not isinstance(value, dict):
            raise InputError(f"{where}: best_fit: missing or not an object")
        ra, dec = _num(value.get("ra_deg")), _num(value.get("dec_deg"))
        if ra is None or dec is None:
            raise InputError(f"{where}: best_fit.ra_deg/dec_deg: missing or not finite numbers")
        return cls(
            ra_deg=ra,
            dec_deg=dec,
            zenith_deg=_num(value.get("zenith_deg")),
            azimuth_deg=_num(value.get("azimuth_deg")),
            llh=_num(value.get("llh")),
            nside=_int(value.get("nside")),
        )


@dataclass(frozen=True)
class RegionRecord:
    """One containment region (docs/containment.md): threshold, area (deg2) and extents from the best fit (deg).

    RA extents are offsets in RA, not great-circle distances; they are 180 when the region holds or wraps a pole.
    """

    level_2dllh: float | None = None
    area_deg2: float | None = None
    ra_plus_deg: float | None = None
    ra_minus_deg: float | None = None
    dec_plus_deg: float | None = None
    dec_minus_deg: float | None = None
    n_pixels: int | None = None
    n_islands: int | None = None
    contains_pole: bool | None = None
    ra_errors_meaningful: bool | None = None
    note: str | None = None
    resolved: bool | None = None  # finest_pixels >= scan.resolve.min_pixels; None: not measured
    finest_nside: int | None = None  # the map's finest nside
    finest_pixels: int | None = None  # region pixels at finest_nside

    def to_json(self) -> dict[str, Any]:
        return {
            "level_2dllh": self.level_2dllh,
            "area_deg2": self.area_deg2,
            "ra_plus_deg": self.ra_plus_deg,
            "ra_minus_deg": self.ra_minus_deg,
            "dec_plus_deg": self.dec_plus_deg,
            "dec_minus_deg": self.dec_minus_deg,
            "n_pixels": self.n_pixels,
            "n_islands": self.n_islands,
            "contains_pole": self.contains_pole,
            "ra_errors_meaningful": self.ra_errors_meaningful,
            "note": self.note,
            # Written only when measured (a merge that knows the map's resolution): older readers see no change.
            **({} if self.resolved is None else {
                "resolved": self.resolved, "finest_nside": self.finest_nside, "finest_pixels": self.finest_pixels,
            }),
        }

    @classmethod
    def from_json(cls, value: Any) -> RegionRecord:
        doc = _obj(value)
        return cls(
            level_2dllh=_num(doc.get("level_2dllh")),
            area_deg2=_num(doc.get("area_deg2")),
            ra_plus_deg=_num(doc.get("ra_plus_deg")),
            ra_minus_deg=_num(doc.get("ra_minus_deg")),
            dec_plus_deg=_num(doc.get("dec_plus_deg")),
            dec_minus_deg=_num(doc.get("dec_minus_deg")),
            n_pixels=_int(doc.get("n_pixels")),
            n_islands=_int(doc.get("n_islands")),
            contains_pole=_bool(doc.get("contains_pole")),
            ra_errors_meaningful=_bool(doc.get("ra_errors_meaningful")),
            note=_str(doc.get("note")),
            resolved=_bool(doc.get("resolved")),
            finest_nside=_int(doc.get("finest_nside")),
            finest_pixels=_int(doc.get("finest_pixels")),
        )


@dataclass(frozen=True)
class ContainmentRecord:
    """`containment`: how the levels were set and the regions by label ('50', '90', then any extra labels)."""

    method: str | None
    regions: dict[str, RegionRecord] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None  # the calibration record of calibrated levels (docs/containment.md)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method}
        if self.calibration is not None:
            out["calibration"] = dict(self.calibration)
        for label, reg in self.regions.items():
            out[label] = reg.to_json()
        return out

    @classmethod
    def from_json(cls, value: Any) -> ContainmentRecord:
        doc = _obj(value)
        regions = {
            str(k): RegionRecord.from_json(v)
            for k, v in doc.items()
            if k not in ("method", "calibration") and isinstance(v, dict)
        }
        calibration = doc.get("calibration")
        return cls(
            method=_str(doc.get("method")),
            regions=regions,
            calibration=dict(calibration) if isinstance(calibration, dict) else None,
        )


@dataclass(frozen=True)
class PixelCounts:
    """`pixels`: distinct (nside, pixel) pairs fitted over all stages, those without a finite -ln L, per nside."""

    scanned: int | None
    failed: int | None
    by_nside: dict[str, int] = field(default_factory=dict)  # keys: nsides as strings (JSON object keys)

    def to_json(self) -> dict[str, Any]:
        return {"scanned": self.scanned, "failed": self.failed, "by_nside": dict(self.by_nside)}

    @classmethod
    def from_json(cls, value: Any) -> PixelCounts:
        doc = _obj(value)
        by_nside = {str(k): n for k, v in _obj(doc.get("by_nside")).items() if (n := _int(v)) is not None}
        return cls(scanned=_int(doc.get("scanned")), failed=_int(doc.get("failed")), by_nside=by_nside)


@dataclass(frozen=True)
class SoftwareRecord:
    """`software`: skyscan's version, and the commit when run from a git checkout."""

    version: str | None
    git_revision: str | None

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "git_revision": self.git_revision}

    @classmethod
    def from_json(cls, value: Any) -> SoftwareRecord:
        doc = _obj(value)
        return cls(version=_str(doc.get("version")), git_revision=_str(doc.get("git_revision")))


@dataclass(frozen=True)
class SkyPosition:
    """A direction on the sky (degrees, J2000); `truth` of a simulated event."""

    ra_deg: float
    dec_deg: float

    def to_json(self) -> dict[str, Any]:
        return {"ra_deg": self.ra_deg, "dec_deg": self.dec_deg}

    @classmethod
    def from_json(cls, value: Any) -> SkyPosition | None:
        doc = _obj(value)
        ra, dec = _num(doc.get("ra_deg")), _num(doc.get("dec_deg"))
        return None if ra is None or dec is None else cls(ra, dec)


@dataclass(frozen=True)
class MapPixelCounts:
    """`map_pixels`: pixels of the merged multi-order map, and how many of them carry a failed fit."""

    total: int | None
    failed: int | None

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "failed": self.failed}

    @classmethod
    def from_json(cls, value: Any) -> MapPixelCounts | None:
        if not isinstance(value, dict):
            return None
        return cls(total=_int(value.get("total")), failed=_int(value.get("failed")))


@dataclass(frozen=True)
class ImportRecord:
    """`import` of an imported Skymap Scanner result: the .npz's name and sha256, its event type, warnings."""

    npz: str | None
    sha256: str | None
    event_type: str | None
    notes: tuple[str, ...] = ()  # written only when there are any

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"npz": self.npz, "sha256": self.sha256, "event_type": self.event_type}
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    @classmethod
    def from_json(cls, value: Any) -> ImportRecord | None:
        if not isinstance(value, dict):
            return None
        notes = value.get("notes")
        kept = tuple(n for n in notes if isinstance(n, str)) if isinstance(notes, list) else ()
        return cls(_str(value.get("npz")), _str(value.get("sha256")), _str(value.get("event_type")), kept)


@dataclass(frozen=True)
class MapProbabilityRecord:
    """`map_probability`: the weight w of the FITS/HDF5 probability map (PROBDENSITY ~ exp(-w * delta-llh)), the
    region that fixed it, and the map's own credible areas next to the quoted contour areas (deg2, by label)."""

    weight: float | None
    matched_level: str | None
    credible_area_deg2: dict[str, float] = field(default_factory=dict)
    contour_area_deg2: dict[str, float] = field(default_factory=dict)
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        ratio = {
            k: (v / c if (c := self.contour_area_deg2.get(k)) else None) for k, v in self.credible_area_deg2.items()
        }
        return {
            "rule": "PROBDENSITY proportional to exp(-weight * delta_llh)",
            "weight": self.weight,
            "matched_level": self.matched_level,
            "credible_area_deg2": dict(self.credible_area_deg2),
            "contour_area_deg2": dict(self.contour_area_deg2),
            "credible_over_contour": ratio,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, value: Any) -> MapProbabilityRecord | None:
        if not isinstance(value, dict):
            return None

        def areas(key: str) -> dict[str, float]:
            return {str(k): n for k, v in _obj(value.get(key)).items() if (n := _num(v)) is not None}

        return cls(
            weight=_num(value.get("weight")),
            matched_level=_str(value.get("matched_level")),
            credible_area_deg2=areas("credible_area_deg2"),
            contour_area_deg2=areas("contour_area_deg2"),
            note=_str(value.get("note")),
        )


# --------------------------------------------------------------------------------------------------------------
# The document
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    """One summary.json; fields in the document's key order (the informative ones default to unknown)."""

    run_id: int | None  # 0 for an imported scan without a header
    event_id: int | None
    event_time: str | None  # None when unknown (imported scans without MJD)
    stream: str | None
    best_fit: BestFitRecord
    containment: ContainmentRecord
    pixels: PixelCounts
    software: SoftwareRecord
    products: dict[str, str]  # name -> path relative to OUTDIR of every file the merge wrote
    created: str | None = None
    source: str | None = None  # "skyscan scan" or "imported from FILE.npz (sha256 ...)"
    config_sha256: str | None = None
    truth: SkyPosition | None = None  # simulations only
    truth_offset_deg: float | None = None  # great-circle distance best fit -> truth
    flat_nside: int | None = None
    map_pixels: MapPixelCounts | None = None
    imported: ImportRecord | None = None  # the `import` object
    map_probability: MapProbabilityRecord | None = None

    def region(self, label: str) -> RegionRecord | None:
        """The region at `label` ('50', '90', ...), None when the document has none."""
        return self.containment.regions.get(label)

    def to_json(self) -> dict[str, Any]:
        """The document exactly as the merge writes it: contract keys always, informative keys when known.

        Non-finite numbers become null (JSON has no NaN)."""
        doc: dict[str, Any] = {
            "schema": SUMMARY_SCHEMA,
            "run_id": self.run_id,
            "event_id": self.event_id,
            "event_time": self.event_time,
            "stream": self.stream,
            "best_fit": self.best_fit.to_json(),
            "containment": self.containment.to_json(),
            "pixels": self.pixels.to_json(),
            "software": self.software.to_json(),
            "products": dict(self.products),
        }
        optional: dict[str, Any] = {
            "created": self.created,
            "source": self.source,
            "config_sha256": self.config_sha256,
        }
        if self.truth is not None:
            optional["truth"] = self.truth.to_json()
            optional["truth_offset_deg"] = self.truth_offset_deg
        optional["flat_nside"] = self.flat_nside
        optional["map_pixels"] = None if self.map_pixels is None else self.map_pixels.to_json()
        optional["import"] = None if self.imported is None else self.imported.to_json()
        optional["map_probability"] = None if self.map_probability is None else self.map_probability.to_json()
        doc.update({k: v for k, v in optional.items() if v is not None or k == "truth_offset_deg"})
        return {k: json_safe(v) for k, v in doc.items()}

    @classmethod
    def from_json(cls, doc: Any, where: str = SUMMARY_FILE) -> Summary:
        """Validate a parsed summary.json; `where` (the file) starts every error message."""
        if not isinstance(doc, dict):
            raise InputError(f"{where}: expected a JSON object")
        if doc.get("schema") != SUMMARY_SCHEMA:
            raise InputError(f"{where}: schema {doc.get('schema')!r} is not {SUMMARY_SCHEMA!r}")
        best_fit = BestFitRecord.from_json(doc.get("best_fit"), where)
        products = {str(k): v for k, v in _obj(doc.get("products")).items() if isinstance(v, str)}
        truth = SkyPosition.from_json(doc.get("truth"))
        return cls(
            run_id=_int(doc.get("run_id")),
            event_id=_int(doc.get("event_id")),
            event_time=_str(doc.get("event_time")),
            stream=_str(doc.get("stream")),
            best_fit=best_fit,
            containment=ContainmentRecord.from_json(doc.get("containment")),
            pixels=PixelCounts.from_json(doc.get("pixels")),
            software=SoftwareRecord.from_json(doc.get("software")),
            products=products,
            created=_str(doc.get("created")),
            source=_str(doc.get("source")),
            config_sha256=_str(doc.get("config_sha256")),
            truth=truth,
            truth_offset_deg=_num(doc.get("truth_offset_deg")) if truth is not None else None,
            flat_nside=_int(doc.get("flat_nside")),
            map_pixels=MapPixelCounts.from_json(doc.get("map_pixels")),
            imported=ImportRecord.from_json(doc.get("import")),
            map_probability=MapProbabilityRecord.from_json(doc.get("map_probability")),
        )


def json_safe(value: Any) -> Any:
    """A copy with non-finite floats replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------------------------
# I/O
# --------------------------------------------------------------------------------------------------------------
def read_summary_document(path: str | os.PathLike[str]) -> Any:
    """The parsed JSON of a summary file, unvalidated (the catalog keeps it verbatim); unreadable -> InputError."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{p}: unreadable ({exc.__class__.__name__}: {exc})") from None


def read_summary(path: str | os.PathLike[str]) -> Summary:
    """The validated summary in `path`; a missing, unreadable or invalid file is an InputError naming it."""
    return Summary.from_json(read_summary_document(path), str(path))


__all__ = [
    "PRODUCT_FILES",
    "SUMMARY_FILE",
    "SUMMARY_SCHEMA",
    "BestFitRecord",
    "ContainmentRecord",
    "ImportRecord",
    "MapPixelCounts",
    "MapProbabilityRecord",
    "PixelCounts",
    "RegionRecord",
    "SkyPosition",
    "SoftwareRecord",
    "Summary",
    "read_summary",
    "read_summary_document",
]
