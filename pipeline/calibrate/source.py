"""What a calibration takes from a finished scan: the best-fit track, the plan of stages and the disc radius.

The best-fit track is the global best pixel of every stage result: its direction (RA/Dec, and the detector
zenith/azimuth at the event time), its fitted vertex (x, y, z at time t, metres and ns) and a light-yield estimate
(the event's energy when it records one, else the energy whose expected charge along that track equals the
observed signal charge; see `energy_estimate`). Angles in degrees at this interface.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from skyscan.errors import InputError
from skyscan.graph.layout import ScanLayout
from skyscan.reco.event import Event
from skyscan.reco.geometry import Geometry

DISC_FACTOR = 3.5
"""Disc radius = DISC_FACTOR x the radius of the source scan's Wilks 99% region (2*delta-llh <= 9.21).

For a parabolic likelihood the radius of a contour grows as the square root of its level, so this disc holds the
region of a level up to DISC_FACTOR**2 x 9.21 ~ 113: wider than any calibrated 99% level seen so far (IceCube's
fixed 90% level is 64.2). Every pseudo-event records the smallest 2*delta-llh on the disc's edge, so a disc that
was too small shows up in calibration.json (``disc.too_small``)."""
WILKS_99 = -2.0 * math.log(0.01)
MIN_DISC_DEG = 6.0
MAX_DISC_DEG = 60.0


@dataclass(frozen=True)
class StagePlan:
    """One stage of the source scan's plan as the calibration repeats it (restricted to the disc)."""

    nside: int
    refine: int | None


@dataclass(frozen=True)
class SourceTrack:
    """The best-fit track of a scan and everything needed to resimulate and re-reconstruct it."""

    scandir: str
    run_id: int
    event_id: int
    event_time: datetime
    stream: str | None
    geometry: str
    ra_deg: float
    dec_deg: float
    zenith_deg: float
    azimuth_deg: float
    vertex: tuple[float, float, float]
    time_ns: float
    energy_gev: float
    energy_from: str  # "event" | "charge"
    llh: float
    nside: int
    rule: str
    stages: tuple[StagePlan, ...]
    adaptive: dict[str, Any]
    resolve: dict[str, int]  # scan.resolve: min_pixels (0: off), max_nside
    reco: dict[str, Any]
    disc_deg: float
    r99_deg: float
    config_sha256: str
    event_sha256: str

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["event_time"] = self.event_time.isoformat().replace("+00:00", "Z")
        doc["vertex"] = list(self.vertex)
        doc["stages"] = [asdict(s) for s in self.stages]
        return doc


def energy_estimate(event: Event, geometry: Geometry, zenith_deg: float, azimuth_deg: float,
                    vertex: tuple[float, float, float], noise_rate_hz: float) -> float:  # fmt: skip
    """Muon energy (GeV) whose expected charge along the track equals the observed charge minus the noise.

    Approximate: the simulator's light model (constant yield along an infinite track; ``photonics.light_yield``
    is linear in energy), so it inverts in closed form. At least 1 TeV, as no alert is dimmer.
    """
    from skyscan.reco import photonics as ph

    zen, azi = math.radians(zenith_deg), math.radians(azimuth_deg)
    d = -np.array([math.sin(zen) * math.cos(azi), math.sin(zen) * math.sin(azi), math.cos(zen)])
    rel = geometry.pos - np.asarray(vertex, dtype=np.float64)
    along = rel @ d
    dist = np.linalg.norm(rel - along[:, None] * d[None, :], axis=1)
    per_yield = float(np.sum(geometry.efficiency * ph.charge_per_yield(dist)))
    noise = noise_rate_hz * 1e-9 * ph.READOUT_WINDOW_NS * len(geometry)
    signal = max(float(np.sum(event.pulses.charge)) - noise, 1.0)
    yield_ = signal / max(per_yield, 1e-12)
    return max(1e3, (yield_ - 1.0) * ph.CRITICAL_ENERGY_GEV)


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def r99_deg(m: Any) -> float:
    """Largest distance (deg) from the best fit of a pixel inside the Wilks 99% contour, plus that pixel's size."""
    import healpy as hp

    d2 = m.dllh2
    rows = np.flatnonzero(np.isfinite(d2) & (d2 <= WILKS_99))
    best = m.best_index
    vec0 = np.asarray(hp.pix2vec(int(m.nside[best]), int(m.ipix[best]), nest=True))
    far = 0.0
    for nside in np.unique(m.nside[rows]):
        sel = rows[m.nside[rows] == nside]
        vec = np.asarray(hp.pix2vec(int(nside), m.ipix[sel], nest=True))
        cos = np.clip(vec0 @ vec, -1.0, 1.0)
        far = max(far, float(np.degrees(np.max(np.arccos(cos)))) + float(np.degrees(hp.nside2resol(int(nside)))))
    return far


def disc_radius_deg(r99_deg: float, override: float | None = None) -> float:
    """The disc each pseudo-event is reconstructed over (see DISC_FACTOR); ``override`` wins (degrees)."""
    if override is not None:
        if not math.isfinite(override) or not 0.0 < override <= 180.0:
            raise InputError(f"--disc-deg: must lie in (0, 180], got {override!r}")
        return float(override)
    return float(min(MAX_DISC_DEG, max(MIN_DISC_DEG, DISC_FACTOR * r99_deg)))


def _resolve_of(config: Any) -> dict[str, int]:
    """``scan.resolve`` of the configuration (min_pixels 0 where the software has no resolving stages)."""
    resolve = getattr(config, "resolve", None)
    if resolve is None:
        return {"min_pixels": 0, "max_nside": 0}
    return {"min_pixels": int(resolve.min_pixels), "max_nside": int(resolve.max_nside)}


def read_source(scandir: str | os.PathLike[str], disc_deg: float | None = None) -> SourceTrack:
    """The best-fit track of a finished scan (its stage results and event); InputError if it is not finished."""
    from skyscan import iers_cache
    from skyscan.campaign.report.rows import map_from_stages
    from skyscan.graph.event import load_event
    from skyscan.nodes.results import read_fits
    from skyscan.reco.coords import equatorial_to_local
    from skyscan.settings.scan import load_config

    folder = Path(scandir)
    layout = ScanLayout(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such scan directory")
    if not layout.event.is_file():
        raise InputError(f"{layout.event}: missing event file (not a scan directory?)")
    if not layout.summary.is_file():
        raise InputError(f"{folder}: the scan is not finished (no summary.json); calibrate a merged scan")
    ef, geo = load_event(layout.event)
    ev = ef.event
    config = load_config(layout.config if layout.config.is_file() else None)
    rows = [read_fits(p) for _, p in layout.list_all_results()]
    if not rows:
        raise InputError(f"{folder}: no scan results (stage*/scan-s*-*.h5)")
    nside = np.concatenate([np.full(r.ipix.size, r.nside, dtype=np.int64) for r in rows])
    llh = np.concatenate([np.asarray(r.llh, dtype=np.float64) for r in rows])
    if not np.any(np.isfinite(llh)):
        raise InputError(f"{folder}: every pixel of the scan failed: no best fit to calibrate")
    ipix = np.concatenate([np.asarray(r.ipix, dtype=np.int64) for r in rows])
    cols = {k: np.concatenate([np.asarray(getattr(r, k), dtype=np.float64) for r in rows]) for k in "xyzt"}
    order = np.lexsort((ipix, -nside, np.where(np.isfinite(llh), llh, np.inf)))
    i = int(order[0])
    import healpy as hp

    theta, phi = hp.pix2ang(int(nside[i]), int(ipix[i]), nest=True)
    ra, dec = float(phi), 0.5 * math.pi - float(theta)
    iers_cache.install()
    zen, azi = equatorial_to_local(np.array([ra]), np.array([dec]), ev.time)
    zen_deg, azi_deg = math.degrees(float(zen[0])), math.degrees(float(azi[0])) % 360.0
    vertex = (float(cols["x"][i]), float(cols["y"][i]), float(cols["z"][i]))
    if not all(math.isfinite(v) for v in (*vertex, float(cols["t"][i]))):
        raise InputError(f"{folder}: the best-fit pixel has no fitted vertex")
    reco = dict(config.reco)
    noise = float(reco.get("noise_rate_hz", 500.0))
    if ev.energy_gev is not None and ev.energy_gev > 0:
        energy, energy_from = float(ev.energy_gev), "event"
    else:
        energy, energy_from = energy_estimate(ev, geo, zen_deg, azi_deg, vertex, noise), "charge"
    r99 = r99_deg(map_from_stages(folder))
    config_text = layout.config.read_text(encoding="utf-8") if layout.config.is_file() else ""
    return SourceTrack(
        scandir=str(folder),
        run_id=ev.run_id,
        event_id=ev.event_id,
        event_time=ev.time,
        stream=ev.stream,
        geometry=ev.geometry,
        ra_deg=math.degrees(ra) % 360.0,
        dec_deg=math.degrees(dec),
        zenith_deg=zen_deg,
        azimuth_deg=azi_deg,
        vertex=vertex,
        time_ns=float(cols["t"][i]),
        energy_gev=energy,
        energy_from=energy_from,
        llh=float(llh[i]),
        nside=int(nside[i]),
        rule=config.rule,
        stages=tuple(StagePlan(s.nside, s.refine) for s in config.stages),
        adaptive={
            "threshold": config.threshold(config.adaptive.level),
            "margin": config.adaptive.margin,
            "max_refine": config.adaptive.max_refine,
        },
        resolve=_resolve_of(config),
        reco=reco,
        disc_deg=disc_radius_deg(r99, disc_deg),
        r99_deg=r99,
        config_sha256=hashlib.sha256(config_text.encode("utf-8")).hexdigest(),
        event_sha256=_sha256_file(layout.event),
    )


def source_from_dict(doc: Any) -> SourceTrack:
    """The SourceTrack recorded in a calibration request (see `SourceTrack.as_dict`)."""
    from skyscan.reco.event import parse_time

    try:
        d = dict(doc)
        d["event_time"] = parse_time(d["event_time"], "source.event_time")
        d["vertex"] = tuple(float(v) for v in d["vertex"])
        d["stages"] = tuple(StagePlan(int(s["nside"]), s.get("refine")) for s in d["stages"])
        return SourceTrack(**d)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"calibration request: bad source record ({exc})") from None


def digest_of(doc: Any) -> str:
    """sha256 of a JSON document in canonical form (sorted keys)."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode("utf-8")).hexdigest()


__all__ = [
    "DISC_FACTOR",
    "MAX_DISC_DEG",
    "MIN_DISC_DEG",
    "SourceTrack",
    "StagePlan",
    "digest_of",
    "disc_radius_deg",
    "energy_estimate",
    "r99_deg",
    "read_source",
    "source_from_dict",
]
