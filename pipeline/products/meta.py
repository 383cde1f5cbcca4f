"""What every merge product records: the event, the best fit, the containment regions and the provenance.

:class:`SkymapMeta` is shared by skymap.h5 (``skyscan.products.hdf5``), the FITS maps (``skyscan.products.fits``),
the plots and the GCN drafts, so that any one product is enough to cite and reproduce a localisation.
:class:`StageRecord` holds the raw results of one stage as skymap.h5 keeps them. Angles in degrees (J2000/ICRS),
times UTC.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import numpy.typing as npt

from skyscan.products.containment import Region
from skyscan.products.credible import MapProbability, resolution_of, resolve_min_pixels
from skyscan.products.levels import is_calibrated_method
from skyscan.timestamps import iso_z

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PRODUCT_LEVELS = ("50", "90")
"""Containment labels that every product reports (the FITS keys and the circular need exactly these)."""


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
    is_real_event: bool | None = None  # as an imported file states it; None: decided by truth_radec
    event_type: str | None = None  # the skyreader event type of an imported scan
    map_probability: MapProbability | None = None  # set by products.write before anything is written
    calibration: dict[str, Any] | None = None  # the calibration record of the levels (LevelChoice.calibration)

    @property
    def calibrated(self) -> bool:
        """True when the levels come from a calibration of this likelihood (``skyscan calibrate``): a resimulation
        of this event or a campaign's calibration table. Recognised from the record or from the method name
        (``skyscan.products.levels.CALIBRATED_METHOD_PREFIXES``), so products written before the record reached
        them still tell."""
        return self.calibration is not None or is_calibrated_method(self.containment_method)

    @property
    def simulated(self) -> bool:
        """True for a simulation: the event file has a truth, or an imported file says it is not a real event."""
        return self.truth_radec is not None or self.is_real_event is False

    @property
    def map_weight(self) -> float:
        """w of the probability map, PROBDENSITY proportional to exp(-w * delta-llh) (1 until computed)."""
        return 1.0 if self.map_probability is None else self.map_probability.weight

    @property
    def type_of_event(self) -> str:
        """The event type the products record: the imported file's, else the alert stream, else 'unknown'."""
        if self.event_type:
            return self.event_type
        return (self.stream or "unknown").strip().lower() or "unknown"

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
        if self.calibration is not None:
            out["calibration"] = dict(self.calibration)
        for label, reg in self.regions.items():
            out[label] = {**reg.as_dict(), **self.region_resolution(label)}
        return out

    def region_resolution(self, label: str) -> dict[str, Any]:
        """The resolution fields of region ``label`` (resolved, finest_nside, finest_pixels), only when measured."""
        fields = resolution_of(self.map_probability, label, resolve_min_pixels(self.config_yaml))
        return {} if fields["resolved"] is None else fields

    def region90(self) -> Region:
        return self.regions["90"]


def mjd_of(t: datetime) -> float:
    """Modified Julian date (UTC) of a time."""
    from astropy.time import Time  # imported here: slow to import, and only the FITS headers need it

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


__all__ = ["PRODUCT_LEVELS", "BestFit", "SkymapMeta", "StageRecord", "mjd_of"]
