"""What-if re-join: settings validation and a crafted sequence under two reward maps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from learnloop.errors import InvalidInput
from offline_learner.rejoin import rejoin, what_if
from schemas import (
    ActivationEvent,
    Context,
    DecisionEvent,
    DecisionPointConfig,
    JoinInput,
    OutcomeEvent,
    RewardEvent,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOME = DecisionPointConfig(name="home")  # 20 s, max, basket_add 3 / detail_view 1


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def decision(
    n: int, second: float, *, point: str = "home", activated: bool = True
) -> DecisionEvent:
    return DecisionEvent(
        event_id=f"d{n}", decision_point=point, timestamp=at(second),
        context=Context(session_id=f"s{n}"), persona="visitor", actions=[{"id": "a"}],
        chosen_index=0, probabilities=[1.0], model_version="v1", activated=activated,
    )  # fmt: skip


def seen(n: int, kind: str, second: float, oid: str) -> OutcomeEvent:
    return OutcomeEvent(outcome_id=oid, event_id=f"d{n}", type=kind, timestamp=at(second))


def crafted() -> list[JoinInput]:
    """d1: view + basket; d2: view at 3 s and view at 12 s; d3: basket at 15 s only;
    d4: a direct reward; d5: deferred, never activated; d6: deferred, activated;
    d7 (another point): a view. Arrival order is event-time order."""
    return [
        decision(1, 0), decision(2, 0.5), decision(3, 1), decision(4, 1.5),
        decision(5, 2, activated=False), decision(6, 2.5, activated=False),
        decision(7, 2.8, point="checkout"),
        seen(1, "detail_view", 2, "o1"), seen(2, "detail_view", 3, "o2"),
        seen(1, "basket_add", 4, "o3"), seen(7, "detail_view", 4.5, "o4"),
        RewardEvent(reward_id="r1", event_id="d4", value=2.5, timestamp=at(5)),
        ActivationEvent(activation_id="a1", event_id="d6", timestamp=at(6)),
        seen(2, "detail_view", 12, "o5"), seen(3, "basket_add", 15, "o6"),
        seen(2, "detail_view", 12, "o5"),  # a client retry: duplicate
    ]  # fmt: skip


def rewards(configs: dict[str, DecisionPointConfig], **kwargs: object) -> dict[str, float]:
    return {e.event_id: e.reward for e in rejoin(crafted(), configs, **kwargs)}  # type: ignore[arg-type]


def test_the_same_sequence_under_two_reward_maps() -> None:
    online = rewards({"home": HOME})
    assert online == {"d1": 3.0, "d2": 1.0, "d3": 3.0, "d4": 2.5, "d6": 0.0, "d7": 1.0}
    changed = what_if(HOME, reward_map={"detail_view": 0.5}, window_seconds=10, aggregation="sum")
    # d1 sums 0.5 + 3; d2 keeps only its 3 s view (12 s is past 10 s); d3's basket is late;
    # the direct reward still overrides; d7's point is not changed.
    assert rewards({"home": changed}) == {
        "d1": 3.5, "d2": 0.5, "d3": 0.0, "d4": 2.5, "d6": 0.0, "d7": 1.0,
    }  # fmt: skip


def test_stats_and_dropped_are_exposed() -> None:
    changed = what_if(HOME, window_seconds=10)
    run = rejoin(crafted(), {"home": changed})
    examples = list(run)
    assert len(examples) == 6
    assert run.stats.duplicates == 1
    assert run.stats.late == 2  # d2's second view and d3's basket, after 10 s windows
    assert run.dropped == {"late": 2, "not_activated": 1}


def test_without_flush_open_windows_stay_open() -> None:
    # The last event (15 s) closes the 10 s windows of d1..d6 but not the 20 s one of d7.
    changed = what_if(HOME, window_seconds=10)
    run = rejoin(crafted(), {"home": changed}, flush=False)
    assert [e.event_id for e in run] == ["d1", "d2", "d3", "d4", "d6"]
    assert run.stats.open_windows == 1
    flushed = [e.event_id for e in rejoin(crafted(), {"home": changed})]
    assert flushed == ["d1", "d2", "d3", "d4", "d6", "d7"]


def test_decision_point_filter_only_filters_the_output() -> None:
    assert rewards({"home": HOME}, decision_points=["checkout"]) == {"d7": 1.0}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"aggregation": "mean"}, "aggregation"),
        ({"window_seconds": -1.0}, "window_seconds"),
        ({"window_seconds": 0.0}, "window_seconds"),
        ({"window_seconds": 200_000.0}, "window_seconds"),  # over two days
        ({"reward_map": {"detail_view": float("nan")}}, "reward_map"),
        ({"default_reward": float("inf")}, "default_reward"),
    ],
)
def test_what_if_refuses_bad_settings(changes: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidInput, match=named):
        what_if(HOME, **changes)  # type: ignore[arg-type]


def test_what_if_changes_a_copy_and_can_remove_a_type() -> None:
    changed = what_if(HOME, reward_map={"basket_add": None, "share": 0.2}, default_reward=-0.1)
    assert changed.reward_map == {"detail_view": 1.0, "share": 0.2}
    assert changed.default_reward == -0.1
    assert HOME.reward_map == {"basket_add": 3.0, "detail_view": 1.0}
    assert what_if(HOME) == HOME


def test_command_line_reward_changes_parse_or_say_what_is_wrong() -> None:
    from runtime.cli_rejoin import changed_configs, parse_rewards

    assert parse_rewards(["detail_view=0.5", "share=none"]) == {"detail_view": 0.5, "share": None}
    for bad in ["detail_view", "=1", "detail_view=half"]:
        with pytest.raises(InvalidInput, match="--reward"):
            parse_rewards([bad])
    configs = {"home": HOME, "checkout": DecisionPointConfig(name="checkout")}
    changed = changed_configs(configs, "home", window_seconds=5.0)
    assert (changed["home"].window_seconds, changed["checkout"].window_seconds) == (5.0, 20.0)
    assert all(
        c.window_seconds == 5.0 for c in changed_configs(configs, None, window_seconds=5.0).values()
    )
    with pytest.raises(InvalidInput, match="unknown decision point 'cart'"):
        changed_configs(configs, "cart")
