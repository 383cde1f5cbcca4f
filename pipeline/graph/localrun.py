"""`skyscan run`: write the scan graph and execute it with the built-in local executor.

The very files a grid site would run (.dag, .sub, the node wrapper) are executed here, with the
local site profile, so a laptop, CI and HTCondor all run the same graph.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from skyscan.condor.schedd import submit_environment
from skyscan.errors import InputError
from skyscan.graph.build import write_scan
from skyscan.graph.endstate import read_end_state
from skyscan.graph.layout import ScanLayout
from skyscan.local.events import RunResult
from skyscan.local.progress import ScanProgress
from skyscan.local.scheduler import run_dag
from skyscan.products.summary import Summary, read_summary
from skyscan.settings.scan import ScanConfig
from skyscan.settings.site import load_site


@dataclass(frozen=True)
class LocalRun:
    outdir: Path
    result: RunResult
    end_state: dict[str, Any] | None
    summary: Summary | None  # summary.json when the merge wrote a valid one
    reused: bool

    @property
    def state(self) -> str:
        if self.result.interrupted:
            return "interrupted"
        if self.end_state is not None:
            return str(self.end_state.get("state", "failed"))
        return "done" if self.result.ok else "failed"


def run_scan(
    event_path: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    config: ScanConfig,
    *,
    jobs: int | None = None,
    stream: IO[str] | None = None,
    live: bool | None = None,
    stop_event: threading.Event | None = None,
) -> LocalRun:
    """Write (or reuse) the scan directory and run its DAG to the end, resuming what was done."""
    out = stream or sys.stderr
    site = load_site("local")
    paths = write_scan(Path(event_path), Path(outdir), config, site)
    # DAGMan gets these through its own environment; the PRE scripts (plan, final) rely on them.
    os.environ.update(submit_environment(site))
    show_live = out.isatty() if live is None else live
    observer = ScanProgress(out, live=show_live)
    result = run_dag(paths.dag, jobs=jobs, observer=observer, stop_event=stop_event)
    summary: Summary | None = None
    summary_path = ScanLayout(paths.outdir).summary
    if summary_path.is_file():
        try:
            summary = read_summary(summary_path)
        except InputError:
            summary = None
    return LocalRun(paths.outdir, result, read_end_state(paths.outdir), summary, paths.reused)
