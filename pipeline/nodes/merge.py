"""The merge step: all batch results of a scan -> the multi-order map and every product derived from it.

`merge_scan(OUTDIR)` reads ``stage*/scan-s*-*.h5`` (the scan-node contract), builds the multi-order map (NUNIQ;
every point covered once by the finest pixel scanned there), measures the containment regions and writes, each
atomically: skymap.h5, skymap.multiorder.fits, skymap.2dllh.fits, plots/*.png, circular.txt, notice.json and last
summary.json (docs/summary-format.md), which lists the others. `merge_npz` does the same for an IceCube Skymap
Scanner result in the skyreader .npz layout. Settings come from OUTDIR/config.yaml (`containment:` and `merge:`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from skyscan.atomic import write_json, write_text
from skyscan.errors import InputError
from skyscan.graph.layout import ScanLayout
from skyscan.nodes.results import BatchResult, ResultProvenance, read_result, write_batch, write_result
from skyscan.products.containment import LEVELS, LevelSpec, Region, best_fit_radec, region, resolve_levels
from skyscan.products.moc import MultiOrderMap, StageResult, build_multiorder, flatten, nside_ipix_to_uniq
from skyscan.products.skymapio import (
    PRODUCT_LEVELS,
    BestFit,
    SkymapMeta,
    StageRecord,
    json_ready,
    write_flat_fits,
    write_multiorder_fits,
    write_skymap_h5,
)
from skyscan.products.summary import (
    PRODUCT_FILES,
    SUMMARY_SCHEMA,
    BestFitRecord,
    ContainmentRecord,
    ImportRecord,
    MapPixelCounts,
    PixelCounts,
    RegionRecord,
    SkyPosition,
    SoftwareRecord,
    Summary,
)
from skyscan.settings.merge import AUTO_FLAT_NSIDE_CAP, MergeOptions, merge_options
from skyscan.version import __version__, git_revision

# --------------------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------------------


def product_levels(spec: LevelSpec) -> tuple[str, dict[str, float]]:
    """(method name, levels labelled '50' and '90' at least) of a containment specification.

    Products need a 50% and a 90% region. Named sets and mappings must provide those labels; two bare numbers
    are taken as the 50% and the 90% level (the smaller first).
    """
    levels = resolve_levels(spec)
    if isinstance(spec, str) and spec.strip().lower() in LEVELS:
        method = spec.strip().lower()
    else:
        method = "explicit"
    if all(label in levels for label in PRODUCT_LEVELS):
        return method, levels
    is_mapping = isinstance(spec, Mapping)
    if not is_mapping and len(levels) == 2:
        low, high = sorted(levels.values())
        return method, {"50": low, "90": high}
    raise InputError(
        f"containment {spec!r}: give the 50% and 90% levels (a name such as 'wilks', two numbers like '1.39,4.61', "
        "or a mapping with keys 50 and 90)"
    )


# --------------------------------------------------------------------------------------------------------------
# Reading scan results
# --------------------------------------------------------------------------------------------------------------


@dataclass
class ResultFile:
    """One scan-node result file (NESTED indices) and where it came from."""

    stage: int
    path: Path
    result: StageResult
    seconds: npt.NDArray[np.float64]


def _rel(path: Path, outdir: Path) -> str:
    try:
        return str(path.relative_to(outdir))
    except ValueError:
        return str(path)


def find_result_files(outdir: Path) -> list[tuple[int, Path]]:
    """(stage, path) of every result file, checking that each planned batch has one (missing -> InputError)."""
    layout = ScanLayout(outdir)
    found: list[tuple[int, Path]] = []
    for stage in layout.list_stages():
        for batch in layout.list_batches(stage):
            expected = layout.result_file(stage, batch)
            if not expected.exists():
                planned = layout.batch_file(stage, batch).name
                raise InputError(f"{_rel(expected, outdir)}: missing result file (batch {planned} was planned)")
        found.extend((stage, res) for res in layout.list_results(stage))
    found.sort(key=lambda item: (item[0], item[1].name))
    return found


def read_result_file(path: Path, stage: int, run_id: int, event_id: int, label: str | None = None) -> ResultFile:
    """One result file in the scan-node format; anything wrong is an InputError naming the file."""
    fits = read_result(path, run_id, event_id, label)
    try:
        result = fits.stage_result()
    except InputError as exc:
        raise InputError(f"{label or str(path)}: {exc}") from None
    return ResultFile(stage, path, result, np.asarray(fits.seconds, dtype=np.float64).reshape(-1))


def stage_records(files: Sequence[ResultFile], outdir: Path) -> list[StageRecord]:
    """The raw results grouped by stage, in file order (what skymap.h5 keeps under /stages)."""
    records: list[StageRecord] = []
    for stage in sorted({f.stage for f in files}):
        group = [f for f in files if f.stage == stage]

        def cat(name: str, group: list[ResultFile] = group) -> Any:
            return np.concatenate([getattr(f.result, name) for f in group])

        records.append(
            StageRecord(
                name=f"stage{stage}",
                nside=np.concatenate([np.full(f.result.ipix.size, f.result.nside, dtype=np.int64) for f in group]),
                ipix=cat("ipix"),
                llh=cat("llh"),
                x=cat("x"),
                y=cat("y"),
                z=cat("z"),
                t=cat("t"),
                status=cat("status"),
                seconds=np.concatenate([f.seconds for f in group]),
                sources=[_rel(f.path, outdir) for f in group],
            )
        )
    return records


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


# --------------------------------------------------------------------------------------------------------------
# Products
# --------------------------------------------------------------------------------------------------------------


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


def _flat_nside(m: MultiOrderMap, options: MergeOptions) -> int:
    if options.flat_nside is not None:
        return options.flat_nside
    return int(min(int(m.nside.max()), AUTO_FLAT_NSIDE_CAP))


def write_products(
    outdir: Path,
    m: MultiOrderMap,
    meta: SkymapMeta,
    records: Sequence[StageRecord],
    pixels: dict[str, Any],
    options: MergeOptions,
    *,
    event_json: str | None = None,
    circular_template: str | os.PathLike[str] | None = None,
    imported: ImportRecord | None = None,
) -> MergeResult:
    """Write every product into `outdir` (each atomically) and, last, summary.json listing them."""
    from skyscan.products import gcn as gcn

    template_path = circular_template if circular_template is not None else options.circular_template
    if template_path is not None and not Path(template_path).is_absolute() and circular_template is None:
        template_path = outdir / template_path
    template = gcn.load_template(template_path)  # read first: a bad template must fail before anything is written
    circular = gcn.render_circular(meta, template, source=str(template_path or "circular template"))

    products: dict[str, Path] = {}

    def target(key: str) -> Path:
        p = outdir / PRODUCT_FILES[key]
        products[key] = p
        return p

    write_skymap_h5(target("skymap_h5"), m, meta, records, event_json)
    write_multiorder_fits(target("multiorder_fits"), m, meta)
    nside_flat = _flat_nside(m, options)
    write_flat_fits(target("flat_fits"), flatten(m, nside_flat, "RING"), meta)
    if options.plots:
        from skyscan.products import plot as plot

        plot.plot_fullsky(target("plot_fullsky"), m, meta)
        if options.zoom_plot:
            plot.plot_zoom(target("plot_zoom"), m, meta)
    write_text(target("circular"), circular)
    write_json(target("notice"), json_ready(gcn.notice(meta)))
    target("summary")

    summary = build_summary(
        meta,
        pixels,
        {k: _rel(p, outdir) for k, p in products.items()},
        flat_nside=nside_flat,
        map_pixels=MapPixelCounts(total=len(m), failed=m.n_failed),
        imported=imported,
    )
    doc = summary.to_json()
    write_json(products["summary"], doc)
    return MergeResult(outdir=outdir, map=m, meta=meta, summary=doc, summary_model=summary, products=products)


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
            meta.containment_method, {label: RegionRecord(**reg.as_dict()) for label, reg in meta.regions.items()}
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
    )


# --------------------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------------------


def read_config(outdir: Path) -> tuple[str, dict[str, Any]]:
    """(text, parsed mapping) of OUTDIR/config.yaml; an absent file is an empty configuration."""
    path = outdir / "config.yaml"
    if not path.exists():
        return "", {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read configuration ({exc.__class__.__name__})") from None
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a mapping at the top level")
    return text, doc


def _containment_spec(containment: LevelSpec | None, config: Mapping[str, Any]) -> LevelSpec:
    if containment is not None:
        return containment
    spec = config.get("containment")
    if spec is None:
        return "wilks"
    if isinstance(spec, Mapping):
        return {str(k): v for k, v in spec.items()}
    if isinstance(spec, (str, int, float, list)):
        return spec
    raise InputError(f"config containment: expected a name, numbers or a mapping, got {spec!r}")


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --------------------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------------------


def merge_scan(
    outdir: str | os.PathLike[str],
    containment: LevelSpec | None = None,
    *,
    circular_template: str | os.PathLike[str] | None = None,
    plots: bool | None = None,
) -> MergeResult:
    """Merge the scan in `outdir` into all products (see the module docstring); bad inputs raise InputError."""
    from skyscan.reco.coords import local_to_equatorial
    from skyscan.reco.event import read_event

    out = Path(outdir)
    if not out.is_dir():
        raise InputError(f"{out}: no such scan directory")
    event_path = out / "event.json"
    if not event_path.is_file():
        raise InputError(f"{event_path}: missing event file (not a scan directory?)")
    ef = read_event(event_path)
    ev = ef.event
    config_text, config = read_config(out)
    options = merge_options(config)
    if plots is not None:
        options.plots = plots
    method, levels = product_levels(_containment_spec(containment, config))

    located = find_result_files(out)
    if not located:
        raise InputError(f"{out}: no scan results (stage*/scan-s*-*.h5)")
    files = [read_result_file(p, stage, ev.run_id, ev.event_id, _rel(p, out)) for stage, p in located]
    stages = [f.result for f in files]
    try:
        m = build_multiorder(stages)
    except InputError as exc:
        raise InputError(f"{out}: {exc}") from None
    if not np.any(np.isfinite(m.llh)):
        raise InputError(f"{out}: every pixel of the scan failed (llh is NaN everywhere): no best fit")

    truth: tuple[float, float] | None = None
    if ef.truth is not None:
        ra, dec = local_to_equatorial(math.radians(ef.truth.zenith_deg), math.radians(ef.truth.azimuth_deg), ev.time)
        truth = (math.degrees(float(ra)) % 360.0, math.degrees(float(dec)))

    meta = SkymapMeta(
        run_id=ev.run_id,
        event_id=ev.event_id,
        event_time=ev.time,
        stream=ev.stream,
        best_fit=best_fit_of(m, ev.time),
        containment_method=method,
        regions=measure_regions(m, levels),
        config_yaml=config_text,
        created=_now(),
        software_version=__version__,
        git_revision=git_revision(),
        far_per_year=ev.far_per_year,
        signalness=ev.signalness,
        energy_gev=ev.energy_gev,
        truth_radec=truth,
        source="skyscan scan",
    )
    event_json = event_path.read_text(encoding="utf-8")
    return write_products(
        out,
        m,
        meta,
        stage_records(files, out),
        pixel_counts(stages),
        options,
        event_json=event_json,
        circular_template=circular_template,
    )


def merge_npz(
    npz_path: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    containment: LevelSpec | None = None,
    event_time: datetime | None = None,
    *,
    circular_template: str | os.PathLike[str] | None = None,
    plots: bool | None = None,
) -> MergeResult:
    """Products of an IceCube Skymap Scanner result (skyreader .npz) written into `outdir`.

    `event_time` overrides the MJD of the file's header. An existing OUTDIR/config.yaml is honoured like a
    native scan's; the configuration recorded in the products is that text plus an `import:` section.
    """
    from skyscan.products.npz import read_skyreader_npz, stream_of

    src = Path(npz_path)
    imported = read_skyreader_npz(src)
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    config_text, config = read_config(out) if out.is_dir() else ("", {})
    options = merge_options(config)
    if plots is not None:
        options.plots = plots
    spec = _containment_spec(containment, config)
    method, levels = product_levels(spec)
    try:
        m = build_multiorder(imported.stages)
    except InputError as exc:
        raise InputError(f"{src}: {exc}") from None
    if not np.any(np.isfinite(m.llh)):
        raise InputError(f"{src}: every pixel of the scan failed (llh is NaN everywhere): no best fit")
    when = event_time if event_time is not None else imported.event_time
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)

    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    import_doc = {
        "import": {
            "npz": src.name,
            "sha256": digest,
            "format": "skyreader (RING indices converted to NESTED)",
            "event_time_from": "argument" if event_time is not None else ("header mjd" if when else None),
        }
    }
    if not config_text:
        config_doc: dict[str, Any] = {"containment": spec if not isinstance(spec, Mapping) else dict(spec)}
        config_text = yaml.safe_dump(config_doc, sort_keys=False)
    config_text = config_text.rstrip("\n") + "\n" + yaml.safe_dump(import_doc, sort_keys=False)

    out.mkdir(parents=True, exist_ok=True)
    meta = SkymapMeta(
        run_id=imported.run_id if imported.run_id is not None else 0,
        event_id=imported.event_id if imported.event_id is not None else 0,
        event_time=when,
        stream=stream_of(imported.event_type),
        best_fit=best_fit_of(m, when),
        containment_method=method,
        regions=measure_regions(m, levels),
        config_yaml=config_text,
        created=_now(),
        software_version=__version__,
        git_revision=git_revision(),
        source=f"imported from {src.name} (sha256 {digest[:12]})",
    )
    record = ImportRecord(npz=src.name, sha256=digest, event_type=imported.event_type, notes=tuple(imported.notes))
    return write_products(
        out,
        m,
        meta,
        imported.records,
        pixel_counts(imported.stages),
        options,
        event_json=None,
        circular_template=circular_template,
        imported=record,
    )


# --------------------------------------------------------------------------------------------------------------
# Synthetic scans (tests, benchmarks, demonstrations)
# --------------------------------------------------------------------------------------------------------------


def paraboloid_llh(
    nside: int, ipix: npt.ArrayLike, centre_radec: tuple[float, float], sigma_deg: float, floor: float = 100.0
) -> npt.NDArray[np.float64]:
    """-ln L = floor + d^2 / (2 sigma^2) at NESTED pixel centres, d the angular distance to the centre (degrees).

    Then 2*delta-llh = (d / sigma)^2, so the Wilks 90% region is a disc of radius sqrt(4.61) sigma around the centre.
    """
    import healpy as hp

    theta, phi = hp.pix2ang(nside, np.asarray(ipix, dtype=np.int64), nest=True)
    v = np.asarray(hp.ang2vec(theta, phi))
    c = hp.ang2vec(math.radians(90.0 - centre_radec[1]), math.radians(centre_radec[0]))
    d = np.degrees(np.arccos(np.clip(v @ c, -1.0, 1.0)))
    return np.asarray(floor + 0.5 * (d / sigma_deg) ** 2, dtype=np.float64)


def write_result_file(
    path: Path, nside: int, ipix: npt.ArrayLike, llh: npt.ArrayLike, run_id: int, event_id: int
) -> None:
    """A result file in the scan-node contract format (x, y, z, t are dummy values)."""
    pix = np.asarray(ipix, dtype=np.int64)
    values = np.asarray(llh, dtype=np.float64)
    n = pix.size
    x, y, z, t = (np.full(n, float(i)) for i in range(4))
    fits = BatchResult(
        nside=nside,
        ipix=pix,
        llh=values,
        x=x,
        y=y,
        z=z,
        t=t,
        status=np.where(np.isfinite(values), 0, 1).astype(np.int32),
        seconds=np.full(n, 0.5),
    )
    write_result(path, fits, ResultProvenance(run_id, event_id, config_digest="synthetic"))


def refine_plan(
    centre_radec: tuple[float, float], plan: Sequence[tuple[int, int]]
) -> list[tuple[int, npt.NDArray[np.int64]]]:
    """(nside, NESTED pixels) per stage: stage 0 is the whole sky; stage k re-scans, at its nside, every child of
    the `count` pixels of stage k-1 closest to the centre. `plan` is [(nside, count of parents to refine), ...]."""
    import healpy as hp

    stages: list[tuple[int, npt.NDArray[np.int64]]] = []
    c = hp.ang2vec(math.radians(90.0 - centre_radec[1]), math.radians(centre_radec[0]))
    nside0 = plan[0][0]
    stages.append((nside0, np.arange(12 * nside0 * nside0, dtype=np.int64)))
    for nside, count in plan[1:]:
        prev_nside, prev_pix = stages[-1]
        v = np.asarray(hp.pix2vec(prev_nside, prev_pix, nest=True)).T
        closest = prev_pix[np.argsort(-(v @ c), kind="stable")[:count]]
        factor = (nside // prev_nside) ** 2
        children = (closest[:, None] * factor + np.arange(factor)[None, :]).reshape(-1)
        stages.append((nside, np.sort(children)))
    return stages


def write_synthetic_scan(
    outdir: str | os.PathLike[str],
    centre_radec: tuple[float, float] = (77.36, 5.69),
    sigma_deg: float = 1.0,
    plan: Sequence[tuple[int, int]] = ((8, 0), (64, 12), (512, 24)),
    batch_size: int = 768,
    run_id: int = 12,
    event_id: int = 345,
    event_time: str = "2026-03-14T15:09:26.123456Z",
    stream: str | None = "gold",
    config_text: str = "containment: wilks\nmerge:\n  flat_nside: auto\n",
    failed: Mapping[int, Sequence[int]] | None = None,
) -> Path:
    """A scan directory with a paraboloid llh in the scan-node contract format (event.json, config.yaml, batches).

    The default plan is the default scan's shape: 768 pixels at nside 8, then the 12 best refined to nside 64
    (768 pixels), then the 24 best of those to nside 512 (1536 pixels). `failed` maps a stage to indices (into
    that stage's pixel list) whose fit is marked failed (NaN).
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    event = {
        "schema": "skyscan-event/1",
        "run_id": run_id,
        "event_id": event_id,
        "time": event_time,
        "pulses": {"string": [36], "om": [30], "time": [10000.0], "charge": [1.0]},
    }
    if stream is not None:
        event["stream"] = stream
    layout = ScanLayout(out)
    layout.event.write_text(json.dumps(event), encoding="utf-8")
    layout.config.write_text(config_text, encoding="utf-8")
    for k, (nside, pix) in enumerate(refine_plan(centre_radec, plan)):
        llh = paraboloid_llh(nside, pix, centre_radec, sigma_deg)
        if failed and k in failed:
            llh[np.asarray(list(failed[k]), dtype=np.int64)] = np.nan
        layout.stage_dir(k).mkdir(exist_ok=True)
        for b, start in enumerate(range(0, pix.size, batch_size)):
            chunk = slice(start, start + batch_size)
            write_batch(layout.batch_file(k, b), pix[chunk])
            write_result_file(layout.result_file(k, b), nside, pix[chunk], llh[chunk], run_id, event_id)
    return out


__all__ = [
    "PRODUCT_FILES",
    "SUMMARY_SCHEMA",
    "MergeOptions",
    "MergeResult",
    "best_fit_of",
    "build_summary",
    "find_result_files",
    "merge_npz",
    "merge_options",
    "merge_scan",
    "paraboloid_llh",
    "pixel_counts",
    "product_levels",
    "read_config",
    "read_result_file",
    "refine_plan",
    "write_products",
    "write_result_file",
    "write_synthetic_scan",
]
