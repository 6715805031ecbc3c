"""Personas: who the shopper is, attached to every decision as a context feature.

The chain, first match wins (DESIGN §5, docs/personas.md):

1. ``explicit``: the request names a persona (the client knows better);
2. ``visitor``: the shopper is anonymous (no ``user_id``);
3. ``label``: the shop confirmed a persona for this user (``POST .../label``);
4. ``default``: a logged-in user without a profile gets ``Settings.persona_default``;
5. ``model``: the served persona model on the profile and the context
   (:func:`~learnloop.persona_features.profile_features`); without a model, the default.

Everything runs on the event-loop thread with no I/O: profiles come from an in-memory
cache fed in the background (:mod:`app.persona_cache`), the model is a reference swapped
in the background (:mod:`app.persona_serving`), and a prediction is remembered per
(user, profile version, the context features the model reads, model, day).

>>> from schemas import Context
>>> resolver = DefaultPersonaResolver()
>>> resolver.persona(Context())
'visitor'
>>> resolver.persona(Context(user_id="u-17"))
'unclassified'
>>> resolver.resolve(Context(user_id="u-17"), "u_x", "builder", None).source
'explicit'
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from learnloop.persona_features import FeatureValue, profile_features
from schemas.features import Context
from schemas.profiles import PersonaSource, UserProfile

VISITOR: Final = "visitor"
UNCLASSIFIED: Final = "unclassified"
SECONDS_PER_DAY: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class Resolved:
    """The persona of one decision, why it is that one, and which model said so."""

    persona: str
    source: PersonaSource
    model_version: int | None = None


class PersonaResolver(Protocol):
    """Names the persona of the shopper behind a context.

    Called on the event-loop thread for every decision, so it must be fast and must not
    block: look-ups belong in a cache refreshed elsewhere. ``user_id`` is the shopper's
    pseudonym (``None`` when anonymous); ``explicit`` the persona the request named.
    """

    def resolve(
        self, context: Context, user_id: str | None, explicit: str | None, now: datetime | None
    ) -> Resolved: ...


class DefaultPersonaResolver:
    """Explicit wins; anonymous → ``visitor``; logged in → ``default`` (no classifier)."""

    def __init__(self, default: str = UNCLASSIFIED) -> None:
        self.default = default

    def persona(self, context: Context) -> str:
        """The persona of ``context`` alone (no request, no profile)."""
        return VISITOR if context.user_id is None else self.default

    def resolve(
        self, context: Context, user_id: str | None, explicit: str | None, now: datetime | None
    ) -> Resolved:
        if explicit is not None:
            return Resolved(explicit, "explicit")
        if context.user_id is None:
            return Resolved(VISITOR, "visitor")
        return Resolved(self.default, "default")


class ProfileLookup(Protocol):
    """The in-memory profiles of this process (:class:`app.persona_cache.ProfileCache`)."""

    def profile(self, user_id: str) -> UserProfile | None:
        """The cached profile of a pseudonymous user; ``None`` if none is known (yet)."""
        ...


class ServedPersona(Protocol):
    """The persona model serving now (:class:`app.persona_serving.ServedPersonaModel`)."""

    @property
    def key(self) -> tuple[int, ...]:
        """Identifies the model(s) answering: part of the prediction cache key."""
        ...

    @property
    def context_keys(self) -> tuple[str, ...]:
        """The top-level context features the model reads (``device`` for ``ctx.device``,
        ``geo`` for ``ctx.geo.region``)."""
        ...

    def predict(self, features: Mapping[str, FeatureValue]) -> tuple[str, int]:
        """The persona and the version of the model that answered."""
        ...


class PersonaModelSource(Protocol):
    def served(self) -> ServedPersona | None:
        """The model serving now (read once per decision), ``None`` before the first."""
        ...


class ResolutionCounter(Protocol):
    def resolved(self, source: str) -> None: ...


FeatureBuilder = Callable[
    [UserProfile | None, Mapping[str, object], datetime], dict[str, FeatureValue]
]
PredictionKey = tuple[str, int, int, tuple[object, ...], tuple[int, ...], int]


class ModelPersonaResolver:
    """The full chain of the module docstring over a profile cache and a served model.

    ``max_predictions`` bounds the memory of model answers (least recently used out);
    the day of ``now`` is part of the key, so a user's recency is re-scored daily.
    """

    def __init__(
        self,
        profiles: ProfileLookup,
        models: PersonaModelSource,
        *,
        default: str = UNCLASSIFIED,
        max_predictions: int = 100_000,
        metrics: ResolutionCounter | None = None,
        features: FeatureBuilder = profile_features,
    ) -> None:
        self.profiles = profiles
        self.models = models
        self.default = default
        self.max_predictions = max_predictions
        self.metrics = metrics
        self.features = features
        self._predictions: OrderedDict[PredictionKey, tuple[str, int]] = OrderedDict()
        # Users forgotten since start, and how often: part of the key, so a deleted user's
        # answers are never served again (a new profile restarts at version 1) without
        # scanning the cache; the old entries age out.
        self._generation: dict[str, int] = {}

    @property
    def cached_predictions(self) -> int:
        return len(self._predictions)

    def resolve(
        self, context: Context, user_id: str | None, explicit: str | None, now: datetime | None
    ) -> Resolved:
        resolved = self._resolve(context, user_id, explicit, now)
        if self.metrics is not None:
            self.metrics.resolved(resolved.source)
        return resolved

    def _resolve(
        self, context: Context, user_id: str | None, explicit: str | None, now: datetime | None
    ) -> Resolved:
        if explicit is not None:
            return Resolved(explicit, "explicit")
        if context.user_id is None or user_id is None:
            return Resolved(VISITOR, "visitor")
        profile = self.profiles.profile(user_id)
        if profile is None:
            return Resolved(self.default, "default")
        if profile.label is not None:
            return Resolved(profile.label, "label")
        served = self.models.served()
        if served is None or now is None:
            return Resolved(self.default, "default")
        persona, version = self._predict(served, profile, context, now)
        return Resolved(persona, "model", version)

    def _predict(
        self, served: ServedPersona, profile: UserProfile, context: Context, now: datetime
    ) -> tuple[str, int]:
        used: tuple[object, ...] = ()
        if served.context_keys:
            # Only what the model reads is part of the key. (A nested map keyed by its
            # items; True and 1 key alike, a front end does not send both for one user.)
            features = context.features
            used = tuple(
                tuple(sorted(v.items())) if isinstance(v, dict) else v
                for v in (features.get(name) for name in served.context_keys)
            )
        day = int(now.timestamp() // SECONDS_PER_DAY)
        user = profile.user_id
        key = (user, profile.version, self._generation.get(user, 0), used, served.key, day)
        cache = self._predictions
        answer = cache.get(key)
        if answer is not None:
            cache.move_to_end(key)
            return answer
        answer = served.predict(self.features(profile, context.features, now))
        cache[key] = answer
        if len(cache) > self.max_predictions:
            cache.popitem(last=False)
        return answer

    def forget(self, user_ids: Iterable[str]) -> None:
        """Never serve the remembered predictions of these (deleted) users again."""
        generation = self._generation
        for user_id in user_ids:
            generation[user_id] = generation.get(user_id, 0) + 1
        if len(generation) > self.max_predictions:  # bounded: start afresh
            generation.clear()
            self._predictions.clear()
