"""The learnloop_client package against an httpx.MockTransport that answers as the API does.

Each call sends the documented method, path and JSON body (the bodies are those the
service's schemas accept), answers are read into the client's frozen dataclasses, and
every failure becomes the LearnloopError subclass of its kind with the server's status,
``error`` code and message. The sync and the async client send the same requests.
"""

from __future__ import annotations

import doctest
import importlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from learnloop_client import (
    AsyncLearnloopClient,
    AuthenticationError,
    Context,
    Decision,
    FlagEvaluation,
    FlagNotFound,
    InvalidRequest,
    LearnloopClient,
    LearnloopError,
    NotFound,
    Outcome,
    OutcomesAccepted,
    ProtocolError,
    RankedAction,
    ServerError,
    Unavailable,
)

from schemas.api import DecisionRequest, OutcomeRequest, RewardRequest
from schemas.flags import FlagEvaluationRequest

BASE = "http://learnloop.test"
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DECISION = {
    "event_id": "e1",
    "action_id": "b",
    "probability": 0.7,
    "ranking": [{"id": "b", "probability": 0.7}, {"id": "a", "probability": 0.3}],
    "model_version": "3",
    "persona": "consultant",
    "arm": "policy",
}
EVALUATION = {
    "key": "checkout_layout",
    "value": "two_step",
    "variant": "two_step",
    "reason": "PERSONALIZED",
    "event_id": "e9",
    "persona": "consultant",
    "flag_version": 4,
}

Sent = list[httpx.Request]


def mock(status: int, body: Any, sent: Sent) -> httpx.MockTransport:
    """A transport that records each request and answers ``status`` with ``body``."""

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if isinstance(body, bytes):
            return httpx.Response(status, content=body)
        return httpx.Response(status, json=body)

    return httpx.MockTransport(handle)


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content) if request.content else None


def test_decide_sends_the_documented_request_and_reads_the_decision() -> None:
    sent: Sent = []
    with LearnloopClient(BASE, api_key="k1", transport=mock(200, DECISION, sent)) as client:
        decision = client.decide(
            "home_products",
            Context(user_id="u1", features={"page": "home", "geo": {"region": "eu"}}),
            ["a", {"id": "b", "features": {"price": 3.0}}],
            excluded_actions=["c"],
            event_id="e1",
            persona="consultant",
            defer_activation=True,
            timestamp=T0,
        )
    assert decision == Decision(
        "e1",
        "b",
        0.7,
        (RankedAction("b", 0.7), RankedAction("a", 0.3)),
        "3",
        "consultant",
        "policy",
    )
    (request,) = sent
    assert (request.method, request.url.path) == ("POST", "/v1/decisions")
    assert request.headers["X-API-Key"] == "k1"
    body = body_of(request)
    assert body["actions"] == [{"id": "a"}, {"id": "b", "features": {"price": 3.0}}]
    # the body is one the service accepts, with every field as given
    parsed = DecisionRequest.model_validate(body)
    assert parsed.context.features == {"page": "home", "geo": {"region": "eu"}}
    assert (parsed.persona, parsed.defer_activation, parsed.timestamp) == ("consultant", True, T0)


CallCase = tuple[Callable[[LearnloopClient], Any], Any, str, Any, Any]
FEEDBACK_CASES: list[CallCase] = [
    (
        lambda c: c.outcome("purchase", event_id="e1", value=12.5, timestamp=T0),
        {"accepted": 1, "duplicates": 0},
        "/v1/outcomes",
        [
            {
                "type": "purchase",
                "event_id": "e1",
                "value": 12.5,
                "timestamp": "2026-05-01T12:00:00+00:00",
            }
        ],
        OutcomesAccepted(1, 0),
    ),
    (
        lambda c: c.outcomes(
            [Outcome("click", session_id="s1"), Outcome("buy", event_id="e2", outcome_id="o2")]
        ),
        {"accepted": 2, "duplicates": 1},
        "/v1/outcomes",
        [
            {"type": "click", "session_id": "s1"},
            {"type": "buy", "event_id": "e2", "outcome_id": "o2"},
        ],
        OutcomesAccepted(2, 1),
    ),
    (
        lambda c: c.reward("e1", 0.5, reward_id="r1").reward_id,
        {"event_id": "e1", "reward_id": "r1"},
        "/v1/decisions/e1/reward",
        {"value": 0.5, "reward_id": "r1"},
        "r1",
    ),
    (
        lambda c: c.activate("e:1"),
        {"event_id": "e:1", "activated": True},
        "/v1/decisions/e%3A1/activate",
        None,
        None,
    ),
    (
        lambda c: c.evaluate_flag("checkout_layout", {"user_id": "u1"}, persona="consultant"),
        EVALUATION,
        "/v1/flags/checkout_layout/evaluate",
        {"context": {"user_id": "u1"}, "persona": "consultant"},
        FlagEvaluation(
            "checkout_layout",
            "two_step",
            "two_step",
            "PERSONALIZED",
            "consultant",
            event_id="e9",
            flag_version=4,
        ),
    ),
    (
        lambda c: c.evaluate_flags(Context(session_id="s1"), keys=["checkout_layout"]),
        {"flags": {"checkout_layout": EVALUATION}},
        "/v1/flags/evaluate",
        {"context": {"session_id": "s1", "features": {}}, "keys": ["checkout_layout"]},
        {"checkout_layout": FlagEvaluation.from_json(EVALUATION)},
    ),
]


@pytest.mark.parametrize(("call", "answer", "path", "expected_body", "expected"), FEEDBACK_CASES)
def test_each_call_sends_its_route_and_body_and_reads_the_answer(
    call: Callable[[LearnloopClient], Any],
    answer: Any,
    path: str,
    expected_body: Any,
    expected: Any,
) -> None:
    sent: Sent = []
    with LearnloopClient(BASE, transport=mock(202, answer, sent)) as client:
        assert call(client) == expected
    (request,) = sent
    assert request.method == "POST"
    assert request.url.raw_path.decode() == path
    assert body_of(request) == expected_body


def test_the_bodies_are_ones_the_service_schemas_accept() -> None:
    for item in FEEDBACK_CASES[0][3] + FEEDBACK_CASES[1][3]:
        OutcomeRequest.model_validate(item)
    RewardRequest.model_validate(FEEDBACK_CASES[2][3])
    FlagEvaluationRequest.model_validate(FEEDBACK_CASES[4][3])
    FlagEvaluationRequest.model_validate(FEEDBACK_CASES[5][3])


ERROR_CASES = [
    (
        404,
        {"error": "flag_not_found", "message": "no flag 'x': create it with PUT"},
        FlagNotFound,
        "flag_not_found",
    ),
    (404, {"error": "not_found", "message": "no decision 'e1'"}, NotFound, "not_found"),
    (
        422,
        {
            "error": "invalid_request",
            "message": "body.context: bad",
            "details": [{"loc": ["body", "context"], "msg": "bad", "type": "value_error"}],
        },
        InvalidRequest,
        "invalid_request",
    ),
    (400, {"error": "malformed_json", "message": "not JSON"}, InvalidRequest, "malformed_json"),
    (
        401,
        {"error": "unauthorized", "message": "a key is required"},
        AuthenticationError,
        "unauthorized",
    ),
    (403, {"error": "forbidden", "message": "not the admin key"}, AuthenticationError, "forbidden"),
    (503, {"error": "unavailable", "message": "shutting down"}, Unavailable, "unavailable"),
    (
        500,
        {"error": "internal_error", "message": "the service failed"},
        ServerError,
        "internal_error",
    ),
    (502, b"<html>bad gateway</html>", ServerError, None),
]


@pytest.mark.parametrize(("status", "body", "kind", "code"), ERROR_CASES)
def test_api_errors_raise_their_kind_with_status_code_and_message(
    status: int, body: Any, kind: type[LearnloopError], code: str | None
) -> None:
    with (
        LearnloopClient(BASE, transport=mock(status, body, [])) as client,
        pytest.raises(kind) as caught,
    ):
        client.evaluate_flag("x")
    assert type(caught.value) is kind
    assert (caught.value.status, caught.value.code) == (status, code)
    if isinstance(body, dict):
        assert caught.value.message == body["message"]
        assert caught.value.details == body.get("details", [])


@pytest.mark.parametrize(
    "answer",
    [b"not json", b'{"key": "x"}', b'{"flags": []}', b"[1, 2]"],
    ids=["not-json", "missing-fields", "flags-not-object", "not-object"],
)
def test_an_answer_that_is_not_the_documented_shape_is_a_protocol_error(answer: bytes) -> None:
    with LearnloopClient(BASE, transport=mock(200, answer, [])) as client:
        with pytest.raises(ProtocolError) as one:
            client.evaluate_flag("x")
        with pytest.raises(ProtocolError):
            client.evaluate_flags()
    assert one.value.status == 200


def test_no_answer_at_all_is_unavailable_without_a_status() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with (
        LearnloopClient(BASE, transport=httpx.MockTransport(refuse)) as client,
        pytest.raises(Unavailable) as caught,
    ):
        client.decide("home_products")
    assert caught.value.status is None
    assert BASE in caught.value.message


def test_bad_arguments_are_refused_before_anything_is_sent() -> None:
    sent: Sent = []
    with LearnloopClient(BASE, transport=mock(202, {}, sent)) as client:
        with pytest.raises(ValueError, match="event_id or a session_id"):
            client.outcome("click")
        with pytest.raises(ValueError, match="time zone"):
            client.decide("home_products", timestamp=datetime(2026, 5, 1))  # noqa: DTZ001
        with pytest.raises(ValueError, match="at least one"):
            client.outcomes([])
    assert sent == []


async def test_the_async_client_sends_the_same_requests() -> None:
    sync_sent: Sent = []
    async_sent: Sent = []

    def answer(sent: Sent) -> Callable[[httpx.Request], httpx.Response]:
        def handle(request: httpx.Request) -> httpx.Response:
            sent.append(request)
            if request.url.path == "/v1/decisions":
                return httpx.Response(200, json=DECISION)
            if request.url.path == "/v1/outcomes":
                return httpx.Response(202, json={"accepted": 1})
            if request.url.path.endswith("/reward"):
                return httpx.Response(202, json={"event_id": "e1", "reward_id": "r"})
            if request.url.path.endswith("/activate"):
                return httpx.Response(202, json={"event_id": "e1", "activated": True})
            if request.url.path == "/v1/flags/evaluate":
                return httpx.Response(200, json={"flags": {"checkout_layout": EVALUATION}})
            if request.url.path == "/v1/flags/missing/evaluate":
                return httpx.Response(404, json={"error": "flag_not_found", "message": "no"})
            return httpx.Response(200, json=EVALUATION)

        return handle

    context = {"user_id": "u1", "features": {"page": "cart"}}
    with LearnloopClient(BASE, transport=httpx.MockTransport(answer(sync_sent))) as client:
        expected = (
            client.decide("home_products", context, ["a"]),
            client.outcome("click", event_id="e1", value=1.0),
            client.reward("e1", 1.0),
            client.evaluate_flag("checkout_layout", context),
            client.evaluate_flags(context, persona="consultant"),
        )
        client.activate("e1")
    transport = httpx.MockTransport(answer(async_sent))
    async with AsyncLearnloopClient(BASE, transport=transport) as aclient:
        got = (
            await aclient.decide("home_products", context, ["a"]),
            await aclient.outcome("click", event_id="e1", value=1.0),
            await aclient.reward("e1", 1.0),
            await aclient.evaluate_flag("checkout_layout", context),
            await aclient.evaluate_flags(context, persona="consultant"),
        )
        await aclient.activate("e1")
        with pytest.raises(FlagNotFound):
            await aclient.evaluate_flag("missing")
    assert got == expected
    pairs = zip(sync_sent, async_sent[: len(sync_sent)], strict=True)
    assert all((a.method, a.url, a.content) == (b.method, b.url, b.content) for a, b in pairs)


@pytest.mark.parametrize(
    "module",
    ["calls", "errors", "models", "openfeature_mapping"],
)
def test_the_client_modules_doctests_hold(module: str) -> None:
    # clients/ is not under the root testpaths: its doctests run from here.
    found = doctest.testmod(importlib.import_module(f"learnloop_client.{module}"))
    assert found.failed == 0
