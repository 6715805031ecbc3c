"""The decisions whose reward window is open, by ``event_id``, by session and by close time.

Closing order is deterministic: by close time, then by decision arrival
(``OpenDecision.seq``), which a heap of ``(close_at, seq, event_id)`` gives.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from datetime import datetime

from join_service.join_state import OpenDecision


class OpenWindows:
    """Open decisions, indexed for attribution (by id, by session) and for closing.

    >>> from datetime import UTC, datetime, timedelta
    >>> from schemas import Context, DecisionEvent
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> def decided(event_id, seq):
    ...     decision = DecisionEvent(
    ...         event_id=event_id, decision_point="home", timestamp=t0,
    ...         context=Context(session_id="s1"), persona="visitor", actions=[],
    ...         chosen_index=0, probabilities=[], model_version="v1")
    ...     return OpenDecision(decision, seq, t0 + timedelta(seconds=20), activated=True)
    >>> windows = OpenWindows([decided("d2", 2), decided("d1", 1)])
    >>> [o.decision.event_id for o in windows.of_session("s1")]
    ['d2', 'd1']
    >>> [o.decision.event_id for o in windows.pop_due(t0 + timedelta(seconds=20))], len(windows)
    (['d1', 'd2'], 0)
    """

    def __init__(self, opened: Iterable[OpenDecision] = ()) -> None:
        self._by_id: dict[str, OpenDecision] = {}
        self._by_session: dict[str, dict[str, OpenDecision]] = {}
        self._close_heap: list[tuple[datetime, int, str]] = []
        for decision in opened:
            self.add(decision)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._by_id

    def __iter__(self) -> Iterator[OpenDecision]:
        """In arrival order (what a snapshot stores)."""
        return iter(self._by_id.values())

    def add(self, opened: OpenDecision) -> None:
        decision = opened.decision
        event_id = decision.event_id
        self._by_id[event_id] = opened
        session_id = decision.context.session_id
        if session_id is not None:
            self._by_session.setdefault(session_id, {})[event_id] = opened
        heapq.heappush(self._close_heap, (opened.close_at, opened.seq, event_id))

    def get(self, event_id: str) -> OpenDecision | None:
        return self._by_id.get(event_id)

    def of_session(self, session_id: str) -> Iterable[OpenDecision]:
        """The session's open decisions, in arrival order."""
        of_session = self._by_session.get(session_id)
        return () if of_session is None else of_session.values()

    def next_close(self) -> datetime | None:
        """The earliest close time of an open window (``None`` when none is open)."""
        return self._close_heap[0][0] if self._close_heap else None

    def pop_due(self, now: datetime) -> list[OpenDecision]:
        """Remove and return the decisions whose window closes at or before ``now``, in order."""
        due: list[OpenDecision] = []
        heap = self._close_heap
        while heap and heap[0][0] <= now:
            _, _, event_id = heapq.heappop(heap)
            opened = self._by_id.pop(event_id)
            session_id = opened.decision.context.session_id
            if session_id is not None:
                of_session = self._by_session[session_id]
                del of_session[event_id]
                if not of_session:
                    del self._by_session[session_id]
            due.append(opened)
        return due
