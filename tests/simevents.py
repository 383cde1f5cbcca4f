"""Random simulated tracks shared by the physics and kernel tests (fixed seeds, fixed time)."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np

from skyscan.reco.event import Event
from skyscan.reco.geometry import ic86
from skyscan.reco.simulate import TrackSpec, simulate_track

TIME = datetime(2026, 5, 1, 6, 30, tzinfo=timezone.utc)


def random_track(seed: int) -> tuple[Event, TrackSpec]:
    """A 100 TeV - 1 PeV track from below or near the horizon, its vertex inside the detector."""
    rng = np.random.default_rng(seed)
    spec = TrackSpec(
        zenith_deg=math.degrees(math.acos(rng.uniform(-1.0, 0.2))),
        azimuth_deg=float(rng.uniform(0, 360)),
        energy_gev=float(10 ** rng.uniform(5.0, 6.0)),
        vertex=tuple(float(v) for v in rng.uniform(-250, 250, 3)),  # type: ignore[arg-type]
    )
    event, _ = simulate_track(spec, ic86(), rng, event_time=TIME)
    return event, spec
