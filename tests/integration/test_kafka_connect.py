"""Starting Kafka and Redis clients against real servers: bounded, clear failures when
they are unreachable, the Redis pool under a burst, and the tansu quirks we pin."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from learnloop.errors import Unavailable
from learnloop.kafka.connect import connect_redis, start_consumer, start_producer
from learnloop.kafka.sink import KafkaEventSink
from learnloop.settings import Settings
from tests.integration.servers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: the bounded time-out case."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.mark.parametrize("silent", [False, True], ids=["refused", "silent"])
async def test_unreachable_kafka_gives_unavailable_quickly(
    silent: bool, request: pytest.FixtureRequest
) -> None:
    port = request.getfixturevalue("silent_port") if silent else free_port()
    started = time.monotonic()
    with pytest.raises(Unavailable, match="LEARNLOOP_KAFKA_BOOTSTRAP") as error:
        await start_producer(f"127.0.0.1:{port}", timeout_seconds=0.5)
    assert time.monotonic() - started < 3
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in str(error.value)
    with pytest.raises(Unavailable, match="LEARNLOOP_KAFKA_BOOTSTRAP"):
        await KafkaEventSink.connect(
            Settings(kafka_bootstrap=f"127.0.0.1:{port}", connect_timeout_seconds=0.5)
        )


@pytest.mark.parametrize("silent", [False, True], ids=["refused", "silent"])
async def test_unreachable_redis_gives_unavailable_quickly(
    silent: bool, request: pytest.FixtureRequest
) -> None:
    port = request.getfixturevalue("silent_port") if silent else free_port()
    started = time.monotonic()
    with pytest.raises(Unavailable, match="LEARNLOOP_REDIS_URL") as error:
        await connect_redis(f"redis://:secret@127.0.0.1:{port}/0", timeout_seconds=0.5)
    assert time.monotonic() - started < 3
    assert "secret" not in str(error.value)


async def test_sink_without_redis_stops_its_producer_and_says_why(
    kafka_settings: Settings,
) -> None:
    settings = kafka_settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "connect_timeout_seconds": 0.5}
    )
    with pytest.raises(Unavailable, match="cannot reach Redis"):
        await KafkaEventSink.connect(settings)


async def test_tansu_refuses_the_idempotent_producer_with_a_clear_message(
    kafka_bootstrap: str,
) -> None:
    """Pins a broker quirk (docs/distributed.md): if tansu learns InitProducerId v0, this
    fails, and LEARNLOOP_KAFKA_IDEMPOTENCE can stay on in the tests."""
    with pytest.raises(Unavailable, match="LEARNLOOP_KAFKA_IDEMPOTENCE=false"):
        await start_producer(kafka_bootstrap, 5.0, acks="all", enable_idempotence=True)


async def test_tansu_consumer_group_commits_and_resumes(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic, group = f"{topic_prefix}group", f"{topic_prefix}workers"
    producer = await start_producer(kafka_bootstrap, 5.0, acks="all")
    try:
        for i in range(6):
            await producer.send_and_wait(topic, b"%d" % i, key=b"k%d" % i)
    finally:
        await producer.stop()
    fast_join = {"session_timeout_ms": 1000, "heartbeat_interval_ms": 200}  # joins in ~1 s

    async def consume(limit: int, commit: bool) -> list[bytes]:
        consumer: AIOKafkaConsumer = await start_consumer(
            kafka_bootstrap,
            topic,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **fast_join,
        )
        got: list[bytes] = []
        try:
            deadline = time.monotonic() + 10
            while len(got) < limit and time.monotonic() < deadline:
                for messages in (await consumer.getmany(timeout_ms=200)).values():
                    got += [m.value for m in messages]
            if commit:
                await consumer.commit()
        finally:
            await consumer.stop()
        return got

    first = await consume(6, commit=True)
    assert sorted(first) == [b"%d" % i for i in range(6)]
    producer = await start_producer(kafka_bootstrap, 5.0, acks="all")
    try:
        await producer.send_and_wait(topic, b"late", key=b"k0")
    finally:
        await producer.stop()
    assert await consume(1, commit=False) == [b"late"]


async def test_tansu_miscounts_end_offsets_of_multi_record_batches(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Pins the quirk behind ``TANSU_MAX_BATCH_BYTES``: ListOffsets(latest) answers the last
    batch's base offset + 1, not the offset after its last record."""
    topic = f"{topic_prefix}batches"
    tp = TopicPartition(topic, 0)

    async def end_after_one_batch_of_five(max_batch_size: int) -> int:
        producer = await start_producer(kafka_bootstrap, 5.0, max_batch_size=max_batch_size)
        try:
            deliveries = [await producer.send(topic, b"x", partition=0) for _ in range(5)]
            await asyncio.gather(*deliveries)
        finally:
            await producer.stop()
        consumer = await start_consumer(kafka_bootstrap, timeout_seconds=5.0)
        try:
            return (await consumer.end_offsets([tp]))[tp]
        finally:
            await consumer.stop()

    assert await end_after_one_batch_of_five(max_batch_size=16) == 5  # five one-record batches
    assert await end_after_one_batch_of_five(max_batch_size=16384) == 6  # truly 10


async def test_a_burst_beyond_the_redis_pool_waits_for_connections_instead_of_failing(
    redis_url: str,
) -> None:
    # redis-py refuses the 101st concurrent command of its default pool ("Too many
    # connections"); the API under a burst of requests must queue instead.
    client = await connect_redis(redis_url, timeout_seconds=5.0, max_connections=4)
    try:
        replies = await asyncio.gather(*(client.blpop([f"absent-{i}"], 0.05) for i in range(40)))
        assert replies == [None] * 40
        assert client.connection_pool.max_connections == 4
    finally:
        await client.aclose()
