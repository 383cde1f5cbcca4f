"""What one watcher pass did, and which errors skip one item of a pass instead of stopping it.

A pass never stops on one bad inbox file or one broken scan: the errors in :data:`ITEM_ERRORS` are logged,
counted in :attr:`CycleReport.errors`, and the pass goes on with the next item.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from skyscan.errors import InputError, SkyscanError

__all__ = ["ITEM_ERRORS", "CycleReport"]


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


ITEM_ERRORS = (OSError, SkyscanError, InputError, subprocess.SubprocessError, ValueError)
