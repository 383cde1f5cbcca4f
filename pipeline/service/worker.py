"""The service's scheduler thread: the shared :class:`skyscan.ops.scheduler.Scheduler`, a pass every
``poll_seconds`` (or at once when a scan is submitted), on a connection of its own.

Only one service may schedule a data directory: the thread holds an ``flock`` on ``<data_dir>/serve.lock``.
Stopping (SIGTERM/SIGINT) ends the loop after the current pass; detached local scans keep running (their
processes are in sessions of their own) and stay marked running, which they are: the next service adopts
them through their launch locks. The same holds for the automatic calibrations of done scans (serve.yaml's
``calibration:``, :mod:`skyscan.ops.calibration`), which each pass follows after the scans. A scan the
service had claimed but not launched is given back on the next start (:meth:`Scheduler.track_one`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time

from skyscan.errors import SkyscanError
from skyscan.ops.catalog.db import connect
from skyscan.ops.cycle import CycleReport
from skyscan.ops.logs import one_line
from skyscan.ops.scheduler import Scheduler
from skyscan.service.config import ServeConfig

__all__ = ["SchedulerThread", "acquire_service_lock"]

log = logging.getLogger("skyscan.service")


def acquire_service_lock(cfg: ServeConfig) -> int:
    """The data directory's single-scheduler lock (an open, flock'ed descriptor); SkyscanError if taken."""
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(cfg.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SkyscanError(f"{cfg.lock_file}: another skyscan serve schedules this data directory") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


class SchedulerThread:
    """Runs scheduler passes in a daemon thread until :meth:`stop`."""

    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._thread = threading.Thread(target=self._run, name="skyscan-scheduler", daemon=True)
        self._fd: int | None = None
        self.last_pass: float | None = None  # time.monotonic() of the end of the last pass
        self.error: str | None = None

    def start(self) -> None:
        for folder in (self.cfg.archive, self.cfg.configs, self.cfg.scans):
            folder.mkdir(parents=True, exist_ok=True)
        self._fd = acquire_service_lock(self.cfg)
        self._thread.start()

    def kick(self) -> None:
        """Run a pass now (a scan was submitted or aborted)."""
        self._kick.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._kick.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = connect(self.cfg.database)
            scheduler = Scheduler(self.cfg.scheduler_settings(), conn, log)
            while not self._stop.is_set():
                self._kick.clear()
                try:
                    scheduler.schedule(CycleReport())
                except sqlite3.Error as exc:  # a busy or broken database: log, try again next pass
                    self.error = one_line(str(exc))
                    log.error("scheduler pass failed (catalog): %s", self.error)
                self.last_pass = time.monotonic()
                self._kick.wait(self.cfg.poll_seconds)
        except Exception as exc:  # the thread's end is visible in /health (scheduler.alive false)
            self.error = one_line(f"{exc.__class__.__name__}: {exc}")
            log.error("the scheduler stopped: %s", self.error)
        finally:
            if conn is not None:
                conn.close()
