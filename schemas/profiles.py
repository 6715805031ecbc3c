"""User profiles: the behavioural features the persona classifier reads, and their API bodies.

A profile is keyed by the *pseudonymous* user id (``app/pseudonyms.py``), never the
shop's real id. It is updated two ways: in real time, one :class:`Interaction` per
outcome (a detail view, a basket add with a value, a purchase) or new session; and
in bulk after each closing from the shop's own books (:class:`ProfileUpdate`, the
body of ``PUT /v1/users/{user_id}/profile`` and one row of ``learnloop personas
import-profiles``). A bulk value replaces the stored one (the shop's books are the
truth as of the closing); real-time interactions then add to it.

``version`` grows by one on every change, so a cache can tell a fresh profile from
the one it holds.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.events import EventId, UtcTime
from schemas.features import NAME_PATTERN, FiniteNumber

PersonaName = Annotated[str, Field(pattern=NAME_PATTERN)]
UserId = Annotated[str, Field(min_length=1, max_length=256)]
Count = Annotated[int, Field(ge=0)]
Amount = Annotated[FiniteNumber, Field(ge=0)]
CategoryName = Annotated[str, Field(min_length=1, max_length=128)]
InteractionKind = Literal["session", "detail_view", "basket_add", "purchase"]
PersonaSource = Literal["explicit", "label", "model", "default", "visitor"]
"""Why a decision carries its persona: the request named it, the shop confirmed it,
the persona model predicted it, the user has no profile, or the shopper is anonymous."""

MAX_CATEGORIES = 256


def _check_categories(categories: dict[str, int] | None) -> dict[str, int] | None:
    if categories is not None and len(categories) > MAX_CATEGORIES:
        raise ValueError(
            f"at most {MAX_CATEGORIES} categories per profile, got {len(categories)}; "
            "group rare categories before importing"
        )
    return categories


class UserProfile(BaseModel):
    """What the shop knows about one (pseudonymous) user's behaviour.

    Derived values are computed by the feature builder, not stored: average basket
    size is ``items / orders``, average order value ``monetary / orders``, the share
    of orders for others ``orders_for_others / orders``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: UserId
    first_seen: UtcTime | None = None
    last_seen: UtcTime | None = None
    last_order_at: UtcTime | None = None
    sessions: Count = 0
    detail_views: Count = 0
    basket_adds: Count = 0
    basket_value: Amount = 0.0
    orders: Count = 0
    monetary: Amount = 0.0
    items: Count = 0
    categories: dict[CategoryName, Count] = Field(default_factory=dict)
    orders_for_others: Count = 0
    recruits: Count = 0
    label: PersonaName | None = None
    updated_at: UtcTime | None = None
    version: Count = 0

    @field_validator("categories")
    @classmethod
    def _few_categories(cls, categories: dict[str, int] | None) -> dict[str, int] | None:
        return _check_categories(categories)


class ProfileUpdate(BaseModel):
    """The bulk fields of a profile; an absent (``None``) field is left unchanged.

    The body of ``PUT /v1/users/{user_id}/profile`` and one row of a profile import.
    ``categories`` replaces the stored map as a whole.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    first_seen: UtcTime | None = None
    last_seen: UtcTime | None = None
    last_order_at: UtcTime | None = None
    sessions: Count | None = None
    detail_views: Count | None = None
    basket_adds: Count | None = None
    basket_value: Amount | None = None
    orders: Count | None = None
    monetary: Amount | None = None
    items: Count | None = None
    categories: dict[CategoryName, Count] | None = None
    orders_for_others: Count | None = None
    recruits: Count | None = None

    @field_validator("categories")
    @classmethod
    def _few_categories(cls, categories: dict[str, int] | None) -> dict[str, int] | None:
        return _check_categories(categories)


class Interaction(BaseModel):
    """One real-time change to a profile, derived from a logged event.

    ``interaction_id`` is unique per change (an outcome's ``outcome_id``; for a new
    session ``session:<user>:<session_id>``): a store applies each id at most once,
    however often it is offered.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    interaction_id: Annotated[str, Field(min_length=1, max_length=512)]
    user_id: UserId
    kind: InteractionKind
    timestamp: UtcTime
    value: Amount | None = None
    category: CategoryName | None = None
    items: Annotated[int, Field(ge=1)] | None = None
    for_others: bool = False
    session_id: str | None = None
    event_id: EventId | None = None


class UserView(BaseModel):
    """``GET /v1/users/{user_id}``: the stored profile and the persona a decision carries now."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: str
    profile: UserProfile | None
    persona: str
    persona_source: PersonaSource
    persona_model_version: int | None = None


class PersonaLabel(BaseModel):
    """``POST /v1/users/{user_id}/label``: a persona the shop confirmed (e.g. a signed contract)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    persona: PersonaName


class UserForgotten(BaseModel):
    """``DELETE /v1/users/{user_id}``: whether a profile existed and was removed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: str
    deleted: bool
