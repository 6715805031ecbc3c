"""Personas: who the shopper is, attached to every decision as a context feature.

Until the persona classifier lands (trained offline on named segments, see
DESIGN §5), the default resolver knows only two personas: anonymous shoppers
are ``visitor``, logged-in shoppers are ``unclassified``.

>>> from schemas import Context
>>> resolver = DefaultPersonaResolver()
>>> resolver.persona(Context())
'visitor'
>>> resolver.persona(Context(user_id="u-17"))
'unclassified'
"""

from __future__ import annotations

from typing import Final, Protocol

from schemas.features import Context

VISITOR: Final = "visitor"
UNCLASSIFIED: Final = "unclassified"


class PersonaResolver(Protocol):
    """Names the persona of the shopper behind a context.

    Called on the event-loop thread for every decision with the context as the
    client sent it (real ``user_id``, before pseudonymisation), so it must be
    fast and must not block: look-ups belong in a cache refreshed elsewhere.
    """

    def persona(self, context: Context) -> str: ...


class DefaultPersonaResolver:
    """Anonymous → ``visitor``; logged in → ``unclassified`` (no classifier yet)."""

    def persona(self, context: Context) -> str:
        return VISITOR if context.user_id is None else UNCLASSIFIED
