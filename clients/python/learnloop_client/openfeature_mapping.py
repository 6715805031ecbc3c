"""How OpenFeature's evaluation contexts and flag values map onto learnloop's.

``targeting_key`` is the ``user_id``; the attributes ``session_id``, ``persona`` (an
explicit persona wins on the server) and ``timestamp`` (an aware datetime: the event
time, for backfills and tests) are recognised; every other attribute becomes a context
feature (strings, numbers, booleans, one level of nested mappings; datetimes as ISO
strings; lists and deeper nesting are dropped: learnloop has no such features). The
``as_*`` functions give a flag's JSON value as the type a resolver was asked for, or
raise :class:`Mismatch`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagValueType

from learnloop_client.models import JsonValue

ObjectValue = Sequence[FlagValueType] | Mapping[str, FlagValueType]
RECOGNISED = ("session_id", "persona", "timestamp", "user_id")


@dataclass(frozen=True)
class FlagRequest:
    """An OpenFeature evaluation context as learnloop's request parts."""

    context: dict[str, Any]
    persona: str | None
    timestamp: datetime | None

    @property
    def cache_key(self) -> str:
        """Equal for equal contexts: the key of a prefetched page."""
        return json.dumps([self.context, self.persona, str(self.timestamp)], sort_keys=True)

    @property
    def identity(self) -> tuple[str | None, str | None]:
        """Who the context is (user, session): the key of remembered exposures."""
        return self.context.get("user_id"), self.context.get("session_id")


def _feature(value: Any) -> Any:
    """A learnloop feature value, or ``None`` when the attribute cannot be one."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return None


def flag_request(evaluation_context: EvaluationContext | None) -> FlagRequest:
    """Map an OpenFeature evaluation context onto learnloop's request.

    >>> r = flag_request(EvaluationContext("u1", {"persona": "consultant", "page": "cart",
    ...                                          "geo": {"region": "eu"}, "tags": ["x"]}))
    >>> r.context, r.persona
    ({'user_id': 'u1', 'features': {'page': 'cart', 'geo': {'region': 'eu'}}}, 'consultant')
    """
    ctx = evaluation_context or EvaluationContext()
    attributes = dict(ctx.attributes)
    context: dict[str, Any] = {}
    user_id = ctx.targeting_key or attributes.get("user_id")
    if isinstance(user_id, str) and user_id:
        context["user_id"] = user_id
    session_id = attributes.get("session_id")
    if isinstance(session_id, str) and session_id:
        context["session_id"] = session_id
    features: dict[str, Any] = {}
    for name, value in attributes.items():
        if name in RECOGNISED:
            continue
        if isinstance(value, Mapping):
            nested = {k: _feature(v) for k, v in value.items()}
            features[name] = {k: v for k, v in nested.items() if v is not None}
        elif (feature := _feature(value)) is not None:
            features[name] = feature
    context["features"] = features
    persona = attributes.get("persona")
    timestamp = attributes.get("timestamp")
    return FlagRequest(
        context=context,
        persona=persona if isinstance(persona, str) and persona else None,
        timestamp=timestamp if isinstance(timestamp, datetime) else None,
    )


class Mismatch(Exception):
    """The flag's value is not of the type the resolver was asked for."""


def as_bool(value: JsonValue) -> bool:
    if isinstance(value, bool):
        return value
    raise Mismatch


def as_str(value: JsonValue) -> str:
    if isinstance(value, str):
        return value
    raise Mismatch


def as_int(value: JsonValue) -> int:
    if isinstance(value, bool):
        raise Mismatch
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # a number flag's 3.0 is the integer 3
    raise Mismatch


def as_float(value: JsonValue) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise Mismatch


def as_object(value: JsonValue) -> ObjectValue:
    if isinstance(value, dict | list):
        return cast(ObjectValue, value)  # JSON null inside is no FlagValueType; kept as sent
    raise Mismatch
