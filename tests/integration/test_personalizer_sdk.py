"""The real ``azure-ai-personalizer`` 1.0.0b1 clients, unchanged, against ``learnloop serve``.

One service for the module (embedded mode, two API workers, so every Personalizer
document and decision point goes through the shared SQLite files), an admin key and a
client key, the SDK's two clients. Each test uses its own loop
(``{url}/loops/{loop}`` as the SDK's endpoint), so a learning-mode change stays where
it was made. The traffic that must be joined (5 s reward wait) is sent once by the
``traffic`` fixture, so the module waits for the join once, not per test. The
configuration, policy and model tests are in ``test_personalizer_sdk_config.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from learnloop.eventlog.base import Streams
from runtime.processes import run_learnloop
from tests.integration.personalizer_deployment import (
    ADMIN_KEY,
    CLIENT_KEY,
    WAIT_SECONDS,
    Deployment,
    Json,
    embedded_deployment,
    error_code,
    rank_body,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with embedded_deployment(tmp_path_factory.mktemp("personalizer-sdk")) as deployment:
        yield deployment


@dataclass
class Traffic:
    """What the clients sent and were answered, before the join closed any window."""

    started: datetime
    rewards: dict[str, float] = field(default_factory=dict)  # loop "rewards"
    unrewarded: str = ""
    ranked: dict[str, Json] = field(default_factory=dict)
    activated: str = ""  # loop "deferred"
    never_activated: str = ""
    multislot: Json = field(default_factory=dict)
    apprentice: list[Json] = field(default_factory=list)
    logging: list[Json] = field(default_factory=list)
    evals: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def traffic(deployment: Deployment) -> Traffic:
    sent = Traffic(started=datetime.now(UTC))
    clients = {
        "rewards": deployment.loop("rewards")[0],
        "deferred": deployment.loop("deferred")[0],
        "multislot": deployment.loop("multislot")[0],
        "apprentice": deployment.loop("apprentice", learningMode="Apprentice")[0],
        "logging": deployment.loop("logging", learningMode="LoggingOnly")[0],
        "evals": deployment.loop("evals")[0],
    }
    deployment.settle()

    client = clients["rewards"]
    for n, value in enumerate([0.75, -0.5, 1.0]):
        answer = client.rank(rank_body("abc"[n], eventId=f"sdk-reward-{n}"))
        sent.ranked[answer["eventId"]] = answer
        client.reward(answer["eventId"], {"value": value})
        sent.rewards[answer["eventId"]] = value
    answer = client.rank(rank_body("a"))  # no eventId: the service makes one
    sent.ranked[answer["eventId"]] = answer
    sent.unrewarded = answer["eventId"]

    client = clients["deferred"]
    for name in ("activated", "never_activated"):
        answer = client.rank(rank_body("b", eventId=f"sdk-deferred-{name}", deferActivation=True))
        client.reward(answer["eventId"], {"value": 1.0})
        setattr(sent, name, answer["eventId"])
    client.activate(sent.activated)

    body = rank_body("c", actions=["x", "y", "z", "w"], eventId="sdk-multislot")
    body["slots"] = [
        {"id": "Main Article", "features": [{"size": "large"}], "baselineAction": "x"},
        {"id": "Side Bar", "features": [{"size": "small"}], "baselineAction": "y"},
    ]
    sent.multislot = clients["multislot"].rank_multi_slot(body)
    clients["multislot"].reward_multi_slot(
        "sdk-multislot",
        {
            "reward": [
                {"slotId": "Main Article", "value": 1.0},
                {"slotId": "Side Bar", "value": 0.5},
            ]
        },
    )
    clients["multislot"].activate_multi_slot("sdk-multislot")  # shown: harmless, recorded

    for n in range(12):
        answer = clients["apprentice"].rank(
            rank_body("abc"[n % 3], excludedActions=["x"] if n % 2 else [])
        )
        clients["apprentice"].reward(answer["eventId"], {"value": 1.0 if n % 3 == 0 else 0.0})
        sent.apprentice.append(answer)

    for n in range(6):
        answer = clients["logging"].rank(
            rank_body("ab"[n % 2], excludedActions=["x"] if n % 2 else [])
        )
        clients["logging"].reward(answer["eventId"], {"value": 1.0})
        sent.logging.append(answer)

    for n in range(60):
        kind = "abc"[n % 3]
        answer = clients["evals"].rank(rank_body(kind))
        reward = 1.0 if answer["rewardActionId"] == "xyz"["abc".index(kind)] else 0.0
        clients["evals"].reward(answer["eventId"], {"value": reward})
        sent.evals.append(answer["eventId"])
    return sent


# -- rank, reward, activate ------------------------------------------------------------


async def test_rank_then_reward_is_joined_with_that_reward(
    deployment: Deployment, traffic: Traffic
) -> None:
    for event_id, answer in traffic.ranked.items():
        assert {a["id"] for a in answer["ranking"]} == {"x", "y", "z"}
        assert sum(a["probability"] for a in answer["ranking"]) == pytest.approx(1.0, abs=1e-4)
        assert answer["rewardActionId"] in {"x", "y", "z"}
        assert answer["eventId"] == event_id
    assert "sdk-reward-0" in traffic.ranked  # the client's eventId is kept
    expected = {**traffic.rewards, traffic.unrewarded: 0.0}  # defaultReward 0
    joined = await deployment.wait_joined("rewards", set(expected))
    assert {e: j.reward for e, j in joined.items()} == expected
    for event_id, example in joined.items():
        decision = example.decision
        assert decision.chosen_action == traffic.ranked[event_id]["rewardActionId"]
        assert [a.id for a in decision.actions] == ["x", "y", "z"]


async def test_deferred_activation_counts_only_the_activated_decision(
    deployment: Deployment, traffic: Traffic
) -> None:
    decisions = {d.event_id: d for d in await deployment.decisions("deferred")}
    assert not decisions[traffic.activated].activated  # deferred: logged as not yet shown
    assert not decisions[traffic.never_activated].activated
    activations = [json.loads(v) for v in await deployment.read(Streams.ACTIVATIONS)]
    assert [a["event_id"] for a in activations if a["event_id"].startswith("sdk-deferred")] == [
        traffic.activated
    ]
    joined = await deployment.wait_joined("deferred", {traffic.activated})
    assert joined[traffic.activated].reward == 1.0
    # The other closes about then too, dropped as never activated (its window may close
    # in a later step of the join than the activated one's: wait for it as well).
    deadline = time.monotonic() + 30.0
    while True:
        dropped = [json.loads(v) for v in await deployment.read(Streams.DROPPED)]
        reasons = {d["event"].get("event_id"): d["reason"] for d in dropped}
        if traffic.never_activated in reasons or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    assert reasons.get(traffic.never_activated) == "not_activated"
    assert traffic.never_activated not in {e.event_id for e in await deployment.joined("deferred")}


async def test_multislot_rank_uses_each_action_once_and_rewards_each_slot(
    deployment: Deployment, traffic: Traffic
) -> None:
    answer = traffic.multislot
    assert answer["eventId"] == "sdk-multislot"
    assert [s["id"] for s in answer["slots"]] == ["Main Article", "Side Bar"]
    chosen = [s["rewardActionId"] for s in answer["slots"]]
    assert len(set(chosen)) == 2 and set(chosen) <= {"x", "y", "z", "w"}
    decisions = await deployment.decisions("multislot")
    assert decisions, "the multi-slot rank logged no decision"
    examples = await deployment.wait_joined("multislot", {d.event_id for d in decisions})
    assert sorted(e.reward for e in examples.values()) == [0.5, 1.0]
    activations = {json.loads(v)["event_id"] for v in await deployment.read(Streams.ACTIVATIONS)}
    assert {d.event_id for d in decisions} <= activations  # one activate, every slot


# -- learning modes --------------------------------------------------------------------


async def test_apprentice_mode_serves_the_baseline_and_reports_imitation(
    deployment: Deployment, traffic: Traffic
) -> None:
    for n, answer in enumerate(traffic.apprentice):
        baseline = "y" if n % 2 else "x"  # the first non-excluded action
        assert answer["rewardActionId"] == baseline
        probabilities = {a["id"]: a["probability"] for a in answer["ranking"]}
        assert probabilities[baseline] == pytest.approx(1.0)
    decisions = await deployment.decisions("apprentice")
    assert {d.arm for d in decisions} == {"apprentice"}
    await deployment.wait_joined("apprentice", {a["eventId"] for a in traffic.apprentice})
    admin = deployment.admin("apprentice")
    deadline = time.monotonic() + 20
    metrics = None
    while time.monotonic() < deadline:
        metrics = admin.get_service_configuration().get("latestApprenticeModeMetrics")
        if metrics and metrics["numberOfEvents"] >= len(traffic.apprentice):
            break
        time.sleep(0.25)
    assert metrics is not None, "no latestApprenticeModeMetrics after the learner released"
    assert metrics["numberOfEvents"] == len(traffic.apprentice)
    assert 0 <= metrics["numberOfImitatedEvents"] <= metrics["numberOfEvents"]
    assert metrics["sumOfRewards"] == pytest.approx(4.0)  # 12 ranks, every third rewarded 1
    assert {"startTime", "lastProcessedEventTime"} <= set(metrics)


async def test_logging_only_mode_serves_the_baseline_and_learns_nothing(
    deployment: Deployment, traffic: Traffic
) -> None:
    for n, answer in enumerate(traffic.logging):
        assert answer["rewardActionId"] == ("y" if n % 2 else "x")
    decisions = await deployment.decisions("logging")
    assert len(decisions) == len(traffic.logging) and {d.arm for d in decisions} == {"logging"}
    joined = await deployment.wait_joined("logging", {a["eventId"] for a in traffic.logging})
    assert [j.reward for j in joined.values()] == [1.0] * len(traffic.logging)  # logged for later
    time.sleep(1.0)  # a release would be due by now (0.5 s cadence)
    assert deployment.model("logging")["examples_learned"] == 0


# -- evaluations, feature importances --------------------------------------------------


def wait_status(get: Any, done: set[str], timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, Any] = get()
        if found["status"] in done or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


async def test_evaluation_and_feature_importance_lifecycle(
    deployment: Deployment, traffic: Traffic
) -> None:
    await deployment.wait_joined("evals", set(traffic.evals))
    admin = deployment.admin("evals")
    start, end = traffic.started - timedelta(minutes=5), datetime.now(UTC) + timedelta(minutes=5)
    custom = {"name": "custom", "arguments": "--cb_explore_adf --epsilon 0.05 -l 0.01 -q ::"}
    contract = {
        "name": "first evaluation",
        "startTime": start.isoformat(),
        "endTime": end.isoformat(),
        "policies": [custom],
        "enablePolicyOptimization": False,
    }
    assert admin.create_evaluation("eval-1", contract) is None  # 200, no body
    with pytest.raises(HttpResponseError) as again:
        admin.create_evaluation("eval-1", contract)
    assert error_code(again.value) == (409, "EvaluationAlreadyExists")

    evaluation = wait_status(
        lambda: admin.get_evaluation("eval-1", start_time=start, end_time=end),
        {"Succeeded", "Failed", "Timeout", "Canceled"},
    )
    assert evaluation["status"] == "Succeeded", evaluation
    assert evaluation["id"] == "eval-1" and evaluation["name"] == "first evaluation"
    results = {r["name"]: r for r in evaluation["content"]["value"]}
    assert "custom" in results, sorted(results)
    assert {r["policySource"] for r in results.values()} >= {"Online", "Custom"}
    for result in results.values():
        low, high = result["summary"]["confidenceInterval"]
        assert low <= result["summary"]["expectedReward"] <= high
    assert "eval-1" in [e["id"] for e in admin.list_evaluations()]

    admin.apply_from_evaluation({"evaluationId": "eval-1", "policyName": "custom"})
    assert admin.get_policy()["arguments"] == custom["arguments"]
    with pytest.raises(HttpResponseError) as unknown:
        admin.apply_from_evaluation({"evaluationId": "eval-1", "policyName": "nobody"})
    assert error_code(unknown.value)[1] == "LearningSettingsNotFound"

    importance = {"name": "importance", "startTime": start.isoformat(), "endTime": end.isoformat()}
    assert admin.create_feature_importance("fi-1", importance) is None
    found = wait_status(
        lambda: admin.get_feature_importance("fi-1"), {"Succeeded", "Failed", "Timeout", "Canceled"}
    )
    assert found["status"] == "Succeeded", found
    scores = [s["score"] for s in found["featureScores"]]
    assert scores and scores == sorted(scores, reverse=True)
    assert {s["namespace"] for s in found["featureScores"]} & {"user"}
    assert "fi-1" in [f["id"] for f in admin.list_feature_importances()]
    assert admin.delete_feature_importance("fi-1") is None
    with pytest.raises(HttpResponseError) as gone:
        admin.get_feature_importance("fi-1")
    assert error_code(gone.value) == (404, "FeatureImportanceNotFound")

    assert admin.delete_evaluation("eval-1") is None
    with pytest.raises(HttpResponseError) as deleted:
        admin.get_evaluation("eval-1", start_time=start, end_time=end)
    assert error_code(deleted.value) == (404, "EvaluationNotFound")


# -- bad requests change nothing -------------------------------------------------------


async def test_bad_requests_get_personalizer_errors_and_change_nothing(
    deployment: Deployment,
) -> None:
    client, _ = deployment.loop("bad")
    good = client.rank(rank_body("a", eventId="sdk-bad-good"))
    decisions_before = deployment.decisions_metric("bad")
    logged_before = len(await deployment.decisions("bad"))
    rewards_before = len(await deployment.rewards())

    def refused(call: Any, *args: Any) -> tuple[int | None, str | None]:
        with pytest.raises(HttpResponseError) as exc:
            call(*args)
        return error_code(exc.value)

    no_actions = {"contextFeatures": [{"user": {"kind": "a"}}]}
    assert refused(client.rank, no_actions) in {(400, "BadRequest"), (400, "InvalidRankRequest")}
    duplicate = rank_body("a", actions=["x", "x"])
    assert refused(client.rank, duplicate) == (400, "InvalidRankRequest")
    too_many = rank_body("a", actions=[f"a{i}" for i in range(51)])
    assert refused(client.rank, too_many) == (400, "InvalidRankRequest")
    assert refused(client.reward, good["eventId"], {"value": 2.0}) == (
        400,
        "InvalidRewardRequest",
    )
    status, code = refused(client.reward, "sdk-no-such-event", {"value": 1.0})
    assert status in {400, 404} and code in {"ResourceNotFound", "InvalidRewardRequest"}
    status, code = refused(client.activate, "sdk-no-such-event")
    assert status in {400, 404} and code in {"ResourceNotFound", "InvalidEventIdToActivate"}
    with pytest.raises(ClientAuthenticationError):
        deployment.client("bad", key="not-a-key").rank(rank_body("a"))
    with pytest.raises(HttpResponseError) as not_admin:
        deployment.admin("bad", key=CLIENT_KEY).update_policy({"name": "n", "arguments": "-q ::"})
    assert error_code(not_admin.value)[0] in {401, 403}

    assert deployment.decisions_metric("bad") == decisions_before
    assert len(await deployment.decisions("bad")) == logged_before == 1
    assert len(await deployment.rewards()) == rewards_before
    assert deployment.admin("bad").get_policy()["arguments"] != "-q ::"


# -- one machinery ---------------------------------------------------------------------


async def test_personalizer_loops_are_learnloop_decision_points(
    deployment: Deployment, traffic: Traffic, tmp_path: Path
) -> None:
    with deployment.http(CLIENT_KEY) as http:
        points = {p["name"]: p for p in http.get("/v1/decision-points").json()}
    assert {"rewards", "deferred", "multislot", "apprentice", "logging", "evals"} <= set(points)
    assert points["rewards"]["window_seconds"] == WAIT_SECONDS
    assert points["apprentice"]["learning_mode"] == "apprentice"
    assert deployment.decisions_metric("rewards") == len(traffic.ranked)
    await deployment.wait_joined("rewards", set(traffic.ranked))
    out = tmp_path / "rewards.dsjson"
    run_learnloop(
        "export", out, "--data-dir", deployment.service.data_dir, "--decision-point", "rewards"
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {line["EventId"] for line in lines} == set(traffic.ranked)
    for line in lines:
        assert {"_label_cost", "_label_probability", "_labelIndex", "a", "c", "p"} <= set(line)
    assert ADMIN_KEY not in out.read_text()
