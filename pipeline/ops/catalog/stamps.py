"""Time stamps as the catalog stores them, and the one UTC time-stamp helper of ``skyscan.ops``.

Stored stamps are UTC text with a trailing ``Z``, so that text order is time order and SQL can compare them.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from skyscan.errors import InputError

__all__ = ["event_time_key", "parse_since", "parse_stamp", "retry_time", "utcnow"]


def utcnow(now: datetime | None = None) -> str:
    """The catalog's time stamps: UTC, whole seconds, trailing Z (sorts as text)."""
    t = now or datetime.now(timezone.utc)
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str) -> datetime:
    """Inverse of :func:`utcnow` (also reads the event times' microseconds)."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    t = datetime.fromisoformat(value)
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc)


def event_time_key(t: datetime) -> str:
    """Event times as stored: microseconds, so that text order is time order."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_since(text: str) -> str:
    """``--since`` (a date or an ISO 8601 time, UTC unless stated) as a stored event-time key."""
    try:
        return event_time_key(parse_stamp(text))
    except ValueError:
        raise InputError(f"--since: not a date or ISO 8601 time: {text!r}") from None


def retry_time(now: str, delay_seconds: float) -> str:
    """The stamp ``delay_seconds`` (s) after the stamp ``now``: when a failed attempt may be retried."""
    return utcnow(parse_stamp(now) + timedelta(seconds=delay_seconds))
