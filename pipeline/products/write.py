"""Writing every merge product of one multi-order map: skymap.h5, both FITS maps, plots, GCN drafts, summary.json.

The merge node (``skyscan.nodes.merge``) reads the results and the configuration and resolves the choices
(:class:`ProductChoices`); this module computes what the products report (best fit, containment regions, pixel
counts) and writes them, each atomically, summary.json last (it lists the others, docs/summary-format.md).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from skyscan.atomic import write_json, write_text
from skyscan.errors import InputError, SkyscanError
from skyscan.products.containment import LevelSpec, Region, best_fit_radec, region
from skyscan.products.levels import check_product_levels
from skyscan.products.meta import BestFit, SkymapMeta, StageRecord
from skyscan.products.moc import MultiOrderMap, StageResult, flatten, nside_ipix_to_uniq
from skyscan.products.summary import (
    PRODUCT_FILES,
    BestFitRecord,
    ContainmentRecord,
    ImportRecord,
    MapPixelCounts,
    MapProbabilityRecord,
    PixelCounts,
    RegionRecord,
    SkyPosition,
    SoftwareRecord,
    Summary,
    json_safe,
)


# --------------------------------------------------------------------------------------------------------------
# What the products report
# --------------------------------------------------------------------------------------------------------------
def product_levels(spec: LevelSpec) -> tuple[str, dict[str, float]]:
    """(method name, levels labelled '50' and '90' at least) of a containment specification.

    Products need a 50% and a 90% region; see `skyscan.products.levels.check_product_levels`.
    """
    return check_product_levels(spec)


def pixel_counts(stages: Sequence[StageResult]) -> dict[str, Any]:
    """Distinct scanned pixels (per nside) and how many of them failed (no finite llh in any attempt)."""
    uniq = np.concatenate([nside_ipix_to_uniq(s.nside, s.ipix) for s in stages])
    finite = np.concatenate([np.isfinite(s.llh) for s in stages])
    nsides = np.concatenate([np.full(s.ipix.size, s.nside, dtype=np.int64) for s in stages])
    distinct, first = np.unique(uniq, return_index=True)
    ok = np.unique(uniq[finite])
    failed = int(distinct.size - ok.size)
    by_nside_values, by_nside_counts = np.unique(nsides[first], return_counts=True)
    return {
        "scanned": int(distinct.size),
        "failed": failed,
        "by_nside": {str(int(n)): int(c) for n, c in zip(by_nside_values, by_nside_counts, strict=True)},
    }


def best_fit_of(m: MultiOrderMap, event_time: datetime | None) -> BestFit:
    """Best-fit pixel centre, with the detector direction when the event time is known."""
    ra, dec = best_fit_radec(m)
    best = m.best_index
    zen: float | None = None
    azi: float | None = None
    if event_time is not None:
        from skyscan import iers_cache
        from skyscan.reco.coords import equatorial_to_local

        iers_cache.install()  # parsing astropy's Earth-orientation table costs over a second otherwise
        z, a = equatorial_to_local(math.radians(ra), math.radians(dec), event_time)
        zen, azi = math.degrees(float(z)), math.degrees(float(a)) % 360.0
    return BestFit(ra, dec, zen, azi, float(m.llh[best]), int(m.nside[best]))


def measure_regions(m: MultiOrderMap, levels: Mapping[str, float]) -> dict[str, Region]:
    return {label: region(m, value) for label, value in levels.items()}


def build_summary(
    meta: SkymapMeta,
    pixels: Mapping[str, Any],
    products: Mapping[str, str],
    *,
    flat_nside: int | None = None,
    map_pixels: MapPixelCounts | None = None,
    imported: ImportRecord | None = None,
) -> Summary:
    """The summary of a merge (schema skyscan-summary/1, docs/summary-format.md); `pixels` as pixel_counts gives."""
    bf = meta.best_fit
    truth: SkyPosition | None = None
    truth_offset_deg: float | None = None
    if meta.truth_radec is not None:
        from skyscan.reco.coords import angular_distance

        t_ra, t_dec = meta.truth_radec
        offset = angular_distance(
            math.radians(bf.ra_deg), math.radians(bf.dec_deg), math.radians(t_ra), math.radians(t_dec)
        )
        truth = SkyPosition(t_ra, t_dec)
        truth_offset_deg = math.degrees(float(offset))
    return Summary(
        run_id=int(meta.run_id),
        event_id=int(meta.event_id),
        event_time=meta.event_time_iso,
        stream=meta.stream,
        best_fit=BestFitRecord(bf.ra_deg, bf.dec_deg, bf.zenith_deg, bf.azimuth_deg, bf.llh, bf.nside),
        containment=ContainmentRecord(
            meta.containment_method,
            {label: RegionRecord(**reg.as_dict(), **meta.region_resolution(label)) for label, reg in meta.regions.items()},
            calibration=meta.calibration,
        ),
        pixels=PixelCounts(pixels["scanned"], pixels["failed"], dict(pixels["by_nside"])),
        software=SoftwareRecord(meta.software_version, meta.git_revision),
        products=dict(products),
        created=meta.created_iso,
        source=meta.source,
        config_sha256=meta.config_sha256,
        truth=truth,
        truth_offset_deg=truth_offset_deg,
        flat_nside=flat_nside,
        map_pixels=map_pixels,
        imported=imported,
        map_probability=_map_probability_record(meta),
    )


def _map_probability_record(meta: SkymapMeta) -> MapProbabilityRecord | None:
    mp = meta.map_probability
    if mp is None:
        return None
    return MapProbabilityRecord(
        weight=mp.weight,
        matched_level=mp.matched_label,
        credible_area_deg2=dict(mp.credible_area_deg2),
        contour_area_deg2=dict(mp.contour_area_deg2),
        note=mp.note,
    )


SKYREADER_KEY = "skyreader_json"
"""Name in summary.json's `products` of the skyreader export (its file name depends on the event)."""


# --------------------------------------------------------------------------------------------------------------
# Writing them
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProductChoices:
    """What to write, resolved by the caller from the ``merge:`` configuration and the command line."""

    flat_nside: int  # nside of the flat RING map
    plots: bool
    zoom_plot: bool
    circular_template: str | os.PathLike[str] | None  # None: the packaged config/circular.txt


@dataclass
class MergeResult:
    """What a merge produced: the map, its metadata, the summary (as written, and typed) and the products.

    Product paths are absolute."""

    outdir: Path
    map: MultiOrderMap
    meta: SkymapMeta
    summary: dict[str, Any]  # summary.json as written (Summary.to_json())
    summary_model: Summary
    products: dict[str, Path] = field(default_factory=dict)


#: Draw the plots in forked child processes while this one writes the other products (POSIX only): with two
#: cores the merge takes the longer of the two instead of their sum, and matplotlib is imported only by the
#: processes that draw. False: draw them here, one after the other. The files are the same either way.
PLOTS_IN_CHILD = hasattr(os, "fork")


def _failure_report(exc: BaseException) -> bytes:
    kind = "input" if isinstance(exc, InputError) else exc.__class__.__name__
    return f"{kind}\n{exc}".encode("utf-8", "replace")[:60000]


def _fork_reporting(work: Callable[[int], int], close_in_child: Sequence[int] = ()) -> tuple[int, int]:
    """Fork a child that runs ``work(report_fd)`` and exits with its code (never returning into the caller);
    whatever it raises is written to the report pipe as :func:`_failure_report` and it exits 1. Returns the
    child's pid and the read end of its report pipe."""
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(report_r)
            for fd in close_in_child:
                os.close(fd)
            code = work(report_w)
        except BaseException as exc:  # everything is reported to the parent
            with contextlib.suppress(OSError):
                os.write(report_w, _failure_report(exc))
            code = 1
        finally:
            os._exit(code)
    os.close(report_w)
    return pid, report_r


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` to a pipe and close it; a reader that went away (the drawing process failed) is no error."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


class PlotWorker:
    """The PNG plots of one merge, drawn by child processes (``PLOTS_IN_CHILD``) or by this one.

    :meth:`start` forks the drawing process before the map exists, so that it imports matplotlib while this
    process reads the results and measures the regions; :meth:`draw` hands it the map, its metadata and the map
    rows under the plots' grid points (looked up here with healpy, which the drawing process never imports), and
    it draws the full sky while a second child forked from it (matplotlib already imported) draws the zoom.
    :meth:`finish` waits and raises what drawing raised (an InputError stays one; anything else becomes a
    SkyscanError naming the plots); :meth:`abandon` stops the children when the merge fails.
    """

    def __init__(self, fullsky: Path, zoom: Path | None) -> None:
        self.fullsky, self.zoom = fullsky, zoom
        self.pid = 0
        self.report = -1  # read end: the drawing process's failure report
        self.data = -1  # write end: the pickled (map, metadata, samples)
        self.sender: threading.Thread | None = None

    @classmethod
    def start(cls, fullsky: Path, zoom: Path | None) -> PlotWorker:
        """A worker for these files; with ``PLOTS_IN_CHILD`` its drawing process starts (and imports) now."""
        worker = cls(fullsky, zoom)
        if PLOTS_IN_CHILD:
            worker._fork()
        return worker

    def _fork(self) -> None:
        data_r, data_w = os.pipe()
        pid, report_r = _fork_reporting(lambda report_w: self._child(data_r, report_w), close_in_child=(data_w,))
        os.close(data_r)
        self.pid, self.report, self.data = pid, report_r, data_w

    def _child(self, data_r: int, report_w: int) -> int:
        import pickle

        from skyscan.products import plot as plot  # matplotlib: imported while the parent measures the map

        payload = _read_all(data_r)
        if not payload:  # the merge failed before its map was ready
            return 0
        m, meta, samples = pickle.loads(payload)  # from our own parent process
        zoom = _Zoom.start(self.zoom, m, meta, samples) if self.zoom is not None else None
        try:
            plot.plot_fullsky(self.fullsky, m, meta, rows=samples.fullsky_rows)
        except BaseException:
            if zoom is not None:
                zoom.stop()
            raise
        if zoom is not None:
            failure = zoom.wait()
            if failure:
                os.write(report_w, failure)
                return 1
        return 0

    def draw(self, m: MultiOrderMap, meta: SkymapMeta) -> None:
        """Draw the plots of this map: hand it to the drawing process, or draw them here, one after the other."""
        from skyscan.products.plotgrid import plot_samples

        samples = plot_samples(m, meta, fullsky=True, zoom=self.zoom is not None)
        if not self.pid:
            from skyscan.products import plot as plot

            plot.plot_fullsky(self.fullsky, m, meta, rows=samples.fullsky_rows)
            if self.zoom is not None:
                plot.plot_zoom(self.zoom, m, meta, rows=samples.zoom_rows, win=samples.zoom_window)
            return
        import pickle

        payload = pickle.dumps((m, meta, samples), protocol=pickle.HIGHEST_PROTOCOL)
        fd, self.data = self.data, -1
        # A thread writes it: more than a pipe holds, and the drawing process may still be importing matplotlib.
        self.sender = threading.Thread(target=_write_all, args=(fd, payload), name="plot-data", daemon=True)
        self.sender.start()

    def _close_data(self) -> None:
        if self.data >= 0:
            with contextlib.suppress(OSError):
                os.close(self.data)
            self.data = -1

    def _reap(self) -> tuple[int, str]:
        self._close_data()
        report = _read_all(self.report)
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        if self.sender is not None:
            self.sender.join()
            self.sender = None
        return status, report.decode("utf-8", "replace")

    def finish(self) -> None:
        if not self.pid:
            return
        status, report = self._reap()
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            return
        kind, _, message = report.partition("\n")
        if kind == "input":
            raise InputError(message)
        if report:
            raise SkyscanError(f"drawing the plots failed ({kind}: {message})")
        raise SkyscanError(f"drawing the plots failed (child process status {status})")

    def abandon(self) -> None:
        if not self.pid:
            return
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGTERM)
        self._reap()


class _Zoom:
    """The zoom plot drawn by a child of the drawing process (which has matplotlib imported already)."""

    def __init__(self, pid: int, report: int) -> None:
        self.pid, self.report = pid, report

    @classmethod
    def start(cls, path: Path, m: MultiOrderMap, meta: SkymapMeta, samples: Any) -> _Zoom:
        def draw(report_w: int) -> int:
            from skyscan.products import plot as plot

            plot.plot_zoom(path, m, meta, rows=samples.zoom_rows, win=samples.zoom_window)
            return 0

        return cls(*_fork_reporting(draw))

    def wait(self) -> bytes:
        """b"" if the zoom was drawn, else its failure report."""
        report = _read_all(self.report)
        _, status = os.waitpid(self.pid, 0)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            return b""
        return report or f"{SkyscanError.__name__}\nzoom plot process status {status}".encode()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGTERM)
        self.wait()


def _rel(path: Path, outdir: Path) -> str:
    try:
        return str(path.relative_to(outdir))
    except ValueError:
        return str(path)


def write_products(
    outdir: Path,
    m: MultiOrderMap,
    meta: SkymapMeta,
    records: Sequence[StageRecord],
    pixels: dict[str, Any],
    choices: ProductChoices,
    *,
    event_json: str | None = None,
    imported: ImportRecord | None = None,
    plot_worker: PlotWorker | None = None,
) -> MergeResult:
    """Write every product into `outdir` (each atomically) and, last, summary.json listing them.

    First the probability map's weight is fixed (skyscan.products.credible) so that every product carries the
    same map: the FITS and HDF5 densities, their headers, summary.json and the circular's notes. ``plot_worker``:
    the plots' worker started earlier for the files of ``plot_paths(outdir, choices)`` (else one starts here);
    it is finished or abandoned here.
    """
    try:
        return _write_products(outdir, m, meta, records, pixels, choices, event_json, imported, plot_worker)
    except BaseException:
        if plot_worker is not None:
            plot_worker.abandon()
        raise


def plot_paths(outdir: Path, zoom_plot: bool) -> tuple[Path, Path | None]:
    """(full sky, zoom or None): the PNG files of a merge into ``outdir``."""
    return outdir / PRODUCT_FILES["plot_fullsky"], outdir / PRODUCT_FILES["plot_zoom"] if zoom_plot else None


def _write_products(
    outdir: Path,
    m: MultiOrderMap,
    meta: SkymapMeta,
    records: Sequence[StageRecord],
    pixels: dict[str, Any],
    choices: ProductChoices,
    event_json: str | None,
    imported: ImportRecord | None,
    plots: PlotWorker | None,
) -> MergeResult:
    from skyscan.products import gcn as gcn
    from skyscan.products import skyreader as skyreader
    from skyscan.products.credible import map_probability

    meta.map_probability = map_probability(m, meta.containment_method, {k: r.level_2dllh for k, r in meta.regions.items()})

    template_path = choices.circular_template
    template = gcn.load_template(template_path)  # read first: a bad template must fail before anything is written
    circular = gcn.render_circular(meta, template, source=str(template_path or "circular template"))

    products: dict[str, Path] = {}

    def target(key: str) -> Path:
        p = outdir / PRODUCT_FILES[key]
        products[key] = p
        return p

    if not choices.plots and plots is not None:
        plots.abandon()
        plots = None
    if choices.plots:
        if plots is None:
            plots = PlotWorker.start(*plot_paths(outdir, choices.zoom_plot))
        plots.draw(m, meta)
    from skyscan.products.fits import write_flat_fits, write_multiorder_fits
    from skyscan.products.hdf5 import write_skymap_h5

    try:
        write_skymap_h5(target("skymap_h5"), m, meta, records, event_json)
        write_multiorder_fits(target("multiorder_fits"), m, meta)
        write_flat_fits(target("flat_fits"), flatten(m, choices.flat_nside, "RING"), meta)
        if plots is not None:  # listed where they always were in summary.json's products
            target("plot_fullsky")
            if choices.zoom_plot:
                target("plot_zoom")
        write_text(target("circular"), circular)
        write_json(target("notice"), json_safe(gcn.notice(meta)))
        reader_path = outdir / skyreader.file_name(meta.run_id, meta.event_id, meta.type_of_event)
        write_json(reader_path, skyreader.document(records, meta), indent=None)
    except BaseException:
        if plots is not None:
            plots.abandon()
        raise
    if plots is not None:
        plots.finish()
    products[SKYREADER_KEY] = reader_path
    target("summary")

    summary = build_summary(
        meta,
        pixels,
        {k: _rel(p, outdir) for k, p in products.items()},
        flat_nside=choices.flat_nside,
        map_pixels=MapPixelCounts(total=len(m), failed=m.n_failed),
        imported=imported,
    )
    doc = summary.to_json()
    write_json(products["summary"], doc)
    return MergeResult(outdir=outdir, map=m, meta=meta, summary=doc, summary_model=summary, products=products)
