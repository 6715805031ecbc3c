"""Every API call as data: method, path, JSON body and how to read the answer.

The sync and the async client both send these :class:`Call`s, so the two cannot
drift apart; :func:`answer` turns a response into the parsed record or the
matching :class:`~learnloop_client.errors.LearnloopError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from learnloop_client.errors import ProtocolError, error_for
from learnloop_client.models import (
    ContextLike,
    Decision,
    FlagEvaluation,
    Outcome,
    OutcomesAccepted,
    RewardAccepted,
    actions_json,
    context_json,
    flags_from_json,
    timestamp_json,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API call, independent of sync or async sending."""

    method: str
    path: str
    body: Any
    parse: Callable[[Any], T]


def segment(name: str) -> str:
    """A path segment (decision ids and flag keys are URL-safe already; quote anyway)."""
    return quote(name, safe="")


def decide_call(
    decision_point: str,
    context: ContextLike,
    actions: Sequence[str | Mapping[str, Any]] | None,
    excluded_actions: Sequence[str] | None,
    event_id: str | None,
    persona: str | None,
    defer_activation: bool,
    timestamp: datetime | None,
) -> Call[Decision]:
    body: dict[str, Any] = {"decision_point": decision_point, "context": context_json(context)}
    if actions is not None:
        body["actions"] = actions_json(actions)
    if excluded_actions:
        body["excluded_actions"] = list(excluded_actions)
    if event_id is not None:
        body["event_id"] = event_id
    if persona is not None:
        body["persona"] = persona
    if defer_activation:
        body["defer_activation"] = True
    if timestamp is not None:
        body["timestamp"] = timestamp_json(timestamp)
    return Call("POST", "/v1/decisions", body, Decision.from_json)


def outcomes_call(outcomes: Iterable[Outcome]) -> Call[OutcomesAccepted]:
    items = [o.to_json() for o in outcomes]
    if not items:
        raise ValueError("outcomes() needs at least one outcome")
    return Call("POST", "/v1/outcomes", items, OutcomesAccepted.from_json)


def reward_call(
    event_id: str, value: float, reward_id: str | None, timestamp: datetime | None
) -> Call[RewardAccepted]:
    body: dict[str, Any] = {"value": value}
    if reward_id is not None:
        body["reward_id"] = reward_id
    if timestamp is not None:
        body["timestamp"] = timestamp_json(timestamp)
    path = f"/v1/decisions/{segment(event_id)}/reward"
    return Call("POST", path, body, RewardAccepted.from_json)


def activate_call(event_id: str) -> Call[None]:
    return Call("POST", f"/v1/decisions/{segment(event_id)}/activate", None, lambda _: None)


def _flag_body(
    context: ContextLike,
    persona: str | None,
    event_id: str | None,
    timestamp: datetime | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"context": context_json(context)}
    if persona is not None:
        body["persona"] = persona
    if event_id is not None:
        body["event_id"] = event_id
    if timestamp is not None:
        body["timestamp"] = timestamp_json(timestamp)
    return body


def evaluate_flag_call(
    key: str,
    context: ContextLike,
    persona: str | None,
    event_id: str | None,
    timestamp: datetime | None,
) -> Call[FlagEvaluation]:
    body = _flag_body(context, persona, event_id, timestamp)
    path = f"/v1/flags/{segment(key)}/evaluate"
    return Call("POST", path, body, FlagEvaluation.from_json)


def evaluate_flags_call(
    context: ContextLike,
    keys: Sequence[str] | None,
    persona: str | None,
    timestamp: datetime | None,
) -> Call[dict[str, FlagEvaluation]]:
    body = _flag_body(context, persona, None, timestamp)
    if keys is not None:
        body["keys"] = list(keys)
    return Call("POST", "/v1/flags/evaluate", body, flags_from_json)


def answer(call: Call[T], response: httpx.Response) -> T:
    """The parsed answer of a successful response; the matching error otherwise."""
    if not response.is_success:
        raise error_for(response)
    if not response.content:
        return call.parse(None)
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(
            f"{call.method} {call.path} answered {response.status_code} with a body that is "
            f"not JSON ({exc})",
            status=response.status_code,
            code="parse_error",
        ) from exc
    try:
        return call.parse(body)
    except ProtocolError as exc:
        exc.status = response.status_code
        exc.message = f"{call.method} {call.path}: {exc.message}"
        raise


def headers(api_key: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    out = {"Accept": "application/json", **(extra or {})}
    if api_key is not None:
        out["X-API-Key"] = api_key
    return out
