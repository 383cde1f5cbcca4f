"""The status page in a real headless browser (Debian's chromium driven by playwright) against `skyscan serve`.

A scan of the bundled example (fast configuration) is submitted through the API; the page, opened once with
``?token=`` (a read token), lists it, follows it to done without a reload, and its own page shows the zoom
plot (loaded: naturalWidth > 0), the circular draft and the download links. Text from the scan is shown as
text (a label holding HTML stays inert). Skipped only when /usr/bin/chromium is absent (.ci/run installs it).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from servicekit import FAST_SCAN_CONFIG_WITH_PLOTS, running_server

from skyscan.resources import data_text

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCAN_TIMEOUT_S = 1500.0  # generous: a shared machine under load ran the tiny scan in ~10 minutes
HOSTILE_LABEL = '<img src="x" onerror="window.__pwned = 1"><b>bold</b>'

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium (Debian package chromium; .ci/run installs it)")


@needs_chromium
def test_page_follows_a_scan_to_done_and_shows_its_plots(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    event = json.loads(data_text("config", "examples/example-event.json"))
    # the service's own fast configuration (servicekit), with the plots the page shows
    with running_server(tmp_path / "serve", scan_config=FAST_SCAN_CONFIG_WITH_PLOTS) as srv:
        token = srv.token("page-reader", "read")
        answer = httpx.post(
            f"{srv.url}/api/v1/scans", headers={"Authorization": f"Bearer {srv.admin_token}"}, timeout=60,
            json={"event": event, "priority": 100, "label": HOSTILE_LABEL},
        )
        assert answer.status_code == 201, answer.text
        scan_id = str(answer.json()["scan_id"])

        errors: list[str] = []
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                headless=True, viewport={"width": 1280, "height": 900},
            )
            try:
                page = context.new_page()
                page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
                page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
                page.goto(f"{srv.url}/?token={token}")
                row = page.locator(f'tr[data-scan-id="{scan_id}"]')
                row.wait_for(timeout=30_000)

                # the token left the address bar and lives in this tab's sessionStorage only
                assert "token" not in page.url
                assert page.evaluate("sessionStorage.getItem('skyscan.token')") == token

                # the row follows the scan to done without a reload
                states = []
                deadline = time.monotonic() + SCAN_TIMEOUT_S
                while time.monotonic() < deadline:
                    state = row.get_attribute("data-state")
                    if not states or states[-1] != state:
                        states.append(state)
                    if state in ("done", "failed", "cancelled"):
                        break
                    page.wait_for_timeout(100)
                assert states[-1] == "done", states
                assert set(states[:-1]) <= {"received", "queued", "running"} and len(states) >= 2, states
                assert row.locator("progress").evaluate("p => p.value") == 1
                ra_dec = row.locator("td").nth(4).inner_text()
                assert "°" in ra_dec, ra_dec

                # text from the scan is text: the label shows literally and creates no element
                assert row.locator(".label").inner_text() == HOSTILE_LABEL
                assert row.locator("img, b").count() == 0
                assert page.evaluate("window.__pwned") is None

                # the state filter
                page.locator('button[data-state="failed"]').click()
                page.locator(f'tr[data-scan-id="{scan_id}"]').wait_for(state="detached", timeout=15_000)
                page.locator('button[data-state="done"]').click()
                row.wait_for(timeout=15_000)

                # the scan's own page: zoom plot loaded, circular draft and downloads shown
                row.locator("td.alert a").click()
                page.wait_for_url(f"**/scans/{scan_id}", timeout=15_000)
                zoom = page.locator("#plot-zoom")
                zoom.wait_for(timeout=60_000)
                page.wait_for_function(
                    "() => { const i = document.getElementById('plot-zoom'); return i && i.complete && i.naturalWidth > 0; }",
                    timeout=60_000,
                )
                assert zoom.evaluate("i => i.naturalWidth") > 100
                assert page.locator("#state").inner_text().lower() == "done"
                page.locator("#circular:not(.muted)").wait_for(timeout=30_000)
                assert str(event["run_id"]) in page.locator("#circular").inner_text()
                downloads = page.locator("#downloads a")
                assert downloads.count() >= 5
                assert page.locator("#notice:not(.muted)").inner_text().lstrip().startswith("{")
                page.screenshot(path=str(tmp_path / "scan-page.png"), full_page=True)

                # a new tab has no token (sessionStorage is per tab): the API's 401 brings up the token form
                other = context.new_page()
                other.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
                other.goto(f"{srv.url}/")
                other.locator("#auth input[type=password]").wait_for(timeout=30_000)
                assert other.locator(f'tr[data-scan-id="{scan_id}"]').count() == 0
                other.fill("#auth input[type=password]", token)
                other.locator("#auth button[type=submit]").click()
                other.locator(f'tr[data-scan-id="{scan_id}"][data-state="done"]').wait_for(timeout=30_000)
                assert other.locator("#auth").is_hidden()
            finally:
                context.close()
        assert not errors, errors


# --- the page's own routes, without a browser -------------------------------------------------------------------
def page_client() -> Any:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from skyscan.service import page

    app = FastAPI()
    app.include_router(page.router)
    return TestClient(app)


def test_pages_and_static_files_are_served_from_the_package() -> None:
    from skyscan.service.page import STATIC_FILES

    client = page_client()
    for path in ("/", "/scans/12"):
        answer = client.get(path)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert answer.headers["x-content-type-options"] == "nosniff"
        # every asset the page names is one of the shipped static files, none from another host
        assert "http://" not in answer.text and "https://" not in answer.text and "//cdn" not in answer.text
        for ref in re.findall(r'(?:src|href)="([^"]+)"', answer.text):
            if "static/" in ref:
                assert ref.rsplit("/", 1)[-1] in STATIC_FILES, ref
    assert client.head("/").status_code == 200
    for name, content_type in STATIC_FILES.items():
        answer = client.get(f"/static/{name}")
        assert answer.status_code == 200 and answer.headers["content-type"] == content_type, name
        assert len(answer.content) > 100
    scripts = "".join(client.get(f"/static/{n}").text for n in STATIC_FILES if n.endswith(".js"))
    assert "innerHTML" not in scripts and "insertAdjacentHTML" not in scripts and "eval(" not in scripts


@pytest.mark.parametrize("name", ["..%2Fpage.py", "page.py", "%2E%2E%2F__init__.py", ".keep", "index.htm"])
def test_no_other_file_is_served(name: str) -> None:
    assert page_client().get(f"/static/{name}").status_code == 404
