"""Detector geometry: DOM positions (IceCube coordinates, metres, z up) and efficiencies.

The built-in ``ic86`` geometry is *generated*, not copied: 78 standard strings on a 125 m
triangular grid and 8 DeepCore strings near the centre, 60 DOMs each. It approximates
IceCube-86 closely enough for realistic simulation and reconstruction, not for analysis of
real IceCube data (use ``--geometry FILE.csv`` with the real table for that).
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from skyscan.reco import untrusted
from skyscan.reco.errors import InputError

#: Depth below the ice surface of the IceCube coordinate origin (m).
ORIGIN_DEPTH_M = 1948.07
STANDARD_SPACING_M = 125.0
N_STANDARD = 78
N_DEEPCORE = 8
DOMS_PER_STRING = 60
DEEPCORE_EFFICIENCY = 1.35  # high-quantum-efficiency PMTs


@dataclass(frozen=True)
class Geometry:
    """DOM table: one row per DOM."""

    name: str
    string: npt.NDArray[np.int64]
    om: npt.NDArray[np.int64]
    pos: npt.NDArray[np.float64]  # (N, 3) metres
    efficiency: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.string.size)

    @property
    def keys(self) -> set[tuple[int, int]]:
        return set(zip(self.string.tolist(), self.om.tolist()))

    def index_of(self, string: npt.ArrayLike, om: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Row index of each (string, om); raises InputError for an unknown DOM."""
        s = np.asarray(string, dtype=np.int64)
        o = np.asarray(om, dtype=np.int64)
        lookup = _lookup(self)
        in_range = (s >= 0) & (s < 2**31) & (o >= 0) & (o < 2**31)
        key = np.where(in_range, (s << 32) + o, -1)
        pos = np.searchsorted(lookup[0], key)
        pos = np.clip(pos, 0, lookup[0].size - 1)
        ok = in_range & (lookup[0][pos] == key)
        if not np.all(ok):
            i = int(np.flatnonzero(~ok)[0])
            raise InputError(f"DOM string {int(s[i])} om {int(o[i])} is not in geometry {self.name!r}")
        return lookup[1][pos]


def _lookup(geo: Geometry) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    key = (geo.string << 32) + geo.om
    order = np.argsort(key, kind="stable")
    return key[order], order.astype(np.int64)


def _standard_string_xy() -> npt.NDArray[np.float64]:
    """78 points of a triangular grid, the ones nearest the centre (ties broken by angle)."""
    pts = []
    for i in range(-6, 7):
        for j in range(-6, 7):
            x = STANDARD_SPACING_M * (i + 0.5 * j)
            y = STANDARD_SPACING_M * (math.sqrt(3.0) / 2.0 * j)
            pts.append((x, y))
    arr = np.array(pts)
    r = np.round(np.hypot(arr[:, 0], arr[:, 1]), 6)
    phi = np.round(np.mod(np.arctan2(arr[:, 1], arr[:, 0]), 2 * math.pi), 6)
    order = np.lexsort((phi, r))
    chosen = arr[order[:N_STANDARD]]
    # Number strings row by row (south to north, west to east), as IceCube roughly does.
    rows = np.lexsort((chosen[:, 0], np.round(chosen[:, 1], 3)))
    return np.asarray(chosen[rows])


def _deepcore_string_xy() -> npt.NDArray[np.float64]:
    """Six strings at the triangle centres around the central string, two one ring further out."""
    r1 = STANDARD_SPACING_M / math.sqrt(3.0)
    inner = [(r1 * math.cos(math.radians(30 + 60 * k)), r1 * math.sin(math.radians(30 + 60 * k))) for k in range(6)]
    outer = [(2 * r1 * math.cos(math.radians(a)), 2 * r1 * math.sin(math.radians(a))) for a in (30.0, 210.0)]
    return np.array(inner + outer)


def _standard_depths() -> npt.NDArray[np.float64]:
    return np.linspace(1450.0, 2450.0, DOMS_PER_STRING)


def _deepcore_depths() -> npt.NDArray[np.float64]:
    veto = 1750.0 + 10.0 * np.arange(10)
    deep = 2100.0 + 7.0 * np.arange(50)
    return np.concatenate([veto, deep])


@lru_cache(maxsize=1)
def ic86() -> Geometry:
    """The built-in IceCube-86-like geometry (5160 DOMs)."""
    strings, oms, pos, eff = [], [], [], []
    xy_std = _standard_string_xy()
    xy_dc = _deepcore_string_xy()
    for k, (x, y) in enumerate(xy_std):
        for m, depth in enumerate(_standard_depths()):
            strings.append(k + 1)
            oms.append(m + 1)
            pos.append((x, y, ORIGIN_DEPTH_M - depth))
            eff.append(1.0)
    for k, (x, y) in enumerate(xy_dc):
        for m, depth in enumerate(_deepcore_depths()):
            strings.append(N_STANDARD + k + 1)
            oms.append(m + 1)
            pos.append((x, y, ORIGIN_DEPTH_M - depth))
            eff.append(DEEPCORE_EFFICIENCY)
    return Geometry(
        name="ic86",
        string=np.array(strings, dtype=np.int64),
        om=np.array(oms, dtype=np.int64),
        pos=np.asarray(np.round(np.array(pos, dtype=np.float64), 2), dtype=np.float64),
        efficiency=np.array(eff, dtype=np.float64),
    )


BUILTIN = {"ic86": ic86}


def builtin(name: str) -> Geometry:
    if name not in BUILTIN:
        raise InputError(f"geometry {name!r}: unknown built-in geometry (known: {', '.join(sorted(BUILTIN))})")
    return BUILTIN[name]()


def to_csv(geo: Geometry) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["string", "om", "x", "y", "z", "efficiency"])
    for s, o, p, e in zip(geo.string.tolist(), geo.om.tolist(), geo.pos.tolist(), geo.efficiency.tolist()):
        w.writerow([s, o, f"{p[0]:.2f}", f"{p[1]:.2f}", f"{p[2]:.2f}", f"{e:g}"])
    return buf.getvalue()


def read_csv(path: str | os.PathLike[str]) -> Geometry:
    """Read a geometry table with columns string,om,x,y,z[,efficiency]."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such geometry file")
    text = untrusted.read_text(p, "geometry file")
    with untrusted.guarded(str(p)):  # csv errors (a field over the size limit, a NUL), numpy overflows
        return _parse_csv(p, text)


def _parse_csv(p: Path, text: str) -> Geometry:
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InputError(f"{p}: empty geometry file") from None
    needed = ["string", "om", "x", "y", "z"]
    for col in needed:
        if col not in header:
            raise InputError(f"{p}: missing column {col!r} (need string,om,x,y,z[,efficiency])")
    idx = {h: i for i, h in enumerate(header)}
    has_eff = "efficiency" in idx
    strings, oms, pos, eff = [], [], [], []
    seen: set[tuple[int, int]] = set()
    for lineno, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise InputError(f"{p}:{lineno}: expected {len(header)} columns, got {len(row)}")
        try:
            s = untrusted.parse_int(row[idx["string"]], "string", -(2**31), 2**31 - 1)
            o = untrusted.parse_int(row[idx["om"]], "om", -(2**31), 2**31 - 1)
        except InputError:
            raise InputError(f"{p}:{lineno}: string and om must be integers") from None
        try:
            xyz = [float(row[idx[c]]) for c in ("x", "y", "z")]
            e = float(row[idx["efficiency"]]) if has_eff else 1.0
        except ValueError:
            raise InputError(f"{p}:{lineno}: x, y, z and efficiency must be numbers") from None
        if not all(math.isfinite(v) for v in [*xyz, e]):
            raise InputError(f"{p}:{lineno}: NaN or infinite coordinate or efficiency")
        if e < 0:
            raise InputError(f"{p}:{lineno}: negative efficiency {e:g}")
        if (s, o) in seen:
            raise InputError(f"{p}:{lineno}: duplicate DOM string {s} om {o}")
        if not (0 <= o < 1000 and s >= 0):
            raise InputError(f"{p}:{lineno}: string must be >= 0 and om in 0..999")
        seen.add((s, o))
        strings.append(s)
        oms.append(o)
        pos.append(xyz)
        eff.append(e)
    if not strings:
        raise InputError(f"{p}: geometry file has no DOMs")
    return Geometry(
        name=p.name,
        string=np.array(strings, dtype=np.int64),
        om=np.array(oms, dtype=np.int64),
        pos=np.array(pos, dtype=np.float64),
        efficiency=np.array(eff, dtype=np.float64),
    )
