"""Access to every route of the API: {no token, bad token, revoked, read, submit, admin} x anonymous read
{off, on}, one table, against real servers. 401 for no or a bad token (anonymous read on: no token may read),
403 for a token without the role, and the route's own answer otherwise. Who submitted and who aborted is recorded.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from servicekit import Server, example_event, running_server, wait_for

API = "/api/v1"
FAKE = Path(__file__).with_name("fake_scan.py")

# (method, path, body, role needed: None = public) -- every route of the API; {sid} is a done scan
ROUTES: list[tuple[str, str, Any, str | None]] = [
    ("GET", "/health", None, None),
    ("GET", "/scans", None, "read"),
    ("GET", "/scans/{sid}?no_redirect=true", None, "read"),
    ("GET", "/scans/{sid}/result", None, "read"),
    ("GET", "/scans/{sid}/products", None, "read"),
    ("GET", "/scans/{sid}/products/summary.json", None, "read"),
    ("GET", "/scans/{sid}/events", None, "read"),
    ("GET", "/alerts", None, "read"),
    ("GET", "/alerts/{alert}", None, "read"),
    ("GET", "/catalog?format=csv", None, "read"),
    ("GET", "/openapi.json", None, None),
    ("POST", "/scans", {"event": "EVENT"}, "submit"),
    ("POST", "/scans/{sid}/rescan", {}, "submit"),
    ("DELETE", "/scans/{sid}", None, "submit"),
    ("GET", "/tokens", None, "admin"),
    ("POST", "/tokens", {"name": "NEW", "role": "read"}, "admin"),
    ("DELETE", "/tokens/victim", None, "admin"),
]
RANK = {"read": 1, "submit": 2, "admin": 3}
WHO = ("none", "bad", "revoked", "read", "submit", "admin")


def expected(who: str, needed: str | None, anonymous_read: bool) -> str:
    """'ok', 401 or 403 as docs/service.md documents."""
    if needed is None:
        return "ok"
    if who == "none":
        return "ok" if (anonymous_read and needed == "read") else "401"
    if who in ("bad", "revoked"):
        return "401"
    return "ok" if RANK[who] >= RANK[needed] else "403"


def prepare(server: Server) -> dict[str, Any]:
    def token(name: str, role: str) -> str:  # through the admin API (the CLI is tested below and in servicekit)
        r = httpx.post(f"{server.url}{API}/tokens", json={"name": name, "role": role}, headers=server.headers())
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    tokens = {role: token(f"t-{role}", role) for role in ("read", "submit")}
    tokens["admin"] = server.admin_token
    tokens["bad"] = "sks_0000000000000000_" + "x" * 43
    revoked = token("t-revoked", "admin")
    token("victim", "read")
    httpx.delete(f"{server.url}{API}/tokens/t-revoked", headers=server.headers()).raise_for_status()
    tokens["revoked"] = revoked
    r = httpx.post(f"{server.url}{API}/scans", json={"event": example_event()}, headers=server.headers(), timeout=60)
    sid = r.json()["scan_id"]
    wait_for(lambda: httpx.get(f"{server.url}{API}/scans/{sid}", headers=server.headers()).json()["state"] == "done",
             60)
    return {"tokens": tokens, "sid": sid, "alert": r.json()["alert"].rsplit("-r", 1)[0]}


@pytest.mark.parametrize("anonymous_read", [False, True])
def test_every_route_times_every_principal(tmp_path: Path, anonymous_read: bool) -> None:
    with running_server(tmp_path, anonymous_read=anonymous_read,
                        scan_command=[sys.executable, str(FAKE), "--sleep", "0"]) as server:
        ctx = prepare(server)
        failures = []
        counter = 0
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for who in WHO:
                for method, path, body, needed in ROUTES:
                    counter += 1
                    url = API + path.format(sid=ctx["sid"], alert=ctx["alert"])
                    headers = {} if who == "none" else {"Authorization": f"Bearer {ctx['tokens'][who]}"}
                    payload = body
                    if isinstance(body, dict) and body.get("event") == "EVENT":
                        payload = {"event": example_event()}
                    if isinstance(body, dict) and body.get("name") == "NEW":
                        payload = {"name": f"new-{counter}", "role": "read"}
                    r = client.request(method, url, json=payload, headers=headers)
                    want = expected(who, needed, anonymous_read)
                    got = "ok" if r.status_code < 400 else str(r.status_code)
                    if got != want:
                        failures.append(f"{who} {method} {path}: {r.status_code} {r.text[:120]} (want {want})")
                    if r.status_code >= 400:
                        body_json = r.json()
                        assert isinstance(body_json["detail"], str) and "\n" not in body_json["detail"]
                    if r.status_code == 401:
                        assert r.headers.get("www-authenticate") == "Bearer"
        assert not failures, "\n".join(failures)
        # every change names its token
        scans = httpx.get(f"{server.url}{API}/scans", params={"limit": 100}, headers=server.headers()).json()
        submitters = {s["submitted_by"] for s in scans["scans"]}
        assert submitters <= {"admin", "t-submit"} and "t-submit" in submitters
        aborted = httpx.get(f"{server.url}{API}/scans/{ctx['sid']}?no_redirect=true", headers=server.headers()).json()
        assert aborted["aborted_by"] is None  # a done scan is left as it is by DELETE
        # a token revoked through the CLI stops working at once
        from servicekit import cli

        cli("serve", "token", "revoke", "t-read", "--config", str(server.config_path))
        r = httpx.get(f"{server.url}{API}/scans", headers={"Authorization": f"Bearer {ctx['tokens']['read']}"})
        assert r.status_code == 401
        listed = cli("serve", "token", "list", "--config", str(server.config_path)).stdout
        assert "t-read\tread" in listed and "revoked" in listed and ctx["tokens"]["read"] not in listed
