"""Request and response bodies of the HTTP API (``/v1``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import Arm, EventId, UtcTime
from schemas.features import NAME_PATTERN, ActionList, Context, FiniteNumber

DecisionPointName = Annotated[str, Field(pattern=NAME_PATTERN)]


class DecisionRequest(BaseModel):
    """Ask for a decision at a decision point for one context."""

    model_config = ConfigDict(extra="forbid")

    decision_point: DecisionPointName
    context: Context = Field(default_factory=Context)
    actions: ActionList | None = None
    excluded_actions: list[str] = Field(default_factory=list, max_length=256)
    event_id: EventId | None = None
    timestamp: UtcTime | None = None
    defer_activation: bool = False


class RankedAction(BaseModel):
    id: str
    probability: float


class DecisionResponse(BaseModel):
    """The chosen action, its probability, the full ranking and who decided."""

    event_id: str
    action_id: str
    probability: float
    ranking: list[RankedAction]
    model_version: str
    persona: str
    arm: Arm


class OutcomeRequest(BaseModel):
    """What the shopper did; ``event_id`` names the decision, or ``session_id`` its session."""

    model_config = ConfigDict(extra="forbid")

    outcome_id: EventId | None = None
    event_id: EventId | None = None
    session_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    type: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
    value: FiniteNumber | None = None
    timestamp: UtcTime | None = None

    def model_post_init(self, __context: object) -> None:
        if self.event_id is None and self.session_id is None:
            raise ValueError("an outcome needs an event_id or a session_id to be attributed")


class RewardRequest(BaseModel):
    """A reward value for one decision, posted directly."""

    model_config = ConfigDict(extra="forbid")

    value: FiniteNumber
    reward_id: EventId | None = None
    timestamp: UtcTime | None = None
