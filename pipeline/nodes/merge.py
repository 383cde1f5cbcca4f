"""The merge node: all batch results of a scan -> the multi-order map and every product derived from it.

`merge_scan(OUTDIR)` reads ``stage*/scan-s*-*.h5`` (the scan-node contract, ``skyscan.nodes.results``), builds the
multi-order map (NUNIQ; every point covered once by the finest pixel scanned there), and has
``skyscan.products.write`` measure the containment regions and write, each atomically: skymap.h5,
skymap.multiorder.fits, skymap.2dllh.fits, plots/*.png, circular.txt, notice.json and last summary.json
(docs/summary-format.md), which lists the others. `merge_npz` does the same for an IceCube Skymap Scanner result in
the skyreader .npz layout. Settings come from OUTDIR/config.yaml (`containment:` and `merge:`).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from skyscan.atomic import remove_stale_parts, remove_stale_parts_in
from skyscan.errors import InputError
from skyscan.graph.layout import ScanLayout
from skyscan.nodes.results import read_result

# Re-exported for older importers (tests/test_campaign_report.py); the owner is skyscan.nodes.synthetic.
from skyscan.products.containment import LevelSpec
from skyscan.products.levels import choose_levels, context_of_event
from skyscan.products.meta import SkymapMeta, StageRecord
from skyscan.products.moc import MultiOrderMap, StageResult, build_multiorder
from skyscan.products.summary import PRODUCT_FILES, ImportRecord
from skyscan.products.write import (
    PLOTS_IN_CHILD,
    MergeResult,
    PlotWorker,
    ProductChoices,
    best_fit_of,
    measure_regions,
    pixel_counts,
    plot_paths,
    write_products,
)
from skyscan.settings.merge import AUTO_FLAT_NSIDE_CAP, MergeOptions, merge_options
from skyscan.version import __version__, git_revision

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


def remove_stale_products(outdir: Path) -> list[Path]:
    """Remove the temporary files a killed earlier merge left (``.<product>.*.part``): this node is their only
    writer, so none belongs to a live process. Returns what was removed."""
    layout = ScanLayout(outdir)
    removed = remove_stale_parts(*(layout.product(key) for key in PRODUCT_FILES))
    return removed + remove_stale_parts_in(layout.product("plot_fullsky").parent)


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


# --------------------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------------------


def read_config(outdir: Path) -> tuple[str, dict[str, Any]]:
    """(text, parsed mapping) of OUTDIR/config.yaml; an absent file is an empty configuration."""
    path = ScanLayout(outdir).config
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


def product_choices(
    outdir: Path, m: MultiOrderMap, options: MergeOptions, circular_template: str | os.PathLike[str] | None
) -> ProductChoices:
    """The `merge:` options resolved for this map: the flat map's nside, and the circular template's path.

    A template given here (the command line) is taken as it is; one from the configuration is relative to OUTDIR.
    """
    template_path = circular_template if circular_template is not None else options.circular_template
    if template_path is not None and not Path(template_path).is_absolute() and circular_template is None:
        template_path = outdir / template_path
    if options.flat_nside is not None:
        flat_nside = options.flat_nside
    else:
        flat_nside = int(min(int(m.nside.max()), AUTO_FLAT_NSIDE_CAP))
    return ProductChoices(flat_nside, options.plots, options.zoom_plot, template_path)


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
    """Merge the scan in `outdir` into all products (see the module docstring); bad inputs raise InputError.

    The plots' drawing process is started first (``PlotWorker``): it imports matplotlib while this process reads
    the results and measures the map, and draws once the map is handed to it.
    """
    from skyscan.reco.event import read_event

    out = Path(outdir)
    if not out.is_dir():
        raise InputError(f"{out}: no such scan directory")
    event_path = ScanLayout(out).event
    if not event_path.is_file():
        raise InputError(f"{event_path}: missing event file (not a scan directory?)")
    ef = read_event(event_path)
    ev = ef.event
    config_text, config = read_config(out)
    options = merge_options(config)
    if plots is not None:
        options.plots = plots
    # the calibration of a file is checked against this event; a table is looked up by its observable
    choice = choose_levels(_containment_spec(containment, config), context_of_event(ev))
    method, levels = choice.method, choice.levels

    remove_stale_products(out)
    worker = PlotWorker.start(*plot_paths(out, options.zoom_plot)) if options.plots and PLOTS_IN_CHILD else None
    try:
        return _merge_scan(out, ef, config_text, options, method, levels, choice.calibration, circular_template,
                           worker)
    except BaseException:
        if worker is not None:
            worker.abandon()
        raise


def _merge_scan(
    out: Path,
    ef: Any,
    config_text: str,
    options: MergeOptions,
    method: str,
    levels: Mapping[str, float],
    calibration: Any,
    circular_template: str | os.PathLike[str] | None,
    worker: PlotWorker | None,
) -> MergeResult:
    ev = ef.event
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

    best_fit = best_fit_of(m, ev.time)  # installs the cached Earth-orientation table (the event time is known)
    truth: tuple[float, float] | None = None
    if ef.truth is not None:
        from skyscan.reco.coords import local_to_equatorial

        ra, dec = local_to_equatorial(math.radians(ef.truth.zenith_deg), math.radians(ef.truth.azimuth_deg), ev.time)
        truth = (math.degrees(float(ra)) % 360.0, math.degrees(float(dec)))

    meta = SkymapMeta(
        run_id=ev.run_id,
        event_id=ev.event_id,
        event_time=ev.time,
        stream=ev.stream,
        best_fit=best_fit,
        containment_method=method,
        regions=measure_regions(m, levels),
        calibration=calibration,
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
    event_json = ScanLayout(out).event.read_text(encoding="utf-8")
    return write_products(
        out,
        m,
        meta,
        stage_records(files, out),
        pixel_counts(stages),
        product_choices(out, m, options, circular_template),
        event_json=event_json,
        plot_worker=worker,
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
    choice = choose_levels(spec)
    method, levels = choice.method, choice.levels
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
        calibration=choice.calibration,
        config_yaml=config_text,
        created=_now(),
        software_version=__version__,
        git_revision=git_revision(),
        source=f"imported from {src.name} (sha256 {digest[:12]})",
        is_real_event=imported.is_real_event,
        event_type=imported.event_type,
    )
    record = ImportRecord(npz=src.name, sha256=digest, event_type=imported.event_type, notes=tuple(imported.notes))
    return write_products(
        out,
        m,
        meta,
        imported.records,
        pixel_counts(imported.stages),
        product_choices(out, m, options, circular_template),
        event_json=None,
        imported=record,
    )


__all__ = [
    "MergeResult",
    "ResultFile",
    "find_result_files",
    "merge_npz",
    "merge_scan",
    "product_choices",
    "read_config",
    "read_result_file",
    "stage_records",
]
