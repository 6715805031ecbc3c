"""One JSON error format for every failure the API reports.

``{"error": "<code>", "message": "<what was wrong and what to do>", "details": [...]}``

Malformed JSON is 400, schema violations 422 (with pydantic's locations in
``details``), and the kernel's errors map by kind: InvalidInput 422, NotFound
404, Conflict 409, Unavailable 503. Handlers run before anything is appended,
so an error response means nothing was written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from learnloop.errors import Conflict, InvalidInput, LearnloopError, NotFound, Unavailable

_KERNEL_ERRORS: Final[Sequence[tuple[type[LearnloopError], int, str]]] = (
    (InvalidInput, 422, "invalid_input"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (Unavailable, 503, "unavailable"),
)
_HTTP_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> bytes:
    """The encoded error document (also used by the pure ASGI middlewares)."""
    return json.dumps({"error": code, "message": message, "details": details or []}).encode()


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": code, "message": message, "details": details or []},
        status_code=status,
        headers=headers,
    )


def _where(loc: Sequence[int | str], body: Any, missing: bool) -> str:
    """A location a person can follow: pydantic's ``loc`` without the union-member labels
    (``one``, ``function-after[...]``) that are not keys of the document sent.

    >>> _where(["body", "one", "context", "features", "x", "bool"],
    ...        {"context": {"features": {"x": 1}}}, missing=False)
    'body.context.features.x'
    >>> _where(["body", "value"], {}, missing=True)
    'body.value'
    """
    if not loc:
        return "body"
    parts = [str(loc[0])]
    node = body if loc[0] == "body" else None
    for position, part in enumerate(loc[1:], start=2):
        # Two branches rather than one ``or``: mypy narrows the index type in each.
        if isinstance(node, dict) and part in node:  # noqa: SIM114
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif node is not None and not (missing and position == len(loc)):
            continue  # a label pydantic added for a union member, not a key of the body
        parts.append(str(part))
    return ".".join(parts)


def _clean(msg: str) -> str:
    # pydantic prefixes errors from our validators; the sentence alone reads better.
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    bad_json = [e for e in errors if e.get("type") == "json_invalid"]
    if bad_json:
        reason = (bad_json[0].get("ctx") or {}).get("error", "cannot be parsed")
        position = bad_json[0]["loc"][-1]
        return error_response(
            400,
            "malformed_json",
            f"the request body is not valid JSON ({reason}, character {position}): "
            "send a JSON document with Content-Type: application/json",
        )
    # Inputs are not echoed back: they may be large, secret, or not even JSON (NaN).
    details = [
        {"loc": list(e["loc"]), "msg": _clean(str(e["msg"])), "type": str(e["type"])}
        for e in errors
    ]
    # In a union (a feature may be a bool, number or string) pydantic reports every
    # branch; the sentence from our own validators says most, so it leads; else the
    # deepest location, which is where the document went wrong.
    own = [d for d in details if d["type"] == "value_error"]
    first = own[0] if own else max(details, key=lambda d: len(d["loc"]))
    where = _where(first["loc"], exc.body, missing=first["type"] == "missing")
    more = f" (and {len(details) - 1} more problems, see details)" if len(details) > 1 else ""
    return error_response(
        422,
        "invalid_request",
        f"{where}: {first['msg']}{more}; fix the request and send it again",
        details,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    code = _HTTP_CODES.get(status, f"http_{status}")
    message = str(exc.detail)
    if status == 404 and exc.detail == "Not Found":
        message = f"no route for {request.method} {request.url.path}: see /docs for the API"
    elif status == 405:
        message = (
            f"{request.method} is not allowed on {request.url.path}: "
            "see /docs for the methods of each route"
        )
    return error_response(status, code, message, headers=dict(exc.headers or {}))


async def _learnloop_error(request: Request, exc: Exception) -> JSONResponse:
    for kind, status, code in _KERNEL_ERRORS:
        if isinstance(exc, kind):
            headers = {"Retry-After": "1"} if status == 503 else None
            return error_response(status, code, str(exc), headers=headers)
    return error_response(500, "internal_error", f"the service failed: {exc}")


def install_error_handlers(app: FastAPI) -> None:
    """Route every expected failure to the JSON error format."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(LearnloopError, _learnloop_error)
