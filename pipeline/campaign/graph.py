"""The files a campaign runs from: campaign.dag, the FINAL node's report.sub and its skyscan-campaign executable.

campaign.dag has one external sub-DAG per event, run from the event's own folder (``DIR events/<name>``) in the
throttled ``events`` category, and a FINAL node ``report`` that writes the campaign report whatever happened to
the events. The texts are the same for the same events: no absolute path, no time stamp.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import Path

from skyscan.atomic import write_text
from skyscan.graph.layout import TOP_DAG, jobstate_log_name, status_file_name
from skyscan.resources import data_text
from skyscan.settings.scan import ScanConfig
from skyscan.settings.site import SiteProfile
from skyscan.workflow import Workflow

CAMPAIGN_DAG = "campaign.dag"
EVENTS_DIR = "events"
REPORT_NODE = "report"
REPORT_SUB = f"{REPORT_NODE}.sub"  # the DAG writer names the FINAL node's submit file <node>.sub
#: The FINAL node's executable: scripts/skyscan-campaign, copied into the campaign directory.
WRAPPER = "skyscan-campaign"
EVENT_CATEGORY = "events"


def campaign_workflow(names: Sequence[str], max_running: int) -> Workflow:
    """The top-level graph: one external sub-DAG per event in the throttled ``events`` category; FINAL report.

    Each event's sub-DAG runs from its folder (DAGMan submits a sub-DAG from its DIR and its files are
    relative to it), so the event graph is exactly the one ``skyscan submit`` writes.
    """
    from skyscan.condor.submit import WRAPPER_ENV

    wf = Workflow(
        maxjobs={EVENT_CATEGORY: max_running},
        node_status_file=status_file_name(CAMPAIGN_DAG),
        jobstate_log=jobstate_log_name(CAMPAIGN_DAG),
        getenv=WRAPPER_ENV,
    )
    for name in names:
        wf.add_subdag(name, TOP_DAG, dir=f"{EVENTS_DIR}/{name}", category=EVENT_CATEGORY)
    wf.set_final(REPORT_NODE, REPORT_SUB)
    return wf


def campaign_dag_text(names: Sequence[str], max_running: int) -> str:
    """campaign.dag: a comment saying what it is, then the DAG writer's text of ``campaign_workflow``."""
    from skyscan.condor.dagwriter import dag_text

    header = (
        f"# skyscan campaign DAG: {len(names)} events, at most {max_running} event DAGs at once (MAXJOBS "
        f"{EVENT_CATEGORY}).\n# Written by skyscan campaign create; regenerate it rather than editing it "
        "(docs/campaigns.md).\n"
    )
    return dag_text(campaign_workflow(names, max_running), header)


def report_submit_text(site: SiteProfile, config: ScanConfig, batch_name: str, python: str | None = None) -> str:
    """report.sub from submit_templates/report.sub, filled from the site profile like the merge node (same
    universe, resources, environment)."""
    from skyscan.condor.submit import check_submit, render_template, submit_macros

    macros = submit_macros("merge", site, config, batch_name, python)
    body = render_template(data_text("submit_templates", REPORT_SUB), macros, REPORT_SUB)
    text = f"# Written by skyscan campaign create for site profile {site.name!r}.\n" + body
    check_submit(text, REPORT_SUB)
    return text


def install_campaign_wrapper(campdir: Path) -> Path:
    """Copy scripts/skyscan-campaign into the campaign directory with its executable bits set."""
    target = campdir / WRAPPER
    write_text(target, data_text("scripts", WRAPPER))
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRUSR)
    return target
