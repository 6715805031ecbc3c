"""Bad input, one table: every case answers a JSON error with the right status and
writes nothing to the event log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from tests.unit.test_api_harness import DP, START, Harness, running_app

MIB = 1024 * 1024
KNOWN = "known-decision"


@dataclass(frozen=True)
class Case:
    path: str
    status: int
    json_body: Any = None
    raw: bytes | None = None
    chunked: bool = False


def _decision(**fields: Any) -> dict[str, Any]:
    return {"decision_point": DP, **fields}


def _raw(text: str) -> bytes:
    return text.encode()


def _chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


FUTURE = (START + timedelta(minutes=10)).isoformat()
OK_OUTCOME = {"event_id": KNOWN, "type": "basket_add"}

CASES = {
    "malformed-json": Case("/v1/decisions", 400, raw=_raw('{"decision_point": "home_')),
    "body-not-an-object": Case("/v1/decisions", 422, json_body=[1, 2]),
    "wrong-type-decision-point": Case("/v1/decisions", 422, json_body={"decision_point": 5}),
    "wrong-type-features": Case(
        "/v1/decisions", 422, json_body=_decision(context={"features": [1]})
    ),
    "unknown-field": Case("/v1/decisions", 422, json_body=_decision(contxt={})),
    "unknown-decision-point": Case("/v1/decisions", 404, json_body={"decision_point": "nope"}),
    "empty-action-list": Case("/v1/decisions", 422, json_body=_decision(actions=[])),
    "all-actions-excluded": Case(
        "/v1/decisions", 422, json_body=_decision(actions=[{"id": "a"}], excluded_actions=["a"])
    ),
    "duplicate-action-ids": Case(
        "/v1/decisions", 422, json_body=_decision(actions=[{"id": "a"}, {"id": "a"}])
    ),
    "257-actions": Case(
        "/v1/decisions", 422, json_body=_decision(actions=[{"id": f"a{i}"} for i in range(257)])
    ),
    "nan-context-feature": Case(
        "/v1/decisions",
        422,
        raw=_raw(f'{{"decision_point": "{DP}", "context": {{"features": {{"x": NaN}}}}}}'),
    ),
    "infinity-context-feature": Case(
        "/v1/decisions",
        422,
        raw=_raw(f'{{"decision_point": "{DP}", "context": {{"features": {{"x": Infinity}}}}}}'),
    ),
    "overflowing-number-feature": Case(
        "/v1/decisions",
        422,
        raw=_raw(f'{{"decision_point": "{DP}", "context": {{"features": {{"x": 1e999}}}}}}'),
    ),
    "nan-action-feature": Case(
        "/v1/decisions",
        422,
        raw=_raw(
            f'{{"decision_point": "{DP}", '
            '"actions": [{"id": "a", "features": {"p": -Infinity}}]}'
        ),
    ),
    "features-nested-two-levels": Case(
        "/v1/decisions", 422, json_body=_decision(context={"features": {"geo": {"eu": {"de": 1}}}})
    ),
    "event-id-with-spaces": Case("/v1/decisions", 422, json_body=_decision(event_id="a b")),
    "oversized-body-content-length": Case("/v1/decisions", 413, raw=b" " * (MIB + 1)),
    "oversized-body-chunked": Case("/v1/decisions", 413, raw=b" " * (MIB + 1), chunked=True),
    "oversized-outcomes-chunked": Case(
        "/v1/outcomes", 413, raw=json.dumps([OK_OUTCOME] * 30_000).encode(), chunked=True
    ),
    "timestamp-without-timezone": Case(
        "/v1/decisions", 422, json_body=_decision(timestamp="2026-03-01T12:00:00")
    ),
    "timestamp-10-minutes-ahead": Case("/v1/decisions", 422, json_body=_decision(timestamp=FUTURE)),
    "outcome-without-event-or-session": Case("/v1/outcomes", 422, json_body={"type": "basket_add"}),
    "outcome-nan-value": Case(
        "/v1/outcomes",
        422,
        raw=_raw(f'{{"event_id": "{KNOWN}", "type": "purchase", "value": NaN}}'),
    ),
    "outcome-batch-with-one-bad-item": Case(
        "/v1/outcomes", 422, json_body=[OK_OUTCOME, OK_OUTCOME, {"type": "basket_add"}]
    ),
    "outcome-batch-with-one-future-item": Case(
        "/v1/outcomes", 422, json_body=[OK_OUTCOME, {**OK_OUTCOME, "timestamp": FUTURE}]
    ),
    "outcome-batch-empty": Case("/v1/outcomes", 422, json_body=[]),
    "outcome-batch-over-1000": Case("/v1/outcomes", 422, json_body=[OK_OUTCOME] * 1001),
    "reward-unknown-decision": Case("/v1/decisions/nope/reward", 404, json_body={"value": 1}),
    "reward-nan-value": Case(f"/v1/decisions/{KNOWN}/reward", 422, raw=_raw('{"value": NaN}')),
    "reward-infinite-value": Case(
        f"/v1/decisions/{KNOWN}/reward", 422, raw=_raw('{"value": Infinity}')
    ),
    "reward-missing-value": Case(f"/v1/decisions/{KNOWN}/reward", 422, json_body={}),
    "reward-future-timestamp": Case(
        f"/v1/decisions/{KNOWN}/reward", 422, json_body={"value": 1, "timestamp": FUTURE}
    ),
    "activate-unknown-decision": Case("/v1/decisions/nope/activate", 404),
    "decision-point-put-nan-share": Case(
        f"/v1/decision-points/{DP}", 422, raw=_raw('{"baseline_share": NaN}')
    ),
    "decision-point-put-vw-file-arg": Case(
        f"/v1/decision-points/{DP}", 422, json_body={"vw_args": "--cb_explore_adf -f /tmp/model"}
    ),
}


@pytest.fixture(scope="module")
def shared() -> Iterator[Harness]:
    """One app for the whole table (each case checks the log offset before and after)."""
    with running_app() as h:
        h.decide(event_id=KNOWN)
        yield h


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input_is_refused_and_nothing_is_written(shared: Harness, case: Case) -> None:
    before = shared.end_offset()
    method = shared.client.put if "decision-points" in case.path else shared.client.post
    headers = {"content-type": "application/json"}
    if case.raw is not None:
        content: Any = _chunks(case.raw) if case.chunked else case.raw
        response = method(case.path, content=content, headers=headers)
    elif case.json_body is not None:
        response = method(case.path, json=case.json_body)
    else:
        response = method(case.path)

    assert response.status_code == case.status, response.text
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["message"], str) and len(body["message"]) > 10
    assert isinstance(body["details"], list)
    assert shared.end_offset() == before
