"""Event time of incoming events: the client's timestamp, or now.

Past timestamps are accepted (replays and simulators send hours of traffic in
seconds); timestamps too far in the future are refused, because the join's
stream time is the largest event time seen and one bad clock would close every
open reward window early.

>>> from datetime import UTC, datetime, timedelta
>>> now = datetime(2026, 1, 1, tzinfo=UTC)
>>> event_time(None, now, 300) == now
True
>>> event_time(now - timedelta(days=3), now, 300) < now
True
>>> event_time(now + timedelta(minutes=10), now, 300)
Traceback (most recent call last):
learnloop.errors.InvalidInput: timestamp 2026-01-01T00:10:00Z is 600 s ahead of the server clock \
(at most 300 s allowed): send the event time in UTC or with its timezone offset
"""

from __future__ import annotations

from datetime import datetime

from learnloop.errors import InvalidInput
from schemas.events import utc_now_iso


def event_time(timestamp: datetime | None, now: datetime, max_future_seconds: float) -> datetime:
    """``timestamp`` if given and not more than ``max_future_seconds`` ahead of ``now``."""
    if timestamp is None:
        return now
    ahead = (timestamp - now).total_seconds()
    if ahead > max_future_seconds:
        raise InvalidInput(
            f"timestamp {utc_now_iso(timestamp)} is {ahead:.0f} s ahead of the server clock "
            f"(at most {max_future_seconds:.0f} s allowed): send the event time in UTC or "
            "with its timezone offset"
        )
    return timestamp
