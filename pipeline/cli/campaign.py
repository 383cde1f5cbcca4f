"""`skyscan campaign create|run|submit|status|report`: offline reprocessing of many events (docs/campaigns.md).

``campaign`` is a click group that ``skyscan.cli`` registers; ``python -m skyscan.cli_campaign`` runs it on
its own (the campaign's FINAL node does, through its ``skyscan-campaign`` wrapper).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click

from skyscan.cli.core import ErrorHandlingGroup


@click.group(cls=ErrorHandlingGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def campaign() -> None:
    """Offline reprocessing: scan many events as one campaign, then report on all of them.

    \b
    A campaign directory holds one scan directory per event (the graph `skyscan submit` writes),
    a top-level DAG running them as sub-DAGs, a manifest and, at the end, a report.
    """


class _CreateProgress:
    """Progress of `campaign create` on stderr: redrawn in place on a terminal, a line per 10% otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.step_shown = -1

    def __call__(self, p: Any) -> None:
        if p.total < 20:
            return
        text = f"checked {p.done}/{p.total} inputs: {p.accepted} accepted, {p.rejected} rejected"
        if self.tty:
            now = time.monotonic()
            if now - self.last >= 0.2 or p.done == p.total:
                click.echo("\r\033[K" + text, err=True, nl=p.done == p.total)
                self.last = now
            return
        step = p.done * 10 // p.total
        if step != self.step_shown:
            self.step_shown = step
            click.echo(text, err=True)


@campaign.command("create")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--outdir", "campdir", required=True, type=click.Path(file_okay=False), help="Campaign directory.")
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="YAML merged over the default configuration."
)
@click.option("--site", default="local", show_default=True, help="Site profile: local, osg or a YAML file.")
@click.option(
    "--containment",
    help="Containment levels: wilks (default), calibrated, or the 50% and 90% 2*delta-llh as two numbers, "
    "e.g. 1.39,4.61 (Wilks' 50%/90%; 2.3,5.9 would be the 68%/95% levels).",
)
@click.option(
    "--max-running",
    type=int,
    default=20,
    show_default=True,
    help="Event DAGs running at once (MAXJOBS of the events category; each is a DAGMan job on HTCondor).",
)
def create(
    inputs: tuple[str, ...],
    campdir: str,
    config_path: str | None,
    site: str,
    containment: str | None,
    max_running: int,
) -> None:
    """Write a campaign of INPUTS (event files, folders, globs, or text files listing paths) into -o CAMPDIR.

    Every event is validated; a bad or duplicated one is listed as rejected in the manifest (with its
    reason) and the others go on. Each accepted event gets the scan graph of `skyscan submit` in
    CAMPDIR/events/run<RUN>-evt<EVENT>/; CAMPDIR/campaign.dag runs them all and writes the report.

    \b
    Examples:
      skyscan campaign create sims/ -o camp/ --config fast.yaml
      skyscan campaign create 'alerts/*.json' list.txt -o camp/ --site osg --max-running 50
    """
    from skyscan.campaign.create import create_campaign
    from skyscan.products.levels import check_product_levels
    from skyscan.settings.scan import load_config
    from skyscan.settings.site import load_site

    overrides: dict[str, Any] = {}
    if containment is not None:
        overrides["containment"] = containment
    config = load_config(config_path, overrides)
    check_product_levels(config.doc.get("containment", "wilks"))  # every event's merge needs them
    profile = load_site(site)
    m = create_campaign(
        inputs, campdir, config, profile, site_arg=site, config_source=config_path, max_running=max_running,
        progress=_CreateProgress(),
    )  # fmt: skip
    click.echo(
        f"wrote {campdir}: {len(m.events)} events ({len(m.rejected)} rejected), campaign.dag with at most "
        f"{max_running} event DAGs at once, site profile {profile.name}"
    )
    for r in m.rejected:
        click.echo(f"  rejected {r.input}: {r.reason}")
    how = "skyscan campaign run" if profile.shared_filesystem else "skyscan campaign submit"
    click.echo(f"next: {how} {campdir}")


@campaign.command("run")
@click.argument("campdir", type=click.Path(file_okay=False))
@click.option("--jobs", "-j", type=int, help="Processes at once over all events (default: all cores).")
def run(campdir: str, jobs: int | None) -> None:
    """Run the campaign in CAMPDIR on this machine with the local executor.

    Running it again after a crash, a kill or Ctrl-C resumes: finished events and finished nodes
    of unfinished events are not redone. Exit 0 when every event is done, 1 when some failed
    (see `skyscan campaign status`), 130 when stopped.

    \b
    Examples:
      skyscan campaign run camp/
      skyscan campaign run camp/ --jobs 8
    """
    from skyscan.campaign.run import run_campaign

    outcome = run_campaign(campdir, jobs=jobs, stream=sys.stderr)
    c = outcome.status.counts
    if outcome.interrupted:
        click.echo(f"stopped; run the same command again to resume ({campdir})", err=True)
        raise SystemExit(130)
    click.echo(
        f"campaign {outcome.status.state}: {c['done']} done, {c['failed']} failed, {c['rejected']} rejected "
        f"({outcome.result.seconds:.1f} s); report: {os.path.join(campdir, outcome.status.report or 'report/')}"
    )
    if c["done"] != c["events"]:
        click.echo(
            f"skyscan: error: not every event is done; `skyscan campaign status {campdir}` for details", err=True
        )
        raise SystemExit(1)


@campaign.command("submit")
@click.argument("campdir", type=click.Path(file_okay=False))
@click.option("--dry-run", is_flag=True, help="Print the condor_submit_dag command, submit nothing.")
def submit(campdir: str, dry_run: bool) -> None:
    """Submit the campaign in CAMPDIR to HTCondor (each event DAG runs as a sub-DAG).

    Submitting again resumes (DAGMan runs its rescue DAG). Without a reachable schedd the directory
    stays ready and the command to submit it by hand is printed (exit 1).

    \b
    Examples:
      skyscan campaign submit camp/
      skyscan campaign submit camp/ --dry-run
    """
    from skyscan.campaign.run import submit_campaign

    cluster, command = submit_campaign(campdir, dry_run=dry_run)
    if cluster is None:
        click.echo("dry run, nothing submitted; to submit by hand:")
        click.echo("  " + command)
        return
    click.echo(f"submitted {campdir} as DAGMan job {cluster}; follow it with: skyscan campaign status {campdir}")


@campaign.command("status")
@click.argument("campdir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the skyscan-campaign-status/1 JSON document.")
def status(campdir: str, as_json: bool) -> None:
    """Totals and one row per event (state, stage, pixels, wall time) of the campaign in CAMPDIR.

    \b
    Examples:
      skyscan campaign status camp/
      skyscan campaign status camp/ --json
    """
    from skyscan.campaign.status import campaign_status, format_campaign_status

    st = campaign_status(campdir)
    click.echo(json.dumps(st.as_json(), indent=1) if as_json else format_campaign_status(st))


@campaign.command("report")
@click.argument("campdir", type=click.Path(file_okay=False))
@click.option("-o", "--outdir", type=click.Path(file_okay=False), help="Report directory (default: CAMPDIR/report).")
@click.option(
    "--reference",
    type=click.Path(dir_okay=False),
    help="CSV of reference positions: run_id, event_id, ra, dec [, ra_err, dec_err] in degrees.",
)
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False),
    help="Calibration table (skyscan calibrate --campaign): adds the coverage after calibration "
    "(default: CAMPDIR/calibration-table.json when it exists).",
)
def report(campdir: str, outdir: str | None, reference: str | None, calibration: str | None) -> None:
    """Write the catalog (CSV, HDF5) and the HTML report of the campaign in CAMPDIR.

    With simulation truth in the events or a --reference file: angular errors, their median, the
    coverage of the 50% and 90% regions and coverage against nominal level.

    \b
    Examples:
      skyscan campaign report camp/
      skyscan campaign report camp/ -o published/ --reference published-positions.csv
      skyscan campaign report camp/ --calibration table.json
    """
    from skyscan.campaign.report import write_report

    result = write_report(campdir, outdir, reference, calibration)
    s = result.stats
    c = s.counts
    click.echo(
        f"{c.get('events', 0)} events: {c.get('done', 0)} done, {c.get('failed', 0)} failed, "
        f"{c.get('rejected', 0)} rejected; median 90% area "
        + ("-" if s.area90_median is None else f"{s.area90_median:.3g} deg2")
    )
    n_ref = sum(s.ref_sources.values())
    if n_ref and s.error_median is not None:
        cov = s.coverage
        click.echo(
            f"{n_ref} with a reference: median angular error {s.error_median:.3g} deg; coverage 50% "
            f"{cov['50'].value:.2f} ({cov['50'].k}/{cov['50'].n}), 90% {cov['90'].value:.2f} "
            f"({cov['90'].k}/{cov['90'].n})"
        )
    click.echo(f"wrote {result.files['html']}")


def main() -> None:
    campaign(prog_name="skyscan campaign")


if __name__ == "__main__":
    main()


__all__ = ["campaign", "create", "report", "run", "status", "submit"]
