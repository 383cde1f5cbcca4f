"""The campaign manifest, CAMPDIR/campaign.json (schema skyscan-campaign/1), and the names inside CAMPDIR.

The manifest is the campaign's record of what it is: software, configuration digest, site, the accepted events
(with the input each came from and its sha256) and the rejected inputs with the reason. ``create_campaign``
writes it last, so a directory with a manifest is a completely created campaign. Layout: docs/campaigns.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyscan.atomic import write_json
from skyscan.campaign.graph import EVENTS_DIR
from skyscan.errors import InputError

CAMPAIGN_SCHEMA = "skyscan-campaign/1"
MANIFEST = "campaign.json"
CONFIG_FILE = "config.yaml"
LOGS_DIR = "logs"
REPORT_DIR = "report"


def event_name(run_id: int, event_id: int) -> str:
    """The event's node name in campaign.dag and its folder under events/."""
    return f"run{run_id}-evt{event_id}"


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of an input or of the configuration text, as the manifest records them."""
    return hashlib.sha256(data).hexdigest()


def campaign_batch_name(campdir: Path) -> str:
    """HTCondor batch name of the campaign's DAGMan job (the event sub-DAGs keep their own)."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(campdir).absolute().name).strip("-") or "campaign"
    return f"skyscan-campaign-{base}"


@dataclass(frozen=True)
class EventEntry:
    """An accepted event: where it came from and where its scan lives."""

    name: str
    run_id: int
    event_id: int
    time: str | None  # ISO 8601 UTC, as the event file gives it
    input: str  # absolute path of the input file
    sha256: str
    truth: bool  # the event carries simulation truth

    @property
    def dir(self) -> str:
        """The event's scan directory, relative to CAMPDIR."""
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
    sha256: str | None  # None when the file could not be read
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"input": self.input, "sha256": self.sha256, "reason": self.reason}


@dataclass
class Manifest:
    """campaign.json (schema skyscan-campaign/1); ``doc`` is the document as read or written."""

    campdir: Path
    events: list[EventEntry]
    rejected: list[Rejected]
    site: str  # the site profile as given to `campaign create` (a name, or an absolute file path)
    shared_filesystem: bool
    python: str | None
    doc: dict[str, Any] = field(repr=False, default_factory=dict)

    def event_dir(self, entry: EventEntry) -> Path:
        return self.campdir / entry.dir

    @property
    def batch_name(self) -> str:
        return str(self.doc.get("batch_name") or campaign_batch_name(self.campdir))


def write_manifest(campdir: Path, doc: dict[str, Any]) -> None:
    """Write CAMPDIR/campaign.json (atomically: a reader sees no manifest or the whole one)."""
    write_json(campdir / MANIFEST, doc)


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


__all__ = [
    "CAMPAIGN_SCHEMA",
    "CONFIG_FILE",
    "LOGS_DIR",
    "MANIFEST",
    "REPORT_DIR",
    "EventEntry",
    "Manifest",
    "Rejected",
    "campaign_batch_name",
    "event_name",
    "read_manifest",
    "sha256_bytes",
    "write_manifest",
]
