"""`skyscan calibrate`: calibrated containment levels by resimulating a scan, or a table from a campaign."""

from __future__ import annotations

import click

from skyscan.cli.core import Finite, Int64
from skyscan.errors import InputError, SkyscanError


@click.command("calibrate")
@click.argument("scandir", required=False, type=click.Path(file_okay=False))
@click.option("-o", "--output", type=click.Path(), help="CALDIR (default SCANDIR/calibration); with --campaign the "
              "table file (default CAMPDIR/calibration-table.json).")  # fmt: skip
@click.option("--n", "n", type=Int64(2, 1_000_000), default=100, show_default=True, help="Pseudo-events.")
@click.option("--systematics", default="default", show_default=True,
              help="Simulator variations: none, default or a YAML file (docs/simulation.md).")  # fmt: skip
@click.option("--seed", type=Int64(0), help="Seed of the pseudo-events (default: fixed by the run and event id).")
@click.option("--submit", is_flag=True, help="Submit the calibration graph to HTCondor instead of running it here.")
@click.option("--batch-size", type=Int64(1, 100_000), help="Pseudo-events per graph node (default 10).")
@click.option("--disc-deg", type=Finite(0.0, 180.0), help="Radius of the reconstructed disc (default: see docs).")
@click.option("-j", "--jobs", type=Int64(1, 4096), help="Processes at once for the local executor.")
@click.option("--site", default="local", show_default=True, help="Site profile of the graph's nodes.")
@click.option("--campaign", type=click.Path(file_okay=False), help="Derive a calibration table from a finished "
              "simulated campaign instead.")  # fmt: skip
@click.option("--observable", type=click.Choice(["total_charge", "hit_doms"]), default="total_charge",
              show_default=True, help="With --campaign: the event observable the table is binned in.")  # fmt: skip
@click.option("--min-per-bin", type=Int64(2, 1_000_000), default=30, show_default=True,
              help="With --campaign: fewest events per bin.")  # fmt: skip
def calibrate(
    scandir: str | None,
    output: str | None,
    n: int,
    systematics: str,
    seed: int | None,
    submit: bool,
    batch_size: int | None,
    disc_deg: float | None,
    jobs: int | None,
    site: str,
    campaign: str | None,
    observable: str,
    min_per_bin: int,
) -> None:
    """Calibrate the containment levels of a finished scan by resimulation (IceCube's method).

    \b
    From the scan's best-fit track, simulate N pseudo-events with the simulator's systematics varied,
    reconstruct each over a disc around its own true direction with the scan's stages, and find the
    2*delta-llh that contains the truth for 50% and 90% of them: CALDIR/calibration.json, for
    `skyscan merge SCANDIR --containment CALDIR/calibration.json`. Runs as a graph (one node per batch,
    then collect) with the local executor, or on HTCondor with --submit; running again resumes.

    \b
    With --campaign CAMPDIR: a calibration table (levels per bin of an event observable) from a finished
    simulated campaign, for `containment: {table: FILE}` in a scan configuration.

    \b
    Examples:
      skyscan calibrate scan/ --n 100 --systematics default
      skyscan calibrate scan/ -o cal/ --submit
      skyscan calibrate --campaign camp/ -o table.json
    """
    if campaign is not None:
        if scandir is not None:
            raise InputError("give SCANDIR or --campaign CAMPDIR, not both")
        from skyscan.calibrate.table import calibrate_campaign

        path = calibrate_campaign(campaign, output, observable=observable, min_per_bin=min_per_bin)
        click.echo(f"wrote {path}")
        return
    if scandir is None:
        raise InputError("missing SCANDIR (a finished scan), or use --campaign CAMPDIR")
    from skyscan.calibrate import calibrate_scan

    run = calibrate_scan(scandir, output, n, systematics, seed, "condor" if submit else "local",
                         batch_size=batch_size, disc_deg=disc_deg, jobs=jobs, site=site)  # fmt: skip
    if submit:
        click.echo(f"submitted {run.caldir}/calibration.dag as cluster {run.cluster}")
        return
    if not run.ok or run.calibration is None:
        failed = ", ".join(run.failed) or "interrupted"
        raise SkyscanError(f"calibration in {run.caldir} did not finish ({failed}); run again to resume")
    import json

    doc = json.loads(run.calibration.read_text(encoding="utf-8"))
    click.echo(
        f"calibrated run {doc['source']['run_id']} event {doc['source']['event_id']} with {doc['n']} pseudo-events: "
        f"50% 2dLLH <= {doc['levels']['50']:.3g}, 90% 2dLLH <= {doc['levels']['90']:.3g} "
        f"(Wilks would cover {doc['wilks']['90']['coverage']:.2f} at 90%; "
        f"{doc['cost']['cpu_seconds_per_pseudo_event']:.2f} CPU-s per pseudo-event)"
    )
    if doc["disc"]["too_small"]:
        click.echo(f"warning: in {doc['disc']['too_small']} pseudo-events the 90% contour reached the disc's edge "
                   "(use --disc-deg)", err=True)  # fmt: skip
    click.echo(f"wrote {run.calibration}")


__all__ = ["calibrate"]
