"""The join's bounded memory of the recent past: closed decisions and seen follow-up ids.

Memory is what lets the join say *late* instead of *orphaned* (the decision is
known, its window has closed) and *duplicate* instead of *new*. It is bounded by
event time, not by count, so it holds what a window's worth of traffic needs:
a closed decision is kept for one more window after it closed, a follow-up's
own id for as long as the join chose when it was first seen.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from datetime import datetime

from join_service.join_state import ClosedDecision, FollowUp
from schemas import OutcomeEvent


class ClosedDecisions:
    """Recently closed decisions by ``event_id`` and by session, forgotten at ``forget_at``.

    ``forget_at`` values must not decrease from one :meth:`add` to the next (the
    join uses the stream time of closing plus a memory that only grows).

    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> s20, s40 = t0 + timedelta(seconds=20), t0 + timedelta(seconds=40)
    >>> closed = ClosedDecisions([ClosedDecision("d1", t0, s20, s40, "s1")])
    >>> "d1" in closed, closed.session_has_decision_at_or_before("s1", s20)
    (True, True)
    >>> closed.forget(s40); "d1" in closed
    False
    """

    def __init__(self, closed: Iterable[ClosedDecision] = ()) -> None:
        self._by_id: dict[str, ClosedDecision] = {}
        self._by_session: dict[str, dict[str, ClosedDecision]] = {}
        self._order: deque[ClosedDecision] = deque()
        for decision in closed:
            self.add(decision)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._by_id

    def __iter__(self) -> Iterator[ClosedDecision]:
        """In closing order (what a snapshot stores)."""
        return iter(self._order)

    def add(self, closed: ClosedDecision) -> None:
        self._by_id[closed.event_id] = closed
        if closed.session_id is not None:
            self._by_session.setdefault(closed.session_id, {})[closed.event_id] = closed
        self._order.append(closed)

    def session_has_decision_at_or_before(self, session_id: str, time: datetime) -> bool:
        """Whether a remembered closed decision of the session was made at or before ``time``:
        a session outcome at ``time`` would have counted for it had it come in time."""
        of_session = self._by_session.get(session_id)
        return of_session is not None and any(c.start <= time for c in of_session.values())

    def knows(self, follow_up: FollowUp) -> bool:
        """Whether the decision a follow-up belongs to is remembered as closed (so it is late).

        By ``event_id`` that decision is named; a session outcome belongs to a closed
        decision of its session made at or before the outcome.
        """
        if isinstance(follow_up, OutcomeEvent) and follow_up.event_id is None:
            return follow_up.session_id is not None and self.session_has_decision_at_or_before(
                follow_up.session_id, follow_up.timestamp
            )
        return follow_up.event_id in self._by_id

    def forget(self, now: datetime) -> None:
        """Drop the decisions whose memory ends at or before ``now``."""
        order = self._order
        while order and order[0].forget_at <= now:
            closed = order.popleft()
            event_id = closed.event_id
            del self._by_id[event_id]
            if closed.session_id is not None:
                of_session = self._by_session[closed.session_id]
                del of_session[event_id]
                if not of_session:
                    del self._by_session[closed.session_id]


class SeenIds:
    """Own ids of follow-ups (outcome, reward, activation ids) seen recently, for duplicates.

    ``forget_at`` values must not decrease from one call to the next, which holds
    because the join computes them as stream time plus a memory that only grows.

    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> seen = SeenIds()
    >>> seen.first_time("outcome", "o1", t0), seen.first_time("outcome", "o1", t0)
    (True, False)
    >>> seen.forget(t0); seen.first_time("outcome", "o1", t0)
    True
    """

    def __init__(self, entries: Iterable[tuple[datetime, str, str]] = ()) -> None:
        self._forget_at: dict[tuple[str, str], datetime] = {}
        self._order: deque[tuple[datetime, str, str]] = deque()
        for forget_at, kind, own_id in entries:
            self.first_time(kind, own_id, forget_at)

    def __iter__(self) -> Iterator[tuple[datetime, str, str]]:
        """``(forget_at, kind, id)`` in the order they were seen (what a snapshot stores)."""
        return iter(self._order)

    def first_time(self, kind: str, own_id: str, forget_at: datetime) -> bool:
        """Remember ``(kind, own_id)`` until ``forget_at``; ``False`` if it is already known."""
        key = (kind, own_id)
        if key in self._forget_at:
            return False
        self._forget_at[key] = forget_at
        self._order.append((forget_at, kind, own_id))
        return True

    def forget(self, now: datetime) -> None:
        """Drop the ids whose memory ends at or before ``now``."""
        order = self._order
        while order and order[0][0] <= now:
            _, kind, own_id = order.popleft()
            del self._forget_at[kind, own_id]
