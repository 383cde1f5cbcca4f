"""Time stamps as the catalog stores them (on :mod:`skyscan.timestamps`).

Stored stamps are UTC text with a trailing ``Z``, so that text order is time order and SQL can compare them.
"""

from __future__ import annotations

from datetime import timedelta

from skyscan.errors import InputError
from skyscan.reco import untrusted
from skyscan.timestamps import iso_z as event_time_key
from skyscan.timestamps import parse_stamp, utcnow

__all__ = ["event_time_key", "parse_since", "parse_stamp", "retry_time", "utcnow"]


def parse_since(text: str) -> str:
    """``--since`` (a date or an ISO 8601 time, UTC unless stated) as a stored event-time key."""
    try:
        when = parse_stamp(text)
    except ValueError:
        raise InputError(f"--since: not a date or ISO 8601 time: {untrusted.shown(text)}") from None
    except OverflowError:  # a time-zone offset at the edge of the datetime range
        raise InputError(f"--since: {untrusted.shown(text)} is out of range") from None
    if not untrusted.TIME_MIN <= when < untrusted.TIME_MAX:
        raise InputError(f"--since: {untrusted.shown(text)} is outside the accepted range "
                         f"{untrusted.TIME_MIN:%Y-%m-%d} to {untrusted.TIME_MAX:%Y-%m-%d} UTC")
    return event_time_key(when)


def retry_time(now: str, delay_seconds: float) -> str:
    """The stamp ``delay_seconds`` (s) after the stamp ``now``: when a failed attempt may be retried."""
    return utcnow(parse_stamp(now) + timedelta(seconds=delay_seconds))
