"""The reward rule: reward map, aggregation, direct-reward override, default reward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from join_service.reward_rule import (
    CountedOutcome,
    DirectReward,
    aggregate,
    close_reward,
    ordered_outcomes,
    outcome_reward,
)
from schemas import Aggregation, DecisionPointConfig, OutcomeEvent, RewardEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POINT = DecisionPointConfig(name="p")  # the default reward rule
EARLIEST = DecisionPointConfig(name="p", direct_aggregation="first")  # Personalizer's earliest
AVERAGE = DecisionPointConfig(name="p", direct_aggregation="mean")  # Personalizer's average


def counted(reward: float, second: float, seq: int) -> CountedOutcome:
    """An outcome worth ``reward`` at ``second`` that arrived ``seq``-th."""
    event = OutcomeEvent(
        outcome_id=f"o{seq}", event_id="d1", type="basket_add",
        timestamp=T0 + timedelta(seconds=second),
    )  # fmt: skip
    return CountedOutcome(event, reward, seq)


def direct(value: float, second: float, seq: int) -> DirectReward:
    event = RewardEvent(
        reward_id=f"r{seq}", event_id="d1", value=value, timestamp=T0 + timedelta(seconds=second)
    )
    return DirectReward(event, seq)


@pytest.mark.parametrize(
    ("reward_map", "outcome_type", "expected"),
    [
        ({"basket_add": 3.0, "detail_view": 1.0}, "basket_add", 3.0),
        ({"basket_add": 3.0, "detail_view": 1.0}, "detail_view", 1.0),
        ({"basket_add": 3.0}, "purchase", None),
        ({"purchase": 0.0}, "purchase", 0.0),
    ],
    ids=["basket_add", "detail_view", "unknown-type", "zero-is-not-unknown"],
)
def test_outcome_reward(
    reward_map: dict[str, float], outcome_type: str, expected: float | None
) -> None:
    assert outcome_reward(reward_map, outcome_type) == expected


WINDOW = [counted(1.0, 5, seq=0), counted(3.0, 2, seq=1), counted(1.0, 9, seq=2)]
TIED = [counted(3.0, 4, seq=0), counted(1.0, 4, seq=1)]


@pytest.mark.parametrize(
    ("aggregation", "window", "expected"),
    [
        ("max", WINDOW, 3.0),
        ("sum", WINDOW, 5.0),
        ("first", WINDOW, 3.0),
        ("first", TIED, 3.0),
        ("first", list(reversed(TIED)), 3.0),
        ("max", [counted(-2.0, 1, 0)], -2.0),
        ("sum", [counted(1.0, 1, 0)], 1.0),
    ],
    ids=[
        "max", "sum", "first-by-event-time-not-arrival", "first-tie-by-arrival",
        "first-tie-by-arrival-whatever-list-order", "single-negative", "single-sum",
    ],
)  # fmt: skip
def test_aggregate(aggregation: Aggregation, window: list[CountedOutcome], expected: float) -> None:
    assert aggregate(aggregation, window) == expected


def test_aggregate_needs_outcomes() -> None:
    with pytest.raises(ValueError, match="at least one"):
        aggregate("max", [])


def test_ordered_outcomes_by_time_then_arrival() -> None:
    window = [counted(1.0, 5, 3), counted(1.0, 2, 2), counted(1.0, 5, 1)]
    assert [o.outcome_id for o in ordered_outcomes(window)] == ["o2", "o1", "o3"]


@pytest.mark.parametrize(
    ("config", "outcomes", "rewards", "expected"),
    [
        (POINT, [], [], (0.0, "default")),
        (DecisionPointConfig(name="p", default_reward=-1.0), [], [], (-1.0, "default")),
        (POINT, WINDOW, [], (3.0, "outcome")),
        (DecisionPointConfig(name="p", aggregation="sum"), WINDOW, [], (5.0, "outcome")),
        (POINT, WINDOW, [direct(0.5, 1, 7)], (0.5, "direct")),
        (POINT, [], [direct(2.0, 8, 1), direct(1.0, 5, 2)], (2.0, "direct")),
        (POINT, [], [direct(2.0, 5, 1), direct(1.0, 5, 2)], (1.0, "direct")),
        (EARLIEST, WINDOW, [direct(2.0, 8, 1), direct(1.0, 5, 2)], (1.0, "direct")),
        (EARLIEST, [], [direct(2.0, 5, 1), direct(1.0, 5, 2)], (2.0, "direct")),
        (AVERAGE, [], [direct(2.0, 8, 1), direct(1.0, 5, 2), direct(0.0, 1, 3)], (1.0, "direct")),
    ],
    ids=[
        "default-zero", "default-configured", "outcome-max", "outcome-sum",
        "direct-overrides-outcomes", "direct-latest-event-time-wins",
        "direct-tie-last-arrival-wins", "direct-first-earliest-event-time",
        "direct-first-tie-first-arrival", "direct-mean",
    ],
)  # fmt: skip
def test_close_reward(
    config: DecisionPointConfig,
    outcomes: list[CountedOutcome],
    rewards: list[DirectReward],
    expected: tuple[float, str],
) -> None:
    assert close_reward(config, outcomes, rewards) == expected
