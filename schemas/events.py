"""Events on the logs: decisions, outcomes, direct rewards, activations, joined
examples and model releases.

Every event carries ``event_id``, ``timestamp`` (event time, timezone-aware,
normalised to UTC), ``schema_version`` and a W3C ``traceparent``.

Naming note: on :class:`OutcomeEvent`, :class:`RewardEvent` and
:class:`ActivationEvent` the field ``event_id`` names the *decision* the event
belongs to (as in the HTTP API and Azure Personalizer); the event's own identity
is ``outcome_id`` / ``reward_id``. Duplicates are recognised by that own id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from schemas.features import Action, Context, FiniteNumber

SCHEMA_VERSION = 1

Arm = Literal["learned", "baseline", "apprentice", "logging"]
CloseReason = Literal["outcome", "default", "direct"]
ReleaseSource = Literal["online", "promotion", "rollback", "import", "reset"]
"""Who made a model release: the online learner, ``learnloop offline promote``, a rollback,
or the Personalizer API's model import (``PUT model``) and reset (``DELETE model``)."""
EventId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcTime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timestamp: UtcTime
    schema_version: int = SCHEMA_VERSION
    traceparent: str | None = None


class DecisionEvent(_Event):
    """What was decided, logged before the client sees the answer.

    ``probabilities`` is aligned with ``actions`` (the candidates after exclusions,
    in the order the policy scored them); ``chosen_index`` points into both.
    """

    event_id: EventId
    decision_point: str
    context: Context
    persona: str
    actions: list[Action]
    chosen_index: int
    probabilities: list[float]
    model_version: str
    arm: Arm = "learned"
    activated: bool = True

    @property
    def chosen_action(self) -> str:
        return self.actions[self.chosen_index].id

    @property
    def chosen_probability(self) -> float:
        return self.probabilities[self.chosen_index]


class OutcomeEvent(_Event):
    """Something the shopper did, attributed by decision ``event_id`` or ``session_id``."""

    outcome_id: EventId
    event_id: EventId | None = None
    session_id: str | None = None
    type: Annotated[str, Field(min_length=1, max_length=64)]
    value: FiniteNumber | None = None


class RewardEvent(_Event):
    """A reward value posted directly for one decision; overrides outcomes."""

    reward_id: EventId
    event_id: EventId
    value: FiniteNumber


class ActivationEvent(_Event):
    """Marks a decision made with ``defer_activation`` as really shown."""

    activation_id: EventId
    event_id: EventId


class JoinedExample(_Event):
    """One decision with its reward, emitted exactly once when its window closes.

    ``timestamp`` is the event time at which the window closed.
    """

    event_id: EventId
    decision: DecisionEvent
    outcomes: list[OutcomeEvent] = Field(default_factory=list)
    reward: float
    close_reason: CloseReason
    late_outcomes: int = 0


class ModelRelease(_Event):
    """A trained policy for one decision point, published to the model store.

    ``source`` says who made it (manifests written before it existed load as
    ``"online"``); a rollback names the version whose model it republishes in
    ``restores_version``; a promotion or rollback names its audit record.
    """

    event_id: EventId
    decision_point: str
    version: int
    vw_args: str
    model_location: str
    examples_learned: int = 0
    last_offset: int = -1
    metrics: dict[str, float] = Field(default_factory=dict)
    source: ReleaseSource = "online"
    restores_version: int | None = None
    audit_id: EventId | None = None


JoinInput = DecisionEvent | OutcomeEvent | RewardEvent | ActivationEvent
"""What the join consumes: a decision and the follow-ups that may be attributed to it."""

Event = JoinInput | JoinedExample | ModelRelease
"""Any event a log stream carries (the ``dropped`` audit stream aside)."""


def utc_now_iso(now: datetime) -> str:
    """Render an aware time the way the logs do (ISO 8601, UTC, ``Z``)."""
    return now.astimezone(UTC).isoformat().replace("+00:00", "Z")
