"""Live progress of a scan run by the local executor: per stage, nodes and pixels, rate, time left.

On a terminal one line per stage is redrawn in place; otherwise (cron, CI, a log file) plain
lines are printed when a node finishes, so logs stay readable.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import IO

from skyscan.local.events import BaseObserver, DagFinished, DagStarted, NodeEvent, format_node_event


@dataclass
class StageProgress:
    stage: int
    nside: int = 0
    nodes_total: int = 0
    nodes_done: int = 0
    nodes_failed: int = 0
    pixels_total: int = 0
    pixels_done: int = 0
    started: float | None = None
    finished: bool = False

    def line(self, now: float) -> str:
        text = f"stage {self.stage}"
        if self.nside:
            text += f" (nside {self.nside})"
        text += f": {self.nodes_done}/{self.nodes_total} jobs, {self.pixels_done}/{self.pixels_total} pixels"
        if self.nodes_failed:
            text += f", {self.nodes_failed} failed"
        if self.started is not None and self.pixels_done:
            elapsed = max(now - self.started, 1e-6)
            rate = self.pixels_done / elapsed
            text += f", {rate:.0f} pixels/s"
            left = (self.pixels_total - self.pixels_done) / rate if rate > 0 else 0.0
            if not self.finished and left > 0:
                text += f", ~{left:.0f} s left"
        if self.finished:
            text += " - done" if not self.nodes_failed else " - finished with failures"
        return text


class ScanProgress(BaseObserver):
    """Observer for :func:`skyscan.local.executor.run_dag` that knows skyscan's node VARS (stage, nside, npix)."""

    def __init__(self, stream: IO[str], live: bool, min_interval: float = 0.25) -> None:
        self.stream = stream
        self.live = live
        self.min_interval = min_interval
        self.stages: dict[int, StageProgress] = {}
        self.lock = threading.Lock()
        self.last_draw = 0.0
        self.current: int | None = None

    def _stage_of(self, vars_: dict[str, str] | object) -> tuple[int, int, int] | None:
        if not isinstance(vars_, dict) or "stage" not in vars_:
            return None
        try:
            return int(vars_["stage"]), int(vars_.get("nside", 0)), int(vars_.get("npix", 0))
        except ValueError:
            return None

    def dag_started(self, event: DagStarted) -> None:
        with self.lock:
            for node in event.nodes:
                info = self._stage_of(dict(node.vars))
                if info is None:
                    continue
                stage, nside, npix = info
                sp = self.stages.setdefault(stage, StageProgress(stage=stage, nside=nside))
                sp.nodes_total += 1
                sp.pixels_total += npix
                if node.state in ("done", "skipped"):
                    sp.nodes_done += 1
                    sp.pixels_done += npix

    def node_changed(self, event: NodeEvent) -> None:
        info = self._stage_of(dict(event.vars))
        with self.lock:
            if info is None:
                if event.state in ("done", "failed", "skipped"):
                    self._finish_line()
                    self._print(format_node_event(event))
                elif self.live and event.state == "running" and event.depth == 0 and not event.node.startswith("stage"):
                    self._print(f"{event.node} running ...")
                return
            stage, _, npix = info
            sp = self.stages.setdefault(stage, StageProgress(stage=stage))
            now = time.monotonic()
            if event.state == "running" and sp.started is None:
                sp.started = now
            if event.state == "done":
                sp.nodes_done += 1
                sp.pixels_done += npix
            elif event.state == "failed":
                sp.nodes_failed += 1
            if sp.nodes_done + sp.nodes_failed >= sp.nodes_total and sp.nodes_total:
                sp.finished = True
            if self.live:
                if self.current is not None and self.current != stage:
                    self._finish_line()
                self.current = stage
                if sp.finished or now - self.last_draw >= self.min_interval:
                    self.stream.write("\r\033[K" + sp.line(now))
                    self.stream.flush()
                    self.last_draw = now
                if sp.finished:
                    self._finish_line()
            elif event.state in ("done", "failed"):
                self._print(f"{format_node_event(event)} | {sp.line(now)}")

    def dag_finished(self, event: DagFinished) -> None:
        with self.lock:
            if event.depth == 0:
                self._finish_line()

    def _finish_line(self) -> None:
        if self.live and self.current is not None:
            self.stream.write("\n")
            self.stream.flush()
            self.current = None

    def _print(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()
