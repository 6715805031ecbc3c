"""KafkaEventSink and topic creation against the real tansu broker and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError

from learnloop.errors import ConfigurationError, InvalidInput, Unavailable
from learnloop.eventlog.base import Append, Streams
from learnloop.kafka import codec
from learnloop.kafka.connect import start_admin, start_producer
from learnloop.kafka.sink import KafkaEventSink
from learnloop.kafka.topics import TopicNames, ensure_topics, join_key
from learnloop.settings import Settings
from schemas.events import DecisionEvent, OutcomeEvent, RewardEvent
from schemas.features import Action, Context
from tests.integration.kafka_topics import read_topic

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def decision(
    event_id: str, session_id: str | None = "s1", model_version: str = "0"
) -> DecisionEvent:
    return DecisionEvent(
        event_id=event_id,
        timestamp=T0,
        traceparent=TRACE,
        decision_point="home",
        context=Context(session_id=session_id, features={"page": "home"}),
        persona="visitor",
        actions=[Action(id="a"), Action(id="b")],
        chosen_index=1,
        probabilities=[0.5, 0.5],
        model_version=model_version,
    )


def decision_append(event_id: str, model_version: str = "0") -> Append:
    """A decision as the decision service appends it (the key it passes is overruled)."""
    value = decision(event_id, model_version=model_version).model_dump_json().encode()
    return Append(Streams.DECISIONS, value, key=event_id, unique_key=event_id)


def outcome(outcome_id: str, event_id: str | None, session_id: str | None = None) -> OutcomeEvent:
    return OutcomeEvent(
        outcome_id=outcome_id,
        event_id=event_id,
        session_id=session_id,
        type="basket_add",
        timestamp=T0,
    )


@pytest.fixture
async def admin(kafka_settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    client = await start_admin(kafka_settings.kafka_bootstrap, 5.0)
    yield client
    await client.close()


@pytest.fixture
async def sink(
    kafka_settings: Settings, admin: AIOKafkaAdminClient
) -> AsyncIterator[KafkaEventSink]:
    names = TopicNames(kafka_settings.topic_prefix)
    await ensure_topics(admin, names, kafka_settings.kafka_partitions)
    event_sink = await KafkaEventSink.connect(kafka_settings)
    yield event_sink
    await event_sink.close()


async def test_append_is_acknowledged_with_keys_headers_and_offsets(
    sink: KafkaEventSink, kafka_settings: Settings
) -> None:
    events = [decision("e1", session_id="s1"), decision("e2", session_id=None)]
    results = await sink.append([codec.to_append(e) for e in events])
    assert [r.existed for r in results] == [False, False]

    topic = TopicNames(kafka_settings.topic_prefix).topic(Streams.DECISIONS)
    records = await read_topic(kafka_settings.kafka_bootstrap, topic)
    # Keyed by the join key: the session, else the event id.
    assert sorted((r[2], r[1]) for r in records) == sorted(
        [(b"s1", results[0].offset), (b"e2", results[1].offset)]
    )
    for _, _, key, value, headers in records:
        event = codec.decode_value(Streams.DECISIONS, value)
        assert join_key(event) == key.decode()  # type: ignore[arg-type, union-attr]
        assert headers[codec.TRACEPARENT] == TRACE.encode()
        assert headers[codec.CONTENT_TYPE] == codec.JSON_CONTENT


async def test_a_decision_and_its_follow_ups_land_in_the_same_partition_number(
    sink: KafkaEventSink, kafka_settings: Settings
) -> None:
    names = TopicNames(kafka_settings.topic_prefix)
    # Half the decisions have a session of their own, half have none.
    ids = [f"e{i}" for i in range(12)]
    decisions = [decision(i, session_id=f"s-{i}" if n % 2 else None) for n, i in enumerate(ids)]
    await sink.append([codec.to_append(d) for d in decisions])
    await sink.append([codec.to_append(outcome(f"o-{i}", i)) for i in ids])
    await sink.append([codec.to_append(outcome(f"os-{i}", None, f"s-{i}")) for i in ids[1::2]])
    await sink.append(
        [codec.to_append(RewardEvent(reward_id=f"r-{i}", event_id=i, value=1, timestamp=T0))
         for i in ids]
    )  # fmt: skip
    bootstrap = kafka_settings.kafka_bootstrap

    def by_decision(stream: str, records: list) -> dict[str, int]:
        placed: dict[str, int] = {}
        for partition, _, _, value, _ in records:
            event = codec.decode_value(stream, value)
            decision_id = event.event_id or event.session_id.removeprefix("s-")  # type: ignore[union-attr]
            placed[f"{decision_id}/{type(event).__name__}{event.event_id is None}"] = partition  # type: ignore[union-attr]
        return placed

    placed: dict[str, dict[str, int]] = {}
    for stream in (Streams.DECISIONS, Streams.OUTCOMES, Streams.REWARDS):
        records = await read_topic(bootstrap, names.topic(stream))
        for name, partition in by_decision(stream, records).items():
            placed.setdefault(name.split("/")[0], {})[name] = partition
    assert set(placed) == set(ids)
    for decision_id, where in placed.items():
        assert len(set(where.values())) == 1, (decision_id, where)
    assert len({next(iter(w.values())) for w in placed.values()}) > 1  # keys spread out


async def test_join_inputs_are_keyed_by_their_decisions_join_key(
    sink: KafkaEventSink, kafka_settings: Settings
) -> None:
    names = TopicNames(kafka_settings.topic_prefix)
    await sink.append([codec.to_append(decision("with-session", "s7"))])
    await sink.append([codec.to_append(decision("no-session", None))])
    await sink.append(
        [
            codec.to_append(outcome("o1", "with-session")),  # by event_id: the session's key
            codec.to_append(outcome("o2", None, "s8")),  # session only: its session
            codec.to_append(outcome("o3", "unknown-decision")),  # not indexed: its event_id
            # The caller's key does not matter for join inputs:
            Append(
                Streams.OUTCOMES, outcome("o4", "no-session").model_dump_json().encode(), key="x"
            ),
        ]
    )
    bootstrap = kafka_settings.kafka_bootstrap
    keys = {
        codec.unique_key(codec.decode_value(stream, value)): key.decode()  # type: ignore[union-attr, arg-type]
        for stream in (Streams.DECISIONS, Streams.OUTCOMES)
        for _, _, key, value, _ in await read_topic(bootstrap, names.topic(stream))
    }
    assert keys == {
        "with-session": "s7",
        "no-session": "no-session",
        "o1": "s7",
        "o2": "s8",
        "o3": "unknown-decision",
        "o4": "no-session",
    }
    assert await sink.decision_key("with-session") == "s7"
    assert await sink.decision_key("unknown-decision") is None


async def test_a_join_input_that_is_not_a_valid_event_is_refused_before_anything_is_appended(
    sink: KafkaEventSink, kafka_settings: Settings
) -> None:
    good = codec.to_append(decision("e1"))
    bad = Append(Streams.DECISIONS, b'{"v": 1}', key="e2", unique_key="e2")
    with pytest.raises(InvalidInput, match="not a valid DecisionEvent"):
        await sink.append([good, bad])
    assert await sink.find(Streams.DECISIONS, "e1") is None
    topic = TopicNames(kafka_settings.topic_prefix).topic(Streams.DECISIONS)
    assert await read_topic(kafka_settings.kafka_bootstrap, topic) == []


async def test_duplicate_unique_key_returns_the_stored_record_and_produces_nothing(
    sink: KafkaEventSink, kafka_settings: Settings
) -> None:
    first = decision_append("e1", model_version="1")
    again = decision_append("e1", model_version="2")
    [stored] = await sink.append([first])
    [repeated] = await sink.append([again])
    assert not stored.existed and repeated.existed
    assert (repeated.offset, repeated.value) == (stored.offset, first.value)
    found = await sink.find(Streams.DECISIONS, "e1")
    assert found is not None and (found.offset, found.key, found.value) == (
        stored.offset,
        "s1",  # the join key: the decision's session
        first.value,
    )
    assert await sink.find(Streams.DECISIONS, "unknown") is None
    assert await sink.find(Streams.OUTCOMES, "e1") is None  # unique keys are per stream
    topic = TopicNames(kafka_settings.topic_prefix).topic(Streams.DECISIONS)
    assert len(await read_topic(kafka_settings.kafka_bootstrap, topic)) == 1


async def test_concurrent_appends_of_one_unique_key_log_it_once(
    sink: KafkaEventSink, kafka_settings: Settings
) -> None:
    item = decision_append("e7")
    calls = [sink.append([item]) for _ in range(8)] + [sink.append([item, item])]
    results = [r for batch in await asyncio.gather(*calls) for r in batch]
    assert sum(not r.existed for r in results) == 1
    assert len({r.offset for r in results}) == 1
    topic = TopicNames(kafka_settings.topic_prefix).topic(Streams.DECISIONS)
    assert len(await read_topic(kafka_settings.kafka_bootstrap, topic)) == 1


async def test_codec_records_round_trip_through_kafka(
    kafka_settings: Settings, admin: AIOKafkaAdminClient
) -> None:
    names = TopicNames(kafka_settings.topic_prefix)
    await ensure_topics(admin, names, kafka_settings.kafka_partitions)
    event = outcome("o1", None, session_id="s1").model_copy(update={"traceparent": TRACE})
    record = codec.to_record(event, names)
    producer = await start_producer(kafka_settings.kafka_bootstrap, 5.0, acks="all")
    try:
        await producer.send_and_wait(
            record.topic, record.value, key=record.key, headers=list(record.headers)
        )
    finally:
        await producer.stop()
    [(_, _, key, value, headers)] = await read_topic(kafka_settings.kafka_bootstrap, record.topic)
    assert key == b"s1"  # session-only outcome: keyed by session
    assert codec.decode_value(Streams.OUTCOMES, value) == event
    assert codec.traceparent_of(headers.items()) == TRACE


def test_codec_refuses_records_of_a_newer_schema() -> None:
    data = orjson.loads(decision("e1").model_dump_json())
    data.update(schema_version=99, new_field=1)
    with pytest.raises(InvalidInput, match="schema_version 99, newer"):
        codec.decode_value(Streams.DECISIONS, orjson.dumps(data))
    with pytest.raises(InvalidInput, match="not a valid DecisionEvent"):
        codec.decode_value(Streams.DECISIONS, b'{"event_id": "e1"}')


class _FailingProducer:
    """Stands in for a producer whose broker refuses every record."""

    async def send(self, *args: object, **kwargs: object) -> asyncio.Future[object]:
        raise KafkaConnectionError("broker gone")


async def test_a_failed_produce_releases_the_claim_so_a_retry_appends(
    sink: KafkaEventSink, kafka_settings: Settings
) -> None:
    broken = KafkaEventSink(
        _FailingProducer(),  # type: ignore[arg-type]
        sink.redis,
        sink.names,
        redis_prefix=kafka_settings.redis_prefix,
    )
    item = decision_append("e9")
    with pytest.raises(Unavailable, match="did not acknowledge"):
        await broken.append([item])
    assert await sink.redis.get(sink.index_key(Streams.DECISIONS, "e9")) is None
    [result] = await sink.append([item])
    assert not result.existed


async def test_ensure_topics_is_idempotent_and_creates_every_stream(
    admin: AIOKafkaAdminClient, topic_prefix: str
) -> None:
    names = TopicNames(topic_prefix)
    created = await ensure_topics(admin, names, partitions=4)
    assert sorted(created) == sorted(names.all())
    assert await ensure_topics(admin, names, partitions=4) == []
    described = await admin.describe_topics(list(names.all()))
    assert {len(t["partitions"]) for t in described} == {4}


async def test_ensure_topics_refuses_join_inputs_that_are_not_copartitioned(
    admin: AIOKafkaAdminClient, topic_prefix: str
) -> None:
    names = TopicNames(topic_prefix)
    await admin.create_topics([NewTopic(names.topic(Streams.OUTCOMES), 2, 1)])
    with pytest.raises(ConfigurationError, match="not co-partitioned"):
        await ensure_topics(admin, names, partitions=3)


async def test_redis_prefix_isolates_index_entries(sink: KafkaEventSink, redis_url: str) -> None:
    reward = RewardEvent(reward_id="r1", event_id="e1", value=1, timestamp=T0)
    await sink.append([codec.to_append(reward)])
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = await client.keys(f"{sink.redis_prefix}*")
        assert keys == [sink.index_key(Streams.REWARDS, "r1").encode()]
        assert await client.ttl(keys[0]) > 3600
    finally:
        await client.aclose()


# Broker behaviour the distributed mode relies on, or works around (docs/distributed.md).
