"""``/v1/models/{decision_point}``: which model serves a decision point, and how it does;
its release history, and rollback to an earlier release (admin key)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request

from app.api.deps import AdminKey, ClientKey, ClockDep, DecisionPointsDep, RegistryDep
from app.serving import ServedModel
from learnloop.audit import AuditLog
from learnloop.errors import NotFound, Unavailable
from learnloop.modelstore.base import ModelStore
from learnloop.rollback import rollback
from schemas.api import ModelInfo, ReleaseHistory, RollbackRequest
from schemas.events import ModelRelease
from schemas.features import NAME_PATTERN

NameParam = Annotated[str, Path(pattern=NAME_PATTERN)]

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
    decision_point: NameParam,
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


def _audit(request: Request) -> AuditLog | None:
    audit: AuditLog | None = getattr(request.app.state, "audit", None)
    return audit


async def _require_point(store: DecisionPointsDep, decision_point: str) -> None:
    if await store.get(decision_point) is None:
        raise NotFound(
            f"decision point {decision_point!r} does not exist: GET /v1/decision-points lists them"
        )


@router.get(
    "/{decision_point}/releases", response_model=ReleaseHistory, summary="The release history"
)
async def get_releases(
    decision_point: NameParam,
    request: Request,
    store: DecisionPointsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> ReleaseHistory:
    """The releases, newest first, each saying whether its model is still stored (a
    rollback target), and the audit trail of promotions and rollbacks."""
    await _require_point(store, decision_point)
    models: ModelStore = request.app.state.models
    audit = _audit(request)
    return ReleaseHistory(
        decision_point=decision_point,
        releases=await models.history(decision_point, limit),
        audit=[] if audit is None else await audit.records(decision_point, limit),
    )


@router.post(
    "/{decision_point}/rollback",
    response_model=ModelRelease,
    summary="Serve an earlier release again",
    dependencies=[AdminKey],
)
async def post_rollback(
    decision_point: NameParam,
    request: Request,
    store: DecisionPointsDep,
    registry: RegistryDep,
    clock: ClockDep,
    body: Annotated[RollbackRequest | None, Body()] = None,
) -> ModelRelease:
    """Republish ``to_version``'s model (default: the release before the current one) as
    the next release and restore its ``vw_args``; 404 for a version not in the history,
    422 for the current version or one whose model was pruned."""
    await _require_point(store, decision_point)
    audit = _audit(request)
    if audit is None:
        raise Unavailable("this service has no audit log configured: roll back with the CLI")
    wanted = body or RollbackRequest()
    release, _ = await rollback(
        request.app.state.models,
        store,
        audit,
        decision_point=decision_point,
        to_version=wanted.to_version,
        by=wanted.by or "http-admin",
        now=clock.now(),
    )
    await registry.refresh(decision_point)  # this worker at once; the others on their poll
    return release
