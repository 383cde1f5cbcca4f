"""`skyscan run`: the local executor, the embedded default."""

from __future__ import annotations

import os

import click


@click.command("run")
@click.argument("event")
@click.option("-o", "--outdir", required=True, type=click.Path(file_okay=False), help="Scan directory (created, or resumed).")
@click.option("--jobs", "-j", type=int, help="Processes at once (default: all cores).")
@click.option("--config", "config_path", help="YAML merged over the default configuration.")
@click.option(
    "--containment",
    help="Containment levels: wilks (default), calibrated, or the 50% and 90% 2*delta-llh as two numbers, "
    "e.g. 1.39,4.61 (Wilks' 50%/90%; 2.3,5.9 would be the 68%/95% levels). Checked before anything is scanned.",
)
@click.option("--rule", type=click.Choice(["fixed", "adaptive"]), help="Refinement rule (overrides scan.rule).")
@click.option("--retries", type=int, help="Retries of a failed scan job (overrides dag.retries).")
def run(
    event: str,
    outdir: str,
    jobs: int | None,
    config_path: str | None,
    containment: str | None,
    rule: str | None,
    retries: int | None,
) -> None:
    """Scan EVENT on this machine: write the DAG into OUTDIR and execute it with the local executor.

    The same .dag/.sub files that `skyscan submit` sends to HTCondor are run here, in dependency
    order, up to --jobs at a time, with retries. Progress is shown per stage. Running the command
    again on the same OUTDIR (after a crash or Ctrl-C) resumes: finished jobs are not redone.
    Exit 0 when the scan is done, 1 when it failed (see `skyscan status OUTDIR`), 130 when stopped.

    \b
    Examples:
      skyscan run event.json -o scan/
      skyscan run event.json -o scan/ --jobs 4 --containment calibrated
    """
    from skyscan.errors import InputError

    if jobs is not None and jobs < 1:
        raise InputError("--jobs: must be at least 1")
    from skyscan.graph.warmstart import warm_node_process

    with warm_node_process():  # first: its warm-up overlaps the imports and the set-up below
        from skyscan.graph.localrun import run_scan
        from skyscan.products.levels import check_product_levels
        from skyscan.settings.scan import flag_overrides, load_config

        overrides = flag_overrides(rule=rule, retries=retries)
        if containment is not None:
            overrides["containment"] = containment
        config = load_config(config_path, overrides)
        check_product_levels(config.doc.get("containment", "wilks"))  # the merge needs them: fail now, not later
        outcome = run_scan(event, outdir, config, jobs=jobs)
    res = outcome.result
    if outcome.state == "interrupted":
        click.echo(f"stopped; run the same command again to resume ({outdir})", err=True)
        raise SystemExit(130)
    click.echo(f"scan {outcome.state} in {res.seconds:.1f} s: {outdir}")
    if outcome.summary is not None:
        s = outcome.summary
        c90 = s.region("90")
        area90 = c90.area_deg2 if c90 is not None and c90.area_deg2 is not None else float("nan")
        click.echo(
            f"best fit RA {s.best_fit.ra_deg:.2f} deg, Dec {s.best_fit.dec_deg:.2f} deg; 90% area {area90:.2f} deg2"
        )
        for name, rel in sorted(s.products.items()):
            click.echo(f"  {name}: {os.path.join(outdir, rel)}")
    if outcome.state != "done":
        failed = ", ".join(res.failed) or "see logs/"
        click.echo(f"skyscan: error: scan failed (failed nodes: {failed}); `skyscan status {outdir}` for details", err=True)
        raise SystemExit(1)
