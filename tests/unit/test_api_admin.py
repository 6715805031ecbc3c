"""Decision points, models, probes, metrics, docs and API keys."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta

import pytest

from learnloop.decision_points import load_config_file
from tests.unit.test_api_harness import (
    DP,
    Harness,
    HarnessFactory,
    harness_factory,
    release,
    running_app,
    trained_model,
)

VW_ARGS = load_config_file(None)[0].vw_args  # the shipped home_products arguments


@pytest.fixture
def harness() -> Iterator[Harness]:
    with running_app() as h:
        yield h


@pytest.fixture
def make_harness() -> Iterator[HarnessFactory]:
    with harness_factory() as build:
        yield build


def test_decision_points_are_listed_and_read(harness: Harness) -> None:
    listed = harness.client.get("/v1/decision-points")
    one = harness.client.get(f"/v1/decision-points/{DP}")
    missing = harness.client.get("/v1/decision-points/nope")

    assert [c["name"] for c in listed.json()] == [DP]
    assert one.status_code == 200
    assert one.json()["vw_args"] == VW_ARGS
    assert [a["id"] for a in one.json()["actions"]][:2] == ["category1", "category2"]
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


def test_put_with_new_actions_is_used_by_the_next_decision(harness: Harness) -> None:
    response = harness.client.put(
        f"/v1/decision-points/{DP}",
        json={
            "actions": [{"id": "hero-a"}, {"id": "hero-b"}],
            "window_seconds": 5,
        },
    )

    assert response.status_code == 200
    assert response.json()["name"] == DP
    assert response.json()["window_seconds"] == 5
    answer = harness.decide()
    assert {r["id"] for r in answer["ranking"]} == {"hero-a", "hero-b"}


def test_put_creates_a_decision_point_with_a_model_at_once(harness: Harness) -> None:
    harness.client.put(
        "/v1/decision-points/checkout_layout",
        json={
            "actions": [{"id": "one-page"}, {"id": "wizard"}],
        },
    )

    model = harness.client.get("/v1/models/checkout_layout")
    response = harness.client.post("/v1/decisions", json={"decision_point": "checkout_layout"})

    assert model.status_code == 200
    assert model.json()["version"] == 0
    assert response.status_code == 200
    assert response.json()["action_id"] in {"one-page", "wizard"}


def test_models_endpoint_reports_untrained_then_the_release(harness: Harness) -> None:
    untrained = harness.client.get(f"/v1/models/{DP}").json()
    assert untrained == {
        "decision_point": DP,
        "version": 0,
        "trained": False,
        "vw_args": VW_ARGS,
        "released_at": None,
        "age_seconds": None,
        "examples_learned": 0,
        "metrics": {},
    }

    harness.publish(
        release(4, VW_ARGS, examples_learned=800, metrics={"reward_mean": 1.2, "examples": 800.0}),
        trained_model(VW_ARGS, favourite=2),
    )
    harness.client.portal.call(harness.app.state.registry.refresh, DP)  # type: ignore[union-attr]
    harness.clock.advance(90)
    info = harness.client.get(f"/v1/models/{DP}").json()

    assert info["version"] == 4
    assert info["trained"] is True
    assert info["examples_learned"] == 800
    assert info["metrics"]["reward_mean"] == 1.2
    assert info["age_seconds"] == pytest.approx(90.0)
    assert harness.client.get("/v1/models/nope").status_code == 404


def test_probes_metrics_and_docs(harness: Harness) -> None:
    harness.decide()
    harness.client.get("/v1/nope")

    assert harness.client.get("/healthz").json() == {"status": "ok", "pid": os.getpid()}
    assert harness.client.get("/readyz").status_code == 200
    metrics = harness.client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert (
        'learnloop_decisions_total{arm="learned",decision_point="home_products",'
        'persona="visitor"} 1.0' in text
    )
    assert "learnloop_decision_latency_seconds_bucket" in text
    assert 'learnloop_eventlog_append_seconds_count{stream="decisions"} 1.0' in text
    assert 'learnloop_model_version{decision_point="home_products"} 0.0' in text
    assert 'learnloop_http_errors_total{status="404"} 1.0' in text
    assert harness.client.get("/docs").status_code == 200
    paths = harness.client.get("/openapi.json").json()["paths"]
    assert {"/v1/decisions", "/v1/outcomes", "/v1/decision-points/{name}"} <= set(paths)


def test_model_age_gauge_follows_the_clock(harness: Harness) -> None:
    harness.publish(release(1, VW_ARGS), trained_model(VW_ARGS, favourite=0))
    harness.client.portal.call(harness.app.state.registry.refresh, DP)  # type: ignore[union-attr]
    harness.clock.advance(timedelta(minutes=2).total_seconds())
    text = harness.client.get("/metrics").text
    assert 'learnloop_model_age_seconds{decision_point="home_products"} 120.0' in text
    assert 'learnloop_model_version{decision_point="home_products"} 1.0' in text


@pytest.mark.parametrize(
    ("headers", "decide_status", "put_status"),
    [
        ({}, 401, 401),
        ({"X-API-Key": "wrong"}, 401, 403),
        ({"X-API-Key": "client-1"}, 200, 403),
        ({"Ocp-Apim-Subscription-Key": "client-2"}, 200, 403),
        ({"X-API-Key": "admin"}, 200, 200),
    ],
    ids=["no-key", "wrong-key", "client-key", "personalizer-header", "admin-key"],
)
def test_api_keys_when_configured(
    make_harness: HarnessFactory, headers: dict[str, str], decide_status: int, put_status: int
) -> None:
    h = make_harness(client_api_keys=("client-1", "client-2"), admin_api_key="admin")
    before = h.end_offset()

    decide = h.client.post("/v1/decisions", json={"decision_point": DP}, headers=headers)
    put = h.client.put(
        f"/v1/decision-points/{DP}", json={"actions": [{"id": "x"}]}, headers=headers
    )

    assert decide.status_code == decide_status
    assert put.status_code == put_status
    if decide_status != 200:
        assert decide.json()["error"] == "unauthorized"
        assert h.end_offset() == before
    assert h.client.get("/healthz").status_code == 200  # probes stay open


def test_no_keys_configured_means_open_routes(harness: Harness) -> None:
    assert harness.client.post("/v1/decisions", json={"decision_point": DP}).status_code == 200
    assert (
        harness.client.put(f"/v1/decision-points/{DP}", json={"actions": [{"id": "x"}]}).status_code
        == 200
    )
