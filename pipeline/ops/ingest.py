"""The watcher's first stage: inbox -> archive -> catalog (or quarantine).

Safe to interrupt at any point, including by SIGKILL: an inbox file is copied into the content-addressed
archive (fsync'ed) before anything else, and deleted from the inbox only after the catalog transaction that
records it has committed; a crash in between makes the next pass see a duplicate, which it records once and
removes. A file that ``skyscan run`` would reject is moved to the quarantine with a ``.reason`` note.
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
from skyscan.ops.cycle import ITEM_ERRORS, CycleReport
from skyscan.ops.logs import one_line
from skyscan.ops.watchconfig import WatchConfig
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



class Inbox:
    """The inbox stage of a pass: settled files are archived, validated and recorded in the catalog."""

    def __init__(self, cfg: WatchConfig, conn: sqlite3.Connection, log: logging.Logger) -> None:
        self.cfg = cfg
        self.conn = conn
        self.log = log
        self._doms: dict[str, set[tuple[int, int]]] = {}  # the DOMs of each built-in geometry, read once

    def inbox_ready(self) -> list[tuple[Path, os.stat_result]]:
        """Complete files: no dotfiles or *.part/*.tmp (still being written), unchanged for the settle time."""
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
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < self.cfg.settle_seconds:
                continue
            ready.append((Path(entry.path), st))
        return ready

    def ingest(self, report: CycleReport) -> None:
        for path, st in self.inbox_ready():
            try:
                self.ingest_file(path, st, report)
            except ITEM_ERRORS as exc:
                report.errors += 1
                self.log.error("inbox %s: not taken this time: %s", path.name, one_line(str(exc)))

    def ingest_file(self, path: Path, st: os.stat_result, report: CycleReport) -> None:
        name = path.name
        with path.open("rb") as fh:
            before = os.fstat(fh.fileno())
            data = fh.read()
        if not _same_file(before, st):
            return  # replaced since the listing: the next pass sees the settled version
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
            self.log.warning("quarantined %s as %s: %s", name, dest, reason)
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
        """Everything `skyscan run` would reject up front: schema, values, and DOMs of built-in geometries."""
        try:
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
        dest = self.cfg.quarantine / f"{stamp}-{path.name}"
        n = 1
        while dest.exists() or dest.with_name(dest.name + ".reason").exists():
            n += 1
            dest = self.cfg.quarantine / f"{stamp}-{n}-{path.name}"
        note = f"{reason}\nfile: {path.name}\nsha256: {sha}\nreceived: {now}\n"
        _write_durable(dest.with_name(dest.name + ".reason"), note.encode())
        try:
            current = os.stat(path)
        except FileNotFoundError:
            return dest
        if _same_file(current, before):
            shutil.move(str(path), str(dest))
        return dest

    def remove_from_inbox(self, path: Path, before: os.stat_result) -> bool:
        try:
            current = os.stat(path)
        except FileNotFoundError:
            return True
        if not _same_file(current, before):
            return False
        path.unlink()
        return True
