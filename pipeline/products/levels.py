"""Containment levels in 2*delta-llh: the named sets and the parser of user specifications.

Kept apart from :mod:`skyscan.products.containment` (which needs healpy) so that configuration
validation stays cheap to import.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyscan.errors import InputError

LEVELS: dict[str, dict[str, float]] = {
    # Wilks' theorem for 2 degrees of freedom: chi2 quantiles at 50% and 90%.
    "wilks": {"50": 1.39, "90": 4.61},
    # IceCube's levels calibrated with simulations of the IC160427A event (much wider than Wilks).
    "calibrated": {"50": 22.2, "90": 64.2},
}

LevelSpec = str | float | Mapping[str, float] | Sequence[float]

PRODUCT_LABELS = ("50", "90")


def check_product_levels(spec: LevelSpec) -> tuple[str, dict[str, float]]:
    """(method, levels with at least the labels '50' and '90') of a specification, as every merge needs them.

    A calibration file path or ``{table: FILE}`` is resolved by `choose_levels` (with the event set by
    `level_context`, if any); everything else as below.
    """
    choice = choose_levels(spec)
    return choice.method, choice.levels


def _plain_product_levels(spec: LevelSpec) -> tuple[str, dict[str, float]]:
    """(method, levels) of a named set, numbers or a mapping.

    Named sets and mappings must provide those labels; two bare numbers are the 50% and the 90% level (the smaller
    first). Cheap (no healpy): `skyscan run` and `submit` call it before anything is scanned.
    """
    levels = resolve_levels(spec)
    if isinstance(spec, str) and spec.strip().lower() in LEVELS:
        method = spec.strip().lower()
    else:
        method = "explicit"
    if all(label in levels for label in PRODUCT_LABELS):
        return method, levels
    if not isinstance(spec, Mapping) and len(levels) == 2:
        low, high = sorted(levels.values())
        return method, {"50": low, "90": high}
    raise InputError(
        f"containment {spec!r}: give the 50% and 90% levels (a name such as 'wilks', two numbers like '1.39,4.61', "
        "or a mapping with keys 50 and 90)"
    )


def level_value(value: Any, where: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool):
        raise InputError(f"containment level {where} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"containment level {where} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0.0 or (number == 0.0 and not allow_zero):
        raise InputError(f"containment level {where} must be a positive finite 2*delta-llh, got {value!r}")
    return number


def resolve_levels(spec: LevelSpec) -> dict[str, float]:
    """Containment levels (label -> 2*delta-llh) from a name in LEVELS, "1.39,4.61", one number, a list or a mapping.

    A calibration file (a path ending in .json) gives its levels; ``{table: FILE}`` the table's widest level per
    label (so a scan's adaptive refinement encloses every bin's contour; the merge looks the event up).
    """
    if is_calibration_spec(spec):
        return calibration_levels(spec)
    if isinstance(spec, str):
        text = spec.strip()
        if text.lower() in LEVELS:
            return dict(LEVELS[text.lower()])
        parts = [p.strip() for p in text.split(",")]
        if not text or any(not p for p in parts):
            raise InputError(f"containment levels {spec!r}: use {' or '.join(LEVELS)} or numbers like '1.39,4.61'")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            raise InputError(
                f"containment levels {spec!r}: use {' or '.join(LEVELS)} or numbers like '1.39,4.61'"
            ) from None
        return {f"{v:g}": level_value(v, repr(p)) for v, p in zip(numbers, parts, strict=True)}
    if isinstance(spec, Mapping):
        if not spec:
            raise InputError("containment levels: the mapping is empty")
        return {str(k): level_value(v, repr(k)) for k, v in spec.items()}
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        value = level_value(spec, repr(spec))
        return {f"{value:g}": value}
    if isinstance(spec, Sequence) and not isinstance(spec, (bytes, bytearray)):
        if len(spec) == 0:
            raise InputError("containment levels: the list is empty")
        values = [level_value(v, repr(v)) for v in spec]
        return {f"{v:g}": v for v in values}
    raise InputError(f"containment levels {spec!r}: use {' or '.join(LEVELS)} or numbers like '1.39,4.61'")


# --------------------------------------------------------------------------------------------------------------
# Calibrated levels: a calibration file (skyscan calibrate SCANDIR) or a calibration table (--campaign)
# --------------------------------------------------------------------------------------------------------------
CALIBRATION_SCHEMA = "skyscan-calibration/1"
TABLE_SCHEMA = "skyscan-calibration-table/1"
OBSERVABLES = ("total_charge", "hit_doms")
"""Event observables a calibration table may be binned in: summed pulse charge (photoelectrons), and the number of
distinct DOMs with at least one pulse. Both are known to every scan before it starts (they come from the pulses)."""

CALIBRATED_METHOD_PREFIXES = ("resimulation (", "table (")
"""How `choose_levels` names calibrated methods; `is_calibrated_method` recognises them."""

_MAX_CALIBRATION_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class LevelContext:
    """What a calibration needs to know about the event being contoured: its ids and observables.

    ``observables`` maps the names in OBSERVABLES to values (see `event_observables`)."""

    run_id: int
    event_id: int
    observables: Mapping[str, float]


@dataclass(frozen=True)
class LevelChoice:
    """The level specification products carry: method name, the levels, and the calibration record used (if any).

    ``method`` is what summary.json (containment.method), the FITS header (CONTMETH), the plots and the circular
    show; for a calibration it names the file and its digest, so the method alone identifies the calibration.
    """

    method: str
    levels: dict[str, float]
    calibration: dict[str, Any] | None = None

    @property
    def calibrated(self) -> bool:
        """True when the levels come from a resimulation or a calibration table of this likelihood."""
        return self.calibration is not None


_CONTEXT: ContextVar[LevelContext | None] = ContextVar("skyscan_level_context", default=None)


@contextmanager
def level_context(context: LevelContext | None) -> Iterator[None]:
    """Make `context` the event that calibration specifications are checked and looked up against.

    The merge commands set it around `merge_scan` (they have read the event); a library caller may pass the
    context to `choose_levels` directly instead.
    """
    token = _CONTEXT.set(context)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_level_context() -> LevelContext | None:
    return _CONTEXT.get()


def event_observables(string: Any, om: Any, charge: Any) -> dict[str, float]:
    """The observables of OBSERVABLES from an event's pulse columns (DOM string and om numbers, charge in pe)."""
    import numpy as np

    s = np.asarray(string, dtype=np.int64).reshape(-1)
    o = np.asarray(om, dtype=np.int64).reshape(-1)
    q = np.asarray(charge, dtype=np.float64).reshape(-1)
    doms = int(np.unique(s * 1000 + o).size) if s.size else 0
    return {"total_charge": float(np.sum(q)), "hit_doms": float(doms)}


def is_calibrated_method(method: str | None) -> bool:
    """True for a containment method named by a calibration file or table (see CALIBRATED_METHOD_PREFIXES)."""
    return bool(method) and str(method).startswith(CALIBRATED_METHOD_PREFIXES)


def is_calibration_spec(spec: Any) -> bool:
    """True for a path to a calibration file (a string ending in .json) or a mapping ``{table: FILE}``."""
    if isinstance(spec, str):
        return spec.strip().lower().endswith(".json")
    if isinstance(spec, Mapping):
        return set(spec) == {"table"}
    return False


def _read_json_doc(path: Path, what: str) -> dict[str, Any]:
    import json

    try:
        if path.stat().st_size > _MAX_CALIBRATION_BYTES:
            raise InputError(f"{path}: {what} larger than {_MAX_CALIBRATION_BYTES // (1024 * 1024)} MiB")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the {what} ({exc.__class__.__name__})") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{path}: the {what} is not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: the {what} must be a JSON object")
    return doc


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _product_pair(raw: Any, where: str) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        raise InputError(f"{where}: expected an object with the 50 and 90 levels")
    missing = [label for label in PRODUCT_LABELS if label not in raw]
    if missing:
        raise InputError(f"{where}: missing the {missing[0]}% level")
    # A calibrated 50% level may be 0: the truth fell in the best-fit pixel in at least half the pseudo-events.
    levels = {label: level_value(raw[label], f"{where}.{label}", allow_zero=True) for label in PRODUCT_LABELS}
    if levels["90"] < levels["50"]:
        raise InputError(f"{where}: the 90% level ({levels['90']:g}) is below the 50% level ({levels['50']:g})")
    return levels


@dataclass(frozen=True)
class CalibrationFile:
    """A validated calibration.json (schema CALIBRATION_SCHEMA): the levels and the scan they were made for."""

    path: Path
    sha256: str
    levels: dict[str, float]
    n: int
    run_id: int | None
    event_id: int | None
    systematics: Any

    def record(self) -> dict[str, Any]:
        return {
            "kind": "resimulation",
            "schema": CALIBRATION_SCHEMA,
            "file": self.path.name,
            "sha256": self.sha256,
            "n": self.n,
            "levels": dict(self.levels),
            "run_id": self.run_id,
            "event_id": self.event_id,
        }


def _int_or_none(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}: expected an integer, got {value!r}")
    return value


def read_calibration(path: str | os.PathLike[str]) -> CalibrationFile:
    """calibration.json, validated; every problem is one InputError naming the file."""
    p = Path(path)
    doc = _read_json_doc(p, "calibration file")
    if doc.get("schema") != CALIBRATION_SCHEMA:
        if doc.get("schema") == TABLE_SCHEMA:
            raise InputError(f"{p}: a calibration table; give it as containment: {{table: {p.name}}} in the scan config")
        raise InputError(f"{p}: not a calibration file (schema {doc.get('schema')!r}, expected {CALIBRATION_SCHEMA})")
    levels = _product_pair(doc.get("levels"), f"{p}: levels")
    n = doc.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"{p}: n must be a positive integer, got {n!r}")
    source = doc.get("source")
    if not isinstance(source, Mapping):
        raise InputError(f"{p}: source: expected the source scan's record")
    return CalibrationFile(
        path=p,
        sha256=_sha256(p),
        levels=levels,
        n=n,
        run_id=_int_or_none(source.get("run_id"), f"{p}: source.run_id"),
        event_id=_int_or_none(source.get("event_id"), f"{p}: source.event_id"),
        systematics=doc.get("systematics"),
    )


@dataclass(frozen=True)
class TableBin:
    """One bin of a calibration table: observable in [lo, hi), its levels and how many events made them."""

    lo: float
    hi: float
    n: int
    levels: dict[str, float]


@dataclass(frozen=True)
class CalibrationTable:
    """A validated calibration table (schema TABLE_SCHEMA): levels per bin of one event observable."""

    path: Path
    sha256: str
    observable: str
    bins: tuple[TableBin, ...]

    def lookup(self, value: float) -> tuple[int, TableBin]:
        """(index, bin) holding `value`; values beyond the outer edges take the outer bins (documented)."""
        for i, b in enumerate(self.bins):
            if value < b.hi:
                return i, b
        return len(self.bins) - 1, self.bins[-1]

    def widest(self) -> dict[str, float]:
        """Per label the largest level over the bins: what a scan refines around before its event is looked up."""
        return {label: max(b.levels[label] for b in self.bins) for label in PRODUCT_LABELS}


def read_calibration_table(path: str | os.PathLike[str]) -> CalibrationTable:
    """A calibration table, validated (ascending, contiguous bins); every problem is one InputError naming the file."""
    p = Path(path)
    doc = _read_json_doc(p, "calibration table")
    if doc.get("schema") != TABLE_SCHEMA:
        raise InputError(f"{p}: not a calibration table (schema {doc.get('schema')!r}, expected {TABLE_SCHEMA})")
    observable = doc.get("observable")
    if observable not in OBSERVABLES:
        raise InputError(f"{p}: observable must be one of {', '.join(OBSERVABLES)}, got {observable!r}")
    raw_bins = doc.get("bins")
    if not isinstance(raw_bins, list) or not raw_bins:
        raise InputError(f"{p}: bins: expected a non-empty list")
    bins: list[TableBin] = []
    for i, raw in enumerate(raw_bins):
        where = f"{p}: bins[{i}]"
        if not isinstance(raw, Mapping):
            raise InputError(f"{where}: expected an object")
        lo = raw.get("lo")
        hi = raw.get("hi")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)):
            raise InputError(f"{where}: lo and hi must be numbers")
        assert isinstance(lo, (int, float)) and isinstance(hi, (int, float))
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
            raise InputError(f"{where}: need finite lo < hi, got {lo!r}, {hi!r}")
        if bins and not math.isclose(float(lo), bins[-1].hi):
            raise InputError(f"{where}: lo {lo:g} does not continue the previous bin's hi {bins[-1].hi:g}")
        n = raw.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"{where}: n must be a positive integer, got {n!r}")
        bins.append(TableBin(float(lo), float(hi), n, _product_pair(raw.get("levels"), f"{where}.levels")))
    return CalibrationTable(path=p, sha256=_sha256(p), observable=str(observable), bins=tuple(bins))


def _table_path(spec: Mapping[str, Any]) -> Path:
    value = spec.get("table")
    if not isinstance(value, str) or not value.strip():
        raise InputError("containment table: expected a file path, as in containment: {table: FILE}")
    return Path(value.strip())


def choose_levels(spec: LevelSpec | Mapping[str, Any], context: LevelContext | None = None) -> LevelChoice:
    """The level specification products carry (method, levels '50'/'90' at least, calibration record).

    A calibration file must belong to the event in `context` (same run and event id) when both are known; a
    calibration table picks the bin holding the event's observable (`context`, or the one set with
    `level_context`), and without an event its widest level per label. Every problem is one InputError.
    """
    ctx = context if context is not None else current_level_context()
    if isinstance(spec, str) and is_calibration_spec(spec):
        cal = read_calibration(spec.strip())
        if ctx is not None and cal.run_id is not None and cal.event_id is not None:
            if (cal.run_id, cal.event_id) != (ctx.run_id, ctx.event_id):
                raise InputError(
                    f"{cal.path}: calibration of run {cal.run_id} event {cal.event_id}, "
                    f"not of this scan's run {ctx.run_id} event {ctx.event_id}"
                )
        method = f"resimulation ({cal.path.name}, N={cal.n}, sha256 {cal.sha256[:12]})"
        return LevelChoice(method, dict(cal.levels), cal.record())
    if isinstance(spec, Mapping) and is_calibration_spec(spec):
        table = read_calibration_table(_table_path(spec))
        if ctx is None:  # no event known (a configuration check): the widest bin, conservative, said so
            widest = table.widest()
            record: dict[str, Any] = {
                "kind": "table",
                "schema": TABLE_SCHEMA,
                "file": table.path.name,
                "sha256": table.sha256,
                "observable": table.observable,
                "value": None,
                "bin": None,
                "levels": widest,
            }
            return LevelChoice(f"table ({table.path.name} widest bin, sha256 {table.sha256[:12]})", widest, record)
        if table.observable not in ctx.observables:
            raise InputError(f"{table.path}: the event has no {table.observable}")
        value = float(ctx.observables[table.observable])
        index, b = table.lookup(value)
        record = {
            "kind": "table",
            "schema": TABLE_SCHEMA,
            "file": table.path.name,
            "sha256": table.sha256,
            "observable": table.observable,
            "value": value,
            "bin": index,
            "bin_range": [b.lo, b.hi],
            "n": b.n,
            "levels": dict(b.levels),
        }
        method = f"table ({table.path.name} bin {index}, {table.observable} {value:g}, sha256 {table.sha256[:12]})"
        return LevelChoice(method, dict(b.levels), record)
    method, levels = _plain_product_levels(spec)  # type: ignore[arg-type]
    return LevelChoice(method, levels, None)


def calibration_levels(spec: LevelSpec | Mapping[str, Any]) -> dict[str, float]:
    """Levels of a calibration specification without an event: the file's, or a table's widest per label."""
    if isinstance(spec, str):
        return dict(read_calibration(spec.strip()).levels)
    if isinstance(spec, Mapping):
        return read_calibration_table(_table_path(spec)).widest()
    raise InputError(f"containment {spec!r}: not a calibration file or table")


def context_of_event(event: Any) -> LevelContext:
    """The LevelContext of a ``skyscan.reco.event.Event`` (its ids and pulse observables)."""
    p = event.pulses
    return LevelContext(int(event.run_id), int(event.event_id), event_observables(p.string, p.om, p.charge))


def scan_level_context(outdir: str | os.PathLike[str]) -> LevelContext | None:
    """The LevelContext of the event of a scan directory (OUTDIR/event.json), None when there is no readable event
    (the merge then reports the missing or bad event itself)."""
    from skyscan.reco.event import read_event

    path = Path(outdir) / "event.json"
    if not path.is_file():
        return None
    try:
        return context_of_event(read_event(path).event)
    except Exception:  # the merge reads the event again and reports what is wrong with it
        return None
