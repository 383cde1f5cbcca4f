"""Atomic file output: write under a temporary name in the same folder, then rename.

A reader (or a resumed scan) therefore sees either the previous file or the complete new
one, never a half-written product. The temporary name is ``.<name>.<random>.part``; a process killed before the
rename (SIGKILL) leaves it behind, and the next run of the node that writes ``<name>`` removes it
(:func:`remove_stale_parts`), so no hidden file stays for ever.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():  # mkstemp creates 0600; give the product the usual permissions
            os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


PART_SUFFIX = ".part"


def part_files(path: str | os.PathLike[str]) -> list[Path]:
    """The temporary files :func:`atomic_path` makes (or a killed writer left) for ``path``."""
    final = Path(path)
    prefix = f".{final.name}."
    try:
        entries = list(final.parent.iterdir())
    except OSError:  # no folder yet: nothing left behind
        return []
    return sorted(p for p in entries if p.name.startswith(prefix) and p.name.endswith(PART_SUFFIX)
                  and len(p.name) > len(prefix) + len(PART_SUFFIX))


def remove_stale_parts(*paths: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files an interrupted writer of each of ``paths`` left; the ones removed.

    Call it where the one writer of those files starts (a node's next run): a temporary file of another live
    writer of the same path would be removed too, so never for files that two processes write at once.
    """
    removed: list[Path] = []
    for path in paths:
        for part in part_files(path):
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
                removed.append(part)
    return removed


def remove_stale_parts_in(folder: str | os.PathLike[str]) -> list[Path]:
    """Every temporary file of :func:`atomic_path` directly in ``folder`` (one only its node writes into)."""
    removed: list[Path] = []
    try:
        entries = sorted(Path(folder).iterdir())
    except OSError:
        return []
    for p in entries:
        if p.name.startswith(".") and p.name.endswith(PART_SUFFIX) and p.is_file():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask is process-wide, not thread-safe


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_text(doc: Any, indent: int | None = 1) -> str:
    """The text :func:`write_json` writes: strict JSON (no NaN), ``indent`` spaces, a final newline."""
    return json.dumps(doc, indent=indent, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike[str], doc: Any, indent: int | None = 1) -> None:
    write_text(path, json_text(doc, indent))
