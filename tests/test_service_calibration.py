"""The scan service calibrates done scans of its `calibration:` streams in its scheduler thread (issue 14 section 2).

A real `skyscan serve` with fake scans (tests/fake_scan.py) and a fake calibrate / merge pair
(tests/fake_calibrate.py), so that it runs in seconds; the real `skyscan calibrate` and `skyscan merge` are run by
the watcher's end-to-end test (tests/test_watch_calibration.py) through the same scheduler code.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import httpx
from servicekit import running_server, wait_for

FAKE = Path(__file__).with_name("fake_scan.py")
FAKE_CAL = Path(__file__).with_name("fake_calibrate.py")


def test_the_service_calibrates_gold_scans_and_shows_it(tmp_path: Path, event_doc: dict[str, Any]) -> None:
    calibration = {"streams": ["gold"], "n": 3, "max_attempts": 1,
                   "command": [sys.executable, str(FAKE_CAL), "calibrate"],
                   "merge_command": [sys.executable, str(FAKE_CAL), "merge"]}
    with running_server(tmp_path / "srv", scan_command=[sys.executable, str(FAKE), "--sleep", "0"],
                        calibration=calibration) as server:
        ids = {}
        for event_id, stream in ((1, "gold"), (2, "gold"), (3, "bronze")):
            doc = copy.deepcopy(event_doc)
            doc.pop("truth", None)
            doc.update(run_id=77, event_id=event_id, stream=stream)
            answer = httpx.post(f"{server.url}/api/v1/scans", json={"event": doc}, headers=server.headers(),
                                timeout=60)
            assert answer.status_code == 201, answer.text
            ids[event_id] = answer.json()["scan_id"]

        def document(event_id: int) -> dict[str, Any]:
            got = httpx.get(f"{server.url}/api/v1/scans/{ids[event_id]}", headers=server.headers(), timeout=30)
            assert got.status_code == 200, got.text
            body: dict[str, Any] = got.json()
            return body

        def settled() -> bool:
            docs = [document(i) for i in ids]
            return all(d["state"] == "done" and (d["calibration"] is None or d["calibration"]["state"] in
                                                 ("done", "failed")) for d in docs)

        wait_for(settled, 90)
        gold, failing, bronze = document(1), document(2), document(3)
        assert gold["state"] == "done" and gold["calibration"] == {"state": "done", "levels": {"50": 2.0, "90": 6.0},
                                                                   "error": None}
        result = httpx.get(f"{server.url}/api/v1/scans/{ids[1]}/result", headers=server.headers(), timeout=30).json()
        assert result["containment"]["method"].startswith("resimulation (calibration.json, N=3")
        assert result["containment"]["90"]["level_2dllh"] == 6.0
        assert failing["state"] == "done" and failing["last_error"] is None  # the scan is not failed
        assert failing["calibration"]["state"] == "failed" and failing["calibration"]["levels"] is None
        assert "exited with code 3: injected calibration failure" in failing["calibration"]["error"]
        assert bronze["calibration"] is None
        listed = httpx.get(f"{server.url}/api/v1/scans?stream=gold", headers=server.headers(), timeout=30).json()
        assert {d["calibration"]["state"] for d in listed["scans"]} == {"done", "failed"}
        health = httpx.get(f"{server.url}/api/v1/health", headers=server.headers(), timeout=30).json()
        assert health["scheduler"]["alive"] is True
        assert "500 Internal Server Error" not in server.stderr
