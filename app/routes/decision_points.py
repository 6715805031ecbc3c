"""``/v1/decision-points``: read and configure the learning loops (PUT needs the admin key)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from app.api.deps import AdminKey, ClientKey, DecisionPointsDep, RegistryDep
from learnloop.errors import NotFound
from schemas.config import DecisionPointConfig, DecisionPointUpdate
from schemas.features import NAME_PATTERN

router = APIRouter(prefix="/v1/decision-points", tags=["decision points"])

Name = Annotated[str, Path(pattern=NAME_PATTERN, description="The decision point's name.")]


@router.get(
    "",
    response_model=list[DecisionPointConfig],
    dependencies=[ClientKey],
    summary="List decision points",
)
async def list_decision_points(store: DecisionPointsDep) -> list[DecisionPointConfig]:
    return sorted(await store.all(), key=lambda c: c.name)


@router.get(
    "/{name}",
    response_model=DecisionPointConfig,
    dependencies=[ClientKey],
    summary="Read a decision point",
)
async def get_decision_point(name: Name, store: DecisionPointsDep) -> DecisionPointConfig:
    config = await store.get(name, fresh=True)  # as stored now, whichever worker wrote it
    if config is None:
        raise NotFound(
            f"decision point {name!r} does not exist: "
            "GET /v1/decision-points lists them, PUT creates one"
        )
    return config


@router.put(
    "/{name}",
    response_model=DecisionPointConfig,
    dependencies=[AdminKey],
    summary="Create or replace a decision point",
)
async def put_decision_point(
    name: Name, update: DecisionPointUpdate, store: DecisionPointsDep, registry: RegistryDep
) -> DecisionPointConfig:
    """Takes effect for the next decision; new ``vw_args`` start from an untrained
    model until a release trained with them appears."""
    config = update.named(name)
    await store.put(config)
    await registry.refresh(name)
    return config
