"""Follow-ups that arrived before their decision, waiting out the clock-skew tolerance.

Producers write decisions and outcomes to different logs (and clients' clocks
differ), so an outcome, direct reward or activation may reach the join before
the decision it belongs to. :class:`HeldEvents` keeps such follow-ups for a
while of stream time, indexed by the decision's ``event_id`` or, for session
outcomes, by ``session_id``, so that the decision can collect them when it
arrives. Deadlines never decrease (stream time plus a hold time that only
grows), so a deque in arrival order is also the expiry order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from datetime import datetime

from join_service.join_state import HeldEvent
from schemas import OutcomeEvent


def _session_key(waiting: HeldEvent) -> str | None:
    """The session a held event is indexed by, or ``None`` if it is indexed by decision."""
    event = waiting.event
    if isinstance(event, OutcomeEvent) and event.event_id is None:
        return event.session_id
    return None


class HeldEvents:
    """Held follow-ups in deadline order, indexed by decision and by session.

    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> early = OutcomeEvent(outcome_id="o1", event_id="d1", type="basket_add", timestamp=t0)
    >>> held = HeldEvents()
    >>> held.add(HeldEvent(early, seq=1, since=t0, deadline=t0 + timedelta(seconds=2)))
    >>> len(held), [w.event.outcome_id for w in held.expire(t0 + timedelta(seconds=2))], len(held)
    (1, ['o1'], 0)
    """

    def __init__(self, waiting: Iterable[HeldEvent] = ()) -> None:
        self._queue: deque[HeldEvent] = deque()
        self._by_decision: dict[str, list[HeldEvent]] = {}
        self._by_session: dict[str, list[HeldEvent]] = {}
        self._count = 0
        for item in waiting:
            self.add(item)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[HeldEvent]:
        """The events still waiting, in deadline order (what a snapshot stores)."""
        return (w for w in self._queue if not w.done)

    def add(self, waiting: HeldEvent) -> None:
        """Hold one follow-up until its deadline (deadlines must not decrease)."""
        self._queue.append(waiting)
        self._count += 1
        session_id = _session_key(waiting)
        if session_id is not None:
            self._by_session.setdefault(session_id, []).append(waiting)
        else:
            event_id = waiting.event.event_id
            assert event_id is not None, "a follow-up is held by decision or by session"
            self._by_decision.setdefault(event_id, []).append(waiting)

    def take_for_decision(self, event_id: str) -> list[HeldEvent]:
        """Remove and return the follow-ups that name this decision by ``event_id``."""
        taken = self._by_decision.pop(event_id, None)
        if taken is None:
            return []
        for waiting in taken:
            waiting.done = True
        self._count -= len(taken)
        return taken

    def of_session(self, session_id: str) -> list[HeldEvent]:
        """Session outcomes held for a session; they stay held, as several decisions share them."""
        return self._by_session.get(session_id, [])

    def expire(self, now: datetime) -> list[HeldEvent]:
        """Remove and return the follow-ups whose deadline is at or before ``now``."""
        expired: list[HeldEvent] = []
        queue = self._queue
        while queue and queue[0].deadline <= now:
            waiting = queue.popleft()
            if waiting.done:
                continue
            waiting.done = True
            self._count -= 1
            session_id = _session_key(waiting)
            if session_id is not None:
                index, key = self._by_session, session_id
            else:
                index, key = self._by_decision, str(waiting.event.event_id)
            of_key = index[key]
            of_key.remove(waiting)
            if not of_key:
                del index[key]
            expired.append(waiting)
        return expired
