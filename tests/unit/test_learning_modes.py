"""Apprentice and logging-only modes: the decision service serves the first candidate
(the baseline) with the probability it really had, on its own arm; online is unchanged."""

from __future__ import annotations

import pytest

from schemas.config import DecisionPointConfig, LearningMode
from schemas.features import Action
from tests.unit.test_api_harness import DP, running_app

ACTIONS = [Action(id=a) for a in ("first", "second", "third")]


@pytest.mark.parametrize(("mode", "arm"), [("apprentice", "apprentice"), ("logging", "logging")])
def test_baseline_modes_serve_the_first_candidate(mode: LearningMode, arm: str) -> None:
    config = DecisionPointConfig(name=DP, actions=ACTIONS, learning_mode=mode)
    with running_app([config]) as app:
        answers = [app.decide(event_id=f"e{n}") for n in range(20)]
        excluded = app.decide(event_id="x", excluded_actions=["first"])
        logged = app.decisions()
    assert {a["action_id"] for a in answers} == {"first"}
    assert {a["arm"] for a in answers} == {arm}
    assert answers[0]["probability"] == 1.0
    # The first candidate left after exclusions is the baseline.
    assert excluded["action_id"] == "second"
    assert logged[-1].probabilities == [1.0, 0.0] and logged[-1].arm == arm


def test_online_mode_explores() -> None:
    config = DecisionPointConfig(name=DP, actions=ACTIONS)
    with running_app([config]) as app:
        answers = [app.decide(event_id=f"e{n}") for n in range(60)]
    assert {a["arm"] for a in answers} == {"learned"}
    assert len({a["action_id"] for a in answers}) > 1
