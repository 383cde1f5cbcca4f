"""The scan node: reconstruct one batch of HEALPix pixels and write the result atomically.

The result file's format is ``skyscan.nodes.results``'s; this module only computes what goes into it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from skyscan import iers_cache
from skyscan.errors import InputError, SkyscanError
from skyscan.graph.event import load_event
from skyscan.graph.layout import ScanLayout
from skyscan.nodes.results import BatchResult, ResultProvenance, is_complete, read_batch, read_result
from skyscan.nodes.results import write_result as write_result_file
from skyscan.reco import coords, untrusted
from skyscan.reco.fit import FitTable, PandelTrackFit, VertexSeeds, make_reconstruction
from skyscan.reco.healpix import nest_to_ang, nside_to_npix
from skyscan.reco.settings import RecoSettings
from skyscan.settings.scan import is_valid_nside

DEFAULT_RECONSTRUCTION = "pandel-track"

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_pixel_spec(spec: str, nside: int) -> npt.NDArray[np.int64]:
    """NESTED indices from a file (one per line, or whitespace/comma separated) or `0-767` / `1,5,9`.

    Untrusted text: every problem (a non-UTF-8 file, a 5,000-digit index, a name too long for the file
    system, a range of more pixels than the sky has) is one InputError.
    """
    with untrusted.guarded("--pixels"):
        return _parse_pixel_spec(spec, nside)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, or with a NUL: not a file
        return False


def _pixel_index(text: str, where: str, npix: int) -> int:
    if not text.isascii() or not text.isdigit():
        raise InputError(f"{where}: not a pixel index: {untrusted.shown(text)}")
    if len(text.lstrip("0")) > 20:
        raise InputError(f"{where}: pixel {untrusted.shown(text)} out of range (0..{npix - 1})")
    return int(text)


def _parse_pixel_spec(spec: str, nside: int) -> npt.NDArray[np.int64]:
    npix = nside_to_npix(nside)
    path = Path(spec)
    if _is_file(path):
        text = untrusted.read_text(path, "pixel file")
        tokens = [t for line in text.splitlines() for t in re.split(r"[\s,]+", line.split("#", 1)[0]) if t]
        where = str(path)
        values: list[int] = [_pixel_index(tok, where, npix) for tok in tokens]
    else:
        if os.sep in spec or spec.endswith(".txt"):
            raise InputError(f"{untrusted.shown(spec)[1:-1]}: no such pixel file")
        where = "--pixels"
        values = []
        for part in spec.split(","):
            m = _RANGE.match(part)
            if not m:
                raise InputError(f"--pixels: cannot read {untrusted.shown(part)} (use a file, a range like 0-767 "
                                 "or a list 1,5,9)")
            lo = _pixel_index(m.group(1), where, npix)
            hi = _pixel_index(m.group(2), where, npix) if m.group(2) is not None else lo
            if hi < lo:
                raise InputError(f"--pixels: empty range {part!r}")
            if hi >= npix:
                raise InputError(f"{where}: pixel {hi} out of range for nside {nside} (0..{npix - 1})")
            values.extend(range(lo, hi + 1))
            if len(values) > npix:
                raise InputError(f"{where}: more pixels than the {npix} of the sky at nside {nside}")
    if not values:
        raise InputError(f"{where}: no pixels given")
    big = [v for v in values if v >= npix]
    if big:
        raise InputError(f"{where}: pixel {big[0]} out of range for nside {nside} (0..{npix - 1})")
    arr = np.asarray(values, dtype=np.int64)
    return np.unique(arr)


def check_nside_option(nside: int) -> None:
    """``--nside``: the configuration's rule (a power of two up to 2**29), in the option's own words."""
    if not is_valid_nside(nside):
        raise InputError(f"--nside: must be a power of two, got {nside}")


def config_digest(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ScanOutcome:
    path: Path
    n_pixels: int
    n_failed: int
    seconds: float
    skipped: bool
    warm: int = 0  # pixels that started from an earlier stage's fit


# ---------------------------------------------------------------------------------------------------------------
# Warm start: the fits of earlier stages as starting tracks
# ---------------------------------------------------------------------------------------------------------------
#: A neighbouring fit is one whose pixel centre lies within this many pixel sizes of the child's centre.
NEIGHBOUR_RADIUS = 1.5


@dataclass(frozen=True)
class PriorFits:
    """Every finite fit of the earlier stages of a scan (mixed nsides, NESTED): vertex in metres, time in ns."""

    nside: npt.NDArray[np.int64]
    ipix: npt.NDArray[np.int64]
    llh: npt.NDArray[np.float64]
    vertex: npt.NDArray[np.float64]  # (N, 3)
    t: npt.NDArray[np.float64]

    @classmethod
    def empty(cls) -> PriorFits:
        none = np.zeros(0, dtype=np.int64)
        return cls(none, none, np.zeros(0), np.zeros((0, 3)), np.zeros(0))

    def __len__(self) -> int:
        return int(self.ipix.size)


def _stage_nsides(layout: ScanLayout) -> list[int] | None:
    """The nside of each stage of the scan's configuration; None without a readable configuration."""
    if not layout.config.is_file():
        return None
    from skyscan.graph.build import scan_config

    try:
        return [stage.nside for stage in scan_config(layout.root).stages]
    except InputError:
        return None


def _prior_result_files(
    layout: ScanLayout,
    stage: int,
    target: tuple[int, npt.NDArray[np.int64]] | None,
    nsides: list[int] | None = None,
) -> list[Path]:
    """The result files of an earlier ``stage`` that hold an ancestor of the pixels ``target`` (nside, ipix).

    A stage's batch files say which pixels each result holds, so a node reads only the results its pixels
    descend from (a stage of hundreds of batches would otherwise cost every node hundreds of reads). Without
    batch files, or without the configuration that gives the stage's nside, every result of the stage.
    ``nsides`` is ``_stage_nsides(layout)`` when the caller has it (the configuration is then parsed once).
    """
    results = layout.list_results(stage)
    batches = layout.list_batches(stage)
    if target is None or not batches:
        return results
    if nsides is None:
        nsides = _stage_nsides(layout)
    if nsides is None or stage >= len(nsides):
        return results
    stage_nside = nsides[stage]
    nside, ipix = target
    if stage_nside >= nside or nside % stage_nside:
        return []
    ancestors = np.unique(ipix // (nside // stage_nside) ** 2)
    wanted = []
    for b in batches:
        try:
            pixels = read_batch(layout.batch_file(stage, b))
        except SkyscanError:
            continue
        if np.intersect1d(pixels, ancestors).size:
            wanted.append(layout.result_file(stage, b))
    return [p for p in wanted if p.is_file()]


def read_prior_fits(
    out: Path, run_id: int, event_id: int, target: tuple[int, npt.NDArray[np.int64]] | None = None
) -> PriorFits:
    """The fits of the stages before the one whose result file is ``out`` (``<scan>/stage<k>/scan-s<k>-*.h5``).

    With ``target`` (nside, ipix), only the results holding ancestors of those pixels (``_prior_result_files``).
    Empty when ``out`` is not in a stage folder of a scan directory (a grid job in a scratch directory
    without the earlier results, a scan of a batch outside any scan): then every pixel starts cold. A result
    file that cannot be read, or is of another event, is skipped: warm starting only saves time.
    """
    folder = out.absolute().parent
    layout = ScanLayout(folder.parent)
    stage = next((k for k in layout.list_stages() if layout.stage_dir(k).absolute() == folder), None)
    if not stage:  # None, or stage 0: nothing before it
        return PriorFits.empty()
    parts: list[BatchResult] = []
    nsides = _stage_nsides(layout) if target is not None else None
    for k in range(stage):
        for path in _prior_result_files(layout, k, target, nsides):
            try:
                parts.append(read_result(path, run_id, event_id))
            except (InputError, OSError):
                continue
    if not parts:
        return PriorFits.empty()
    ns = np.concatenate([np.full(p.ipix.size, p.nside, dtype=np.int64) for p in parts])
    px = np.concatenate([np.asarray(p.ipix, dtype=np.int64).reshape(-1) for p in parts])
    llh = np.concatenate([np.asarray(p.llh, dtype=np.float64).reshape(-1) for p in parts])
    vtx = np.concatenate(
        [np.column_stack([np.asarray(getattr(p, c), dtype=np.float64).reshape(-1) for c in "xyz"]) for p in parts]
    )
    t = np.concatenate([np.asarray(p.t, dtype=np.float64).reshape(-1) for p in parts])
    ok = np.isfinite(llh) & np.all(np.isfinite(vtx), axis=1) & np.isfinite(t)
    return PriorFits(ns[ok], px[ok], llh[ok], vtx[ok], t[ok])


def _unit_vectors(nside: int, ipix: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    theta, phi = nest_to_ang(nside, ipix)
    sin_t = np.sin(theta)
    return np.column_stack([sin_t * np.cos(phi), sin_t * np.sin(phi), np.cos(theta)])


def warm_start_seeds(prior: PriorFits, nside: int, ipix: npt.NDArray[np.int64]) -> VertexSeeds | None:
    """Two starting tracks per pixel from earlier fits: its parent's and its best neighbouring fit's.

    The parent is the finest earlier pixel containing the child (NESTED: ``ipix // (nside/n)**2``). The
    neighbouring fits are the other earlier pixels at the parent's nside whose centres lie within
    ``NEIGHBOUR_RADIUS`` pixel sizes of the child's centre; the one of lowest -ln L is the second seed. The
    fitter evaluates both at the child's direction and starts from the better. A pixel without a parent
    fit gets no seed (cold start); None if no pixel has one. ``separation`` is the angle between the centres
    of the child and its parent (the fitter measures the curvature at the start of close ones).
    """
    if len(prior) == 0:
        return None
    n = ipix.size
    points = np.full((n, 2, 3), np.nan)
    times = np.full((n, 2), np.nan)
    separation = np.full(n, np.nan)
    parent_nside = np.zeros(n, dtype=np.int64)
    for ns in sorted({int(v) for v in prior.nside if int(v) < nside and nside % int(v) == 0}, reverse=True):
        at = np.flatnonzero(prior.nside == ns)
        order = at[np.argsort(prior.ipix[at], kind="stable")]
        keys = prior.ipix[order]
        anc = ipix // (nside // ns) ** 2
        pos = np.clip(np.searchsorted(keys, anc), 0, max(keys.size - 1, 0))
        found = (parent_nside == 0) & (keys[pos] == anc)
        rows = np.flatnonzero(found)
        if rows.size == 0:
            continue
        src = order[pos[rows]]
        points[rows, 0], times[rows, 0] = prior.vertex[src], prior.t[src]
        parent_nside[rows] = ns
        # the best other fit near each child, at the parent's nside
        cos_max = np.cos(NEIGHBOUR_RADIUS * np.sqrt(4.0 * np.pi / nside_to_npix(ns)))
        child_vec = _unit_vectors(nside, ipix[rows])
        prior_vec = _unit_vectors(ns, prior.ipix[order])
        cos_parent = np.einsum("ki,ki->k", child_vec, prior_vec[pos[rows]])
        separation[rows] = np.arccos(np.clip(cos_parent, -1.0, 1.0))
        llh = prior.llh[order]
        for lo in range(0, rows.size, 256):
            block = slice(lo, lo + 256)
            near = (child_vec[block] @ prior_vec.T >= cos_max) & (keys[None, :] != anc[rows[block], None])
            score = np.where(near, llh[None, :], np.inf)
            best = np.argmin(score, axis=1)
            has = np.isfinite(score[np.arange(best.size), best])
            sel = rows[block][has]
            points[sel, 1], times[sel, 1] = prior.vertex[order[best[has]]], prior.t[order[best[has]]]
    if not np.any(parent_nside):
        return None
    return VertexSeeds(points, times, separation)


def run_scan_node(
    event_path: str | os.PathLike[str],
    nside: int,
    pixel_spec: str,
    out: str | os.PathLike[str],
    *,
    settings: RecoSettings | None = None,
    config_doc: Any = None,
    geometry_arg: str | None = None,
    reconstruction: str = DEFAULT_RECONSTRUCTION,
    warm_start: bool = True,
) -> ScanOutcome:
    """Reconstruct the pixels and write ``out`` (nothing is written if the input is bad).

    With ``warm_start`` (the default), a refinement stage's pixels start their fits from the fits of the
    earlier stages found beside ``out`` in the scan directory (``read_prior_fits``, ``warm_start_seeds``);
    the likelihood and its minimum are the same, the fit needs fewer evaluations.
    """
    out_path = Path(out)
    check_nside_option(nside)
    ef, geo = load_event(event_path, geometry_arg)
    ipix = parse_pixel_spec(pixel_spec, nside)
    if out_path.exists() and is_complete(out_path):
        return ScanOutcome(out_path, int(ipix.size), 0, 0.0, skipped=True)
    settings = settings or RecoSettings()
    event = ef.event
    t_start = time.perf_counter()
    iers_cache.install()
    zen, azi = coords.pixel_directions(nside, ipix, event.time)
    reco = make_reconstruction(reconstruction, event, geo, settings)
    seeds = None
    if warm_start and isinstance(reco, PandelTrackFit):
        prior = read_prior_fits(out_path, event.run_id, event.event_id, (nside, ipix))
        seeds = warm_start_seeds(prior, nside, ipix)
    table = reco.fit_directions(zen, azi, seeds) if isinstance(reco, PandelTrackFit) else reco.fit_directions(zen, azi)
    warm = 0 if seeds is None else int(np.count_nonzero(np.isfinite(seeds.times).any(axis=1)))
    elapsed = time.perf_counter() - t_start
    write_result(
        out_path,
        nside,
        ipix,
        table,
        event.run_id,
        event.event_id,
        config_digest(config_doc or settings.to_mapping()),
        reconstruction,
    )
    n_failed = int(np.count_nonzero(table.status != 0))
    return ScanOutcome(out_path, int(ipix.size), n_failed, elapsed, skipped=False, warm=warm)


def write_result(
    out: Path,
    nside: int,
    ipix: npt.NDArray[np.int64],
    table: FitTable,
    run_id: int,
    event_id: int,
    digest: str,
    reconstruction: str,
) -> None:
    """The scan node's result file (``skyscan.nodes.results.write_result``), stamped with the time it was written."""
    fits = BatchResult(
        nside=nside,
        ipix=ipix,
        llh=table.llh,
        x=table.x,
        y=table.y,
        z=table.z,
        t=table.t,
        status=table.status,
        seconds=table.seconds,
        evaluations=table.evaluations,
    )
    provenance = ResultProvenance(run_id, event_id, digest, reconstruction, created=ResultProvenance.now())
    write_result_file(out, fits, provenance)
