"""``/v1/models/{decision_point}``: which model serves a decision point, and how it does."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel

from app.api.deps import ClientKey, ClockDep, DecisionPointsDep, RegistryDep
from app.serving import ServedModel
from learnloop.errors import NotFound
from schemas.features import NAME_PATTERN

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[ClientKey])


class ModelInfo(BaseModel):
    """The served model; ``trained`` is false (and ``released_at`` null) until a
    release with the configured ``vw_args`` is served."""

    decision_point: str
    version: int
    trained: bool
    vw_args: str
    released_at: datetime | None = None
    age_seconds: float | None = None
    examples_learned: int = 0
    metrics: dict[str, float] = {}

    @classmethod
    def of(cls, name: str, served: ServedModel, now: datetime) -> ModelInfo:
        release = served.release
        if release is None:
            return cls(
                decision_point=name, version=served.version, trained=False, vw_args=served.vw_args
            )
        return cls(
            decision_point=name,
            version=served.version,
            trained=True,
            vw_args=served.vw_args,
            released_at=release.timestamp,
            age_seconds=max(0.0, (now - release.timestamp).total_seconds()),
            examples_learned=release.examples_learned,
            metrics=dict(release.metrics),
        )


@router.get("/{decision_point}", response_model=ModelInfo, summary="The served model")
async def get_model(
    decision_point: Annotated[str, Path(pattern=NAME_PATTERN)],
    store: DecisionPointsDep,
    registry: RegistryDep,
    clock: ClockDep,
) -> ModelInfo:
    served = registry.get(decision_point)
    if served is None:
        if await store.get(decision_point) is None:
            raise NotFound(
                f"decision point {decision_point!r} does not exist: "
                "GET /v1/decision-points lists them"
            )
        served = await registry.refresh(decision_point)
        if served is None:
            raise NotFound(f"decision point {decision_point!r} has no model yet")
    return ModelInfo.of(decision_point, served, clock.now())
