"""POST /v1/outcomes: one outcome or a batch, deduplicated by outcome_id."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from learnloop.eventlog import Streams
from schemas.events import OutcomeEvent
from tests.unit.test_api_harness import (
    Harness,
    running_app,
)


@pytest.fixture
def harness() -> Iterator[Harness]:
    with running_app() as h:
        yield h


def _outcomes(h: Harness) -> list[OutcomeEvent]:
    return [OutcomeEvent.model_validate_json(v) for v in h.stream(Streams.OUTCOMES)]


def test_single_outcome_is_logged_without_its_decision_existing(harness: Harness) -> None:
    response = harness.client.post(
        "/v1/outcomes", json={"event_id": "decided-elsewhere", "type": "basket_add", "value": 3}
    )

    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0}
    [outcome] = _outcomes(harness)
    assert outcome.event_id == "decided-elsewhere"
    assert outcome.type == "basket_add"
    assert outcome.value == 3.0
    assert outcome.timestamp == harness.clock.now()
    assert outcome.outcome_id


def test_batch_is_written_in_one_append_keyed_by_decision_or_session(harness: Harness) -> None:
    past = harness.clock.now() - timedelta(seconds=30)
    batch = [
        {"event_id": "e-1", "type": "detail_view"},
        {"session_id": "s-9", "type": "basket_add", "timestamp": past.isoformat()},
        {"event_id": "e-2", "session_id": "s-9", "type": "purchase", "value": 19.9},
    ]

    response = harness.client.post("/v1/outcomes", json=batch)

    assert response.status_code == 202
    assert response.json()["accepted"] == 3
    records = harness.client.portal.call(harness.events.read, [Streams.OUTCOMES], -1)  # type: ignore[union-attr]
    assert [r.key for r in records] == ["e-1", "s-9", "e-2"]
    outcomes = _outcomes(harness)
    assert outcomes[1].timestamp == past
    assert outcomes[1].event_id is None
    assert len({o.outcome_id for o in outcomes}) == 3


def test_retried_outcome_ids_are_recorded_once(harness: Harness) -> None:
    batch = [
        {"outcome_id": "o-1", "event_id": "e", "type": "detail_view"},
        {"outcome_id": "o-2", "event_id": "e", "type": "basket_add"},
    ]
    harness.client.post("/v1/outcomes", json=batch)

    retry = harness.client.post("/v1/outcomes", json=batch)

    assert retry.status_code == 202
    assert retry.json() == {"accepted": 2, "duplicates": 2}
    assert [o.outcome_id for o in _outcomes(harness)] == ["o-1", "o-2"]


def test_outcome_metrics_count_accepted_types(harness: Harness) -> None:
    harness.client.post("/v1/outcomes", json=[{"session_id": "s", "type": "basket_add"}] * 2)
    text = harness.client.get("/metrics").text
    assert 'learnloop_outcomes_total{type="basket_add"} 2.0' in text
