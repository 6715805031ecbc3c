"""Serving personas: the resolver chain, its prediction cache, the profile cache fed by
the change feed, and the persona-model modes (CatBoost, river, both)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from app.persona_cache import ProfileCache
from app.persona_serving import PersonaModels, PersonaReleases, ServedPersonaModel
from app.personas import DefaultPersonaResolver, ModelPersonaResolver, Resolved
from learnloop.persona_features import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    FeatureValue,
    profile_features,
)
from learnloop.persona_model import FeatureEncoder, PersonaModel
from learnloop.persona_models import MemoryPersonaModelStore
from learnloop.persona_online import OnlinePersonaClassifier
from learnloop.profiles import MemoryProfileStore
from offline_learner.personas.synthetic import planted_profiles
from schemas.features import Context
from schemas.personas import PersonaModelKind, PersonaModelRelease
from schemas.profiles import ProfileUpdate, UserProfile

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# --- helpers (imported by the other persona serving tests) -----------------------------


def train_catboost(
    profiles: Sequence[UserProfile],
    personas: Sequence[str],
    *,
    context: Sequence[Mapping[str, object]] | None = None,
    iterations: int = 40,
    seed: int = 0,
) -> PersonaModel:
    """A small CatBoost persona model on the profiles' features (and optional context)."""
    from catboost import CatBoostClassifier

    contexts = context or [{}] * len(profiles)
    rows = [profile_features(p, c, NOW) for p, c in zip(profiles, contexts, strict=True)]
    extra = sorted({k for r in rows for k in r} - set(NUMERIC_FEATURES) - set(CATEGORICAL_FEATURES))
    encoder = FeatureEncoder.fit(rows, NUMERIC_FEATURES, (*CATEGORICAL_FEATURES, *extra))
    model = CatBoostClassifier(
        iterations=iterations,
        depth=4,
        random_seed=seed,
        verbose=False,
        thread_count=1,
        allow_writing_files=False,
    )
    model.fit(encoder.encode_many(rows), list(personas))
    return PersonaModel.from_catboost(model, encoder)


def catboost_release(model: PersonaModel, version: int = 0) -> PersonaModelRelease:
    return PersonaModelRelease(
        version=version,
        created_at=NOW,
        source="train",
        classes=list(model.classes),
        feature_names=list(model.feature_names),
    )


# --- the chain over fakes ----------------------------------------------------------------


@dataclass
class FakeProfiles:
    profiles: dict[str, UserProfile] = field(default_factory=dict)

    def profile(self, user_id: str) -> UserProfile | None:
        return self.profiles.get(user_id)


@dataclass
class FakeModel:
    answer: str = "builder"
    version: int = 3
    context_keys: tuple[str, ...] = ("device",)
    calls: int = 0

    @property
    def key(self) -> tuple[int, ...]:
        return (self.version,)

    def predict(self, features: Mapping[str, FeatureValue]) -> tuple[str, int]:
        self.calls += 1
        return self.answer, self.version


@dataclass
class FakeModels:
    model: FakeModel | None = field(default_factory=FakeModel)

    def served(self) -> FakeModel | None:
        return self.model


KNOWN = UserProfile(user_id="u_known", orders=3, monetary=90.0, items=6, version=2)
LABELLED = UserProfile(user_id="u_label", orders=3, label="consultant", version=5)


def _resolver(model: FakeModel | None = None) -> tuple[ModelPersonaResolver, FakeModels]:
    profiles = FakeProfiles({p.user_id: p for p in (KNOWN, LABELLED)})
    models = FakeModels(model if model is not None else FakeModel())
    return ModelPersonaResolver(profiles, models, default="newcomer"), models


@pytest.mark.parametrize(
    ("user", "pseudonym", "explicit", "expected"),
    [
        (None, None, None, Resolved("visitor", "visitor")),
        (None, None, "shop_owner", Resolved("shop_owner", "explicit")),
        ("alice", "u_unknown", None, Resolved("newcomer", "default")),
        ("bob", "u_known", None, Resolved("builder", "model", 3)),
        ("bob", "u_known", "shop_owner", Resolved("shop_owner", "explicit")),
        ("carol", "u_label", None, Resolved("consultant", "label")),
        ("carol", "u_label", "builder", Resolved("builder", "explicit")),
    ],
)
def test_the_chain_names_each_source(
    user: str | None, pseudonym: str | None, explicit: str | None, expected: Resolved
) -> None:
    resolver, _ = _resolver()
    assert resolver.resolve(Context(user_id=user), pseudonym, explicit, NOW) == expected


def test_a_known_user_without_a_model_gets_the_default() -> None:
    resolver, models = _resolver()
    models.model = None
    assert resolver.resolve(Context(user_id="bob"), "u_known", None, NOW) == Resolved(
        "newcomer", "default"
    )


def test_the_default_resolver_has_no_profiles() -> None:
    resolver = DefaultPersonaResolver("newcomer")
    assert resolver.resolve(Context(user_id="bob"), "u_known", None, NOW).source == "default"
    assert resolver.resolve(Context(), None, None, NOW).persona == "visitor"
    assert resolver.resolve(Context(), None, "builder", NOW).source == "explicit"


def test_predictions_are_cached_by_profile_version_context_used_and_model() -> None:
    model = FakeModel()
    resolver, _ = _resolver(model)
    profiles = cast(FakeProfiles, resolver.profiles)

    def resolve(**features: str) -> Resolved:
        return resolver.resolve(Context(user_id="bob", features=features), "u_known", None, NOW)

    resolve(device="mobile", page="home")
    resolve(device="mobile", page="cart")  # page is not a feature of the model: cached
    assert model.calls == 1
    resolve(device="desktop")  # a feature the model reads changed
    assert model.calls == 2
    profiles.profiles["u_known"] = KNOWN.model_copy(update={"version": 3, "orders": 9})
    resolve(device="desktop")  # the profile changed
    assert model.calls == 3
    model.version = 4  # a new model
    assert resolve(device="desktop").model_version == 4
    assert model.calls == 4
    resolver.resolve(Context(user_id="bob"), "u_known", None, NOW + timedelta(days=1))
    assert model.calls == 5  # a new day: recency moved
    resolver.forget(["u_known"])  # deleted; a new profile of the same version comes
    resolver.resolve(Context(user_id="bob"), "u_known", None, NOW + timedelta(days=1))
    assert model.calls == 6  # not the forgotten profile's answer


def test_the_prediction_cache_is_bounded() -> None:
    model = FakeModel(context_keys=("n",))
    resolver, _ = _resolver(model)
    resolver.max_predictions = 10
    for n in range(50):
        resolver.resolve(Context(user_id="bob", features={"n": n}), "u_known", None, NOW)
    assert resolver.cached_predictions == 10


# --- the profile cache -----------------------------------------------------------------------


async def test_the_cache_follows_the_change_feed() -> None:
    store = MemoryProfileStore()
    await store.put(UserProfile(user_id="u_a", orders=1))
    cache = ProfileCache(store)
    await cache.load()
    a = cache.profile("u_a")
    assert a is not None and a.orders == 1
    assert cache.profile("u_b") is None
    await store.update("u_a", ProfileUpdate(orders=7))
    await store.update("u_b", ProfileUpdate(recruits=2))
    assert await cache.refresh() == 2
    a, b = cache.profile("u_a"), cache.profile("u_b")
    assert a is not None and a.orders == 7 and a.version == 2
    assert b is not None and b.recruits == 2
    forgotten: list[str] = []
    cache.on_forget = forgotten.extend
    assert await store.delete("u_a")
    await cache.refresh()
    assert cache.profile("u_a") is None and forgotten == ["u_a"] and len(cache) == 1


async def test_a_write_of_this_process_serves_at_once_and_is_not_undone_by_an_older_feed() -> None:
    store = MemoryProfileStore()
    cache = ProfileCache(store)
    await store.put(UserProfile(user_id="u_a"))
    labelled = await store.set_label("u_a", "builder")
    cache.put(labelled)
    first = cache.profile("u_a")
    assert first is not None and first.label == "builder"
    await cache.refresh()  # the feed brings v1 (the put) and then v2 (the label)
    again = cache.profile("u_a")
    assert again is not None and again.label == "builder" and again.version == labelled.version


async def test_after_eviction_a_miss_is_fetched_in_the_background() -> None:
    store = MemoryProfileStore()
    for name in ("u_a", "u_b", "u_c"):
        await store.put(UserProfile(user_id=name, orders=1))
    cache = ProfileCache(store, max_profiles=2)
    await cache.load()
    assert len(cache) == 2 and cache.profile("u_a") is None  # evicted: least recent
    assert cache.profile("u_nobody") is None
    await cache.refresh()
    assert cache.profile("u_a") is not None  # prefetched for the next decision
    assert "u_nobody" not in cache._wanted and "u_nobody" in cache._absent
    cache.profile("u_nobody")
    assert "u_nobody" not in cache._wanted  # known absent: not fetched again
    await store.put(UserProfile(user_id="u_nobody"))
    await cache.refresh()
    assert cache.profile("u_nobody") is not None


# --- persona-model modes ---------------------------------------------------------------------


class FakeProba:
    """A model with fixed probabilities (for the mode rules)."""

    def __init__(self, proba: dict[str, float], version: int) -> None:
        self.proba, self.version = proba, version
        self.feature_names: tuple[str, ...] = ()

    def predict_proba(self, features: Mapping[str, FeatureValue]) -> dict[str, float]:
        return self.proba

    def predict(self, features: Mapping[str, FeatureValue]) -> str:
        return max(self.proba, key=lambda k: self.proba[k])


@pytest.mark.parametrize(
    ("catboost", "river", "expected"),
    [
        ({"builder": 0.9, "consultant": 0.1}, {"consultant": 0.99}, ("builder", 1)),
        ({"builder": 0.4, "consultant": 0.3}, {"consultant": 0.8}, ("consultant", 7)),
        ({"builder": 0.4, "consultant": 0.3}, {"consultant": 0.35}, ("builder", 1)),
        (None, {"consultant": 0.35, "builder": 0.3}, ("consultant", 7)),
    ],
)
def test_catboost_plus_river_lets_river_answer_where_catboost_is_unsure(
    catboost: dict[str, float] | None, river: dict[str, float], expected: tuple[str, int]
) -> None:
    served = ServedPersonaModel(
        cast(PersonaModel, FakeProba(catboost, 1)) if catboost is not None else None,
        cast(OnlinePersonaClassifier, FakeProba(river, 7)),
        "catboost+river",
        river_confidence=0.5,
    )
    assert served.predict({}) == expected
    assert served.key == (-1 if catboost is None else 1, 7)


async def test_models_serve_what_the_mode_says_and_swap_to_new_releases() -> None:
    profiles, truth = planted_profiles(300, seed=2, now=NOW)
    catboost = train_catboost(profiles, truth, iterations=20)
    river = OnlinePersonaClassifier()
    for profile, persona in zip(profiles, truth, strict=True):
        river.learn_one(profile_features(profile, {}, NOW), persona)
    catboost_store, river_store = MemoryPersonaModelStore(), MemoryPersonaModelStore()
    stores: dict[PersonaModelKind, PersonaReleases] = {
        "catboost": catboost_store,
        "river": river_store,
    }
    only_catboost = PersonaModels(stores, mode="catboost")
    only_river = PersonaModels(stores, mode="river")
    both = PersonaModels(stores, mode="catboost+river")
    for models in (only_catboost, only_river, both):
        assert await models.refresh() is None  # nothing published yet
    await river_store.publish(catboost_release(catboost).model_copy(update={"kind": "river"}),
                              river.to_bytes())  # fmt: skip
    assert await only_catboost.refresh() is None
    served = await only_river.refresh()
    assert served is not None and served.catboost is None and served.river is not None
    assert (await both.refresh()) is not None  # river alone until CatBoost comes
    await catboost_store.publish(catboost_release(catboost), catboost.to_bytes())
    await catboost_store.publish(catboost_release(catboost), catboost.to_bytes())
    served = await only_catboost.refresh()
    assert served is not None and served.catboost is not None and served.key == (2, -1)
    served = await both.refresh()
    assert served is not None and served.key == (2, 1)
    assert only_catboost.swaps == 1 and both.swaps == 2
    persona, version = served.predict(profile_features(profiles[0], {}, NOW))
    assert persona in catboost.classes and version in (1, 2)


async def test_a_broken_release_keeps_the_served_model() -> None:
    profiles, truth = planted_profiles(100, seed=3, now=NOW)
    catboost = train_catboost(profiles, truth, iterations=10)
    store = MemoryPersonaModelStore()
    models = PersonaModels({"catboost": store})
    await store.publish(catboost_release(catboost), catboost.to_bytes())
    assert (await models.refresh()) is not None
    await store.publish(catboost_release(catboost), b"not a model")
    served = await models.refresh()
    assert served is not None and served.key == (1, -1) and models.swaps == 1
    assert (await models.refresh()) is served  # the broken one is not tried again


def test_the_served_model_keys_on_the_context_features_it_was_trained_with() -> None:
    profiles, truth = planted_profiles(120, seed=4, now=NOW)
    contexts = [{"device": "mobile" if i % 2 else "desktop", "geo": {"region": "eu"}}
                for i in range(len(profiles))]  # fmt: skip
    catboost = train_catboost(profiles, truth, context=contexts, iterations=10)
    served = ServedPersonaModel(catboost, None)
    assert served.context_keys == ("device", "geo") and served.key == (0, -1)
    cache = FakeProfiles({"u00000": profiles[0]})
    resolver = ModelPersonaResolver(cache, FakeServed(served))
    for features in (
        {"device": "mobile", "geo": {"region": "eu"}, "page": "home"},
        {"device": "mobile", "geo": {"region": "eu"}, "page": "cart"},  # same key
        {"device": "desktop", "geo": {"region": "eu"}},
        {"device": "desktop", "geo": {"region": "us"}},
    ):
        got = resolver.resolve(Context(user_id="x", features=features), "u00000", None, NOW)
        assert got.source == "model" and got.persona in catboost.classes
    assert resolver.cached_predictions == 3


@dataclass
class FakeServed:
    model: ServedPersonaModel

    def served(self) -> ServedPersonaModel:
        return self.model


async def test_a_release_notification_swaps_without_waiting_for_the_poll() -> None:
    profiles, truth = planted_profiles(100, seed=6, now=NOW)
    catboost = train_catboost(profiles, truth, iterations=10)
    store = MemoryPersonaModelStore()
    announced: asyncio.Queue[int] = asyncio.Queue()

    async def notifications() -> AsyncIterator[int]:
        while True:
            yield await announced.get()

    models = PersonaModels({"catboost": store}, refresh_seconds=3600.0)
    models.listen(notifications)
    watcher = asyncio.create_task(models.watch())
    try:
        stored = await store.publish(catboost_release(catboost), catboost.to_bytes())
        await announced.put(stored.version)
        for _ in range(1000):
            if models.served() is not None:
                break
            await asyncio.sleep(0.001)
        served = models.served()
        assert served is not None and served.key == (1, -1)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
