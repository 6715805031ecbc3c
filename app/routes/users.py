"""``/v1/users/{user_id}``: a user's profile and persona (admin key: it is personal data).

The path carries the shop's *real* user id, as ``context.user_id`` does in a decision;
the service turns it into the pseudonym (``app/pseudonyms.py``) before it touches the
profile store, so the store, like the log, never sees the real id.

- ``GET`` shows the stored profile and the persona a decision would carry now;
- ``PUT …/profile`` overwrites the bulk fields the body sets (the shop's books after a
  closing; ``learnloop personas import-profiles`` does the same for a whole file);
- ``DELETE`` forgets the user: the profile goes, and the change feed's tombstone drops
  it from every API process's profile cache.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from app.api.deps import AdminKey, ClockDep
from app.persona_cache import ProfileCache
from app.personas import PersonaResolver
from app.pseudonyms import Pseudonyms
from learnloop.clock import Clock
from learnloop.errors import Unavailable
from learnloop.profiles import ProfileStore
from schemas.features import Context
from schemas.profiles import PersonaLabel, ProfileUpdate, UserForgotten, UserProfile, UserView

router = APIRouter(prefix="/v1/users", tags=["users"], dependencies=[AdminKey])

UserIdPath = Annotated[
    str, Path(min_length=1, max_length=256, description="The shop's user id (not the pseudonym).")
]


async def _profiles(request: Request) -> ProfileStore:
    store: ProfileStore | None = getattr(request.app.state, "profiles", None)
    if store is None:
        raise Unavailable(
            "this service has no profile store: start it with `learnloop serve` "
            "(embedded) or with Redis (distributed) to use /v1/users"
        )
    return store


async def _pseudonyms(request: Request) -> Pseudonyms:
    pseudonyms: Pseudonyms = request.app.state.pseudonyms
    return pseudonyms


async def _personas(request: Request) -> PersonaResolver:
    personas: PersonaResolver = request.app.state.personas
    return personas


ProfilesDep = Annotated[ProfileStore, Depends(_profiles)]
PseudonymsDep = Annotated[Pseudonyms, Depends(_pseudonyms)]
PersonasDep = Annotated[PersonaResolver, Depends(_personas)]


def user_view(
    user_id: str,
    pseudonym: str,
    profile: UserProfile | None,
    personas: PersonaResolver,
    clock: Clock,
) -> UserView:
    """What ``GET`` shows: the stored profile and the persona resolved as a decision would.

    The persona comes from the resolver the decisions use (its cached profile, which the
    change feed brings up to date within a moment of a write).
    """
    resolved = personas.resolve(Context(user_id=user_id), pseudonym, None, clock.now())
    return UserView(
        user_id=pseudonym,
        profile=profile,
        persona=resolved.persona,
        persona_source=resolved.source,
        persona_model_version=resolved.model_version,
    )


@router.get("/{user_id}", response_model=UserView, summary="A user's profile and persona")
async def get_user(
    user_id: UserIdPath,
    profiles: ProfilesDep,
    pseudonyms: PseudonymsDep,
    personas: PersonasDep,
    clock: ClockDep,
) -> UserView:
    pseudonym = pseudonyms.of(user_id)
    return user_view(user_id, pseudonym, await profiles.get(pseudonym), personas, clock)


@router.put(
    "/{user_id}/profile",
    response_model=UserProfile,
    summary="Set a user's bulk profile fields (absent fields stay as they are)",
)
async def put_profile(
    user_id: UserIdPath,
    update: ProfileUpdate,
    profiles: ProfilesDep,
    pseudonyms: PseudonymsDep,
    request: Request,
) -> UserProfile:
    profile = await profiles.update(pseudonyms.of(user_id), update)
    cache: ProfileCache | None = getattr(request.app.state, "profile_cache", None)
    if cache is not None:
        cache.put(profile)  # this process's decisions see it at once, the others' soon
    return profile


@router.post(
    "/{user_id}/label",
    response_model=UserProfile,
    summary="Record the persona the shop confirmed for a user",
)
async def post_label(
    user_id: UserIdPath,
    label: PersonaLabel,
    profiles: ProfilesDep,
    pseudonyms: PseudonymsDep,
    request: Request,
) -> UserProfile:
    """The label wins over the model for this user's decisions: at once in this API process,
    from the next cache refresh in the others; the online persona learner learns it."""
    profile = await profiles.set_label(pseudonyms.of(user_id), label.persona)
    cache: ProfileCache | None = getattr(request.app.state, "profile_cache", None)
    if cache is not None:
        cache.put(profile)
    return profile


@router.delete("/{user_id}", response_model=UserForgotten, summary="Forget a user")
async def delete_user(
    user_id: UserIdPath, profiles: ProfilesDep, pseudonyms: PseudonymsDep, request: Request
) -> UserForgotten:
    """Removes the profile; the logged decisions keep only the pseudonym, which no longer
    leads to anything. This process's persona cache forgets the user at once."""
    pseudonym = pseudonyms.of(user_id)
    deleted = await profiles.delete(pseudonym)
    cache: ProfileCache | None = getattr(request.app.state, "profile_cache", None)
    if cache is not None:
        cache.forget(pseudonym)
    return UserForgotten(user_id=pseudonym, deleted=deleted)
