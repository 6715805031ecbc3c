"""A recorded stream of join inputs for the Kafka join tests: deterministic (seeded).

A few hundred decisions over a dozen sessions (and some without a session), with
outcomes by ``event_id`` and by ``session_id``, outcomes of unmapped types, late
outcomes, outcomes seen before their decision (clock skew), duplicates, direct
rewards and deferred activations (one activated, some never), ending with one
far-future *tick* per partition (a session outcome of an unmapped type) so that
every window closes by event time in every partition.

Kafka keeps one stream time per partition, the embedded join one for the whole
log. The stream avoids the cases where that difference is visible on purpose:
outcomes are either clearly inside their window or clearly late (by more than
the longest quiet gap of any partition, which :func:`recorded_stream` checks),
and an outcome seen before its decision only names decisions without a session
(the routing edge of docs/distributed.md).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from learnloop.kafka.topics import join_key, partition_of
from schemas import (
    ActivationEvent,
    DecisionEvent,
    DecisionPointConfig,
    JoinedExample,
    JoinInput,
    OutcomeEvent,
    RewardEvent,
)

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
CONFIGS = [
    DecisionPointConfig(name="home_products"),  # 20 s window, max, basket_add 3 / detail_view 1
    DecisionPointConfig(
        name="checkout_layout",
        window_seconds=10.0,
        aggregation="sum",
        reward_map={"purchase": 5.0, "basket_add": 1.0},
    ),
]
WINDOW = {c.name: c.window_seconds for c in CONFIGS}
OPEN_MARGIN = 4.0  # an outcome counts only when stamped this long before its window closes
LATE_MARGIN = 6.0  # ... and is late only this long after it closed
TYPES = ["basket_add", "detail_view", "purchase", "share"]  # share: mapped nowhere

Signature = tuple[float, str, tuple[str, ...]]


@dataclass
class _Decision:
    event: DecisionEvent
    opened: float
    close: float
    key: str
    outcomes: list[OutcomeEvent] = field(default_factory=list)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=round(seconds, 3))


def recorded_stream(seed: int = 11, decisions: int = 300, partitions: int = 2) -> list[JoinInput]:
    """The stream, in arrival order."""
    rng = random.Random(seed)
    sessions = [f"sess-{n}" for n in range(12)]
    made: list[_Decision] = []
    deferred: list[_Decision] = []
    events: list[JoinInput] = []
    t = 0.0
    counter = 0

    def new_id(prefix: str) -> str:
        nonlocal counter
        counter += 1
        return f"{prefix}{counter}"

    def decide(now: float, session: str | None, activated: bool = True) -> _Decision:
        point = "home_products" if rng.random() < 0.7 else "checkout_layout"
        event = DecisionEvent(
            event_id=new_id("d"),
            timestamp=_at(now),
            decision_point=point,
            context={"session_id": session, "features": {"page": "home"}},
            persona="visitor",
            actions=[{"id": "a"}, {"id": "b"}],
            chosen_index=rng.randrange(2),
            probabilities=[0.5, 0.5],
            model_version="0",
            activated=activated,
        )
        opened = round(now, 3)
        return _Decision(event, opened, opened + WINDOW[point], join_key(event))

    def clearly_open(d: _Decision, now: float) -> bool:
        return now < d.close - OPEN_MARGIN

    def clearly_closed(d: _Decision, now: float) -> bool:
        return now > d.close + LATE_MARGIN

    def outcome(now: float, **ids: str | None) -> OutcomeEvent:
        return OutcomeEvent(
            outcome_id=new_id("o"), type=rng.choice(TYPES), timestamp=_at(now), **ids
        )

    while len(made) < decisions:
        t += rng.uniform(0.05, 0.3)
        roll = rng.random()
        recent = [d for d in made[-40:] if d.event.activated or d in deferred]
        open_now = [d for d in recent if clearly_open(d, t)]
        closed_now = [d for d in made[-80:] if clearly_closed(d, t)]
        if roll < 0.33 or not open_now:
            session = rng.choice(sessions) if rng.random() < 0.75 else None
            if session is None and rng.random() < 0.15:
                # Clock skew: the outcome is seen (and stamped) just before its decision.
                d = decide(t, None)
                events.append(outcome(t - 0.4, event_id=d.event.event_id))
            else:
                d = decide(t, session, activated=rng.random() > 0.06)
                if not d.event.activated:
                    deferred.append(d)
            events.append(d.event)
            made.append(d)
        elif roll < 0.63:
            d = rng.choice(open_now)
            both = d.event.context.session_id if rng.random() < 0.2 else None
            events.append(outcome(t, event_id=d.event.event_id, session_id=both))
        elif roll < 0.78:
            session = rng.choice(sessions)
            mine = [d for d in made[-80:] if d.event.context.session_id == session]
            if mine and all(clearly_open(d, t) or clearly_closed(d, t) for d in mine):
                events.append(outcome(t, session_id=session))
        elif roll < 0.82 and closed_now:
            d = rng.choice(closed_now)
            stamped = t if rng.random() < 0.5 else d.opened + 1.0  # arrives late either way
            events.append(outcome(stamped, event_id=d.event.event_id))
        elif roll < 0.86:
            d = rng.choice(open_now)
            value = round(rng.uniform(0, 4), 2)
            events.append(
                RewardEvent(reward_id=new_id("r"), event_id=d.event.event_id, value=value,
                            timestamp=_at(t))
            )  # fmt: skip
        elif roll < 0.90:
            waiting = [d for d in deferred if clearly_open(d, t)]
            if waiting and rng.random() < 0.5:
                d = waiting[0]
                deferred.remove(d)
                events.append(
                    ActivationEvent(activation_id=new_id("a"), event_id=d.event.event_id,
                                    timestamp=_at(t))
                )  # fmt: skip
        elif roll < 0.95:
            earlier = [e for e in events[-30:] if isinstance(e, OutcomeEvent)]
            if earlier:
                events.append(rng.choice(earlier))  # a client retry: same outcome_id
        else:
            d = rng.choice(open_now)
            events.append(d.event)  # a retried decision: same event_id

    _check_partition_gaps(events, made, partitions)
    end = t + 86_400.0
    for n, session in enumerate(tick_sessions(partitions)):
        events.append(
            OutcomeEvent(outcome_id=f"tick-{n}", session_id=session, type="tick",
                         timestamp=_at(end))
        )  # fmt: skip
    return events


def tick_sessions(partitions: int) -> list[str]:
    """One session id per partition number (``partition_of`` the i-th is i)."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        found.setdefault(partition_of(f"tick-{n}", partitions), f"tick-{n}")
        n += 1
    return [found[p] for p in range(partitions)]


def _check_partition_gaps(events: list[JoinInput], made: list[_Decision], partitions: int) -> None:
    """Every partition sees an event at least every ``LATE_MARGIN - 1`` s of event time, so
    that its own stream time never lags the global one by more than the stream's margins."""
    keys = {d.event.event_id: d.key for d in made}
    last: dict[int, float] = {}
    for event in events:
        if isinstance(event, DecisionEvent):
            key = keys[event.event_id]
        elif isinstance(event, OutcomeEvent) and event.event_id is None:
            key = join_key(event)
        else:
            assert event.event_id is not None
            key = keys.get(event.event_id, event.event_id)
        partition = partition_of(key, partitions)
        now = (event.timestamp - T0).total_seconds()
        if partition in last:
            gap = now - last[partition]
            assert gap < LATE_MARGIN - 1, f"partition {partition} is quiet for {gap:.1f} s"
        last[partition] = max(now, last.get(partition, now))
    assert len(last) == partitions


def signature(examples: list[JoinedExample]) -> dict[str, Signature]:
    """What must agree between the modes: event_id -> (reward, close reason, outcome ids)."""
    return {
        e.event_id: (e.reward, e.close_reason, tuple(o.outcome_id for o in e.outcomes))
        for e in examples
    }
