"""The decision service with personas: decisions carry the resolved persona (response, logged
event, VW context, metrics); explicit, label, forget; a persona-model hot swap while
decisions run fails none of them."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.pseudonyms import pseudonymize
from learnloop import featurizer
from learnloop.clock import FakeClock
from learnloop.decision_points import MemoryDecisionPointStore, load_config_file
from learnloop.eventlog import MemoryEventLog, Streams
from learnloop.modelstore import MemoryModelStore
from learnloop.persona_model import PersonaModel
from learnloop.persona_models import MemoryPersonaModelStore
from learnloop.policy import Policy
from learnloop.profiles import MemoryProfileStore
from learnloop.settings import DEVELOPMENT_PSEUDONYM_KEY, Settings
from offline_learner.personas.synthetic import planted_profiles
from schemas.events import DecisionEvent
from schemas.features import Action, Context
from schemas.profiles import UserProfile
from tests.unit.test_api_harness import DP, START
from tests.unit.test_persona_serving import NOW, catboost_release, train_catboost

KEY = DEVELOPMENT_PSEUDONYM_KEY.encode()
USERS = 40


@dataclasses.dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    events: MemoryEventLog
    profiles: MemoryProfileStore
    personas: MemoryPersonaModelStore
    truth: dict[str, str]  # real user id -> planted persona

    async def decide(self, **body: Any) -> dict[str, Any]:
        response = await self.client.post("/v1/decisions", json={"decision_point": DP, **body})
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def logged(self) -> list[DecisionEvent]:
        records = await self.events.read([Streams.DECISIONS], -1, 100_000)
        return [DecisionEvent.model_validate_json(r.value) for r in records]


@pytest.fixture(scope="module")
def model() -> PersonaModel:
    profiles, truth = planted_profiles(400, seed=11, now=NOW)
    return train_catboost(profiles, truth, iterations=30)


@pytest.fixture
async def service(model: PersonaModel) -> AsyncIterator[Service]:
    planted, truth = planted_profiles(USERS, seed=5, now=NOW)
    profiles = MemoryProfileStore(clock=FakeClock(START))
    real: dict[str, str] = {}
    for i, (profile, persona) in enumerate(zip(planted, truth, strict=True)):
        user = f"user-{i}"
        real[user] = persona
        await profiles.put(profile.model_copy(update={"user_id": pseudonymize(user, KEY)}))
    personas = MemoryPersonaModelStore()
    await personas.publish(catboost_release(model), model.to_bytes())
    events = MemoryEventLog()
    app = create_app(
        Settings(persona_refresh_seconds=0.01, persona_default="newcomer"),
        events=events,
        decision_points=MemoryDecisionPointStore(load_config_file(None)),
        models=MemoryModelStore(),
        clock=FakeClock(NOW),
        profiles=profiles,
        persona_models=personas,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://learnloop") as client:
            yield Service(app, client, events, profiles, personas, real)


async def test_decisions_carry_the_models_persona_everywhere(
    service: Service, model: PersonaModel
) -> None:
    seen: list[str] = []

    class Spy:
        """Records the persona the VW policy is asked with."""

        def __init__(self, inner: Policy) -> None:
            self.inner = inner

        def predict(self, context: Context, persona: str, actions: Sequence[Action]) -> list[float]:
            seen.append(featurizer.shared_line(context, persona))
            return self.inner.predict(context, persona, actions)

    registry = service.app.state.registry
    served = registry.get(DP)
    registry._served[DP] = dataclasses.replace(served, policy=Spy(served.policy))

    answers = [
        await service.decide(context={"user_id": user, "features": {"page": "home"}})
        for user in service.truth
    ]
    logged = await service.logged()
    assert [a["persona"] for a in answers] == [e.persona for e in logged]
    assert all(a["persona"] in model.classes for a in answers)
    agree = sum(a["persona"] == t for a, t in zip(answers, service.truth.values(), strict=True))
    assert agree >= 0.8 * USERS  # the model's answers, not a constant
    assert all(f"|u persona={a['persona']}" in line for a, line in zip(answers, seen, strict=True))

    metrics = (await service.client.get("/metrics")).text
    some = answers[0]["persona"]
    assert f'persona="{some}"' in metrics
    assert f'learnloop_persona_resolutions_total{{source="model"}} {float(USERS)}' in metrics
    assert 'learnloop_persona_model_version{kind="catboost"} 1.0' in metrics
    assert f"learnloop_persona_cache_profiles {float(USERS)}" in metrics


async def test_anonymous_unknown_explicit_and_label(service: Service) -> None:
    assert (await service.decide(context={"features": {"page": "home"}}))["persona"] == "visitor"
    unknown = await service.decide(context={"user_id": "someone-new"})
    assert unknown["persona"] == "newcomer"
    explicit = await service.decide(context={"user_id": "user-1"}, persona="shop_owner")
    assert explicit["persona"] == "shop_owner"
    assert (await service.decide(persona="builder"))["persona"] == "builder"  # anonymous too
    bad = await service.client.post(
        "/v1/decisions", json={"decision_point": DP, "persona": "not a name!"}
    )
    assert bad.status_code == 422

    posted = await service.client.post("/v1/users/user-2/label", json={"persona": "royalty"})
    assert posted.status_code == 200, posted.text
    # at once in this process, without waiting for a refresh
    assert (await service.decide(context={"user_id": "user-2"}))["persona"] == "royalty"
    view = (await service.client.get("/v1/users/user-2")).json()
    assert (view["persona"], view["persona_source"]) == ("royalty", "label")
    logged = await service.logged()
    assert [e.persona for e in logged][-1] == "royalty"


async def test_a_profile_written_elsewhere_serves_after_a_refresh(service: Service) -> None:
    pseudonym = pseudonymize("fresh", KEY)
    assert (await service.decide(context={"user_id": "fresh"}))["persona"] == "newcomer"
    # another process writes the profile: this one sees it through the change feed
    await service.profiles.put(UserProfile(user_id=pseudonym, recruits=20, orders=6, sessions=25))
    await service.app.state.profile_cache.refresh()
    view = (await service.client.get("/v1/users/fresh")).json()
    assert view["persona_source"] == "model" and view["persona_model_version"] == 1


async def test_forgetting_a_user(service: Service) -> None:
    before = await service.decide(context={"user_id": "user-3"})
    assert before["persona"] != "newcomer"
    deleted = await service.client.delete("/v1/users/user-3")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert (await service.decide(context={"user_id": "user-3"}))["persona"] == "newcomer"
    await service.app.state.profile_cache.refresh()  # the tombstone changes nothing more
    assert (await service.decide(context={"user_id": "user-3"}))["persona"] == "newcomer"
    view = (await service.client.get("/v1/users/user-3")).json()
    assert view["profile"] is None and view["persona_source"] == "default"


async def test_a_deletion_in_another_process_reaches_this_cache(service: Service) -> None:
    assert (await service.decide(context={"user_id": "user-4"}))["persona"] != "newcomer"
    await service.decide(context={"user_id": "user-5"})
    await service.profiles.delete(pseudonymize("user-4", KEY))
    await service.app.state.profile_cache.refresh()
    assert (await service.decide(context={"user_id": "user-4"}))["persona"] == "newcomer"
    resolver = service.app.state.personas
    assert resolver._generation == {pseudonymize("user-4", KEY): 1}  # user-5's answer stays


def _renamed(model: PersonaModel, prefix: str) -> PersonaModel:
    """The same trees answering other names: tells which model answered a decision."""
    return PersonaModel(model.encoder, [prefix + c for c in model.classes], model._export)


async def test_hot_swap_under_concurrent_decisions_fails_no_request(
    service: Service, model: PersonaModel
) -> None:
    swapper_models = [_renamed(model, "a_"), _renamed(model, "b_")]
    statuses: list[int] = []
    answered: list[str] = []
    stop = asyncio.Event()

    async def traffic(k: int) -> None:
        i = 0
        while not stop.is_set():
            user = f"user-{(k * 7 + i) % USERS}"
            response = await service.client.post(
                "/v1/decisions",
                json={"decision_point": DP, "context": {"user_id": user, "features": {"n": i}}},
            )
            statuses.append(response.status_code)
            if response.status_code == 200:
                answered.append(response.json()["persona"])
            i += 1

    async def swapper() -> None:
        persona_models = service.app.state.persona_models
        for n in range(12):
            swapped = swapper_models[n % 2]
            await service.personas.publish(catboost_release(swapped), swapped.to_bytes())
            await persona_models.refresh()
            seen = len(answered)
            while len(answered) < seen + 16:  # let decisions run on this model
                await asyncio.sleep(0)
        stop.set()

    await asyncio.gather(swapper(), *(traffic(k) for k in range(8)))
    assert statuses and set(statuses) == {200}
    assert service.app.state.persona_models.swaps >= 13  # the first load and 12 swaps
    prefixes = {p.split("_", 1)[0] for p in answered}
    assert {"a", "b"} <= prefixes  # decisions ran on both models
    logged = await service.logged()
    assert [e.persona for e in logged][-len(answered) :] == answered
