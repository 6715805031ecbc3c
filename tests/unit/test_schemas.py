"""Contracts: committed JSON Schemas are current, events validate as documented."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import ModuleType
from typing import get_args

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from app.routes import decision_points, decisions, health, models, outcomes
from schemas import (
    DecisionEvent,
    DecisionPointConfig,
    DecisionPointUpdate,
    DecisionRequest,
    OutcomeRequest,
)
from schemas.export import JSON_DIR, MODELS, rendered


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
@pytest.mark.parametrize("model", [DecisionPointConfig, DecisionPointUpdate])
def test_decision_point_vw_args_checked(
    model: type[DecisionPointConfig | DecisionPointUpdate], args: str, fragment: str
) -> None:
    with pytest.raises(ValidationError, match=fragment):
        model.model_validate({"name": "p", "vw_args": args} if model is DecisionPointConfig
                             else {"vw_args": args})  # fmt: skip


def test_a_put_body_named_by_its_path_is_the_config() -> None:
    update = DecisionPointUpdate(actions=[{"id": "a"}], window_seconds=5)
    config = update.named("checkout")
    assert config == DecisionPointConfig(name="checkout", actions=[{"id": "a"}], window_seconds=5)
    assert set(DecisionPointConfig.model_fields) - set(DecisionPointUpdate.model_fields) == {"name"}


def _models_in(annotation: object) -> list[type[BaseModel]]:
    """The pydantic models anywhere in a type (``list[X]``, unions, ``Annotated``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _route_models(module: ModuleType) -> list[tuple[str, type[BaseModel]]]:
    """Every pydantic model a router's routes take as body or answer with."""
    found = []
    for route in module.router.routes:
        assert isinstance(route, APIRoute)
        types = [route.response_model] + [r.get("model") for r in route.responses.values()]
        if route.body_field is not None:
            types.append(route.body_field.field_info.annotation)
        where = f"{sorted(route.methods or ())} {route.path}"
        found += [(where, model) for t in types for model in _models_in(t)]
    return found


@pytest.mark.parametrize("module", [decisions, outcomes, models, health, decision_points])
def test_route_bodies_are_exported_contracts(module: ModuleType) -> None:
    """A body defined next to its route would have no JSON Schema in schemas/json."""
    found = _route_models(module)
    assert found, f"{module.__name__} declares no bodies: is the scan broken?"
    missing = [f"{where}: {m.__module__}.{m.__qualname__}" for where, m in found if m not in MODELS]
    assert not missing, f"define these in schemas/ and list them in schemas/export.py: {missing}"
