"""The event a scan is built for: its alert file, read and checked against its detector geometry.

``write_scan`` validates the event with this before writing anything, and the prepare and scan nodes read it the
same way, so one bad pulse is reported identically (exit 2) whichever of them meets it first.
"""

from __future__ import annotations

import os

from skyscan.errors import InputError
from skyscan.reco.event import EventFile, read_event
from skyscan.reco.geometry import Geometry, builtin, read_csv


def load_geometry(name_or_path: str | None, event_geometry: str = "ic86") -> Geometry:
    """A geometry file if given, else the event's built-in geometry."""
    if name_or_path:
        if name_or_path in ("ic86",):
            return builtin(name_or_path)
        return read_csv(name_or_path)
    return builtin(event_geometry)


_KNOWN_DOMS: dict[int, tuple[Geometry, set[tuple[int, int]]]] = {}


def _known_doms(geo: Geometry) -> set[tuple[int, int]]:
    """``geo.keys``, built once per geometry object (a set of 5,160 pairs costs about half a millisecond, more
    than the rest of a campaign's per-event set-up); the built-in geometries are one object each."""
    hit = _KNOWN_DOMS.get(id(geo))
    if hit is not None and hit[0] is geo:
        return hit[1]
    keys = geo.keys
    if len(_KNOWN_DOMS) >= 4:
        _KNOWN_DOMS.clear()
    _KNOWN_DOMS[id(geo)] = (geo, keys)
    return keys


def load_event(path: str | os.PathLike[str], geometry_arg: str | None = None) -> tuple[EventFile, Geometry]:
    """Read an event and its geometry, checking every pulse's DOM exists."""
    ef = read_event(path)
    geo = load_geometry(geometry_arg, ef.event.geometry)
    from skyscan.reco.event import check_doms

    try:
        check_doms(ef.event.pulses, _known_doms(geo))
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    return ef, geo
