"""The join rule (join_service.window), rule by rule, as tables of input events.

Times are seconds after T0. Unless a case configures its own decision points,
every decision point has the defaults: a 20 s window, ``basket_add: 3``,
``detail_view: 1``, ``max`` aggregation, default reward 0, 2 s skew tolerance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from itertools import permutations

import pytest

from join_service.window import Join
from learnloop.errors import InvalidInput
from schemas import (
    Action,
    ActivationEvent,
    Context,
    DecisionEvent,
    DecisionPointConfig,
    JoinedExample,
    JoinInput,
    OutcomeEvent,
    RewardEvent,
)

# -- factory -----------------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EPSILON = timedelta(microseconds=1)
Points = Mapping[str, DecisionPointConfig] | None


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def decision(
    event_id: str, seconds: float, *, session: str | None = None,
    point: str = "home_products", activated: bool = True,
) -> DecisionEvent:  # fmt: skip
    return DecisionEvent(
        event_id=event_id, decision_point=point, timestamp=at(seconds),
        context=Context(session_id=session), persona="visitor",
        actions=[Action(id="a"), Action(id="b")], chosen_index=0, probabilities=[0.5, 0.5],
        model_version="v1", activated=activated,
    )  # fmt: skip


def outcome(
    outcome_id: str, time: float | datetime, type_: str = "basket_add", *,
    event_id: str | None = None, session: str | None = None, value: float | None = None,
) -> OutcomeEvent:  # fmt: skip
    return OutcomeEvent(
        outcome_id=outcome_id, event_id=event_id, session_id=session, type=type_, value=value,
        timestamp=time if isinstance(time, datetime) else at(time),
    )  # fmt: skip


def reward(reward_id: str, event_id: str, seconds: float, value: float) -> RewardEvent:
    return RewardEvent(reward_id=reward_id, event_id=event_id, value=value, timestamp=at(seconds))


def activation(activation_id: str, event_id: str, seconds: float) -> ActivationEvent:
    return ActivationEvent(activation_id=activation_id, event_id=event_id, timestamp=at(seconds))


def points(**settings: dict[str, object]) -> dict[str, DecisionPointConfig]:
    """Decision points by name, each with its settings (the rest default)."""
    return {n: DecisionPointConfig.model_validate({"name": n, **s}) for n, s in settings.items()}


def feed(join: Join, events: Iterable[JoinInput]) -> list[JoinedExample]:
    return [example for event in events for example in join.on_event(event)]


def run(events: Iterable[JoinInput], configs: Points = None) -> tuple[list[JoinedExample], Join]:
    """Feed every event, then advance stream time an hour to close every window."""
    join = Join(configs)
    emitted = feed(join, events)
    return emitted + join.advance(at(3600)), join


def rewards(examples: Iterable[JoinedExample]) -> dict[str, tuple[float, str]]:
    return {e.event_id: (e.reward, e.close_reason) for e in examples}


def check(
    events: list[JoinInput], configs: Points, expected: dict[str, tuple[float, str]],
    counters: dict[str, int],
) -> tuple[list[JoinedExample], Join]:  # fmt: skip
    """Run the events; the joined rewards and the named counters must be as expected."""
    emitted, join = run(events, configs)
    assert rewards(emitted) == expected
    stats = join.stats.model_dump()
    assert {name: stats[name] for name in counters} == counters
    assert len(emitted) == len({e.event_id for e in emitted}), "one joined example per decision"
    return emitted, join


# -- rule tables -------------------------------------------------------------------------------

D1 = decision("d1", 0, session="s1")
OUT, DEF, DIRECT = "outcome", "default", "direct"
SUM = points(home_products={"aggregation": "sum"})
FIRST = points(home_products={"aggregation": "first"})


@pytest.mark.parametrize(
    ("events", "configs", "expected", "counters"),
    [
        ([D1, outcome("o", 0, event_id="d1")], None, {"d1": (3, OUT)}, {"late": 0}),
        ([D1, outcome("o", at(20) - EPSILON, event_id="d1")], None, {"d1": (3, OUT)}, {"late": 0}),
        ([D1, outcome("o", 20, event_id="d1")], None, {"d1": (0, DEF)}, {"late": 1}),
        ([D1, outcome("o", 20, session="s1")], None, {"d1": (0, DEF)}, {"late": 1}),
        ([D1, outcome("o", at(20) - EPSILON, session="s1")], None, {"d1": (3, OUT)}, {}),
        ([D1, outcome("o", 31, event_id="d1")], None, {"d1": (0, DEF)}, {"late": 1}),
    ],
    ids=[
        "at-decision-time-counts", "end-minus-epsilon-counts", "at-window-end-is-late",
        "session-at-window-end-is-late", "session-end-minus-epsilon-counts", "after-end-is-late",
    ],
)  # fmt: skip
def test_window_boundary(
    events: list[JoinInput], configs: Points, expected: dict[str, tuple[float, str]],
    counters: dict[str, int],
) -> None:  # fmt: skip
    emitted, _ = check(events, configs, expected, counters)
    assert emitted[0].timestamp == at(20), "a joined example is stamped with its close time"


def test_window_closes_exactly_when_stream_time_reaches_its_end() -> None:
    join = Join()
    assert join.on_decision(D1) == []
    assert join.advance(at(20) - EPSILON) == []
    assert [e.event_id for e in join.advance(at(20))] == ["d1"]
    assert join.advance(at(40)) == []


@pytest.mark.parametrize(
    ("events", "configs", "expected", "counters"),
    [
        ([D1, outcome("o1", 1, "detail_view", event_id="d1"), outcome("o2", 2, event_id="d1"),
          outcome("o3", 3, "detail_view", event_id="d1")], None, {"d1": (3, OUT)}, {}),
        ([D1, outcome("o1", 1, "detail_view", event_id="d1"), outcome("o2", 2, event_id="d1"),
          outcome("o3", 3, "detail_view", event_id="d1")], SUM, {"d1": (5, OUT)}, {}),
        ([D1, outcome("o1", 1, "detail_view", event_id="d1"), outcome("o2", 2, event_id="d1")],
         FIRST, {"d1": (1, OUT)}, {}),
        ([D1, outcome("o1", 5, event_id="d1"), outcome("o2", 2, "detail_view", event_id="d1")],
         FIRST, {"d1": (1, OUT)}, {}),
        ([D1, outcome("o1", 2, event_id="d1"), outcome("o2", 2, "detail_view", event_id="d1")],
         FIRST, {"d1": (3, OUT)}, {}),
        ([D1], points(home_products={"default_reward": -0.5}), {"d1": (-0.5, DEF)}, {}),
        ([D1, outcome("o", 1, event_id="d1"), reward("r", "d1", 2, 7)], None,
         {"d1": (7, DIRECT)}, {"rewards": 1}),
        ([D1, reward("r1", "d1", 8, 2), reward("r2", "d1", 9, 1)], None, {"d1": (1, DIRECT)}, {}),
        ([D1, reward("r1", "d1", 8, 2), reward("r2", "d1", 5, 1)], None, {"d1": (2, DIRECT)}, {}),
        ([D1, reward("r1", "d1", 5, 2), reward("r2", "d1", 5, 1)], None, {"d1": (1, DIRECT)}, {}),
        ([D1, outcome("o", 1, event_id="d1"), reward("r", "d1", 20, 7)], None,
         {"d1": (3, OUT)}, {"late": 1}),
        ([D1, outcome("o", 1, "purchase", event_id="d1")], None, {"d1": (0, DEF)},
         {"unknown_type": 1, "outcomes": 1}),
        ([D1, outcome("o", 1, "purchase", event_id="d1")], points(home_products={
          "reward_map": {"purchase": 10}}), {"d1": (10, OUT)}, {"unknown_type": 0}),
        ([D1, outcome("o", 1, "basket_add", event_id="d1", value=99.0)], None,
         {"d1": (3, OUT)}, {}),
    ],
    ids=[
        "max", "sum", "first", "first-by-event-time-not-arrival", "first-tie-by-arrival",
        "default-reward", "direct-overrides-outcomes", "direct-latest-by-event-time",
        "direct-latest-even-if-it-arrived-first", "direct-tie-last-arrival-wins",
        "late-direct-reward-ignored", "unknown-type-ignored", "reward-map-from-config",
        "outcome-value-does-not-replace-mapped-reward",
    ],
)  # fmt: skip
def test_reward_rule(
    events: list[JoinInput], configs: Points, expected: dict[str, tuple[float, str]],
    counters: dict[str, int],
) -> None:  # fmt: skip
    check(events, configs, expected, counters)


def test_joined_example_lists_counted_outcomes_by_time_and_keeps_their_values() -> None:
    emitted, _ = run([
        D1, outcome("o1", 5, event_id="d1", value=99.0),
        outcome("o2", 2, "detail_view", session="s1"), outcome("o3", 3, "purchase", event_id="d1"),
        reward("r", "d1", 6, 1),
    ])  # fmt: skip
    (example,) = emitted
    assert [o.outcome_id for o in example.outcomes] == ["o2", "o1"]
    assert example.outcomes[1].value == 99.0
    assert (example.reward, example.close_reason, example.late_outcomes) == (1, DIRECT, 0)


SHORT = points(short={"window_seconds": 5})


@pytest.mark.parametrize(
    ("events", "configs", "expected", "counters"),
    [
        ([decision("a", 0, session="s1"), decision("e", 0, session="s1", point="short"),
          decision("c", 0, session="s2"), decision("b", 4, session="s1"),
          outcome("o", 6, session="s1"), decision("d", 8, session="s1")], SHORT,
         {"a": (3, OUT), "b": (3, OUT), "c": (0, DEF), "d": (0, DEF), "e": (0, DEF)},
         {"late": 0, "orphaned": 0}),
        ([decision("a", 0, session="s1", point="short"), outcome("o", 7, session="s1")], SHORT,
         {"a": (0, DEF)}, {"late": 1}),
        ([decision("a", 0, session="s1"), outcome("o", 1, session="s2")], None,
         {"a": (0, DEF)}, {"orphaned": 1}),
        ([decision("a", 0, session="s1"), outcome("o", 1, event_id="a", session="s2")], None,
         {"a": (3, OUT)}, {}),
        ([decision("a", 0), outcome("o", 1, "basket_add")], None, {"a": (0, DEF)},
         {"orphaned": 1}),
    ],
    ids=[
        "every-open-decision-of-the-session", "session-whose-decisions-all-closed-is-late",
        "unknown-session-is-orphaned", "event-id-wins-over-session", "no-id-no-session-orphaned",
    ],
)  # fmt: skip
def test_attribution(
    events: list[JoinInput], configs: Points, expected: dict[str, tuple[float, str]],
    counters: dict[str, int],
) -> None:  # fmt: skip
    check(events, configs, expected, counters)


@pytest.mark.parametrize(
    ("events", "configs", "expected", "counters"),
    [
        ([D1, outcome("o", 1, event_id="d1"), outcome("o", 2, event_id="d1")], SUM,
         {"d1": (3, OUT)}, {"duplicates": 1, "outcomes": 1}),
        ([D1, outcome("o", 1, session="s1"), outcome("o", 1, session="s1")], SUM,
         {"d1": (3, OUT)}, {"duplicates": 1}),
        ([D1, reward("r", "d1", 1, 5), reward("r", "d1", 2, 9)], None, {"d1": (5, DIRECT)},
         {"duplicates": 1, "rewards": 1}),
        ([D1, outcome("o", 1, event_id="d1"), D1], SUM, {"d1": (3, OUT)},
         {"duplicates": 1, "decisions": 1}),
        ([D1, outcome("late", 25, event_id="d1"), D1], None, {"d1": (0, DEF)},
         {"duplicates": 1, "decisions": 1, "stale": 0}),
        ([decision("d1", 0, activated=False), activation("x", "d1", 1), activation("x", "d1", 2)],
         None, {"d1": (0, DEF)}, {"duplicates": 1, "activations": 1}),
        ([outcome("o", 1, event_id="d1"), outcome("o", 1, event_id="d1"), D1], SUM,
         {"d1": (3, OUT)}, {"duplicates": 1}),
    ],
    ids=[
        "outcome-id", "session-outcome-id", "reward-id", "decision-while-open",
        "decision-after-close", "activation-id", "outcome-id-while-held",
    ],
)  # fmt: skip
def test_duplicates_change_nothing(
    events: list[JoinInput], configs: Points, expected: dict[str, tuple[float, str]],
    counters: dict[str, int],
) -> None:  # fmt: skip
    check(events, configs, expected, counters)


SKEWED: list[JoinInput] = [
    decision("d1", 0, session="s1"), decision("d2", 1.0, session="s1"),
    outcome("o1", 0.5, event_id="d1"), outcome("o2", 1.5, "detail_view", session="s1"),
]  # fmt: skip


@pytest.mark.parametrize("order", list(permutations(range(4))), ids=str)
def test_any_arrival_order_within_skew_joins_the_same(order: tuple[int, ...]) -> None:
    check([SKEWED[i] for i in order], SUM, {"d1": (4, OUT), "d2": (1, OUT)}, {"orphaned": 0})


FAST_SKEW = points(fast={"skew_tolerance_seconds": 0.5}, home_products={})
NO_SKEW = points(home_products={"skew_tolerance_seconds": 0})


@pytest.mark.parametrize(
    ("events", "configs", "expected", "counters"),
    [
        ([outcome("o", 1, event_id="d1"), D1], None, {"d1": (3, OUT)}, {"held_events": 0}),
        ([outcome("o", 1, session="s1"), D1], None, {"d1": (3, OUT)}, {"orphaned": 0}),
        ([outcome("o", 1, event_id="d1"), decision("x", 3), D1], None,
         {"d1": (0, DEF), "x": (0, DEF)}, {"orphaned": 1}),
        ([outcome("o", 1, session="s1"), decision("x", 3), D1], None,
         {"d1": (0, DEF), "x": (0, DEF)}, {"orphaned": 1}),
        ([outcome("o", 1, event_id="d1"), decision("x", 2), decision("d1", 0, point="fast")],
         FAST_SKEW, {"d1": (0, DEF), "x": (0, DEF)}, {"orphaned": 1}),
        ([outcome("o", 1, event_id="d1"), D1], NO_SKEW, {"d1": (0, DEF)}, {"orphaned": 1}),
        ([reward("r", "d1", 1, 5), D1], None, {"d1": (5, DIRECT)}, {}),
        ([outcome("o", 22, event_id="d1"), D1], None, {"d1": (0, DEF)}, {"late": 1}),
    ],
    ids=[
        "early-by-event-id-applied", "early-by-session-applied", "early-by-event-id-expires",
        "early-by-session-expires", "tolerance-of-the-decision-point", "zero-tolerance",
        "early-direct-reward-applied", "early-but-after-window-is-late",
    ],
)  # fmt: skip
def test_clock_skew_hold(
    events: list[JoinInput], configs: Points, expected: dict[str, tuple[float, str]],
    counters: dict[str, int],
) -> None:  # fmt: skip
    check(events, configs, expected, counters)


DEFERRED = decision("d1", 0, session="s1", activated=False)


@pytest.mark.parametrize(
    ("events", "expected", "counters"),
    [
        ([DEFERRED, outcome("o", 1, session="s1")], {}, {"not_activated": 1}),
        ([DEFERRED, outcome("o", 1, session="s1"), activation("x", "d1", 2)], {"d1": (3, OUT)},
         {"not_activated": 0}),
        ([DEFERRED, activation("x", "d1", 20)], {}, {"not_activated": 1, "late": 1}),
        ([activation("x", "d1", 1), DEFERRED], {"d1": (0, DEF)}, {"not_activated": 0}),
        ([activation("x", "d0", 1), decision("d0", 0)], {"d0": (0, DEF)}, {"activations": 1}),
    ],
    ids=[
        "never-activated-emits-nothing", "activated-before-close", "activation-at-close-is-late",
        "activation-before-decision", "activating-an-active-decision-is-harmless",
    ],
)  # fmt: skip
def test_deferred_activation(
    events: list[JoinInput], expected: dict[str, tuple[float, str]], counters: dict[str, int]
) -> None:
    check(events, None, expected, counters)


def test_dropped_events_are_handed_to_the_runner_once() -> None:
    join = Join()
    feed(join, [D1, DEFERRED.model_copy(update={"event_id": "d2"}), outcome("o", 1, session="zz")])
    feed(join, [outcome("late", 25, event_id="d1"), decision("old", -60)])
    dropped = [(d.reason, getattr(d.event, "outcome_id", None) or d.event.event_id)
               for d in join.drain_dropped()]  # fmt: skip
    assert dropped == [
        ("not_activated", "d2"), ("orphaned", "o"), ("late", "late"), ("stale", "old"),
    ]  # fmt: skip
    assert join.drain_dropped() == []
    assert (join.stats.late, join.stats.orphaned, join.stats.stale) == (1, 1, 1)


def test_a_decision_arriving_after_its_window_is_joined_at_once() -> None:
    join = Join()
    feed(join, [outcome("o1", 19.5, event_id="d1"), outcome("o2", 20.5, event_id="d1")])
    (example,) = join.on_decision(D1)
    assert (example.timestamp, example.reward, example.late_outcomes) == (at(20), 3, 1)


def test_emission_order_is_close_time_then_arrival() -> None:
    configs = points(fast={"window_seconds": 5}, slow={"window_seconds": 30})
    events: list[JoinInput] = [
        decision("s", 0, point="slow"), decision("f1", 0, point="fast"), decision("h", 0),
        decision("f2", 0, point="fast"), outcome("o", 4, session="x"),
    ]  # fmt: skip
    events += [outcome(f"o{n}", 4.5, event_id=n) for n in ("s", "f1", "h", "f2")]
    emitted, _ = run(events, configs)
    assert [(e.event_id, e.timestamp, e.reward) for e in emitted] == [
        ("f1", at(5), 3), ("f2", at(5), 3), ("h", at(20), 3), ("s", at(30), 3),
    ]  # fmt: skip


def test_stream_time_never_goes_backwards() -> None:
    join = Join()
    feed(join, [decision("a", 10), decision("b", 5)])
    assert join.stream_time == at(10)
    assert join.advance(at(3)) == [] and join.stream_time == at(10)
    with pytest.raises(InvalidInput, match="timezone-aware"):
        join.advance(datetime(2026, 1, 2))  # noqa: DTZ001 - the naive time is the point


def test_configs_from_a_function_and_defaults_for_unknown_points() -> None:
    fast = points(fast={"window_seconds": 5})["fast"]
    join = Join(lambda name: fast if name == "fast" else None)
    feed(join, [decision("f", 0, point="fast"), decision("m", 0, point="mystery")])
    assert [e.event_id for e in join.advance(at(5))] == ["f"]
    assert [e.event_id for e in join.advance(at(20))] == ["m"]


def test_stats_count_and_gauge() -> None:
    join = Join()
    early = outcome("e", 3, event_id="x")
    feed(join, [D1, decision("d2", 1), outcome("o", 2, event_id="d1"), early])
    stats = join.stats
    assert (stats.decisions, stats.outcomes, stats.open_windows, stats.held_events) == (2, 2, 2, 1)
    assert stats.stream_time == at(3)
    join.advance(at(30))
    stats = join.stats
    assert (stats.joined_outcome, stats.joined_default, stats.joined, stats.open_windows) == (
        1, 1, 2, 0,
    )  # fmt: skip
