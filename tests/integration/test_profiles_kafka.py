"""The Kafka profile consumer against tansu and redis-server: profiles from the decisions and
outcomes topics, exactly once when a worker dies between checkpoints and another takes over."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer

from learnloop.clock import FakeClock
from learnloop.kafka import codec
from learnloop.kafka.connect import start_producer
from learnloop.kafka.topics import TopicNames, ensure_kafka_topics, join_key
from learnloop.profile_kafka_runner import CHECKPOINT_PREFIX, KafkaProfileRunner
from learnloop.profile_store_redis import RedisProfileStore
from learnloop.profiles import all_profiles
from learnloop.settings import Settings
from schemas import DecisionEvent, OutcomeEvent

pytestmark = pytest.mark.integration

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
USERS = 5


def events(first: int, last: int) -> list[DecisionEvent | OutcomeEvent]:
    """Decision n of ``u_{n % USERS}`` in session ``s{n % 12}``; a view for each, a
    basket add for every second."""
    out: list[DecisionEvent | OutcomeEvent] = []
    for n in range(first, last):
        at = T0 + timedelta(seconds=n)
        session = f"s{n % 12}"
        out.append(
            DecisionEvent(
                event_id=f"d{n}",
                timestamp=at,
                decision_point="home_products",
                persona="unclassified",
                context={"user_id": f"u_{n % USERS}", "session_id": session},
                actions=[{"id": "a"}],
                chosen_index=0,
                probabilities=[1.0],
                model_version="0",
            )
        )
        kinds = ["detail_view"] + (["basket_add"] if n % 2 == 0 else [])
        for kind in kinds:
            out.append(
                OutcomeEvent(
                    outcome_id=f"o{n}-{kind}",
                    event_id=f"d{n}",
                    type=kind,
                    value=1.5 if kind == "basket_add" else None,
                    timestamp=at + timedelta(seconds=1),
                )
            )
    return out


def expected(last: int) -> dict[str, tuple[int, int, int]]:
    views: Counter[str] = Counter()
    baskets: Counter[str] = Counter()
    sessions: dict[str, set[str]] = {}
    for n in range(last):
        user = f"u_{n % USERS}"
        views[user] += 1
        baskets[user] += n % 2 == 0
        sessions.setdefault(user, set()).add(f"s{n % 12}")
    return {u: (len(sessions[u]), views[u], baskets[u]) for u in views}


@pytest.fixture
async def producer(kafka_settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    await ensure_kafka_topics(kafka_settings)
    client = await start_producer(
        kafka_settings.kafka_bootstrap,
        5.0,
        acks="all",
        max_batch_size=kafka_settings.kafka_max_batch_bytes,
    )
    yield client
    await client.stop()


async def produce(
    producer: AIOKafkaProducer, settings: Settings, items: list[DecisionEvent | OutcomeEvent]
) -> None:
    """As the API does: a follow-up goes to its decision's session partition."""
    names = TopicNames(settings.topic_prefix)
    sessions = {e.event_id: e.context.session_id for e in items if isinstance(e, DecisionEvent)}
    for event in items:
        record = codec.to_record(event, names)
        decision_key = (
            sessions.get(event.event_id)
            if isinstance(event, OutcomeEvent) and event.event_id
            else None
        )
        key = join_key(event, decision_key).encode()
        await (await producer.send(record.topic, record.value, key=key))


async def totals(store: RedisProfileStore) -> dict[str, tuple[int, int, int]]:
    return {
        p.user_id: (p.sessions, p.detail_views, p.basket_adds) async for p in all_profiles(store)
    }


async def step_until(
    runner: KafkaProfileRunner, store: RedisProfileStore, want: dict[str, tuple[int, int, int]]
) -> None:
    deadline = time.monotonic() + 60
    got: dict[str, tuple[int, int, int]] = {}
    while time.monotonic() < deadline:
        await runner.step()
        got = await totals(store)
        for user, fields in got.items():
            assert all(a <= b for a, b in zip(fields, want[user], strict=True)), (user, got)
        if got == want:
            return
    raise AssertionError(f"profiles never caught up: {got} != {want}")


async def test_a_worker_dying_between_checkpoints_counts_nothing_twice(
    kafka_settings: Settings, producer: AIOKafkaProducer
) -> None:
    store = RedisProfileStore(kafka_settings.redis_url, kafka_settings.redis_prefix)
    clock = FakeClock(T0)
    await produce(producer, kafka_settings, events(0, 60))

    first = KafkaProfileRunner(kafka_settings, store, clock=clock, checkpoint_seconds=5)
    await first.start()
    await step_until(first, store, expected(60))
    clock.advance(10)
    await first.step()  # a checkpoint of every owned partition
    assert first.owned == [0, 1, 2]
    checkpoints = [await store.load_checkpoint(f"{CHECKPOINT_PREFIX}{p}") for p in range(3)]
    assert all(c is not None for c in checkpoints)

    await produce(producer, kafka_settings, events(60, 100))
    await step_until(first, store, expected(100))  # applied, but no checkpoint covers it
    assert first.consumer is not None
    await first.consumer.stop()  # dies: no final checkpoint

    second = KafkaProfileRunner(kafka_settings, store, clock=clock, checkpoint_seconds=5)
    await second.start()
    await produce(producer, kafka_settings, events(100, 120))
    await step_until(second, store, expected(120))
    for _ in range(10):  # the replay of 60..100 is all in: nothing moves any more
        await second.step()
    assert await totals(store) == expected(120)
    assert second.applied == 20 + 10  # it re-read 60..100 but applied only 100..120
    await second.stop()
    await store.close()
