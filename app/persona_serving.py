"""Persona-model serving: which model names the personas, and hot swap to new releases.

Two stores of the same shape (:mod:`learnloop.persona_models`) hold the releases: the
persona-model store the CatBoost classifier (``learnloop personas train``/``retrain``),
the online one the river classifier the online learner publishes from confirmed labels
(:mod:`learnloop.persona_online`). ``Settings.persona_mode`` says
which answers:

- ``catboost`` (default): the CatBoost model; none published yet → the default persona;
- ``river``: the river model (once it has learned two personas);
- ``catboost+river``: CatBoost, except where it is unsure: when CatBoost is absent, or
  its top probability is below ``persona_river_confidence`` *and* river's top
  probability is higher, river answers.

A background task (:meth:`PersonaModels.watch`) polls the store every
``refresh_seconds`` (a manifest read, or one Redis ``GET`` per kind; in distributed mode
it also refreshes on the store's pub/sub notification) and builds a new
release off the event loop (``asyncio.to_thread``); the swap is one reference
assignment, so a decision holds either the old or the new :class:`ServedPersonaModel`,
never half of one. A release that cannot be loaded is logged, remembered and skipped:
the served model stays.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from app.metrics import ServiceMetrics
from app.persona_cache import ProfileCache
from app.personas import DefaultPersonaResolver, ModelPersonaResolver, PersonaResolver
from learnloop.persona_features import CONTEXT_PREFIX, FeatureValue
from learnloop.persona_model import PersonaModel
from learnloop.persona_online import OnlinePersonaClassifier
from learnloop.profiles import ProfileStore
from learnloop.settings import Settings
from learnloop.shutdown import cancel_requested, stop_task
from schemas.personas import PersonaModelKind, PersonaModelRelease

log = logging.getLogger(__name__)

PersonaMode = Literal["catboost", "river", "catboost+river"]
KINDS: dict[str, tuple[PersonaModelKind, ...]] = {
    "catboost": ("catboost",),
    "river": ("river",),
    "catboost+river": ("catboost", "river"),
}


class PersonaReleases(Protocol):
    """What serving reads of the persona-model store."""

    async def current(self) -> PersonaModelRelease | None: ...

    async def load(self, release: PersonaModelRelease) -> bytes: ...


def _top(proba: Mapping[str, float]) -> tuple[str, float]:
    return max(proba.items(), key=lambda item: (item[1], item[0]))


@dataclass(frozen=True, slots=True)
class ServedPersonaModel:
    """The model(s) answering now; immutable, so a swap never changes one in use."""

    catboost: PersonaModel | None
    river: OnlinePersonaClassifier | None
    mode: PersonaMode = "catboost"
    river_confidence: float = 0.8

    key: tuple[int, ...] = field(init=False)
    """The versions answering (-1: none of that kind): part of the prediction cache key."""
    context_keys: tuple[str, ...] = field(init=False)
    """The top-level context features CatBoost reads (river reads none)."""

    def __post_init__(self) -> None:
        # Computed once: the resolver reads both on every decision.
        catboost, river = self.catboost, self.river
        key = (-1 if catboost is None else catboost.version, -1 if river is None else river.version)
        names = () if catboost is None else catboost.feature_names
        keys = dict.fromkeys(
            n.removeprefix(CONTEXT_PREFIX).split(".", 1)[0]
            for n in names
            if n.startswith(CONTEXT_PREFIX)
        )
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "context_keys", tuple(keys))

    def predict(self, features: Mapping[str, FeatureValue]) -> tuple[str, int]:
        """The persona and the version of the model that answered (see the module)."""
        catboost, river = self.catboost, self.river
        if catboost is not None and (self.mode == "catboost" or river is None):
            return catboost.predict(features), catboost.version
        if catboost is None:
            assert river is not None  # PersonaModels.served() never builds one without
            return river.predict(features), river.version
        assert river is not None
        persona, sure = _top(catboost.predict_proba(features))
        if sure < self.river_confidence:
            other, other_sure = _top(river.predict_proba(features))
            if other_sure > sure:
                return other, river.version
        return persona, catboost.version


class PersonaModels:
    """Serves the persona model(s) of ``mode`` and swaps in new releases.

    ``stores`` maps a kind to its store: the CatBoost releases live in the persona-model
    store, the river releases in the online one
    (:func:`learnloop.persona_online.open_online_persona_model_store`); a kind the mode
    uses without a store is never served.
    """

    def __init__(
        self,
        stores: Mapping[PersonaModelKind, PersonaReleases],
        *,
        mode: PersonaMode = "catboost",
        river_confidence: float = 0.8,
        refresh_seconds: float = 0.2,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.stores = dict(stores)
        self.mode = mode
        self.river_confidence = river_confidence
        self.refresh_seconds = refresh_seconds
        self.metrics = metrics
        self._catboost: PersonaModel | None = None
        self._river: OnlinePersonaClassifier | None = None
        self._served: ServedPersonaModel | None = None
        self._failed: set[tuple[str, int, str]] = set()
        self._lock = asyncio.Lock()
        self._swaps = 0
        self._notifications: list[Callable[[], AsyncIterator[int]]] = []

    @property
    def swaps(self) -> int:
        """Models swapped in since start."""
        return self._swaps

    def served(self) -> ServedPersonaModel | None:
        """The model answering now (read it once per decision); ``None``: none yet."""
        return self._served

    async def refresh(self) -> ServedPersonaModel | None:
        """Bring every kind the mode uses up to the store's current release."""
        async with self._lock:
            for kind in KINDS[self.mode]:
                store = self.stores.get(kind)
                if store is None:
                    continue
                release = await store.current()
                if release is None or self._is_served(kind, release):
                    continue
                if (kind, release.version, release.created_at.isoformat()) in self._failed:
                    continue
                await self._load(kind, store, release)
            return self._served

    def listen(self, notifications: Callable[[], AsyncIterator[int]]) -> None:
        """Also refresh as soon as a store announces a release (e.g.
        :meth:`~learnloop.persona_models_redis.RedisPersonaModelStore.watch`; reopened
        after a failure). Polling stays on: a notification can be lost. Call before
        :meth:`watch` starts."""
        self._notifications.append(notifications)

    async def _listen(self, notifications: Callable[[], AsyncIterator[int]]) -> None:
        while not cancel_requested():
            try:
                async for _version in notifications():
                    await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("persona model notifications lost; resubscribing", exc_info=True)
            await asyncio.sleep(self.refresh_seconds)
        raise asyncio.CancelledError

    async def watch(self) -> None:
        """Refresh every ``refresh_seconds`` forever (a lifespan task), and on every
        notification of :meth:`listen`."""
        listeners = [asyncio.create_task(self._listen(n)) for n in self._notifications]
        try:
            await self._poll()
        finally:
            for listener in listeners:
                # Re-cancelled while a cancellation is lost (the Redis pub/sub client can).
                await stop_task(listener)

    async def _poll(self) -> None:
        while not cancel_requested():
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("persona model poll failed; retrying in %.1fs", self.refresh_seconds)
        raise asyncio.CancelledError

    def _is_served(self, kind: str, release: PersonaModelRelease) -> bool:
        held: PersonaModel | OnlinePersonaClassifier | None = (
            self._catboost if kind == "catboost" else self._river
        )
        return held is not None and held.version == release.version

    async def _load(self, kind: str, store: PersonaReleases, release: PersonaModelRelease) -> None:
        try:
            blob = await store.load(release)
            if kind == "catboost":
                self._catboost = await asyncio.to_thread(
                    PersonaModel.from_bytes, blob, release.version
                )
            else:
                self._river = await asyncio.to_thread(
                    OnlinePersonaClassifier.from_bytes, blob, release.version
                )
        except Exception:
            log.exception("cannot load %s persona model v%d; keeping the served one", kind,
                          release.version)  # fmt: skip
            self._failed.add((kind, release.version, release.created_at.isoformat()))
            return
        self._swap(kind, release.version)

    def _swap(self, kind: str, version: int) -> None:
        river = self._river if self._river is not None and self._river.trained else None
        catboost = self._catboost
        if (self.mode != "river" and catboost is not None) or (
            self.mode != "catboost" and river is not None
        ):
            served: ServedPersonaModel | None = ServedPersonaModel(
                None if self.mode == "river" else catboost,
                None if self.mode == "catboost" else river,
                self.mode,
                self.river_confidence,
            )
        else:
            served = None
        self._served = served  # one assignment: a decision reads the old or the new
        self._swaps += 1
        log.info("serving %s persona model v%d", kind, version)
        if self.metrics is not None:
            self.metrics.persona_model_version.labels(kind).set(version)
            self.metrics.persona_model_swaps.labels(kind).inc()


def persona_serving(
    settings: Settings,
    metrics: ServiceMetrics,
    profiles: ProfileStore | None,
    catboost: PersonaReleases | None,
    river: PersonaReleases | None,
) -> tuple[ProfileCache | None, PersonaModels | None, PersonaResolver]:
    """The persona pieces of one API process: without a profile store, the
    :class:`~app.personas.DefaultPersonaResolver` (explicit, visitor, default) alone."""
    if profiles is None:
        return None, None, DefaultPersonaResolver(settings.persona_default)
    resolver_ref: list[ModelPersonaResolver] = []

    def forget(users: Iterable[str]) -> None:
        for resolver in resolver_ref:
            resolver.forget(users)

    cache = ProfileCache(
        profiles,
        max_profiles=settings.persona_cache_profiles,
        refresh_seconds=settings.persona_refresh_seconds,
        metrics=metrics,
        on_forget=forget,
    )
    stores: dict[PersonaModelKind, PersonaReleases] = {}
    if catboost is not None:
        stores["catboost"] = catboost
    if river is not None:
        stores["river"] = river
    models = PersonaModels(
        stores,
        mode=settings.persona_mode,
        river_confidence=settings.persona_river_confidence,
        refresh_seconds=settings.persona_refresh_seconds,
        metrics=metrics,
    )
    resolver = ModelPersonaResolver(
        cache,
        models,
        default=settings.persona_default,
        max_predictions=settings.persona_cache_predictions,
        metrics=metrics,
    )
    resolver_ref.append(resolver)
    return cache, models, resolver


async def start_persona_tasks(
    cache: ProfileCache | None, models: PersonaModels | None
) -> list[asyncio.Task[None]]:
    """Load the profiles and the persona models (a failure is logged: the tasks keep
    trying, decisions meanwhile get the default persona), then start their refresh tasks."""
    tasks: list[asyncio.Task[None]] = []
    if cache is not None:
        try:
            await cache.load()
        except Exception:
            log.exception("initial profile load failed; the profile refresh keeps trying")
        tasks.append(asyncio.create_task(cache.watch(), name="learnloop-profile-cache"))
    if models is not None:
        try:
            await models.refresh()
        except Exception:
            log.exception("initial persona model load failed; the persona watcher keeps trying")
        tasks.append(asyncio.create_task(models.watch(), name="learnloop-persona-models"))
    return tasks
