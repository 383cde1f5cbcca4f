"""The pydantic models of every request and response of the API (the OpenAPI document is generated from them).

Names are contracts (docs/service.md): change a field only with a new API version.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAX_CLASSIFIERS",
    "Alert",
    "AlertList",
    "AlertRevision",
    "ErrorBody",
    "Health",
    "Product",
    "ProductList",
    "Progress",
    "RescanRequest",
    "ScanCalibration",
    "ScanDocument",
    "ScanLinks",
    "ScanList",
    "SchedulerHealth",
    "SkyPoint",
    "SubmitRequest",
    "TokenCreate",
    "TokenCreated",
    "TokenInfo",
    "TokenList",
]

MAX_CLASSIFIERS = 25
Scalar = str | int | float | bool | None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ErrorBody(_Model):
    """Every error: one line naming the problem; ``field`` is the path of the offending field when there is one."""

    detail: str
    field: str | None = None


class SchedulerHealth(_Model):
    alive: bool
    running: int
    queued: int


class Health(_Model):
    status: str
    version: str
    database: str
    scheduler: SchedulerHealth


class SubmitRequest(_Model):
    event: dict[str, Any] = Field(description="A skyscan-event/1 object (docs/event-format.md).")
    config: dict[str, Any] | None = Field(None, description="A partial skyscan-config/1 merged over the service's.")
    priority: int = Field(0, ge=0, le=1000, description="0-1000; >= 100 is the realtime lane.")
    classifiers: dict[str, Scalar] | None = Field(None, description=f"At most {MAX_CLASSIFIERS} name: scalar pairs.")
    label: str | None = Field(None, max_length=200)
    force: bool = Field(False, description="A new scan even if the same revision and configuration has one.")


class RescanRequest(_Model):
    config: dict[str, Any] | None = None
    priority: int | None = Field(None, ge=0, le=1000)
    replace: bool = False


class Progress(_Model):
    stage: int
    nside: int
    done: int
    total: int


class SkyPoint(_Model):
    ra_deg: float
    dec_deg: float


class ScanLinks(_Model):
    self: str
    result: str
    products: str
    events: str
    rescan: str
    alert: str


class ScanCalibration(_Model):
    """The scan's automatic calibration (the service's ``calibration:`` block): its state, once done the 50% and
    90% 2*delta-llh levels found by resimulation, after a failure its reason."""

    state: str  # queued | calibrating | merging | done | failed
    levels: dict[str, float] | None = None
    error: str | None = None


class ScanDocument(_Model):
    scan_id: int
    state: str
    alert: str
    alert_id: int
    run_id: int
    event_id: int
    stream: str | None
    revision: int
    event_time: str
    priority: int
    classifiers: dict[str, Scalar]
    label: str | None
    config_digest: str | None
    backend: str | None
    attempts: int
    created: str
    queued: str | None
    started: str | None
    finished: str | None
    updated: str
    progress: list[Progress]
    eta_seconds: float | None
    submitted_by: str | None
    aborted_by: str | None
    replaced_by: int | None
    last_error: str | None
    best_fit: SkyPoint | None
    area_90_deg2: float | None
    wall_seconds: float | None
    links: ScanLinks
    calibration: ScanCalibration | None = None  # null: no automatic calibration asked for this scan


class ScanList(_Model):
    scans: list[ScanDocument]
    next_cursor: str | None


class Product(_Model):
    name: str
    content_type: str
    bytes: int


class ProductList(_Model):
    products: list[Product]


class AlertRevision(_Model):
    revision: int
    sha256: str
    received: str
    event_time: str
    stream: str | None
    latest: bool
    scans: list[ScanDocument]


class Alert(_Model):
    alert_id: int
    name: str
    run_id: int
    event_id: int
    first_seen: str
    revisions: list[AlertRevision]


class AlertSummary(_Model):
    alert_id: int
    name: str
    run_id: int
    event_id: int
    first_seen: str
    revisions: int
    latest_scan_id: int | None
    latest_state: str | None


class AlertList(_Model):
    alerts: list[AlertSummary]
    next_cursor: str | None


class TokenCreate(_Model):
    name: str = Field(min_length=1, max_length=64)
    role: str


class TokenCreated(_Model):
    name: str
    role: str
    token: str


class TokenInfo(_Model):
    name: str
    role: str
    created: str
    revoked: str | None


class TokenList(_Model):
    tokens: list[TokenInfo]
