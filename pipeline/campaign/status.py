"""``skyscan campaign status``: one row per event (state, stage, pixels, wall time) and the campaign's totals.

An event's state comes from ``skyscan.graph.status`` (the scan status both backends share); the campaign only
adds what a row needs beyond it: the wall time, whether a dead runner left the scan ``interrupted``, and
``done`` straight from the end state and summary.json without reading the DAGs. Schema
skyscan-campaign-status/1 (docs/campaigns.md).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from skyscan.campaign.graph import CAMPAIGN_DAG
from skyscan.campaign.manifest import REPORT_DIR, EventEntry, read_manifest
from skyscan.dagman.nodestatus import parse_jobstate_log
from skyscan.errors import InputError
from skyscan.graph.endstate import read_end_state
from skyscan.graph.layout import TOP_DAG, ScanLayout, jobstate_log_name, runstate_name
from skyscan.graph.status import ScanStatus, local_dag_state, scan_status
from skyscan.local.runstate import read_runstate
from skyscan.products.summary import PixelCounts, read_summary_document
from skyscan.timestamps import utcnow

CAMPAIGN_STATUS_SCHEMA = "skyscan-campaign-status/1"
EVENT_STATES = ("done", "running", "failed", "interrupted", "waiting", "rejected")


@dataclass
class EventStatus:
    """One row of ``skyscan campaign status``."""

    name: str
    run_id: int | None
    event_id: int | None
    state: str  # one of EVENT_STATES
    stage: str  # "-", "prepare", "stage 1 (nside 64)", "merge", "final", "done"
    pixels_done: int
    pixels_total: int
    wall_seconds: float | None
    failed_nodes: list[str] = field(default_factory=list)
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "run_id": self.run_id,
            "event_id": self.event_id,
            "state": self.state,
            "stage": self.stage,
            "pixels": {"done": self.pixels_done, "total": self.pixels_total},
            "wall_seconds": None if self.wall_seconds is None else round(self.wall_seconds, 3),
            "failed_nodes": list(self.failed_nodes),
            "reason": self.reason,
        }


@dataclass
class CampaignStatus:
    """The skyscan-campaign-status/1 document."""

    campdir: str
    state: str  # not-started | running | done | failed | stopped
    backend: str  # local | condor | unknown
    counts: dict[str, int]
    events: list[EventStatus]
    rejected: list[EventStatus]
    report: str | None  # report.html relative to CAMPDIR, once written
    updated: str  # ISO 8601 UTC

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": CAMPAIGN_STATUS_SCHEMA,
            "campdir": self.campdir,
            "state": self.state,
            "backend": self.backend,
            "counts": dict(self.counts),
            "events": [e.as_dict() for e in self.events],
            "rejected": [e.as_dict() for e in self.rejected],
            "report": self.report,
            "updated": self.updated,
        }


# ---------------------------------------------------------------------------------------------------------------
# Wall time
# ---------------------------------------------------------------------------------------------------------------
def _parse_iso(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def local_wall_seconds(runstate: dict[str, Any] | None, running: bool) -> float | None:
    """Elapsed time of a DAG from its run-state file: first node start to last node end (to now while running).

    Done nodes keep their times across resumes, so a resumed scan's time includes the pause."""
    if not runstate or not isinstance(runstate.get("nodes"), dict):
        return None
    nodes = [n for n in runstate["nodes"].values() if isinstance(n, dict)]
    starts = [t for t in (_parse_iso(n.get("started")) for n in nodes) if t is not None]
    ends = [t for t in (_parse_iso(n.get("finished")) for n in nodes) if t is not None]
    if not starts:
        return None
    end = time.time() if running else max(ends) if ends else None
    return None if end is None else max(0.0, end - min(starts))


def _condor_wall_seconds(jobstate_log: Path) -> float | None:
    """DAGMan's start to its end (to now while it runs), from the jobstate log."""
    try:
        text = jobstate_log.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    started, finished, _ = parse_jobstate_log(text)
    if started is None:
        return None
    end = finished if finished is not None and finished >= started else time.time()
    return max(0.0, float(end) - float(started))


def _condor_running(jobstate_log: Path) -> bool:
    """DAGMan started and has not finished since, by its jobstate log (False without a readable log)."""
    try:
        started, finished, _ = parse_jobstate_log(jobstate_log.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return False
    return started is not None and (finished is None or finished < started)


def _runstate_or_none(path: Path) -> dict[str, Any] | None:
    """The local executor's run-state document, or None when there is none (or it is unreadable)."""
    try:
        return read_runstate(path)
    except InputError:
        return None


# ---------------------------------------------------------------------------------------------------------------
# One event
# ---------------------------------------------------------------------------------------------------------------
def _stage_label(st: ScanStatus) -> str:
    """Where a scan stands, from its skyscan-status/1 stages and end state."""
    for s in st.stages:
        if s.state in ("running", "planning", "failed"):
            return f"stage {s.stage} (nside {s.nside})"
    stages_over = bool(st.stages) and all(s.state in ("done", "skipped") for s in st.stages)
    if st.end_state is not None:
        return "done" if st.end_state.get("state") == "done" else "final"
    if stages_over:
        return "merge"
    if st.stages and st.stages[0].state == "waiting" and st.state != "not-started":
        return "prepare"
    return "-"


def _scanned_pixels(summary_path: Path) -> int | None:
    """summary.json's pixels.scanned (0 when it is not given); None without a readable JSON object there."""
    try:
        doc = read_summary_document(summary_path)
    except InputError:
        return None
    if not isinstance(doc, dict):
        return None
    return PixelCounts.from_json(doc.get("pixels")).scanned or 0


def event_status(folder: Path, entry: EventEntry) -> EventStatus:
    """State, stage, pixels and wall time of one event's scan directory."""
    layout = ScanLayout(folder)
    runstate = _runstate_or_none(layout.runstate(TOP_DAG))
    alive = runstate is not None and bool(local_dag_state(runstate).running)
    end = read_end_state(folder)
    wall = local_wall_seconds(runstate, alive)
    if wall is None:
        wall = _condor_wall_seconds(layout.jobstate_log(TOP_DAG))
    if end is not None and end.get("state") == "done" and not alive:
        scanned = _scanned_pixels(layout.summary)
        if scanned is not None:
            return EventStatus(entry.name, entry.run_id, entry.event_id, "done", "done", scanned, scanned, wall)
    if not folder.is_dir():
        return EventStatus(entry.name, entry.run_id, entry.event_id, "failed", "-", 0, 0, None, reason="no directory")
    nothing_ran = runstate is None and not any(p.exists() for p in layout.condor_files(TOP_DAG))
    if end is None and nothing_ran:  # neither backend has left a readable trace here yet
        return EventStatus(entry.name, entry.run_id, entry.event_id, "waiting", "-", 0, 0, None)
    try:
        st = scan_status(folder)
    except InputError as exc:
        return EventStatus(entry.name, entry.run_id, entry.event_id, "failed", "-", 0, 0, wall, reason=str(exc))
    done = sum(s.pixels.done for s in st.stages)
    total = sum(s.pixels.total for s in st.stages)
    state = st.state
    if state == "not-started":
        state = "waiting"
    elif state == "failed" and end is None and runstate is not None and runstate.get("finished") is None:
        state = "interrupted"  # the runner stopped (killed, Ctrl-C) before the scan ended: it resumes
    elif state == "failed" and end is None and runstate is not None and runstate.get("interrupted"):
        state = "interrupted"
    return EventStatus(
        entry.name, entry.run_id, entry.event_id, state, _stage_label(st), done, total, wall, list(st.failed_nodes)
    )


# ---------------------------------------------------------------------------------------------------------------
# The campaign
# ---------------------------------------------------------------------------------------------------------------
def campaign_status(campdir: str | os.PathLike[str]) -> CampaignStatus:
    """Totals and one row per event (rejected inputs listed apart) of a campaign, for either backend."""
    manifest = read_manifest(campdir)
    folder = manifest.campdir
    rows = [event_status(manifest.event_dir(e), e) for e in manifest.events]
    rejected = [
        EventStatus(Path(r.input).name, None, None, "rejected", "-", 0, 0, None, reason=r.reason)
        for r in manifest.rejected
    ]
    counts = {s: 0 for s in EVENT_STATES}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    counts["rejected"] = len(rejected)
    counts["events"] = len(rows)

    top = _runstate_or_none(folder / runstate_name(CAMPAIGN_DAG))
    runner_alive = top is not None and bool(local_dag_state(top).running)
    jobstate = folder / jobstate_log_name(CAMPAIGN_DAG)
    condor_running = jobstate.is_file() and _condor_running(jobstate)
    backend = "local" if top is not None else "condor" if jobstate.is_file() else "unknown"
    if runner_alive or condor_running or counts["running"]:
        state = "running"
    elif counts["done"] == len(rows):
        state = "done"
    elif counts["done"] + counts["failed"] == len(rows):
        state = "failed"
    elif counts["waiting"] == len(rows):
        state = "not-started"
    else:
        state = "stopped"
    report = folder / REPORT_DIR / "report.html"
    return CampaignStatus(
        campdir=str(folder),
        state=state,
        backend=backend,
        counts=counts,
        events=rows,
        rejected=rejected,
        report=f"{REPORT_DIR}/report.html" if report.is_file() else None,
        updated=utcnow(),
    )


# ---------------------------------------------------------------------------------------------------------------
# Human form
# ---------------------------------------------------------------------------------------------------------------
def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_campaign_status(st: CampaignStatus) -> str:
    """A header with totals, one aligned row per event, then the rejected inputs with their reasons."""
    c = st.counts
    head = (
        f"{st.campdir}: {st.state} (backend {st.backend}): {c.get('events', 0)} events - {c['done']} done, "
        f"{c['running']} running, {c['failed']} failed, {c['interrupted']} interrupted, {c['waiting']} waiting; "
        f"{c['rejected']} rejected"
    )
    table = [["event", "state", "stage", "pixels", "wall"]]
    for e in st.events:
        pixels = f"{e.pixels_done}/{e.pixels_total}" if e.pixels_total else "-"
        table.append([e.name, e.state, e.stage, pixels, _fmt_seconds(e.wall_seconds)])
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = [head]
    for row in table:
        cells = [cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    for e in st.events:
        if e.failed_nodes:
            lines.append(f"{e.name}: failed nodes {', '.join(e.failed_nodes)}")
    for rej in st.rejected:
        lines.append(f"rejected {rej.name}: {rej.reason}")
    lines.append(f"report: {st.report}" if st.report else "report: none yet")
    return "\n".join(lines)


__all__ = [
    "CAMPAIGN_STATUS_SCHEMA",
    "EVENT_STATES",
    "CampaignStatus",
    "EventStatus",
    "campaign_status",
    "event_status",
    "format_campaign_status",
    "local_wall_seconds",
]
