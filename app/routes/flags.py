"""``/v1/flags``: evaluate feature flags (client key) and manage them (admin key).

Handlers only translate HTTP to :class:`~app.flags.FlagService` calls. Who made a
change is the ``X-Actor`` header, else ``admin``; it goes into the audit history with
the change. An unknown flag is 404 ``flag_not_found`` (so an SDK can map it to
OpenFeature's ``FLAG_NOT_FOUND``); inside the bulk evaluation it is an entry with
reason ``ERROR`` instead, so one stale key does not fail a page's other flags.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from app.api.auth import require_client_key
from app.api.deps import AdminKey
from app.api.errors import error_response
from app.api.json_body import body_schema, read_body
from app.flags import FlagService
from learnloop.errors import InvalidInput
from learnloop.flag_store import DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT
from learnloop.flagd import from_flagd, to_flagd
from schemas.flags import (
    FLAG_KEY_PATTERN,
    Flag,
    FlagChange,
    FlagDefinition,
    FlagEvaluation,
    FlagEvaluationRequest,
    FlagsEvaluation,
)

router = APIRouter(prefix="/v1/flags", tags=["flags"])

Key = Annotated[str, Path(pattern=FLAG_KEY_PATTERN, description="The flag's key.")]
# Static routes under /v1/flags/ that a flag key would shadow.
RESERVED_KEYS: Final = frozenset({"evaluate", "export", "import"})
ACTOR_MAX: Final = 256


async def _flags(request: Request) -> FlagService:
    service: FlagService = request.app.state.flags
    return service


FlagsDep = Annotated[FlagService, Depends(_flags)]


def _actor(x_actor: Annotated[str | None, Header()] = None) -> str:
    """Who is making the change: the ``X-Actor`` header, else ``admin``."""
    if x_actor is None or not x_actor.strip():
        return "admin"
    if len(x_actor) > ACTOR_MAX:
        raise InvalidInput(f"the X-Actor header is longer than {ACTOR_MAX} characters: shorten it")
    return x_actor.strip()


ActorDep = Annotated[str, Depends(_actor)]


async def flag_not_found_handler(request: Request, exc: Exception) -> JSONResponse:
    """404 ``flag_not_found`` (installed on the app by :func:`app.main.create_app`)."""
    return error_response(404, "flag_not_found", str(exc))


# Evaluation (client key) -----------------------------------------------------------------
# Hot routes: the body is read by hand as for decisions (app/api/json_body.py) and the
# answer written from the model, without FastAPI validating it again.


async def _evaluation_request(request: Request) -> FlagEvaluationRequest:
    """The body; none at all is an anonymous context (a server-side check of a flag)."""
    if not await request.body():  # starlette keeps the body: read_body reads it again
        return FlagEvaluationRequest()
    return await read_body(request, FlagEvaluationRequest)


@router.post(
    "/evaluate",
    response_model=FlagsEvaluation,
    summary="Evaluate every flag (or the keys given) for one context",
    openapi_extra=body_schema(FlagEvaluationRequest),
)
async def evaluate_flags(request: Request) -> Response:
    await require_client_key(request)
    body = await _evaluation_request(request)
    service: FlagService = request.app.state.flags
    answer = await service.evaluate_all(body)
    return Response(answer.model_dump_json(), media_type="application/json")


@router.post(
    "/{key}/evaluate",
    response_model=FlagEvaluation,
    summary="Evaluate one flag for one context",
    openapi_extra=body_schema(FlagEvaluationRequest),
    responses={404: {"description": "No such flag (error code flag_not_found)"}},
)
async def evaluate_flag(key: Key, request: Request) -> Response:
    """The value, the variant and why; a personalized flag logs an exposure and
    answers its ``event_id`` (idempotent per request ``event_id``)."""
    await require_client_key(request)
    body = await _evaluation_request(request)
    service: FlagService = request.app.state.flags
    answer = await service.evaluate(key, body)
    return Response(answer.model_dump_json(), media_type="application/json")


# Import and export (admin key); before /{key} so that they are not read as keys ----------


@router.get("/export", dependencies=[AdminKey], summary="Export every flag as flagd JSON")
async def export_flags(
    service: FlagsDep, format: Annotated[Literal["flagd"], Query()] = "flagd"
) -> dict[str, Any]:
    """flagd's flag definition document; what flagd cannot express (personalized rules,
    holdout, reward settings, persona lists) travels in each flag's ``metadata``."""
    document: dict[str, Any] = to_flagd(await service.all())
    return document


@router.post(
    "/import",
    response_model=list[Flag],
    dependencies=[AdminKey],
    summary="Import flags from flagd JSON, all or nothing",
)
async def import_flags(
    document: dict[str, Any],
    service: FlagsDep,
    actor: ActorDep,
    format: Annotated[Literal["flagd"], Query()] = "flagd",
) -> list[Flag]:
    """Creates or replaces every flag of the document; a flag that cannot be read
    refuses the whole import (422) and nothing is stored."""
    return await service.put_many(from_flagd(document), actor)


# Management (admin key) ------------------------------------------------------------------


@router.get("", response_model=list[Flag], dependencies=[AdminKey], summary="List flags")
async def list_flags(service: FlagsDep) -> list[Flag]:
    return sorted(await service.all(), key=lambda f: f.key)


@router.get("/{key}", response_model=Flag, dependencies=[AdminKey], summary="Read a flag")
async def get_flag(key: Key, service: FlagsDep) -> Flag:
    return await service.get(key)


@router.put(
    "/{key}",
    response_model=Flag,
    dependencies=[AdminKey],
    summary="Create or replace a flag",
    responses={422: {"description": "The definition is invalid; nothing was stored"}},
)
async def put_flag(
    key: Key, definition: FlagDefinition, service: FlagsDep, actor: ActorDep
) -> Flag:
    """Version + 1, an audit record, and (for a personalized flag) its decision point
    ``flag.<key>`` in step; every API process evaluates the new version within
    ``flag_refresh_seconds``."""
    if key in RESERVED_KEYS:
        raise InvalidInput(f"{key!r} cannot be a flag key: /v1/flags/{key} is a route of its own")
    return await service.put(key, definition, actor)


@router.delete("/{key}", dependencies=[AdminKey], summary="Delete a flag")
async def delete_flag(key: Key, service: FlagsDep, actor: ActorDep) -> dict[str, Any]:
    """The history stays, and so do the decision point and the exposures it logged."""
    await service.delete(key, actor)
    return {"key": key, "deleted": True}


@router.post(
    "/{key}/enable", response_model=Flag, dependencies=[AdminKey], summary="Turn a flag on"
)
async def enable_flag(key: Key, service: FlagsDep, actor: ActorDep) -> Flag:
    return await service.set_enabled(key, True, actor)


@router.post(
    "/{key}/disable",
    response_model=Flag,
    dependencies=[AdminKey],
    summary="Turn a flag off (the kill switch: everyone gets the default variant)",
)
async def disable_flag(key: Key, service: FlagsDep, actor: ActorDep) -> Flag:
    return await service.set_enabled(key, False, actor)


@router.get(
    "/{key}/history",
    response_model=list[FlagChange],
    dependencies=[AdminKey],
    summary="A flag's audit history, newest first",
)
async def flag_history(
    key: Key,
    service: FlagsDep,
    limit: Annotated[int, Query(ge=1, le=MAX_HISTORY_LIMIT)] = DEFAULT_HISTORY_LIMIT,
) -> list[FlagChange]:
    return await service.history(key, limit)
