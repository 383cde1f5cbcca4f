"""A Python client of the scan service (``skyscan serve``): submit, follow and fetch scans over HTTP.

It is the lowest layer of the package (it imports only httpx, the standard library, :mod:`skyscan.errors` and
:mod:`skyscan.atomic`), so that a realtime system, the watcher's ``service`` backend or a script can use it
without pulling in the scheduler or the web framework.

Error contract: every HTTP error answer (4xx, 5xx) and every failure to reach the service raises
:class:`~skyscan.errors.InputError` with one line, the server's ``detail`` where it sent one
(``"cannot reach service at URL: ..."`` for connection failures), so that a command line built on it exits 2
with that line. A :meth:`ServiceClient.wait` that runs out of time raises :class:`WaitTimeout`
(a :class:`~skyscan.errors.SkyscanError`, exit 1): the service answered, the scan just is not finished.

Example::

    client = ServiceClient("http://127.0.0.1:8765", token=os.environ["SKYSCAN_TOKEN"])
    scan = client.submit(json.load(open("event.json")), priority=100)
    scan = client.wait(scan["scan_id"], timeout=3600)
    paths = client.download(scan["scan_id"], "products/")
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import httpx

from skyscan.atomic import atomic_path
from skyscan.errors import InputError, SkyscanError

API = "/api/v1"
"""Prefix of every API route (the path part of the service URL may add a reverse proxy's prefix in front)."""

FINAL_STATES = ("done", "failed", "cancelled")
"""Catalog states a scan does not leave (skyscan.ops.catalog.SCAN_STATES minus the active ones)."""

DEFAULT_TIMEOUT_S = 30.0
"""Seconds one HTTP request may take (connect, read, write each); a product download reads in chunks, so
large files are not bounded by it as a whole."""

POLL_S = 1.0
"""Seconds between two scan-document reads while :meth:`ServiceClient.wait` follows a scan: a scan lasts
minutes to hours, so one read a second costs the service nothing and the caller sees the end within a second."""

ScanId = str | int
"""A scan id as the service gives it (an integer in the scan document) or as typed on a command line."""

_SAFE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_MAX_DETAIL = 300


class WaitTimeout(SkyscanError):
    """:meth:`ServiceClient.wait` ran out of time before the scan reached a final state (exit code 1)."""


def _one_line(text: str, limit: int = _MAX_DETAIL) -> str:
    """Whitespace runs as one space, control characters dropped, at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    flat = "".join(c for c in flat if c.isprintable())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _detail(response: httpx.Response) -> str:
    """The one-line reason of an error answer: FastAPI's ``detail`` (a string, or a list of validation
    errors with ``loc`` and ``msg``), else the status line."""
    try:
        doc = response.json()
    except ValueError:
        doc = None
    detail = doc.get("detail") if isinstance(doc, dict) else None
    if isinstance(detail, str) and detail.strip():
        where = doc.get("field") if isinstance(doc, dict) else None
        if isinstance(where, str) and where and where not in detail:
            return _one_line(f"{detail} (field {where})")
        return _one_line(detail)
    if isinstance(detail, dict):
        message = detail.get("message") or detail.get("msg")
        if isinstance(message, str):
            where = detail.get("path") or detail.get("loc")
            return _one_line(f"{_path_text(where)}: {message}" if where and where not in message else message)
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        message = _one_line(str(first.get("msg", "invalid request")))
        where = _path_text(first.get("loc"))
        more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
        return _one_line(f"{where}: {message}{more}" if where else f"{message}{more}")
    return _one_line(f"HTTP {response.status_code} {response.reason_phrase}".strip())


def _path_text(where: Any) -> str:
    if isinstance(where, (list, tuple)):
        return ".".join(str(p) for p in where)
    return str(where) if where else ""


def safe_relative_path(name: str) -> PurePosixPath:
    """The relative path under which a product ``name`` from the service's products list is saved.

    Each ``/``-separated part must be a plain file name (letters, digits, ``._+-``, not starting with a dot),
    so that no name from the network can climb out of the output folder, name a hidden file or a device.
    """
    parts = name.split("/") if isinstance(name, str) else []
    if not parts or len(parts) > 4 or not all(_SAFE_PART.fullmatch(p) for p in parts):
        raise InputError(f"service offered an unsafe product name {_one_line(repr(name), 80)}")
    return PurePosixPath(*parts)


class ServiceClient:
    """A connection to one scan service.

    ``url`` is the service's base URL (``http://host:8765``, or with a reverse proxy's path prefix);
    ``token`` a bearer token (None: anonymous, which the service allows for reading only when configured so).
    ``timeout`` is seconds per HTTP request (see DEFAULT_TIMEOUT_S). ``transport`` is for tests
    (an ``httpx`` transport, e.g. ``httpx.MockTransport``).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
            raise InputError(f"service URL must start with http:// or https:// (got {_one_line(repr(url), 80)})")
        if token is not None and (not token.strip() or any(c in token for c in "\r\n")):
            raise InputError("token is empty or holds a line break")
        self.url = url.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": "skyscan-client"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token.strip()}"
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, follow_redirects=True, transport=transport
        )

    # -- plumbing ------------------------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scan_path(self, scan_id: ScanId, tail: str = "") -> str:
        text = str(scan_id).strip() if isinstance(scan_id, (str, int)) and not isinstance(scan_id, bool) else ""
        if not text:
            raise InputError("scan id is empty")
        return f"{API}/scans/{quote(text, safe='')}{tail}"

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise InputError(f"cannot reach service at {self.url}: {_one_line(str(exc)) or type(exc).__name__}") from None
        if response.status_code >= 400:
            raise InputError(f"service answered {response.status_code}: {_detail(response)}")
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._send(method, path, **kwargs)
        try:
            doc = response.json()
        except ValueError:
            raise InputError(f"service at {self.url} answered {path} with something that is not JSON") from None
        if not isinstance(doc, dict):
            raise InputError(f"service at {self.url} answered {path} with JSON that is not an object")
        return doc

    # -- the API -------------------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``GET /api/v1/health``: status, version, database, scheduler {alive, running, queued}."""
        return self._json("GET", f"{API}/health")

    def submit(
        self,
        event_doc: Mapping[str, Any],
        config: Mapping[str, Any] | None = None,
        priority: int = 0,
        classifiers: Mapping[str, Any] | None = None,
        label: str | None = None,
        force: bool = False,
    ) -> dict[str, Any]:
        """Ask for a scan of ``event_doc`` (a skyscan-event/1 object); returns the scan document.

        ``config`` is a partial skyscan-config/1 mapping; ``priority`` 0-1000 (>= 100: the realtime lane,
        started before any lower priority). The same event revision with the same resolved configuration
        already queued, running or done gives back that scan, unless ``force``.
        """
        body: dict[str, Any] = {"event": dict(event_doc), "priority": priority, "force": bool(force)}
        if config is not None:
            body["config"] = dict(config)
        if classifiers is not None:
            body["classifiers"] = dict(classifiers)
        if label is not None:
            body["label"] = label
        return self._json("POST", f"{API}/scans", json=body)

    def get(self, scan_id: ScanId) -> dict[str, Any]:
        """The scan document (a replaced scan's read is redirected to its replacement by the service)."""
        return self._json("GET", self._scan_path(scan_id))

    def list_scans(self, state: str | None = None, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """One page of ``GET /api/v1/scans``: ``{scans, next_cursor}``."""
        params = {k: v for k, v in (("state", state), ("limit", limit), ("cursor", cursor)) if v is not None}
        return self._json("GET", f"{API}/scans", params=params)

    def wait(self, scan_id: ScanId, timeout: float, poll: float = POLL_S) -> dict[str, Any]:
        """Follow a scan until it is done, failed or cancelled; returns its last document.

        ``timeout`` is seconds of wall time; running out raises :class:`WaitTimeout` with one line naming the
        scan and its last state. The scan document is read every ``poll`` seconds (see POLL_S).
        """
        deadline = time.monotonic() + max(0.0, float(timeout))
        while True:
            doc = self.get(scan_id)
            if doc.get("state") in FINAL_STATES:
                return doc
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(
                    f"scan {_one_line(str(scan_id), 80)} still {_one_line(str(doc.get('state')), 40)} after {timeout:g} s"
                )
            time.sleep(min(poll, left))

    def result(self, scan_id: ScanId) -> dict[str, Any]:
        """The scan's summary.json (skyscan-summary/1); the service answers 409 until the scan is done."""
        return self._json("GET", self._scan_path(scan_id, "/result"))

    def products(self, scan_id: ScanId) -> list[dict[str, Any]]:
        """The scan's products: ``[{name, content_type, bytes}]``."""
        doc = self._json("GET", self._scan_path(scan_id, "/products"))
        items = doc.get("products")
        if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in items):
            raise InputError(f"service at {self.url} answered a products list without product names")
        return items

    def download(self, scan_id: ScanId, outdir: str | Path) -> list[Path]:
        """Save every product of a scan under ``outdir``; returns the paths written.

        Only names from the products list are fetched and each must pass :func:`safe_relative_path`; each file
        is written under a temporary name and renamed when complete, so ``outdir`` never holds half a product.
        """
        root = Path(outdir)
        targets = [(item["name"], root / safe_relative_path(item["name"])) for item in self.products(scan_id)]
        written: list[Path] = []
        for name, target in targets:
            path = self._scan_path(scan_id, f"/products/{quote(name, safe='')}")
            try:
                with self._http.stream("GET", path) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise InputError(f"service answered {response.status_code}: {_detail(response)}")
                    with atomic_path(target) as tmp, tmp.open("wb") as out:
                        for chunk in response.iter_bytes(1 << 16):
                            out.write(chunk)
            except httpx.TransportError as exc:
                raise InputError(f"cannot reach service at {self.url}: {_one_line(str(exc)) or type(exc).__name__}") from None
            except OSError as exc:
                raise InputError(f"{target}: cannot write ({exc.__class__.__name__}: {_one_line(str(exc))})") from None
            written.append(target)
        return written

    def abort(self, scan_id: ScanId) -> dict[str, Any]:
        """Stop a scan (``DELETE``): its running graph is stopped and its state becomes cancelled; idempotent."""
        return self._json("DELETE", self._scan_path(scan_id))

    def rescan(
        self,
        scan_id: ScanId,
        config: Mapping[str, Any] | None = None,
        priority: int | None = None,
        replace: bool = False,
    ) -> dict[str, Any]:
        """A new scan of the same event revision (``config`` a partial skyscan-config/1 over the old one's);
        with ``replace`` the old scan's document names the new one. Returns the new scan document."""
        body: dict[str, Any] = {"replace": bool(replace)}
        if config is not None:
            body["config"] = dict(config)
        if priority is not None:
            body["priority"] = priority
        return self._json("POST", self._scan_path(scan_id, "/rescan"), json=body)


__all__ = ["API", "FINAL_STATES", "ServiceClient", "WaitTimeout", "safe_relative_path"]
