"""``/v1/models/{decision_point}``: which model serves a decision point, and how it does."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path

from app.api.deps import ClientKey, ClockDep, DecisionPointsDep, RegistryDep
from app.serving import ServedModel
from learnloop.errors import NotFound
from schemas.api import ModelInfo
from schemas.features import NAME_PATTERN

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[ClientKey])


def model_info(name: str, served: ServedModel, now: datetime) -> ModelInfo:
    """What ``GET /v1/models/{name}`` answers about the served model."""
    release = served.release
    if release is None:
        return ModelInfo(
            decision_point=name, version=served.version, trained=False, vw_args=served.vw_args
        )
    return ModelInfo(
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
    return model_info(decision_point, served, clock.now())
