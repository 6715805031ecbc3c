"""When a loop's logs begin and end, for ``GET logs/properties``, without a write per rank.

Each rank notes its decision's time here (:func:`note_ranked`); the first time of a
loop is stored once, the last at most every :data:`WRITE_EVERY_SECONDS` per process, in
the :class:`~learnloop.personalizer_store.PersonalizerStore` (``state`` / ``logs``), so
every API worker and replica answers the same range. ``DELETE logs`` moves the start.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Final

from fastapi import Request

from learnloop.personalizer_store import PersonalizerStore

WRITE_EVERY_SECONDS: Final = 5.0


class LogSpan:
    """One per app: remembers what it last wrote per loop."""

    def __init__(self, store: PersonalizerStore) -> None:
        self.store = store
        self._written: dict[str, tuple[float, str]] = {}  # loop -> (monotonic, last iso)

    async def note(self, loop: str, at: datetime) -> None:
        stamp = at.isoformat()
        now = time.monotonic()
        written = self._written.get(loop)
        if written is not None and (now - written[0] < WRITE_EVERY_SECONDS or stamp <= written[1]):
            return
        self._written[loop] = (now, stamp)
        span = await self.store.get(loop, "state", "logs") or {}
        span.setdefault("from", stamp)
        if stamp > span.get("to", ""):
            span["to"] = stamp
        await self.store.put(loop, "state", "logs", span)

    async def span(self, loop: str) -> tuple[datetime, datetime] | None:
        """The first and last decision time logged (after the last clear), if any."""
        span = await self.store.get(loop, "state", "logs")
        if not span or "from" not in span:
            return None
        return datetime.fromisoformat(span["from"]), datetime.fromisoformat(span["to"])

    async def clear(self, loop: str, at: datetime) -> None:
        """``DELETE logs``: the logs begin again after ``at``."""
        self._written.pop(loop, None)
        await self.store.put(loop, "state", "logs", {"cleared": at.isoformat()})


def log_span(request: Request) -> LogSpan:
    """The app's :class:`LogSpan` (made on first use over the app's store)."""
    span: LogSpan | None = getattr(request.app.state, "personalizer_log_span", None)
    if span is None:
        span = LogSpan(request.app.state.personalizer)
        request.app.state.personalizer_log_span = span
    return span


async def note_ranked(request: Request, loop: str, at: datetime) -> None:
    await log_span(request).note(loop, at)
