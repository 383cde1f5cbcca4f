"""Offline reprocessing campaigns: many events, one top-level DAG, one manifest, one report.

A campaign directory CAMPDIR holds (docs/campaigns.md)::

    campaign.json        the manifest (skyscan-campaign/1): software, configuration digest, inputs with their
                         sha256, accepted events and rejected inputs with the reason
    campaign.dag         the top-level DAG: one SUBDAG EXTERNAL node per event (category ``events`` with a
                         MAXJOBS cap) and a FINAL node ``report`` that writes the campaign report
    config.yaml          the resolved scan configuration shared by every event
    report.sub           the FINAL node's submit file;  skyscan-campaign  its executable
    events/run<R>-evt<E>/   one scan directory per event, exactly what ``skyscan submit`` writes
    report/              catalog.csv, catalog.h5, report.html, report.json, figures/*.png

Each event's graph is the single-event graph unchanged (``skyscan.graph.build.write_scan``), so a campaign runs
on HTCondor (every sub-DAG is its own DAGMan job) and locally (``skyscan.local.executor`` runs sub-DAGs in-process)
alike, and resumes the same way: DAGMan's rescue DAGs, or the local executor's run-state files.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from skyscan.atomic import write_json, write_text
from skyscan.campaign.graph import (
    CAMPAIGN_DAG,
    EVENTS_DIR,
    REPORT_NODE,
    REPORT_SUB,
    WRAPPER,
    campaign_dag_text,
    campaign_workflow,
    install_campaign_wrapper,
    report_submit_text,
)
from skyscan.errors import InputError
from skyscan.graph.build import read_end_state
from skyscan.graph.layout import END_STATE, TOP_DAG, ScanLayout
from skyscan.local.executor import pid_alive
from skyscan.settings.scan import ScanConfig, load_config
from skyscan.settings.site import SiteProfile, load_site

CAMPAIGN_SCHEMA = "skyscan-campaign/1"
CAMPAIGN_STATUS_SCHEMA = "skyscan-campaign-status/1"
MANIFEST = "campaign.json"
CONFIG_FILE = "config.yaml"
LOGS_DIR = "logs"
REPORT_DIR = "report"
DEFAULT_MAX_RUNNING = 20
#: What ``create_campaign`` writes into CAMPDIR: a directory holding only these may be created into again
#: (an interrupted ``campaign create`` resumes: write_scan reuses event directories of the same event).
_OWN_NAMES = frozenset({MANIFEST, CAMPAIGN_DAG, CONFIG_FILE, EVENTS_DIR, LOGS_DIR, REPORT_SUB, WRAPPER})
_GLOB_CHARS = re.compile(r"[*?\[]")


def _utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_name(run_id: int, event_id: int) -> str:
    """The event's node name in campaign.dag and its folder under events/."""
    return f"run{run_id}-evt{event_id}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# The manifest
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EventEntry:
    """An accepted event: where it came from and where its scan lives."""

    name: str
    run_id: int
    event_id: int
    time: str | None
    input: str
    sha256: str
    truth: bool

    @property
    def dir(self) -> str:
        return f"{EVENTS_DIR}/{self.name}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "run_id": self.run_id,
            "event_id": self.event_id,
            "time": self.time,
            "dir": self.dir,
            "input": self.input,
            "sha256": self.sha256,
            "truth": self.truth,
        }


@dataclass(frozen=True)
class Rejected:
    """An input that is not part of the campaign, and why."""

    input: str
    sha256: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"input": self.input, "sha256": self.sha256, "reason": self.reason}


@dataclass
class Manifest:
    """campaign.json (schema skyscan-campaign/1); ``doc`` is the document as read or written."""

    campdir: Path
    events: list[EventEntry]
    rejected: list[Rejected]
    site: str
    shared_filesystem: bool
    python: str | None
    doc: dict[str, Any] = field(repr=False, default_factory=dict)

    def event_dir(self, entry: EventEntry) -> Path:
        return self.campdir / entry.dir

    @property
    def batch_name(self) -> str:
        return str(self.doc.get("batch_name") or campaign_batch_name(self.campdir))


def campaign_batch_name(campdir: Path) -> str:
    """HTCondor batch name of the campaign's DAGMan job (the event sub-DAGs keep their own)."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(campdir).absolute().name).strip("-") or "campaign"
    return f"skyscan-campaign-{base}"


def read_manifest(campdir: str | os.PathLike[str]) -> Manifest:
    """Read CAMPDIR/campaign.json; InputError if CAMPDIR is not a (completely created) campaign."""
    folder = Path(campdir)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise InputError(f"{folder}: no such campaign directory")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{folder}: not a campaign directory (no {MANIFEST}; run `skyscan campaign create`)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable manifest ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict) or doc.get("schema") != CAMPAIGN_SCHEMA:
        raise InputError(f"{path}: not a {CAMPAIGN_SCHEMA} manifest")
    try:
        events = [
            EventEntry(
                name=str(e["name"]),
                run_id=int(e["run_id"]),
                event_id=int(e["event_id"]),
                time=e.get("time"),
                input=str(e["input"]),
                sha256=str(e["sha256"]),
                truth=bool(e.get("truth", False)),
            )
            for e in doc["events"]
        ]
        rejected = [Rejected(str(r["input"]), r.get("sha256"), str(r["reason"])) for r in doc.get("rejected", [])]
        site = doc["site"]
        return Manifest(
            campdir=folder,
            events=events,
            rejected=rejected,
            site=str(site["profile"]),
            shared_filesystem=bool(site["shared_filesystem"]),
            python=doc.get("python"),
            doc=doc,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: malformed manifest ({exc.__class__.__name__}: {exc})") from None


# ---------------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """A file that may be an event: the path to read, or why it cannot be read at all."""

    path: Path
    problem: str | None = None


def _folder_events(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if p.is_file())


def _list_file(path: Path) -> list[Candidate]:
    """A text file listing paths (one per line, '#' comments; relative to the list file's folder)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the list of inputs ({exc.__class__.__name__})") from None
    out: list[Candidate] = []
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        listed = Path(entry).expanduser()
        if not listed.is_absolute():
            listed = path.parent / listed
        if listed.is_dir():
            out.extend(Candidate(p) for p in _folder_events(listed))
        elif listed.exists():
            out.append(Candidate(listed))
        else:
            out.append(Candidate(listed, f"{listed}: no such event file (listed in {path})"))
    return out


def expand_inputs(inputs: Sequence[str]) -> list[Candidate]:
    """Event files from INPUTS: files ending in .json are events, other files list paths; folders give their
    *.json files and globs their matches, each sorted. A command-line input that names nothing is an InputError."""
    if not inputs:
        raise InputError("no inputs: give event files, folders, globs or a file listing paths")
    out: list[Candidate] = []
    for arg in inputs:
        p = Path(arg).expanduser()
        if not p.exists() and _GLOB_CHARS.search(arg):
            matches = sorted(glob.glob(os.path.expanduser(arg)))
            if not matches:
                raise InputError(f"{arg}: matches no file")
            for m in matches:
                mp = Path(m)
                out.extend(Candidate(q) for q in _folder_events(mp)) if mp.is_dir() else out.append(Candidate(mp))
        elif p.is_dir():
            found = _folder_events(p)
            if not found:
                raise InputError(f"{arg}: the folder holds no *.json event file")
            out.extend(Candidate(q) for q in found)
        elif p.is_file():
            if p.suffix.lower() == ".json":
                out.append(Candidate(p))
            else:
                out.extend(_list_file(p))
        else:
            raise InputError(f"{arg}: no such file or folder")
    return out


def _quick_identity(data: bytes) -> tuple[int, int, str | None, bool] | None:
    """(run_id, event_id, time, has truth) read without validating the event; None if they are not there."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    run_id, event_id = doc.get("run_id"), doc.get("event_id")
    if not isinstance(run_id, int) or not isinstance(event_id, int) or isinstance(run_id, bool):
        return None
    if isinstance(event_id, bool) or run_id < 0 or event_id < 0:
        return None
    when = doc.get("time")
    return run_id, event_id, when if isinstance(when, str) else None, doc.get("truth") is not None


# ---------------------------------------------------------------------------------------------------------------
# Creating a campaign
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CreateProgress:
    """Reported after each input: how far ``create_campaign`` has got."""

    done: int
    total: int
    accepted: int
    rejected: int
    path: str


def _check_campdir(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a directory")
    if (folder / MANIFEST).exists():
        raise InputError(
            f"{folder}: already holds a campaign; resume it with `skyscan campaign run|submit {folder}`, "
            "or choose another directory"
        )
    if folder.is_dir():
        foreign = sorted(p.name for p in folder.iterdir() if p.name not in _OWN_NAMES and not p.name.startswith("."))
        if foreign:
            raise InputError(f"{folder}: not empty ({foreign[0]}) and holds no campaign; choose another directory")


def create_campaign(
    inputs: Sequence[str],
    campdir: str | os.PathLike[str],
    config: ScanConfig,
    site: SiteProfile,
    *,
    site_arg: str | None = None,
    config_source: str | None = None,
    max_running: int = DEFAULT_MAX_RUNNING,
    python: str | None = None,
    progress: Callable[[CreateProgress], None] | None = None,
) -> Manifest:
    """Write a campaign of INPUTS into CAMPDIR (see the module docstring); the manifest is written last.

    A bad or duplicated event is rejected with its reason and the campaign goes on; only a campaign with no
    valid event at all is an InputError. ``python`` stands for the interpreter written into the submit files
    (default: the running one), as in ``write_scan``.
    """
    from skyscan.version import __version__, git_revision

    if isinstance(max_running, bool) or not isinstance(max_running, int) or max_running < 1:
        raise InputError(f"--max-running: must be at least 1, got {max_running!r}")
    folder = Path(campdir)
    _check_campdir(folder)
    candidates = expand_inputs(inputs)
    config_text = config.to_yaml()
    old_config = folder / CONFIG_FILE
    if old_config.is_file() and old_config.read_text(encoding="utf-8") != config_text:
        raise InputError(
            f"{folder}: holds a partly created campaign with another configuration; choose another directory"
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOGS_DIR).mkdir(exist_ok=True)
    (folder / EVENTS_DIR).mkdir(exist_ok=True)
    write_text(old_config, config_text)

    accepted: list[EventEntry] = []
    rejected: list[Rejected] = []
    first_of: dict[tuple[int, int], str] = {}
    total = len(candidates)
    for i, cand in enumerate(candidates):
        where = str(cand.path.absolute())
        entry, reject = _admit(cand, where, first_of, folder, config, site, python)
        if entry is not None:
            accepted.append(entry)
            first_of[(entry.run_id, entry.event_id)] = where
        elif reject is not None:
            rejected.append(reject)
        if progress is not None:
            progress(CreateProgress(i + 1, total, len(accepted), len(rejected), where))
    if not accepted:
        first = rejected[0].reason if rejected else "no inputs"
        raise InputError(f"no valid event among the {total} inputs (first problem: {first})")

    profile = site_arg or site.name
    if Path(profile).is_file():  # a profile file: found again from any working directory
        profile = str(Path(profile).absolute())
    batch = campaign_batch_name(folder)
    write_text(folder / CAMPAIGN_DAG, campaign_dag_text([e.name for e in accepted], max_running))
    write_text(folder / REPORT_SUB, report_submit_text(site, config, batch, python))
    install_campaign_wrapper(folder)
    doc: dict[str, Any] = {
        "schema": CAMPAIGN_SCHEMA,
        "created": _utcnow(),
        "software": {"version": __version__, "git_revision": git_revision()},
        "config": {
            "file": CONFIG_FILE,
            "sha256": sha256_bytes(config_text.encode("utf-8")),
            "source": config_source,
            "containment": config.doc.get("containment"),
            "stages": [s.nside for s in config.stages],
        },
        "site": {"profile": profile, "name": site.name, "shared_filesystem": site.shared_filesystem},
        "python": python,
        "dag": CAMPAIGN_DAG,
        "batch_name": batch,
        "max_running": max_running,
        "counts": {"inputs": total, "accepted": len(accepted), "rejected": len(rejected)},
        "events": [e.as_dict() for e in accepted],
        "rejected": [r.as_dict() for r in rejected],
    }
    write_json(folder / MANIFEST, doc)
    return Manifest(folder, accepted, rejected, profile, site.shared_filesystem, python, doc)


def _admit(
    cand: Candidate,
    where: str,
    first_of: dict[tuple[int, int], str],
    folder: Path,
    config: ScanConfig,
    site: SiteProfile,
    python: str | None,
) -> tuple[EventEntry | None, Rejected | None]:
    """Validate one candidate and write its scan directory: (entry, None) or (None, rejection)."""
    from skyscan.graph import build as scangraph
    from skyscan.nodes import scan as scannode

    if cand.problem is not None:
        return None, Rejected(where, None, cand.problem)
    try:
        data = cand.path.read_bytes()
    except OSError as exc:
        return None, Rejected(where, None, f"{cand.path}: cannot read ({exc.strerror or exc.__class__.__name__})")
    digest = sha256_bytes(data)
    ident = _quick_identity(data)
    try:
        if ident is None:  # not even ids: the full validation names the problem
            ef, _ = scannode.load_event(cand.path)
            ident = (ef.event.run_id, ef.event.event_id, ef.event.time_iso, ef.truth is not None)
        run_id, event_id, when, truth = ident
        if (run_id, event_id) in first_of:
            return None, Rejected(
                where, digest, f"duplicate of run {run_id} event {event_id} (first: {first_of[(run_id, event_id)]})"
            )
        name = event_name(run_id, event_id)
        scangraph.write_scan(cand.path, folder / EVENTS_DIR / name, config, site, python)
    except InputError as exc:
        return None, Rejected(where, digest, str(exc))
    return EventEntry(name, run_id, event_id, when, where, digest, truth), None


# ---------------------------------------------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------------------------------------------
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
    campdir: str
    state: str  # not-started | running | done | failed | stopped
    backend: str  # local | condor | unknown
    counts: dict[str, int]
    events: list[EventStatus]
    rejected: list[EventStatus]
    report: str | None
    updated: str

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


def _parse_iso(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def read_json_object(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file, or None if it is missing, unreadable or not an object."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


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


def _stage_label(st: Any) -> str:
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


def event_status(folder: Path, entry: EventEntry) -> EventStatus:
    """State, stage, pixels and wall time of one event's scan directory."""
    from skyscan.graph.status import scan_status

    layout = ScanLayout(folder)
    runstate = read_json_object(layout.runstate(TOP_DAG))
    end = read_end_state(folder)
    alive = runstate is not None and runstate.get("finished") is None and pid_alive(runstate.get("pid"))
    summary = read_json_object(layout.summary)
    wall = local_wall_seconds(runstate, alive)
    if wall is None:
        wall = _condor_wall_seconds(folder)
    if end is not None and end.get("state") == "done" and summary is not None and not alive:
        scanned = int(summary.get("pixels", {}).get("scanned", 0) or 0)
        return EventStatus(entry.name, entry.run_id, entry.event_id, "done", "done", scanned, scanned, wall)
    if not folder.is_dir():
        return EventStatus(entry.name, entry.run_id, entry.event_id, "failed", "-", 0, 0, None, reason="no directory")
    if runstate is None and end is None and not any(p.exists() for p in layout.condor_files(TOP_DAG)):
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


def _condor_wall_seconds(folder: Path) -> float | None:
    from skyscan.dagman.nodestatus import parse_jobstate_log

    try:
        text = ScanLayout(folder).jobstate_log(TOP_DAG).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    started, finished, _ = parse_jobstate_log(text)
    if started is None:
        return None
    end = finished if finished is not None and finished >= started else time.time()
    return max(0.0, float(end) - float(started))


def campaign_status(campdir: str | os.PathLike[str]) -> CampaignStatus:
    """Totals and one row per event (rejected inputs listed apart) of a campaign, for either backend."""
    from skyscan.graph.status import parse_jobstate_log

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

    top = read_json_object(folder / f"{CAMPAIGN_DAG}.runstate.json")
    runner_alive = top is not None and top.get("finished") is None and pid_alive(top.get("pid"))
    jobstate = folder / f"{CAMPAIGN_DAG}.jobstate.log"
    condor_running = False
    if jobstate.is_file():
        try:
            started, finished, _ = parse_jobstate_log(jobstate.read_text(encoding="utf-8"))
            condor_running = started is not None and (finished is None or finished < started)
        except (OSError, UnicodeDecodeError):
            pass
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
        updated=_utcnow(),
    )


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


# ---------------------------------------------------------------------------------------------------------------
# Running and submitting
# ---------------------------------------------------------------------------------------------------------------
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

    def dag_started(self, event: Any) -> None:
        if event.depth != 0:
            return
        nodes = [n for n in event.nodes if not n.final]
        self.total = len(nodes)
        self.finished = sum(1 for n in nodes if n.state in ("done", "skipped"))
        how = "resuming" if event.resumed else "starting"
        self._print(f"campaign: {how}, {self.total} events, {self.finished} already done")

    def node_changed(self, event: Any) -> None:
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

    def dag_finished(self, event: Any) -> None:
        return None


@dataclass(frozen=True)
class CampaignRun:
    result: Any  # skyscan.local.executor.RunResult
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
    from skyscan.local.executor import run_dag

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


__all__ = [
    "CAMPAIGN_DAG",
    "CAMPAIGN_SCHEMA",
    "CAMPAIGN_STATUS_SCHEMA",
    "DEFAULT_MAX_RUNNING",
    "END_STATE",
    "EVENTS_DIR",
    "MANIFEST",
    "REPORT_DIR",
    "CampaignProgress",
    "CampaignRun",
    "CampaignStatus",
    "Candidate",
    "CreateProgress",
    "EventEntry",
    "EventStatus",
    "Manifest",
    "Rejected",
    "campaign_dag_text",
    "campaign_status",
    "campaign_workflow",
    "create_campaign",
    "event_name",
    "event_status",
    "expand_inputs",
    "format_campaign_status",
    "read_manifest",
    "run_campaign",
    "submit_campaign",
]
