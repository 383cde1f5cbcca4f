"""Commands that write, submit and follow a scan graph: ``submit``, ``status``, ``node prepare|plan|final``.

``skyscan.cli`` registers these click command objects; each is a thin wrapper around a library
function (``skyscan.graph.build``, ``skyscan.condor.schedd``, ``skyscan.graph.status``, and the node kinds
``skyscan.nodes.prepare``/``plan``/``final``).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from skyscan.errors import InputError


@click.command("submit")
@click.argument("event")
@click.option("-o", "--outdir", required=True, type=click.Path(file_okay=False), help="Scan directory to write.")
@click.option("--site", default="local", show_default=True, help="Site profile: a shipped name (local, osg) or a YAML file.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML merged over the default configuration.")
@click.option("--rule", type=click.Choice(["fixed", "adaptive"]), help="Refinement rule (overrides scan.rule).")
@click.option("--maxjobs", type=int, help="Scan jobs queued at once per DAG (overrides dag.maxjobs.scan).")
@click.option("--retries", type=int, help="Retries of a failed scan job (overrides dag.retries).")
@click.option("--dry-run", is_flag=True, help="Write everything, print the condor_submit_dag command, submit nothing.")
def submit(
    event: str,
    outdir: str,
    site: str,
    config_path: str | None,
    rule: str | None,
    maxjobs: int | None,
    retries: int | None,
    dry_run: bool,
) -> None:
    """Write the scan graph of EVENT into OUTDIR and submit it to HTCondor.

    The event is validated first (exit 2, nothing written, if it is bad). An OUTDIR that already holds
    this event is reused, so submitting again resumes the scan (DAGMan runs its rescue DAG); one that
    holds anything else is refused. Without a reachable schedd the directory is left ready and the
    command to submit it by hand is printed (exit 1).

    \b
    Examples:
      skyscan submit event.json -o scans/run12-ev345
      skyscan submit event.json -o scan/ --site osg --config my-plan.yaml --dry-run
    """
    from skyscan.condor.schedd import submit_command, submit_dag, submit_environment
    from skyscan.graph.build import write_scan
    from skyscan.graph.layout import TOP_DAG
    from skyscan.products.levels import check_product_levels
    from skyscan.settings.scan import flag_overrides, load_config
    from skyscan.settings.site import load_site

    config = load_config(config_path, flag_overrides(rule=rule, maxjobs=maxjobs, retries=retries))
    check_product_levels(config.doc.get("containment", "wilks"))  # the merge needs them: fail now, not after the scan
    profile = load_site(site)
    paths = write_scan(event, outdir, config, profile)
    folder = paths.outdir.absolute()
    env = submit_environment(profile)
    stages = len(config.stages)
    click.echo(
        f"{'reused' if paths.reused else 'wrote'} {outdir}: {TOP_DAG} ({stages} stages, nside "
        f"{'/'.join(str(s.nside) for s in config.stages)}), site profile {profile.name}, batch {paths.batch_name}"
    )
    _warn_missing_image(profile.container_image, folder)
    if dry_run:
        click.echo("dry run, nothing submitted; to submit by hand:")
        click.echo("  " + submit_command(folder, TOP_DAG, paths.batch_name, env))
        return
    cluster = submit_dag(folder, TOP_DAG, paths.batch_name, env)
    _record_submission(folder, cluster, paths.batch_name)
    click.echo(f"submitted {paths.batch_name} as DAGMan job {cluster}; follow it with: skyscan status {outdir}")


def _record_submission(folder: Path, cluster: int, batch_name: str) -> None:
    """Leave OUTDIR/submission.json for the alert watcher; the DAG is queued either way, so a failure only warns."""
    from skyscan.ops.submission import record_submission

    try:
        record_submission(folder, cluster, batch_name)
    except OSError as exc:
        click.echo(f"warning: could not record the submission in {folder}: {exc}", err=True)


def _warn_missing_image(image: str | None, folder: Path) -> None:
    if not image or "://" in image or Path(image).is_absolute():
        return
    if not (folder / image).exists():
        click.echo(f"warning: container image {image} is not in {folder}; the scan jobs need it there", err=True)


@click.command("status")
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the skyscan-status/1 JSON document.")
def status(outdir: str, as_json: bool) -> None:
    """Progress of the scan in OUTDIR: per stage, nodes and pixels done / running / failed / waiting.

    Works for both backends (HTCondor's node status files, the local executor's run-state files) and
    shows the end state once the FINAL node has run.

    \b
    Examples:
      skyscan status scan/
      skyscan status scan/ --json
    """
    from skyscan.graph.status import format_status, scan_status

    st = scan_status(outdir)
    if as_json:
        click.echo(json.dumps(st.as_json(), indent=1))
    else:
        click.echo(format_status(st))


@click.command("prepare")
@click.argument("event")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="The scan directory.")
def node_prepare(event: str, outdir: str) -> None:
    """Validate EVENT, compute the first guess (prepare.json) and write the stage-0 batch files.

    \b
    Example (the DAG's prepare node, run inside the scan directory):
      skyscan node prepare event.json --outdir .
    """
    from skyscan.nodes.prepare import prepare_scan

    doc = prepare_scan(event, outdir)
    fg = doc["first_guess"]
    click.echo(
        f"first guess RA {fg['ra_deg']:.2f} deg Dec {fg['dec_deg']:.2f} deg; "
        f"stage 0: {doc['stage0']['npix']} pixels at nside {doc['stage0']['nside']} in {doc['stage0']['batches']} batches"
    )


@click.command("plan")
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--stage", type=int, required=True, help="The stage to plan (1 or more).")
@click.pass_context
def node_plan(ctx: click.Context, outdir: str, stage: int) -> None:
    """PRE script of stage K: pick the pixels to refine from every result so far, write stageK.dag.

    Exit 100 (DAGMan's PRE_SKIP code here) when nothing is left to refine; 1 if a result file is missing
    or corrupt (the message names it).

    \b
    Example (the PRE script of node stage1):
      skyscan node plan . --stage 1
    """
    from skyscan.graph.build import PRE_SKIP_CODE
    from skyscan.nodes.plan import plan_stage

    outcome = plan_stage(outdir, stage)
    if outcome.skipped:
        click.echo(f"stage {stage}: nothing left to refine at nside {outcome.nside}; skipping the stage")
        ctx.exit(PRE_SKIP_CODE)
    click.echo(f"stage {stage}: {outcome.npix} pixels at nside {outcome.nside} in {outcome.batches} jobs -> {outcome.dag}")


@click.command("final")
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--dag-status", type=int, help="DAGMan's $DAG_STATUS (0 = success).")
@click.option("--failed-count", type=int, help="DAGMan's $FAILED_COUNT.")
@click.pass_context
def node_final(ctx: click.Context, outdir: str, dag_status: int | None, failed_count: int | None) -> None:
    """Record how the DAG ended in end_state.json (FINAL node's PRE script); without options, show it.

    Exits 1 when the scan failed: DAGMan takes the FINAL node's result as the whole DAG's result.

    \b
    Examples:
      skyscan node final . --dag-status 0 --failed-count 0
      skyscan node final scan/
    """
    from skyscan.graph.endstate import read_end_state
    from skyscan.graph.layout import ScanLayout
    from skyscan.nodes.final import write_end_state

    if (dag_status is None) != (failed_count is None):
        raise InputError("--dag-status and --failed-count go together")
    if dag_status is not None and failed_count is not None:
        doc = write_end_state(outdir, dag_status, failed_count)
    else:
        found = read_end_state(outdir)
        if found is None:
            raise InputError(f"{ScanLayout.at(outdir).end_state}: no end state recorded yet")
        doc = found
    click.echo(
        f"scan {doc['state']}: dag_status {doc['dag_status']}, failed nodes {doc['failed_count']} ({doc['time']})"
    )
    if doc["state"] != "done":
        ctx.exit(1)
