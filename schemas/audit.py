"""Audit records of the changes people make to what a decision point serves.

A promotion (``learnloop offline promote``) and a rollback (``learnloop models
rollback``) each write one :class:`ModelAuditRecord`: who did it, when, which
release it made, the VW arguments before and after, and for a promotion the
dataset it was trained on and the off-policy estimate that justified it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from schemas.events import EventId, UtcTime

AuditAction = Literal["promote", "rollback", "import", "reset"]


class DatasetReference(BaseModel):
    """Where a promoted model's training data came from and what it held."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    rows: int = Field(ge=0)
    examples_learned: int = Field(ge=0)
    start: UtcTime | None = None
    end: UtcTime | None = None
    summary: dict[str, JsonValue] = Field(default_factory=dict)


class ModelAuditRecord(BaseModel):
    """One promotion or rollback of a decision point's model, as it was recorded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    audit_id: EventId
    timestamp: UtcTime
    action: AuditAction
    by: str = Field(min_length=1, max_length=256)
    decision_point: str
    version: int
    previous_version: int | None = None
    restores_version: int | None = None
    vw_args_before: str | None = None
    vw_args_after: str
    dataset: DatasetReference | None = None
    estimate: dict[str, JsonValue] | None = None
