"""POST /v1/decisions and the reward/activate routes: happy paths, idempotency, arms."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from app.decide import choose
from app.main import create_app
from learnloop.decision_points import MemoryDecisionPointStore, load_config_file
from learnloop.eventlog import LogRecord, MemoryEventLog, Streams
from learnloop.modelstore import MemoryModelStore
from learnloop.settings import Settings
from schemas.config import DecisionPointUpdate
from schemas.events import ActivationEvent, RewardEvent
from tests.unit.test_api_harness import (
    DEFAULT_ACTIONS,
    DP,
    Harness,
    HarnessFactory,
    harness_factory,
    running_app,
)

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def harness() -> Iterator[Harness]:
    with running_app() as h:
        yield h


@pytest.fixture
def make_harness() -> Iterator[HarnessFactory]:
    with harness_factory() as build:
        yield build


def test_decision_with_configured_actions_is_logged_before_the_answer(harness: Harness) -> None:
    answer = harness.decide(context={"session_id": "s-1", "features": {"page": "home"}})

    assert answer["action_id"] in DEFAULT_ACTIONS
    assert answer["model_version"] == "0"
    assert answer["persona"] == "visitor"
    assert answer["arm"] == "learned"
    assert answer["ranking"][0]["id"] == answer["action_id"]
    assert sorted(r["id"] for r in answer["ranking"]) == sorted(DEFAULT_ACTIONS)
    assert math.isclose(sum(r["probability"] for r in answer["ranking"]), 1.0)
    [event] = harness.decisions()
    assert event.event_id == answer["event_id"]
    assert event.chosen_action == answer["action_id"]
    assert event.chosen_probability == answer["probability"]
    assert dict(zip([a.id for a in event.actions], event.probabilities, strict=True)) == {
        r["id"]: r["probability"] for r in answer["ranking"]
    }
    assert event.context.session_id == "s-1"
    assert event.timestamp == harness.clock.now()
    assert event.activated is True


def test_explicit_actions_with_features_and_exclusions(harness: Harness) -> None:
    actions = [
        {"id": "red", "features": {"price": 9.5, "sale": True}},
        {"id": "blue", "features": {"price": 12}},
        {"id": "green", "features": {"tag": "new"}},
    ]
    answer = harness.decide(
        actions=actions,
        excluded_actions=["blue", "not-a-candidate"],
        context={"features": {"geo": {"region": "eu"}}},
    )

    assert {r["id"] for r in answer["ranking"]} == {"red", "green"}
    [event] = harness.decisions()
    assert [a.id for a in event.actions] == ["red", "green"]
    assert event.actions[0].features == {"price": 9.5, "sale": True}
    assert event.context.features == {"geo": {"region": "eu"}}


def test_user_id_is_pseudonymized_and_logged_in_users_are_unclassified(
    harness: Harness,
) -> None:
    answer = harness.decide(context={"user_id": "alice@example.com", "session_id": "s"})

    assert answer["persona"] == "unclassified"
    [event] = harness.decisions()
    assert event.context.user_id is not None
    assert event.context.user_id.startswith("u_")
    assert "alice" not in harness.stream(Streams.DECISIONS)[0].decode()
    harness.decide(context={"user_id": "alice@example.com"})
    assert harness.decisions()[1].context.user_id == event.context.user_id


def test_same_event_id_returns_the_identical_answer_and_writes_once(harness: Harness) -> None:
    first = harness.decide(event_id="order-42", context={"features": {"page": "cart"}})
    again = harness.decide(event_id="order-42", context={"features": {"page": "cart"}})

    assert again == first
    assert first["event_id"] == "order-42"
    assert harness.end_offset() == 0


def test_same_event_id_at_another_decision_point_conflicts(harness: Harness) -> None:
    spec = DecisionPointUpdate(actions=[{"id": "a"}, {"id": "b"}])
    harness.client.put("/v1/decision-points/other", json=spec.model_dump())
    harness.decide(event_id="shared-id")

    response = harness.client.post(
        "/v1/decisions", json={"decision_point": "other", "event_id": "shared-id"}
    )

    assert response.status_code == 409
    assert response.json()["error"] == "conflict"


def test_same_event_id_and_model_give_the_same_choice_in_another_app(
    make_harness: HarnessFactory,
) -> None:
    one, two = make_harness(), make_harness()
    for event_id in (f"e-{i}" for i in range(20)):
        assert one.decide(event_id=event_id) == two.decide(event_id=event_id)


def test_choices_follow_the_model_pmf_and_repeat_per_event_id() -> None:
    pmf = [0.1, 0.2, 0.3, 0.4]
    choices = Counter(choose(pmf, 0.0, f"e{i}").index for i in range(4000))
    # 4,000 draws: a frequency's standard error is under 0.008, the margin is 4 of them.
    assert all(abs(choices[i] / 4000 - p) < 0.03 for i, p in enumerate(pmf))
    assert all(choose(pmf, 0.0, f"e{i}").probabilities == pmf for i in range(10))
    assert [choose(pmf, 0.0, f"e{i}") for i in range(50)] == [
        choose(pmf, 0.0, f"e{i}") for i in range(50)
    ]


def test_baseline_share_one_logs_uniform_propensities(make_harness: HarnessFactory) -> None:
    h = make_harness()
    h.client.put(
        f"/v1/decision-points/{DP}",
        json={
            "actions": [{"id": a} for a in DEFAULT_ACTIONS],
            "baseline_share": 1.0,
        },
    )

    answers = [h.decide() for _ in range(10)]

    assert {a["arm"] for a in answers} == {"baseline"}
    for event in h.decisions():
        assert event.probabilities == [0.25] * 4
        assert event.arm == "baseline"


def test_baseline_share_half_logs_the_mixture_of_both_arms() -> None:
    model_pmf = [0.97, 0.01, 0.01, 0.01]
    choices = [choose(model_pmf, 0.5, f"event-{i}") for i in range(2000)]

    expected = [0.5 / 4 + 0.5 * p for p in model_pmf]
    assert all(c.probabilities == expected for c in choices)
    arms = Counter(c.arm for c in choices)
    assert 850 < arms["baseline"] < 1150
    # Marginal frequency of the favourite matches its logged (mixture) propensity.
    favourite = sum(c.index == 0 for c in choices) / len(choices)
    assert abs(favourite - expected[0]) < 0.04


def test_deferred_activation_then_activate(harness: Harness) -> None:
    answer = harness.decide(defer_activation=True)
    assert harness.decisions()[0].activated is False

    response = harness.client.post(f"/v1/decisions/{answer['event_id']}/activate")
    repeat = harness.client.post(f"/v1/decisions/{answer['event_id']}/activate")

    assert response.status_code == 202 == repeat.status_code
    assert response.json() == {"event_id": answer["event_id"], "activated": True}
    [raw] = harness.stream(Streams.ACTIVATIONS)
    assert ActivationEvent.model_validate_json(raw).event_id == answer["event_id"]


def test_reward_is_logged_once_per_reward_id(harness: Harness) -> None:
    answer = harness.decide()
    url = f"/v1/decisions/{answer['event_id']}/reward"

    first = harness.client.post(url, json={"value": 2.5, "reward_id": "r-1"})
    retry = harness.client.post(url, json={"value": 2.5, "reward_id": "r-1"})
    other = harness.client.post(url, json={"value": 1})

    assert first.status_code == retry.status_code == other.status_code == 202
    assert first.json() == {"event_id": answer["event_id"], "reward_id": "r-1"}
    rewards = [RewardEvent.model_validate_json(v) for v in harness.stream(Streams.REWARDS)]
    assert [r.value for r in rewards] == [2.5, 1.0]
    assert rewards[0].timestamp == harness.clock.now()


def test_client_timestamp_in_the_past_is_kept(harness: Harness) -> None:
    past = harness.clock.now() - timedelta(days=2)
    harness.decide(timestamp=past.isoformat())
    assert harness.decisions()[0].timestamp == past


def test_incoming_traceparent_is_carried_into_the_logged_event(harness: Harness) -> None:
    response = harness.client.post(
        "/v1/decisions", json={"decision_point": DP}, headers={"traceparent": TRACEPARENT}
    )
    assert response.status_code == 200
    assert harness.decisions()[0].traceparent == TRACEPARENT


def test_traceparent_has_a_new_span_of_the_callers_trace_when_tracing_is_on(
    make_harness: HarnessFactory,
) -> None:
    h = make_harness(tracing="console")
    h.client.post(
        "/v1/decisions", json={"decision_point": DP}, headers={"traceparent": TRACEPARENT}
    )
    logged = h.decisions()[0].traceparent
    assert logged is not None
    assert logged.split("-")[1] == TRACEPARENT.split("-")[1]
    assert logged.split("-")[2] != TRACEPARENT.split("-")[2]


class _LaggingIndex(MemoryEventLog):
    """A log whose look-up has not seen the last write yet (two requests racing)."""

    async def find(self, stream: str, unique_key: str) -> LogRecord | None:
        return None


def test_racing_duplicates_are_resolved_by_the_append_unique_key() -> None:
    events = _LaggingIndex()
    app = create_app(
        Settings(),
        events=events,
        models=MemoryModelStore(),
        decision_points=MemoryDecisionPointStore(load_config_file(None)),
    )
    with TestClient(app) as client:
        body = {"decision_point": DP, "event_id": "raced"}
        first = client.post("/v1/decisions", json=body)
        second = client.post("/v1/decisions", json=body)

        assert first.status_code == second.status_code == 200
        assert first.json() == second.json()
        assert client.portal.call(events.end_offset) == 0  # type: ignore[union-attr]
