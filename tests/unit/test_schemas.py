"""Contracts: committed JSON Schemas are current, events validate as documented."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from schemas import DecisionEvent, DecisionPointSpec, DecisionRequest, OutcomeRequest
from schemas.export import JSON_DIR, rendered


def test_committed_json_schemas_are_current() -> None:
    stale = [
        name
        for name, text in rendered().items()
        if not (JSON_DIR / name).exists() or (JSON_DIR / name).read_text() != text
    ]
    assert not stale, f"run `make schemas` and commit: stale {stale}"
    extra = {p.name for p in JSON_DIR.glob("*.json")} - set(rendered())
    assert not extra, f"schema files without a model: {extra}"


def test_event_times_are_normalised_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    event = DecisionEvent(
        event_id="e1",
        timestamp=datetime(2026, 5, 1, 12, tzinfo=plus_two),
        decision_point="home_products",
        context={},
        persona="visitor",
        actions=[{"id": "a"}],
        chosen_index=0,
        probabilities=[1.0],
        model_version="0",
    )
    assert event.timestamp == datetime(2026, 5, 1, 10, tzinfo=UTC)
    assert event.timestamp.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"decision_point": "x", "timestamp": "2026-01-01T00:00:00"}, "timezone"),
        ({"decision_point": "x", "actions": []}, "at least 1"),
        ({"decision_point": "x", "actions": [{"id": "a"}, {"id": "a"}]}, "duplicate action id"),
        ({"decision_point": "x", "actions": [{"id": f"a{i}"} for i in range(257)]}, "at most 256"),
        ({"decision_point": "x", "context": {"features": {"f": float("nan")}}}, "finite"),
        ({"decision_point": "x", "context": {"features": {"f": {"g": {"h": 1}}}}}, "features"),
        ({"decision_point": "bad name!"}, "pattern"),
        ({"decision_point": "x", "surprise": 1}, "Extra inputs"),
    ],
    ids=[
        "naive-time",
        "no-actions",
        "duplicate-ids",
        "257-actions",
        "nan",
        "too-deep",
        "bad-name",
        "extra",
    ],
)
def test_decision_request_refuses(body: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        DecisionRequest.model_validate(body)


def test_outcome_needs_event_or_session() -> None:
    with pytest.raises(ValidationError, match="event_id or a session_id"):
        OutcomeRequest(type="basket_add")
    assert OutcomeRequest(type="basket_add", session_id="s").session_id == "s"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [("--cb_adf", "must contain --cb_explore_adf"), ("--cb_explore_adf -d x.txt", "-d")],
)
def test_decision_point_vw_args_checked(args: str, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        DecisionPointSpec(vw_args=args)
