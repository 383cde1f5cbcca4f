"""The Python client (skyscan.client) and `skyscan remote`, against a real `skyscan serve` on 127.0.0.1.

One server per module (an ephemeral port, its own database and data directory) runs the bundled example
event with a fast configuration; the tests follow it to done, fetch its result and products, and check that
every refusal (bad token, unknown scan, unreachable service, bad input) is one line and exit code 2.
A few tests use an in-process mock transport for what a well-behaved server never sends (unsafe names).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from servicekit import FAST_SCAN_CONFIG_WITH_PLOTS, running_server

from skyscan.cli import cli
from skyscan.client import ServiceClient, WaitTimeout, safe_relative_path
from skyscan.errors import InputError
from skyscan.resources import data_text

# A partial configuration sent with each submission (over the server's fast one, servicekit.FAST_SCAN_CONFIG_WITH_PLOTS):
# it exercises the `config` field of a submission without making the scan slower.
FAST_SCAN_CONFIG: dict[str, Any] = {"reco": {"max_iterations": 20}}
SCAN_TIMEOUT_S = 1500.0  # generous: a shared machine under load ran the tiny scan in ~10 minutes


def example_event() -> dict[str, Any]:
    doc = json.loads(data_text("config", "examples/example-event.json"))
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_server(tmp_path_factory.mktemp("serve"), scan_config=FAST_SCAN_CONFIG_WITH_PLOTS) as srv:
        yield srv


@pytest.fixture(scope="module")
def done_scan(server: Any) -> dict[str, Any]:
    """The example event scanned to done through the client (shared by the tests that read a finished scan)."""
    with ServiceClient(server.url, server.admin_token) as client:
        doc = client.submit(example_event(), config=FAST_SCAN_CONFIG, priority=5, label="client-test")
        assert doc["state"] in ("received", "queued", "running", "done"), doc
        return client.wait(doc["scan_id"], timeout=SCAN_TIMEOUT_S)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    base = {"SKYSCAN_URL": "", "SKYSCAN_TOKEN": ""}
    return CliRunner().invoke(cli, list(args), env={**base, **(env or {})}, catch_exceptions=True)


# --- the client against the server --------------------------------------------------------------------------------
def test_submit_wait_result_download(server: Any, done_scan: dict[str, Any], tmp_path: Path) -> None:
    assert done_scan["state"] == "done", done_scan
    with ServiceClient(server.url, server.admin_token) as client:
        assert client.get(done_scan["scan_id"])["scan_id"] == done_scan["scan_id"]
        summary = client.result(done_scan["scan_id"])
        assert summary["schema"] == "skyscan-summary/1"
        assert summary["run_id"] == example_event()["run_id"] and summary["event_id"] == example_event()["event_id"]
        best = done_scan["best_fit"]
        assert best["ra_deg"] == pytest.approx(summary["best_fit"]["ra_deg"])
        assert best["dec_deg"] == pytest.approx(summary["best_fit"]["dec_deg"])

        listed = {p["name"]: p for p in client.products(done_scan["scan_id"])}
        paths = client.download(done_scan["scan_id"], tmp_path / "out")
    assert len(paths) == len(listed) and len(paths) >= 5
    by_name = {str(p.relative_to(tmp_path / "out")): p for p in paths}
    assert set(by_name) == set(listed)
    for name, path in by_name.items():
        assert path.stat().st_size == listed[name]["bytes"], name
    # the downloaded summary is the result document; no temporary file is left behind
    summaries = [p for p in paths if p.name == "summary.json"]
    assert summaries and json.loads(summaries[0].read_text()) == summary
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".part") or p.name.startswith(".")]
    pngs = [p for p in paths if p.suffix == ".png"]
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_same_revision_again_gives_the_same_scan(server: Any, done_scan: dict[str, Any]) -> None:
    with ServiceClient(server.url, server.admin_token) as client:
        again = client.submit(example_event(), config=FAST_SCAN_CONFIG, priority=5)
    assert again["scan_id"] == done_scan["scan_id"] and again["state"] == "done"


def test_wait_timeout_is_one_line(server: Any) -> None:
    event = example_event() | {"event_id": 990001}
    with ServiceClient(server.url, server.admin_token) as client:
        doc = client.submit(event, config=FAST_SCAN_CONFIG)
        try:
            with pytest.raises(WaitTimeout, match=r"^scan .* still (received|queued|running) after 0 s$"):
                client.wait(doc["scan_id"], timeout=0)
        finally:
            cancelled = client.abort(doc["scan_id"])
    assert cancelled["state"] in ("cancelled", "done", "failed")


def test_abort_a_scan(server: Any) -> None:
    event = example_event() | {"event_id": 990002}
    with ServiceClient(server.url, server.admin_token) as client:
        doc = client.submit(event, config=FAST_SCAN_CONFIG)
        first = client.abort(doc["scan_id"])
        second = client.abort(doc["scan_id"])  # idempotent
        final = client.wait(doc["scan_id"], timeout=60)
    assert first["state"] == second["state"] == final["state"] == "cancelled"


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_client_refusals_are_input_errors(server: Any, token: str | None) -> None:
    with ServiceClient(server.url, token) as client:
        with pytest.raises(InputError, match="service answered 401") as err:
            client.submit(example_event(), config=FAST_SCAN_CONFIG)
    assert "\n" not in str(err.value)


def test_client_unknown_scan_and_bad_event(server: Any) -> None:
    with ServiceClient(server.url, server.admin_token) as client:
        with pytest.raises(InputError, match="service answered 404"):
            client.get(999999)
        with pytest.raises(InputError, match="service answered 422") as err:
            client.submit({"schema": "skyscan-event/1", "run_id": -1})
    assert "\n" not in str(err.value)


def test_client_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with ServiceClient(url, "x") as client:
        with pytest.raises(InputError, match=f"^cannot reach service at {url}: "):
            client.get("1")


# --- `skyscan remote` -------------------------------------------------------------------------------------------
def test_remote_submit_wait_status_fetch(server: Any, done_scan: dict[str, Any], tmp_path: Path) -> None:
    # the revision and configuration of `done_scan` again: the service answers with that scan (no second scan
    # runs, which keeps the module at one real scan), so --wait returns at once and -o downloads its products
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(example_event()), encoding="utf-8")
    config_path = tmp_path / "fast.yaml"
    config_path.write_text(yaml.safe_dump(FAST_SCAN_CONFIG), encoding="utf-8")
    token_file = tmp_path / "token"
    token_file.write_text(server.admin_token + "\n", encoding="utf-8")

    out = tmp_path / "products"
    result = invoke("remote", "submit", str(event_path), "--url", server.url, "--token-file", str(token_file),
                    "--config", str(config_path), "--priority", "5", "--wait", "--timeout", str(SCAN_TIMEOUT_S),
                    "-o", str(out))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    scan_id = lines[0]
    assert scan_id == str(done_scan["scan_id"]) and lines[1] == f"{scan_id} done"
    written = [Path(line) for line in lines[2:]]
    assert written and all(p.is_file() and out in p.parents for p in written)
    assert any(p.name == "summary.json" for p in written)

    env = {"SKYSCAN_URL": server.url, "SKYSCAN_TOKEN": server.admin_token}
    status = invoke("remote", "status", scan_id, env=env)
    assert status.exit_code == 0, status.output
    assert "state:       done" in status.stdout.splitlines() and "best fit:    RA " in status.stdout
    doc = json.loads(invoke("remote", "status", scan_id, "--json", env=env).stdout)
    assert doc == invoke_json_scan(server, scan_id)

    again = tmp_path / "again"
    fetched = invoke("remote", "fetch", scan_id, "-o", str(again), env=env)
    assert fetched.exit_code == 0, fetched.output
    assert sorted(Path(p).relative_to(again) for p in fetched.stdout.splitlines()) == sorted(
        p.relative_to(out) for p in written)
    assert all((again / p.relative_to(out)).read_bytes() == p.read_bytes() for p in written)


def invoke_json_scan(server: Any, scan_id: str) -> dict[str, Any]:
    """The scan document read directly over HTTP (to compare `status --json` with)."""
    answer = httpx.get(f"{server.url}/api/v1/scans/{scan_id}", headers=server.headers(), timeout=30)
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert isinstance(doc, dict)
    return doc


def test_remote_abort(server: Any, tmp_path: Path) -> None:
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(example_event() | {"event_id": 990004}), encoding="utf-8")
    env = {"SKYSCAN_URL": server.url, "SKYSCAN_TOKEN": server.admin_token}
    # --wait that runs out of time: the id is printed, then one line and exit 1 (the scan itself is fine)
    submitted = invoke("remote", "submit", str(event_path), "--wait", "--timeout", "0", env=env)
    assert submitted.exit_code == 1, submitted.output
    scan_id = submitted.stdout.strip()
    assert scan_id.isdigit()
    assert submitted.stderr.splitlines() == [submitted.stderr.strip()]
    assert submitted.stderr.startswith(f"skyscan: error: scan {scan_id} still ") and "after 0 s" in submitted.stderr
    aborted = invoke("remote", "abort", scan_id, env=env)
    assert aborted.exit_code == 0, aborted.output
    assert aborted.stdout.strip() == f"{scan_id} cancelled"


def test_remote_errors_exit_2_with_one_line(server: Any, tmp_path: Path, input_error: Any) -> None:
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(example_event()), encoding="utf-8")
    good = {"SKYSCAN_URL": server.url, "SKYSCAN_TOKEN": server.admin_token}

    input_error(invoke("remote", "status", "1", env={"SKYSCAN_URL": server.url, "SKYSCAN_TOKEN": "wrong"}),
                "service answered 401")
    input_error(invoke("remote", "submit", str(event_path), env={"SKYSCAN_URL": server.url}), "service answered 401")
    input_error(invoke("remote", "status", "999999", env=good), "service answered 404")
    input_error(invoke("remote", "fetch", "999999", "-o", str(tmp_path / "x"), env=good), "service answered 404")
    input_error(invoke("remote", "abort", "999999", env=good), "service answered 404")
    input_error(invoke("remote", "status", "no-such-scan", env=good), "service answered")
    url = f"http://127.0.0.1:{free_port()}"
    input_error(invoke("remote", "status", "1", "--url", url, env={"SKYSCAN_TOKEN": "x"}),
                f"cannot reach service at {url}")
    input_error(invoke("remote", "status", "1"), "no service URL given")
    input_error(invoke("remote", "status", "1", "--url", "ftp://host"), "must start with http://")
    input_error(invoke("remote", "status", "1", "--token-file", str(tmp_path / "missing"), env=good),
                "no such token file")
    # a bad event: the server's one-line message and field path
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(example_event() | {"energy_gev": "lots"}), encoding="utf-8")
    input_error(invoke("remote", "submit", str(bad), env=good), "service answered 422", "energy_gev")
    # bad local input never reaches the service
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    input_error(invoke("remote", "submit", str(broken), env=good), "invalid JSON")
    input_error(invoke("remote", "submit", str(event_path), "--priority", "1001", env=good), "--priority")
    assert not (tmp_path / "x").exists()


def test_remote_has_no_token_option() -> None:
    result = invoke("remote", "status", "1", "--token", "secret")
    assert result.exit_code == 2 and "No such option" in result.output
    help_text = invoke("remote", "--help").stdout
    assert "SKYSCAN_TOKEN" in help_text and "Examples:" in help_text
    for command in ("submit", "status", "fetch", "abort"):
        sub = invoke("remote", command, "--help")
        assert sub.exit_code == 0 and "--url" in sub.stdout and "--token-file" in sub.stdout
        assert "--token " not in sub.stdout


# runs last of the server tests: it replaces the shared done scan
def test_rescan_with_replace_and_listing(server: Any, done_scan: dict[str, Any]) -> None:
    with ServiceClient(server.url, server.admin_token) as client:
        new = client.rescan(done_scan["scan_id"], priority=7, replace=True)
        try:
            assert new["scan_id"] != done_scan["scan_id"] and new["priority"] == 7
            # the replaced scan names its replacement; reading it is redirected there
            assert client.get(done_scan["scan_id"])["scan_id"] == new["scan_id"]
            listed = client.list_scans(limit=100)
            by_id = {s["scan_id"]: s for s in listed["scans"]}
            assert by_id[done_scan["scan_id"]]["replaced_by"] == new["scan_id"]
            assert new["scan_id"] in by_id and "next_cursor" in listed
            assert client.health()["scheduler"]["alive"] is True
        finally:
            assert client.abort(new["scan_id"])["state"] == "cancelled"


# --- what a well-behaved server never sends (in-process mock transport) ---------------------------------------------
@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", ".hidden", "a/../b", "a//b", "", "x" * 200, "a\\b",
                                  "con:x", "plots/.x", "ok\n"])
def test_unsafe_product_names_are_refused(name: str) -> None:
    with pytest.raises(InputError, match="unsafe product name"):
        safe_relative_path(name)


def test_safe_product_names() -> None:
    assert str(safe_relative_path("plots/skymap-zoom.png")) == "plots/skymap-zoom.png"
    assert str(safe_relative_path("skymap.multiorder.fits")) == "skymap.multiorder.fits"


def test_download_writes_nothing_when_a_name_is_unsafe(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/products"):
            return httpx.Response(200, json={"products": [
                {"name": "summary.json", "content_type": "application/json", "bytes": 2},
                {"name": "../../escape.txt", "content_type": "text/plain", "bytes": 1}]})
        return httpx.Response(200, content=b"{}")

    with ServiceClient("http://service.test", "t", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(InputError, match="unsafe product name"):
            client.download("7", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.txt").exists()


def test_error_details_become_one_line() -> None:
    answers = {
        "/api/v1/scans/a": httpx.Response(409, json={"detail": "scan a is\nnot done"}),
        "/api/v1/scans/b": httpx.Response(422, json={"detail": [
            {"loc": ["body", "event", "time"], "msg": "bad time", "type": "x"},
            {"loc": ["body", "priority"], "msg": "too big", "type": "y"}]}),
        "/api/v1/scans/c": httpx.Response(502, text="<html>gateway</html>"),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return answers[request.url.path]

    with ServiceClient("http://service.test", None, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(InputError, match=r"^service answered 409: scan a is not done$"):
            client.get("a")
        with pytest.raises(InputError, match=r"^service answered 422: body\.event\.time: bad time \(and 1 more\)$"):
            client.get("b")
        with pytest.raises(InputError, match=r"^service answered 502: HTTP 502 Bad Gateway$"):
            client.get("c")


def test_token_is_sent_as_bearer_header_only() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"scan_id": "s/1", "state": "done"})

    with ServiceClient("http://service.test/prefix/", "tok", transport=httpx.MockTransport(handler)) as client:
        client.get("s/1")
    assert seen[0].headers["authorization"] == "Bearer tok"
    assert seen[0].url.raw_path == b"/prefix/api/v1/scans/s%2F1"
    assert "tok" not in str(seen[0].url)


def test_bad_client_arguments() -> None:
    with pytest.raises(InputError, match="must start with http"):
        ServiceClient("127.0.0.1:8765", "t")
    with pytest.raises(InputError, match="line break"):
        ServiceClient("http://h", "a\nb")
