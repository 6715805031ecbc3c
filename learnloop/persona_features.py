"""The persona classifier's input: one feature dict built from a user profile and the
context the front end sent.

Training (``offline_learner/personas/``) and serving (``app/personas.py``) both call
:func:`profile_features`, so the model sees at decision time exactly the features it was
fitted on. Pure: no I/O, no clock (``now`` is passed in).

>>> from datetime import UTC, datetime
>>> from types import SimpleNamespace
>>> now = datetime(2026, 1, 31, tzinfo=UTC)
>>> p = SimpleNamespace(last_order_at=datetime(2026, 1, 1, tzinfo=UTC), orders=4,
...     monetary=400.0, items=12, orders_for_others=3, recruits=2, sessions=9,
...     detail_views=20, basket_adds=7, categories={"skin": 5, "home": 7})
>>> f = profile_features(p, {"device": "mobile", "logged_in": True}, now)
>>> f["recency_days"], f["avg_order_value"], f["avg_basket_size"], f["others_share"]
(30.0, 100.0, 3.0, 0.75)
>>> f["top_category"], f["n_categories"], f["ctx.device"], f["ctx.logged_in"]
('home', 2.0, 'mobile', 'true')
>>> profile_features(None, {}, now)["recency_days"]
365.0
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final, Protocol

RECENCY_CAP_DAYS: Final = 365.0
"""Recency of a user who never ordered, and the most any recency counts for."""

NO_CATEGORY: Final = "none"
"""``top_category`` of a user who bought nothing."""

CONTEXT_PREFIX: Final = "ctx."
"""Context features enter the feature dict under this prefix (``ctx.device``), so they
can never collide with a profile feature's name."""

NUMERIC_FEATURES: Final[tuple[str, ...]] = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "avg_basket_size",
    "others_share",
    "recruits",
    "sessions",
    "detail_views",
    "basket_adds",
    "n_categories",
)
"""Profile features that are numbers, in their fixed order."""

CATEGORICAL_FEATURES: Final[tuple[str, ...]] = ("top_category",)
"""Profile features that are strings."""

FEATURES: Final[tuple[str, ...]] = NUMERIC_FEATURES + CATEGORICAL_FEATURES
"""Every profile feature's name, in order (context features follow, prefixed)."""

FeatureValue = float | str


class ProfileLike(Protocol):
    """The :class:`schemas.profiles.UserProfile` fields the features read (a protocol, so
    this module needs nothing of the profile store)."""

    @property
    def last_order_at(self) -> datetime | None: ...
    @property
    def orders(self) -> int: ...
    @property
    def monetary(self) -> float: ...
    @property
    def items(self) -> int: ...
    @property
    def orders_for_others(self) -> int: ...
    @property
    def recruits(self) -> int: ...
    @property
    def sessions(self) -> int: ...
    @property
    def detail_views(self) -> int: ...
    @property
    def basket_adds(self) -> int: ...
    @property
    def categories(self) -> Mapping[str, int]: ...


def _top_category(categories: Mapping[str, int]) -> str:
    """The category with the most items bought (ties: the first name alphabetically)."""
    best, best_items = NO_CATEGORY, 0
    for name in sorted(categories):
        if categories[name] > best_items:
            best, best_items = name, categories[name]
    return best


def context_value(value: object) -> FeatureValue:
    """A context feature as the model sees it: numbers as floats, everything else
    (strings, booleans) as a string (booleans ``"true"``/``"false"``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return float(value)
    return str(value)


def flat_context(context_features: Mapping[str, object]) -> dict[str, FeatureValue]:
    """The context's scalar features under their prefixed names; one nested level becomes
    ``ctx.outer.inner`` (as :class:`schemas.features.Context` allows)."""
    out: dict[str, FeatureValue] = {}
    for key, value in context_features.items():
        if isinstance(value, Mapping):
            for inner, item in value.items():
                if not isinstance(item, Mapping):
                    out[f"{CONTEXT_PREFIX}{key}.{inner}"] = context_value(item)
        elif value is not None:
            out[CONTEXT_PREFIX + key] = context_value(value)
    return out


def profile_features(
    profile: ProfileLike | None,
    context_features: Mapping[str, object],
    now: datetime,
) -> dict[str, FeatureValue]:
    """The feature dict of one user at ``now``: the profile's behaviour, then every scalar
    context feature under ``ctx.<key>`` (the model keeps those it was trained with).

    A missing profile gives the features of a user with no history (all zero, recency
    capped), so a brand-new user is scored like one.
    """
    features: dict[str, FeatureValue]
    if profile is None:
        features = {name: 0.0 for name in NUMERIC_FEATURES}
        features["recency_days"] = RECENCY_CAP_DAYS
        features["top_category"] = NO_CATEGORY
    else:
        orders = profile.orders
        recency = RECENCY_CAP_DAYS
        if profile.last_order_at is not None:
            days = (now - profile.last_order_at).total_seconds() / 86_400.0
            recency = min(max(days, 0.0), RECENCY_CAP_DAYS)
        features = {
            "recency_days": recency,
            "frequency": float(orders),
            "monetary": float(profile.monetary),
            "avg_order_value": profile.monetary / orders if orders else 0.0,
            "avg_basket_size": profile.items / orders if orders else 0.0,
            "others_share": min(profile.orders_for_others / orders, 1.0) if orders else 0.0,
            "recruits": float(profile.recruits),
            "sessions": float(profile.sessions),
            "detail_views": float(profile.detail_views),
            "basket_adds": float(profile.basket_adds),
            "n_categories": float(sum(1 for v in profile.categories.values() if v > 0)),
            "top_category": _top_category(profile.categories),
        }
    features.update(flat_context(context_features))
    return features
