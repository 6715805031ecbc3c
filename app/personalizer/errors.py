"""Personalizer's error shape: ``{"error": {"code": "...", "message": "..."}}``.

Raise :class:`PersonalizerError` from a Personalizer route for an answer with one of
Personalizer's own codes (``schemas.personalizer.ErrorCode``); learnloop's kernel
errors and validation failures are mapped onto the same shape by
:mod:`app.personalizer.app`.
"""

from __future__ import annotations

from typing import Any


class PersonalizerError(Exception):
    """An error answer of the Personalizer API: HTTP status, Personalizer code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_json(code: str, message: str) -> dict[str, Any]:
    """The error document Personalizer's clients parse."""
    return {"error": {"code": code, "message": message}}
