"""The FITS products: the multi-order map (skymap.multiorder.fits) and the flat 2*delta-llh map (skymap.2dllh.fits).

Both carry the same IceCube-style event cards and provenance (:func:`event_cards`), including the configuration
text as COMMENT cards. The layouts are documented in docs/skymap-format.md; the readers here follow that document
(no ligo.skymap needed). Orderings: NUNIQ for the multi-order map, RING for the flat map. Files are written
atomically.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.io import fits

from skyscan.atomic import atomic_path
from skyscan.errors import InputError
from skyscan.products.meta import PRODUCT_LEVELS, SkymapMeta, mjd_of
from skyscan.products.moc import MultiOrderMap, probability_density

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

FLAT_EXTNAME = "SKYMAP_2DLLH"
"""EXTNAME of the flat map's table (the multi-order map's is SKYMAP, as ligo.skymap writes it)."""
_CONFIG_CHUNK = 64  # characters of configuration per COMMENT card (72 minus the "config: " prefix)


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


def object_name(meta: SkymapMeta) -> str:
    """OBJECT of both FITS maps: run_event, as the notice's id."""
    return f"{meta.run_id}_{meta.event_id}"


def event_cards(header: fits.Header, meta: SkymapMeta) -> None:
    """IceCube-style event keys plus provenance: shared by the multi-order and the flat FITS files."""
    _put(header, "RUNID", int(meta.run_id), "run number")
    _put(header, "EVENTID", int(meta.event_id), "event number")
    if meta.event_time is not None:
        t = meta.event_time.astimezone(timezone.utc)
        _put(header, "DATE-OBS", t.strftime("%Y-%m-%dT%H:%M:%S.%f"), "UTC date of the event")
        _put(header, "MJD-OBS", mjd_of(t), "modified Julian date of the event (UTC)")
    _put(header, "OBJECT", object_name(meta), "run_event")
    _put(header, "TELESCOP", "IceCube", "neutrino observatory")
    _put(header, "INSTRUME", "IC86", "detector configuration")
    _put(header, "ORIGIN", "IceCube", "data of the IceCube Neutrino Observatory")
    _put(header, "STREAM", meta.stream, "alert stream")
    _put(header, "EVTTYPE", meta.type_of_event, "event type (alert stream or skyreader type)")
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
    if meta.calibration is not None:  # which calibration set the levels (skyscan calibrate, docs/containment.md)
        digest = meta.calibration.get("sha256")
        if isinstance(digest, str):
            _put(header, "CALIBSHA", digest[:16], "sha256 of the calibration file (first 16 hex)")
        n = meta.calibration.get("n")
        if isinstance(n, int) and not isinstance(n, bool):
            _put(header, "CALIBN", n, "pseudo-events of the calibration")
    mp = meta.map_probability
    _put(header, "MAPWEIGHT", meta.map_weight, "PROBDENSITY ~ exp(-MAPWEIGHT * delta-llh)")
    if mp is not None:
        _put(header, "MAPMATCH", mp.matched_label or "wilks", "region the map's credible region equals")
        for label in PRODUCT_LEVELS:
            if label in mp.credible_area_deg2:
                _put(header, f"CRED_AREA_{label}", round(mp.credible_area_deg2[label], 6), f"[deg2] map's {label}% credible")
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
    dens = probability_density(m, meta.map_weight)
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
    event_cards(h, meta)
    _write_hdus(path, hdu)


def _npix_to_nside(npix: int) -> int:
    """The nside of a full-sky HEALPix map of ``npix`` pixels (12 nside**2, nside a power of two); ValueError if
    there is none. Integer arithmetic: no healpy import for it."""
    nside = math.isqrt(max(npix, 0) // 12)
    if nside < 1 or 12 * nside * nside != npix or nside & (nside - 1):
        raise ValueError(f"{npix} is not the pixel count of a full-sky HEALPix map")
    return nside


def write_flat_fits(
    path: str | os.PathLike[str], values_ring: npt.ArrayLike, meta: SkymapMeta, column: str = "2DLLH"
) -> None:
    """Write a flat RING-ordered single-column HEALPix map (float32, NaN for failed pixels) readable by healpy."""
    values = np.asarray(values_ring, dtype=np.float32).reshape(-1)
    nside = _npix_to_nside(values.size)
    hdu = fits.BinTableHDU.from_columns([fits.Column(name=column, format="E", array=values)], name=FLAT_EXTNAME)
    h = hdu.header
    _put(h, "PIXTYPE", "HEALPIX", "HEALPix pixelisation")
    _put(h, "ORDERING", "RING", "pixel ordering")
    _put(h, "COORDSYS", "C", "equatorial (celestial) coordinates")
    _put(h, "NSIDE", nside, "HEALPix resolution")
    _put(h, "FIRSTPIX", 0, "first pixel")
    _put(h, "LASTPIX", values.size - 1, "last pixel")
    _put(h, "INDXSCHM", "IMPLICIT", "indexing: implicit")
    _put(h, "COVERAGE", "FULLSKY", "sky coverage")
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


__all__ = [
    "FLAT_EXTNAME",
    "MocFits",
    "event_cards",
    "header_config",
    "object_name",
    "read_multiorder_fits",
    "write_flat_fits",
    "write_multiorder_fits",
]
