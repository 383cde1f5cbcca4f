"""A stand-in for `skyscan run EVENT -o OUTDIR` in the watcher's tests: the same interface and the same files.

It writes what the status source reads (skyscan.dag, skyscan.dag.runstate.json, end_state.json) and what
the watcher publishes (summary.json, circular.txt, notice.json, plots/, skymaps), after a short sleep.
Behaviour flags come first (the watcher appends ``EVENT -o OUTDIR [--config F] [--jobs N]``):

  --sleep S           seconds the "scan" takes (default 0.2)
  --fail-times N      the first N attempts in this OUTDIR fail (exit 1, end_state failed)
  --hang              write a running state, then sleep for ever (a stalled scan)
  --kill-pid-file F   on start, SIGKILL the pid written in F and delete F (a watcher killed right after
                      it started this scan)

Every attempt appends a line to OUTDIR/fake-attempts.txt, so tests can see that a retry resumed in
the same directory. The best fit is derived from the event ids, so different alerts differ.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    if isinstance(data, str):
        tmp.write_text(data, encoding="utf-8")
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)


def _json(path: Path, doc: Any) -> None:
    _write(path, json.dumps(doc, indent=1) + "\n")


DAG = 'JOB prepare prepare.sub\nJOB scan-s0-0000 scan.sub\nVARS scan-s0-0000 npix="768"\nPARENT prepare CHILD scan-s0-0000\n'


def _runstate(outdir: Path, started: str, scan_state: str, finished: str | None, dag_status: int | None) -> None:
    def node(state: str) -> dict[str, Any]:
        return {"state": state, "attempts": 1, "return_code": None, "started": started, "finished": finished,
                "vars": {}, "subdag": None, "error": "injected failure" if state == "failed" else None}

    _json(outdir / "skyscan.dag.runstate.json", {
        "schema": "skyscan-runstate/1", "dag": "skyscan.dag", "pid": os.getpid(), "started": started,
        "updated": _now(), "finished": finished, "dag_status": dag_status,
        "nodes": {"prepare": node("done"), "scan-s0-0000": node(scan_state)},
    })


def _end_state(outdir: Path, state: str) -> None:
    _json(outdir / "end_state.json", {"schema": "skyscan-end-state/1", "state": state,
                                       "dag_status": 0 if state == "done" else 1,
                                       "failed_count": 0 if state == "done" else 1, "time": _now()})


def summary_for(event: dict[str, Any]) -> dict[str, Any]:
    run_id, event_id = int(event["run_id"]), int(event["event_id"])
    ra = (event_id * 37.3 + run_id) % 360.0
    dec = (event_id * 11.7) % 160.0 - 80.0

    def region(scale: float, level: str) -> dict[str, float]:
        return {"level_2dllh": 1.39 if level == "50" else 4.61, "area_deg2": round(scale * scale * 3.1, 4),
                "ra_plus_deg": scale, "ra_minus_deg": round(scale * 0.8, 4), "dec_plus_deg": round(scale * 0.6, 4),
                "dec_minus_deg": round(scale * 0.7, 4)}

    return {
        "schema": "skyscan-summary/1", "run_id": run_id, "event_id": event_id, "event_time": event["time"],
        "stream": event.get("stream"),
        "best_fit": {"ra_deg": ra, "dec_deg": dec, "zenith_deg": 90.0 + dec, "azimuth_deg": ra, "llh": 123.5,
                     "nside": 64},
        "containment": {"method": "wilks", "50": region(0.5 + event_id % 3, "50"),
                        "90": region(1.5 + event_id % 3, "90")},
        "pixels": {"scanned": 3072, "failed": 1, "by_nside": {"8": 768, "64": 2304}},
        "software": {"version": "fake", "git_revision": None},
        "products": {"circular": "circular.txt", "notice": "notice.json", "skymap": "skymap.multiorder.fits"},
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sleep", type=float, default=0.2)
    parser.add_argument("--fail-times", type=int, default=0)
    parser.add_argument("--hang", action="store_true")
    parser.add_argument("--kill-pid-file", default=None)
    parser.add_argument("event")
    parser.add_argument("-o", "--outdir", required=True)
    parser.add_argument("--config", default=None)
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args()

    if args.kill_pid_file:
        pid_file = Path(args.kill_pid_file)
        deadline = time.monotonic() + 20
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        if pid_file.exists():
            pid = int(pid_file.read_text().strip())
            pid_file.unlink()
            os.kill(pid, signal.SIGKILL)

    event = json.loads(Path(args.event).read_text(encoding="utf-8"))
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    with (outdir / "fake-attempts.txt").open("a") as fh:
        fh.write(f"{os.getpid()} config={args.config} attempt={os.environ.get('SKYSCAN_WATCH_ATTEMPT')}\n")
    attempts = len((outdir / "fake-attempts.txt").read_text().splitlines())
    started = _now()
    if not (outdir / "skyscan.dag").exists():
        _write(outdir / "skyscan.dag", DAG)
    (outdir / "end_state.json").unlink(missing_ok=True)  # a resumed attempt starts over
    _runstate(outdir, started, "running", None, None)
    print(f"fake scan of run {event['run_id']} event {event['event_id']} attempt {attempts}", flush=True)

    if args.hang:
        while True:
            time.sleep(60)
    time.sleep(args.sleep)

    if attempts <= args.fail_times:
        _runstate(outdir, started, "failed", _now(), 1)
        _end_state(outdir, "failed")
        print(f"skyscan: error: injected failure (attempt {attempts})", file=sys.stderr, flush=True)
        return 1

    summary = summary_for(event)
    _write(outdir / "plots" / "skymap.png", b"\x89PNG\r\n\x1a\n fake plot " + str(summary["best_fit"]).encode())
    _write(outdir / "plots" / "zoom.png", b"\x89PNG\r\n\x1a\n fake zoom")
    _write(outdir / "skymap.multiorder.fits", f"SIMPLE fake skymap {event['run_id']}:{event['event_id']}".encode())
    _write(outdir / "skymap.h5", f"fake h5 {event['run_id']}:{event['event_id']}".encode())
    _write(outdir / "circular.txt", f"IceCube-like alert run {event['run_id']} event {event['event_id']}: "
                                    f"RA {summary['best_fit']['ra_deg']:.2f} Dec {summary['best_fit']['dec_deg']:.2f}\n")
    _json(outdir / "notice.json", {"run_id": event["run_id"], "event_id": event["event_id"]})
    _json(outdir / "summary.json", summary)
    _runstate(outdir, started, "done", _now(), 0)
    _end_state(outdir, "done")
    print("fake scan done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
