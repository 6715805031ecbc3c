"""The errors the client raises: one root, a kind per way a call can fail.

Every API error carries the HTTP ``status``, the server's ``error`` code (from
learnloop's one error format ``{"error", "message", "details"}``), its
``message`` and ``details``, so a caller can branch on the kind and still show
the server's sentence. Failures that never reached an answer (connection
refused, timeout) are :class:`Unavailable` with ``status`` ``None``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx


class LearnloopError(Exception):
    """Root of every error this client raises; ``status`` is ``None`` when no answer came."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details or []

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "no answer"
        return f"{self.message} ({where}, {self.code or 'error'})"


class InvalidRequest(LearnloopError):
    """The server refused what was sent (400 malformed JSON, 422 schema or rule violation)."""


class AuthenticationError(LearnloopError):
    """The API key is missing (401) or not allowed for the route (403)."""


class NotFound(LearnloopError):
    """The named thing (decision, decision point, flag) does not exist (404)."""


class FlagNotFound(NotFound):
    """No flag with this key (404 ``flag_not_found``)."""


class Conflict(LearnloopError):
    """The request contradicts what the server already recorded (409)."""


class Unavailable(LearnloopError):
    """The server cannot serve now (503) or could not be reached at all (``status`` None)."""


class ServerError(LearnloopError):
    """The server failed (5xx other than 503)."""


class ProtocolError(LearnloopError):
    """The answer is not what the API documents (not JSON, or a field missing or mistyped)."""


_BY_STATUS: dict[int, type[LearnloopError]] = {
    400: InvalidRequest,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
    503: Unavailable,
}


def error_for(response: httpx.Response) -> LearnloopError:
    """The error an unsuccessful answer stands for, with the server's code and message.

    >>> r = httpx.Response(404, json={"error": "flag_not_found", "message": "no flag 'x'"})
    >>> e = error_for(r)
    >>> type(e).__name__, e.status, e.code, e.message
    ('FlagNotFound', 404, 'flag_not_found', "no flag 'x'")
    """
    status = response.status_code
    code: str | None = None
    message = f"HTTP {status} from learnloop{_route(response)}"
    details: list[dict[str, Any]] = []
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        code = body.get("error") if isinstance(body.get("error"), str) else None
        if isinstance(body.get("message"), str):
            message = body["message"]
        if isinstance(body.get("details"), list):
            details = [d for d in body["details"] if isinstance(d, dict)]
    if code == "flag_not_found":
        kind: type[LearnloopError] = FlagNotFound
    elif status in _BY_STATUS:
        kind = _BY_STATUS[status]
    elif status >= 500:
        kind = ServerError
    else:
        kind = LearnloopError
    return kind(message, status=status, code=code, details=details)


def _route(response: httpx.Response) -> str:
    try:  # a response built by hand (tests, mocks) has no request
        return f" for {response.request.method} {response.request.url.path}"
    except RuntimeError:
        return ""


def transport_error(exc: httpx.TransportError, url: str) -> Unavailable:
    """A request that got no answer (refused, reset, timed out) as :class:`Unavailable`."""
    return Unavailable(
        f"learnloop at {url} did not answer ({type(exc).__name__}: {exc}); "
        "check the base URL and that the service runs",
        code="unreachable",
    )
