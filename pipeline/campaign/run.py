"""``skyscan campaign run|submit``: campaign.dag on this machine (local executor) or on HTCondor (DAGMan).

Both resume: the local executor keeps finished nodes in its run-state files, DAGMan runs its rescue DAG. The site
profile and interpreter recorded in the manifest give the environment the nodes run with, as for ``skyscan
submit``.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from skyscan.campaign.graph import CAMPAIGN_DAG, REPORT_NODE
from skyscan.campaign.manifest import CONFIG_FILE, REPORT_DIR, Manifest, read_manifest
from skyscan.campaign.status import CampaignStatus, campaign_status
from skyscan.errors import InputError
from skyscan.local.events import DagFinished, DagStarted, NodeEvent, RunResult
from skyscan.settings.scan import ScanConfig, load_config
from skyscan.settings.site import SiteProfile, load_site


class CampaignProgress:
    """Executor observer printing one line per event started or finished (the sub-DAGs' own nodes are quiet)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.total = 0
        self.finished = 0
        self.failed = 0

    def _print(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def dag_started(self, event: DagStarted) -> None:
        if event.depth != 0:
            return
        nodes = [n for n in event.nodes if not n.final]
        self.total = len(nodes)
        self.finished = sum(1 for n in nodes if n.state in ("done", "skipped"))
        how = "resuming" if event.resumed else "starting"
        self._print(f"campaign: {how}, {self.total} events, {self.finished} already done")

    def node_changed(self, event: NodeEvent) -> None:
        if event.depth != 0:
            return
        if event.node == REPORT_NODE:
            if event.state == "done":
                self._print(f"campaign report written: {REPORT_DIR}/report.html")
            elif event.state == "failed":
                self._print(f"campaign report failed: {event.error or 'see logs/report.err'}")
            return
        if event.state == "running":
            self._print(f"event {event.node} started")
        elif event.state in ("done", "failed"):
            self.finished += 1
            self.failed += event.state == "failed"
            secs = f" in {event.seconds:.1f} s" if event.seconds is not None else ""
            err = f": {event.error}" if event.error else ""
            self._print(f"[{self.finished}/{self.total}] event {event.node} {event.state}{secs}{err}")

    def dag_finished(self, event: DagFinished) -> None:
        return None


@dataclass(frozen=True)
class CampaignRun:
    """What ``run_campaign`` did: the executor's result and the campaign status after it."""

    result: RunResult
    status: CampaignStatus

    @property
    def interrupted(self) -> bool:
        return bool(self.result.interrupted)


def _site_of(manifest: Manifest) -> SiteProfile:
    try:
        return load_site(manifest.site)
    except InputError as exc:
        raise InputError(f"site profile of the campaign: {exc}") from None


def run_campaign(
    campdir: str | os.PathLike[str],
    *,
    jobs: int | None = None,
    stream: IO[str] | None = None,
    stop_event: threading.Event | None = None,
) -> CampaignRun:
    """Run (or resume) the campaign with the local executor: finished events are not redone."""
    from skyscan.condor.schedd import submit_environment
    from skyscan.local.scheduler import run_dag

    manifest = read_manifest(campdir)
    if not manifest.shared_filesystem:
        raise InputError(
            f"{manifest.campdir}: created for site profile {manifest.site!r} (no shared file system); "
            "run it with `skyscan campaign submit`, or create it with --site local"
        )
    if jobs is not None and jobs < 1:
        raise InputError("--jobs: must be at least 1")
    site = _site_of(manifest)
    # DAGMan passes these on to the PRE scripts (ENV GET); the local executor reads them from its environment.
    os.environ.update(submit_environment(site, manifest.python))
    observer = CampaignProgress(stream or sys.stderr)
    result = run_dag(manifest.campdir / CAMPAIGN_DAG, jobs=jobs, observer=observer, stop_event=stop_event)
    return CampaignRun(result, campaign_status(manifest.campdir))


def submit_campaign(campdir: str | os.PathLike[str], dry_run: bool = False) -> tuple[int | None, str]:
    """Submit campaign.dag to HTCondor; (cluster id or None for a dry run, the equivalent command)."""
    from skyscan.condor.schedd import submit_command, submit_dag, submit_environment

    manifest = read_manifest(campdir)
    site = _site_of(manifest)
    folder = manifest.campdir.absolute()
    env = submit_environment(site, manifest.python)
    command = submit_command(folder, CAMPAIGN_DAG, manifest.batch_name, env)
    if dry_run:
        return None, command
    return submit_dag(folder, CAMPAIGN_DAG, manifest.batch_name, env), command


def load_campaign_config(campdir: str | os.PathLike[str]) -> ScanConfig:
    """The configuration every event of the campaign was written with."""
    return load_config(Path(campdir) / CONFIG_FILE)


__all__ = ["CampaignProgress", "CampaignRun", "load_campaign_config", "run_campaign", "submit_campaign"]
