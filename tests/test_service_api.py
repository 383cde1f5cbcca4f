"""The scan service end to end, against a real `skyscan serve` (uvicorn on 127.0.0.1, an ephemeral port).

A real scan of the bundled example with the fast configuration (tests/servicekit.py) is followed to done through
the API and its event stream, its result and FITS map fetched (the map read with ligo.skymap agrees with the
summary); identical submissions give one scan; bad events and configurations answer 422 with the command
line's message; a rescan that replaces its scan redirects; products are served only by name. The server is then
killed with SIGKILL mid-scan and restarted: the scan is adopted and finishes once.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from servicekit import (
    Server,
    create_token,
    example_event,
    kill_scans,
    running_server,
    start_server,
    stop_server,
    wait_for,
    write_serve_config,
)

API = "/api/v1"


def get(server: Server, path: str, **kw: Any) -> httpx.Response:
    return httpx.get(server.url + path, headers=server.headers(), timeout=30, **kw)


def post(server: Server, path: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, headers=server.headers(), timeout=60, **kw)


def wait_state(server: Server, scan_id: int, states: tuple[str, ...], timeout: float = 120.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        doc: dict[str, Any] = get(server, f"{API}/scans/{scan_id}", params={"no_redirect": "true"}).json()
        return doc if doc["state"] in states else None

    result: dict[str, Any] = wait_for(check, timeout)
    return result


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with running_server(tmp_path_factory.mktemp("serve")) as s:
        yield s


@pytest.fixture(scope="module")
def done_scan(server: Server) -> dict[str, Any]:
    """The bundled example, submitted, followed through its event stream to done."""
    r = post(server, f"{API}/scans", {"event": example_event(), "priority": 5, "label": "e2e",
                                      "classifiers": {"source": "test", "signalness": 0.5}})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["state"] in ("queued", "running") and doc["submitted_by"] == "admin"
    events = []
    with httpx.stream("GET", f"{server.url}{API}/scans/{doc['scan_id']}/events", headers=server.headers(),
                      timeout=httpx.Timeout(10, read=180)) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[len("data: "):])))
                if kind == "end":
                    break
    assert events[-1][0] == "end" and events[-1][1]["state"] == "done", events[-1]
    assert all(k == "scan" for k, _ in events[:-1])
    return get(server, f"{API}/scans/{doc['scan_id']}").json()  # type: ignore[no-any-return]


def test_submit_follow_fetch(server: Server, done_scan: dict[str, Any], tmp_path: Path) -> None:
    from ligo.skymap.io import read_sky_map
    from ligo.skymap.postprocess import crossmatch

    doc = done_scan
    assert doc["alert"] == "run140123-evt5678901-r1" and doc["stream"] == "gold" and doc["revision"] == 1
    assert doc["priority"] == 5 and doc["label"] == "e2e" and doc["classifiers"] == {"source": "test",
                                                                                      "signalness": 0.5}
    assert doc["attempts"] == 1 and doc["wall_seconds"] > 0 and doc["eta_seconds"] is None
    assert [p["nside"] for p in doc["progress"]] == [2, 4]
    assert all(p["done"] == p["total"] > 0 for p in doc["progress"])
    result = get(server, doc["links"]["result"]).json()
    assert result["schema"] == "skyscan-summary/1"
    assert result["best_fit"]["ra_deg"] == pytest.approx(doc["best_fit"]["ra_deg"])
    names = {p["name"]: p for p in get(server, doc["links"]["products"]).json()["products"]}
    assert names["skymap.multiorder.fits"]["content_type"] == "application/fits"
    r = get(server, f"{doc['links']['products']}/skymap.multiorder.fits")
    assert r.status_code == 200 and r.headers["content-type"] == "application/fits"
    assert len(r.content) == names["skymap.multiorder.fits"]["bytes"]
    fits = tmp_path / "map.fits"
    fits.write_bytes(r.content)
    sky = read_sky_map(str(fits), moc=True)
    assert str(sky.meta["objid"]).replace("_", "") == "1401235678901"  # OBJECT 140123_5678901
    # ligo.skymap's 90% credible area of the served map is the one the summary quotes for the map
    area = crossmatch(sky, contours=(0.9,)).contour_areas[0]
    assert area == pytest.approx(result["map_probability"]["credible_area_deg2"]["90"], rel=0.25)
    # only names from the list are served
    for bad in ("..%2Fcatalog.sqlite", "event.json", "config.yaml", "%2Fetc%2Fpasswd", "skymap.multiorder.fits.x"):
        assert get(server, f"{doc['links']['products']}/{bad}").status_code == 404, bad


def test_duplicates_and_force(server: Server, done_scan: dict[str, Any]) -> None:
    r = post(server, f"{API}/scans", {"event": example_event()})
    assert r.status_code == 200 and r.json()["scan_id"] == done_scan["scan_id"]
    # a different configuration is a different scan; two identical submissions at the same moment: one scan
    body = {"event": example_event(), "config": {"reco": {"max_iterations": 21}}}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: post(server, f"{API}/scans", body), range(2)))
    assert sorted(a.status_code for a in answers) == [200, 201]
    assert answers[0].json()["scan_id"] == answers[1].json()["scan_id"]
    forced = post(server, f"{API}/scans", {**body, "force": True})
    assert forced.status_code == 201 and forced.json()["scan_id"] != answers[0].json()["scan_id"]
    for scan_id in (answers[0].json()["scan_id"], forced.json()["scan_id"]):
        assert httpx.delete(f"{server.url}{API}/scans/{scan_id}", headers=server.headers()).status_code == 200


def test_bad_input_answers_422_with_the_cli_message(server: Server, tmp_path: Path) -> None:
    bad = {**example_event(), "time": "yesterday"}
    r = post(server, f"{API}/scans", {"event": bad})
    assert r.status_code == 422
    detail, field = r.json()["detail"], r.json()["field"]
    assert field == "event.time"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    cli = subprocess.run([sys.executable, "-m", "skyscan.cli", "run", str(path), "-o", str(tmp_path / "o")],
                         capture_output=True, text=True)
    assert cli.returncode == 2
    assert cli.stderr.strip().endswith(detail.removeprefix("event: ")), (cli.stderr, detail)
    r = post(server, f"{API}/scans", {"event": example_event(), "config": {"scan": {"rule": "sideways"}}})
    assert r.status_code == 422 and r.json()["field"] == "config.scan.rule" and "sideways" in r.json()["detail"]
    r = post(server, f"{API}/scans", {"event": example_event(), "priority": 1001})
    assert r.status_code == 422 and r.json()["field"] == "priority"
    r = post(server, f"{API}/scans", {"event": example_event(), "classifiers": {f"c{i}": i for i in range(26)}})
    assert r.status_code == 422 and r.json()["field"] == "classifiers"
    r = get(server, f"{API}/scans", params={"limit": 100000})
    assert r.status_code == 422 and r.json()["field"] == "limit"
    big = {"event": {**example_event(), "pad": "x" * (9 * 1024 * 1024)}}
    r = post(server, f"{API}/scans", big)
    assert r.status_code == 413 and "max_event_bytes" in r.json()["detail"]
    assert get(server, f"{API}/scans/999999").status_code == 404


def test_lists_alerts_catalog_and_rescan(server: Server, done_scan: dict[str, Any]) -> None:
    sid = done_scan["scan_id"]
    listed = get(server, f"{API}/scans", params={"state": "done", "label": "e2e", "priority_min": 5}).json()
    assert [s["scan_id"] for s in listed["scans"]] == [sid] and listed["next_cursor"] is None
    assert get(server, f"{API}/scans", params={"priority_min": 6, "state": "done"}).json()["scans"] == []
    page = get(server, f"{API}/scans", params={"limit": 1}).json()
    assert len(page["scans"]) == 1 and page["next_cursor"] is not None
    alert = get(server, done_scan["links"]["alert"]).json()
    assert alert["name"] == "run140123-evt5678901" and sid in [s["scan_id"] for s in alert["revisions"][0]["scans"]]
    assert get(server, f"{API}/alerts").json()["alerts"][0]["name"] == "run140123-evt5678901"
    cat = get(server, f"{API}/catalog").json()
    assert cat["schema"] == "skyscan-catalog/1" and cat["rows"][0]["alert"] == "run140123-evt5678901-r1"
    csv = get(server, f"{API}/catalog", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.startswith("alert_id,")
    r = post(server, f"{done_scan['links']['rescan']}", {"replace": True, "priority": 7})
    assert r.status_code == 201
    new = r.json()
    assert new["scan_id"] != sid and new["priority"] == 7 and new["label"] == "e2e"
    moved = httpx.get(f"{server.url}{API}/scans/{sid}", headers=server.headers(), follow_redirects=False)
    assert moved.status_code == 307 and moved.headers["location"] == str(new["scan_id"])  # relative: proxy-safe
    old = get(server, f"{API}/scans/{sid}", params={"no_redirect": "true"}).json()
    assert old["replaced_by"] == new["scan_id"]
    gone = httpx.delete(f"{server.url}{API}/scans/{new['scan_id']}", headers=server.headers())
    assert gone.status_code == 200 and gone.json()["state"] == "cancelled" and gone.json()["aborted_by"] == "admin"
    again = httpx.delete(f"{server.url}{API}/scans/{new['scan_id']}", headers=server.headers())
    assert again.status_code == 200 and again.json()["state"] == "cancelled"  # idempotent
    health = get(server, f"{API}/health").json()
    assert health["status"] == "ok" and health["scheduler"]["alive"] is True


def test_kill_9_and_restart_adopts_the_scan(tmp_path: Path) -> None:
    """SIGKILL of the server mid-scan; the restarted server adopts the detached scan, which finishes once."""
    config_path = write_serve_config(tmp_path)
    admin = create_token(config_path, "admin", "admin")
    first = start_server(config_path, tmp_path, admin)
    try:
        r = post(first, f"{API}/scans", {"event": example_event()})
        sid = r.json()["scan_id"]
        wait_state(first, sid, ("running",), 30)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        second = start_server(config_path, tmp_path, admin)
        try:
            doc = wait_state(second, sid, ("done", "failed"), 120)
            assert doc["state"] == "done" and doc["attempts"] == 1, doc
            log = (tmp_path / "data" / "scans" / f"{doc['alert']}-s{sid}.launch" / "scan.log").read_text()
            assert log.count("=== skyscan watch: ") == 1  # one attempt, never started twice
            assert len(get(second, f"{API}/scans").json()["scans"]) == 1
            # SIGTERM stops the service within seconds, with nothing left marked running
            t0 = time.monotonic()
            assert stop_server(second.process) == 0
            assert time.monotonic() - t0 < 10
        finally:
            stop_server(second.process)
    finally:
        stop_server(first.process)
        kill_scans(tmp_path)
    assert os.path.exists(tmp_path / "catalog.sqlite")


def test_abort_of_a_running_scan(server: Server, done_scan: dict[str, Any]) -> None:
    """DELETE of a running real scan: its process group is gone within seconds, cancelled, no products."""
    r = post(server, f"{API}/scans", {"event": example_event(), "config": {"reco": {"max_iterations": 22}}})
    sid = r.json()["scan_id"]
    doc = wait_state(server, sid, ("running",), 30)
    launch = server.tmp_path / "data" / "scans" / f"{doc['alert']}-s{sid}.launch"
    pgid = int(wait_for(lambda: (launch / "pgid").is_file() and (launch / "pgid").read_text().strip(), 10))
    os.killpg(pgid, 0)  # alive
    t0 = time.monotonic()
    r = httpx.delete(f"{server.url}{API}/scans/{sid}", headers=server.headers(), timeout=30)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"

    def gone() -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, 10, 0.05)
    assert time.monotonic() - t0 < 10
    assert get(server, f"{API}/scans/{sid}/products").json() == {"products": []}
    assert get(server, f"{API}/scans/{sid}/result").status_code == 409
    time.sleep(1.0)  # a scheduler pass later it is still cancelled, never retried
    assert get(server, f"{API}/scans/{sid}").json()["state"] == "cancelled"
