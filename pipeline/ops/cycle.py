"""What one watcher pass did, and which errors skip one item of a pass instead of stopping it.

A pass never stops on one bad inbox file or one broken scan: any error in one item (:data:`ITEM_ERRORS` is
``Exception``: an unexpected error in one scan is no reason to stop tracking, publishing or notifying the others)
is logged, counted in :attr:`CycleReport.errors`, and the pass goes on with the next item. Each stage of a pass
is guarded the same way, so a failing stage does not stop the stages after it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["ITEM_ERRORS", "CycleReport", "run_stages"]


@dataclass
class CycleReport:
    """What one pass did (for tests, the benchmark and the loop's log)."""

    taken: int = 0
    new: int = 0
    revisions: int = 0
    duplicates: int = 0
    quarantined: int = 0
    started: int = 0
    done: int = 0
    retried: int = 0
    failed: int = 0
    notified: int = 0
    errors: int = 0
    calibrations_started: int = 0  # calibrations of done scans started (or retried) this pass
    calibrated: int = 0  # calibrated re-issues finished this pass
    calibrations_failed: int = 0  # calibrations given up this pass (the scans stay done)


ITEM_ERRORS: tuple[type[Exception], ...] = (Exception,)


def run_stages(stages: Iterable[Callable[[CycleReport], None]], report: CycleReport, log: logging.Logger) -> None:
    """Run the stages of a pass in order, each guarded: an unexpected error in one (an unreadable inbox) is
    logged and counted, and the stages after it still run. A catalog (SQLite) error is not a stage's fault: it
    ends the pass."""
    from skyscan.ops.logs import one_line

    for stage in stages:
        try:
            stage(report)
        except sqlite3.Error:
            raise
        except ITEM_ERRORS as exc:
            report.errors += 1
            log.error("%s stage failed, the pass goes on: %s", stage.__name__,
                      one_line(f"{exc.__class__.__name__}: {exc}"))
