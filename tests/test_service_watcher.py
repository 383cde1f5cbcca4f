"""The watcher as a client of the scan service (``backend: service``): an event dropped into the inbox is posted
to a real `skyscan serve`, followed through its API to done, its products downloaded, published to the outbox
and notified; a watcher killed after posting loses nothing (the service answers the same scan again)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from servicekit import example_event, running_server, wait_for

from skyscan.errors import InputError
from skyscan.ops import catalog
from skyscan.ops.catalog import scans as catalog_scans
from skyscan.ops.watchconfig import load_watch_config
from skyscan.ops.watcher import run_watch

FAKE = Path(__file__).with_name("fake_scan.py")


def watch_config(tmp_path: Path, url: str, token: str, **extra: Any) -> Path:
    (tmp_path / "inbox").mkdir(parents=True, exist_ok=True)
    token_file = tmp_path / "service.token"
    token_file.write_text(token + "\n")
    notify = tmp_path / "notify.sh"
    notify.write_text('#!/bin/sh\necho "$1" >> "$(dirname "$0")/notified.txt"\n')
    notify.chmod(0o755)
    doc = {"inbox": "inbox", "state_dir": "state", "settle_seconds": 0, "retry_delay_seconds": 0,
           "backend": "service", "service_url": url, "service_token_file": str(token_file),
           "notify_command": [str(notify)], **extra}
    path = tmp_path / "watch.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_watcher_hands_revisions_to_the_service(tmp_path: Path) -> None:
    with running_server(tmp_path / "srv", scan_command=[sys.executable, str(FAKE), "--sleep", "0.2"]) as server:
        token = server.token("watcher", "submit")
        cfg_path = watch_config(tmp_path / "w", server.url, token)
        cfg = load_watch_config(cfg_path)
        (cfg.inbox / "e.json").write_text(json.dumps(example_event()))

        calls = {"n": 0}

        def one_pass() -> str:
            calls["n"] += 1
            run_watch(cfg, once=True)
            conn = catalog.connect(cfg.database, create=False)
            try:
                return str(conn.execute("SELECT state FROM scans").fetchone()["state"])
            finally:
                conn.close()

        wait_for(lambda: one_pass() == "done", timeout=60, interval=0.3)
        box = cfg.outbox / "run140123-evt5678901-r1"
        assert (box / "summary.json").is_file() and (box / "circular.txt").is_file()
        remote_id = httpx.get(f"{server.url}/api/v1/scans", headers=server.headers()).json()["scans"][0]["scan_id"]
        result = httpx.get(f"{server.url}/api/v1/scans/{remote_id}/result", headers=server.headers()).json()
        assert json.loads((box / "summary.json").read_text()) == result  # the service's summary, published
        run_watch(cfg, once=True)
        assert "summary.json" in (tmp_path / "w" / "notified.txt").read_text()
        remote = httpx.get(f"{server.url}/api/v1/scans", headers=server.headers()).json()["scans"]
        assert len(remote) == 1 and remote[0]["submitted_by"] == "watcher"
        assert remote[0]["label"] == "run140123-evt5678901-r1"
        conn = catalog.connect(cfg.database, create=False)
        row = conn.execute("SELECT attempts, remote_scan_id, backend FROM scans").fetchone()
        conn.close()
        assert (row["attempts"], row["remote_scan_id"], row["backend"]) == (1, remote[0]["scan_id"], "service")


def test_watcher_killed_after_posting_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_server(tmp_path / "srv", scan_command=[sys.executable, str(FAKE), "--sleep", "0.2"]) as server:
        cfg = load_watch_config(watch_config(tmp_path / "w", server.url, server.token("watcher", "submit")))
        (cfg.inbox / "e.json").write_text(json.dumps(example_event()))

        def crash(*args: Any, **kwargs: Any) -> bool:
            raise KeyboardInterrupt("the watcher dies after posting")

        monkeypatch.setattr(catalog_scans, "set_launched", crash)
        with pytest.raises(KeyboardInterrupt):
            run_watch(cfg, once=True)
        monkeypatch.undo()

        def state() -> str:
            run_watch(cfg, once=True)
            conn = catalog.connect(cfg.database, create=False)
            try:
                return str(conn.execute("SELECT state FROM scans").fetchone()["state"])
            finally:
                conn.close()

        wait_for(lambda: state() == "done", timeout=60, interval=0.3)
        remote = httpx.get(f"{server.url}/api/v1/scans", headers=server.headers()).json()["scans"]
        assert len(remote) == 1  # posted twice, one scan at the service


def test_service_backend_needs_url_and_token_file(tmp_path: Path) -> None:
    path = watch_config(tmp_path, "http://127.0.0.1:1", "x")
    doc = yaml.safe_load(path.read_text())
    doc.pop("service_url")
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(InputError, match="service_url: missing"):
        load_watch_config(path)
    doc["service_url"] = "ftp://x"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(InputError, match="service_url: expected an http"):
        load_watch_config(path)
    doc["service_url"] = "http://127.0.0.1:1"
    doc["service_token_file"] = str(tmp_path / "missing.token")
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(InputError, match=r"service_token_file: .*no such file"):
        load_watch_config(path)


def test_unreachable_service_spends_no_attempt(tmp_path: Path) -> None:
    cfg = load_watch_config(watch_config(tmp_path, "http://127.0.0.1:9", "sks_x"))
    (cfg.inbox / "e.json").write_text(json.dumps(example_event()))
    for _ in range(2):
        run_watch(cfg, once=True)
    conn = catalog.connect(cfg.database, create=False)
    row = conn.execute("SELECT state, attempts, last_error FROM scans").fetchone()
    conn.close()
    assert (row["state"], row["attempts"]) == ("queued", 0) and "cannot reach service" in row["last_error"]
