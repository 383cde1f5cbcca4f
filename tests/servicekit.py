"""A real `skyscan serve` for tests: a serve.yaml with a fast scan configuration, an admin token, the server as a
subprocess on 127.0.0.1 with an ephemeral port (``--port 0``), stopped (SIGTERM, then SIGKILL) at the end.

Not a conftest: import it (``from servicekit import running_server``). The fast configuration is the smallest one
the end-to-end tests of ``skyscan run`` use (nside 2 -> 4, no plots): a real scan of the bundled example takes
seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FAST_SCAN_CONFIG: dict[str, Any] = {
    "scan": {"stages": [{"nside": 2, "pixels_per_job": 24}, {"nside": 4, "refine": 2, "pixels_per_job": 4}],
             "resolve": {"min_pixels": 0}},
    "reco": {"max_iterations": 20},
    "merge": {"flat_nside": 4, "plots": False},
}
"""A tiny real scan: 48 pixels at nside 2, 8 more at nside 4 (no refinement past them to resolve the region),
a flat map at nside 4 and no plots."""

FAST_SCAN_CONFIG_WITH_PLOTS: dict[str, Any] = {**FAST_SCAN_CONFIG, "merge": {"flat_nside": 4, "plots": True}}

LISTENING = re.compile(r"skyscan serve: listening on (http://\S+)")
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Server:
    """A running `skyscan serve`."""

    url: str
    admin_token: str
    config_path: Path
    process: subprocess.Popen[str]
    tmp_path: Path
    stderr_lines: list[str] = field(default_factory=list)

    def token(self, name: str, role: str) -> str:
        """Another token, created through the CLI."""
        return create_token(self.config_path, name, role)

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "skyscan.cli", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"skyscan {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def create_token(config_path: Path, name: str, role: str) -> str:
    out = cli("serve", "token", "create", "--config", str(config_path), "--name", name, "--role", role).stdout
    lines = out.splitlines()
    assert len(lines) == 1, out
    return lines[0]


def write_serve_config(tmp_path: Path, scan_config: dict[str, Any] | None = None, **overrides: Any) -> Path:
    """serve.yaml in ``tmp_path`` (database and data directory beside it) with the fast scan configuration."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    base = tmp_path / "scan-config.yaml"
    base.write_text(yaml.safe_dump(scan_config if scan_config is not None else FAST_SCAN_CONFIG), encoding="utf-8")
    doc: dict[str, Any] = {
        "schema": "skyscan-serve/1", "database": "catalog.sqlite", "data_dir": "data",
        "scan_config": str(base), "poll_seconds": 0.2, "retry_delay_seconds": 0, "kill_grace_seconds": 2,
        "jobs": 2,
    }
    doc.update(overrides)
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def start_server(config_path: Path, tmp_path: Path, admin_token: str, timeout: float = 60.0) -> Server:
    """Start `skyscan serve --port 0` and wait for its listening line."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "skyscan.cli", "serve", "--config", str(config_path), "--host", "127.0.0.1",
         "--port", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            m = LISTENING.search(line)
            if m and not found:
                found.append(m.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(timeout) or not found:
        stop_server(proc)
        raise AssertionError(f"skyscan serve did not start: {''.join(lines)}")
    return Server(url=found[0], admin_token=admin_token, config_path=config_path, process=proc, tmp_path=tmp_path,
                  stderr_lines=lines)


def stop_server(proc: subprocess.Popen[str], timeout: float = 15.0) -> int | None:
    """SIGTERM, wait, SIGKILL if needed; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def scan_groups(tmp_path: Path) -> list[int]:
    """Process groups of the service's detached scans still running (for cleanup)."""
    groups = []
    for pgid_file in (tmp_path / "data" / "scans").glob("*.launch/pgid"):
        with contextlib.suppress(ValueError, OSError):
            groups.append(int(pgid_file.read_text().strip()))
    return groups


def kill_scans(tmp_path: Path) -> None:
    for group in scan_groups(tmp_path):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)


@contextlib.contextmanager
def running_server(tmp_path: Path, scan_config: dict[str, Any] | None = None,
                   **config_overrides: Any) -> Iterator[Server]:
    """serve.yaml (fast scan config, ``config_overrides`` over it), an admin token, a running server."""
    config_path = write_serve_config(tmp_path, scan_config, **config_overrides)
    admin = create_token(config_path, "admin", "admin")
    server = start_server(config_path, tmp_path, admin)
    try:
        yield server
    finally:
        stop_server(server.process)
        kill_scans(tmp_path)


def example_event() -> dict[str, Any]:
    """The bundled example event (config/examples/example-event.json) as a document."""
    from skyscan.resources import data_dir

    return json.loads(data_dir("config").joinpath("examples", "example-event.json").read_text())


def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(interval)
