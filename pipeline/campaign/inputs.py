"""What a campaign is made of: event files from the command line's files, folders, globs and lists of paths.

Expanding the inputs only finds candidate files; whether a candidate is an event is decided when it is admitted
(``skyscan.campaign.create``). ``quick_identity`` reads a candidate's ids without the full validation, so that
duplicates are found cheaply.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from skyscan.errors import InputError
from skyscan.reco import untrusted

_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Candidate:
    """A file that may be an event: the path to read, or why it cannot be read at all."""

    path: Path
    problem: str | None = None


@dataclass(frozen=True)
class QuickIdentity:
    """An event file's ids as written, before validation."""

    run_id: int
    event_id: int
    time: str | None  # the event's time string, unparsed
    truth: bool  # the file has a truth record


def _folder_events(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if p.is_file())


def _list_file(path: Path) -> list[Candidate]:
    """A text file listing paths (one per line, '#' comments; relative to the list file's folder)."""
    text = untrusted.read_text(path, "list of inputs")
    out: list[Candidate] = []
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        listed = Path(entry).expanduser()
        if not listed.is_absolute():
            listed = path.parent / listed
        try:
            is_dir, exists = listed.is_dir(), listed.exists()
        except (OSError, ValueError) as exc:  # a name too long, a NUL: that line is rejected, not the campaign
            out.append(Candidate(listed, f"{untrusted.shown(entry)}: not a usable path ({exc.__class__.__name__}, "
                                         f"listed in {path})"))
            continue
        if is_dir:
            out.extend(Candidate(p) for p in _folder_events(listed))
        elif exists:
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


def _identity_of(doc: object) -> QuickIdentity | None:
    if not isinstance(doc, dict):
        return None
    run_id, event_id = doc.get("run_id"), doc.get("event_id")
    if not isinstance(run_id, int) or not isinstance(event_id, int) or isinstance(run_id, bool):
        return None
    if isinstance(event_id, bool) or run_id < 0 or event_id < 0:
        return None
    when = doc.get("time")
    return QuickIdentity(run_id, event_id, when if isinstance(when, str) else None, doc.get("truth") is not None)


def unchecked_identity(data: bytes) -> QuickIdentity | None:
    """The ids of an event file's bytes parsed by the plain JSON decoder, nothing checked (None if not there).

    About ten times cheaper than :func:`quick_identity` on an event of thousands of pulses. For a file that
    passes the full validation both give the same identity (its ids are int64, its keys unique); for any other
    file this one may give ids where :func:`quick_identity` gives None, so a caller may act on them only where
    the full validation decides anyway (``skyscan.campaign.create`` confirms a duplicate with quick_identity).
    """
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):  # ValueError: invalid JSON or text; RecursionError: absurd nesting
        return None
    return _identity_of(doc)


def quick_identity(data: bytes) -> QuickIdentity | None:
    """The ids of an event file's bytes read without validating the event; None if they are not there."""
    try:
        doc = untrusted.loads_json(data, "event")  # ids out of the int64 range, duplicate keys: not an identity
    except InputError:
        return None
    return _identity_of(doc)


__all__ = ["Candidate", "QuickIdentity", "expand_inputs", "quick_identity", "unchecked_identity"]
