"""Columns of the tables made from summary.json files: one naming for the alert catalog and the campaign catalog.

A quantity of a summary has one column name wherever it is tabulated: the best fit as ``ra_deg``, ``dec_deg``,
``llh``, ``nside``; a region at level L as ``<field>_<L>_<unit>`` (``ra_plus_50_deg``, ``area_90_deg2``,
``level_90_2dllh``). Each table picks the columns it shows, in its own order, from :data:`SUMMARY_COLUMNS` and
:func:`level_columns`, and takes their values from :func:`summary_values`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from skyscan.products.summary import RegionRecord, Summary


@dataclass(frozen=True)
class Column:
    """One column of a table (CSV header, JSON key, HDF5 dataset), documented in the table's files.

    The alert catalog exports these four fields as they are (skyscan-catalog/1 `columns`): do not add fields.
    """

    name: str
    type: str  # integer | number | string | boolean | flag (1 yes, 0 no, empty/-1 unknown)
    unit: str
    description: str


SUMMARY_COLUMNS: dict[str, Column] = {
    c.name: c
    for c in (
        Column("ra_deg", "number", "deg", "best-fit right ascension (equatorial, J2000)"),
        Column("dec_deg", "number", "deg", "best-fit declination (equatorial, J2000)"),
        Column("zenith_deg", "number", "deg", "best fit, detector zenith (empty when the event time is unknown)"),
        Column("azimuth_deg", "number", "deg", "best fit, detector azimuth (empty when the event time is unknown)"),
        Column("llh", "number", "", "-ln L at the best fit"),
        Column("nside", "integer", "", "HEALPix nside of the best-fit pixel"),
        Column("containment_method", "string", "", "how the containment levels were set (summary.json)"),
        Column("pixels_scanned", "integer", "", "pixels reconstructed over all stages"),
        Column("pixels_failed", "integer", "", "pixels whose fit failed"),
        Column("software_version", "string", "", "skyscan version that produced the summary"),
    )
}


@dataclass(frozen=True)
class RegionField:
    """A field of a containment region in summary.json and how its per-level column is named."""

    key: str  # the field in the region object (RegionRecord attribute), e.g. "ra_plus_deg"
    stem: str  # the name before the level, e.g. "ra_plus"
    suffix: str  # the name after the level (the unit), e.g. "deg"
    unit: str
    meaning: str  # the description after "<L>% containment: "

    def column_name(self, label: str) -> str:
        return f"{self.stem}_{label}_{self.suffix}"


THRESHOLD = RegionField("level_2dllh", "level", "2dllh", "", "2*delta-llh threshold of the region")
EXTENTS_AND_AREA: tuple[RegionField, ...] = (
    RegionField("ra_plus_deg", "ra_plus", "deg", "deg", "extent in RA above the best fit"),
    RegionField("ra_minus_deg", "ra_minus", "deg", "deg", "extent in RA below the best fit"),
    RegionField("dec_plus_deg", "dec_plus", "deg", "deg", "extent in Dec above the best fit"),
    RegionField("dec_minus_deg", "dec_minus", "deg", "deg", "extent in Dec below the best fit"),
    RegionField("area_deg2", "area", "deg2", "deg2", "area of the region"),
)
REGION_FIELDS: tuple[RegionField, ...] = (THRESHOLD, *EXTENTS_AND_AREA)


def region_fields(*, threshold: bool) -> tuple[RegionField, ...]:
    """The per-level fields of a table, with or without the 2*delta-llh threshold (the alert catalog has none)."""
    return REGION_FIELDS if threshold else EXTENTS_AND_AREA


def level_columns(label: str, *, threshold: bool = True) -> tuple[Column, ...]:
    """The columns of the region at level `label` ('50', '90', ...)."""
    return tuple(
        Column(f.column_name(label), "number", f.unit, f"{label}% containment: {f.meaning}")
        for f in region_fields(threshold=threshold)
    )


def level_values(region: RegionRecord | None, label: str, *, threshold: bool = True) -> dict[str, float | None]:
    """Column name -> value for the region at `label` (None where the summary has no such region or value)."""
    out: dict[str, float | None] = {}
    for f in region_fields(threshold=threshold):
        value = None if region is None else getattr(region, f.key)
        out[f.column_name(label)] = float(value) if value is not None and math.isfinite(value) else None
    return out


def summary_values(summary: Summary, labels: Sequence[str] = ("50", "90")) -> dict[str, Any]:
    """Every column of :data:`SUMMARY_COLUMNS` and :func:`level_columns` (threshold included) of one summary."""
    best = summary.best_fit
    values: dict[str, Any] = {
        "ra_deg": best.ra_deg,
        "dec_deg": best.dec_deg,
        "zenith_deg": best.zenith_deg,
        "azimuth_deg": best.azimuth_deg,
        "llh": best.llh,
        "nside": best.nside,
        "containment_method": summary.containment.method,
        "pixels_scanned": summary.pixels.scanned,
        "pixels_failed": summary.pixels.failed,
        "software_version": summary.software.version,
    }
    for label in labels:
        values.update(level_values(summary.region(label), label))
    return values


__all__ = [
    "EXTENTS_AND_AREA",
    "REGION_FIELDS",
    "SUMMARY_COLUMNS",
    "THRESHOLD",
    "Column",
    "RegionField",
    "level_columns",
    "level_values",
    "region_fields",
    "summary_values",
]
