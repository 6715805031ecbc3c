"""What a Personalizer route needs: the loop it serves, its stores, the key checks.

``Loop`` resolves the loop's name (the ``{loop}`` of ``/loops/{loop}/personalizer``,
else ``settings.personalizer_decision_point``) and makes sure its decision point
exists; ``ClientKey``/``AdminKey`` are the same keys as learnloop's (sent in
``Ocp-Apim-Subscription-Key`` or ``X-API-Key``): rank and events need a client key,
configuration, policy, model, logs, evaluations and feature importances the admin key.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Request

from app.api.auth import require_admin_key, require_client_key
from app.personalizer.errors import PersonalizerError
from app.personalizer.loop import ensure_loop
from learnloop.personalizer_store import MemoryPersonalizerStore, PersonalizerStore
from learnloop.settings import Settings
from schemas.config import DecisionPointConfig

_LOOP_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


def loop_name(request: Request) -> str:
    """The decision point this Personalizer request is for."""
    name = request.path_params.get("loop")
    if name is None:
        settings: Settings = request.app.state.settings
        return settings.personalizer_decision_point
    if not _LOOP_NAME.match(name):
        raise PersonalizerError(
            404, "ResourceNotFound", f"{name!r} is not a loop name (letters, digits, _ . -)"
        )
    return str(name)


async def _loop(request: Request) -> DecisionPointConfig:
    """As stored now: a configuration read after an update through another API worker
    (the SDK's read-modify-write) must not see, and write back, the old one."""
    return await ensure_loop(request.app.state.decision_points, loop_name(request), fresh=True)


async def _serving_loop(request: Request) -> DecisionPointConfig:
    """As the decision path caches it (rank, reward, activate)."""
    return await ensure_loop(request.app.state.decision_points, loop_name(request))


async def _store(request: Request) -> PersonalizerStore:
    store: PersonalizerStore | None = getattr(request.app.state, "personalizer", None)
    if store is None:  # an app built without one (unit tests): keep it for this app
        store = MemoryPersonalizerStore()
        request.app.state.personalizer = store
    return store


Loop = Annotated[DecisionPointConfig, Depends(_loop)]
ServingLoop = Annotated[DecisionPointConfig, Depends(_serving_loop)]
LoopName = Annotated[str, Depends(loop_name)]
Store = Annotated[PersonalizerStore, Depends(_store)]
ClientKey = Depends(require_client_key)
AdminKey = Depends(require_admin_key)
