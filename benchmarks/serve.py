"""Latency and throughput of `skyscan serve` on loopback (prints figures; not a test).

Usage: python benchmarks/serve.py [--scans 10000] [--clients 50] [--requests 5000] [--lists 1000]
                                  [--submissions 200] [--client raw|httpx]

What it sets up: a catalog with N done scans (each with its alert, revision and summary row, written directly
through SQL), then a real `skyscan serve` on 127.0.0.1 (ephemeral port, its own process, the scheduler thread
running; the scans it starts are tests/fake_scan.py, so submissions measure the service, not the physics) and an
admin token.

How it measures: the load comes from one separate process (this file with ``--load-generator``) holding C
keep-alive HTTP/1.1 connections, all opened before timing starts. Each connection is a closed-loop client: it
sends its next request only once it has read the whole previous answer, so at most C requests are in flight.
A latency is the time from just before the request is written to the socket until the last byte of the answer
(its Content-Length) is read, in ms. The phases, in order:

- scan document: ``--requests`` GETs of ``/api/v1/scans/{id}`` with ids drawn uniformly from 1..N (fixed seed),
  after a warm-up of 200 such GETs that are not counted;
- filtered list: ``--lists`` GETs of ``/api/v1/scans?state=done&stream=gold&priority_min=5&limit=50`` (50 full
  scan documents per answer);
- submissions: ``--submissions`` POSTs of distinct events (the bundled example with new run/event ids) with C
  connections; submissions/s = created scans / wall time. The scheduler starts fake scans meanwhile;
- scan document while scans run: ``--requests`` GETs as in the first phase, right after the submissions, while
  the scheduler thread (in the server's process) drains that queue two scans at a time: launching, tracking and
  finishing them on its own connection to the same database.

For each phase it prints p50 and p99 (nearest rank: the smallest latency that at least 50 % / 99 % of them do
not exceed), the maximum, requests per second (requests / wall time of the phase), errors (any status other
than 200, or 201 for submissions), the server's CPU per request (user + system time of the server process
from /proc over the phase, divided by the requests: what a request costs whatever else runs), the load
generator's CPU per request, and the load: the 1-minute load average before the phase and the share of the
machine's CPU taken by every other process during it (from /proc/stat, minus server and load generator).

The load generator is a lean asyncio client (raw HTTP/1.1, about 0.05 ms of CPU per request) because client and
server share the cores: with httpx (``--client httpx``, the same closed loop through one
``httpx.AsyncClient``) the client spends about 3 ms of CPU per request, ten times the server, and its
connection pool queues requests, so the figures then describe httpx rather than the service.
Targets (issue 13): p99 <= 50 ms for a scan document and >= 300 reads/s on 2 cores. On a shared machine the
figures are noisy: run it at least twice and read them with the load printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LIST_PATH = "/api/v1/scans?state=done&stream=gold&priority_min=5&limit=50"
TARGET_P99_MS = 50.0
TARGET_READS_PER_S = 300.0


# ---------------------------------------------------------------------------------------------------------------
# Measurements from /proc (Linux)
# ---------------------------------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU time (s) of a process so far: the server's cost whatever else runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time (s, summed over cores) the whole machine has spent not idle since boot (/proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value that at least a fraction ``q`` of ``values`` do not exceed."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# ---------------------------------------------------------------------------------------------------------------
# The load generator (its own process)
# ---------------------------------------------------------------------------------------------------------------
def request_bytes(host: str, token: str, method: str, path: str, body: bytes | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode("ascii") + b"\r\n" + (body or b"")


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one whole HTTP/1.1 answer (the service always sends Content-Length); its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise RuntimeError(f"an answer without Content-Length: {head[:200]!r}")
    await reader.readexactly(length)
    return status


async def raw_phase(host: str, port: int, requests: list[bytes], clients: int,
                    ok: int) -> tuple[list[float], float, int]:
    """Closed loop over ``clients`` keep-alive connections; (latencies s, wall s, errors)."""
    conns = [await asyncio.open_connection(host, port) for _ in range(clients)]
    latencies: list[float] = []
    errors = 0
    pending = list(reversed(requests))

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal errors
        while pending:
            req = pending.pop()
            t0 = time.perf_counter()
            writer.write(req)
            status = await read_response(reader)
            latencies.append(time.perf_counter() - t0)
            errors += status != ok

    t0 = time.perf_counter()
    await asyncio.gather(*(client(r, w) for r, w in conns))
    wall = time.perf_counter() - t0
    for _, w in conns:
        w.close()
    return latencies, wall, errors


async def httpx_phase(url: str, token: str, requests: list[tuple[str, str, bytes | None]], clients: int,
                      ok: int) -> tuple[list[float], float, int]:
    """The same closed loop through one httpx.AsyncClient (for comparison with the earlier figures)."""
    import httpx

    latencies: list[float] = []
    errors = 0
    pending = list(reversed(requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, limits=limits,
                                 timeout=120) as http:
        async def client() -> None:
            nonlocal errors
            while pending:
                method, path, body = pending.pop()
                t0 = time.perf_counter()
                r = await http.request(method, path, content=body,
                                       headers={"Content-Type": "application/json"} if body else None)
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != ok

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return latencies, time.perf_counter() - t0, errors


def load_generator() -> None:
    """Run the phases of the JSON spec on stdin; one JSON line of figures per phase on stdout."""
    spec = json.loads(sys.stdin.read())
    host, port = spec["host"], int(spec["port"])
    url = f"http://{host}:{port}"
    for phase in spec["phases"]:
        reqs = [(m, p, b.encode() if b is not None else None) for m, p, b in phase["requests"]]
        ok = int(phase["ok"])
        load1 = os.getloadavg()[0]
        server0, busy0, own0 = cpu_seconds(spec["server_pid"]), machine_busy_seconds(), own_cpu_seconds()
        if spec["client"] == "httpx":
            lat, wall, errors = asyncio.run(httpx_phase(url, spec["token"], reqs, spec["clients"], ok))
        else:
            raw = [request_bytes(host, spec["token"], m, p, b) for m, p, b in reqs]
            lat, wall, errors = asyncio.run(raw_phase(host, port, raw, spec["clients"], ok))
        server = cpu_seconds(spec["server_pid"]) - server0
        own = own_cpu_seconds() - own0
        busy = machine_busy_seconds() - busy0
        print(json.dumps({"name": phase["name"], "latencies": lat, "wall": wall, "errors": errors,
                          "server_cpu": server, "client_cpu": own, "other_cpu": max(0.0, busy - server - own),
                          "load1": load1}), flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Set-up and report
# ---------------------------------------------------------------------------------------------------------------
def fill(database: Path, n: int) -> None:
    """N alerts, each with one done scan and its summary row (bulk SQL: minutes of the watcher in a second)."""
    from skyscan.ops.catalog.db import connect

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


def submission_bodies(n: int) -> list[str]:
    """N distinct events: the bundled example with new run and event ids."""
    sys.path.insert(0, str(REPO / "tests"))
    from servicekit import example_event

    base = example_event()
    bodies = []
    for i in range(n):
        doc = copy.deepcopy(base)
        doc["run_id"], doc["event_id"] = 900000 + i, i
        bodies.append(json.dumps({"event": doc}))
    return bodies


def report(result: dict[str, Any], *, clients: int, cores: int) -> tuple[float, float]:
    lat = result["latencies"]
    n = len(lat)
    rate = n / result["wall"]
    p99 = 1000 * pct(lat, 0.99)
    other = 100 * result["other_cpu"] / (cores * result["wall"])
    print(f"{result['name']}: {n} requests, {clients} clients: p50 {1000 * pct(lat, 0.5):.1f} ms,"
          f" p99 {p99:.1f} ms, max {1000 * max(lat):.1f} ms, {rate:.0f}/s, {result['errors']} errors;"
          f" CPU per request: server {1000 * result['server_cpu'] / n:.2f} ms,"
          f" load generator {1000 * result['client_cpu'] / n:.2f} ms;"
          f" load average {result['load1']:.2f}, other processes {other:.0f}% of the {cores} cores")
    return p99, rate


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--scans", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=5000, help="scan-document GETs")
    ap.add_argument("--lists", type=int, default=1000, help="filtered-list GETs")
    ap.add_argument("--submissions", type=int, default=200)
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw")
    ap.add_argument("--load-generator", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load_generator:
        load_generator()
        return

    sys.path.insert(0, str(REPO / "tests"))
    from servicekit import create_token, kill_scans, start_server, stop_server, write_serve_config

    from skyscan.ops.catalog.db import connect

    cores = os.cpu_count() or 1
    print(f"machine: {cores} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the start;"
          f" client: {args.client}")
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
            host, port = server.url.removeprefix("http://").rsplit(":", 1)
            rng = random.Random(2)

            def docs(n: int) -> list[tuple[str, str, None]]:
                return [("GET", f"/api/v1/scans/{rng.randint(1, args.scans)}", None) for _ in range(n)]

            phases = [
                {"name": "warm-up", "ok": 200, "requests": docs(200)},
                {"name": "scan document", "ok": 200, "requests": docs(args.requests)},
                {"name": "filtered list (50 scans)", "ok": 200, "requests": [("GET", LIST_PATH, None)] * args.lists},
                {"name": "submissions", "ok": 201,
                 "requests": [("POST", "/api/v1/scans", b) for b in submission_bodies(args.submissions)]},
                {"name": "scan document while scans run", "ok": 200, "requests": docs(args.requests)},
            ]
            spec = {"host": host, "port": int(port), "token": token, "server_pid": server.process.pid,
                    "clients": args.clients, "client": args.client, "phases": phases}
            proc = subprocess.run([sys.executable, __file__, "--load-generator"], input=json.dumps(spec),
                                  capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0:
                raise SystemExit(f"the load generator failed: {proc.stderr.strip()}")
            results = {r["name"]: r for r in map(json.loads, proc.stdout.splitlines())}
            doc_p99, doc_rate = report(results["scan document"], clients=args.clients, cores=cores)
            report(results["filtered list (50 scans)"], clients=args.clients, cores=cores)
            sub = results["submissions"]
            created = len(sub["latencies"]) - sub["errors"]
            print(f"submissions: {created}/{args.submissions} created in {sub['wall']:.1f} s:"
                  f" {created / sub['wall']:.0f} submissions/s ({args.clients} clients); p50"
                  f" {1000 * pct(sub['latencies'], 0.5):.0f} ms, p99 {1000 * pct(sub['latencies'], 0.99):.0f} ms;"
                  f" server CPU {1000 * sub['server_cpu'] / len(sub['latencies']):.2f} ms per submission;"
                  f" load average {sub['load1']:.2f}")
            busy = results["scan document while scans run"]
            report(busy, clients=args.clients, cores=cores)
            conn = connect(root / "catalog.sqlite")
            counts = dict(conn.execute("SELECT state, COUNT(*) FROM scans WHERE id > ? GROUP BY state",
                                       (args.scans,)).fetchall())
            conn.close()
            print(f"  (the submitted scans by then: {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")
            met = doc_p99 <= TARGET_P99_MS and doc_rate >= TARGET_READS_PER_S
            print(f"targets: scan document p99 <= {TARGET_P99_MS:.0f} ms and >= {TARGET_READS_PER_S:.0f} reads/s"
                  f" ({cores} cores shared by server, load generator and everything else): {'met' if met else 'MISSED'}")
            print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        finally:
            stop_server(server.process)
            kill_scans(root)


if __name__ == "__main__":
    main()
