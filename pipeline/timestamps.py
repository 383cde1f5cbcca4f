"""UTC time stamps as skyscan writes them everywhere: ISO 8601 text with a trailing ``Z``.

One helper for every file, log and database row, so that the same instant is always spelled the same way and
text order is time order. Naive datetimes are taken as UTC.
"""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["iso_z", "parse_stamp", "utcnow"]


def _utc(t: datetime) -> datetime:
    return (t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def utcnow(now: datetime | None = None) -> str:
    """``now`` (default: the current time) to the second, e.g. ``2026-11-24T12:00:00Z``."""
    return _utc(now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_z(t: datetime) -> str:
    """``t`` with microseconds, e.g. ``2026-03-14T15:09:26.123456Z`` (event times)."""
    return _utc(t).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_stamp(text: str) -> datetime:
    """Inverse of :func:`utcnow` and :func:`iso_z` (any ISO 8601 time; UTC unless it says otherwise)."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    return _utc(datetime.fromisoformat(value))
