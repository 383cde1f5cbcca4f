"""The FastAPI application of ``skyscan serve``: the JSON API under ``/api/v1`` and the status page.

Routes, roles and answers are documented in docs/service.md (the names are contracts). Every error is JSON
``{"detail": one line, "field": path or null}``: 401 no or bad token, 403 a token without the role, 404 no
such scan/alert/product, 409 no result yet, 413 a body over ``max_event_bytes``, 422 bad input (the message
the command line gives for the same event or configuration).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from skyscan.errors import InputError, SkyscanError
from skyscan.ops.catalog.db import connect
from skyscan.ops.commands import cancel_scan
from skyscan.reco import untrusted
from skyscan.service import models, store, tokens
from skyscan.service.config import ServeConfig
from skyscan.service.store import API, FieldError, NotFound
from skyscan.version import __version__

__all__ = ["ApiError", "create_app"]

TERMINAL_STATES = ("done", "failed", "cancelled")
ScanId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="the catalog's scan id")]


class ApiError(Exception):
    """An answer other than 2xx with its one-line message."""

    def __init__(self, status: int, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.field = status, detail, field


def _error(status: int, detail: str, field: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": untrusted.one_line(detail, 500), "field": field}, status_code=status,
                        headers=headers)


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": models.ErrorBody, "description": text}
    for code, text in ((401, "no token or a bad token"), (403, "the token lacks the role"),
                       (404, "no such resource"), (422, "bad input"))
}


# ---------------------------------------------------------------------------------------------------------------
# Request body limit (413): the body is read here, at most max_event_bytes of it, then replayed to the app
# ---------------------------------------------------------------------------------------------------------------
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: a request body larger than ``limit`` bytes is answered 413 without reaching a route."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], limit: int) -> None:
        self.app, self.limit = app, limit

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body larger than {self.limit} bytes (max_event_bytes)",
                           "field": None}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    if int(value) > self.limit:
                        await self._refuse(send)
                        return
                except ValueError:
                    pass
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# ---------------------------------------------------------------------------------------------------------------
# The application
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Principal:
    """Who makes a request: a token's name and role, or anonymous (None, None)."""

    name: str | None
    role: str | None


def create_app(cfg: ServeConfig, *, start_scheduler: bool = True) -> FastAPI:
    """The API (and the status page) over ``cfg``'s catalog; with ``start_scheduler`` the scheduler thread runs
    for the application's lifetime (tests of the API alone pass False)."""
    from skyscan.service import page
    from skyscan.service.worker import SchedulerThread

    local = threading.local()
    scheduler = SchedulerThread(cfg) if start_scheduler else None

    def db() -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            conn = connect(cfg.database)
            local.conn = conn
        return conn

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for folder in (cfg.archive, cfg.configs, cfg.scans):
            folder.mkdir(parents=True, exist_ok=True)
        connect(cfg.database).close()  # create and migrate before the first request
        if scheduler is not None:  # the service's own process (not an in-process test of the API alone)
            # Why: a full garbage collection walks every object the imports made (~76,000: numpy, astropy,
            # pydantic's schemas), 13-20 ms on an idle core and up to 80 ms measured on a shared one, stalling
            # every request in flight. They live as long as the process, so they are moved out of its reach.
            app.openapi()  # built now, so that the document is frozen with the rest
            gc.collect()
            gc.freeze()
            scheduler.start()
        try:
            yield
        finally:
            if scheduler is not None:
                await run_in_threadpool(scheduler.stop)

    app = FastAPI(title="skyscan scan service", version=__version__, openapi_url=f"{API}/openapi.json",
                  docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.cfg = cfg
    app.state.scheduler = scheduler
    app.add_middleware(BodyLimit, limit=cfg.max_event_bytes)  # type: ignore[arg-type]
    bearer = HTTPBearer(auto_error=False, description="A token from `skyscan serve token create`.")

    # -- errors --------------------------------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.detail, exc.field, headers)

    @app.exception_handler(FieldError)
    async def _field_error(request: Request, exc: FieldError) -> JSONResponse:
        return _error(422, str(exc), exc.field)

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(SkyscanError)
    async def _operational(request: Request, exc: SkyscanError) -> JSONResponse:
        return _error(503, str(exc))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error: {exc.__class__.__name__}: {exc}")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        where = ".".join(loc) or "body"
        return _error(422, f"{where}: {first.get('msg', 'invalid value')}", where)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    # -- access --------------------------------------------------------------------------------------------------
    # Reads run on the event loop's own connection (WAL: a reader never waits for a writer, and a read is well
    # under a millisecond); changes run in the thread pool, each thread with its connection.
    def require(role: str) -> Callable[..., Awaitable[Principal]]:
        async def dependency(request: Request,
                             credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
            header = request.headers.get("authorization")
            if header is None:
                if role == "read" and cfg.anonymous_read:
                    return Principal(None, None)
                raise ApiError(401, "no token: send the header Authorization: Bearer TOKEN")
            if credentials is None or credentials.scheme.lower() != "bearer":
                raise ApiError(401, "malformed Authorization header (expected Bearer TOKEN)")
            found = tokens.authenticate(db(), credentials.credentials.strip())
            if found is None:
                raise ApiError(401, "invalid or revoked token")
            name, has = found
            if not tokens.role_allows(has, role):
                raise ApiError(403, f"token {name!r} has the role {has}; this needs {role}")
            return Principal(name, has)

        return dependency

    read, submit_role, admin = require("read"), require("submit"), require("admin")

    def page_limit(limit: int | None) -> int:
        if limit is None:
            return cfg.default_page_size
        if limit > cfg.max_page_size:
            raise ApiError(422, f"limit: at most {cfg.max_page_size} (max_page_size), got {limit}", "limit")
        return limit

    def kick() -> None:
        if scheduler is not None:
            scheduler.kick()

    # -- health --------------------------------------------------------------------------------------------------
    @app.get(f"{API}/health", response_model=models.Health, tags=["service"])
    async def health() -> dict[str, Any]:
        """Liveness: the database answers and the scheduler runs (no token needed)."""
        running = queued = 0
        database = "ok"
        try:
            counts = dict(db().execute(
                "SELECT state, COUNT(*) FROM scans WHERE state IN ('running', 'queued') GROUP BY state").fetchall())
            running, queued = int(counts.get("running", 0)), int(counts.get("queued", 0))
        except sqlite3.Error as exc:
            database = f"error: {untrusted.one_line(str(exc))}"
        alive = scheduler.alive if scheduler is not None else False
        ok = database == "ok" and (alive or scheduler is None)
        return {"status": "ok" if ok else "degraded", "version": __version__, "database": database,
                "scheduler": {"alive": alive, "running": running, "queued": queued}}

    # -- scans ---------------------------------------------------------------------------------------------------
    @app.post(f"{API}/scans", response_model=models.ScanDocument, status_code=201, tags=["scans"],
              responses={200: {"model": models.ScanDocument, "description": "the existing scan (a duplicate)"},
                         413: {"model": models.ErrorBody, "description": "body too large"}, **_ERRORS})
    def post_scan(body: models.SubmitRequest, who: Principal = Depends(submit_role)) -> Response:
        """Submit an event: 201 and the new scan, or 200 and the scan that already answers it."""
        done = store.submit(db(), cfg, event=body.event, config=body.config, priority=body.priority,
                            classifiers=body.classifiers, label=body.label, force=body.force,
                            submitted_by=who.name)
        if done.created:
            kick()
        doc = store.scan_document(db(), done.scan_id)
        return JSONResponse(jsonable_encoder(doc), status_code=201 if done.created else 200)

    @app.get(f"{API}/scans", response_model=models.ScanList, tags=["scans"], responses=_ERRORS)
    async def get_scans(state: str | None = None, stream: str | None = None, since: str | None = None,
                  priority_min: int | None = Query(None, ge=0, le=1000), label: str | None = None,
                  limit: int | None = Query(None, ge=1), cursor: str | None = None,
                  who: Principal = Depends(read)) -> dict[str, Any]:
        """Scans, newest first, filtered; pass ``next_cursor`` as ``cursor`` for the next page."""
        docs, nxt = store.list_scans(db(), state=state, stream=stream, since=since, priority_min=priority_min,
                                     label=label, limit=page_limit(limit), cursor=cursor)
        return {"scans": docs, "next_cursor": nxt}

    @app.get(f"{API}/scans/{{scan_id}}", response_model=models.ScanDocument, tags=["scans"],
             responses={307: {"description": "the scan was replaced: redirect to its replacement"}, **_ERRORS})
    async def get_scan(scan_id: ScanId, no_redirect: bool = False, who: Principal = Depends(read)) -> Any:
        """A scan document; a replaced scan redirects to its replacement unless ``no_redirect=true``."""
        doc = store.scan_document(db(), scan_id)
        if doc["replaced_by"] is not None and not no_redirect:
            # relative, so that it also holds behind a reverse proxy that serves the API under a path prefix
            return RedirectResponse(str(doc["replaced_by"]), status_code=307)
        return doc

    @app.get(f"{API}/scans/{{scan_id}}/result", tags=["scans"], response_model=dict[str, Any],
             responses={409: {"model": models.ErrorBody, "description": "the scan is not done"}, **_ERRORS})
    async def get_result(scan_id: ScanId, who: Principal = Depends(read)) -> Any:
        """The scan's summary.json (skyscan-summary/1) once done."""
        state, _ = store.scan_outdir(db(), scan_id)
        row = db().execute("SELECT doc FROM summaries WHERE scan_id = ?", (scan_id,)).fetchone()
        if state != "done" or row is None:
            raise ApiError(409, f"scan {scan_id} is {state}, not done: no result yet")
        return json.loads(row["doc"])

    @app.get(f"{API}/scans/{{scan_id}}/products", response_model=models.ProductList, tags=["scans"],
             responses=_ERRORS)
    async def get_products(scan_id: ScanId, who: Principal = Depends(read)) -> dict[str, Any]:
        """The products of a done scan (none before it is done)."""
        state, outdir = store.scan_outdir(db(), scan_id)
        return {"products": store.products_of(outdir, state)}

    @app.get(f"{API}/scans/{{scan_id}}/products/{{name}}", tags=["scans"], response_class=FileResponse,
             responses={200: {"description": "the file", "content": {
                 "application/fits": {}, "application/x-hdf5": {}, "image/png": {}, "text/plain": {},
                 "application/json": {}}}, **_ERRORS})
    def get_product(scan_id: ScanId, name: str, who: Principal = Depends(read)) -> FileResponse:
        """One product by its name from the list; any other name is 404."""
        state, outdir = store.scan_outdir(db(), scan_id)
        path, content_type = store.product_path(outdir, state, name)
        return FileResponse(path, media_type=content_type, filename=name)

    @app.delete(f"{API}/scans/{{scan_id}}", response_model=models.ScanDocument, tags=["scans"], responses=_ERRORS)
    def delete_scan(scan_id: ScanId, who: Principal = Depends(submit_role)) -> dict[str, Any]:
        """Abort: the running graph is stopped, the scan cancelled (idempotent)."""
        store.scan_outdir(db(), scan_id)  # 404 first
        cancel_scan(db(), scan_id, by=who.name, grace=cfg.kill_grace_seconds)
        kick()
        return store.scan_document(db(), scan_id)

    @app.post(f"{API}/scans/{{scan_id}}/rescan", response_model=models.ScanDocument, status_code=201,
              tags=["scans"], responses=_ERRORS)
    def post_rescan(scan_id: ScanId, body: models.RescanRequest,
                    who: Principal = Depends(submit_role)) -> dict[str, Any]:
        """A new scan of the same revision; ``replace`` makes the old one name (and redirect to) it."""
        new_id = store.rescan(db(), cfg, scan_id, config=body.config, priority=body.priority,
                              replace=body.replace, submitted_by=who.name)
        kick()
        return store.scan_document(db(), new_id)

    @app.get(f"{API}/scans/{{scan_id}}/events", tags=["scans"], response_class=StreamingResponse,
             responses={200: {"description": "Server-Sent Events", "content": {"text/event-stream": {}}},
                        **_ERRORS})
    async def get_events(scan_id: ScanId, request: Request, who: Principal = Depends(read)) -> StreamingResponse:
        """Server-Sent Events: ``scan`` (the document) at each change of state or progress, ``end`` at the end."""
        first = await run_in_threadpool(lambda: store.scan_document(db(), scan_id))

        async def stream() -> AsyncIterator[str]:
            doc: dict[str, Any] | None = first
            last: str | None = None
            idle = 0.0
            while doc is not None:
                key = json.dumps([doc["state"], doc["progress"], doc["updated"]])
                if key != last:
                    last, idle = key, 0.0
                    kind = "end" if doc["state"] in TERMINAL_STATES else "scan"
                    yield f"event: {kind}\ndata: {json.dumps(jsonable_encoder(doc))}\n\n"
                    if kind == "end":
                        return
                elif idle >= 15.0:
                    idle = 0.0
                    yield ": keep-alive\n\n"
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.5)
                idle += 0.5
                doc = await run_in_threadpool(lambda: store.scan_document(db(), scan_id))

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # -- alerts and the catalog ----------------------------------------------------------------------------------
    @app.get(f"{API}/alerts", response_model=models.AlertList, tags=["alerts"], responses=_ERRORS)
    async def get_alerts(limit: int | None = Query(None, ge=1), cursor: str | None = None,
                   who: Principal = Depends(read)) -> dict[str, Any]:
        """Alerts, newest first, with their latest scan's state."""
        rows, nxt = store.list_alerts(db(), limit=page_limit(limit), cursor=cursor)
        return {"alerts": rows, "next_cursor": nxt}

    @app.get(f"{API}/alerts/{{name}}", response_model=models.Alert, tags=["alerts"], responses=_ERRORS)
    async def get_alert(name: str, who: Principal = Depends(read)) -> dict[str, Any]:
        """An alert (``run12-evt345``, ``12:345`` or its id) with its revisions and their scans."""
        return store.alert_document(db(), name)

    @app.get(f"{API}/catalog", tags=["alerts"], response_model=dict[str, Any],
             responses={200: {"content": {"text/csv": {}}}, **_ERRORS})
    def get_catalog(format: str = Query("json", pattern="^(json|csv)$"), since: str | None = None,
                    who: Principal = Depends(read)) -> Any:
        """The rows of ``skyscan catalog`` as its skyscan-catalog/1 document (json) or CSV."""
        from skyscan.ops.catalog.listing import catalog_document, catalog_rows, format_csv

        try:
            rows = catalog_rows(db(), since=since)
        except InputError as exc:
            raise FieldError(str(exc).replace("--since", "since"), "since") from None
        if format == "csv":
            return PlainTextResponse(format_csv(rows), media_type="text/csv; charset=utf-8")
        return catalog_document(rows)

    # -- tokens (admin) ------------------------------------------------------------------------------------------
    @app.get(f"{API}/tokens", response_model=models.TokenList, tags=["tokens"], responses=_ERRORS)
    async def get_tokens(who: Principal = Depends(admin)) -> dict[str, Any]:
        """Every token's name, role and dates (never a secret)."""
        return {"tokens": [t.as_json() for t in tokens.list_tokens(db())]}

    @app.post(f"{API}/tokens", response_model=models.TokenCreated, status_code=201, tags=["tokens"],
              responses=_ERRORS)
    def post_token(body: models.TokenCreate, who: Principal = Depends(admin)) -> dict[str, Any]:
        """A new token; the answer is the only place its secret ever appears."""
        try:
            secret = tokens.create_token(db(), body.name, body.role)
        except InputError as exc:
            text = str(exc)
            field = "role" if text.startswith("--role") else "name"
            raise FieldError(text.replace("--role", "role").replace("--name", "name"), field) from None
        return {"name": body.name, "role": body.role, "token": secret}

    @app.delete(f"{API}/tokens/{{name}}", response_model=models.TokenInfo, tags=["tokens"], responses=_ERRORS)
    def delete_token(name: str, who: Principal = Depends(admin)) -> dict[str, Any]:
        """Revoke a token (idempotent); its row stays for the record."""
        try:
            tokens.revoke_token(db(), name)
        except InputError as exc:
            raise NotFound(str(exc)) from None
        found = next(t for t in tokens.list_tokens(db()) if t.name == name)
        return found.as_json()

    app.include_router(page.router)
    return app
