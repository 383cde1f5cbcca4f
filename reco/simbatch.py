"""Seeded generation of many simulated track events: a campaign's worth, with a spread of parameters.

Every event draws its parameters (energy, direction, vertex, time) and its photons from its own random stream,
seeded by ``(seed, index)``, so event *i* is the same whatever ``count`` is and whatever else changes: a batch of
10 is the first 10 events of a batch of 1,000 with the same seed. Nothing here writes files; the command line
(``skyscan simulate --count``) does.

Distributions (documented in docs/campaigns.md):
- energy log-uniform in ``energy_range_gev``;
- direction isotropic (cos zenith uniform in [-1, 1]) or up-going only (cos zenith uniform in [-1, 0), i.e.
  zenith > 90 deg in the detector frame), azimuth uniform;
- vertex uniform inside a cylinder shrunk by ``vertex_fraction`` from the one the DOMs occupy;
- event time uniform within ``time_span_days`` after ``start_time`` (which spreads the events in right ascension);
- with ``systematics``, each event's detector variations are drawn from its own stream after its track parameters,
  so the tracks of a seed are the same with and without systematics (docs/simulation.md, "Systematics").
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np

from skyscan.reco.errors import InputError
from skyscan.reco.event import Event, Truth
from skyscan.reco.geometry import Geometry
from skyscan.reco.simulate import TrackSpec, simulate_track
from skyscan.reco.systematics import Systematics

DIRECTIONS = ("isotropic", "upgoing")
DEFAULT_START = datetime(2026, 1, 1, tzinfo=timezone.utc)
_MAX_ID = 2**63


@dataclass(frozen=True)
class BatchSpec:
    """What a batch of simulated events looks like; ``validate`` names the first bad value."""

    count: int
    seed: int = 1
    energy_range_gev: tuple[float, float] = (1e4, 1e6)
    directions: str = "isotropic"
    run_id: int = 1
    first_event_id: int = 1
    start_time: datetime = DEFAULT_START
    time_span_days: float = 365.25
    noise_rate_hz: float = 500.0
    time_ns: float = 10_000.0  # time at the vertex, within the event's readout
    starting: bool = False
    stream: str | None = "gold"
    vertex_fraction: float = 0.8
    systematics: Systematics | None = None  # None: the nominal model (the likelihood's own)

    def validate(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise InputError(f"count: must be a positive integer, got {self.count!r}")
        lo, hi = self.energy_range_gev
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 or hi < lo:
            raise InputError(f"energy range: need 0 < MIN <= MAX (GeV), got {lo:g} {hi:g}")
        if self.directions not in DIRECTIONS:
            raise InputError(f"directions: must be one of {', '.join(DIRECTIONS)}, got {self.directions!r}")
        if self.run_id < 0 or self.first_event_id < 0:
            raise InputError("run id and event id must be >= 0")
        if self.first_event_id + self.count > _MAX_ID or self.run_id >= _MAX_ID:
            raise InputError("event ids must stay below 2**63")
        if not math.isfinite(self.time_span_days) or self.time_span_days < 0:
            raise InputError(f"time span: must be a finite number of days >= 0, got {self.time_span_days!r}")
        if not math.isfinite(self.noise_rate_hz) or self.noise_rate_hz < 0:
            raise InputError(f"noise rate: must be finite and >= 0, got {self.noise_rate_hz!r}")
        if not math.isfinite(self.time_ns):
            raise InputError(f"time at the vertex: must be finite, got {self.time_ns!r}")
        if not 0.0 < self.vertex_fraction <= 1.0:
            raise InputError(f"vertex fraction: must lie in (0, 1], got {self.vertex_fraction!r}")
        if self.seed < 0:
            raise InputError(f"seed: must be >= 0, got {self.seed}")
        if self.systematics is not None:
            if not isinstance(self.systematics, Systematics):
                raise InputError(f"systematics: expected a Systematics, got {type(self.systematics).__name__}")
            self.systematics.validate()


@dataclass(frozen=True)
class Cylinder:
    """A vertical cylinder (metres, detector frame) enclosing the DOMs."""

    x0: float
    y0: float
    radius: float
    z_min: float
    z_max: float


@dataclass(frozen=True)
class BatchEvent:
    """One simulated event of a batch with what produced it."""

    index: int
    spec: TrackSpec
    event: Event
    truth: Truth


def instrumented_cylinder(geometry: Geometry) -> Cylinder:
    """The smallest vertical cylinder about the DOMs' horizontal centroid that holds every DOM."""
    pos = np.asarray(geometry.pos, dtype=np.float64)
    x0, y0 = float(pos[:, 0].mean()), float(pos[:, 1].mean())
    radius = float(np.max(np.hypot(pos[:, 0] - x0, pos[:, 1] - y0)))
    return Cylinder(x0, y0, radius, float(pos[:, 2].min()), float(pos[:, 2].max()))


def event_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of event ``index``: independent of the batch size."""
    return np.random.default_rng([int(seed), int(index)])


def draw_track(batch: BatchSpec, rng: np.random.Generator, cylinder: Cylinder) -> tuple[TrackSpec, timedelta]:
    """One event's parameters (and its time offset from the batch start) from its random stream."""
    lo, hi = batch.energy_range_gev
    log_e = rng.uniform(math.log10(lo), math.log10(hi)) if hi > lo else math.log10(lo)
    cos_zen = rng.uniform(-1.0, 1.0) if batch.directions == "isotropic" else -rng.uniform(0.0, 1.0)
    zenith = math.degrees(math.acos(min(1.0, max(-1.0, float(cos_zen)))))
    if batch.directions == "upgoing" and zenith <= 90.0:
        zenith = math.nextafter(90.0, 180.0)  # cos zenith exactly 0: keep the promise "up-going only"
    azimuth = float(rng.uniform(0.0, 360.0))
    f = batch.vertex_fraction
    r = cylinder.radius * f * math.sqrt(float(rng.uniform()))
    phi = float(rng.uniform(0.0, 2.0 * math.pi))
    half = 0.5 * (cylinder.z_max - cylinder.z_min) * f
    zc = 0.5 * (cylinder.z_max + cylinder.z_min)
    vertex = (
        round(cylinder.x0 + r * math.cos(phi), 3),
        round(cylinder.y0 + r * math.sin(phi), 3),
        round(zc + float(rng.uniform(-half, half)), 3),
    )
    offset = timedelta(microseconds=round(float(rng.uniform(0.0, batch.time_span_days)) * 86_400e6))
    spec = TrackSpec(
        zenith_deg=round(zenith, 6),
        azimuth_deg=round(azimuth, 6),
        energy_gev=float(f"{10.0 ** log_e:.6g}"),
        vertex=vertex,
        time_ns=batch.time_ns,
        starting=batch.starting,
        noise_rate_hz=batch.noise_rate_hz,
    )
    return spec, offset


def iter_batch(batch: BatchSpec, geometry: Geometry) -> Iterator[BatchEvent]:
    """The events of a batch one at a time (a large batch never sits in memory whole)."""
    batch.validate()
    cylinder = instrumented_cylinder(geometry)
    for index in range(batch.count):
        rng = event_rng(batch.seed, index)
        spec, offset = draw_track(batch, rng, cylinder)
        event, truth = simulate_track(
            spec,
            geometry,
            rng,
            run_id=batch.run_id,
            event_id=batch.first_event_id + index,
            event_time=batch.start_time + offset,
            stream=batch.stream,
            systematics=batch.systematics,
        )
        yield BatchEvent(index=index, spec=spec, event=event, truth=truth)


def simulate_batch(batch: BatchSpec, geometry: Geometry) -> list[BatchEvent]:
    """Every event of a batch (see ``iter_batch``)."""
    return list(iter_batch(batch, geometry))


def truth_radec_deg(event: Event, truth: Truth) -> tuple[float, float]:
    """The true direction in J2000 equatorial coordinates (RA in [0, 360), Dec), degrees."""
    from skyscan.reco.coords import local_to_equatorial

    ra, dec = local_to_equatorial(math.radians(truth.zenith_deg), math.radians(truth.azimuth_deg), event.time)
    return math.degrees(float(ra)) % 360.0, math.degrees(float(dec))
