"""The watcher's first stage: inbox -> archive -> catalog (or quarantine).

Safe to interrupt at any point, including by SIGKILL: an inbox file is copied into the content-addressed
archive (fsync'ed) before anything else, and deleted from the inbox only after the catalog transaction that
records it has committed; a crash in between makes the next pass see a duplicate, which it records once and
removes. A file that ``skyscan run`` would reject is moved to the quarantine with a ``.reason`` note.

Poison-proof: whatever an inbox entry holds, it ends archived and recorded, or quarantined with its reason --
never an exception that stops the pass. Only regular files with one link are read: a symbolic link, a hard
link (its other name could be anything, e.g. a file the watcher archives), a folder, a FIFO or a device is
quarantined unread (the entry is renamed, its target untouched). A file whose taking fails unexpectedly is
quarantined with the error; only a catalog (SQLite) error leaves the file for the next pass, since that is
not the file's fault. File names are written escaped (:func:`skyscan.ops.logs.safe_text`) everywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sqlite3
import stat
import tempfile
import time
from pathlib import Path

from skyscan.errors import InputError
from skyscan.ops.catalog import scans
from skyscan.ops.cycle import CycleReport
from skyscan.ops.logs import one_line, safe_text
from skyscan.ops.watchconfig import WatchConfig
from skyscan.reco import untrusted
from skyscan.reco.event import EventFile, check_doms, read_event
from skyscan.timestamps import utcnow

__all__ = ["Inbox"]


def _write_durable(path: Path, data: bytes) -> None:
    """Write, fsync, rename, fsync the folder: the archive copy must outlive a power cut."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


def refusal(st: os.stat_result) -> str | None:
    """Why an inbox entry is not taken as an event file (None: a regular file with a single link)."""
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link, not an event file (links are not followed)"
    if stat.S_ISDIR(st.st_mode):
        return "a folder, not an event file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a FIFO, socket or device)"
    if st.st_nlink > 1:
        return f"a hard link ({st.st_nlink} names for one file); deliver a file of its own"
    return None


class Inbox:
    """The inbox stage of a pass: settled files are archived, validated and recorded in the catalog."""

    def __init__(self, cfg: WatchConfig, conn: sqlite3.Connection, log: logging.Logger) -> None:
        self.cfg = cfg
        self.conn = conn
        self.log = log
        self._doms: dict[str, set[tuple[int, int]]] = {}  # the DOMs of each built-in geometry, read once

    def inbox_ready(self) -> list[tuple[Path, os.stat_result]]:
        """Settled entries: no dotfiles or *.part/*.tmp (still being written), unchanged for the settle time.

        Every kind of entry is listed (links and folders too): :meth:`ingest` refuses those that are not
        regular files with one link.
        """
        ready = []
        now = time.time()
        with os.scandir(self.cfg.inbox) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if entry.name.startswith(".") or entry.name.endswith((".part", ".tmp")):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if now - st.st_mtime < self.cfg.settle_seconds:
                continue
            ready.append((Path(entry.path), st))
        return ready

    def ingest(self, report: CycleReport) -> None:
        """Each settled entry taken or quarantined; no entry can stop the pass (see the module docstring)."""
        for path, st in self.inbox_ready():
            try:
                self.ingest_file(path, st, report)
            except sqlite3.Error as exc:
                report.errors += 1
                self.log.error("inbox %s: not taken this time (catalog): %s", safe_text(path.name),
                               one_line(str(exc)))
            except Exception as exc:  # anything else is this entry's fault: quarantine it, go on
                reason = one_line(f"{path.name}: cannot be taken ({exc.__class__.__name__}: {exc})", 500)
                self.quarantine_entry(path, st, reason, report)

    def quarantine_entry(self, path: Path, st: os.stat_result, reason: str, report: CycleReport,
                         sha: str = "-") -> None:
        """Move an entry to the quarantine with its reason; a failure to do so is logged, never raised."""
        name = safe_text(path.name)
        now = utcnow()
        try:
            with contextlib.suppress(sqlite3.Error):
                scans.record_quarantine(self.conn, name=name, sha256=sha, reason=reason, now=now)
            dest = self.quarantine(path, st, reason, sha, now)
        except Exception as exc:
            report.errors += 1
            self.log.error("inbox %s: could not be quarantined: %s (reason: %s)", name,
                           one_line(f"{exc.__class__.__name__}: {exc}"), reason)
            return
        report.quarantined += 1
        self.log.warning("quarantined %s as %s: %s", name, safe_text(dest.name), reason)

    def ingest_file(self, path: Path, st: os.stat_result, report: CycleReport) -> None:
        name = safe_text(path.name)
        refused = refusal(st)
        if refused is not None:
            self.quarantine_entry(path, st, f"{name}: {refused}", report)
            return
        # O_NOFOLLOW | O_NONBLOCK: an entry swapped for a link or a FIFO since the listing is not followed/waited on
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            before = os.fstat(fh.fileno())
            if not _same_file(before, st) or refusal(before) is not None:
                return  # replaced since the listing: the next pass sees the settled version
            data = fh.read()
        sha = hashlib.sha256(data).hexdigest()
        archived = self.archive(sha, data)
        report.taken += 1
        self.log.info("archived %s (%d bytes, sha256 %s) as %s", name, len(data), sha, archived)
        now = utcnow()
        try:
            ef = self.validate(archived, name)
        except InputError as exc:
            reason = one_line(str(exc), 500)
            scans.record_quarantine(self.conn, name=name, sha256=sha, reason=reason, now=now)
            dest = self.quarantine(path, before, reason, sha, now)
            report.quarantined += 1
            self.log.warning("quarantined %s as %s: %s", name, safe_text(dest.name), reason)
            return
        ev = ef.event
        result = scans.record_revision(
            self.conn, run_id=ev.run_id, event_id=ev.event_id, sha256=sha, archive_path=str(archived),
            source_name=name, event_time=ev.time, stream=ev.stream, now=now,
        )
        removed = self.remove_from_inbox(path, before)
        label = scans.alert_name(ev.run_id, ev.event_id, result.revision)
        if result.outcome == "duplicate":
            report.duplicates += 1
            self.log.info("duplicate %s: same content as %s (alert id %d), recorded once", name, label,
                          result.alert_id)
        else:
            if result.outcome == "new":
                report.new += 1
            else:
                report.revisions += 1
            self.log.info("%s %s from %s: alert id %d, scan %s received", "new alert" if result.outcome == "new"
                          else "new revision", label, name, result.alert_id, result.scan_id)
        if not removed:
            self.log.warning("inbox %s changed while being taken; left for the next pass", name)

    def archive(self, sha: str, data: bytes) -> Path:
        """The content-addressed copy ``archive/<2 hex>/<sha256>.json``, written once."""
        dest = self.cfg.archive / sha[:2] / f"{sha}.json"
        if dest.is_file() and hashlib.sha256(dest.read_bytes()).hexdigest() == sha:
            return dest
        _write_durable(dest, data)
        return dest

    def validate(self, archived: Path, name: str) -> EventFile:
        """Everything `skyscan run` would reject up front: schema, values, and DOMs of built-in geometries.

        Any failure at all is an InputError here (:func:`skyscan.reco.untrusted.guarded`): a file that breaks
        the validator is as bad as one it rejects.
        """
        try:
            with untrusted.guarded("event"):
                ef = read_event(archived)
                geometry = ef.event.geometry
                if geometry not in self._doms:
                    from skyscan.reco.geometry import builtin

                    self._doms[geometry] = builtin(geometry).keys
                check_doms(ef.event.pulses, self._doms[geometry])
        except InputError as exc:
            text = str(exc).replace(str(archived), name)
            raise InputError(text if text.startswith(name) else f"{name}: {text}") from None
        return ef

    def quarantine(self, path: Path, before: os.stat_result, reason: str, sha: str, now: str) -> Path:
        stamp = now.replace(":", "").replace("-", "")
        name = safe_text(path.name)[:200]  # no control characters in the quarantine's names either
        dest = self.cfg.quarantine / f"{stamp}-{name}"
        n = 1
        while dest.exists() or dest.is_symlink() or dest.with_name(dest.name + ".reason").exists():
            n += 1
            dest = self.cfg.quarantine / f"{stamp}-{n}-{name}"
        note = f"{one_line(reason, 2000)}\nfile: {name}\nsha256: {sha}\nreceived: {now}\n"
        _write_durable(dest.with_name(dest.name + ".reason"), note.encode())
        try:
            current = os.lstat(path)
        except FileNotFoundError:
            return dest
        if _same_file(current, before):
            shutil.move(str(path), str(dest))  # the entry itself: shutil moves a link as a link
        return dest

    def remove_from_inbox(self, path: Path, before: os.stat_result) -> bool:
        try:
            current = os.lstat(path)
        except FileNotFoundError:
            return True
        if not _same_file(current, before):
            return False
        path.unlink()
        return True
