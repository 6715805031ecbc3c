"""Personas served by a real ``learnloop serve --workers 2``: profiles in
``data/profiles.sqlite``, a CatBoost persona model published to ``data/personas/``.

Decisions of known users carry the model's persona (every worker, the logged event
too); new persona-model versions published while traffic runs are swapped in by both
workers with no failed request; a confirmed label wins and the loop process learns it
into a river release; ``DELETE`` forgets a user on every worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from app.pseudonyms import pseudonymize
from devtools.simulator.history import ShopperHistory, shop_history
from devtools.simulator.shop import Shop
from learnloop.persona_model import PersonaModel
from learnloop.persona_models import LocalPersonaModelStore
from learnloop.persona_models_redis import RedisPersonaModelStore
from learnloop.persona_online import ONLINE_DIRECTORY, online_prefix
from learnloop.profile_store_redis import RedisProfileStore
from learnloop.profile_store_sqlite import FILE_NAME, SqliteProfileStore
from learnloop.settings import DEVELOPMENT_PSEUDONYM_KEY, Settings
from online_learner.persona_labels import PersonaLabelLearner, RedisLease
from runtime.distributed import running_api
from runtime.processes import ServiceProcess
from tests.unit.test_persona_serving import NOW, catboost_release, train_catboost

pytestmark = pytest.mark.integration

KEY = DEVELOPMENT_PSEUDONYM_KEY.encode()
FRESH = {"Connection": "close"}  # a new connection per request: both workers answer
DP = "home_products"
USERS = 300
Books = tuple[dict[str, str], PersonaModel, list[ShopperHistory]]


def _renamed(model: PersonaModel, prefix: str) -> PersonaModel:
    """The same trees answering other names: tells which version answered a decision."""
    return PersonaModel(model.encoder, [prefix + c for c in model.classes], model._export)


@pytest.fixture(scope="module")
def shop() -> Books:
    books = shop_history(Shop(7, rule="mlm"), NOW)[:USERS]
    model = train_catboost([b.profile() for b in books], [b.persona for b in books],
                           iterations=100)  # fmt: skip
    return {b.user_id: b.persona for b in books}, model, books


@pytest.fixture
def service(tmp_path: Path, shop: Books) -> Iterator[ServiceProcess]:
    _, model, books = shop
    data = tmp_path / "data"
    data.mkdir()

    async def seed() -> None:
        store = SqliteProfileStore(data / FILE_NAME)
        profiles = [
            b.profile().model_copy(update={"user_id": pseudonymize(b.user_id, KEY)}) for b in books
        ]
        await store.put_many(profiles)
        await store.close()
        await LocalPersonaModelStore(data / "personas").publish(
            catboost_release(model), model.to_bytes()
        )

    asyncio.run(seed())
    env = {"LEARNLOOP_PERSONA_DEFAULT": "newcomer", "LEARNLOOP_PERSONA_REFRESH_SECONDS": "0.1"}
    with ServiceProcess(data, workers=2, env=env, log_file=tmp_path / "serve.log") as running:
        yield running


def _decide(client: httpx.Client, user: str | None, **extra: object) -> dict[str, object]:
    context = {"features": {"page": "home"}, **({"user_id": user} if user else {})}
    response = client.post("/v1/decisions", json={"decision_point": DP, "context": context,
                                                  **extra})  # fmt: skip
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


def _eventually(check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("not reached in time")


def test_decisions_carry_the_persona_and_models_swap_under_traffic(
    service: ServiceProcess, shop: Books
) -> None:
    truth, model, _ = shop
    users = list(truth)
    with httpx.Client(base_url=service.url, headers=FRESH, timeout=10) as client:
        answers = [_decide(client, u)["persona"] for u in users[:100]]
        agree = sum(a == truth[u] for a, u in zip(answers, users, strict=False))
        assert agree >= 90, answers  # the model's answers (fitted on these users)
        assert _decide(client, None)["persona"] == "visitor"
        assert _decide(client, "a-stranger")["persona"] == "newcomer"
        assert _decide(client, users[0], persona="shop_owner")["persona"] == "shop_owner"

    # new versions while two workers decide: no failed request, the new names served
    store = LocalPersonaModelStore(service.data_dir / "personas")
    statuses: list[int] = []
    personas: list[str] = []

    async def traffic(stop: asyncio.Event, k: int) -> None:
        async with httpx.AsyncClient(base_url=service.url, headers=FRESH, timeout=10) as http:
            i = 0
            while not stop.is_set():
                user = users[(k * 31 + i) % len(users)]
                body = {"decision_point": DP, "context": {"user_id": user}}
                response = await http.post("/v1/decisions", json=body)
                statuses.append(response.status_code)
                if response.status_code == 200:
                    personas.append(response.json()["persona"])
                i += 1

    async def publish_while_deciding() -> None:
        stop = asyncio.Event()
        runners = [asyncio.create_task(traffic(stop, k)) for k in range(6)]
        for n in range(6):
            renamed = _renamed(model, f"v{n}_")
            await store.publish(catboost_release(renamed), renamed.to_bytes())
            deadline = time.monotonic() + 15
            while not any(p.startswith(f"v{n}_") for p in personas[-50:]):
                assert time.monotonic() < deadline, f"v{n} was never served"
                await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*runners)

    asyncio.run(publish_while_deciding())
    assert statuses and set(statuses) == {200}
    served = {p.split("_", 1)[0] for p in personas if p[:1] == "v" and "_" in p}
    assert served == {f"v{n}" for n in range(6)}  # each version answered under traffic
    with httpx.Client(base_url=service.url, headers=FRESH, timeout=10) as client:
        _eventually(lambda: all(
            str(_decide(client, u)["persona"]).startswith("v5_") for u in users[:20]
        ))  # fmt: skip
        metrics = client.get("/metrics").text
    assert 'learnloop_persona_model_version{kind="catboost"} 7.0' in metrics


def test_label_wins_is_learned_online_and_delete_forgets(
    service: ServiceProcess, shop: Books
) -> None:
    truth, _, _ = shop
    users = list(truth)
    with httpx.Client(base_url=service.url, headers=FRESH, timeout=10) as client:
        labelled = {u: ("royal_" if i % 2 else "plain_") + truth[u] for i, u in
                    enumerate(users[:30])}  # fmt: skip
        for user, persona in labelled.items():
            posted = client.post(f"/v1/users/{user}/label", json={"persona": persona})
            assert posted.status_code == 200, posted.text
        # every worker serves the label within a refresh
        _eventually(lambda: all(_decide(client, u)["persona"] == p for u, p in labelled.items()))
        view = client.get(f"/v1/users/{users[0]}").json()
        assert view["persona_source"] == "label"

        # the loop process learned the labels into a river release
        online = LocalPersonaModelStore(service.data_dir / "personas" / ONLINE_DIRECTORY)
        _eventually(lambda: _river_labels(online) == 30)

        victim = users[40]
        assert _decide(client, victim)["persona"] != "newcomer"
        deleted = client.delete(f"/v1/users/{victim}")
        assert deleted.status_code == 200 and deleted.json()["deleted"] is True
        _eventually(lambda: all(_decide(client, victim)["persona"] == "newcomer"
                                for _ in range(10)))  # fmt: skip
        assert client.get(f"/v1/users/{victim}").json()["profile"] is None


def _river_labels(store: LocalPersonaModelStore) -> float:
    release = asyncio.run(store.current())
    return 0.0 if release is None else release.metrics.get("labels_learned", 0.0)


# --- distributed: two in-process API replicas on Kafka + a real redis-server -----------------


async def test_distributed_replicas_serve_swap_label_and_forget(
    kafka_settings: Settings, shop: Books
) -> None:
    truth, model, books = shop
    users = list(truth)[:60]
    settings = kafka_settings.model_copy(
        update={"persona_refresh_seconds": 0.05, "persona_default": "newcomer"}
    )
    redis = aioredis.Redis.from_url(settings.redis_url)
    profiles = RedisProfileStore(redis, settings.redis_prefix)
    await profiles.put_many(
        [b.profile().model_copy(update={"user_id": pseudonymize(b.user_id, KEY)})
         for b in books[:60]]
    )  # fmt: skip
    catboost = RedisPersonaModelStore(redis, settings.redis_prefix)
    await catboost.publish(catboost_release(model), model.to_bytes())

    async def decide(http: httpx.AsyncClient, user: str) -> str:
        body = {"decision_point": DP, "context": {"user_id": user}}
        response = await http.post("/v1/decisions", json=body)
        assert response.status_code == 200, response.text
        return str(response.json()["persona"])

    async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await check():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("not reached in time")

    try:
        async with running_api(settings) as first, running_api(settings) as second:
            one, two = (
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
                for app in (first, second)
            )
            try:
                answers = [await decide(one, u) for u in users]
                assert sum(a == truth[u] for a, u in zip(answers, users, strict=True)) >= 54
                assert [await decide(two, u) for u in users] == answers

                # hot swap under traffic on both replicas: no failed request
                stop = asyncio.Event()
                seen: list[str] = []

                async def traffic(http: httpx.AsyncClient, k: int) -> None:
                    i = 0
                    while not stop.is_set():
                        seen.append(await decide(http, users[(k + i) % len(users)]))
                        i += 1

                runners = [asyncio.create_task(traffic(h, k)) for k, h in
                           enumerate([one, two] * 3)]  # fmt: skip
                for n in range(4):
                    renamed = _renamed(model, f"v{n}_")
                    await catboost.publish(catboost_release(renamed), renamed.to_bytes())
                    deadline = time.monotonic() + 15
                    while not any(p.startswith(f"v{n}_") for p in seen[-50:]):
                        assert time.monotonic() < deadline, f"v{n} was never served"
                        await asyncio.sleep(0.02)
                stop.set()
                await asyncio.gather(*runners)  # a failed decision would raise here
                assert {p.split("_", 1)[0] for p in seen if p.startswith("v")} == {
                    "v0",
                    "v1",
                    "v2",
                    "v3",
                }

                async def both_serve_v3() -> bool:
                    answers = [await decide(h, users[0]) for h in (one, two)]
                    return all(a.startswith("v3_") for a in answers)

                await eventually(both_serve_v3)

                # a label posted to one replica: served there at once, on the other soon
                posted = await one.post(f"/v1/users/{users[1]}/label", json={"persona": "vip"})
                assert posted.status_code == 200, posted.text
                assert await decide(one, users[1]) == "vip"

                async def labelled_on_two() -> bool:
                    return await decide(two, users[1]) == "vip"

                await eventually(labelled_on_two)

                # the online learner (one learn worker holds the lease) learns labels
                for user in users[2:12]:
                    await one.post(f"/v1/users/{user}/label", json={"persona": truth[user]})
                online = RedisPersonaModelStore(redis, online_prefix(settings))
                learner = PersonaLabelLearner(profiles, online, publish_every_labels=1)
                rival = RedisLease(redis, f"{settings.redis_prefix}persona-labels:lease")
                mine = RedisLease(redis, f"{settings.redis_prefix}persona-labels:lease")
                assert await mine.hold() and not await rival.hold() and await mine.hold()
                assert await learner.step() == 11
                release = await online.current()
                assert release is not None and release.kind == "river"
                assert release.metrics["labels_learned"] == 11.0

                # forgetting a user through one replica: both forget
                victim = users[20]
                deleted = await two.delete(f"/v1/users/{victim}")
                assert deleted.status_code == 200 and deleted.json()["deleted"] is True
                assert await decide(two, victim) == "newcomer"

                async def forgotten_on_one() -> bool:
                    return await decide(one, victim) == "newcomer"

                await eventually(forgotten_on_one)
            finally:
                await one.aclose()
                await two.aclose()
    finally:
        await redis.aclose()
