"""The Kafka learner worker against tansu and redis-server: every joined example is learned
exactly once across restarts, rebalances and ``kill -9``, and every release is announced."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from learnloop.decision_point_store_redis import RedisDecisionPointStore
from learnloop.decision_points import load_config_file
from learnloop.eventlog.base import Streams
from learnloop.kafka import codec
from learnloop.kafka.connect import start_producer
from learnloop.kafka.topics import TopicNames, ensure_kafka_topics
from learnloop.modelstore.redis import RedisModelStore
from learnloop.settings import Settings
from online_learner.kafka_runner import KafkaLearnerRunner
from runtime.processes import LearnloopProcess, settings_env
from schemas import Action, Context, DecisionEvent, JoinedExample
from schemas.events import ModelRelease
from tests.integration.kafka_topics import read_topic

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOME, PRODUCT = "home_products", "product_page"  # partitions 2 and 0 of 3
ACTIONS = [Action(id="a"), Action(id="b"), Action(id="c")]
VW_ARGS = "--cb_explore_adf --epsilon 0.1"
CONFIG = "".join(
    f'[[decision_points]]\nname = "{name}"\nvw_args = "{VW_ARGS}"\n'
    + "".join(f'[[decision_points.actions]]\nid = "{a.id}"\n' for a in ACTIONS)
    for name in (HOME, PRODUCT)
)
FAST_GROUP = {"session_timeout_ms": 1000, "heartbeat_interval_ms": 200}
T = TypeVar("T")


def joined(decision_point: str, n: int) -> JoinedExample:
    decision = DecisionEvent(
        event_id=f"{decision_point}-e{n}",
        timestamp=T0,
        decision_point=decision_point,
        context=Context(session_id=f"s{n % 7}", features={"x": f"v{n % 3}"}),
        persona="visitor",
        actions=ACTIONS,
        chosen_index=n % 3,
        probabilities=[1 / 3] * 3,
        model_version="0",
    )
    return JoinedExample(
        event_id=decision.event_id,
        timestamp=T0,
        decision=decision,
        reward=float(n % 3 == 1),
        close_reason="outcome" if n % 3 == 1 else "default",
    )


@pytest.fixture
def settings(kafka_settings: Settings, tmp_path: Path) -> Settings:
    config = tmp_path / "decision_points.toml"
    config.write_text(CONFIG)
    return kafka_settings.model_copy(
        update={"config": config, "release_every_examples": 25, "release_every_seconds": 0.2}
    )


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    await ensure_kafka_topics(settings)
    client = await start_producer(
        settings.kafka_bootstrap, 5.0, acks="all", max_batch_size=settings.kafka_max_batch_bytes
    )
    yield client
    await client.stop()


@pytest.fixture
async def models(settings: Settings) -> AsyncIterator[RedisModelStore]:
    store = RedisModelStore(settings.redis_url, settings.redis_prefix)
    yield store
    await store.close()


async def produce(
    producer: AIOKafkaProducer, settings: Settings, examples: list[JoinedExample]
) -> dict[str, int]:
    """Send in order (one decision point's examples keep their order); last offset per point."""
    names = TopicNames(settings.topic_prefix)
    last: dict[str, int] = {}
    for example in examples:
        record = codec.to_record(example, names)
        metadata = await (
            await producer.send(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )
        )
        last[example.decision.decision_point] = metadata.offset
    return last


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 30.0
) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await probe()
        if found is not None:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def released_through(
    models: RedisModelStore, decision_point: str, last_offset: int
) -> Callable[[], Awaitable[ModelRelease | None]]:
    """A probe: the current release once it holds everything up to ``last_offset``."""

    async def probe() -> ModelRelease | None:
        release = await models.current(decision_point)
        return release if release is not None and release.last_offset >= last_offset else None

    return probe


async def read_releases(settings: Settings) -> list[ModelRelease]:
    """Every release event on the releases topic, in offset order per partition."""
    topic = TopicNames(settings.topic_prefix).topic(Streams.RELEASES)
    out = []
    for _, _, key, value, _ in await read_topic(settings.kafka_bootstrap, topic):
        release = codec.decode_value(Streams.RELEASES, value)
        assert isinstance(release, ModelRelease)
        assert key == release.decision_point.encode()
        out.append(release)
    return out


@contextlib.asynccontextmanager
async def learner_worker(settings: Settings) -> AsyncIterator[KafkaLearnerRunner]:
    """A learner worker running as a task in this process; stopped (cleanly) on exit."""
    decision_points = RedisDecisionPointStore(settings.redis_url, settings.redis_prefix)
    models = RedisModelStore(settings.redis_url, settings.redis_prefix)
    await decision_points.seed(load_config_file(settings.config))
    runner = KafkaLearnerRunner(settings, models, decision_points, **FAST_GROUP)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(until=stop))
    try:
        yield runner
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await models.close()
        await decision_points.close()


def test_the_two_decision_points_live_in_different_partitions() -> None:
    partition = DefaultPartitioner()
    assert partition(HOME.encode(), [0, 1, 2], []) != partition(PRODUCT.encode(), [0, 1, 2], [])


async def test_worker_learns_once_publishes_and_resumes_from_its_releases(
    settings: Settings, producer: AIOKafkaProducer, models: RedisModelStore
) -> None:
    first = [joined(HOME, n) for n in range(30)] + [joined(PRODUCT, n) for n in range(20)]
    last = await produce(producer, settings, first)
    async with learner_worker(settings):
        home = await eventually(released_through(models, HOME, last[HOME]), "first home release")
        product = await eventually(
            released_through(models, PRODUCT, last[PRODUCT]), "first product release"
        )
    assert (home.examples_learned, product.examples_learned) == (30, 20)
    assert home.last_offset == last[HOME] and product.last_offset == last[PRODUCT]
    assert home.vw_args == VW_ARGS and await models.load(home)

    events = await read_releases(settings)
    for release in (home, product):
        announced = [e for e in events if e.decision_point == release.decision_point]
        assert [e.version for e in announced] == list(range(1, release.version + 1))
        assert announced[-1] == release  # the stored manifest, model location included

    # More examples, among them one written twice (same event_id, later offset).
    more = [joined(HOME, n) for n in range(30, 38)] + [joined(HOME, 3)]
    more += [joined(HOME, n) for n in range(38, 45)] + [joined(PRODUCT, n) for n in range(20, 30)]
    last = await produce(producer, settings, more)
    async with learner_worker(settings):  # a new instance in the same group
        home2 = await eventually(released_through(models, HOME, last[HOME]), "home resumed")
        product2 = await eventually(
            released_through(models, PRODUCT, last[PRODUCT]), "product resumed"
        )
    assert (home2.examples_learned, product2.examples_learned) == (45, 30)
    assert home2.metrics["examples_total"] == 45
    assert home2.metrics["duplicates_skipped"] >= 1  # the duplicate (and the replay)
    assert home2.version > home.version and product2.version > product.version
    assert [e.version for e in await read_releases(settings) if e.decision_point == HOME] == list(
        range(1, home2.version + 1)
    )


async def test_partitions_handed_between_workers_learn_nothing_twice(
    settings: Settings, producer: AIOKafkaProducer, models: RedisModelStore
) -> None:
    def batch(start: int, stop: int) -> list[JoinedExample]:
        return [joined(name, n) for n in range(start, stop) for name in (HOME, PRODUCT)]

    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(learner_worker(settings))
        last = await produce(producer, settings, batch(0, 40))
        await eventually(released_through(models, HOME, last[HOME]), "home learned")
        await eventually(released_through(models, PRODUCT, last[PRODUCT]), "product learned")
        async with learner_worker(settings) as second:  # the group rebalances over both

            async def split() -> bool | None:
                owned = [first.ledger.owned, second.ledger.owned]
                return True if all(owned) and sorted(owned[0] + owned[1]) == [0, 1, 2] else None

            await eventually(split, "the partitions split over the two workers")
            last = await produce(producer, settings, batch(40, 80))
            await eventually(released_through(models, HOME, last[HOME]), "home, two workers")
            await eventually(released_through(models, PRODUCT, last[PRODUCT]), "product, two")
            last = await produce(producer, settings, batch(80, 100))
        # The second worker left (its last examples maybe unpublished): the first takes over.

        async def all_back() -> bool | None:
            return True if first.ledger.owned == [0, 1, 2] else None

        await eventually(all_back, "every partition back with the first worker")
        last = await produce(producer, settings, batch(100, 120))
        home = await eventually(released_through(models, HOME, last[HOME]), "home, handed back")
        product = await eventually(released_through(models, PRODUCT, last[PRODUCT]), "product")
    assert (home.examples_learned, product.examples_learned) == (120, 120)


# -- kill -9 of a real `learnloop learn` process -----------------------------------------


def start_worker(settings: Settings, log_path: Path) -> LearnloopProcess:
    """``learnloop learn`` as its own process, releasing every 50 examples or 0.2 s."""
    worker = settings.model_copy(
        update={
            "release_every_examples": 50,
            "kafka_session_timeout_ms": FAST_GROUP["session_timeout_ms"],
            "kafka_heartbeat_interval_ms": FAST_GROUP["heartbeat_interval_ms"],
        }
    )
    return LearnloopProcess("learn", env=settings_env(worker), log_file=log_path).start()


async def test_kill_9_mid_stream_then_restart_learns_each_example_exactly_once(
    settings: Settings, producer: AIOKafkaProducer, models: RedisModelStore, tmp_path: Path
) -> None:
    produced: list[JoinedExample] = []
    last: dict[str, int] = {}
    stop_feeding = asyncio.Event()

    async def feed() -> None:
        """About 1,000 examples/s until told to stop; each 50th home example is written a
        second time later on (like a producer retry)."""
        n = 0
        while not stop_feeding.is_set():
            chunk: list[JoinedExample] = []
            for _ in range(20):
                chunk += [joined(HOME, n), joined(PRODUCT, n)]
                if n % 50 == 49:
                    chunk.append(joined(HOME, n - 20))
                n += 1
            last.update(await produce(producer, settings, chunk))
            produced.extend(chunk)
            await asyncio.sleep(0.02)

    log_path = tmp_path / "learner.log"
    feeding = asyncio.create_task(feed())
    worker = start_worker(settings, log_path)
    try:

        async def learned_some() -> ModelRelease | None:
            assert worker.running, worker.log_tail()
            release = await models.current(HOME)
            return release if release is not None and release.examples_learned >= 100 else None

        await eventually(learned_some, "a first release of 100+ examples", timeout=30)
        worker.kill()  # mid-stream: the feed goes on
        await asyncio.sleep(1.0)
        worker = start_worker(settings, log_path)
        await asyncio.sleep(1.0)
        stop_feeding.set()
        await feeding
        home = await eventually(released_through(models, HOME, last[HOME]), "home", timeout=40)
        product = await eventually(released_through(models, PRODUCT, last[PRODUCT]), "product")
    finally:
        feeding.cancel()
        code = worker.stop()
    distinct = {
        name: len({e.event_id for e in produced if e.decision.decision_point == name})
        for name in (HOME, PRODUCT)
    }
    assert len(produced) > distinct[HOME] + distinct[PRODUCT]  # duplicates were written
    assert (home.examples_learned, product.examples_learned) == (distinct[HOME], distinct[PRODUCT])
    assert code == 0, worker.log_tail()
