"""Real-time profile updates in the distributed mode: a consumer group over the decisions and
outcomes topics, applying to the Redis profile store.

Both topics are keyed by the decision's session (else its ``event_id``), so a decision
and its outcomes share a partition *number*. The group uses Kafka's range assignor,
which gives partition ``p`` of both topics to the same member, and the runner keeps one
:class:`~learnloop.profile_updates.ProfileUpdater` per partition number.

Exactly once: the source of truth for positions is not Kafka's committed offsets but a
checkpoint per partition number in the profile store (``profiles.kafka.<p>``: the next
offset of each topic's partition ``p`` and the updater's snapshot). Interactions are
applied every batch with their ids; every ``checkpoint_seconds`` (and when partitions
are revoked or the worker stops) the checkpoint is written *in the same atomic Redis
script* as that batch's interactions. A new owner of ``p`` (after a crash or rebalance)
restores the updater, seeks both topics to the checkpoint and replays: the replayed
interactions carry the ids already applied and the store refuses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from typing import Final

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError

from learnloop.clock import Clock, SystemClock
from learnloop.errors import InvalidInput
from learnloop.kafka import codec
from learnloop.kafka.connect import start_consumer
from learnloop.kafka.topics import TopicNames
from learnloop.profile_updates import ProfileUpdater
from learnloop.profiles import ProfileStore
from learnloop.settings import Settings
from learnloop.streams import Streams
from schemas.profiles import Interaction

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX: Final = "profiles.kafka."
STREAMS: Final = (Streams.DECISIONS, Streams.OUTCOMES)


class _Partition:
    """The state of one owned partition number: its updater and the next offset per stream."""

    def __init__(self, updater: ProfileUpdater, positions: dict[str, int]) -> None:
        self.updater = updater
        self.positions = positions
        self.committed = dict(positions)

    def checkpoint(self) -> bytes:
        return json.dumps(
            {"positions": self.positions, "updater": self.updater.snapshot().decode()}
        ).encode()

    @classmethod
    def restore(cls, blob: bytes | None) -> _Partition:
        if blob is None:
            return cls(ProfileUpdater(), {})
        raw = json.loads(blob)
        return cls(ProfileUpdater.restore(raw["updater"].encode()), dict(raw["positions"]))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: KafkaProfileRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.runner.partitions_revoked()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.runner.partitions_assigned(sorted({tp.partition for tp in assigned}))


class KafkaProfileRunner:
    """Consumes decisions and outcomes in the ``{topic_prefix}profiles`` group.

    Parameters
    ----------
    settings
        Kafka address, topic prefix and time-outs.
    profiles
        The profile store (Redis in this mode); it also keeps the checkpoints.
    checkpoint_seconds
        How often each owned partition's checkpoint is written with a batch.
    """

    def __init__(
        self,
        settings: Settings,
        profiles: ProfileStore,
        *,
        clock: Clock | None = None,
        checkpoint_seconds: float = 1.0,
        batch_size: int = 2000,
        poll_timeout_ms: int = 200,
        group_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.profiles = profiles
        self.clock = clock or SystemClock()
        self.checkpoint_seconds = checkpoint_seconds
        self.batch_size = batch_size
        self.poll_timeout_ms = poll_timeout_ms
        self.names = TopicNames(settings.topic_prefix)
        self.group_id = group_id or f"{settings.topic_prefix}profiles"
        self.topics = {self.names.topic(s): s for s in STREAMS}
        self.consumer: AIOKafkaConsumer | None = None
        self.applied = 0
        self._owned: dict[int, _Partition] = {}
        self._generation = 0
        self._lock = asyncio.Lock()
        self._last_checkpoint = self.clock.monotonic()

    @property
    def owned(self) -> list[int]:
        return sorted(self._owned)

    async def start(self) -> None:
        s = self.settings
        self.consumer = await start_consumer(
            s.kafka_bootstrap,
            timeout_seconds=s.connect_timeout_seconds,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.batch_size,
            fetch_max_wait_ms=self.poll_timeout_ms,
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        self.consumer.subscribe(list(self.topics), listener=_Rebalance(self))
        log.info("profile updates joined group %s", self.group_id)

    async def run(self, until: asyncio.Event | None = None) -> None:
        """Consume until ``until`` is set or the task is cancelled; checkpoint and leave."""
        try:
            await self.start()
            while not (until is not None and until.is_set()):
                await self.step()
        finally:
            await self.stop()

    async def stop(self) -> None:
        timeout = self.settings.connect_timeout_seconds
        try:
            async with self._lock:
                await asyncio.wait_for(self._checkpoint_all(), timeout)
        except Exception as exc:  # the next owner replays from the last checkpoint
            log.warning("final profile checkpoint failed (%s)", exc)
        finally:
            if self.consumer is not None:
                with contextlib.suppress(KafkaError, TimeoutError):
                    await asyncio.wait_for(self.consumer.stop(), timeout)

    async def step(self) -> int:
        """Fetch one batch, apply it per partition; return the records consumed."""
        assert self.consumer is not None, "call start() first"
        generation = self._generation
        batches = await self.consumer.getmany(
            timeout_ms=self.poll_timeout_ms, max_records=self.batch_size
        )
        async with self._lock:
            if generation != self._generation:
                await self._seek_owned()  # a rebalance ran meanwhile: read again from the state
                return 0
            by_partition: dict[int, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
            for tp, records in batches.items():
                by_partition[tp.partition] += records
            now = self.clock.monotonic()
            due = now - self._last_checkpoint >= self.checkpoint_seconds
            count = 0
            for number, records in by_partition.items():
                state = self._owned.get(number)
                if state is None:
                    continue
                count += len(records)
                await self._apply(number, state, self._feed(state, records), due)
            if due:
                await self._checkpoint_all()
                self._last_checkpoint = now
            return count

    def _feed(
        self, state: _Partition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> list[Interaction]:
        # Decisions first: an outcome is sent after its decision was answered, so within
        # one fetch the decision of every outcome is known before the outcome is fed.
        ordered = sorted(records, key=lambda r: (self.topics[r.topic] != Streams.DECISIONS,))
        out: list[Interaction] = []
        for record in ordered:
            stream = self.topics[record.topic]
            if record.offset < state.positions.get(stream, 0):
                continue  # before the checkpoint: a stale fetch
            state.positions[stream] = record.offset + 1
            try:
                event = codec.decode_value(stream, record.value)
            except InvalidInput as exc:
                log.warning(
                    "skipping %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc
                )
                continue
            out += state.updater.on_event(event)
        return out

    async def _apply(
        self, number: int, state: _Partition, interactions: list[Interaction], checkpoint: bool
    ) -> None:
        """One atomic write: the interactions (each id once) and, when due, this partition's
        checkpoint (positions and updater snapshot after them)."""
        blob = (CHECKPOINT_PREFIX + str(number), state.checkpoint()) if checkpoint else None
        if not interactions and blob is None:
            return
        self.applied += await self.profiles.apply(interactions, blob)
        if checkpoint:
            state.committed = dict(state.positions)

    async def _checkpoint_all(self) -> None:
        for number, state in self._owned.items():
            if state.positions != state.committed:
                await self._apply(number, state, [], True)

    async def partitions_revoked(self) -> None:
        """Before a rebalance: checkpoint everything while it is still ours."""
        async with self._lock:
            self._generation += 1
            try:
                await self._checkpoint_all()
            finally:
                self._owned.clear()

    async def partitions_assigned(self, numbers: list[int]) -> None:
        """Restore each partition number's updater and seek both topics to its checkpoint."""
        async with self._lock:
            self._generation += 1
            for number in numbers:
                blob = await self.profiles.load_checkpoint(CHECKPOINT_PREFIX + str(number))
                self._owned[number] = _Partition.restore(blob)
            await self._seek_owned()
            log.info("profile updates own partitions %s", numbers)

    async def _seek_owned(self) -> None:
        assert self.consumer is not None
        assigned = self.consumer.assignment()
        for topic, stream in self.topics.items():
            for number, state in self._owned.items():
                tp = TopicPartition(topic, number)
                if tp not in assigned:
                    continue
                position = state.positions.get(stream)
                if position is None:
                    await self.consumer.seek_to_beginning(tp)
                else:
                    self.consumer.seek(tp, position)
