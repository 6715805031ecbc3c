"""API keys: client keys for decisions and feedback, an admin key for configuration.

Keys travel in ``X-API-Key`` or, for clients written against Azure Personalizer,
``Ocp-Apim-Subscription-Key``. Comparison is constant-time. When no client keys
are configured the client routes are open (development); the admin key is
required in production by :class:`~learnloop.settings.Settings` itself.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Final

from fastapi import HTTPException, Request
from pydantic import SecretStr

from learnloop.settings import Settings

KEY_HEADERS: Final = ("x-api-key", "ocp-apim-subscription-key")


def presented_key(request: Request) -> str | None:
    """The API key the caller sent, from either accepted header."""
    for header in KEY_HEADERS:
        value = request.headers.get(header)
        if value:
            return value
    return None


def _matches(key: str, secrets: Iterable[SecretStr]) -> bool:
    presented = key.encode()
    found = False
    for secret in secrets:  # compare with every key: timing must not reveal which matched
        found |= hmac.compare_digest(presented, secret.get_secret_value().encode())
    return found


def _admin_keys(settings: Settings) -> tuple[SecretStr, ...]:
    return (settings.admin_api_key,) if settings.admin_api_key is not None else ()


async def require_client_key(request: Request) -> None:
    """Allow the call if client keys are off, or it carries a client (or the admin) key."""
    settings: Settings = request.app.state.settings
    if not settings.client_api_keys:
        return
    key = presented_key(request)
    if key is None or not _matches(key, (*settings.client_api_keys, *_admin_keys(settings))):
        raise HTTPException(
            401,
            "a valid API key is required: send it in the X-API-Key header "
            "(or Ocp-Apim-Subscription-Key)",
        )


async def require_admin_key(request: Request) -> None:
    """Allow the call if no admin key is configured, or it carries the admin key."""
    settings: Settings = request.app.state.settings
    if settings.admin_api_key is None:
        return
    key = presented_key(request)
    if key is None:
        raise HTTPException(
            401, "this route needs the admin API key: send it in the X-API-Key header"
        )
    if not _matches(key, _admin_keys(settings)):
        raise HTTPException(
            403, "the API key sent is not the admin key: configuration changes need the admin key"
        )
