"""The join worker's output: joined examples exactly once across crashes, dropped events
at least once.

A decision's joined example is only ever emitted by the worker that owns the
decision's partition, so the worker appends without claims
(:meth:`~learnloop.kafka.sink.KafkaEventSink.append_owned`): examples already in
the unique-key index are skipped, the others produced, acknowledged and then
indexed. The one gap is a crash between the acknowledgement and the index
write: the example is in Kafka, the index does not know it, and the replay after
the restart would emit it again. To close it, every checkpoint stores the
joined topic's end offsets (its *watermark*: whatever this partition emits later
lies beyond), and a restored partition first re-reads the joined topic from
there (:meth:`JoinedOutput.recover`), indexing its own examples it finds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from join_service.partition_join import JoinOutput
from learnloop.errors import Unavailable
from learnloop.eventlog.base import Append, AppendResult, Streams
from learnloop.kafka.codec import to_append
from learnloop.kafka.sink import KafkaEventSink
from learnloop.kafka.topics import TopicNames, join_key, partition_of
from schemas import JoinedExample

log = logging.getLogger(__name__)


class JoinedOutput:
    """Ships a partition's output and recovers what a crashed predecessor shipped.

    Parameters
    ----------
    sink
        Appends to Kafka with the Redis unique-key index.
    reader
        A started consumer without a group, used to read the joined topic.
    names
        Topic names.
    input_partitions
        Partition count of the join inputs (to tell which examples a partition owns).
    """

    def __init__(
        self,
        sink: KafkaEventSink,
        reader: AIOKafkaConsumer,
        names: TopicNames,
        input_partitions: int,
        read_timeout_seconds: float = 30.0,
    ) -> None:
        self.sink = sink
        self.reader = reader
        self.names = names
        self.input_partitions = input_partitions
        self.read_timeout_seconds = read_timeout_seconds
        self.topic = names.topic(Streams.JOINED)

    async def ship(self, output: JoinOutput) -> list[AppendResult]:
        """Append joined examples (skipping those already emitted) and dropped events;
        return once Kafka acknowledged them. Results are for the joined examples."""
        joined = [to_append(example) for example in output.joined]
        dropped = [
            Append(Streams.DROPPED, d.model_dump_json().encode(), key=d.reason)
            for d in output.dropped
        ]
        results = await self.sink.append_owned(joined + dropped)
        return results[: len(joined)]

    async def watermark(self) -> dict[int, int]:
        """The joined topic's end offset per partition: output emitted from now on lies
        at or beyond it."""
        partitions = await self._partitions()
        ends = await self.reader.end_offsets(partitions)
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    async def recover(self, partition: int, since: Mapping[int, int]) -> int:
        """Index the joined examples of input ``partition`` found in the joined topic from
        ``since`` to its end; return how many were found."""
        partitions = await self._partitions()
        self.reader.assign(partitions)
        for tp in partitions:
            self.reader.seek(tp, since.get(tp.partition, 0))
        ends = await self.reader.end_offsets(partitions)
        found = 0
        deadline = asyncio.get_running_loop().time() + self.read_timeout_seconds
        while not await self._at_end(partitions, ends):
            if asyncio.get_running_loop().time() > deadline:
                raise Unavailable(
                    f"could not read {self.topic} to its end within {self.read_timeout_seconds} s "
                    "to recover the join's output: is the broker healthy?"
                )
            batches = await self.reader.getmany(timeout_ms=200)
            for tp, records in batches.items():
                for record in records:
                    found += await self._recover_one(partition, tp.partition, record)
        self.reader.assign([])
        if found:
            log.info(
                "join partition %d: %d joined examples found after its checkpoint", partition, found
            )
        return found

    async def _recover_one(self, partition: int, joined_partition: int, record: object) -> int:
        value: bytes = record.value  # type: ignore[attr-defined]
        try:
            example = JoinedExample.model_validate_json(value)
        except ValidationError:
            log.warning("unreadable joined example at %s[%d]", self.topic, joined_partition)
            return 0
        if partition_of(join_key(example.decision), self.input_partitions) != partition:
            return 0  # another partition's: its owner recovers it
        key: bytes | None = record.key  # type: ignore[attr-defined]
        await self.sink.remember(
            Streams.JOINED,
            example.event_id,
            partition=joined_partition,
            offset=record.offset,  # type: ignore[attr-defined]
            key=key.decode() if key is not None else None,
            value=value,
        )
        return 1

    async def _at_end(
        self, partitions: list[TopicPartition], ends: dict[TopicPartition, int]
    ) -> bool:
        for tp in partitions:
            # The fetch high watermark as well: tansu's ListOffsets may say too little.
            end = max(ends[tp], self.reader.highwater(tp) or 0)
            if await self.reader.position(tp) < end:
                return False
        return True

    async def _partitions(self) -> list[TopicPartition]:
        numbers = self.reader.partitions_for_topic(self.topic)
        if not numbers:
            await self.reader.topics()  # refresh metadata
            numbers = self.reader.partitions_for_topic(self.topic)
        if not numbers:
            raise Unavailable(f"topic {self.topic} does not exist: run ensure_topics first")
        return [TopicPartition(self.topic, p) for p in sorted(numbers)]
