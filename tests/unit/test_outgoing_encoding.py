"""The outgoing document: how a detected change becomes the POST /events body."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from painchain_connector.schemas.event import iso_utc


def test_timestamps_are_sent_in_utc_with_milliseconds_whatever_their_zone():
    at = datetime(2026, 1, 2, 3, 4, 5, 678999, tzinfo=timezone.utc)
    assert iso_utc(at) == "2026-01-02T03:04:05.678Z"  # truncated, never rounded into the next second
    assert iso_utc(at.replace(tzinfo=None)) == "2026-01-02T03:04:05.678Z"  # naive means UTC
    assert iso_utc(at.astimezone(timezone(timedelta(hours=-5, minutes=-30)))) == "2026-01-02T03:04:05.678Z"
    assert iso_utc(datetime(2026, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1)))) == "2027-01-01T00:30:00.000Z"
