"""The catalog's row of a scan's summary.json (the ``summaries`` table): typed columns plus the whole document.

The summary model (``skyscan-summary/1``) and the shared column names are :mod:`skyscan.products.summary` and
:mod:`skyscan.products.columns`; this module only maps them onto the table's columns.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from skyscan.products.columns import summary_values
from skyscan.products.summary import Summary, read_summary_document

__all__ = ["SummaryRow", "parse_summary", "read_summary_row", "summary_row"]


@dataclass(frozen=True)
class SummaryRow:
    """A scan's row of the `summaries` table: the catalog's columns of its summary.json, plus the whole document.

    The field names are the table's columns (MIGRATIONS) and the shared summary column names
    (:mod:`skyscan.products.columns`); the values come from the typed :class:`Summary`.
    """

    ra_deg: float
    dec_deg: float
    llh: float | None
    nside: int | None
    containment_method: str | None
    ra_plus_50_deg: float | None
    ra_minus_50_deg: float | None
    dec_plus_50_deg: float | None
    dec_minus_50_deg: float | None
    area_50_deg2: float | None
    ra_plus_90_deg: float | None
    ra_minus_90_deg: float | None
    dec_plus_90_deg: float | None
    dec_minus_90_deg: float | None
    area_90_deg2: float | None
    pixels_scanned: int | None
    pixels_failed: int | None
    software_version: str | None
    doc: str  # the document as read (sorted keys), keys this version does not know included

    def columns(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.__dataclass_fields__}


_ROW_COLUMNS = tuple(f.name for f in fields(SummaryRow) if f.name != "doc")


def summary_row(summary: Summary, doc: str) -> SummaryRow:
    """The catalog's columns of a summary; `doc` is the document text stored beside them."""
    values = summary_values(summary)
    return SummaryRow(doc=doc, **{name: values[name] for name in _ROW_COLUMNS})


def parse_summary(doc: Any, where: str = "summary.json") -> SummaryRow:
    """Validate a parsed summary.json (:meth:`Summary.from_json`); the document is kept verbatim."""
    return summary_row(Summary.from_json(doc, where), json.dumps(doc, sort_keys=True))


def read_summary_row(path: str | os.PathLike[str]) -> SummaryRow:
    """The catalog row of the summary.json at `path`; missing, unreadable or invalid -> InputError naming it."""
    p = Path(path)
    return parse_summary(read_summary_document(p), str(p))
