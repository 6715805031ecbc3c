"""Flags in the distributed mode, against real redis-server and tansu.

- The flag-store behaviours of ``tests/unit/test_flag_store.py`` over the Redis store,
  plus its change notification.
- The feature team's scenario (``test_flags_scenario.py``) across two API replicas
  (``learnloop serve --backend kafka``, one process each) and a ``learnloop join``
  worker: every change is made through one replica and must be evaluated through the
  other within a second; the exposure's outcome becomes a joined example on the
  ``joined`` topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from learnloop.clock import FakeClock
from learnloop.eventlog.base import Streams
from learnloop.flag_store_redis import RedisFlagStore
from learnloop.kafka import codec
from learnloop.kafka.topics import TopicNames
from learnloop.settings import Settings
from runtime.processes import ServiceProcess, settings_env
from schemas.events import JoinedExample
from tests.integration.kafka_topics import read_topic
from tests.integration.test_flags_scenario import (
    ADMIN_KEY,
    Deployment,
    Joined,
    feature_team_scenario,
)
from tests.integration.test_kafka_join import start_worker
from tests.unit.test_flag_store import BEHAVIOURS, START, Check, layout

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis_store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisFlagStore]:
    client = aioredis.Redis.from_url(redis_url)
    store = RedisFlagStore(client, redis_prefix, clock=FakeClock(START))
    yield store
    await store.close()
    await client.aclose()


@pytest.mark.parametrize("check", BEHAVIOURS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_redis_store_behaviour(check: Check, redis_store: RedisFlagStore) -> None:
    assert isinstance(redis_store.clock, FakeClock)
    await check(redis_store, redis_store.clock)


async def test_redis_store_announces_each_change(redis_store: RedisFlagStore) -> None:
    seen: list[int] = []

    async def listen() -> None:
        async for counter in redis_store.watch():
            seen.append(counter)
            if len(seen) == 2:
                return

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0.2)  # subscribed (pub/sub delivers only to current subscribers)
    await redis_store.put("checkout_layout", layout(), "ana")
    await redis_store.set_enabled("checkout_layout", False, "oncall")
    await asyncio.wait_for(listener, 5)
    assert seen == [1, 2]
    assert await redis_store.version() == 2


async def test_concurrent_writers_keep_versions_and_history_whole(
    redis_url: str, redis_prefix: str
) -> None:
    """Two replicas changing one flag at once: every change gets its own version and
    history record (the script refuses a write planned from a stale version)."""
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    stores = [RedisFlagStore(c, redis_prefix) for c in clients]
    try:
        await stores[0].put("checkout_layout", layout(), "ana")
        await asyncio.gather(
            *(
                stores[i % 2].put("checkout_layout", layout(description=f"v{i}"), f"writer-{i}")
                for i in range(10)
            )
        )
        history = await stores[1].history("checkout_layout")
        assert sorted(c.version for c in history) == list(range(1, 12))
        stored = await stores[0].get("checkout_layout")
        assert stored is not None and stored.version == 11
        assert history[0].flag == stored
    finally:
        for client in clients:
            await client.aclose()


def kafka_joined(settings: Settings) -> Joined:
    topic = TopicNames(settings.topic_prefix).topic(Streams.JOINED)

    async def find(event_id: str) -> JoinedExample | None:
        for _, _, _, value, _ in await read_topic(settings.kafka_bootstrap, topic):
            example = codec.decode_value(Streams.JOINED, value)
            if isinstance(example, JoinedExample) and example.event_id == event_id:
                return example
        return None

    return find


async def test_a_feature_team_session_distributed(kafka_settings: Settings, tmp_path: Path) -> None:
    settings = kafka_settings.model_copy(
        update={"admin_api_key": ADMIN_KEY, "persona_refresh_seconds": 0.1}
    )
    env = settings_env(settings)
    replicas = [
        ServiceProcess(env=env, workers=1, log_file=tmp_path / f"api-{i}.log") for i in range(2)
    ]
    join = None
    try:
        for replica in replicas:
            replica.start()  # the first creates the topics
        join = start_worker(settings, tmp_path / "join.log")
        async with (
            httpx.AsyncClient(base_url=replicas[0].url, timeout=10) as first,
            httpx.AsyncClient(base_url=replicas[1].url, timeout=10) as second,
        ):
            deployment = Deployment(
                admin=first, readers=[second, first], joined=kafka_joined(settings)
            )
            await feature_team_scenario(deployment)
    finally:
        codes = [p.stop() for p in (*replicas, *([join] if join else []))]
    assert codes == [0] * len(codes), "\n\n".join(p.log_tail() for p in replicas)
