"""One pseudo-event: simulate the source's best-fit track (systematics varied), reconstruct it over a disc.

The reconstruction repeats the source scan's stages (same nsides, same refinement rule and counts, same ``reco:``
settings, same likelihood) restricted to a disc of radius ``disc_deg`` around the pseudo-event's own true
direction (the source's best fit): stage 0 fits every pixel whose area touches the disc instead of the whole sky,
every later stage refines around the global best fit as ``skyscan.graph.refine`` does and drops pixels whose area
lies wholly outside the disc. The multi-order map of those fits gives the test statistic: the 2*delta-llh of the
map pixel holding the truth (exactly what the campaign catalog calls ``ref_dllh2``, and what decides whether a
region "contains" a direction). Each pseudo-event draws everything from its own stream ``(seed, index)``, so a
re-run batch gives the same numbers.
"""

from __future__ import annotations

import importlib
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from skyscan.calibrate.source import SourceTrack

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class PseudoResult:
    """What one pseudo-event gave: the truth's 2*delta-llh (None: its pixel failed), and how the disc fared."""

    index: int
    dllh2: float | None
    best_offset_deg: float  # best fit to truth
    edge_dllh2: float | None  # smallest 2*delta-llh on the disc's outer ring of stage-0 pixels
    pixels: int
    hits: int
    total_charge: float
    cpu_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_systematics(spec: str | None) -> Any:
    """The simulator's systematics for ``none`` | ``default`` | a YAML file, or None when the simulator has none.

    ``skyscan.reco.systematics`` is looked up at run time: a simulator without it runs without variations
    ("none"), which the calibration records."""
    if spec is None or spec == "none":
        return None
    try:
        module = importlib.import_module("skyscan.reco.systematics")
    except ImportError:
        from skyscan.errors import InputError

        raise InputError(f"--systematics {spec}: this simulator has no systematics (use none)") from None
    return module.load_systematics(spec)


def systematics_record(spec: str | None) -> Any:
    """What calibration.json records of the systematics: their ``to_dict()``, or {"name": "none"}."""
    sys_obj = load_systematics(spec)
    if sys_obj is None:
        return {"name": "none"}
    out: Any = sys_obj.to_dict()
    return out


def _disc_pixels(nside: int, vec: npt.NDArray[np.float64], radius_rad: float) -> IntArray:
    import healpy as hp

    return np.asarray(hp.query_disc(nside, vec, radius_rad, inclusive=True, nest=True), dtype=np.int64)


def simulate_pseudo(source: SourceTrack, index: int, seed: int, systematics: Any, geometry: Any) -> Any:
    """The pseudo-event ``index``: the source's best-fit track simulated from stream (seed, index)."""
    from skyscan.reco.simulate import TrackSpec, simulate_track

    rng = np.random.default_rng([int(seed), int(index)])
    spec = TrackSpec(
        zenith_deg=source.zenith_deg,
        azimuth_deg=source.azimuth_deg,
        energy_gev=source.energy_gev,
        vertex=source.vertex,
        time_ns=source.time_ns,
        noise_rate_hz=float(source.reco.get("noise_rate_hz", 500.0)),
        jitter_ns=float(source.reco.get("jitter_ns", 3.0)),
    )
    kwargs: dict[str, Any] = {}
    if systematics is not None:
        kwargs["systematics"] = systematics
    event, _ = simulate_track(
        spec, geometry, rng, run_id=source.run_id, event_id=source.event_id, event_time=source.event_time,
        stream=source.stream, **kwargs,
    )  # fmt: skip
    return event


def reconstruct_disc(source: SourceTrack, event: Any, geometry: Any) -> tuple[Any, int]:
    """(multi-order map, pixels fitted) of the source's stages restricted to the disc around the truth."""
    import healpy as hp

    from skyscan.graph.refine import select_stage
    from skyscan.products.moc import StageResult, build_multiorder
    from skyscan.reco import coords
    from skyscan.reco.fit import make_reconstruction
    from skyscan.reco.settings import RecoSettings

    settings = RecoSettings.from_mapping(dict(source.reco) or None)
    reco = make_reconstruction("pandel-track", event, geometry, settings)
    centre = np.asarray(hp.ang2vec(math.radians(90.0 - source.dec_deg), math.radians(source.ra_deg)))
    radius = math.radians(source.disc_deg)
    results: list[StageResult] = []
    all_ns: list[IntArray] = []
    all_px: list[IntArray] = []
    all_llh: list[npt.NDArray[np.float64]] = []
    fitted = 0
    for k, stage in enumerate(source.stages):
        in_disc = _disc_pixels(stage.nside, centre, radius)
        if k == 0:
            pixels = in_disc
        else:
            prev = source.stages[k - 1]
            sel = select_stage(
                k, np.concatenate(all_ns), np.concatenate(all_px), np.concatenate(all_llh), prev.nside, stage.nside,
                source.rule, stage.refine, float(source.adaptive["threshold"]), float(source.adaptive["margin"]),
                int(source.adaptive["max_refine"]),
            )  # fmt: skip
            pixels = np.intersect1d(sel.pixels, in_disc).astype(np.int64)
        if pixels.size == 0:
            continue
        zen, azi = coords.pixel_directions(stage.nside, pixels, event.time)
        table = reco.fit_directions(zen, azi)
        fitted += int(pixels.size)
        results.append(StageResult(stage.nside, pixels, table.llh, table.x, table.y, table.z, table.t, table.status))
        all_ns.append(np.full(pixels.size, stage.nside, dtype=np.int64))
        all_px.append(pixels)
        all_llh.append(np.asarray(table.llh, dtype=np.float64))
    fitted += _resolve_stages(source, reco, event, centre, radius, results, all_ns, all_px, all_llh)
    # Outside the disc nothing was fitted: one layer of failed (NaN) nside-1 pixels makes the map cover the sky
    # as build_multiorder requires; NaN pixels are never the best fit and never inside a region.
    nan = np.full(12, np.nan)
    base = StageResult(1, np.arange(12, dtype=np.int64), nan, nan, nan, nan, nan, np.full(12, 3, dtype=np.int32))
    return build_multiorder([base, *results]), fitted


EDGE_FRACTION = 0.8
"""The disc's edge: map pixels whose centres lie beyond EDGE_FRACTION x the radius from the truth."""


def _resolve_stages(source: SourceTrack, reco: Any, event: Any, centre: npt.NDArray[np.float64], radius: float,
                    results: list[Any], all_ns: list[IntArray], all_px: list[IntArray],
                    all_llh: list[npt.NDArray[np.float64]]) -> int:  # fmt: skip
    """The scan's resolving stages (``scan.resolve``) after the configured ones, as its plan node runs them:
    refine around the best fit while the adaptive level's region has fewer than min_pixels finest pixels."""
    min_pixels, max_nside = int(source.resolve["min_pixels"]), int(source.resolve["max_nside"])
    if min_pixels <= 0 or not all_ns:
        return 0
    from skyscan.graph.refine import region_resolution, resolve_nside, resolve_refine_cap, select_resolve_stage
    from skyscan.products.moc import StageResult
    from skyscan.reco import coords

    threshold = float(source.adaptive["threshold"])
    fitted = 0
    stage = len(source.stages)
    while True:
        ns, px, lh = np.concatenate(all_ns), np.concatenate(all_px), np.concatenate(all_llh)
        nside = resolve_nside(region_resolution(ns, px, lh, threshold, min_pixels), max_nside)
        if nside is None:
            return fitted
        sel = select_resolve_stage(stage, ns, px, lh, nside, threshold, float(source.adaptive["margin"]),
                                   resolve_refine_cap(int(source.adaptive["max_refine"]), min_pixels))  # fmt: skip
        pixels = np.intersect1d(sel.pixels, _disc_pixels(nside, centre, radius)).astype(np.int64)
        if pixels.size == 0:
            return fitted
        zen, azi = coords.pixel_directions(nside, pixels, event.time)
        table = reco.fit_directions(zen, azi)
        fitted += int(pixels.size)
        results.append(StageResult(nside, pixels, table.llh, table.x, table.y, table.z, table.t, table.status))
        all_ns.append(np.full(pixels.size, nside, dtype=np.int64))
        all_px.append(pixels)
        all_llh.append(np.asarray(table.llh, dtype=np.float64))
        stage += 1


def edge_dllh2(source: SourceTrack, m: Any) -> float | None:
    """Smallest 2*delta-llh of the fitted map pixels near the disc's edge (see EDGE_FRACTION); None if none.

    Below a calibrated level it means that contour reaches the edge, so the disc may have cut it off."""
    import healpy as hp

    centre = np.asarray(hp.ang2vec(math.radians(90.0 - source.dec_deg), math.radians(source.ra_deg)))
    ring = EDGE_FRACTION * math.radians(source.disc_deg)
    d2 = m.dllh2
    best: float | None = None
    for nside in np.unique(m.nside):
        rows = np.flatnonzero(m.nside == nside)
        vec = np.asarray(hp.pix2vec(int(nside), m.ipix[rows], nest=True))
        far = np.arccos(np.clip(centre @ vec, -1.0, 1.0)) >= ring
        vals = d2[rows][far & np.isfinite(d2[rows])]
        if vals.size:
            low = float(vals.min())
            best = low if best is None else min(best, low)
    return best


def run_pseudo(source: SourceTrack, index: int, seed: int, systematics: Any, geometry: Any) -> PseudoResult:
    """Simulate and reconstruct pseudo-event ``index``; the truth's 2*delta-llh and the bookkeeping."""
    from skyscan.campaign.report.rows import dllh2_at
    from skyscan.products.containment import best_fit_radec
    from skyscan.products.levels import event_observables
    from skyscan.reco.coords import angular_distance

    t0 = time.process_time()
    event = simulate_pseudo(source, index, seed, systematics, geometry)
    m, fitted = reconstruct_disc(source, event, geometry)
    value = dllh2_at(m, source.ra_deg, source.dec_deg)
    ra, dec = best_fit_radec(m)
    offset = math.degrees(float(angular_distance(math.radians(ra), math.radians(dec),
                                                 math.radians(source.ra_deg), math.radians(source.dec_deg))))  # fmt: skip
    obs = event_observables(event.pulses.string, event.pulses.om, event.pulses.charge)
    return PseudoResult(
        index=index,
        dllh2=float(value) if math.isfinite(value) else None,
        best_offset_deg=offset,
        edge_dllh2=edge_dllh2(source, m),
        pixels=fitted,
        hits=int(obs["hit_doms"]),
        total_charge=float(obs["total_charge"]),
        cpu_seconds=time.process_time() - t0,
    )


__all__ = ["PseudoResult", "load_systematics", "reconstruct_disc", "run_pseudo", "simulate_pseudo",
           "systematics_record"]  # fmt: skip
