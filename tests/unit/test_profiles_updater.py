"""The pure real-time updater: attribution, exactly once with a store, bounded memory, recovery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from learnloop.profile_updates import ProfileUpdater
from learnloop.profiles import MemoryProfileStore
from schemas import Action, Context
from schemas.events import DecisionEvent, OutcomeEvent
from schemas.profiles import Interaction

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def decision(
    eid: str, user: str | None, session: str | None, s: float = 0, category: str | None = None
) -> DecisionEvent:
    features = {"category": category} if category else {}
    return DecisionEvent(
        event_id=eid,
        timestamp=T0 + timedelta(seconds=s),
        decision_point="home",
        persona="unclassified",
        context=Context(user_id=user, session_id=session),
        actions=[Action(id="a", features=features)],
        chosen_index=0,
        probabilities=[1.0],
        model_version="0",
    )


def outcome(
    oid: str,
    kind: str,
    s: float = 1,
    eid: str | None = None,
    session: str | None = None,
    value: float | None = None,
) -> OutcomeEvent:
    return OutcomeEvent(
        outcome_id=oid,
        event_id=eid,
        session_id=session,
        type=kind,
        timestamp=T0 + timedelta(seconds=s),
        value=value,
    )


def summary(items: list[Interaction]) -> list[tuple[str, str, str, float | None]]:
    return [(i.interaction_id, i.user_id, i.kind, i.value) for i in items]


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        # by event id, by session: both reach the decision's user
        (
            [
                decision("e1", "u_a", "s1"),
                outcome("o1", "detail_view", eid="e1"),
                outcome("o2", "basket_add", session="s1", value=12.0),
            ],
            [
                ("session:u_a:s1", "u_a", "session", None),
                ("o1", "u_a", "detail_view", None),
                ("o2", "u_a", "basket_add", 12.0),
            ],
        ),
        # a second decision in the same session is not a new session
        (
            [decision("e1", "u_a", "s1"), decision("e2", "u_a", "s1", s=5)],
            [("session:u_a:s1", "u_a", "session", None)],
        ),
        # anonymous decisions and unknown outcome types change no profile
        (
            [
                decision("e1", None, "s1"),
                outcome("o1", "basket_add", eid="e1", value=3.0),
                decision("e2", "u_a", "s2"),
                outcome("o2", "click", eid="e2"),
            ],
            [("session:u_a:s2", "u_a", "session", None)],
        ),
        # a session outcome goes to the session's latest decision's user (a shared device)
        (
            [
                decision("e1", "u_a", "s1"),
                decision("e2", "u_b", "s1", s=2),
                outcome("o1", "detail_view", s=3, session="s1"),
            ],
            [
                ("session:u_a:s1", "u_a", "session", None),
                ("session:u_b:s1", "u_b", "session", None),
                ("o1", "u_b", "detail_view", None),
            ],
        ),
        # an outcome read before its decision waits for it
        (
            [outcome("o1", "purchase", s=1, eid="e1", value=40.0), decision("e1", "u_a", None)],
            [("o1", "u_a", "purchase", 40.0)],
        ),
    ],
    ids=["event-and-session", "same-session", "ignored", "session-latest-user", "held"],
)
def test_attribution(
    events: list[object], expected: list[tuple[str, str, str, float | None]]
) -> None:
    updater = ProfileUpdater()
    out: list[Interaction] = []
    for event in events:
        out += updater.on_event(event)
    assert summary(out) == expected


def test_purchase_counts_the_sessions_basket_as_items_in_its_category() -> None:
    up = ProfileUpdater()
    up.on_decision(decision("e1", "u_a", "s1", category="tea"))
    up.on_decision(decision("e2", "u_a", "s1", s=1, category="kits"))
    up.on_outcome(outcome("b1", "basket_add", s=2, eid="e1", value=5.0))
    up.on_outcome(outcome("b2", "basket_add", s=3, eid="e2", value=7.0))
    (buy,) = up.on_outcome(outcome("p1", "purchase", s=4, session="s1", value=12.0))
    assert (buy.items, buy.category, buy.value) == (2, "kits", 12.0)
    (again,) = up.on_outcome(outcome("p2", "purchase", s=5, session="s1", value=3.0))
    assert (again.items, again.category) == (1, None)


def test_memory_is_bounded_by_the_event_time_horizon() -> None:
    up = ProfileUpdater(horizon_seconds=60, hold_seconds=5)
    for i in range(1000):
        up.on_decision(decision(f"e{i}", f"u_{i}", f"s{i}", s=i))
        up.on_outcome(outcome(f"orphan{i}", "detail_view", s=i, eid=f"missing{i}"))
    assert up.size < 3 * 62 + 7
    # a decision past the horizon no longer attributes
    assert up.on_outcome(outcome("late", "detail_view", s=1000, eid="e1")) == []


async def test_replaying_the_streams_counts_every_outcome_once() -> None:
    events: list[object] = []
    for u in range(5):
        events.append(decision(f"e{u}", f"u_{u}", f"s{u}", s=u))
        events += [
            outcome(f"o{u}-{k}", "basket_add", s=u + k, eid=f"e{u}", value=1.0) for k in range(3)
        ]
    store = MemoryProfileStore()
    up = ProfileUpdater()
    first = [i for e in events for i in up.on_event(e)]
    assert await store.apply(first) == 5 + 15
    # a restart from an old checkpoint offers everything again: nothing counts twice
    replay = ProfileUpdater()
    assert await store.apply([i for e in events for i in replay.on_event(e)]) == 0
    for u in range(5):
        p = await store.get(f"u_{u}")
        assert p is not None and (p.sessions, p.basket_adds, p.basket_value) == (1, 3, 3.0)


def test_restore_from_a_snapshot_continues_identically() -> None:
    events: list[object] = [
        decision("e1", "u_a", "s1", category="tea"),
        outcome("b1", "basket_add", s=1, eid="e1", value=5.0),
        outcome("early", "detail_view", s=2, eid="e2"),
        decision("e2", "u_b", "s2", s=3),
        decision("e3", "u_a", "s1", s=4),
        outcome("p1", "purchase", s=5, session="s1", value=9.0),
        outcome("v", "detail_view", s=6, session="s2"),
    ]
    for cut in range(len(events) + 1):
        whole = ProfileUpdater()
        expected = [i for e in events for i in whole.on_event(e)]
        head = ProfileUpdater()
        got = [i for e in events[:cut] for i in head.on_event(e)]
        resumed = ProfileUpdater.restore(head.snapshot())
        got += [i for e in events[cut:] for i in resumed.on_event(e)]
        assert got == expected, f"cut at {cut}"
        assert resumed.snapshot() == whole.snapshot()


def test_outcomes_of_anonymous_decisions_are_dropped_not_held() -> None:
    up = ProfileUpdater()
    for i in range(100):
        up.on_decision(decision(f"e{i}", None, f"s{i}", s=i))
        assert up.on_outcome(outcome(f"o{i}", "basket_add", s=i + 1, eid=f"e{i}")) == []
    assert up.size == 100  # the anonymous decisions' ids only, no held outcome
    restored = ProfileUpdater.restore(up.snapshot())
    assert restored.size == 100 and restored.snapshot() == up.snapshot()
