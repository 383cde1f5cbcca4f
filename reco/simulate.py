"""A muon-track event simulator using the same light model as the likelihood.

Approximate by design (see docs/simulation.md): constant light yield along the track, no
stochastic losses, no cascade at the vertex of a starting track, photons spread by the Pandel
delay distribution, Gaussian PMT jitter, Poisson photoelectron counts, per-DOM efficiencies and
uniform dark noise over a 20 µs readout.

With a :class:`~skyscan.reco.systematics.Systematics` the simulated detector departs from the likelihood's model
(ice lengths, efficiencies, noise rate, jitter, delay shape; docs/simulation.md, "Systematics"); without one (or
with ``NO_SYSTEMATICS``) the events are exactly those of the nominal model, bit for bit for a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import numpy.typing as npt

from skyscan.reco import photonics as ph
from skyscan.reco.event import Event, Pulses, Truth
from skyscan.reco.geometry import Geometry
from skyscan.reco.systematics import DrawnSystematics, Systematics, attenuated_charge, sample_delays

FloatArray = npt.NDArray[np.float64]

PULSE_MERGE_NS = 10.0
CHARGE_RESOLUTION = 0.3
NOISE_CHARGE_MEAN = 1.0


@dataclass(frozen=True)
class TrackSpec:
    """What to simulate. Angles in degrees, the direction the muon comes FROM."""

    zenith_deg: float
    azimuth_deg: float
    energy_gev: float = 1e5
    vertex: tuple[float, float, float] = (0.0, 0.0, 0.0)  # a point on the track (m)
    time_ns: float = 10_000.0  # time at the vertex
    starting: bool = False  # True: the muon starts at the vertex; False: infinite track
    noise_rate_hz: float = 500.0
    jitter_ns: float = 3.0


def simulate_track(
    spec: TrackSpec,
    geometry: Geometry,
    rng: np.random.Generator,
    *,
    run_id: int = 0,
    event_id: int = 0,
    event_time: datetime | None = None,
    stream: str | None = None,
    systematics: Systematics | None = None,
) -> tuple[Event, Truth]:
    """One event and its truth from the random stream ``rng``.

    ``systematics``: the spreads of the detector variations; their values for this event are drawn first from
    ``rng`` and recorded in ``truth.systematics``. ``None`` or ``NO_SYSTEMATICS``: the nominal model, and ``rng``
    is used exactly as it always was (the same seed gives the same event as before systematics existed).
    """
    drawn = None if systematics is None or systematics.is_null else systematics.draw(rng, len(geometry))
    zen, azi = math.radians(spec.zenith_deg), math.radians(spec.azimuth_deg)
    d = -np.array([math.sin(zen) * math.cos(azi), math.sin(zen) * math.sin(azi), math.cos(zen)])
    vtx = np.asarray(spec.vertex, dtype=np.float64)
    rel = geometry.pos - vtx
    along = rel @ d
    perp_vec = rel - along[:, None] * d[None, :]
    dist = np.linalg.norm(perp_vec, axis=1)
    dist_safe = np.maximum(dist, 1e-3)
    emit_along = along - dist / ph.TAN_CHERENKOV
    direct_time = spec.time_ns + (along + dist * ph.TAN_CHERENKOV) / ph.C_VACUUM
    cos_eta = ph.COS_CHERENKOV * d[2] + ph.SIN_CHERENKOV * perp_vec[:, 2] / dist_safe
    if drawn is None:
        mu = geometry.efficiency * ph.light_yield(spec.energy_gev) * ph.charge_per_yield(dist)
        xi = ph.effective_distance(dist, cos_eta) / ph.LAMBDA_M
        jitter_ns, noise_rate_hz = spec.jitter_ns, spec.noise_rate_hz
    else:
        efficiency = geometry.efficiency * drawn.efficiency_scale * drawn.dom_efficiency
        mu = efficiency * ph.light_yield(spec.energy_gev) * attenuated_charge(dist, drawn.attenuation_scale)
        d_eff = ph.effective_distance(dist, cos_eta)
        jitter_ns = spec.jitter_ns if drawn.jitter_ns is None else drawn.jitter_ns
        noise_rate_hz = spec.noise_rate_hz * drawn.noise_rate_scale
    if spec.starting:
        mu = np.where(emit_along >= 0.0, mu, 0.0)
    npe = rng.poisson(mu)

    strings: list[npt.NDArray[np.int64]] = []
    oms: list[npt.NDArray[np.int64]] = []
    times: list[FloatArray] = []
    charges: list[FloatArray] = []
    hit_rows = np.flatnonzero(npe > 0)
    for row in hit_rows.tolist():
        n = int(npe[row])
        if drawn is None:
            delays = rng.gamma(shape=xi[row], scale=1.0 / ph.RHO_PER_NS, size=n)
        else:
            delays = _drawn_delays(rng, drawn, float(d_eff[row]), n)
        t = direct_time[row] + delays + rng.normal(0.0, jitter_ns, size=n)
        q = np.clip(rng.normal(1.0, CHARGE_RESOLUTION, size=n), 0.1, None)
        _append_pulses(row, t, q, geometry, strings, oms, times, charges)
    signal_times = direct_time[hit_rows] if hit_rows.size else np.array([spec.time_ns])
    t_start = float(np.min(signal_times)) - 0.25 * ph.READOUT_WINDOW_NS
    window = ph.READOUT_WINDOW_NS
    n_noise = rng.poisson(noise_rate_hz * 1e-9 * window, size=len(geometry))
    for row in np.flatnonzero(n_noise > 0).tolist():
        n = int(n_noise[row])
        t = t_start + rng.uniform(0.0, window, size=n)
        q = np.clip(rng.normal(NOISE_CHARGE_MEAN, CHARGE_RESOLUTION, size=n), 0.1, None)
        _append_pulses(row, t, q, geometry, strings, oms, times, charges)

    if not times:  # an event must have pulses; put one noise pulse on the nearest DOM
        row = int(np.argmin(dist))
        _append_pulses(row, np.array([direct_time[row]]), np.array([1.0]), geometry, strings, oms, times, charges)
    s = np.concatenate(strings)
    o = np.concatenate(oms)
    t_all = np.concatenate(times)
    q_all = np.concatenate(charges)
    order = np.argsort(t_all, kind="stable")
    pulses = Pulses(string=s[order], om=o[order], time=np.round(t_all[order], 3), charge=np.round(q_all[order], 3))
    event = Event(
        run_id=run_id,
        event_id=event_id,
        time=event_time or datetime(2026, 1, 1, tzinfo=timezone.utc),
        pulses=pulses,
        stream=stream,
        energy_gev=float(spec.energy_gev),
    )
    # The reported vertex is the point of the track closest to the detector origin, at its time.
    shift = -float(vtx @ d)
    closest = vtx + shift * d
    truth = Truth(
        zenith_deg=spec.zenith_deg,
        azimuth_deg=spec.azimuth_deg % 360.0,
        x=float(closest[0]),
        y=float(closest[1]),
        z=float(closest[2]),
        t=spec.time_ns + shift / ph.C_VACUUM,
        energy_gev=float(spec.energy_gev),
        systematics=None if drawn is None else drawn.to_dict(),
    )
    return event, truth


def _drawn_delays(rng: np.random.Generator, drawn: DrawnSystematics, d_eff_m: float, n: int) -> FloatArray:
    """Photon delays (ns) of one DOM under the drawn systematics (see skyscan.reco.systematics.sample_delays)."""
    return sample_delays(
        rng,
        drawn.delay_model,
        d_eff_m,
        n,
        absorption_scale=drawn.absorption_scale,
        scattering_scale=drawn.scattering_scale,
    )


def _append_pulses(
    row: int,
    t: FloatArray,
    q: FloatArray,
    geometry: Geometry,
    strings: list[npt.NDArray[np.int64]],
    oms: list[npt.NDArray[np.int64]],
    times: list[FloatArray],
    charges: list[FloatArray],
) -> None:
    """Merge photons closer than PULSE_MERGE_NS into pulses (time of the first, summed charge)."""
    order = np.argsort(t)
    t, q = t[order], q[order]
    new = np.ones(t.size, dtype=bool)
    new[1:] = np.diff(t) > PULSE_MERGE_NS
    starts = np.flatnonzero(new)
    times.append(t[starts])
    charges.append(np.add.reduceat(q, starts))
    strings.append(np.full(starts.size, geometry.string[row], dtype=np.int64))
    oms.append(np.full(starts.size, geometry.om[row], dtype=np.int64))


def benchmark_spec() -> TrackSpec:
    """The fixed standard event of the benchmarks: a ~500 TeV up-going through-going track."""
    return TrackSpec(zenith_deg=118.0, azimuth_deg=231.0, energy_gev=5e5, vertex=(40.0, -60.0, -20.0), time_ns=10_000.0)


BENCHMARK_SEED = 20260101
BENCHMARK_TIME = datetime(2026, 3, 14, 15, 9, 26, 535_000, tzinfo=timezone.utc)
