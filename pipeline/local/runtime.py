"""What all DAGs of one ``run_dag`` call share: process slots, the stop request and the caller's observer.

A top-level DAG and every sub-DAG nested in it get the same :class:`Runtime`, so ``jobs`` limits the
processes over all nesting levels and one Ctrl-C stops them all.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from skyscan.local.events import DagObserver, LogObserver
from skyscan.local.processes import POLL_SECONDS, Launcher
from skyscan.timestamps import utcnow

__all__ = ["Runtime"]


@dataclass
class Runtime:
    jobs: int  # processes (jobs and scripts) at once, over all nesting levels
    stop: threading.Event
    force: threading.Event  # a second Ctrl-C: skip the SIGTERM grace period
    grace: float  # seconds between SIGTERM and SIGKILL
    observer: DagObserver | None
    launcher: Launcher | None = None  # the warm fork server for ``skyscan node …`` commands, if on
    slots: threading.BoundedSemaphore = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.slots = threading.BoundedSemaphore(self.jobs)

    def acquire_slot(self, stopped: Callable[[], bool]) -> bool:
        """Block until a process slot is free; False if the run is being stopped."""
        while not stopped():
            if self.slots.acquire(timeout=POLL_SECONDS):
                return True
        return False

    def emit(self, local: LogObserver | None, method: str, event: Any) -> None:
        """Deliver an event to the DAG's file log and the caller's observer, one at a time."""
        with self.lock:
            for obs in (local, self.observer):
                if obs is None:
                    continue
                try:
                    getattr(obs, method)(event)
                except Exception as exc:  # a broken display must not break the run
                    if local is not None and obs is not local:
                        with contextlib.suppress(Exception):
                            local.write_line(f"{utcnow()} observer error in {method}: {type(exc).__name__}: {exc}")
