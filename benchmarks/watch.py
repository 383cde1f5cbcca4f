"""Cost of one `skyscan watch --once` pass on a busy catalog (prints figures; not a test).

Usage: python benchmarks/watch.py [--alerts N] [--running K] [--repeat R]

Builds a catalog of N alerts (all but K done, with summaries) and K scans "running": each has a scan
directory whose run-state names this benchmark's own pid, and a launch lock this process holds, so the
watcher sees K live scans and checks each one's status on every pass. Times the pass in-process and as
a cron call would make it (a new interpreter), then a pass that also takes 10 new events from the
inbox, and the `skyscan catalog` listing. Target: one pass <= 2 s with 1,000 alerts and 10 running.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from skyscan.ops import catalog as catalog
from skyscan.ops.launcher import LOCK_NAME, PID_NAME, launch_dir_of
from skyscan.ops.watchconfig import load_watch_config
from skyscan.ops.watcher import run_watch
from skyscan.reco.event import event_to_dict
from skyscan.reco.geometry import ic86
from skyscan.reco.simulate import TrackSpec, simulate_track

TARGET_SECONDS = 2.0
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def summary(i: int) -> dict[str, object]:
    region = {"level_2dllh": 4.61, "area_deg2": 5.0 + i % 7, "ra_plus_deg": 1.0, "ra_minus_deg": 1.1,
              "dec_plus_deg": 0.9, "dec_minus_deg": 0.8}
    return {"schema": "skyscan-summary/1", "run_id": 1000 + i // 100, "event_id": i, "event_time": "",
            "stream": "gold", "best_fit": {"ra_deg": (i * 7.1) % 360, "dec_deg": (i * 3.3) % 160 - 80,
                                           "zenith_deg": 1.0, "azimuth_deg": 2.0, "llh": 100.0, "nside": 512},
            "containment": {"method": "wilks", "50": region, "90": region},
            "pixels": {"scanned": 3000, "failed": 0, "by_nside": {"8": 768}},
            "software": {"version": "bench", "git_revision": None}, "products": {}}


def fake_running_scan(outdir: Path) -> int:
    """A scan directory that `skyscan status` reports as running, and its held launch lock (the fd)."""
    outdir.mkdir(parents=True)
    (outdir / "skyscan.dag").write_text('JOB prepare prepare.sub\nJOB scan-s0-0000 scan.sub\n'
                                        'VARS scan-s0-0000 npix="64"\n')
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    node = {"state": "running", "attempts": 1, "return_code": None, "started": now, "finished": None,
            "vars": {}, "subdag": None, "error": None}
    (outdir / "skyscan.dag.runstate.json").write_text(json.dumps({
        "schema": "skyscan-runstate/1", "dag": "skyscan.dag", "pid": os.getpid(), "started": now, "updated": now,
        "finished": None, "dag_status": None, "nodes": {"prepare": dict(node, state="done"), "scan-s0-0000": node},
    }))
    launch = launch_dir_of(outdir)
    launch.mkdir()
    (launch / PID_NAME).write_text(f"{os.getpgrp()}\n")
    fd = os.open(launch / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def build(root: Path, n_alerts: int, n_running: int) -> tuple[Path, list[int]]:
    cfg_path = root / "watch.yaml"
    cfg_path.write_text(
        "inbox: inbox\nsettle_seconds: 0\nstall_seconds: 86400\n"
        f"max_running: {n_running}\nscan_command: [\"{{python}}\", \"-c\", \"pass\"]\n"
    )
    (root / "inbox").mkdir()
    cfg = load_watch_config(cfg_path)
    conn = catalog.connect(cfg.database)
    conn.execute("PRAGMA synchronous = OFF")  # setup only: the watcher itself runs with FULL
    fds = []
    for i in range(n_alerts):
        now = catalog.utcnow(T0 + timedelta(minutes=i))
        res = catalog.record_revision(
            conn, run_id=1000 + i // 100, event_id=i, sha256=f"{i:064x}", archive_path=f"/archive/{i}.json",
            source_name=f"e{i}.json", event_time=T0 + timedelta(hours=i), stream="gold", now=now,
        )
        assert res.scan_id is not None
        outdir = cfg.scans / f"scan-{i}"
        catalog.queue_scan(conn, res.scan_id, str(outdir), now)
        catalog.claim_scan(conn, res.scan_id, "local", now)
        if i < n_alerts - n_running:
            catalog.mark_done(conn, res.scan_id, catalog.parse_summary(summary(i)), str(outdir / "summary.json"),
                              notify=False, now=now)
        else:
            fds.append(fake_running_scan(outdir))
            catalog.set_launched(conn, res.scan_id, pid=os.getpgrp(), now=now)
    conn.close()
    return cfg_path, fds


def timed(func: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        out.append(time.perf_counter() - t0)
    return out


def drop_events(inbox: Path, n: int, first_id: int) -> None:
    rng = np.random.default_rng(1)
    spec = TrackSpec(zenith_deg=100.0, azimuth_deg=40.0, energy_gev=1e4, noise_rate_hz=0.0)
    for k in range(n):
        ev, _ = simulate_track(spec, ic86(), rng, run_id=5000, event_id=first_id + k, event_time=T0)
        (inbox / f"new-{k}.json").write_text(json.dumps(event_to_dict(ev)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--running", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="skyscan-watch-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        cfg_path, fds = build(root, args.alerts, args.running)
        print(f"catalog: {args.alerts} alerts, {args.running} running scans (built in "
              f"{time.perf_counter() - t0:.1f} s)")
        cfg = load_watch_config(cfg_path)
        quiet = open(os.devnull, "w")  # the watcher's stderr lines are not the point here
        old_stderr, sys.stderr = sys.stderr, quiet
        try:
            first = timed(lambda: run_watch(cfg, once=True), 1)
            steady = timed(lambda: run_watch(cfg, once=True), args.repeat)
            drop_events(cfg.inbox, 10, first_id=10**6)
            ingest = timed(lambda: run_watch(cfg, once=True), 1)
        finally:
            sys.stderr = old_stderr
            quiet.close()
        cron = timed(lambda: subprocess.run(
            [sys.executable, "-m", "skyscan.cli_watch", "watch", "--config", str(cfg_path), "--once"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), args.repeat)
        listing = timed(lambda: subprocess.run(
            [sys.executable, "-m", "skyscan.cli_watch", "catalog", "--watch-config", str(cfg_path)],
            check=True, stdout=subprocess.DEVNULL), 3)
        probe = "import time; t = time.perf_counter(); import skyscan.graph.status; print(time.perf_counter() - t)"
        status_import = [float(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                                              text=True).stdout) for _ in range(3)]
        conn = catalog.connect(cfg.database)
        states = dict(conn.execute("SELECT state, COUNT(*) FROM scans GROUP BY state").fetchall())
        conn.close()
        for fd in fds:
            os.close(fd)

    print(f"scan states after the passes: {states}")
    print(f"first pass (records {args.running} progress fingerprints): {first[0]:.3f} s")
    print(f"steady pass, in-process:     median {statistics.median(steady):.3f} s, min {min(steady):.3f} s")
    print(f"pass taking 10 new events:   {ingest[0]:.3f} s (archive, validate, record; queued behind the cap)")
    print(f"cron call (new interpreter): median {statistics.median(cron):.3f} s, max {max(cron):.3f} s")
    print(f"  of which importing the status source (skyscan.graph.status): median "
          f"{statistics.median(status_import):.3f} s")
    print(f"skyscan catalog listing:     median {statistics.median(listing):.3f} s")
    worst = max(max(cron), ingest[0], first[0])
    print(f"target <= {TARGET_SECONDS:.1f} s per pass: {'met' if worst <= TARGET_SECONDS else 'MISSED'} "
          f"(worst {worst:.3f} s)")


if __name__ == "__main__":
    main()
