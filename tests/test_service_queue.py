"""The service's queue under load, against a real `skyscan serve`: 50 concurrent submissions of distinct events
give 50 scans (none lost, none doubled), the queue drains with ``max_running`` respected, and a priority-100
scan posted last starts before every lower-priority scan still queued. Scans are tests/fake_scan.py (the
`skyscan run` interface and files in a fraction of a second), so this measures the scheduler, not the physics.
"""

from __future__ import annotations

import concurrent.futures
import copy
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from servicekit import example_event, running_server, wait_for

API = "/api/v1"
FAKE = Path(__file__).with_name("fake_scan.py")
MAX_RUNNING = 3


def distinct_event(i: int) -> dict[str, Any]:
    doc = copy.deepcopy(example_event())
    doc["run_id"], doc["event_id"] = 7000 + i, 100 + i
    return doc


def test_fifty_concurrent_submissions_drain_with_priority(tmp_path: Path) -> None:
    with running_server(tmp_path, max_running=MAX_RUNNING,
                        scan_command=[sys.executable, str(FAKE), "--sleep", "0.3"]) as server:
        headers = server.headers()
        peak = [0]
        stop = threading.Event()

        def watch_running() -> None:  # the health route's running count, sampled while the queue drains
            with httpx.Client(timeout=10) as client:
                while not stop.is_set():
                    running = client.get(f"{server.url}{API}/health").json()["scheduler"]["running"]
                    peak[0] = max(peak[0], running)
                    time.sleep(0.05)

        sampler = threading.Thread(target=watch_running, daemon=True)
        sampler.start()

        def submit(i: int) -> httpx.Response:
            with httpx.Client(timeout=60) as client:
                return client.post(f"{server.url}{API}/scans", json={"event": distinct_event(i)}, headers=headers)

        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(submit, range(50)))
        assert [a.status_code for a in answers] == [201] * 50, [a.text for a in answers if a.status_code != 201]
        ids = {a.json()["scan_id"] for a in answers}
        assert len(ids) == 50
        started_before = len(re.findall(r"started scan (\d+)", server.stderr))
        queued = httpx.get(f"{server.url}{API}/scans", params={"state": "queued", "limit": 100},
                           headers=headers).json()["scans"]
        assert len(queued) > MAX_RUNNING  # the realtime scan below really has a queue to jump
        urgent = httpx.post(f"{server.url}{API}/scans", json={"event": distinct_event(99), "priority": 100},
                            headers=headers, timeout=60).json()
        wait_for(lambda: len(httpx.get(f"{server.url}{API}/scans", params={"state": "done", "limit": 100},
                                       headers=headers).json()["scans"]) == 51, timeout=150, interval=0.5)
        stop.set()
        sampler.join(5)
        order = [int(m) for m in re.findall(r"started scan (\d+)", server.stderr)]
        assert sorted(order) == sorted(ids | {urgent["scan_id"]})  # every scan started exactly once
        # the realtime scan starts as soon as a slot frees: at most MAX_RUNNING starts after it was posted
        assert order.index(urgent["scan_id"]) <= started_before + MAX_RUNNING
        still_queued = {s["scan_id"] for s in queued}
        later = [sid for sid in order[order.index(urgent["scan_id"]) + 1:]]
        assert len(still_queued & set(later)) >= len(still_queued) - MAX_RUNNING
        assert 1 <= peak[0] <= MAX_RUNNING
        # FIFO within equal priority: the priority-0 scans started in the order they were created
        zero = [sid for sid in order if sid != urgent["scan_id"]]
        assert zero == sorted(zero)
        docs = httpx.get(f"{server.url}{API}/scans", params={"limit": 100}, headers=headers).json()["scans"]
        assert all(d["attempts"] == 1 and d["state"] == "done" for d in docs)
