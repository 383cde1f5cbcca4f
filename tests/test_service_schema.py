"""A property-based run of schemathesis against the served OpenAPI document, bounded in time: no answer is a
5xx and every answer matches the schema the document gives for it (the pydantic models of skyscan.service)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from servicekit import example_event, running_server, wait_for

FAKE = Path(__file__).with_name("fake_scan.py")
SCHEMATHESIS = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))


@pytest.mark.skipif(not Path(SCHEMATHESIS).exists(), reason="schemathesis is not installed (test extra)")
def test_schemathesis_no_5xx_and_schema_conformance(tmp_path: Path) -> None:
    with running_server(tmp_path / "srv", scan_command=[sys.executable, str(FAKE), "--sleep", "0"]) as server:
        # a done scan, so that generated scan ids (small integers) reach the routes' logic too
        sid = httpx.post(f"{server.url}/api/v1/scans", json={"event": example_event()}, headers=server.headers(),
                         timeout=60).json()["scan_id"]
        wait_for(lambda: httpx.get(f"{server.url}/api/v1/scans/{sid}",
                                   headers=server.headers()).json()["state"] == "done", 60)
        proc = subprocess.run(
            [SCHEMATHESIS, "--no-color", "run", f"{server.url}/api/v1/openapi.json",
             "--checks", "not_a_server_error,response_schema_conformance",
             "--max-examples", "12", "--max-time", "30", "--request-timeout", "20",
             "--generation-deterministic", "--suppress-health-check", "all",
             "--generation-with-security-parameters", "false",
             "--header", f"Authorization: Bearer {server.admin_token}"],
            capture_output=True, text=True, timeout=180, cwd=tmp_path, stdin=subprocess.DEVNULL,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-6000:]
        assert "passed" in out.lower() or "no issues found" in out.lower(), out[-3000:]
        assert "500 Internal Server Error" not in server.stderr
