"""Kafka topics of the distributed mode: their names, the partition keys, and their creation.

Every stream of the event log (:class:`~learnloop.eventlog.base.Streams`) is one
topic, ``{topic_prefix}{stream}`` (``learnloop.decisions`` by default).

The routing rule — what each record is keyed by, so that a decision and
everything attributed to it meet in one join partition *without a repartition hop*.
Every join input is keyed by its decision's **join key**: the decision's
``context.session_id`` if it has one, else its ``event_id``.

===============================  =================================  ============================
topic                            key                                why
===============================  =================================  ============================
decisions                        join key (session, else event_id)  a session's decisions meet
outcomes, rewards, activations   join key of the named decision     next to their decision
  with a decision ``event_id``   (looked up; else that event_id)
outcomes with only a session     ``session_id``                     next to the session's decisions
joined                           ``decision_point``                 one learner owns one model
releases                         ``decision_point``                 latest release per point
dropped                          drop reason                        audit only
===============================  =================================  ============================

The follow-ups that name a decision cannot compute its join key themselves: the
decision service looks the decision up in the unique-key index it keeps anyway
(:class:`~learnloop.kafka.sink.KafkaEventSink` does this on every append). A
decision the index does not know (a client posting an outcome for its own
``event_id`` before its decision request completed) falls back to the
``event_id``; when that decision has a session the follow-up lands elsewhere, is
held as clock skew and then reported as orphaned (``docs/distributed.md``).

The four join inputs must have the same number of partitions and use Kafka's
default partitioner (murmur2 of the key), so the same key maps to the same
partition number in each: they are *co-partitioned*. :func:`ensure_topics`
refuses to go on when they are not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from learnloop.errors import ConfigurationError, InvalidInput, Unavailable
from learnloop.eventlog.base import Streams
from learnloop.settings import Settings
from schemas.events import (
    DecisionEvent,
    Event,
    JoinedExample,
    JoinInput,
    ModelRelease,
    OutcomeEvent,
)

logger = logging.getLogger(__name__)

STREAMS: Final = (
    Streams.DECISIONS,
    Streams.OUTCOMES,
    Streams.REWARDS,
    Streams.ACTIVATIONS,
    Streams.JOINED,
    Streams.RELEASES,
    Streams.DROPPED,
)

_TOPIC_EXISTS: Final = 36  # Kafka error code TOPIC_ALREADY_EXISTS


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Topic names under one prefix (``Settings.topic_prefix``; tests use a uuid prefix).

    >>> TopicNames("learnloop.").topic("decisions")
    'learnloop.decisions'
    >>> TopicNames("learnloop.").stream_of("learnloop.outcomes")
    'outcomes'
    """

    prefix: str = "learnloop."

    def topic(self, stream: str) -> str:
        """The topic of an event-log stream."""
        if stream not in STREAMS:
            raise InvalidInput(f"unknown stream {stream!r}: expected one of {', '.join(STREAMS)}")
        return self.prefix + stream

    def stream_of(self, topic: str) -> str:
        """The stream a topic carries (inverse of :meth:`topic`)."""
        stream = topic.removeprefix(self.prefix)
        if stream == topic and self.prefix:
            raise InvalidInput(f"topic {topic!r} does not start with prefix {self.prefix!r}")
        self.topic(stream)  # validates
        return stream

    @property
    def join_inputs(self) -> tuple[str, ...]:
        """The co-partitioned topics the join consumes."""
        return tuple(self.topic(s) for s in Streams.JOIN_INPUTS)

    def all(self) -> tuple[str, ...]:
        """Every topic of the distributed mode."""
        return tuple(self.topic(s) for s in STREAMS)


def join_key(event: JoinInput, decision_key: str | None = None) -> str:
    """The key that brings a join input to its decision's partition.

    ``decision_key`` is the join key of the decision a follow-up names, as the
    caller looked it up (``None``: unknown, fall back to the decision's ``event_id``).

    >>> from datetime import UTC, datetime
    >>> from schemas.events import RewardEvent
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> join_key(OutcomeEvent(outcome_id="o1", session_id="s9", type="view", timestamp=t))
    's9'
    >>> join_key(RewardEvent(reward_id="r1", event_id="e1", value=1, timestamp=t), "s9")
    's9'
    >>> join_key(RewardEvent(reward_id="r1", event_id="e1", value=1, timestamp=t))
    'e1'
    """
    if isinstance(event, DecisionEvent):
        return event.context.session_id or event.event_id
    if isinstance(event, OutcomeEvent) and event.event_id is None:
        if event.session_id is None:
            raise InvalidInput(
                f"outcome {event.outcome_id} has neither event_id nor session_id: "
                "it cannot be attributed to a decision"
            )
        return event.session_id
    assert event.event_id is not None  # an outcome with a decision, a reward, an activation
    return decision_key or event.event_id


def partition_key(event: Event) -> str:
    """The Kafka key of an event without looking anything up (the module's routing rule).

    Follow-ups that name a decision get that decision's ``event_id`` here;
    :class:`~learnloop.kafka.sink.KafkaEventSink` replaces it with the decision's
    join key from its index.
    """
    if isinstance(event, JoinedExample):
        return event.decision.decision_point
    if isinstance(event, ModelRelease):
        return event.decision_point
    return join_key(event)


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2, as in aiokafka,
    faust and the Java client): equal keys meet in equal partition numbers.

    >>> partition_of("s1", 1)
    0
    """
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


async def ensure_topics(
    admin: AIOKafkaAdminClient,
    names: TopicNames,
    partitions: int,
    replication: int = 1,
    *,
    timeout_seconds: float = 30.0,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    Idempotent: safe to run from every service at start-up and from a one-shot
    job at once (a concurrent creator's "already exists" is not an error). Then
    checks that the join inputs are co-partitioned, because a decision and its
    outcomes would otherwise land on different join workers without any error.
    """
    if partitions < 1 or replication < 1:
        raise ConfigurationError(
            f"partitions={partitions}, replication={replication}: both must be at least 1"
        )
    wanted = names.all()
    try:
        existing = set(await asyncio.wait_for(admin.list_topics(), timeout_seconds))
        missing = [t for t in wanted if t not in existing]
        created: list[str] = []
        if missing:
            response = await asyncio.wait_for(
                admin.create_topics(
                    [NewTopic(t, partitions, replication) for t in missing],
                    timeout_ms=int(timeout_seconds * 1000),
                ),
                timeout_seconds,
            )
            for error in response.topic_errors:
                topic, code = error[0], error[1]
                if code == 0:
                    created.append(topic)
                elif code != _TOPIC_EXISTS:
                    message = error[2] if len(error) > 2 else ""
                    raise ConfigurationError(
                        f"cannot create topic {topic} ({partitions} partitions, replication "
                        f"{replication}): Kafka error {code} {message or ''}".rstrip()
                    )
        counts = await _partition_counts(admin, names.join_inputs, timeout_seconds)
    except (TimeoutError, OSError, KafkaError) as exc:
        raise Unavailable(
            f"Kafka did not complete the topic set-up within {timeout_seconds} s: {exc!r}"
        ) from exc
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{t}={n}" for t, n in sorted(counts.items()))
        raise ConfigurationError(
            f"the join inputs are not co-partitioned ({listing}): give them the same number "
            "of partitions, or a decision and its outcomes reach different join workers"
        )
    if created:
        logger.info("created %d topics with %d partitions: %s", len(created), partitions, created)
    return created


async def _partition_counts(
    admin: AIOKafkaAdminClient, topics: Sequence[str], timeout_seconds: float
) -> dict[str, int]:
    described = await asyncio.wait_for(admin.describe_topics(list(topics)), timeout_seconds)
    return {item["topic"]: len(item["partitions"]) for item in described}


async def ensure_kafka_topics(settings: Settings) -> list[str]:
    """Create the topics of ``settings.topic_prefix`` that are missing (idempotent;
    checks co-partitioning); the names created."""
    from learnloop.kafka.connect import start_admin

    admin = await start_admin(settings.kafka_bootstrap, settings.connect_timeout_seconds)
    try:
        return await ensure_topics(
            admin,
            TopicNames(settings.topic_prefix),
            settings.kafka_partitions,
            settings.kafka_replication,
        )
    finally:
        await admin.close()


async def _create_from_settings() -> None:
    settings = Settings()
    created = await ensure_kafka_topics(settings)
    print(f"topics under {settings.topic_prefix!r}: created {len(created)} {created}")


if __name__ == "__main__":  # the one-shot topic job of docker-compose.yml
    import sys

    from learnloop.errors import LearnloopError

    logging.basicConfig(level=logging.INFO)
    try:
        asyncio.run(_create_from_settings())
    except LearnloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
