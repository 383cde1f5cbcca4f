"""``skyscan campaign create``: admit the inputs one by one, write a scan directory per event, then the manifest.

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
on HTCondor (every sub-DAG is its own DAGMan job) and locally (the local executor runs sub-DAGs in-process)
alike, and resumes the same way: DAGMan's rescue DAGs, or the local executor's run-state files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skyscan.atomic import write_text
from skyscan.campaign.graph import (
    CAMPAIGN_DAG,
    EVENTS_DIR,
    REPORT_SUB,
    WRAPPER,
    campaign_dag_text,
    install_campaign_wrapper,
    report_submit_text,
)
from skyscan.campaign.inputs import Candidate, QuickIdentity, expand_inputs, quick_identity, unchecked_identity
from skyscan.campaign.manifest import (
    CAMPAIGN_SCHEMA,
    CONFIG_FILE,
    LOGS_DIR,
    MANIFEST,
    EventEntry,
    Manifest,
    Rejected,
    campaign_batch_name,
    event_name,
    sha256_bytes,
    write_manifest,
)
from skyscan.errors import InputError
from skyscan.settings.scan import ScanConfig
from skyscan.settings.site import SiteProfile
from skyscan.timestamps import utcnow

if TYPE_CHECKING:
    from skyscan.graph.build import ScanRendering

DEFAULT_MAX_RUNNING = 20
#: What ``create_campaign`` writes into CAMPDIR: a directory holding only these may be created into again
#: (an interrupted ``campaign create`` resumes: write_scan reuses event directories of the same event).
_OWN_NAMES = frozenset({MANIFEST, CAMPAIGN_DAG, CONFIG_FILE, EVENTS_DIR, LOGS_DIR, REPORT_SUB, WRAPPER})


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
    if isinstance(max_running, bool) or not isinstance(max_running, int) or max_running < 1:
        raise InputError(f"--max-running: must be at least 1, got {max_running!r}")
    folder = Path(campdir)
    _check_campdir(folder)
    candidates = expand_inputs(inputs)
    from skyscan.graph.build import ScanRendering

    # What every event's scan directory shares (config.yaml, submit files, the DAG's text), rendered once.
    rendering = ScanRendering.of(config, site, python)
    config_text = rendering.config_yaml
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
        entry, reject = _admit(cand, where, first_of, folder, rendering)
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
    doc = _manifest_document(
        config, config_text, config_source, site, profile, python, batch, max_running, total, accepted, rejected
    )
    write_manifest(folder, doc)
    return Manifest(folder, accepted, rejected, profile, site.shared_filesystem, python, doc)


def _manifest_document(
    config: ScanConfig,
    config_text: str,
    config_source: str | None,
    site: SiteProfile,
    profile: str,
    python: str | None,
    batch: str,
    max_running: int,
    total: int,
    accepted: Sequence[EventEntry],
    rejected: Sequence[Rejected],
) -> dict[str, Any]:
    """campaign.json's body, keys in the documented order (docs/campaigns.md)."""
    from skyscan.version import __version__, git_revision

    return {
        "schema": CAMPAIGN_SCHEMA,
        "created": utcnow(),
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


def _admit(
    cand: Candidate,
    where: str,
    first_of: dict[tuple[int, int], str],
    folder: Path,
    rendering: ScanRendering,
) -> tuple[EventEntry | None, Rejected | None]:
    """Validate one candidate and write its scan directory: (entry, None) or (None, rejection)."""
    from skyscan.graph.build import write_scan
    from skyscan.graph.event import load_event

    if cand.problem is not None:
        return None, Rejected(where, None, cand.problem)
    try:
        data = cand.path.read_bytes()
    except OSError as exc:
        return None, Rejected(where, None, f"{cand.path}: cannot read ({exc.strerror or exc.__class__.__name__})")
    digest = sha256_bytes(data)
    # The plain decoder's ids serve wherever write_scan's full validation decides anyway; a duplicate is
    # confirmed with the checked ids (an invalid file is rejected for what is wrong with it, not as a duplicate).
    ident = unchecked_identity(data)
    if ident is not None and (ident.run_id, ident.event_id) in first_of:
        ident = quick_identity(data)
    try:
        if ident is None:  # not even ids: the full validation names the problem
            ef, _ = load_event(cand.path)
            ident = QuickIdentity(ef.event.run_id, ef.event.event_id, ef.event.time_iso, ef.truth is not None)
        key = (ident.run_id, ident.event_id)
        if key in first_of:
            return None, Rejected(
                where, digest, f"duplicate of run {ident.run_id} event {ident.event_id} (first: {first_of[key]})"
            )
        name = event_name(ident.run_id, ident.event_id)
        write_scan(
            cand.path, folder / EVENTS_DIR / name, rendering.config, rendering.site, rendering.python, rendering=rendering
        )
    except InputError as exc:
        return None, Rejected(where, digest, str(exc))
    return EventEntry(name, ident.run_id, ident.event_id, ident.time, where, digest, ident.truth), None


__all__ = ["DEFAULT_MAX_RUNNING", "CreateProgress", "create_campaign"]
