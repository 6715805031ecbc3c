"""Context and action features: the values a client may send.

A feature value is a string, a finite number or a boolean; a context may nest
one level (``{"geo": {"region": "eu"}}``). NaN and infinity are refused so that
nothing unlearnable reaches the log.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictStr

MAX_ACTIONS = 256
NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,128}$"


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("numbers must be finite (NaN and infinity are not features)")
    return value


FiniteNumber = Annotated[float, AfterValidator(_finite)]
Scalar = StrictBool | FiniteNumber | Annotated[StrictStr, Field(max_length=1024)]
FeatureKey = Annotated[str, Field(min_length=1, max_length=128)]
FeatureMap = dict[FeatureKey, Scalar]
NestedFeatureMap = dict[FeatureKey, Scalar | FeatureMap]


class Context(BaseModel):
    """Who is asking and where: ids plus free-form features (one level of nesting)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    session_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    features: NestedFeatureMap = Field(default_factory=dict)


class Action(BaseModel):
    """One candidate the policy may choose: an id and its features."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=NAME_PATTERN)]
    features: FeatureMap = Field(default_factory=dict)


def check_unique_actions(actions: list[Action]) -> list[Action]:
    """Refuse duplicate action ids (the policy would not know which one was meant)."""
    seen: set[str] = set()
    for action in actions:
        if action.id in seen:
            raise ValueError(f"duplicate action id {action.id!r}: action ids must be unique")
        seen.add(action.id)
    return actions


ActionList = Annotated[
    list[Action],
    Field(min_length=1, max_length=MAX_ACTIONS),
    AfterValidator(check_unique_actions),
]
