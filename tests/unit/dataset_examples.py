"""Joined examples for the dataset tests: nested context, action features, outcomes,
several decision points and days, the optional fields set on some rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.events import DecisionEvent, JoinedExample, OutcomeEvent
from schemas.features import Action, Context

START = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)


def joined(i: int, *, point: str | None = None, when: datetime | None = None) -> JoinedExample:
    """The ``i``-th example: three actions, rewards 0/1/2, two points, rows every 10 min."""
    when = when or START + timedelta(minutes=10 * i)
    point = point or ("home" if i % 3 else "checkout")
    chosen = i % 3
    probabilities = [[0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.25, 0.25, 0.5]][chosen]
    decision = DecisionEvent(
        event_id=f"ev-{i}",
        timestamp=when,
        decision_point=point,
        context=Context(
            user_id=f"u{i % 4}" if i % 2 else None,
            session_id=f"s{i}",
            features={
                "page": "home",
                "hour": float(i % 24),
                "geo": {"region": "eu", "vip": i % 2 == 0},
            },
        ),
        persona=["visitor", "builder"][i % 2],
        actions=[
            Action(id="bestsellers"),
            Action(id="trending", features={"new": True, "price": 9.5}),
            Action(id="deals", features={"tag": "sale"}),
        ],
        chosen_index=chosen,
        probabilities=probabilities,
        model_version=f"v{i // 5}",
        arm="baseline" if i % 7 == 0 else "learned",
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        if i % 5 == 0
        else None,
    )
    outcomes = (
        [
            OutcomeEvent(
                outcome_id=f"o-{i}",
                event_id=f"ev-{i}",
                type="click",
                value=1.0,
                timestamp=when + timedelta(seconds=3),
            )
        ]
        if chosen
        else []
    )
    return JoinedExample(
        event_id=f"ev-{i}",
        timestamp=when + timedelta(seconds=20),
        decision=decision,
        outcomes=outcomes,
        reward=float(chosen),
        close_reason="outcome" if outcomes else "default",
        late_outcomes=i % 2,
        traceparent=decision.traceparent,
    )


def examples(n: int) -> list[JoinedExample]:
    return [joined(i) for i in range(n)]
