"""Latency and throughput of `skyscan serve` on loopback (prints figures; not a test).

Usage: python benchmarks/serve.py [--scans 10000] [--clients 50] [--requests 2000] [--submissions 200]

Fills a catalog with N done scans (with summaries) directly through SQL, starts a real `skyscan serve` on
127.0.0.1 (ephemeral port; the scans it starts are tests/fake_scan.py, so submissions measure the service, not
the physics), then with C concurrent clients (one asyncio process, httpx) measures the p50/p99 latency of a
scan document (``GET /api/v1/scans/{id}``), of a filtered list (``GET /api/v1/scans?state=done&stream=gold
&priority_min=5&limit=50``), the reads per second, and the submissions per second of distinct events.
Targets (issue 13): p99 <= 50 ms for a scan document and >= 300 reads/s on 2 cores. The client shares the
cores with the server, so the figures are pessimistic; on a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from servicekit import (  # noqa: E402
    create_token,
    example_event,
    kill_scans,
    start_server,
    stop_server,
    write_serve_config,
)

from skyscan.ops.catalog.db import connect  # noqa: E402


def fill(database: Path, n: int) -> None:
    """N alerts, each with one done scan and its summary row (bulk SQL: minutes of the watcher in a second)."""
    conn = connect(database)
    now = "2026-06-01T00:00:00Z"
    rng = random.Random(1)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO alerts (id, run_id, event_id, first_seen) VALUES (?, ?, ?, ?)",
                     [(i, 100000 + i, i, now) for i in range(1, n + 1)])
    conn.executemany(
        "INSERT INTO revisions (id, alert_id, revision, sha256, archive_path, source_name, received, event_time,"
        " stream, is_latest) VALUES (?, ?, 1, ?, '-', 'bench', ?, ?, ?, 1)",
        [(i, i, f"{i:064x}", now, now, "gold" if i % 3 else "bronze") for i in range(1, n + 1)])
    conn.executemany(
        "INSERT INTO scans (id, revision_id, state, backend, attempts, created, updated, queued, started, finished,"
        " wall_seconds, priority, progress_doc, config_digest, submitted_by) VALUES"
        " (?, ?, 'done', 'local', 1, ?, ?, ?, ?, ?, 60.0, ?, ?, 'bench', 'bench')",
        [(i, i, now, now, now, now, now, rng.choice((0, 5, 100)),
          json.dumps([{"stage": 0, "nside": 8, "done": 768, "total": 768}])) for i in range(1, n + 1)])
    conn.executemany(
        "INSERT INTO summaries (scan_id, summary_path, ra_deg, dec_deg, area_90_deg2, doc) VALUES (?, '-', ?, ?, ?, '{}')",
        [(i, rng.uniform(0, 360), rng.uniform(-90, 90), rng.uniform(1, 50)) for i in range(1, n + 1)])
    conn.execute("COMMIT")
    conn.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time (s) of a process so far (Linux /proc): the server's cost whatever else runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def load(url: str, token: str, paths: list[str], clients: int) -> tuple[list[float], float, int]:
    """GET every path with ``clients`` concurrent workers; (latencies in s, wall time in s, errors)."""
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[str] = asyncio.Queue()
    for p in paths:
        queue.put_nowait(p)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, limits=limits,
                                 timeout=60) as client:
        async def worker() -> None:
            nonlocal errors
            while True:
                try:
                    path = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                r = await client.get(path)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return latencies, time.perf_counter() - t0, errors


async def submissions(url: str, token: str, n: int, clients: int) -> tuple[float, int]:
    base = example_event()
    docs = []
    for i in range(n):
        doc = copy.deepcopy(base)
        doc["run_id"], doc["event_id"] = 900000 + i, i
        docs.append(doc)
    sem = asyncio.Semaphore(clients)
    created = 0
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
        async def one(doc: dict[str, Any]) -> None:
            nonlocal created
            async with sem:
                r = await client.post("/api/v1/scans", json={"event": doc})
                created += r.status_code == 201

        t0 = time.perf_counter()
        await asyncio.gather(*(one(d) for d in docs))
        return time.perf_counter() - t0, created


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scans", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--submissions", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="skyscan-bench-serve-") as tmp:
        root = Path(tmp)
        config_path = write_serve_config(
            root, max_running=2, scan_command=[sys.executable, str(REPO / "tests" / "fake_scan.py"), "--sleep", "0"])
        t0 = time.perf_counter()
        fill(root / "catalog.sqlite", args.scans)
        print(f"catalog: {args.scans} done scans written in {time.perf_counter() - t0:.1f} s")
        token = create_token(config_path, "bench", "admin")
        server = start_server(config_path, root, token)
        try:
            rng = random.Random(2)
            doc_paths = [f"/api/v1/scans/{rng.randint(1, args.scans)}" for _ in range(args.requests)]
            list_paths = ["/api/v1/scans?state=done&stream=gold&priority_min=5&limit=50"] * (args.requests // 4)
            asyncio.run(load(server.url, token, doc_paths[:100], args.clients))  # warm-up
            for name, paths in (("scan document", doc_paths), ("filtered list (50 scans)", list_paths)):
                cpu0 = cpu_seconds(server.process.pid)
                lat, wall, errors = asyncio.run(load(server.url, token, paths, args.clients))
                per = (cpu_seconds(server.process.pid) - cpu0) / len(paths)
                print(f"{name}: {len(paths)} GETs, {args.clients} clients: p50 {1000 * statistics.median(lat):.1f} ms,"
                      f" p99 {1000 * pct(lat, 0.99):.1f} ms, {len(paths) / wall:.0f} reads/s, {errors} errors;"
                      f" server CPU {1000 * per:.2f} ms per request (= {1 / per if per else float('inf'):.0f}"
                      " reads/s per core when the server has it to itself)")
            wall, created = asyncio.run(submissions(server.url, token, args.submissions, args.clients))
            print(f"submissions: {created}/{args.submissions} created in {wall:.1f} s: "
                  f"{args.submissions / wall:.0f} submissions/s ({args.clients} clients)")
            print("targets: scan document p99 <= 50 ms, >= 300 reads/s (2 cores, client on the same machine)")
        finally:
            stop_server(server.process)
            kill_scans(root)


if __name__ == "__main__":
    main()
