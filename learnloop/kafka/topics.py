"""Kafka topics of the distributed mode: their names, the partition keys, and their creation.

Every stream of the event log (:class:`~learnloop.eventlog.base.Streams`) is one
topic, ``{topic_prefix}{stream}`` (``learnloop.decisions`` by default).

The routing rule — what each record is keyed by, so that a decision and
everything that belongs to it meet in the same join partition:

==========================  ==========================  ================================
topic                       key                         why
==========================  ==========================  ================================
decisions                   decision ``event_id``       the join's unit is one decision
outcomes (with event_id)    decision ``event_id``       lands next to its decision
outcomes (session only)     ``session_id``              repartitioned by the join
rewards, activations        decision ``event_id``       lands next to its decision
joined                      ``decision_point``          one learner owns one model
releases                    ``decision_point``          latest release per decision point
==========================  ==========================  ================================

The four join inputs must have the same number of partitions and use Kafka's
default partitioner (murmur2 of the key), so the same key maps to the same
partition number in each: they are *co-partitioned*. :func:`ensure_topics`
refuses to go on when they are not.

Session-only outcomes cannot know their decisions' partitions, so the join
repartitions by session (proposal, ``docs/distributed.md``): a router stage,
co-partitioned with the inputs, learns each decision's session and forwards every
event to the internal topic ``join.by-session`` keyed by :func:`by_session_key`;
the join core then sees a session's decisions and all their follow-ups together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from learnloop.errors import ConfigurationError, InvalidInput, Unavailable
from learnloop.eventlog.base import Streams
from schemas.events import (
    ActivationEvent,
    DecisionEvent,
    JoinedExample,
    ModelRelease,
    OutcomeEvent,
    RewardEvent,
)

logger = logging.getLogger(__name__)

STREAMS: Final = (
    Streams.DECISIONS,
    Streams.OUTCOMES,
    Streams.REWARDS,
    Streams.ACTIVATIONS,
    Streams.JOINED,
    Streams.RELEASES,
)
# The join's repartition topic (proposal, docs/distributed.md): every join input,
# re-keyed by the session of its decision.
BY_SESSION: Final = "join.by-session"
JOIN_INTERNAL: Final = (BY_SESSION,)

_TOPIC_EXISTS: Final = 36  # Kafka error code TOPIC_ALREADY_EXISTS

Event = DecisionEvent | OutcomeEvent | RewardEvent | ActivationEvent | JoinedExample | ModelRelease


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Topic names under one prefix (``Settings.topic_prefix``; tests use a uuid prefix).

    >>> TopicNames("learnloop.").topic("decisions")
    'learnloop.decisions'
    >>> TopicNames("learnloop.").stream_of("learnloop.join.by-session")
    'join.by-session'
    """

    prefix: str = "learnloop."

    def topic(self, stream: str) -> str:
        """The topic of an event-log stream (or of a ``join.*`` internal stream)."""
        if stream not in STREAMS and stream not in JOIN_INTERNAL:
            raise InvalidInput(
                f"unknown stream {stream!r}: expected one of {', '.join(STREAMS + JOIN_INTERNAL)}"
            )
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

    def all(self, include_join_internal: bool = True) -> tuple[str, ...]:
        streams = STREAMS + (JOIN_INTERNAL if include_join_internal else ())
        return tuple(self.topic(s) for s in streams)


def partition_key(event: Event) -> str:
    """The Kafka key of an event: the routing rule of the module docstring.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> partition_key(OutcomeEvent(outcome_id="o1", session_id="s9", type="view", timestamp=t))
    's9'
    """
    if isinstance(event, DecisionEvent | RewardEvent | ActivationEvent):
        return event.event_id
    if isinstance(event, OutcomeEvent):
        key = event.event_id or event.session_id
        if key is None:
            raise InvalidInput(
                f"outcome {event.outcome_id} has neither event_id nor session_id: "
                "it cannot be attributed to a decision"
            )
        return key
    if isinstance(event, JoinedExample):
        return event.decision.decision_point
    return event.decision_point


def by_session_key(event: Event, decision_session: str | None = None) -> str:
    """The key of a join input in ``join.by-session``: its decision's session when known,
    else the decision's ``event_id``.

    ``decision_session`` is what the router knows about the decision a follow-up
    names (``None``: no session, or the decision was not seen). Session-only
    outcomes keep their ``session_id``; decisions use their own context.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> by_session_key(RewardEvent(reward_id="r1", event_id="e1", value=1, timestamp=t), "s9")
    's9'
    >>> by_session_key(RewardEvent(reward_id="r1", event_id="e1", value=1, timestamp=t))
    'e1'
    """
    if isinstance(event, DecisionEvent):
        return event.context.session_id or event.event_id
    if isinstance(event, OutcomeEvent) and event.event_id is None:
        return partition_key(event)  # session-only: its session
    if isinstance(event, OutcomeEvent | RewardEvent | ActivationEvent):
        return decision_session or partition_key(event)
    raise InvalidInput(f"{type(event).__name__} is not a join input")


async def ensure_topics(
    admin: AIOKafkaAdminClient,
    names: TopicNames,
    partitions: int,
    replication: int = 1,
    *,
    include_join_internal: bool = True,
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
    wanted = names.all(include_join_internal)
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


async def _create_from_settings() -> None:
    from learnloop.kafka.connect import start_admin
    from learnloop.settings import Settings

    settings = Settings()
    admin = await start_admin(settings.kafka_bootstrap, settings.connect_timeout_seconds)
    try:
        created = await ensure_topics(
            admin,
            TopicNames(settings.topic_prefix),
            settings.kafka_partitions,
            settings.kafka_replication,
        )
    finally:
        await admin.close()
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
