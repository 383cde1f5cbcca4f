"""The per-stage progress display of `skyscan run`."""

from __future__ import annotations

import io
from pathlib import Path

from skyscan.local.executor import DagStarted, NodeEvent, NodeInfo
from skyscan.local.progress import ScanProgress

DAG = Path("/scan/skyscan.dag")


def _info(name: str, npix: int) -> NodeInfo:
    return NodeInfo(name=name, kind="job", final=False, state="waiting",
                    vars={"stage": "0", "nside": "8", "npix": str(npix)}, category="scan")


def _event(name: str, state: str, npix: int) -> NodeEvent:
    return NodeEvent(dag=DAG, depth=0, node=name, state=state, attempt=1,
                     vars={"stage": "0", "nside": "8", "npix": str(npix)}, return_code=0 if state == "done" else None,
                     seconds=1.0 if state == "done" else None, error=None, time="2026-01-01T00:00:00Z")


def _start(progress: ScanProgress) -> None:
    nodes = (_info("scan-s0-0000", 384), _info("scan-s0-0001", 384))
    progress.dag_started(DagStarted(dag=DAG, depth=0, parent_node=None, nodes=nodes, resumed=False, time="t"))


def test_plain_lines_count_jobs_and_pixels() -> None:
    out = io.StringIO()
    progress = ScanProgress(out, live=False)
    _start(progress)
    progress.node_changed(_event("scan-s0-0000", "running", 384))
    progress.node_changed(_event("scan-s0-0000", "done", 384))
    text = out.getvalue()
    assert "stage 0 (nside 8): 1/2 jobs, 384/768 pixels" in text
    assert "\r" not in text  # no terminal control in logs
    progress.node_changed(_event("scan-s0-0001", "done", 384))
    assert "2/2 jobs, 768/768 pixels" in out.getvalue() and "done" in out.getvalue().splitlines()[-1]


def test_live_mode_redraws_one_line_and_reports_failures() -> None:
    out = io.StringIO()
    progress = ScanProgress(out, live=True, min_interval=0.0)
    _start(progress)
    progress.node_changed(_event("scan-s0-0000", "running", 384))
    progress.node_changed(_event("scan-s0-0000", "done", 384))
    progress.node_changed(_event("scan-s0-0001", "failed", 384))
    text = out.getvalue()
    assert "\r\033[K" in text
    assert "1 failed" in text and "finished with failures" in text
