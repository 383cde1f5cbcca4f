"""serve.yaml (skyscan-serve/1): the minimal file, defaults, one-line refusals, every key documented; the CLI's
exit codes for a bad configuration and for a second service on the same data directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from servicekit import running_server

from skyscan.errors import InputError
from skyscan.service.config import KNOWN_KEYS, load_serve_config

DOCS = Path(__file__).resolve().parent.parent / "docs" / "service.md"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "serve.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_minimal_file_and_defaults(tmp_path: Path) -> None:
    cfg = load_serve_config(write(tmp_path, "schema: skyscan-serve/1\ndatabase: db.sqlite\ndata_dir: data\n"))
    assert cfg.database == tmp_path / "db.sqlite" and cfg.data_dir == tmp_path / "data"
    assert (cfg.host, cfg.port, cfg.backend, cfg.max_running, cfg.anonymous_read) == ("127.0.0.1", 8765, "local", 2,
                                                                                      False)
    assert cfg.scans == tmp_path / "data" / "scans"
    assert cfg.scheduler_settings().scans == cfg.scans and cfg.scheduler_settings().outbox is None


@pytest.mark.parametrize(("body", "message"), [
    ("database: d\ndata_dir: x\n", "schema: expected 'skyscan-serve/1'"),
    ("schema: skyscan-serve/1\ndata_dir: x\n", "database: expected a path (missing)"),
    ("schema: skyscan-serve/1\ndatabase: d\ndata_dir: x\nportt: 1\n", "portt: unknown setting"),
    ("schema: skyscan-serve/1\ndatabase: d\ndata_dir: x\nport: 70000\n", "port: expected an integer from 0 to 65535"),
    ("schema: skyscan-serve/1\ndatabase: d\ndata_dir: x\nmax_running: true\n", "max_running: expected an integer"),
    ("schema: skyscan-serve/1\ndatabase: d\ndata_dir: x\nbackend: slurm\n", "backend: expected one of local, condor"),
    ("schema: skyscan-serve/1\ndatabase: d\ndata_dir: x\nanonymous_read: 'yes'\n", "anonymous_read: expected true"),
    ("schema: skyscan-serve/1\ndatabase: d\ndata_dir: x\nhost: 'a b'\n", "host: not an IP address or host name"),
    ("schema: skyscan-serve/1\ndatabase: d\ndata_dir: x\nscan_config: nope.yaml\n", "scan_config:"),
    ("schema: skyscan-serve/1\ndatabase: d\ndata_dir: x\npoll_seconds: .nan\n", "poll_seconds: expected a number"),
    ("[1, 2]\n", "expected a mapping of settings"),
])
def test_bad_files_are_refused_with_one_line(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(InputError) as err:
        load_serve_config(path)
    text = str(err.value)
    assert message in text and text.startswith(str(path)) and "\n" not in text


def test_every_key_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for key in KNOWN_KEYS:
        assert f"| `{key}` |" in text, f"{key} is not in the configuration reference of docs/service.md"


def test_cli_exit_codes(tmp_path: Path) -> None:
    bad = write(tmp_path, "schema: skyscan-serve/1\ndatabase: d\n")
    proc = subprocess.run([sys.executable, "-m", "skyscan.cli", "serve", "--config", str(bad)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "data_dir" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "skyscan.cli", "serve", "token", "create", "--config", str(bad),
                           "--name", "x", "--role", "read"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "data_dir" in proc.stderr
    with running_server(tmp_path / "one") as server:
        second = subprocess.run([sys.executable, "-m", "skyscan.cli", "serve", "--config", str(server.config_path),
                                 "--port", "0"], capture_output=True, text=True, timeout=60)
        assert second.returncode != 0 and "another skyscan serve" in second.stderr
        dup = subprocess.run([sys.executable, "-m", "skyscan.cli", "serve", "token", "create", "--config",
                              str(server.config_path), "--name", "admin", "--role", "read"],
                             capture_output=True, text=True, timeout=60)
        assert dup.returncode == 2 and dup.stdout == "" and "exists" in dup.stderr


def test_sigint_stops_the_service_within_seconds(tmp_path: Path) -> None:
    import signal
    import time

    with running_server(tmp_path) as server:
        t0 = time.monotonic()
        server.process.send_signal(signal.SIGINT)
        server.process.wait(15)
        assert time.monotonic() - t0 < 10 and server.process.returncode == 0, server.stderr
        assert "Traceback" not in server.stderr
