"""Offline evaluations, feature importances and ``applyFromEvaluation`` (admin key).

An evaluation is a learnloop offline replay of the loop's logged decisions: the route
checks the contract, stores a job document (``schemas/personalizer_evaluations.py``)
and asks the app's :class:`~app.personalizer.jobs.JobLauncher` to run it elsewhere; the
job writes its status and result into the document, which the GET routes render in the
asking version's shape (:mod:`app.personalizer.evaluation_views`). v1.0 creates with
``POST /evaluations`` (the server picks the id, ``201`` + ``Location``), the preview with
``PUT /evaluations/{id}`` (``200``, no body; an existing id is ``409``). Nothing is
stored when a request is refused. A job that ran past
``settings.personalizer_job_timeout_seconds`` or whose process stopped beating is
recorded as ``Timeout``/``Failed`` the next time it is read.

``applyFromEvaluation`` makes one evaluated policy's learning settings the loop's
``vw_args`` (the next decision is served by a fresh model with them, as after
``PUT configurations/policy``; Personalizer also carried over the evaluation's model,
learnloop does not keep the replay's models).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from app.personalizer import evaluation_views as views
from app.personalizer.deps import AdminKey, Loop, LoopName, Store
from app.personalizer.errors import PersonalizerError
from app.personalizer.evaluation_jobs import WHAT as _WHAT
from app.personalizer.evaluation_jobs import adopted, check_learning_settings, new_job, start_job
from app.personalizer.jobs import JobKind
from learnloop.personalizer_store import PersonalizerStore
from schemas.config import DecisionPointConfig
from schemas.personalizer_evaluations import (
    BUILT_IN_POLICIES,
    EvaluationContract,
    FeatureImportanceContract,
    JobDocument,
    PolicyContract,
    PolicyReferenceContract,
    PreviewEvaluationContract,
    as_utc,
    succeeded,
)

__all__ = ["check_learning_settings", "preview_router", "router", "stable_router"]

router = APIRouter(dependencies=[AdminKey], tags=["Evaluations"])
stable_router = APIRouter(dependencies=[AdminKey], tags=["Evaluations"])
preview_router = APIRouter(dependencies=[AdminKey], tags=["Evaluations"])

JobId = Annotated[str, Path(alias="evaluationId", max_length=256)]
ImportanceId = Annotated[str, Path(alias="featureImportanceId", max_length=256)]
JsonBody = Annotated[dict[str, Any], Body()]
M = TypeVar("M", bound=BaseModel)

_NOT_FOUND = {"evaluation": "EvaluationNotFound", "feature_importance": "FeatureImportanceNotFound"}


def _now(request: Request) -> datetime:
    clock = getattr(request.app.state, "clock", None)
    return clock.now() if clock is not None else datetime.now(UTC)


def _parse(model: type[M], body: dict[str, Any], code: str) -> M:
    """The contract, or ``400`` with Personalizer's contract code (not ``BadRequest``)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise PersonalizerError(400, code, f"{where}: {first['msg']}") from None


def _check_range(start: datetime, end: datetime, code: str) -> None:
    if start >= end:
        raise PersonalizerError(
            400, code, f"startTime {start.isoformat()} must be before endTime {end.isoformat()}"
        )


def _check_policies(policies: list[PolicyContract]) -> None:
    seen: set[str] = set()
    for policy in policies:
        if policy.name in seen or policy.name in BUILT_IN_POLICIES:
            clash = "is used twice" if policy.name in seen else "is the name of a built-in policy"
            raise PersonalizerError(
                400, "DuplicateCustomPolicyNames", f"policy name {policy.name!r} {clash}"
            )
        seen.add(policy.name)
        check_learning_settings(policy.name, policy.arguments, "InvalidEvaluationContract")


async def _start(
    request: Request, store: PersonalizerStore, loop: str, job: JobDocument, exists_code: str
) -> None:
    launcher = getattr(request.app.state, "personalizer_jobs", None)
    await start_job(launcher, store, loop, job, exists_code)


def _new_job(
    request: Request,
    config: DecisionPointConfig,
    kind: JobKind,
    job_id: str,
    contract: EvaluationContract | PreviewEvaluationContract | FeatureImportanceContract,
    optimize: bool = False,
) -> JobDocument:
    return new_job(
        config, kind, job_id, name=contract.name, start_time=contract.start_time,
        end_time=contract.end_time, now=_now(request),
        policies=getattr(contract, "policies", []), optimize=optimize,
    )  # fmt: skip


async def _read(
    request: Request, store: PersonalizerStore, loop: str, kind: JobKind, job_id: str
) -> JobDocument:
    """The job (``404`` with the kind's code), ended first if it cannot still be running."""
    found = await store.get(loop, kind, job_id)
    if found is None:
        raise PersonalizerError(
            404, _NOT_FOUND[kind], f"no {_WHAT[kind]} {job_id!r} in loop {loop!r}"
        )
    return await _settled(request, store, loop, JobDocument.model_validate(found))


async def _settled(
    request: Request, store: PersonalizerStore, loop: str, job: JobDocument
) -> JobDocument:
    timeout = request.app.state.settings.personalizer_job_timeout_seconds
    ended = views.expired(job, _now(request), timeout)
    if ended is None:
        return job
    await store.put(loop, job.kind, job.id, ended.model_dump(mode="json"))
    return ended


async def _all(
    request: Request, store: PersonalizerStore, loop: str, kind: JobKind
) -> list[JobDocument]:
    """Every job of the kind, newest first."""
    jobs = [JobDocument.model_validate(d) for d in await store.list(loop, kind)]
    jobs = [await _settled(request, store, loop, j) for j in jobs]
    ordered = list(enumerate(jobs))
    ordered.sort(key=lambda ij: (ij[1].creation_time, ij[0]), reverse=True)
    return [j for _, j in ordered]


async def _delete(store: PersonalizerStore, loop: str, kind: JobKind, job_id: str) -> Response:
    if not await store.delete(loop, kind, job_id):
        raise PersonalizerError(
            404, _NOT_FOUND[kind], f"no {_WHAT[kind]} {job_id!r} in loop {loop!r}"
        )
    return Response(status_code=204)


def _page_link(request: Request, keep: tuple[str, ...]) -> Any:
    base = str(request.url.replace(query=""))
    kept = {k: v for k in keep if (v := request.query_params.get(k)) is not None}
    return lambda query: views.next_link(base, query, kept)


Top = Annotated[int | None, Query(ge=0)]
Skip = Annotated[int, Query(ge=0)]
PageSize = Annotated[int | None, Query(ge=1)]

# -- both versions ---------------------------------------------------------------------------


@router.delete("/evaluations/{evaluationId}", status_code=204, summary="Delete an evaluation")
async def delete_evaluation(job_id: JobId, loop: LoopName, store: Store) -> Response:
    return await _delete(store, loop, "evaluation", job_id)


# -- v1.0 ------------------------------------------------------------------------------------


@stable_router.post("/evaluations", status_code=201, summary="Submit an offline evaluation")
async def create_evaluation_v1(
    request: Request, body: JsonBody, config: Loop, store: Store
) -> Response:
    contract = _parse(EvaluationContract, body, "InvalidEvaluationContract")
    _check_range(contract.start_time, contract.end_time, "InvalidEvaluationContract")
    _check_policies(contract.policies)
    job = _new_job(
        request, config, "evaluation", str(uuid.uuid4()), contract,
        contract.enable_offline_experimentation,
    )  # fmt: skip
    await _start(request, store, config.name, job, "EvaluationAlreadyExists")
    location = f"{str(request.url.replace(query='')).rstrip('/')}/{job.id}"
    return JSONResponse(views.v1_evaluation(job), 201, {"Location": location})


@stable_router.get("/evaluations", summary="All offline evaluations (a JSON array)")
async def list_evaluations_v1(
    request: Request, loop: LoopName, store: Store
) -> list[dict[str, Any]]:
    return [views.v1_evaluation(j) for j in await _all(request, store, loop, "evaluation")]


@stable_router.get("/evaluations/{evaluationId}", summary="One offline evaluation")
async def get_evaluation_v1(
    request: Request, job_id: JobId, loop: LoopName, store: Store
) -> dict[str, Any]:
    return views.v1_evaluation(await _read(request, store, loop, "evaluation", job_id))


# -- 2022-09-01-preview -----------------------------------------------------------------------


@preview_router.put("/evaluations/{evaluationId}", summary="Submit an offline evaluation")
async def create_evaluation(
    request: Request, job_id: JobId, body: JsonBody, config: Loop, store: Store
) -> Response:
    contract = _parse(PreviewEvaluationContract, body, "InvalidEvaluationContract")
    _check_range(contract.start_time, contract.end_time, "InvalidEvaluationContract")
    _check_policies(contract.policies)
    job = _new_job(
        request, config, "evaluation", job_id, contract, contract.enable_policy_optimization
    )
    await _start(request, store, config.name, job, "EvaluationAlreadyExists")
    return Response(status_code=200)


@preview_router.get("/evaluations", summary="Offline evaluations, newest first (paged)")
async def list_evaluations(
    request: Request,
    loop: LoopName,
    store: Store,
    filter: Annotated[str | None, Query()] = None,
    top: Top = None,
    skip: Skip = 0,
    maxpagesize: PageSize = None,
) -> dict[str, Any]:
    try:
        clauses = views.parse_filter(filter)
    except ValueError as exc:
        raise PersonalizerError(400, "BadRequest", str(exc)) from None
    items = [views.preview_details(j) for j in await _all(request, store, loop, "evaluation")]
    items = [i for i in items if views.matches(i, clauses)]
    link = _page_link(request, ("api-version", "filter"))
    return views.page(items, dict, link, top=top, skip=skip, maxpagesize=maxpagesize)


@preview_router.get("/evaluations/{evaluationId}", summary="One offline evaluation")
async def get_evaluation(
    request: Request,
    job_id: JobId,
    loop: LoopName,
    store: Store,
    start_time: Annotated[datetime | None, Query(alias="startTime")] = None,
    end_time: Annotated[datetime | None, Query(alias="endTime")] = None,
    interval: Annotated[int, Query(alias="intervalInMinutes")] = 5,
    window: Annotated[Literal["Expanding", "Rolling"], Query()] = "Expanding",
) -> dict[str, Any]:
    """``startTime``/``endTime`` bound the series (the evaluation's range when absent)."""
    if interval not in views.INTERVALS:
        raise PersonalizerError(
            400, "BadRequest", f"intervalInMinutes {interval} must be one of {views.INTERVALS}"
        )
    job = await _read(request, store, loop, "evaluation", job_id)
    start = as_utc(start_time) if start_time is not None else job.start_time
    end = as_utc(end_time) if end_time is not None else job.end_time
    return views.preview_evaluation(job, start, end, interval, window)


@preview_router.put(
    "/featureImportances/{featureImportanceId}", summary="Submit a feature importance"
)
async def create_feature_importance(
    request: Request, job_id: ImportanceId, body: JsonBody, config: Loop, store: Store
) -> Response:
    contract = _parse(FeatureImportanceContract, body, "InvalidContract")
    _check_range(contract.start_time, contract.end_time, "InvalidContract")
    job = _new_job(request, config, "feature_importance", job_id, contract)
    await _start(request, store, config.name, job, "FeatureImportanceAlreadyExists")
    return Response(status_code=200)


@preview_router.get("/featureImportances", summary="Feature importances, newest first (paged)")
async def list_feature_importances(
    request: Request,
    loop: LoopName,
    store: Store,
    top: Top = None,
    skip: Skip = 0,
    maxpagesize: PageSize = None,
) -> dict[str, Any]:
    jobs = await _all(request, store, loop, "feature_importance")
    link = _page_link(request, ("api-version",))
    return views.page(
        jobs, views.feature_importance_details, link, top=top, skip=skip, maxpagesize=maxpagesize
    )


@preview_router.get("/featureImportances/{featureImportanceId}", summary="One feature importance")
async def get_feature_importance(
    request: Request, job_id: ImportanceId, loop: LoopName, store: Store
) -> dict[str, Any]:
    return views.feature_importance(await _read(request, store, loop, "feature_importance", job_id))


@preview_router.delete(
    "/featureImportances/{featureImportanceId}", status_code=204, summary="Delete one"
)
async def delete_feature_importance(job_id: ImportanceId, loop: LoopName, store: Store) -> Response:
    return await _delete(store, loop, "feature_importance", job_id)


@preview_router.post(
    "/configurations/applyFromEvaluation",
    status_code=204,
    summary="Adopt an evaluated policy's learning settings",
)
async def apply_from_evaluation(
    request: Request, body: JsonBody, config: Loop, store: Store
) -> Response:
    reference = _parse(PolicyReferenceContract, body, "BadRequest")
    job = await _read(request, store, config.name, "evaluation", reference.evaluation_id)
    if not succeeded(job.status):
        raise PersonalizerError(
            409,
            "OperationNotAllowed",
            f"evaluation {job.id!r} is {views.preview_details(job)['status']}: only a "
            "succeeded evaluation's learning settings can be applied",
        )
    overall = [r for r in job.results if r.slot_id is None]
    found = [r for r in overall if r.name == reference.policy_name] or [
        r for r in overall if r.name.lower() == reference.policy_name.lower()
    ]
    if len(found) != 1 or not found[0].arguments:
        names = [r.name for r in overall if r.arguments]
        raise PersonalizerError(
            404,
            "LearningSettingsNotFound",
            f"evaluation {job.id!r} has no learning settings named {reference.policy_name!r}: "
            f"it has {names}",
        )
    updated = adopted(config, found[0].name, found[0].arguments)
    if updated.vw_args != config.vw_args:
        await request.app.state.decision_points.put(updated)
        await request.app.state.registry.refresh(config.name)
    return Response(status_code=204)
