"""The persona-model store in Redis against a real redis-server: versions, history,
rollback, a notification per publish, and concurrent publishers each getting a version."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from learnloop.errors import Conflict, NotFound
from learnloop.persona_models import rollback
from learnloop.persona_models_redis import RedisPersonaModelStore
from schemas.personas import PersonaModelRelease

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def release(version: int = 0) -> PersonaModelRelease:
    return PersonaModelRelease(
        version=version, created_at=NOW, source="train", classes=["a", "b"], feature_names=["x"]
    )


@pytest.fixture
async def store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisPersonaModelStore]:
    client = aioredis.Redis.from_url(redis_url)
    yield RedisPersonaModelStore(client, prefix=redis_prefix)
    await client.aclose()


async def test_publish_history_rollback(store: RedisPersonaModelStore) -> None:
    assert await store.current() is None
    assert await store.history() == []
    first = await store.publish(release(), b"one")
    second = await store.publish(release(), b"two")
    assert (first.version, second.version) == (1, 2)
    assert await store.current() == second
    assert await store.load(first) == b"one"
    with pytest.raises(Conflict):
        await store.publish(release(version=2), b"stale")
    with pytest.raises(NotFound):
        await store.load(release(version=9))
    back = await rollback(store, NOW, to_version=1)
    assert (back.version, back.restores_version) == (3, 1)
    assert await store.load(back) == b"one"
    assert [h.release.version for h in await store.history()] == [3, 2, 1]
    assert [h.release.version for h in await store.history(limit=2)] == [3, 2]


async def test_each_publish_is_announced(store: RedisPersonaModelStore) -> None:
    heard: list[int] = []
    subscribed = asyncio.Event()

    async def listen() -> None:
        updates = store.watch()
        subscribed.set()
        async for version in updates:
            heard.append(version)
            if len(heard) == 2:
                return

    task = asyncio.create_task(listen())
    await subscribed.wait()
    await asyncio.sleep(0)  # the generator subscribes on its first step
    for _ in range(20):  # wait until the subscription is live (no real-time window)
        if (await store.redis.pubsub_numsub(store.channel))[0][1]:
            break
        await asyncio.sleep(0.05)
    await store.publish(release(), b"one")
    await store.publish(release(), b"two")
    await asyncio.wait_for(task, timeout=10)
    assert heard == [1, 2]


async def test_concurrent_publishers_take_distinct_versions(
    store: RedisPersonaModelStore, redis_url: str
) -> None:
    other = RedisPersonaModelStore(redis_url, prefix=store.prefix)
    try:
        results = await asyncio.gather(
            *(s.publish(release(), f"m{i}".encode()) for i, s in enumerate([store, other] * 4))
        )
    finally:
        await other.close()
    assert sorted(r.version for r in results) == list(range(1, 9))
    for r in results:
        assert await store.load(r) == f"m{results.index(r)}".encode()
