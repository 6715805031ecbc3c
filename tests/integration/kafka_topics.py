"""Read a Kafka topic from its beginning to its end (tests' view of what was produced)."""

from __future__ import annotations

import time

from aiokafka import TopicPartition

from learnloop.kafka.connect import start_consumer


async def read_topic(
    bootstrap: str, topic: str
) -> list[tuple[int, int, bytes | None, bytes, dict]]:
    """Every record of ``topic`` as (partition, offset, key, value, headers), read to the end."""
    consumer = await start_consumer(bootstrap, timeout_seconds=5.0, enable_auto_commit=False)
    try:
        await consumer.topics()  # fetches fresh metadata
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert tps, f"topic {topic} does not exist"
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out = []
        deadline = time.monotonic() + 10
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, f"could not read {topic} to its end {ends}"
            for tp, messages in (await consumer.getmany(timeout_ms=200)).items():
                out += [(tp.partition, m.offset, m.key, m.value, dict(m.headers)) for m in messages]
        return sorted(out)
    finally:
        await consumer.stop()
