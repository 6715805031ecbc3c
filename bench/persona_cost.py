"""What resolving the persona adds to a decision (``bench/decide.py``, or run this alone).

Two measurements, both in process on the event-loop thread:

1. ``ModelPersonaResolver.resolve`` per call, p50 and p99 over many calls, for each kind
   of shopper: a known user whose persona is already remembered (the common case: the
   same shoppers come back), a known user scored by the model (a new profile version or
   a new day: the CatBoost trees run), a logged-in user without a profile, an anonymous
   shopper, and an explicit persona in the request;
2. the whole ``Decider.decide`` (memory log) with the full chain against the
   :class:`~app.personas.DefaultPersonaResolver`, same requests: the added p50 and p99.

The profiles are the simulated shop's books (``devtools/simulator``), the model a CatBoost
persona model trained on them (200 trees of depth 6), as ``learnloop personas train``
builds it. The target is ≤ 100 µs p50 added per decision.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.main import create_app
from app.persona_cache import ProfileCache
from app.persona_serving import PersonaModels
from app.personas import ModelPersonaResolver
from app.pseudonyms import pseudonymize
from devtools.simulator.history import shop_history
from devtools.simulator.shop import Shop
from learnloop.decision_points import MemoryDecisionPointStore, load_config_file
from learnloop.eventlog import MemoryEventLog
from learnloop.modelstore import MemoryModelStore
from learnloop.persona_features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, profile_features
from learnloop.persona_model import FeatureEncoder, PersonaModel
from learnloop.persona_models import MemoryPersonaModelStore
from learnloop.profiles import MemoryProfileStore
from learnloop.settings import DEVELOPMENT_PSEUDONYM_KEY, Settings
from schemas.api import DecisionRequest
from schemas.features import Context
from schemas.personas import PersonaModelRelease

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEY = DEVELOPMENT_PSEUDONYM_KEY.encode()


@dataclass(frozen=True)
class Latency:
    name: str
    p50_us: float
    p99_us: float


def _train(seed: int) -> tuple[MemoryProfileStore, PersonaModel, list[str]]:
    """The shop's books as profiles under the users' pseudonyms, and a model on them."""
    from catboost import CatBoostClassifier

    books = shop_history(Shop(seed, rule="mlm"), NOW)
    store = MemoryProfileStore()
    users = [b.user_id for b in books]
    profiles = [
        b.profile().model_copy(update={"user_id": pseudonymize(b.user_id, KEY)}) for b in books
    ]
    asyncio.run(store.put_many(profiles))
    rows = [profile_features(p, {"device": "mobile"}, NOW) for p in profiles]
    encoder = FeatureEncoder.fit(rows, NUMERIC_FEATURES, (*CATEGORICAL_FEATURES, "ctx.device"))
    model = CatBoostClassifier(
        iterations=200, depth=6, random_seed=seed, verbose=False, allow_writing_files=False
    )
    model.fit(encoder.encode_many(rows), [b.persona for b in books])
    return store, PersonaModel.from_catboost(model, encoder), users


def _quantiles(samples: list[float]) -> tuple[float, float]:
    samples.sort()
    return (
        statistics.median(samples) * 1e6,
        samples[min(len(samples) - 1, round(0.99 * len(samples)))] * 1e6,
    )


def _time_each(calls: list[Callable[[], Any]], rounds: int) -> tuple[float, float]:
    samples: list[float] = []
    clock = time.perf_counter
    for _ in range(rounds):
        for call in calls:
            started = clock()
            call()
            samples.append(clock() - started)
    return _quantiles(samples)


async def _resolver_costs(
    store: MemoryProfileStore, model: PersonaModel, users: list[str], rounds: int
) -> list[Latency]:
    cache = ProfileCache(store)
    await cache.load()
    releases = MemoryPersonaModelStore()
    await releases.publish(
        PersonaModelRelease(
            version=0, created_at=NOW, source="train", classes=list(model.classes),
            feature_names=list(model.feature_names),
        ),
        model.to_bytes(),
    )  # fmt: skip
    models = PersonaModels({"catboost": releases})
    await models.refresh()
    resolver = ModelPersonaResolver(cache, models, max_predictions=1_000_000)
    features = {"page": "home", "device": "mobile", "hour": 9}
    known = [(Context(user_id=u, features=features), pseudonymize(u, KEY)) for u in users]
    rows: list[Latency] = []

    def case(name: str, calls: list[Callable[[], Any]], n: int = rounds) -> None:
        rows.append(Latency(name, *_time_each(calls, n)))

    # scored: every call a new (user, day) -> the trees run (the prediction cache misses)
    day = [0]

    def scored(context: Context, pseudonym: str) -> Callable[[], Any]:
        def call() -> Any:
            day[0] += 1
            return resolver.resolve(context, pseudonym, None, NOW.replace(year=2027 + day[0] % 50))

        return call

    case("known user, scored by the model", [scored(c, p) for c, p in known], 1)
    for context, pseudonym in known:
        resolver.resolve(context, pseudonym, None, NOW)
    case(
        "known user, persona remembered",
        [functools.partial(resolver.resolve, c, p, None, NOW) for c, p in known],
    )
    strangers = [(Context(user_id=f"new-{i}"), pseudonymize(f"new-{i}", KEY)) for i in range(500)]
    case(
        "logged in, no profile (default)",
        [functools.partial(resolver.resolve, c, p, None, NOW) for c, p in strangers],
    )
    anonymous = Context(features=features)
    case("anonymous (visitor)", [lambda: resolver.resolve(anonymous, None, None, NOW)] * 500)
    case(
        "explicit persona",
        [functools.partial(resolver.resolve, c, p, "builder", NOW) for c, p in known[:500]],
    )
    return rows


async def _decide_costs(
    store: MemoryProfileStore, model: PersonaModel, users: list[str], rounds: int
) -> tuple[Latency, Latency]:
    """Decider.decide per call with and without the persona chain (memory log)."""
    releases = MemoryPersonaModelStore()
    await releases.publish(
        PersonaModelRelease(version=0, created_at=NOW, source="train",
                            classes=list(model.classes), feature_names=list(model.feature_names)),
        model.to_bytes(),
    )  # fmt: skip
    configs = load_config_file(None)
    point = configs[0].name

    def app(**personas: Any) -> Any:
        return create_app(
            Settings(),
            events=MemoryEventLog(),
            models=MemoryModelStore(),
            decision_points=MemoryDecisionPointStore(configs),
            **personas,
        )

    plain, full = app(), app(profiles=store, persona_models=releases)
    requests = [
        DecisionRequest(
            decision_point=point,
            context=Context(
                user_id=users[i % len(users)] if i % 3 else None,
                features={"page": "home", "device": "mobile", "hour": i % 24},
            ),
        )
        for i in range(3000)
    ]
    results = {}
    async with plain.router.lifespan_context(plain), full.router.lifespan_context(full):
        for each in (plain, full):
            for request in requests:  # warm: VW, featurizer caches, persona predictions
                await each.state.decider.decide(request)
        samples: dict[str, list[float]] = {"plain": [], "full": []}
        for _ in range(rounds):
            for label, each in (("plain", plain), ("full", full)):
                decider = each.state.decider
                for request in requests:
                    started = time.perf_counter()
                    await decider.decide(request)
                    samples[label].append(time.perf_counter() - started)
        for label, values in samples.items():
            results[label] = _quantiles(values)
    return (
        Latency("decide, default resolver (explicit/visitor/default)", *results["plain"]),
        Latency("decide, full chain (profile cache + CatBoost)", *results["full"]),
    )


def bench_personas(seed: int = 7, rounds: int = 5) -> tuple[list[Latency], tuple[Latency, Latency]]:
    store, model, users = _train(seed)
    resolver = asyncio.run(_resolver_costs(store, model, users, rounds))
    decide = asyncio.run(_decide_costs(store, model, users, rounds))
    return resolver, decide


def persona_report(resolver: list[Latency], decide: tuple[Latency, Latency]) -> str:
    out = [
        "### Persona resolution (target: ≤ 100 µs p50 added per decision)",
        "",
        "| resolving the persona of | p50 | p99 |",
        "|---|---:|---:|",
    ]
    out += [f"| {r.name} | {r.p50_us:.1f} µs | {r.p99_us:.1f} µs |" for r in resolver]
    plain, full = decide
    out += [
        "",
        "| `Decider.decide`, memory log, 2/3 known users | p50 | p99 |",
        "|---|---:|---:|",
        f"| {plain.name} | {plain.p50_us:.1f} µs | {plain.p99_us:.1f} µs |",
        f"| {full.name} | {full.p50_us:.1f} µs | {full.p99_us:.1f} µs |",
        f"| added by the chain | {full.p50_us - plain.p50_us:+.1f} µs | "
        f"{full.p99_us - plain.p99_us:+.1f} µs |",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    print(persona_report(*bench_personas()))
