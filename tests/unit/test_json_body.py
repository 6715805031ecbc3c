"""read_body answers every body exactly as FastAPI's own body parameter would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from app.api.errors import install_error_handlers
from app.api.json_body import read_body
from schemas.api import DecisionRequest
from tests.unit.test_api_harness import running_app

JSON = {"content-type": "application/json"}

# (body bytes, headers): well-formed, malformed and invalid bodies, odd content types.
BODIES: dict[str, tuple[bytes, dict[str, str]]] = {
    "minimal": (b'{"decision_point": "p"}', JSON),
    "full": (
        b'{"decision_point": "p", "context": {"user_id": "u", "features": {"a": 1, "g": '
        b'{"r": "eu"}}}, "actions": [{"id": "x", "features": {"n": 2.5}}], '
        b'"excluded_actions": ["y"], "event_id": "e-1", "timestamp": "2026-01-01T00:00:00+01:00",'
        b' "defer_activation": true}',
        JSON,
    ),
    "empty": (b"", JSON),
    "null": (b"null", JSON),
    "malformed": (b'{"decision_point": "home_', JSON),
    "trailing-garbage": (b'{"decision_point": "p"} x', JSON),
    "not-an-object": (b"[1, 2]", JSON),
    "wrong-type": (b'{"decision_point": 5}', JSON),
    "unknown-field": (b'{"decision_point": "p", "contxt": {}}', JSON),
    "nan-feature": (b'{"decision_point": "p", "context": {"features": {"x": NaN}}}', JSON),
    "nested-too-deep": (
        b'{"decision_point": "p", "context": {"features": {"g": {"e": {"d": 1}}}}}',
        JSON,
    ),
    "duplicate-actions": (b'{"decision_point": "p", "actions": [{"id": "a"}, {"id": "a"}]}', JSON),
    "naive-timestamp": (b'{"decision_point": "p", "timestamp": "2026-03-01T12:00:00"}', JSON),
    "bad-event-id": (b'{"decision_point": "p", "event_id": "a b"}', JSON),
    "charset-json": (
        b'{"decision_point": "p"}',
        {"content-type": "application/json; charset=utf-8"},
    ),
    "vendor-json": (b'{"decision_point": "p"}', {"content-type": "application/vnd.x+json"}),
    "text-plain": (b'{"decision_point": "p"}', {"content-type": "text/plain"}),
    "no-content-type": (b'{"decision_point": "p"}', {}),
    "not-utf8": (b'{"decision_point": "\xff"}', JSON),
}


def _apps() -> tuple[FastAPI, FastAPI]:
    reference, ours = FastAPI(), FastAPI()

    @reference.post("/d")
    async def parsed_by_fastapi(body: DecisionRequest) -> dict[str, Any]:
        return body.model_dump(mode="json")

    @ours.post("/d")
    async def parsed_by_read_body(request: Request) -> dict[str, Any]:
        return (await read_body(request, DecisionRequest)).model_dump(mode="json")

    install_error_handlers(reference)
    install_error_handlers(ours)
    return reference, ours


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[TestClient, TestClient]]:
    reference, ours = _apps()
    with TestClient(reference) as a, TestClient(ours) as b:
        yield a, b


@pytest.mark.parametrize("name", list(BODIES))
def test_same_status_and_body_as_fastapi(name: str, clients: tuple[TestClient, TestClient]) -> None:
    raw, headers = BODIES[name]
    reference, ours = clients
    expected = reference.post("/d", content=raw, headers=headers)
    got = ours.post("/d", content=raw, headers=headers)
    assert (got.status_code, got.json()) == (expected.status_code, expected.json())


def test_the_decision_body_is_still_documented_in_openapi() -> None:
    with running_app() as harness:
        spec = harness.client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/decisions"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert operation["requestBody"]["required"] is True
    assert schema["required"] == ["decision_point"]
    assert set(schema["properties"]) == set(DecisionRequest.model_fields)
    assert "$ref" not in str(schema)  # self-contained: no reference into pydantic's $defs
    context = schema["properties"]["context"]
    assert set(context["properties"]) == {"user_id", "session_id", "features"}
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/DecisionResponse"}
