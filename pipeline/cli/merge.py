"""Commands of the merge step: `skyscan merge` (also imports Skymap Scanner .npz files) and `skyscan node merge`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from skyscan.errors import InputError


def _report(result: object) -> None:
    from skyscan.products.write import MergeResult

    assert isinstance(result, MergeResult)
    s = result.summary_model
    bf = s.best_fit
    map_total = s.map_pixels.total if s.map_pixels is not None else None
    click.echo(
        f"merged run {s.run_id} event {s.event_id}: {s.pixels.scanned} pixels scanned "
        f"({s.pixels.failed} failed) into {map_total} map pixels"
    )
    click.echo(f"best fit RA {bf.ra_deg:.2f} Dec {bf.dec_deg:+.2f} deg (nside {bf.nside})")
    cont = s.containment
    for label in ("50", "90"):
        r = cont.regions[label]
        click.echo(
            f"{label}% ({cont.method}, 2dLLH <= {r.level_2dllh:g}): {r.area_deg2:.2f} deg2, "
            f"RA +{r.ra_plus_deg:.2f}/-{r.ra_minus_deg:.2f}, Dec +{r.dec_plus_deg:.2f}/-{r.dec_minus_deg:.2f} deg"
            + (f" [{r.note}]" if r.note else "")
        )
    click.echo(f"wrote {', '.join(s.products.values())} in {result.outdir}")


def _event_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    from skyscan.reco.event import parse_time

    when: datetime = parse_time(text, "--event-time")
    return when


@click.command("merge")
@click.argument("outdir", required=False, type=click.Path(file_okay=False))
@click.option(
    "--containment",
    help="Containment levels: wilks, calibrated, the 50% and 90% 2*delta-llh like '1.39,4.61', or a "
    "calibration file CALDIR/calibration.json from `skyscan calibrate` (default: the configuration's).",
)
@click.option(
    "--circular-template",
    type=click.Path(dir_okay=False),
    help="Template of the GCN circular draft (default: the packaged config/circular.txt).",
)
@click.option("--import-npz", "npz", type=click.Path(dir_okay=False), help="Import an IceCube Skymap Scanner .npz result.")
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Output directory of --import-npz.")
@click.option("--event-time", help="Event time (ISO 8601 UTC) for --import-npz when the file has none or it is wrong.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots (faster).")
def merge(
    outdir: str | None,
    containment: str | None,
    circular_template: str | None,
    npz: str | None,
    output: str | None,
    event_time: str | None,
    no_plots: bool,
) -> None:
    """Merge a scan's results into the skymap products (HDF5, FITS, plots, summary, GCN drafts).

    \b
    Products in OUTDIR: skymap.h5, skymap.multiorder.fits, skymap.2dllh.fits, plots/*.png,
    circular.txt, notice.json and summary.json.

    \b
    Examples:
      skyscan merge scan/
      skyscan merge scan/ --containment calibrated
      skyscan merge scan/ --containment cal/calibration.json
      skyscan merge --import-npz run00138632.evt000031747601.npz -o imported/
    """
    from skyscan.nodes.merge import merge_npz, merge_scan
    from skyscan.products.levels import level_context, scan_level_context

    plots = False if no_plots else None
    if npz is not None:
        if outdir is not None and output is not None and Path(outdir) != Path(output):
            raise InputError("give the output directory once: OUTDIR or -o/--output")
        target = output or outdir
        if target is None:
            raise InputError("--import-npz needs an output directory (-o OUTDIR)")
        from skyscan import iers_cache

        iers_cache.install()
        result = merge_npz(
            npz, target, containment, _event_time(event_time), circular_template=circular_template, plots=plots
        )
    else:
        if output is not None:
            raise InputError("-o/--output goes with --import-npz; a scan is merged into its own OUTDIR")
        if event_time is not None:
            raise InputError("--event-time goes with --import-npz (a scan's event.json has the time)")
        if outdir is None:
            raise InputError("missing OUTDIR (the scan directory), or use --import-npz FILE -o OUTDIR")
        # merge_scan installs the cached Earth-orientation table itself, after starting its plots' process
        with level_context(scan_level_context(outdir)):
            result = merge_scan(outdir, containment, circular_template=circular_template, plots=plots)
    _report(result)


@click.command("merge")
@click.argument("outdir", type=click.Path(file_okay=False))
def node_merge(outdir: str) -> None:
    """Merge all stage results of the scan in OUTDIR into the skymap products (the DAG's merge node).

    Settings come from OUTDIR/config.yaml (containment:, merge:). Exit 0 on success, 2 if a result file
    is missing or corrupt, 1 otherwise.

    \b
    Example (the DAG's merge node, run inside the scan directory):
      skyscan node merge .
    """
    from skyscan.nodes.merge import merge_scan
    from skyscan.products.levels import level_context, scan_level_context

    # merge_scan installs the cached Earth-orientation table itself, after starting its plots' process
    with level_context(scan_level_context(outdir)):
        _report(merge_scan(outdir))


__all__ = ["merge", "node_merge"]
