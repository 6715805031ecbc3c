"""Stream time for a quiet stream: how runners close windows when no events arrive.

The join's clock is event time (the largest event time seen). When traffic
stops, runners move it on by the wall-clock time elapsed since the last event
arrived, measured on a monotonic clock, instead of jumping to the wall-clock
date: producers' clocks may differ from the runner's, and a replay of an old log
must not close every window at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta


def idle_stream_time(
    stream_time: datetime, last_arrival_monotonic: float, now_monotonic: float
) -> datetime:
    """Stream time for an idle stream: stream time at the last arrival plus the time since.

    Runners pass readings of one monotonic clock; a clock that seems to run
    backwards moves nothing.

    >>> from datetime import UTC, datetime
    >>> idle_stream_time(datetime(2026, 1, 1, tzinfo=UTC), 100.0, 103.5).isoformat()
    '2026-01-01T00:00:03.500000+00:00'
    >>> idle_stream_time(datetime(2026, 1, 1, tzinfo=UTC), 100.0, 99.0).isoformat()
    '2026-01-01T00:00:00+00:00'
    """
    return stream_time + timedelta(seconds=max(0.0, now_monotonic - last_arrival_monotonic))
