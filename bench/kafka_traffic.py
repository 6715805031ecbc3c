"""Generated traffic for ``bench/kafka.py``: decisions, window-closing ticks, and appends
with a bounded number in flight, all in event time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from learnloop.kafka import codec
from learnloop.kafka.sink import KafkaEventSink
from learnloop.kafka.topics import partition_of
from schemas.events import DecisionEvent, OutcomeEvent
from schemas.features import Action, Context

DP = "home_products"  # the shipped default: 4 actions, 20 s window
ACTIONS = [Action(id=a) for a in ("category1", "category2", "bestsellers", "trending")]
WINDOW = timedelta(seconds=20)


class Clockwork:
    """Event time for the generated traffic: always after the last tick, so no event is late."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def after(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def decision(event_id: str, session: str, at: datetime) -> DecisionEvent:
    return DecisionEvent(
        event_id=event_id,
        timestamp=at,
        decision_point=DP,
        context=Context(session_id=session, features={"page": "home", "hour": at.hour}),
        persona="visitor",
        actions=ACTIONS,
        chosen_index=hash(event_id) % len(ACTIONS),
        probabilities=[0.25] * 4,
        model_version="0",
    )


def ticks(partitions: Iterable[int], count: int, at: datetime) -> list[OutcomeEvent]:
    """One session-only outcome of an unmapped type per partition: it moves that
    partition's stream time to ``at`` and so closes every window that ends before it."""
    wanted, n = set(partitions), 0
    found: dict[int, str] = {}
    while not wanted <= found.keys():
        session = f"tick-{n}"
        found.setdefault(partition_of(session, count), session)
        n += 1
    return [
        OutcomeEvent(
            outcome_id=f"tick-{uuid.uuid4().hex}", session_id=found[p], type="tick", timestamp=at
        )
        for p in sorted(wanted)
    ]


async def append_all(sink: KafkaEventSink, events: list, concurrency: int) -> None:  # type: ignore[type-arg]
    """Append ``events`` in order of submission, ``concurrency`` appends in flight."""
    queue = iter(events)

    async def worker() -> None:
        for event in queue:
            await sink.append([codec.to_append(event)])

    await asyncio.gather(*(worker() for _ in range(concurrency)))
