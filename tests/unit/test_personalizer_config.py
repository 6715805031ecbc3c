"""Personalizer's service configuration and learning settings (policy) on a learnloop loop.

Over the API harness (in-memory stores, fake clock): what each call answers, in both
API versions, and what it did to the decision point and the settings document; and
that every refused call changed neither. The model and log calls are tested in
``test_personalizer_model``, which shares this module's fixture and helpers.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from app.personalizer.loop import PERSONALIZER_VW_ARGS
from learnloop.audit import MemoryAuditLog
from schemas.config import DecisionPointConfig
from schemas.events import ModelRelease
from tests.unit.test_api_harness import START, Harness, running_app, trained_model

PREVIEW = "?api-version=2022-09-01-preview"
LOOP = "personalizer"  # Settings.personalizer_decision_point
ROOT = "/personalizer"
STABLE = "/personalizer/v1.0"

FULL_CONFIG: dict[str, Any] = {
    "rewardWaitTime": "PT20M",
    "defaultReward": -0.5,
    "rewardAggregation": "average",
    "explorationPercentage": 0.3,
    "modelExportFrequency": "PT5M",
    "logMirrorEnabled": True,
    "logMirrorSasUri": "https://example.invalid/container?sig=x",
    "logRetentionDays": 7,
    "learningMode": "Online",
    "isAutoOptimizationEnabled": True,
    "autoOptimizationFrequency": "P7D",
    "autoOptimizationStartDate": "2019-01-19T00:00:00Z",
    "modelRetrainDays": 3,
}
AZURE_POLICY = (
    "--cb_explore_adf --epsilon 0.2 --dsjson --cb_type ips -l 0.5 --l1 1E-07 --power_t 0.5"
)


@pytest.fixture
def h() -> Iterator[Harness]:
    with running_app() as harness:
        harness.app.state.audit = MemoryAuditLog()
        # the first Personalizer call creates the loop's decision point with its defaults
        assert harness.client.get(url("configurations/policy")).status_code == 200
        yield harness


def url(path: str, stable: bool = False) -> str:
    return f"{STABLE}/{path}" if stable else f"{ROOT}/{path}{PREVIEW}"


def call(h: Harness, method: str, path: str, stable: bool = False, **kw: Any) -> httpx.Response:
    response: httpx.Response = h.client.request(method, url(path, stable), **kw)
    return response


def loop_config(h: Harness) -> DecisionPointConfig:
    config = h.client.portal.call(h.decision_points.get, LOOP)  # type: ignore[union-attr]
    assert config is not None
    return config


def settings_doc(h: Harness) -> dict[str, Any] | None:
    store = h.app.state.personalizer
    found: dict[str, Any] | None = h.client.portal.call(  # type: ignore[union-attr]
        store.get, LOOP, "settings", "service"
    )
    return found


def current(h: Harness) -> ModelRelease | None:
    found: ModelRelease | None = h.client.portal.call(h.models.current, LOOP)  # type: ignore[union-attr]
    return found


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert response.headers["x-ms-error-code"] == code


def release(h: Harness, version: int, vw_args: str, at: timedelta, **metrics: float) -> None:
    h.publish(
        ModelRelease(
            event_id=f"{LOOP}-v{version}",
            timestamp=START + at,
            decision_point=LOOP,
            version=version,
            vw_args=vw_args,
            model_location="",
            examples_learned=100 * version,
            metrics=metrics,
        ),
        trained_model(vw_args, 1),
    )


# -- service configuration ---------------------------------------------------------------


def test_defaults_in_both_versions(h: Harness) -> None:
    preview = call(h, "GET", "configurations/service")
    assert preview.status_code == 200, preview.text
    assert preview.json() == {
        "rewardWaitTime": "PT10M",
        "defaultReward": 0.0,
        "rewardAggregation": "earliest",
        "explorationPercentage": 0.2,
        "modelExportFrequency": "PT1S",  # the learner's real cadence (release_every_seconds)
        "logMirrorEnabled": False,
        "logRetentionDays": -1,
        "modelRetrainDays": 0,
        "learningMode": "Online",
        "isAutoOptimizationEnabled": False,
    }
    stable = call(h, "GET", "configurations/service", stable=True).json()
    assert stable == {
        k: v
        for k, v in preview.json().items()
        if k not in {"modelRetrainDays", "learningMode", "isAutoOptimizationEnabled"}
    }


def test_update_roundtrip_maps_onto_the_decision_point(h: Harness) -> None:
    h.clock.advance(60)
    response = call(h, "PUT", "configurations/service", json=FULL_CONFIG)
    assert response.status_code == 200, response.text
    expected = {**FULL_CONFIG, "lastConfigurationEditDate": "2026-03-01T12:01:00Z"}
    assert response.json() == expected
    assert call(h, "GET", "configurations/service").json() == expected

    config = loop_config(h)
    assert config.window_seconds == 1200
    assert config.default_reward == -0.5
    assert config.direct_aggregation == "mean"
    assert config.learning_mode == "online"
    assert config.vw_args == PERSONALIZER_VW_ARGS.replace("--epsilon 0.2", "--epsilon 0.3")
    doc = settings_doc(h)
    assert doc is not None and doc["log_retention_days"] == 7 and doc["model_retrain_days"] == 3

    stable = call(h, "GET", "configurations/service", stable=True).json()
    assert "learningMode" not in stable and "lastConfigurationEditDate" not in stable
    assert stable["rewardWaitTime"] == "PT20M"


def test_timespan_durations_are_read_and_answered_in_iso(h: Harness) -> None:
    body = {**FULL_CONFIG, "rewardWaitTime": "00:10:00", "modelExportFrequency": "1.00:00:00"}
    response = call(h, "PUT", "configurations/service", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["rewardWaitTime"] == "PT10M"
    assert response.json()["modelExportFrequency"] == "P1D"


def test_get_then_put_back_is_accepted(h: Harness) -> None:
    """Clients edit what GET answered and send it all back, server-owned fields too."""
    call(h, "PUT", "configurations/service", json=FULL_CONFIG)
    response = call(
        h, "PUT", "configurations/service", json={**FULL_CONFIG, "learningMode": "Apprentice"}
    )
    assert response.status_code == 200, response.text
    answered = call(h, "GET", "configurations/service").json()
    assert "latestApprenticeModeMetrics" in answered
    answered["explorationPercentage"] = 0.1
    response = call(h, "PUT", "configurations/service", json=answered)
    assert response.status_code == 200, response.text
    assert "--epsilon 0.1" in loop_config(h).vw_args


BAD_UPDATES = [
    ("rewardWaitTime", "PT1S", "InvalidRewardWaitTime"),
    ("rewardWaitTime", "P3D", "InvalidRewardWaitTime"),
    ("rewardWaitTime", "soon", "BadRequest"),
    ("defaultReward", 1.5, "InvalidServiceConfiguration"),
    ("rewardAggregation", "sum", "InvalidServiceConfiguration"),
    ("explorationPercentage", -0.1, "InvalidServiceConfiguration"),
    ("modelExportFrequency", "PT0S", "InvalidServiceConfiguration"),
    ("logRetentionDays", 0, "InvalidLogRetentionDays"),
    ("logRetentionDays", -2, "InvalidLogRetentionDays"),
    ("modelRetrainDays", 8, "InvalidModelRetrainDays"),
    ("learningMode", "Sometimes", "BadRequest"),
    ("defaultReward", None, "InvalidServiceConfiguration"),  # required
]


@pytest.mark.parametrize(("field", "value", "code"), BAD_UPDATES)
def test_refused_update_changes_nothing(h: Harness, field: str, value: Any, code: str) -> None:
    assert call(h, "PUT", "configurations/service", json=FULL_CONFIG).status_code == 200
    before = (loop_config(h), settings_doc(h))
    body = {**FULL_CONFIG, field: value}
    if value is None:
        del body[field]
    assert_error(call(h, "PUT", "configurations/service", json=body), 400, code)
    assert (loop_config(h), settings_doc(h)) == before


def test_stable_refusals_use_the_v1_code(h: Harness) -> None:
    body = {k: v for k, v in FULL_CONFIG.items() if k != "modelRetrainDays"}
    body["rewardWaitTime"] = "PT1S"
    response = call(h, "PUT", "configurations/service", stable=True, json=body)
    assert_error(response, 400, "InvalidServiceConfiguration")
    assert loop_config(h).window_seconds == 600


def test_learning_modes(h: Harness) -> None:
    assert call(h, "PUT", "configurations/service", json=FULL_CONFIG).status_code == 200
    h.clock.advance(30)
    apprentice = {**FULL_CONFIG, "learningMode": "Apprentice"}
    assert call(h, "PUT", "configurations/service", json=apprentice).status_code == 200
    assert loop_config(h).learning_mode == "apprentice"
    doc = settings_doc(h)
    assert doc is not None and doc["apprentice_start_time"] == "2026-03-01T12:00:30Z"

    logging_only = {**FULL_CONFIG, "learningMode": "LoggingOnly"}
    assert call(h, "PUT", "configurations/service", json=logging_only).status_code == 200
    assert loop_config(h).learning_mode == "logging"

    # v1.0 has no learning mode: an update through it keeps the current one
    stable_body = {**FULL_CONFIG, "learningMode": "Online"}
    assert (
        call(h, "PUT", "configurations/service", stable=True, json=stable_body).status_code == 200
    )
    assert loop_config(h).learning_mode == "logging"


def test_mode_and_reward_settings_cannot_change_together(h: Harness) -> None:
    assert call(h, "PUT", "configurations/service", json=FULL_CONFIG).status_code == 200
    before = (loop_config(h), settings_doc(h))
    body = {**FULL_CONFIG, "learningMode": "Apprentice", "defaultReward": 0.0}
    response = call(h, "PUT", "configurations/service", json=body)
    assert_error(response, 400, "InvalidLearningModeServiceConfiguration")
    assert (loop_config(h), settings_doc(h)) == before


def test_exploration_is_kept_not_applied_under_another_explorer(h: Harness) -> None:
    policy = {"name": "square", "arguments": "--cb_explore_adf --squarecb -q ::"}
    assert call(h, "PUT", "configurations/policy", json=policy).status_code == 200
    assert call(h, "GET", "configurations/service").json()["explorationPercentage"] == 0.2
    body = {**FULL_CONFIG, "explorationPercentage": 0.4}
    response = call(h, "PUT", "configurations/service", json=body)
    assert response.json()["explorationPercentage"] == 0.4
    assert loop_config(h).vw_args == "--cb_explore_adf --squarecb -q ::"


def test_apprentice_metrics_from_the_releases(h: Harness) -> None:
    args = PERSONALIZER_VW_ARGS
    release(h, 1, args, timedelta(minutes=1), apprentice_events=4.0)
    body = {**FULL_CONFIG, "learningMode": "Apprentice", "rewardWaitTime": "PT10M"}
    body.update(defaultReward=0.0, rewardAggregation="earliest", explorationPercentage=0.2)
    h.clock.advance(120)
    assert call(h, "PUT", "configurations/service", json=body).status_code == 200
    metrics = call(h, "GET", "configurations/service").json()["latestApprenticeModeMetrics"]
    assert metrics["numberOfEvents"] == 0  # counted from the switch: 4 events were before it
    assert metrics["startTime"] == "2026-03-01T12:02:00Z"

    counters = {
        "apprentice_events": 14.0,
        "apprentice_imitated": 6.0,
        "apprentice_reward_sum": 5.0,
        "apprentice_imitated_reward_sum": 2.5,
        "apprentice_first_event_time": (START + timedelta(minutes=3)).timestamp(),
        "apprentice_last_event_time": (START + timedelta(minutes=9)).timestamp(),
    }
    release(h, 2, args, timedelta(minutes=5), **{**counters, "apprentice_events": 10.0})
    release(h, 3, args, timedelta(minutes=10), **counters)
    metrics = call(h, "GET", "configurations/service").json()["latestApprenticeModeMetrics"]
    assert metrics == {
        "startTime": "2026-03-01T12:02:00Z",
        "numberOfEvents": 10,
        "sumOfRewards": 5.0,
        "sumOfImitatedRewards": 2.5,
        "numberOfImitatedEvents": 6,
        "lastProcessedEventTime": "2026-03-01T12:09:00Z",
        "lastBatchMetrics": {
            "numberOfEvents": 4,
            "sumOfRewards": 0.0,
            "sumOfImitatedRewards": 0.0,
            "numberOfImitatedEvents": 0,
        },
    }
    stable = call(h, "GET", "configurations/service", stable=True).json()
    assert "latestApprenticeModeMetrics" not in stable


# -- policy ------------------------------------------------------------------------------


@pytest.mark.parametrize("stable", [False, True])
def test_policy_get_update_reset(h: Harness, stable: bool) -> None:
    got = call(h, "GET", "configurations/policy", stable=stable)
    assert got.status_code == 200
    assert got.json() == {"name": LOOP, "arguments": PERSONALIZER_VW_ARGS}

    body = {"name": "myPersonalizer", "arguments": AZURE_POLICY}
    updated = call(h, "PUT", "configurations/policy", stable=stable, json=body)
    assert updated.status_code == 200, updated.text
    runs = AZURE_POLICY.replace(" --dsjson", "")  # learnloop feeds VW its own text format
    assert updated.json() == {"name": "myPersonalizer", "arguments": runs}
    assert loop_config(h).vw_args == runs
    assert call(h, "GET", "configurations/policy", stable=stable).json()["arguments"] == runs

    call(h, "PUT", "configurations/service", json={**FULL_CONFIG, "explorationPercentage": 0.35})
    reset = call(h, "DELETE", "configurations/policy", stable=stable)
    assert reset.status_code == 200
    expected = PERSONALIZER_VW_ARGS.replace("--epsilon 0.2", "--epsilon 0.35")
    assert reset.json() == {"name": LOOP, "arguments": expected}
    assert loop_config(h).vw_args == expected


@pytest.mark.parametrize(
    "arguments",
    [
        "--epsilon 0.2",  # not an ADF contextual bandit
        "--cb_explore_adf -f /tmp/model.vw",  # names a file
        "--cb_explore_adf --no_such_option 3",  # VW refuses it
        "--cb_explore_adf --cb_type nope",
    ],
)
def test_refused_policy_changes_nothing(h: Harness, arguments: str) -> None:
    before = (loop_config(h), settings_doc(h))
    response = call(h, "PUT", "configurations/policy", json={"name": "x", "arguments": arguments})
    assert_error(response, 400, "InvalidPolicyConfiguration")
    assert (loop_config(h), settings_doc(h)) == before


def test_admin_key_required() -> None:
    with running_app(admin_api_key="admin-secret") as h:
        assert call(h, "GET", "configurations/policy").status_code == 401
        ok = call(
            h, "GET", "configurations/policy", headers={"Ocp-Apim-Subscription-Key": "admin-secret"}
        )
        assert ok.status_code == 200


def test_loops_are_separate(h: Harness) -> None:
    other = "/loops/news/personalizer"
    response = h.client.put(f"{other}/configurations/service{PREVIEW}", json=FULL_CONFIG)
    assert response.status_code == 200, response.text
    news = h.client.portal.call(h.decision_points.get, "news")  # type: ignore[union-attr]
    assert news is not None and news.window_seconds == 1200
    assert loop_config(h).window_seconds == 600
