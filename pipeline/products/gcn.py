"""Drafts of the GCN circular and notice for a localised track-like alert.

The circular's wording lives in an operator-editable template (config/circular.txt, string.Template syntax) so it
can change without touching code; this module only computes the values. What a person must still write or confirm
(the catalog-sources paragraph, the letter suffix of the event name, unknown facts) is marked ``[[TODO: ...]]``.
The notice follows the GCN schema for IceCube single-neutrino alerts (``single_neutrino_alerts.schema.json``, topic
``gcn.notices.icecube.gold_bronze_track_alerts``): only fields that schema defines, only its allowed values, and only
those a scan can fill. See docs/gcn-drafts.md for the field-by-field mapping.
"""

from __future__ import annotations

import math
import os
import string
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from skyscan.errors import InputError
from skyscan.products.meta import SkymapMeta
from skyscan.timestamps import iso_z

NOTICE_SCHEMA = "https://gcn.nasa.gov/schema/main/gcn/notices/icecube/single_neutrino_alerts.schema.json"
PURITY_PERCENT = {"gold": 50, "bronze": 30}
"""Average astrophysical purity of IceCube's track-alert streams, as quoted in their circulars."""
PROBABILITY_WORDS = {"gold": "high", "bronze": "moderate"}
"""How IceCube's circulars describe the probability of astrophysical origin for each stream."""
STREAM_NAMES = {"gold": "ICECUBE_Astrotrack_GOLD", "bronze": "ICECUBE_Astrotrack_BRONZE"}
"""The GCN stream names of IceCube's Gold and Bronze track alerts."""
PIPELINES = {"gold": "Gold Track Alert", "bronze": "Bronze Track Alert"}
"""The notice's `pipeline` value per stream (the schema's allowed values)."""

SECONDS_PER_YEAR = 365.25 * 86400.0
TODO_OPEN = "[[TODO: "
_LETTER = "A"


def todo(text: str) -> str:
    """A clearly marked placeholder for a person to resolve before sending."""
    return f"{TODO_OPEN}{text}]]"


def load_template(path: str | os.PathLike[str] | None = None) -> str:
    """The circular template: `path` if given, else the packaged config/circular.txt."""
    if path is None:
        from skyscan.resources import data_dir

        return str(data_dir("config").joinpath("circular.txt").read_text(encoding="utf-8"))
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such circular template")
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read circular template ({exc.__class__.__name__})") from None


def rounded_time(t: datetime) -> datetime:
    """UTC time rounded (half up) to 0.01 s, as circulars quote it."""
    utc = t.astimezone(timezone.utc) + timedelta(microseconds=5000)
    return utc.replace(microsecond=(utc.microsecond // 10000) * 10000)


def event_name(t: datetime | None, letter: str = _LETTER) -> str:
    """IceCube-YYMMDD plus a letter (the letter orders the day's events and must be confirmed by a person)."""
    if t is None:
        return f"IceCube-YYMMDD{letter}"
    return f"IceCube-{rounded_time(t).strftime('%y%m%d')}{letter}"


def _stream_key(stream: str | None) -> str | None:
    return None if stream is None else stream.strip().lower()


def _origin_sentence(stream: str | None, todos: list[str]) -> str:
    key = _stream_key(stream)
    if key in PROBABILITY_WORDS:
        return f"with a {PROBABILITY_WORDS[key]} probability of being of astrophysical origin"
    return _todo_of(todos, "how probable an astrophysical origin is for this stream (IceCube: Gold high, Bronze moderate)")


def _stream_sentence(stream: str | None, todos: list[str]) -> str:
    key = _stream_key(stream)
    if key is None:
        return _todo_of(
            todos, "alert stream (Gold or Bronze), its stream name and its average astrophysical purity (Gold 50%, Bronze 30%)"
        )
    if key in PURITY_PERCENT:
        return (
            f"The event was selected by the {STREAM_NAMES[key]} alert stream. The average astrophysical neutrino "
            f"purity for {key.capitalize()} alerts is {PURITY_PERCENT[key]}%."
        )
    return f"The event was selected by the {stream} alert stream. " + _todo_of(todos, f"the purity of the {stream} stream")


def _far_sentence(far_per_year: float | None) -> str:
    if far_per_year is None:
        return ""
    return (
        f"This alert has an estimated false alarm rate of {far_per_year:.4g} events per year due to atmospheric "
        "backgrounds."
    )


def _todo_of(todos: list[str], text: str, listed: str | None = None) -> str:
    """A [[TODO]] in the circular's body, remembered (as `listed`, default the text) so the draft notes list it."""
    todos.append(listed or text)
    return todo(text)


def two_significant(value: float) -> str:
    """A positive number with two significant figures, never in exponent notation (areas: 0.013, 4.6, 120)."""
    if not math.isfinite(value) or value <= 0.0:
        return f"{value:g}"
    digits = 1 - math.floor(math.log10(value))
    rounded = round(value, digits)
    if rounded >= 10 ** (2 - digits):  # rounding carried into a new digit (e.g. 9.96 -> 10)
        digits -= 1
        rounded = round(value, digits)
    return f"{rounded:.{max(digits, 0)}f}"


def _position_line(value: float, plus: float, minus: float, percent: str) -> str:
    return f"{value:.2f} (+{plus:.2f}, -{minus:.2f} deg {percent}% PSF containment) J2000"


def circular_values(meta: SkymapMeta) -> dict[str, str]:
    """Every placeholder of the circular template and its text (see docs/gcn-drafts.md for the list).

    The draft notes (`review_block`) list every sentence an operator must still write (each [[TODO]] of the body,
    in the order they appear) and then what to check before sending.
    """
    r90, r50 = meta.regions["90"], meta.regions["50"]
    bf = meta.best_fit
    name = event_name(meta.event_time)
    body: list[str] = []  # [[TODO]]s of the body, in template order
    if meta.event_time is None:
        date_slash = _todo_of(body, "YYYY/MM/DD", "the detection date YYYY/MM/DD (UTC), also in the event name")
        date_iso = todo("YYYY-MM-DD")
        time_ut = _todo_of(body, "HH:MM:SS.SS", "the detection time HH:MM:SS.SS (UT)")
    else:
        rt = rounded_time(meta.event_time)
        date_slash = rt.strftime("%Y/%m/%d")
        date_iso = rt.strftime("%Y-%m-%d")
        time_ut = rt.strftime("%H:%M:%S.") + f"{rt.microsecond // 10000:02d}"
    origin = _origin_sentence(meta.stream, body)
    stream_sentence = _stream_sentence(meta.stream, body)
    catalog = _todo_of(
        body,
        "catalog sources: list the known gamma-ray or X-ray sources (e.g. from the Fermi-LAT catalog) inside the "
        "90% region, or state that none are found",
    )
    contact = _todo_of(body, "contact line of the alert team")

    checks = [
        todo(
            f"confirm the letter suffix: the '{_LETTER}' in {name} is a placeholder; use the next free letter "
            "for that day"
        )
    ]
    if not r90.ra_errors_meaningful:
        checks.append(todo(f"the 90% region's RA errors are not meaningful ({r90.note}); reword the RA line"))
    checks.extend(unresolved_notes(meta))
    if not levels_calibrated(meta):
        checks.append(
            todo(
                f"containment levels are '{meta.containment_method}' (90%: 2*delta-llh <= {r90.level_2dllh:g}); "
                "IceCube circulars quote levels calibrated with simulations"
            )
        )
    if meta.far_per_year is None:
        checks.append(todo("the event has no false alarm rate (far_per_year): add IceCube's FAR sentence if one is known"))
    if meta.simulated:
        checks.append(todo("this is a SIMULATED event: do not send"))
    review = [
        "==== DRAFT -- NOT FOR DISTRIBUTION. Resolve every [[TODO: ...]] and delete this block before sending ====",
        f"Sentences still to write ({len(body)}):",
        *(f"  {i}. {text}" for i, text in enumerate(body, start=1)),
        "Checks:",
        *(f"  - {c}" for c in checks),
        f"Drafted by skyscan {meta.software_version}"
        + (f" (git {meta.git_revision[:12]})" if meta.git_revision else "")
        + f" on {meta.created_iso} from run {meta.run_id} event {meta.event_id}"
        + f" (config sha256 {meta.config_sha256[:12]}; source: {meta.source}).",
        f"Containment levels: {meta.containment_method}.",
        "==== END OF DRAFT NOTES ====",
    ]
    key = _stream_key(meta.stream)
    return {
        "review_block": "\n".join(review) + "\n",
        "event_name": name,
        "run_id": str(meta.run_id),
        "event_id": str(meta.event_id),
        "date_slash": date_slash,
        "date_iso": date_iso,
        "time_ut": time_ut,
        "stream": meta.stream or todo("stream"),
        "stream_name": STREAM_NAMES.get(key or "", meta.stream or todo("stream name")),
        "origin_phrase": origin,
        "stream_sentence": stream_sentence,
        "far_sentence": _far_sentence(meta.far_per_year),
        "ra": f"{bf.ra_deg:.2f}",
        "dec": f"{bf.dec_deg:.2f}",
        "ra_plus_90": f"{r90.ra_plus_deg:.2f}",
        "ra_minus_90": f"{r90.ra_minus_deg:.2f}",
        "dec_plus_90": f"{r90.dec_plus_deg:.2f}",
        "dec_minus_90": f"{r90.dec_minus_deg:.2f}",
        "ra_line": _position_line(bf.ra_deg, r90.ra_plus_deg, r90.ra_minus_deg, "90"),
        "dec_line": _position_line(bf.dec_deg, r90.dec_plus_deg, r90.dec_minus_deg, "90"),
        "ra_line_50": _position_line(bf.ra_deg, r50.ra_plus_deg, r50.ra_minus_deg, "50"),
        "dec_line_50": _position_line(bf.dec_deg, r50.dec_plus_deg, r50.dec_minus_deg, "50"),
        "area_90": two_significant(r90.area_deg2),
        "area_50": two_significant(r50.area_deg2),
        "containment_method": meta.containment_method,
        "catalog_paragraph": catalog,
        "contact_sentence": contact,
        "software_version": meta.software_version,
        "created": meta.created_iso,
    }


def levels_calibrated(meta: SkymapMeta) -> bool:
    """True for IceCube's calibrated levels and for levels from a calibration of this likelihood (a calibration
    file or table: ``SkymapMeta.calibrated``), whose regions are quoted without the 'not calibrated' note."""
    return meta.containment_method == "calibrated" or bool(meta.calibrated)


def unresolved_notes(meta: SkymapMeta) -> list[str]:
    """A draft note per containment region that holds fewer than ``scan.resolve.min_pixels`` pixels of the
    finest scanned nside (the refinement stopped at ``scan.resolve.max_nside``, or was turned off): its area and
    errors are then set by the pixel size, not by the likelihood, and the true direction may lie outside."""
    from skyscan.products.credible import resolution_of, resolve_max_nside, resolve_min_pixels

    min_pixels = resolve_min_pixels(meta.config_yaml)
    max_nside = resolve_max_nside(meta.config_yaml)
    notes = []
    for label in meta.regions:
        res = resolution_of(meta.map_probability, label, min_pixels)
        if res["resolved"] is not False:
            continue
        if min_pixels and int(res["finest_nside"]) < max_nside:
            why = ("the refinement stops once the 90% region is resolved; raise scan.resolve.min_pixels to "
                   "resolve this one too")
        else:
            why = "say so in the circular, or rescan with a higher scan.resolve.max_nside"
        notes.append(
            todo(
                f"the {label}% region is not resolved: it holds {res['finest_pixels']} pixel(s) of nside "
                f"{res['finest_nside']} (fewer than {min_pixels}), so its area and errors are set by the pixel "
                f"size; {why}"
            )
        )
    return notes


def render_circular(meta: SkymapMeta, template: str | None = None, source: str = "circular template") -> str:
    """The circular draft: the template (default: the packaged one) with its placeholders filled in."""
    text = load_template() if template is None else template
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    try:
        out = string.Template(body).substitute(circular_values(meta))
    except KeyError as exc:
        raise InputError(f"{source}: unknown placeholder ${exc.args[0]} (see docs/gcn-drafts.md)") from None
    except ValueError as exc:
        raise InputError(f"{source}: {exc} (write $$ for a literal dollar sign)") from None
    # Optional sentences may be empty: no trailing blanks where they were.
    return "\n".join(line.rstrip() for line in out.strip("\n").splitlines()) + "\n"


def ra_dec_error_90(meta: SkymapMeta) -> float:
    """One error radius for the notice: the radius (deg) of a circle with the 90% region's area."""
    return math.degrees(math.acos(1.0 - meta.regions["90"].area_deg2 * (math.pi / 180.0) ** 2 / (2.0 * math.pi)))


NOTICE_FIELDS = (
    "$schema", "mission", "instrument", "messenger", "pipeline", "event_name", "id", "alert_datetime",
    "alert_type", "alert_tense", "alert_topology", "number_of_events", "ra", "dec", "ra_dec_error",
    "containment_probability", "systematic_included", "trigger_time", "far", "p_astro", "nu_energy", "healpix_url",
)
"""Every field the notice may carry, in the order written; all are defined by the single-neutrino schema."""


def healpix_url(base_url: str, folder: str, file_name: str = "skymap.multiorder.fits") -> str:
    """The address of a published map: ``<base_url>/<folder>/<file_name>`` (the outbox folder of the alert).

    ``base_url`` must be an absolute http(s) URL without query or fragment (InputError otherwise): the notice
    carries it as it is, and a receiver downloads the map from it."""
    from urllib.parse import quote, urlsplit

    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise InputError(f"outbox base URL: expected an http(s) address without query or fragment, got {base_url!r}")
    return f"{base_url.strip().rstrip('/')}/{quote(folder)}/{quote(file_name)}"


def notice(meta: SkymapMeta, healpix_url: str | None = None) -> dict[str, Any]:
    """The single_neutrino_alerts notice fields that the scan can fill (unknown ones are left out).

    A simulated event is marked with the schema's own value for test triggers, ``alert_tense: "test"``.
    ``healpix_url`` (the schema's address of the HEALPix map) is set only when the map is published at a known
    address (an outbox with a base URL: ``skyscan.ops.publish``), never guessed.
    """
    pipeline = PIPELINES.get(_stream_key(meta.stream) or "")
    doc: dict[str, Any] = {
        "$schema": NOTICE_SCHEMA,
        "mission": "IceCube",
        "instrument": "IC86",
        "messenger": "Neutrino",
        "pipeline": pipeline,
        "event_name": [event_name(meta.event_time)],
        "id": [f"{meta.run_id}_{meta.event_id}"],
        "alert_datetime": meta.created_iso,
        "alert_type": "update",
        "alert_tense": "test" if meta.simulated else "current",
        "alert_topology": "Track",
        "number_of_events": 1,
        "ra": round(meta.best_fit.ra_deg, 4),
        "dec": round(meta.best_fit.dec_deg, 4),
        "ra_dec_error": round(ra_dec_error_90(meta), 4),
        "containment_probability": 0.9,
        "systematic_included": levels_calibrated(meta),
        "trigger_time": None if meta.event_time is None else iso_z(meta.event_time),
        "far": None if meta.far_per_year is None else meta.far_per_year / SECONDS_PER_YEAR,
        "p_astro": meta.signalness,
        "nu_energy": None if meta.energy_gev is None else meta.energy_gev / 1000.0,
        "healpix_url": healpix_url,
    }
    return {k: v for k, v in doc.items() if v is not None}


__all__ = [
    "NOTICE_FIELDS",
    "NOTICE_SCHEMA",
    "PIPELINES",
    "PURITY_PERCENT",
    "STREAM_NAMES",
    "circular_values",
    "event_name",
    "healpix_url",
    "levels_calibrated",
    "load_template",
    "notice",
    "ra_dec_error_90",
    "render_circular",
    "rounded_time",
    "todo",
    "two_significant",
    "unresolved_notes",
]
