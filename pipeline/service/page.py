"""The status page of the scan service: ``GET /`` (the scans) and ``GET /scans/{scan_id}`` (one scan).

Both are static HTML shells; their scripts (``static/``, shipped in the package: submit hosts are often offline,
so no CDN and no outside asset) read the JSON API under ``/api/v1`` with ``fetch`` and redraw while scans run.
Everything from an alert reaches the page as text nodes (``textContent``), never as HTML, and the answers carry
a Content-Security-Policy that allows scripts, styles and images from this service only.

Authentication stays with the API: the page sends ``Authorization: Bearer`` with a token kept in the browser's
``sessionStorage`` (given once as ``?token=...``, which the page removes from the address bar, or typed into the
page when the API answers 401); with anonymous read switched on it needs none. Plots are fetched the same way
and shown from ``blob:`` URLs, so they load whether or not anonymous read is on.

Only the files named in ``STATIC_FILES`` are served under ``/static/``: no part of a URL becomes a path.
"""

from __future__ import annotations

import functools
from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

__all__ = ["CSP", "STATIC_FILES", "router"]

STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "scan.html": "text/html; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "list.js": "text/javascript; charset=utf-8",
    "scan.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
"""File name in ``static/`` -> content type: the whole set of files the page serves."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""Content-Security-Policy of every page answer: no inline script, nothing from another origin."""

_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate: a restarted service with a new version serves its own scripts
}

router = APIRouter(include_in_schema=False)


@functools.cache
def _static_bytes(name: str) -> bytes:
    """The bytes of one shipped static file (read once per process)."""
    return resources.files("skyscan.service").joinpath("static").joinpath(name).read_bytes()


def _file_response(name: str) -> Response:
    return Response(content=_static_bytes(name), media_type=STATIC_FILES[name], headers=_HEADERS)


@router.api_route("/", methods=["GET", "HEAD"])
def scan_list_page() -> Response:
    """The scans, newest first, filterable by state; redraws itself while scans run."""
    return _file_response("index.html")


@router.api_route("/scans/{scan_id}", methods=["GET", "HEAD"])
def scan_page(scan_id: str) -> Response:
    """One scan: state and progress, plots, circular draft, notice, downloads (the script reads the id from
    the address, so nothing of ``scan_id`` is written into the HTML)."""
    return _file_response("scan.html")


@router.api_route("/static/{name}", methods=["GET", "HEAD"])
def static_file(name: str) -> Response:
    """One of ``STATIC_FILES``; any other name is 404."""
    if name not in STATIC_FILES:
        raise HTTPException(status_code=404, detail=f"no static file {name[:80]!r}")
    return _file_response(name)
