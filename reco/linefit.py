"""LineFit first guess: a least-squares line through the first-pulse positions and times.

The direction is the velocity of the best-fitting point moving in a straight line through
the hit DOMs (Stokstad's classic LineFit), which needs no likelihood and cannot fail for an
event with hits at two or more different times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from skyscan.reco.event import Direction, Event
from skyscan.reco.geometry import Geometry

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FirstPulses:
    """Per hit DOM: geometry row, first-pulse time and total charge."""

    dom: npt.NDArray[np.int64]
    time: FloatArray
    charge: FloatArray


def first_pulses(event: Event, geometry: Geometry) -> FirstPulses:
    """Collapse the pulse series to one entry per hit DOM (first time, summed charge)."""
    rows = geometry.index_of(event.pulses.string, event.pulses.om)
    order = np.lexsort((event.pulses.time, rows))
    rows_sorted = rows[order]
    first = np.ones(rows_sorted.size, dtype=bool)
    first[1:] = rows_sorted[1:] != rows_sorted[:-1]
    starts = np.flatnonzero(first)
    charge = np.add.reduceat(event.pulses.charge[order], starts)
    return FirstPulses(dom=rows_sorted[starts], time=event.pulses.time[order][starts], charge=charge)


def isolated_hit_mask(
    pos: FloatArray, time: FloatArray, radius_m: float = 150.0, window_ns: float = 1000.0
) -> npt.NDArray[np.bool_]:
    """True for hits with no other hit within ``radius_m`` and ``window_ns``: likely noise."""
    n = time.size
    isolated = np.ones(n, dtype=bool)
    if n < 2:
        return isolated
    # In time order, blocks of rows against the hits inside the time window, in numpy: milliseconds for the ~10^3
    # hit DOMs of an event, where importing a k-d tree (scipy.spatial) alone took a third of a second of every
    # scan's prepare node.
    order = np.argsort(time, kind="stable")
    t = time[order]
    p = pos[order]
    r2 = float(radius_m) ** 2
    near = np.zeros(n, dtype=bool)
    for start in range(0, n, _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, n)
        lo = int(np.searchsorted(t, t[start] - window_ns, side="left"))
        hi = int(np.searchsorted(t, t[stop - 1] + window_ns, side="right"))
        d2 = np.zeros((stop - start, hi - lo))
        for axis in range(3):
            d2 += np.square(p[start:stop, axis, None] - p[None, lo:hi, axis])
        close = (d2 <= r2) & (np.abs(t[start:stop, None] - t[None, lo:hi]) <= window_ns)
        close[np.arange(stop - start), np.arange(start, stop) - lo] = False  # a hit is not its own neighbour
        near[start:stop] = close.any(axis=1)
    isolated[order] = ~near
    return isolated


_BLOCK_ROWS = 256  # rows per block: at most 256 x n doubles of temporaries (6 MB for 3,000 hit DOMs)


@dataclass(frozen=True)
class LineFitResult:
    direction: Direction
    vertex: FloatArray  # position (m) at time ``time``
    time: float
    speed: float  # m/ns


def linefit(event: Event, geometry: Geometry) -> LineFitResult:
    """LineFit on the first pulses of the DOMs that are not isolated (noise-cleaned)."""
    fp = first_pulses(event, geometry)
    pos = geometry.pos[fp.dom]
    keep = ~isolated_hit_mask(pos, fp.time)
    if np.count_nonzero(keep) < 2:
        keep = np.ones(fp.time.size, dtype=bool)
    r, t = pos[keep], fp.time[keep]
    t_mean = float(t.mean())
    r_mean = r.mean(axis=0)
    var_t = float(np.mean((t - t_mean) ** 2))
    if var_t <= 0.0:
        velocity = np.array([0.0, 0.0, -1.0])
    else:
        velocity = ((r - r_mean) * (t - t_mean)[:, None]).mean(axis=0) / var_t
    speed = float(np.linalg.norm(velocity))
    travel = velocity / speed if speed > 0 else np.array([0.0, 0.0, -1.0])
    came_from = -travel
    zenith = math.degrees(math.acos(max(-1.0, min(1.0, float(came_from[2])))))
    azimuth = math.degrees(math.atan2(float(came_from[1]), float(came_from[0]))) % 360.0
    return LineFitResult(Direction(zenith, azimuth), np.asarray(r_mean, dtype=np.float64), t_mean, speed)


def first_guess(event: Event, geometry: Geometry) -> Direction:
    """The direction a scan starts from: the event's seed if given, else LineFit."""
    if event.seed is not None:
        return event.seed
    return linefit(event, geometry).direction
