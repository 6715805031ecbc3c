"""The Azure Personalizer-compatible API as a sub-application of the decision service.

Mounted by :func:`app.main.create_app` at ``/personalizer`` (the loop named by
``settings.personalizer_decision_point``) and at ``/loops/{loop}/personalizer`` (any
other loop), so a team changes one endpoint URL and one key. Every router is served
twice: under ``/v1.0`` (the stable API) and at the root with ``?api-version=`` (the
``2022-09-01-preview`` API that the ``azure-ai-personalizer`` 1.0.0b1 SDK calls).

Errors here come back in Personalizer's shape, ``{"error": {"code", "message"}}``,
with its codes (``schemas/personalizer.py`` ``ErrorCode``), and a body that fails
validation is a ``400 BadRequest`` as Personalizer answered, not learnloop's ``422``.
The sub-application shares the parent's ``state`` (settings, stores, decider, …).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import State
from starlette.exceptions import HTTPException

from app.api.errors import _where
from app.personalizer import routes_config, routes_evaluations, routes_model, routes_rank
from app.personalizer.errors import PersonalizerError, error_json
from learnloop.errors import Conflict, InvalidInput, LearnloopError, NotFound, Unavailable

log = logging.getLogger(__name__)

PREVIEW_API_VERSION = "2022-09-01-preview"
STABLE_PREFIX = "/v1.0"
SUPPORTED_API_VERSIONS = frozenset({PREVIEW_API_VERSION})


async def _preview_api_version(request: Request) -> None:
    """The root routes are the preview API: refuse another ``api-version``."""
    version = request.query_params.get("api-version")
    if version is not None and version not in SUPPORTED_API_VERSIONS:
        raise PersonalizerError(
            400,
            "BadRequest",
            f"api-version {version!r} is not supported: use {PREVIEW_API_VERSION} "
            f"or the {STABLE_PREFIX} routes",
        )


_MODULES = (routes_rank, routes_config, routes_model, routes_evaluations)


def _routers(attribute: str) -> list[APIRouter]:
    """Each module's ``router`` is served by both versions; ``stable_router`` only under
    ``/v1.0`` and ``preview_router`` only at the root (where the two APIs differ)."""
    return [getattr(m, attribute) for m in _MODULES if hasattr(m, attribute)]


def build(parent_state: State) -> FastAPI:
    """The Personalizer sub-application over the parent's state."""
    sub = FastAPI(
        title="learnloop: Azure Personalizer-compatible API",
        summary="Personalizer's REST API (v1.0 and 2022-09-01-preview) on learnloop's loop.",
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    sub.state = parent_state
    for router in _routers("router") + _routers("stable_router"):
        sub.include_router(router, prefix=STABLE_PREFIX)
    for router in _routers("router") + _routers("preview_router"):
        sub.include_router(router, dependencies=[Depends(_preview_api_version)])
    install_error_handlers(sub)
    return sub


# -- errors ---------------------------------------------------------------------------

_HTTP_CODES = {
    400: "BadRequest",
    401: "401",  # what Azure's gateway answered for a missing or wrong key
    403: "PermissionDenied",
    404: "ResourceNotFound",
    405: "BadRequest",
    409: "OperationNotAllowed",
    413: "PayloadSizeExceeded",
    415: "BadRequest",
    503: "InternalServerError",
}


def _response(status: int, code: str, message: str, headers: Any = None) -> JSONResponse:
    """The error answer; ``x-ms-error-code`` repeats the code, as the preview API defines."""
    return JSONResponse(
        error_json(code, message),
        status_code=status,
        headers={**(headers or {}), "x-ms-error-code": code},
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return _response(400, "BadRequest", "the request body is not valid JSON")
    first = errors[0]
    where = _where(first["loc"], exc.body, missing=first.get("type") == "missing")
    message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return _response(400, "BadRequest", f"{where}: {message}{more}")


async def _personalizer_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PersonalizerError)
    return _response(exc.status, exc.code, exc.message)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    message = str(exc.detail)
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = f"no Personalizer route for {request.method} {request.url.path}"
    code = _HTTP_CODES.get(exc.status_code, "BadRequest" if exc.status_code < 500 else "")
    return _response(exc.status_code, code or "InternalServerError", message, exc.headers)


_KERNEL = (
    (InvalidInput, 400, "BadRequest"),
    (NotFound, 404, "ResourceNotFound"),
    (Conflict, 409, "OperationNotAllowed"),
    (Unavailable, 503, "InternalServerError"),
)


async def _learnloop_error(request: Request, exc: Exception) -> JSONResponse:
    for kind, status, code in _KERNEL:
        if isinstance(exc, kind):
            headers = {"Retry-After": "1"} if status == 503 else None
            return _response(status, code, str(exc), headers)
    log.exception("Personalizer route failed", exc_info=exc)
    return _response(500, "InternalServerError", f"the service failed: {exc}")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(PersonalizerError, _personalizer_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(LearnloopError, _learnloop_error)
