"""RedisModelStore and RedisDecisionPointStore against a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from learnloop.decision_point_store_redis import RedisDecisionPointStore
from learnloop.errors import ConfigurationError, Conflict, InvalidInput, NotFound, Unavailable
from learnloop.modelstore.redis import RedisModelStore
from schemas.config import DecisionPointConfig
from schemas.events import ModelRelease
from schemas.features import Action
from tests.integration.servers import free_port

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def release(version: int, decision_point: str = "home") -> ModelRelease:
    return ModelRelease(
        event_id=f"{decision_point}-v{version}",
        timestamp=T0,
        decision_point=decision_point,
        version=version,
        vw_args="--cb_explore_adf",
        model_location="",
        examples_learned=version * 10,
        last_offset=version * 100,
        metrics={"reward_mean": 0.5},
    )


def model_bytes(version: int, size: int = 64) -> bytes:
    return version.to_bytes(4, "big") * (size // 4)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(redis_url)
    yield redis
    await redis.aclose()


@pytest.fixture
def models(client: aioredis.Redis, redis_prefix: str) -> RedisModelStore:
    return RedisModelStore(client, prefix=redis_prefix, keep=3)


# RedisModelStore ------------------------------------------------------------------------


async def test_nothing_published_yet(models: RedisModelStore) -> None:
    assert await models.current("home") is None


async def test_publish_current_load_roundtrip(models: RedisModelStore) -> None:
    stored = await models.publish(release(1), model_bytes(1))
    assert stored.model_location == f"redis:{models.model_key('home', 1)}"
    assert stored.model_copy(update={"model_location": ""}) == release(1)
    assert await models.current("home") == stored
    assert await models.load(stored) == model_bytes(1)


async def test_another_handle_sees_the_release(
    models: RedisModelStore, redis_url: str, redis_prefix: str
) -> None:
    await models.publish(release(1), model_bytes(1))
    await models.publish(release(2, "checkout_layout"), model_bytes(2))
    other = RedisModelStore(redis_url, prefix=redis_prefix)  # like an API replica
    try:
        home, checkout = await other.current("home"), await other.current("checkout_layout")
        assert home is not None and home.version == 1
        assert checkout is not None and await other.load(checkout) == model_bytes(2)
    finally:
        await other.close()


async def test_only_the_newest_versions_are_kept(
    models: RedisModelStore, client: aioredis.Redis
) -> None:
    for version in range(1, 8):
        await models.publish(release(version), model_bytes(version))
    current = await models.current("home")
    assert current is not None and current.version == 7
    assert await models.load(current) == model_bytes(7)
    assert sorted(await client.keys(models.model_key("home", "*"))) == [  # type: ignore[arg-type]
        models.model_key("home", v).encode() for v in (5, 6, 7)
    ]
    with pytest.raises(NotFound, match="newest 3"):
        await models.load(release(2))


async def test_a_release_that_is_not_newer_is_refused(models: RedisModelStore) -> None:
    await models.publish(release(5), model_bytes(5))
    for stale in (5, 4):
        with pytest.raises(Conflict, match="not newer"):
            await models.publish(release(stale), model_bytes(55))
    current = await models.current("home")
    assert current is not None and await models.load(current) == model_bytes(5)


async def test_keep_must_be_at_least_two(client: aioredis.Redis) -> None:
    with pytest.raises(InvalidInput, match="at least 2"):
        RedisModelStore(client, keep=1)


async def test_watch_announces_each_release_after_the_swap(
    models: RedisModelStore, client: aioredis.Redis
) -> None:
    seen: list[tuple[str, int]] = []
    manifests: list[int] = []

    async def follow() -> None:
        async for decision_point, version in models.watch():
            current = await models.current(decision_point)  # the swap happened before the note
            manifests.append(current.version if current else -1)
            seen.append((decision_point, version))
            if len(seen) == 3:
                return

    follower = asyncio.create_task(follow())
    deadline = time.monotonic() + 5
    while (await client.pubsub_numsub(models.channel))[0][1] < 1:
        assert time.monotonic() < deadline, "the watcher never subscribed"
        await asyncio.sleep(0.01)
    await models.publish(release(1), model_bytes(1))
    await models.publish(release(2), model_bytes(2))
    await models.publish(release(1, "checkout_layout"), model_bytes(1))
    await asyncio.wait_for(follower, 5)
    assert seen == [("home", 1), ("home", 2), ("checkout_layout", 1)]
    assert all(m >= v for m, (_, v) in zip(manifests, seen, strict=True))  # never behind
    assert (await client.pubsub_numsub(models.channel))[0][1] == 0  # unsubscribed on exit


async def test_a_reader_never_sees_a_manifest_without_its_model(
    models: RedisModelStore, redis_url: str, redis_prefix: str
) -> None:
    reader = RedisModelStore(redis_url, prefix=redis_prefix, keep=3)
    done = asyncio.Event()
    errors: list[str] = []

    async def poll() -> None:
        while not done.is_set():
            current = await reader.current("home")
            if current is not None:
                try:
                    data = await reader.load(current)
                except NotFound:
                    continue  # pruned between the two reads: read the manifest again
                if data != model_bytes(current.version, 4096):
                    errors.append(f"v{current.version}: wrong bytes")
            await asyncio.sleep(0)

    task = asyncio.create_task(poll())
    try:
        for version in range(1, 31):
            await models.publish(release(version), model_bytes(version, 4096))
    finally:
        done.set()
        await task
        await reader.close()
    assert not errors


async def test_unreachable_redis_gives_unavailable() -> None:
    store = RedisModelStore(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(Unavailable, match="manifest"):
            await store.current("home")
        with pytest.raises(Unavailable, match="publish"):
            await store.publish(release(1), b"x")
    finally:
        await store.close()


# RedisDecisionPointStore ---------------------------------------------------------------


def config(name: str, window: float = 20.0) -> DecisionPointConfig:
    return DecisionPointConfig(name=name, actions=[Action(id="a")], window_seconds=window)


@pytest.fixture
def decision_points(client: aioredis.Redis, redis_prefix: str) -> RedisDecisionPointStore:
    return RedisDecisionPointStore(client, prefix=redis_prefix)


async def test_put_get_and_replace(decision_points: RedisDecisionPointStore) -> None:
    assert await decision_points.get("home") is None
    await decision_points.put(config("home"))
    assert await decision_points.get("home") == config("home")
    await decision_points.put(config("home", window=5.0))
    assert await decision_points.get("home") == config("home", window=5.0)


async def test_all_lists_in_creation_order(decision_points: RedisDecisionPointStore) -> None:
    for name in ("zeta", "alpha", "mid"):
        await decision_points.put(config(name))
    await decision_points.put(config("alpha", window=3.0))  # a replace keeps its place
    assert [c.name for c in await decision_points.all()] == ["zeta", "alpha", "mid"]


async def test_seed_adds_only_missing_decision_points(
    decision_points: RedisDecisionPointStore,
) -> None:
    await decision_points.put(config("home", window=7.0))  # changed by an admin
    inserted = await decision_points.seed([config("home"), config("checkout_layout")])
    assert inserted == ["checkout_layout"]
    assert await decision_points.get("home") == config("home", window=7.0)
    assert await decision_points.seed([config("home"), config("checkout_layout")]) == []
    assert [c.name for c in await decision_points.all()] == ["home", "checkout_layout"]


async def test_a_corrupt_entry_is_reported_with_its_name(
    decision_points: RedisDecisionPointStore, client: aioredis.Redis
) -> None:
    await client.hset(decision_points.hash_key, "broken", b"{not json")
    with pytest.raises(ConfigurationError, match="'broken'"):
        await decision_points.get("broken")


async def test_decision_point_store_unreachable_gives_unavailable() -> None:
    store = RedisDecisionPointStore(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(Unavailable, match="decision points"):
            await store.all()
    finally:
        await store.close()
