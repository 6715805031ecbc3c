"""Request and response bodies of the HTTP API (``/v1`` and the probes).

The routes in ``app/routes/`` only translate between these and domain calls, so
every body a client sends or reads has a JSON Schema in ``schemas/json/``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.audit import ModelAuditRecord
from schemas.events import Arm, EventId, ModelRelease, UtcTime
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
    # A persona the client already knows (e.g. from its own CRM); it wins over every
    # other source and is logged and featurized like a resolved one.
    persona: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None


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


class RewardAccepted(BaseModel):
    """A direct reward was logged (``202``)."""

    event_id: str
    reward_id: str


class ActivationAccepted(BaseModel):
    """A deferred decision is marked as shown (``202``; repeating it is harmless)."""

    event_id: str
    activated: bool = True


class OutcomesAccepted(BaseModel):
    """Outcomes were logged (``202``); ``duplicates`` counts retries of known ``outcome_id``s."""

    accepted: int
    duplicates: int = 0


class ModelInfo(BaseModel):
    """The model serving a decision point; ``trained`` is false (and ``released_at``
    null) until a release with the configured ``vw_args`` is served."""

    decision_point: str
    version: int
    trained: bool
    vw_args: str
    released_at: datetime | None = None
    age_seconds: float | None = None
    examples_learned: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)


class HealthStatus(BaseModel):
    """What ``/healthz`` (``ok``: the process is alive) and ``/readyz`` (``ready``:
    every decision point has its model) answer; ``pid`` names the API worker
    process that answered (``learnloop serve`` runs several)."""

    status: Literal["ok", "ready"]
    pid: int | None = None


class StoredRelease(BaseModel):
    """One entry of a decision point's release history; ``model_kept`` says whether
    its model bytes are still stored (a rollback can only restore those)."""

    release: ModelRelease
    model_kept: bool


class ReleaseHistory(BaseModel):
    """``GET /v1/models/{decision_point}/releases``: the releases, newest first, and the
    audit trail of promotions and rollbacks, newest first."""

    decision_point: str
    releases: list[StoredRelease]
    audit: list[ModelAuditRecord] = Field(default_factory=list)


class RollbackRequest(BaseModel):
    """``POST /v1/models/{decision_point}/rollback``: the version to restore (default: the
    release before the current one) and who asks."""

    model_config = ConfigDict(extra="forbid")

    to_version: int | None = Field(default=None, ge=1)
    by: str | None = Field(default=None, min_length=1, max_length=256)
