"""Personalizer's rank, reward and activate (single and multi-slot) as learnloop decisions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.personalizer.loop import personalizer_defaults
from learnloop.eventlog import Streams
from schemas.config import LearningMode
from schemas.events import ActivationEvent, DecisionEvent, RewardEvent
from tests.unit.test_api_harness import Harness, running_app

PREVIEW = "?api-version=2022-09-01-preview"
LOOP = "personalizer"  # Settings.personalizer_decision_point
EVENT = "75269AD0-BFEE-4598-8196-C57383D38E10"
CONTEXT = [
    {"user": {"profileType": "AnonymousUser", "latLong": "47.6,-122.1"}},
    {"device": {"mobile": True, "windows": True}},
    {"recentActivity": {"itemsInCart": 3}},
    {"timeOfDay": "Morning"},
]
ACTIONS: list[dict[str, Any]] = [
    {"id": "NewsArticle", "features": [{"type": "News"}]},
    {"id": "SportsArticle", "features": [{"type": "Sports"}]},
    {"id": "EntertainmentArticle", "features": [{"type": "Entertainment"}]},
]
SLOTS = [
    {
        "id": "Main Article",
        "features": [{"size": "Large", "position": "Top Middle"}],
        "excludedActions": ["SportsArticle"],
        "baselineAction": "EntertainmentArticle",
    },
    {"id": "Side Bar", "features": [{"size": "Small"}], "baselineAction": "NewsArticle"},
]


@pytest.fixture
def h() -> Iterator[Harness]:
    with running_app() as harness:
        yield harness


def rank_body(**extra: Any) -> dict[str, Any]:
    return {"contextFeatures": CONTEXT, "actions": ACTIONS, **extra}


def multislot_body(**extra: Any) -> dict[str, Any]:
    return {"contextFeatures": CONTEXT, "actions": ACTIONS, "slots": SLOTS, **extra}


def post(h: Harness, path: str, body: Any = None, prefix: str = "/personalizer") -> httpx.Response:
    url = f"{prefix}/{path}{PREVIEW}"
    response: httpx.Response = h.client.post(url) if body is None else h.client.post(url, json=body)
    return response


def rank(h: Harness, **extra: Any) -> dict[str, Any]:
    response = post(h, "rank", rank_body(**extra))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def multislot(h: Harness, **extra: Any) -> dict[str, Any]:
    response = post(h, "multislot/rank", multislot_body(**extra))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def set_mode(h: Harness, mode: LearningMode) -> None:
    config = h.client.portal.call(h.decision_points.get, LOOP)  # type: ignore[union-attr]
    updated = (config or personalizer_defaults(LOOP)).model_copy(update={"learning_mode": mode})
    h.client.portal.call(h.decision_points.put, updated)  # type: ignore[union-attr]


def assert_refused(response: httpx.Response, status: int, code: str, fragment: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.headers["x-ms-error-code"] == code
    error = response.json()["error"]
    assert error["code"] == code
    assert fragment in error["message"]


# -- rank -------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/personalizer/v1.0/rank", f"/personalizer/rank{PREVIEW}"])
def test_rank_is_a_logged_learnloop_decision(h: Harness, prefix: str) -> None:
    response = h.client.post(
        prefix, json=rank_body(excludedActions=["SportsArticle"], eventId=EVENT)
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"ranking", "eventId", "rewardActionId"}
    assert body["eventId"] == EVENT
    ranking = body["ranking"]
    assert [r["id"] for r in ranking][-1] == "SportsArticle"
    assert ranking[-1]["probability"] == 0.0
    assert {r["id"] for r in ranking} == {a["id"] for a in ACTIONS}
    assert ranking[0]["id"] == body["rewardActionId"] != "SportsArticle"
    assert abs(sum(r["probability"] for r in ranking) - 1.0) < 1e-6

    [decision] = h.decisions()
    assert decision.event_id == EVENT
    assert decision.decision_point == LOOP
    assert [a.id for a in decision.actions] == ["NewsArticle", "EntertainmentArticle"]
    assert decision.actions[0].features == {"type": "News"}
    assert decision.context.features == {
        "user": {"profileType": "AnonymousUser", "latLong": "47.6,-122.1"},
        "device": {"mobile": True, "windows": True},
        "recentActivity": {"itemsInCart": 3.0},
        "timeOfDay": "Morning",
    }
    assert decision.chosen_action == body["rewardActionId"]
    assert decision.arm in ("learned", "baseline")
    assert decision.activated is True
    by_id = {r["id"]: r["probability"] for r in ranking}
    assert [by_id[a.id] for a in decision.actions] == decision.probabilities


def test_ranking_lists_the_rest_by_falling_probability(h: Harness) -> None:
    for n in range(12):
        ranking = rank(h, eventId=f"order-{n}")["ranking"]
        rest = [r["probability"] for r in ranking[1:]]
        assert rest == sorted(rest, reverse=True)


def test_an_event_id_is_generated_when_none_is_sent(h: Harness) -> None:
    body = rank(h)
    assert len(body["eventId"]) == 32
    [decision] = h.decisions()
    assert decision.event_id == body["eventId"]
    assert rank(h, eventId=None)["eventId"] != body["eventId"]


def test_the_same_event_id_answers_the_logged_decision_again(h: Harness) -> None:
    first = rank(h, eventId=EVENT, excludedActions=["SportsArticle"])
    again = rank(h, eventId=EVENT, excludedActions=["SportsArticle"])
    assert again == first
    assert len(h.decisions()) == 1


def test_excluded_actions_naming_no_action_are_ignored(h: Harness) -> None:
    body = rank(h, excludedActions=["NoSuchArticle", "SportsArticle"])
    assert body["ranking"][-1] == {"id": "SportsArticle", "probability": 0.0}
    [decision] = h.decisions()
    assert "SportsArticle" not in [a.id for a in decision.actions]


def test_rank_notes_the_log_span(h: Harness) -> None:
    rank(h)
    span = h.client.portal.call(  # type: ignore[union-attr]
        h.app.state.personalizer.get, LOOP, "state", "logs"
    )
    assert span is not None and span["from"].startswith("2026-03-01T12:00")


@pytest.mark.parametrize(("mode", "arm"), [("apprentice", "apprentice"), ("logging", "logging")])
def test_apprentice_and_logging_modes_serve_the_first_action_not_excluded(
    h: Harness, mode: LearningMode, arm: str
) -> None:
    set_mode(h, mode)
    for n in range(5):
        body = rank(h, eventId=f"{mode}-{n}", excludedActions=["NewsArticle"])
        assert body["rewardActionId"] == "SportsArticle"
        assert body["ranking"][0] == {"id": "SportsArticle", "probability": 1.0}
    decisions = h.decisions()
    assert {d.arm for d in decisions} == {arm}
    assert {d.chosen_action for d in decisions} == {"SportsArticle"}


def _many(n: int) -> list[dict[str, Any]]:
    return [{"id": f"a{i}", "features": []} for i in range(n)]


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ({"contextFeatures": CONTEXT}, "BadRequest", "actions"),
        ({"actions": []}, "InvalidRankRequest", "'actions' is empty"),
        ({"actions": [ACTIONS[0], ACTIONS[0]]}, "InvalidRankRequest", "appears twice"),
        ({"actions": _many(51)}, "InvalidRankRequest", "at most 50 actions"),
        (rank_body(excludedActions=[a["id"] for a in ACTIONS]), "InvalidRankRequest", "every"),
        (rank_body(eventId="e" * 257), "BadRequest", "eventId"),
        (rank_body(eventId="e" * 129), "InvalidRankRequest", "1 to 128"),
        (rank_body(eventId="has space"), "InvalidRankRequest", "eventId 'has space'"),
        ({"actions": [{"id": "News Article", "features": []}]}, "InvalidRankRequest", "ids are"),
        ({"actions": [{"id": "n" * 129, "features": []}]}, "InvalidRankRequest", "actions[0].id"),
        (
            {"actions": [{"id": "a", "features": [{"x": "v" * 1025}]}]},
            "InvalidRankRequest",
            "actions[0].features[0].x: a string feature may have at most 1024",
        ),
        (
            rank_body(contextFeatures=[{"u": {"k" * 129: 1}}]),
            "InvalidRankRequest",
            "learnloop allows 128",
        ),
        ({"actions": [{"id": 5, "features": []}]}, "BadRequest", "actions.0.id"),
        ({"actions": "NewsArticle"}, "BadRequest", "actions"),
    ],
)
def test_bad_rank_requests_are_refused_and_log_nothing(
    h: Harness, body: dict[str, Any], code: str, fragment: str
) -> None:
    before = h.end_offset()
    for prefix in ("/personalizer/v1.0/rank", f"/personalizer/rank{PREVIEW}"):
        assert_refused(h.client.post(prefix, json=body), 400, code, fragment)
    assert h.end_offset() == before


def test_a_non_finite_number_is_refused(h: Harness) -> None:
    content = json.dumps(rank_body(contextFeatures=[{"u": {"x": float("nan")}}]))
    assert "NaN" in content
    response = h.client.post(
        f"/personalizer/rank{PREVIEW}",
        content=content,
        headers={"content-type": "application/json"},
    )
    assert_refused(response, 400, "InvalidRankRequest", "numbers must be finite")
    assert h.end_offset() == -1


def test_rank_needs_the_client_key() -> None:
    with running_app(client_api_keys=("client-1",), admin_api_key="admin") as h:
        url = f"/personalizer/rank{PREVIEW}"
        refused = h.client.post(url, json=rank_body())
        assert refused.status_code == 401
        assert "error" in refused.json()
        assert h.end_offset() == -1
        ok = h.client.post(url, json=rank_body(), headers={"Ocp-Apim-Subscription-Key": "client-1"})
        assert ok.status_code == 201, ok.text


def test_another_loop_ranks_at_its_own_decision_point(h: Harness) -> None:
    response = h.client.post(f"/loops/news/personalizer/rank{PREVIEW}", json=rank_body())
    assert response.status_code == 201, response.text
    [decision] = h.decisions()
    assert decision.decision_point == "news"
    # Its event is not the default loop's to reward.
    refused = post(h, f"events/{decision.event_id}/reward", {"value": 1})
    assert_refused(refused, 404, "ResourceNotFound")
    accepted = post(
        h, f"events/{decision.event_id}/reward", {"value": 1}, prefix="/loops/news/personalizer"
    )
    assert accepted.status_code == 204


# -- reward and activate ----------------------------------------------------------------


def rewards(h: Harness) -> list[RewardEvent]:
    return [RewardEvent.model_validate_json(v) for v in h.stream(Streams.REWARDS)]


def activations(h: Harness) -> list[ActivationEvent]:
    return [ActivationEvent.model_validate_json(v) for v in h.stream(Streams.ACTIVATIONS)]


@pytest.mark.parametrize("prefix", ["/personalizer/v1.0", "/personalizer"])
def test_a_reward_is_a_direct_reward(h: Harness, prefix: str) -> None:
    rank(h, eventId=EVENT)
    query = PREVIEW if prefix == "/personalizer" else ""
    response = h.client.post(f"{prefix}/events/{EVENT}/reward{query}", json={"value": 0.75})
    assert response.status_code == 204
    assert response.content == b""
    [reward] = rewards(h)
    assert (reward.event_id, reward.value) == (EVENT, 0.75)


@pytest.mark.parametrize("value", [1.5, -1.01, 1e300])
def test_a_reward_outside_minus_one_to_one_is_refused(h: Harness, value: float) -> None:
    rank(h, eventId=EVENT)
    before = h.end_offset()
    assert_refused(
        post(h, f"events/{EVENT}/reward", {"value": value}), 400, "InvalidRewardRequest", "-1 and 1"
    )
    assert h.end_offset() == before


@pytest.mark.parametrize("value", [-1, 0, 1])
def test_the_ends_of_the_reward_range_are_accepted(h: Harness, value: float) -> None:
    rank(h, eventId=EVENT)
    assert post(h, f"events/{EVENT}/reward", {"value": value}).status_code == 204


def test_bad_reward_bodies_are_refused(h: Harness) -> None:
    rank(h, eventId=EVENT)
    before = h.end_offset()
    assert_refused(post(h, f"events/{EVENT}/reward", {}), 400, "BadRequest", "value")
    assert_refused(post(h, f"events/{EVENT}/reward", {"value": "x"}), 400, "BadRequest")
    assert h.end_offset() == before


@pytest.mark.parametrize("event_id", ["unknown", "has space", "x" * 200])
def test_rewarding_or_activating_an_unknown_event_is_404(h: Harness, event_id: str) -> None:
    rank(h, eventId=EVENT)
    before = h.end_offset()
    assert_refused(post(h, f"events/{event_id}/reward", {"value": 1}), 404, "ResourceNotFound")
    assert_refused(post(h, f"events/{event_id}/activate"), 404, "InvalidEventIdToActivate")
    assert h.end_offset() == before


def test_deferred_activation_waits_for_activate(h: Harness) -> None:
    rank(h, eventId=EVENT, deferActivation=True)
    [decision] = h.decisions()
    assert decision.activated is False
    assert activations(h) == []
    response = post(h, f"events/{EVENT}/activate")
    assert response.status_code == 204
    assert response.content == b""
    [activation] = activations(h)
    assert activation.event_id == EVENT
    assert post(h, f"events/{EVENT}/activate").status_code == 204  # again: harmless, once
    assert len(activations(h)) == 1


# -- multi-slot -------------------------------------------------------------------------


def test_multislot_rank_is_a_decision_per_slot_never_reusing_an_action(h: Harness) -> None:
    body = multislot(h, eventId=EVENT)
    assert body["eventId"] == EVENT
    assert [s["id"] for s in body["slots"]] == ["Main Article", "Side Bar"]
    chosen = [s["rewardActionId"] for s in body["slots"]]
    assert len(set(chosen)) == 2
    assert chosen[0] != "SportsArticle"  # excluded from the main article

    main, side = h.decisions()
    assert (main.event_id, side.event_id) == (f"{EVENT}:0", f"{EVENT}:1")
    assert [a.id for a in main.actions] == ["EntertainmentArticle", "NewsArticle"]  # baseline first
    assert main.context.features["slot"] == {"size": "Large", "position": "Top Middle"}
    assert main.context.features["slot_id"] == "Main Article"
    assert main.context.features["user"] == {
        "profileType": "AnonymousUser",
        "latLong": "47.6,-122.1",
    }
    assert side.context.features["slot"] == {"size": "Small"}
    assert main.chosen_action not in [a.id for a in side.actions]
    if main.chosen_action != "NewsArticle":
        assert side.actions[0].id == "NewsArticle"  # its baseline, when still free
    assert [main.chosen_action, side.chosen_action] == chosen


def test_multislot_never_reuses_an_action_over_many_events(h: Harness) -> None:
    slots = [{"id": f"s{i}", "baselineAction": ACTIONS[i]["id"]} for i in range(3)]
    for n in range(20):
        response = post(
            h, "multislot/rank", {"actions": ACTIONS, "slots": slots, "eventId": f"m{n}"}
        )
        assert response.status_code == 201, response.text
        chosen = [s["rewardActionId"] for s in response.json()["slots"]]
        assert sorted(chosen) == sorted(str(a["id"]) for a in ACTIONS)


def test_multislot_generates_an_event_id_and_replays_one_it_was_given(h: Harness) -> None:
    generated = multislot(h)["eventId"]
    assert len(generated) == 32
    first = multislot(h, eventId=EVENT)
    assert multislot(h, eventId=EVENT) == first
    assert len(h.decisions()) == 4


def test_multislot_event_id_reused_for_other_slots_is_refused(h: Harness) -> None:
    multislot(h, eventId=EVENT)
    other = [{**SLOTS[0], "id": "Other"}, SLOTS[1]]
    response = post(h, "multislot/rank", multislot_body(eventId=EVENT, slots=other))
    assert_refused(response, 409, "InvalidRankRequest", "already used")


@pytest.mark.parametrize("mode", ["apprentice", "logging"])
def test_multislot_serves_each_slot_its_baseline_in_apprentice_and_logging(
    h: Harness, mode: LearningMode
) -> None:
    set_mode(h, mode)
    for n in range(5):
        body = multislot(h, eventId=f"{mode}-{n}")
        assert [s["rewardActionId"] for s in body["slots"]] == [
            "EntertainmentArticle",
            "NewsArticle",
        ]
    assert {d.arm for d in h.decisions()} == {"apprentice" if mode == "apprentice" else "logging"}


def _slot(id: str, baseline: str, **extra: Any) -> dict[str, Any]:
    return {"id": id, "baselineAction": baseline, **extra}


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ({"actions": ACTIONS}, "BadRequest", "slots"),
        ({"actions": ACTIONS, "slots": []}, "InvalidRankRequest", "'slots' is empty"),
        ({"slots": SLOTS}, "BadRequest", "actions"),
        ({"actions": [], "slots": SLOTS}, "InvalidRankRequest", "'actions' is empty"),
        (multislot_body(slots=[{"id": "a"}]), "BadRequest", "baselineAction"),
        (
            multislot_body(slots=[_slot("a", "NewsArticle"), _slot("a", "SportsArticle")]),
            "InvalidRankRequest",
            "slot id 'a' appears twice",
        ),
        (multislot_body(slots=[_slot("a", "Nope")]), "InvalidRankRequest", "is no action"),
        (
            multislot_body(slots=[_slot("a", "NewsArticle", excludedActions=["NewsArticle"])]),
            "InvalidRankRequest",
            "is excluded",
        ),
        (
            multislot_body(slots=[_slot("a", "NewsArticle"), _slot("b", "NewsArticle")]),
            "InvalidRankRequest",
            "each slot needs its own baseline",
        ),
        (
            multislot_body(
                slots=[
                    _slot("a", "NewsArticle"),
                    _slot(
                        "b",
                        "SportsArticle",
                        excludedActions=["NewsArticle", "EntertainmentArticle"],
                    ),
                ]
            ),
            "InvalidRankRequest",
            "slot 'b' could be left with no action",
        ),
        (
            multislot_body(contextFeatures=[{"slot": {"x": 1}}]),
            "InvalidRankRequest",
            "contextFeatures use 'slot'",
        ),
        (multislot_body(eventId="e" * 127), "InvalidRankRequest", "1 to 126"),
        (
            multislot_body(slots=[_slot("a", "NewsArticle", features=[{"x": float("inf")}])]),
            "InvalidRankRequest",
            "slots[0].features[0].x",
        ),
    ],
)
def test_bad_multislot_requests_are_refused_and_log_nothing(
    h: Harness, body: dict[str, Any], code: str, fragment: str
) -> None:
    response = h.client.post(
        f"/personalizer/multislot/rank{PREVIEW}",
        content=json.dumps(body),
        headers={"content-type": "application/json"},
    )
    assert_refused(response, 400, code, fragment)
    assert h.end_offset() == -1


def test_multislot_is_preview_only(h: Harness) -> None:
    response = h.client.post("/personalizer/v1.0/multislot/rank", json=multislot_body())
    assert_refused(response, 404, "ResourceNotFound")


def test_multislot_reward_is_a_direct_reward_per_slot(h: Harness) -> None:
    multislot(h, eventId=EVENT)
    body = {
        "reward": [{"slotId": "Side Bar", "value": 0.5}, {"slotId": "Main Article", "value": 1}]
    }
    response = post(h, f"multislot/events/{EVENT}/reward", body)
    assert response.status_code == 204, response.text
    assert {(r.event_id, r.value) for r in rewards(h)} == {(f"{EVENT}:1", 0.5), (f"{EVENT}:0", 1.0)}


@pytest.mark.parametrize(
    ("body", "status", "code", "fragment"),
    [
        ({"reward": [{"slotId": "Nope", "value": 1}]}, 400, "InvalidRewardRequest", "'Nope'"),
        (
            {
                "reward": [
                    {"slotId": "Side Bar", "value": 1},
                    {"slotId": "Main Article", "value": 2},
                ]
            },
            400,
            "InvalidRewardRequest",
            "reward[1].value",
        ),
        ({"reward": []}, 400, "InvalidRewardRequest", "empty"),
        ({"reward": [{"slotId": "", "value": 1}]}, 400, "BadRequest", "slotId"),
        ({}, 400, "BadRequest", "reward"),
    ],
)
def test_bad_multislot_rewards_are_refused_and_log_nothing(
    h: Harness, body: dict[str, Any], status: int, code: str, fragment: str
) -> None:
    multislot(h, eventId=EVENT)
    before = h.end_offset()
    assert_refused(post(h, f"multislot/events/{EVENT}/reward", body), status, code, fragment)
    assert h.end_offset() == before


def test_multislot_events_of_an_unknown_event_are_404(h: Harness) -> None:
    rank(h, eventId=EVENT)  # a single-slot event is no multi-slot one
    before = h.end_offset()
    body = {"reward": [{"slotId": "Main Article", "value": 1}]}
    assert_refused(post(h, f"multislot/events/{EVENT}/reward", body), 404, "ResourceNotFound")
    assert_refused(post(h, f"multislot/events/{EVENT}/activate"), 404, "InvalidEventIdToActivate")
    assert h.end_offset() == before


def test_multislot_activate_activates_every_slot(h: Harness) -> None:
    multislot(h, eventId=EVENT, deferActivation=True)
    assert {d.activated for d in h.decisions()} == {False}
    response = post(h, f"multislot/events/{EVENT}/activate")
    assert response.status_code == 204, response.text
    assert sorted(a.event_id for a in activations(h)) == [f"{EVENT}:0", f"{EVENT}:1"]


def test_logged_decisions_are_learnloop_contract_events(h: Harness) -> None:
    rank(h)
    multislot(h)
    for value in h.stream(Streams.DECISIONS):
        DecisionEvent.model_validate_json(value)


def test_events_at_an_unknown_loop_create_no_decision_point(h: Harness) -> None:
    prefix = "/loops/typo/personalizer"
    assert_refused(post(h, "events/x/reward", {"value": 1}, prefix=prefix), 404, "ResourceNotFound")
    assert_refused(
        post(h, "multislot/events/x/activate", prefix=prefix), 404, "InvalidEventIdToActivate"
    )
    assert h.client.portal.call(h.decision_points.get, "typo") is None  # type: ignore[union-attr]
