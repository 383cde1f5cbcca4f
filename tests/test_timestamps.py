"""The one UTC time-stamp format: whole seconds or microseconds, trailing Z, naive times taken as UTC."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from skyscan.timestamps import iso_z, parse_stamp, utcnow

CET = timezone(timedelta(hours=1))


def test_seconds_stamp_is_utc_with_z() -> None:
    assert utcnow(datetime(2026, 3, 14, 16, 9, 26, 999999, tzinfo=CET)) == "2026-03-14T15:09:26Z"
    assert utcnow(datetime(2026, 3, 14, 15, 9, 26)) == "2026-03-14T15:09:26Z"  # naive = UTC


def test_microsecond_stamp_and_round_trip() -> None:
    t = datetime(2026, 3, 14, 15, 9, 26, 123456, tzinfo=timezone.utc)
    assert iso_z(t) == "2026-03-14T15:09:26.123456Z"
    assert parse_stamp(iso_z(t)) == t
    assert parse_stamp("2026-03-14T16:09:26+01:00") == t.replace(microsecond=0)


def test_current_time_sorts_as_text() -> None:
    first = utcnow()
    assert len(first) == 20 and first.endswith("Z") and utcnow() >= first
