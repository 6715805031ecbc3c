"""The decision service's event sink in distributed mode: Kafka for the records, Redis for
the unique-key index that makes retried requests idempotent.

Protocol of one append with a ``unique_key`` (the decision service relies on it:
the same ``event_id`` must give back the same decision):

1. *claim* — ``SET {prefix}unique:{stream}:{unique_key} <pending> NX PX <claim ttl>``.
   If the key exists, this record was appended before (or is being appended right
   now by another request): wait until that append is confirmed and return the
   stored value with ``existed=True``; nothing is produced.
2. *produce* — send to the stream's topic (acks=all) and await the broker's
   acknowledgement. On failure the claim is deleted (a retry may append again)
   and :class:`~learnloop.errors.Unavailable` is raised.
3. *confirm* — overwrite the claim with the Kafka offset and value, kept for
   ``unique_ttl_seconds``. If Redis fails here, the record is already durable in
   Kafka, so the append succeeds; the pending claim expires by itself after the
   claim ttl, after which a retry would log the record a second time (the join
   drops duplicate decisions by ``event_id``).

The claim has its own short ttl so that a process dying between 1 and 3 never
blocks a key for longer than that.

*Routing.* Before anything is claimed, every join input is re-keyed by its
decision's join key (:func:`~learnloop.kafka.topics.join_key`): a decision by its
session (else its ``event_id``); an outcome, reward or activation naming a decision
by the key that decision was appended with, read from the decision's index entry
(one Redis GET; a decision still being appended counts, its claim carries the
key); a follow-up whose decision is unknown keeps that decision's ``event_id``.
So the caller's ``Append.key`` does not matter for these four streams, and every
producer of the decision service follows the rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata
from redis.exceptions import RedisError

from learnloop.errors import Unavailable
from learnloop.eventlog.base import Append, AppendResult, LogRecord, Streams
from learnloop.kafka.codec import headers_for_value
from learnloop.kafka.connect import connect_redis, start_producer_for
from learnloop.kafka.topics import TopicNames, join_key
from learnloop.settings import Settings
from learnloop.streams import decode_join_input
from schemas.events import DecisionEvent

logger = logging.getLogger(__name__)

_PENDING = -1
_WAIT_STEP_SECONDS = 0.005


@dataclass(frozen=True, slots=True)
class _IndexEntry:
    """What the unique-key index holds: a JSON header line, then the record value."""

    offset: int  # _PENDING while the record is being produced
    partition: int
    key: str | None
    value: bytes

    def encode(self) -> bytes:
        head = {"offset": self.offset, "partition": self.partition, "key": self.key}
        return orjson.dumps(head) + b"\n" + self.value

    @classmethod
    def decode(cls, raw: bytes) -> _IndexEntry:
        head, _, value = raw.partition(b"\n")
        meta = orjson.loads(head)
        return cls(int(meta["offset"]), int(meta["partition"]), meta["key"], value)


class KafkaEventSink:
    """An :class:`~learnloop.eventlog.base.EventSink` on Kafka (records) and Redis (index).

    ``append`` returns once the broker has acknowledged every record (acks=all);
    concurrent callers share producer batches through ``linger_ms``.
    :attr:`AppendResult.offset` is the record's offset *within its partition*
    (Kafka has no global offset, unlike the embedded log).

    Parameters
    ----------
    producer
        A started producer, configured with ``acks="all"`` (and idempotence where the
        broker supports it); :meth:`connect` builds one from settings.
    redis
        The Redis client holding the unique-key index.
    names
        Where each stream's records go.
    redis_prefix
        Prefix of the index keys.
    unique_ttl_seconds
        How long an appended record stays findable by its unique key.
    claim_ttl_seconds
        How long a claim may stay unconfirmed; longer than the producer's delivery
        time-out, so a slow but successful append is never claimed twice.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        redis: aioredis.Redis,
        names: TopicNames,
        *,
        redis_prefix: str = "learnloop:",
        unique_ttl_seconds: int = 7 * 24 * 3600,
        claim_ttl_seconds: float = 60.0,
    ) -> None:
        self.producer = producer
        self.redis = redis
        self.names = names
        self.redis_prefix = redis_prefix
        self.unique_ttl_seconds = unique_ttl_seconds
        self.claim_ttl_seconds = claim_ttl_seconds
        self._closed = False

    @classmethod
    async def connect(cls, settings: Settings, **options: Any) -> KafkaEventSink:
        """Start a producer and a Redis client from settings (bounded time-outs)."""
        producer = await start_producer_for(settings)
        try:
            redis = await connect_redis(
                settings.redis_url, settings.connect_timeout_seconds, settings.redis_max_connections
            )
        except BaseException:
            await producer.stop()
            raise
        return cls(
            producer,
            redis,
            TopicNames(settings.topic_prefix),
            redis_prefix=settings.redis_prefix,
            unique_ttl_seconds=settings.unique_key_ttl_seconds,
            **options,
        )

    def index_key(self, stream: str, unique_key: str) -> str:
        """The Redis key under which ``unique_key`` of ``stream`` is remembered."""
        return f"{self.redis_prefix}unique:{stream}:{unique_key}"

    async def append(self, records: Sequence[Append]) -> list[AppendResult]:
        """Produce ``records`` and return once every one is acknowledged, in input order.

        A record whose unique key was appended before is not produced again: its
        result carries the stored value and ``existed=True``. Join inputs are keyed
        by the routing rule whatever ``Append.key`` says. Raises
        :class:`~learnloop.errors.InvalidInput` (nothing appended) when a join input
        is not a valid event, :class:`~learnloop.errors.Unavailable` when Kafka or
        Redis fails; records of the same call that did succeed stay appended (a
        retry finds them).
        """
        if self._closed:
            raise Unavailable("the Kafka event sink is closed: the service is shutting down")
        routed = await asyncio.gather(*(self._route(item) for item in records))
        return list(await asyncio.gather(*(self._append_one(item) for item in routed)))

    async def append_owned(self, records: Sequence[Append]) -> list[AppendResult]:
        """Append records whose unique keys only this caller writes, without claims.

        For a single writer per key, such as the join worker (a decision's joined
        example is emitted only by the owner of the decision's partition): keys
        already recorded are skipped (``existed=True``), the others are produced,
        acknowledged, then recorded. Without a claim, a writer that crashed never
        makes its successor wait; a crash between produce and record leaves a
        record the index does not know, which the successor finds by its own means
        (the join worker re-reads its output since its checkpoint) and passes to
        :meth:`remember`.
        """
        if self._closed:
            raise Unavailable("the Kafka event sink is closed: the service is shutting down")
        routed = await asyncio.gather(*(self._route(item) for item in records))
        keyed = [n for n, item in enumerate(routed) if item.unique_key is not None]
        index_keys = [self._index_key_of(routed[n]) for n in keyed]
        raws = await self._index(self.redis.mget(index_keys)) if keyed else []
        done: dict[int, AppendResult] = {}
        for n, raw in zip(keyed, raws, strict=True):
            entry = _IndexEntry.decode(raw) if raw is not None else None
            if entry is not None and entry.offset != _PENDING:  # a claim is overwritten
                done[n] = AppendResult(entry.offset, entry.value, existed=True)
        new = [n for n in range(len(routed)) if n not in done]
        produced = await asyncio.gather(
            *(self._produce(self.names.topic(routed[n].stream), routed[n]) for n in new)
        )
        async with self.redis.pipeline(transaction=False) as pipe:
            for n, metadata in zip(new, produced, strict=True):
                item = routed[n]
                done[n] = AppendResult(metadata.offset, item.value, existed=False)
                if item.unique_key is not None:
                    entry = _IndexEntry(metadata.offset, metadata.partition, item.key, item.value)
                    pipe.set(self._index_key_of(item), entry.encode(), ex=self.unique_ttl_seconds)
            await self._index(pipe.execute())
        return [done[n] for n in range(len(routed))]

    def _index_key_of(self, item: Append) -> str:
        assert item.unique_key is not None
        return self.index_key(item.stream, item.unique_key)

    async def remember(
        self,
        stream: str,
        unique_key: str,
        *,
        partition: int,
        offset: int,
        key: str | None,
        value: bytes,
    ) -> None:
        """Record that ``unique_key`` is at ``partition``/``offset`` of ``stream``'s topic
        (replacing any claim): for records found in Kafka but not in the index."""
        entry = _IndexEntry(offset, partition, key, value)
        await self._index(
            self.redis.set(
                self.index_key(stream, unique_key), entry.encode(), ex=self.unique_ttl_seconds
            )
        )

    async def _route(self, item: Append) -> Append:
        """``item`` keyed by its decision's join key when it is a join input."""
        if item.stream not in Streams.JOIN_INPUTS:
            return item
        event = decode_join_input(item.stream, item.value)
        decision_key = None
        if not isinstance(event, DecisionEvent) and event.event_id is not None:
            decision_key = await self.decision_key(event.event_id)
        key = join_key(event, decision_key)
        return item if key == item.key else replace(item, key=key)

    async def decision_key(self, event_id: str) -> str | None:
        """The key decision ``event_id`` was appended with (also while its append is still
        in flight); ``None`` when the index does not know the decision."""
        raw = await self._index(self.redis.get(self.index_key(Streams.DECISIONS, event_id)))
        return None if raw is None else _IndexEntry.decode(raw).key

    async def _append_one(self, item: Append) -> AppendResult:
        topic = self.names.topic(item.stream)
        if item.unique_key is None:
            metadata = await self._produce(topic, item)
            return AppendResult(metadata.offset, item.value, existed=False)
        key = self.index_key(item.stream, item.unique_key)
        claim = _IndexEntry(_PENDING, -1, item.key, item.value).encode()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.claim_ttl_seconds
        while True:
            claim_ms = int(self.claim_ttl_seconds * 1000)
            if await self._index(self.redis.set(key, claim, nx=True, px=claim_ms)):
                return await self._produce_claimed(topic, key, item)
            raw = await self._index(self.redis.get(key))
            if raw is None:
                continue  # the other writer failed and released its claim: claim it ourselves
            entry = _IndexEntry.decode(raw)
            if entry.offset != _PENDING:
                return AppendResult(entry.offset, entry.value, existed=True)
            if loop.time() > deadline:
                raise Unavailable(
                    f"record {item.unique_key} on {item.stream} is still being appended by "
                    f"another request after {self.claim_ttl_seconds:g} s: retry later"
                )
            await asyncio.sleep(_WAIT_STEP_SECONDS)

    async def _produce_claimed(self, topic: str, key: str, item: Append) -> AppendResult:
        try:
            metadata = await self._produce(topic, item)
        except BaseException:
            # Not written (or unknown, when cancelled): release the claim so a retry can append.
            with contextlib.suppress(RedisError, OSError):
                await self.redis.delete(key)
            raise
        entry = _IndexEntry(metadata.offset, metadata.partition, item.key, item.value)
        try:
            await self.redis.set(key, entry.encode(), ex=self.unique_ttl_seconds)
        except (RedisError, OSError) as exc:
            logger.warning(
                "record %s is in Kafka (%s[%d]@%d) but its index entry was not confirmed (%s); "
                "it stays pending for %g s",
                item.unique_key,
                topic,
                metadata.partition,
                metadata.offset,
                exc,
                self.claim_ttl_seconds,
            )
        return AppendResult(metadata.offset, item.value, existed=False)

    async def _produce(self, topic: str, item: Append) -> RecordMetadata:
        """Send one record and wait for the broker's acknowledgement."""
        try:
            delivery = await self.producer.send(
                topic,
                item.value,
                key=item.key.encode() if item.key is not None else None,
                headers=list(headers_for_value(item.value)),
            )
            return await delivery
        except KafkaError as exc:
            raise Unavailable(
                f"Kafka did not acknowledge the record on {topic}: {exc!r}; "
                "is the broker running and the topic created?"
            ) from exc

    async def _index(self, command: Any) -> Any:
        """Run one index command, turning Redis failures into Unavailable."""
        try:
            return await command
        except (RedisError, OSError) as exc:
            raise Unavailable(
                f"the unique-key index in Redis cannot be reached ({exc}): nothing was appended"
            ) from exc

    async def find(self, stream: str, unique_key: str) -> LogRecord | None:
        """The record appended under ``unique_key``; ``None`` if unknown or not yet confirmed."""
        raw = await self._index(self.redis.get(self.index_key(stream, unique_key)))
        if raw is None:
            return None
        entry = _IndexEntry.decode(raw)
        if entry.offset == _PENDING:
            return None
        return LogRecord(entry.offset, stream, entry.key, entry.value)

    async def close(self) -> None:
        """Flush what is still buffered, then stop the producer and the Redis client."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.producer.flush()
        finally:
            await self.producer.stop()
            await self.redis.aclose()
