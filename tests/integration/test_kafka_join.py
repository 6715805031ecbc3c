"""The Kafka join worker against real tansu and Redis: parity with the embedded join, and
exactly-once joined examples across a kill -9.

Both tests feed the recorded stream of :mod:`tests.integration.join_traffic`
through :class:`~learnloop.kafka.sink.KafkaEventSink` (so records are keyed by
the routing rule) into topics with two partitions, and compare the joined
examples with what the embedded runner makes of the same stream.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from join_service.embedded_runner import EmbeddedJoinRunner
from join_service.kafka_checkpoint import RedisCheckpoints
from join_service.kafka_partitions import JoinTuning
from join_service.partition_join import PartitionCheckpoint
from learnloop.clock import FakeClock
from learnloop.decision_point_store_redis import RedisDecisionPointStore
from learnloop.decision_points import MemoryDecisionPointStore
from learnloop.eventlog import MemoryEventLog, Streams
from learnloop.kafka import codec
from learnloop.kafka.connect import start_admin, start_consumer
from learnloop.kafka.sink import KafkaEventSink
from learnloop.kafka.topics import TopicNames, ensure_topics
from learnloop.settings import Settings
from runtime.distributed import run_join_worker
from runtime.processes import LearnloopProcess, settings_env
from schemas import JoinedExample
from tests.integration.join_traffic import (
    CONFIGS,
    T0,
    JoinInput,
    Signature,
    recorded_stream,
    signature,
)

pytestmark = pytest.mark.integration

PARTITIONS = 2
FAST = JoinTuning(
    checkpoint_seconds=0.2,
    tick_seconds=0.05,
    max_wait_seconds=2.0,
    session_timeout_ms=1000,
    heartbeat_interval_ms=200,
)


async def embedded_expectation(events: Sequence[JoinInput]) -> dict[str, Signature]:
    """The joined examples of the embedded runner (fake clock: no idle advance)."""
    log = MemoryEventLog()
    await log.append([codec.to_append(e) for e in events])
    runner = EmbeddedJoinRunner(log, MemoryDecisionPointStore(list(CONFIGS)), clock=FakeClock(T0))
    await runner.start()
    while await runner.step():
        pass
    records = await log.read([Streams.JOINED], -1, 100_000)
    return signature([JoinedExample.model_validate_json(r.value) for r in records])


@pytest.fixture
def settings(kafka_settings: Settings, tmp_path: Path) -> Settings:
    return kafka_settings.model_copy(
        update={"kafka_partitions": PARTITIONS, "data_dir": tmp_path / "data"}
    )


@pytest.fixture
async def sink(settings: Settings) -> AsyncIterator[KafkaEventSink]:
    admin = await start_admin(settings.kafka_bootstrap, 5.0)
    try:
        await ensure_topics(admin, TopicNames(settings.topic_prefix), PARTITIONS)
    finally:
        await admin.close()
    event_sink = await KafkaEventSink.connect(settings)
    store = RedisDecisionPointStore(event_sink.redis, settings.redis_prefix)
    for config in CONFIGS:
        await store.put(config)
    yield event_sink
    await event_sink.close()


async def produce(sink: KafkaEventSink, events: Sequence[JoinInput]) -> None:
    """Append one event at a time, as the decision service would (each awaited)."""
    for event in events:
        await sink.append([codec.to_append(event)])


async def read_joined(
    settings: Settings, expected: int, timeout: float, settle: float = 1.0
) -> list[JoinedExample]:
    """The joined topic once it holds ``expected`` records (and ``settle`` s more, in which
    a duplicate would show up)."""
    topic = TopicNames(settings.topic_prefix).topic(Streams.JOINED)
    consumer = await start_consumer(settings.kafka_bootstrap, timeout_seconds=5.0)
    out: list[JoinedExample] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        settled: float | None = None
        while time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                out += [JoinedExample.model_validate_json(m.value) for m in messages]
            if len(out) >= expected and settled is None:
                settled = time.monotonic() + settle
            if settled is not None and time.monotonic() > settled:
                break
    finally:
        await consumer.stop()
    return out


def assert_exactly_once(examples: list[JoinedExample]) -> None:
    twice = [event_id for event_id, n in Counter(e.event_id for e in examples).items() if n > 1]
    assert twice == [], f"joined more than once: {twice[:10]}"


def compare(expected: dict[str, Signature], got: dict[str, Signature]) -> None:
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    differ = {
        k: (expected[k], got[k]) for k in expected.keys() & got.keys() if expected[k] != got[k]
    }
    assert (missing, extra, differ) == ([], [], {})


async def test_kafka_join_gives_the_embedded_joined_examples(
    settings: Settings, sink: KafkaEventSink
) -> None:
    events = recorded_stream()
    expected = await embedded_expectation(events)
    assert len(expected) > 250
    assert {reason for _, reason, _ in expected.values()} == {"outcome", "default", "direct"}

    await produce(sink, events)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_join_worker(settings, FAST, stop=stop))
    try:
        examples = await read_joined(settings, len(expected), timeout=40)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 20)
    assert_exactly_once(examples)
    compare(expected, signature(examples))


def start_worker(settings: Settings, log_path: Path) -> LearnloopProcess:
    """``learnloop join`` as its own process, with the test timings of ``FAST``."""
    fast = settings.model_copy(
        update={
            "join_worker_checkpoint_seconds": FAST.checkpoint_seconds,
            "join_worker_tick_seconds": FAST.tick_seconds,
            "join_worker_max_wait_seconds": FAST.max_wait_seconds,
            "kafka_session_timeout_ms": FAST.session_timeout_ms,
            "kafka_heartbeat_interval_ms": FAST.heartbeat_interval_ms,
        }
    )
    return LearnloopProcess("join", env=settings_env(fast), log_file=log_path).start()


async def wait_for_checkpoints(
    checkpoints: RedisCheckpoints, worker: LearnloopProcess
) -> list[PartitionCheckpoint]:
    """Every partition's first checkpoint (polled, while the worker runs)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [await checkpoints.load(p) for p in range(PARTITIONS)]
        if all(c is not None and sum(c.offsets.values()) for c in found):
            return [c for c in found if c is not None]
        assert worker.running, f"the worker died; its log:\n{worker.log_tail()}"
        await asyncio.sleep(0.02)
    raise AssertionError(f"no checkpoints within 30 s; worker log:\n{worker.log_tail()}")


async def committed_offsets(settings: Settings) -> dict[TopicPartition, int]:
    """The join group's committed offsets of the join inputs (-1 or absent: none)."""
    consumer = await start_consumer(
        settings.kafka_bootstrap,
        timeout_seconds=5.0,
        group_id=f"{settings.topic_prefix}join",
        enable_auto_commit=False,
    )
    try:
        out = {}
        for topic in TopicNames(settings.topic_prefix).join_inputs:
            for p in range(PARTITIONS):
                tp = TopicPartition(topic, p)
                offset = await consumer.committed(tp)
                if offset is not None and offset >= 0:
                    out[tp] = offset
        return out
    finally:
        await consumer.stop()


async def test_a_killed_worker_restarts_without_losing_or_repeating_anything(
    settings: Settings, sink: KafkaEventSink, tmp_path: Path
) -> None:
    events = recorded_stream(seed=23)
    expected = await embedded_expectation(events)
    ticks = [e for e in events if getattr(e, "type", None) == "tick"]
    body = events[: len(events) - len(ticks)]
    first, rest = body[: len(body) * 3 // 5], body[len(body) * 3 // 5 :]
    log_path = tmp_path / "join-worker.log"

    await produce(sink, first)
    worker = start_worker(settings, log_path)
    try:
        # Kill -9 as soon as every partition has a checkpoint: the worker is still reading
        # the backlog, with open windows, and output newer than its checkpoints.
        checkpoints = RedisCheckpoints(sink.redis, settings.redis_prefix, settings.topic_prefix)
        await wait_for_checkpoints(checkpoints, worker)
        worker.kill()
        # Commit order: offsets are committed only once a stored checkpoint covers them.
        names = TopicNames(settings.topic_prefix)
        stored = [await checkpoints.load(p) for p in range(PARTITIONS)]
        for tp, offset in (await committed_offsets(settings)).items():
            checkpoint = stored[tp.partition]
            assert (
                checkpoint is not None and offset <= checkpoint.offsets[names.stream_of(tp.topic)]
            )
        await produce(sink, rest + ticks)
        worker = start_worker(settings, log_path)
        examples = await read_joined(settings, len(expected), timeout=40)
    finally:
        code = worker.stop()
    assert code == 0, f"the worker did not stop cleanly ({code}); its log:\n{worker.log_tail()}"
    assert_exactly_once(examples)
    compare(expected, signature(examples))


async def wait_for_line(log_path: Path, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_path.exists() and text in log_path.read_text():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text!r} not in {log_path.name} within {timeout} s")


async def test_two_workers_share_the_partitions_and_the_survivor_takes_over(
    settings: Settings, sink: KafkaEventSink, tmp_path: Path
) -> None:
    events = recorded_stream(seed=37)
    expected = await embedded_expectation(events)
    ticks = [e for e in events if getattr(e, "type", None) == "tick"]
    body = events[: len(events) - len(ticks)]
    first, rest = body[: len(body) // 2], body[len(body) // 2 :]
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]

    workers = [start_worker(settings, log) for log in logs]
    try:
        # One partition each: the assignor keeps partition p of every input together.
        for log in logs:
            await wait_for_line(log, "restored at offsets")
        await produce(sink, first)
        checkpoints = RedisCheckpoints(sink.redis, settings.redis_prefix, settings.topic_prefix)
        await wait_for_checkpoints(checkpoints, workers[0])
        workers[0].kill()
        await produce(sink, rest + ticks)
        examples = await read_joined(settings, len(expected), timeout=40)
    finally:
        codes = [w.stop() for w in workers]
    assert codes[1] == 0, f"the survivor did not stop cleanly; its log:\n{workers[1].log_tail()}"
    restored = [
        re.findall(r"join partition (\d+) restored at offsets", log.read_text()) for log in logs
    ]
    # One partition each at first, then the survivor restores both.
    assert len(restored[0]) == 1 and restored[1][0] != restored[0][0], restored
    assert set(restored[1][1:]) == {"0", "1"}, restored
    assert_exactly_once(examples)
    compare(expected, signature(examples))
