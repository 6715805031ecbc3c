"""The join of one partition number of the co-partitioned Kafka inputs, without the I/O.

Partition ``p`` of the decisions, outcomes, rewards and activations topics holds
every event of the decisions whose join key hashes to ``p`` (see
:mod:`learnloop.kafka.topics`), so one :class:`~join_service.window.Join` per
partition number applies the whole join rule. :class:`PartitionJoin` adds what a
Kafka runner needs around it, still as pure code:

- the :class:`~join_service.arrival_merge.ArrivalMerge` that hands the four
  inputs to the join in arrival order;
- the input offsets the join state reflects, so a checkpoint is the pair
  (snapshot, next offset per input) and a restore resumes exactly there;
- the idle advance of :func:`~join_service.stream_time.idle_stream_time` once the
  partition has caught up with the broker.

>>> part = PartitionJoin(0, max_wait_seconds=0.5, now=0.0)
>>> part.checkpoint().offsets
{'decisions': 0, 'outcomes': 0, 'rewards': 0, 'activations': 0}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from join_service.arrival_merge import ArrivalMerge, InputRecord
from join_service.join_state import DroppedEvent
from join_service.window import ConfigSource, Join, idle_stream_time
from learnloop.streams import Streams
from schemas import JoinedExample


@dataclass(frozen=True, slots=True)
class PartitionCheckpoint:
    """A partition's join state and the next input offset per stream it reflects.

    Stored atomically; a runner that restores it must re-read every stream from
    these offsets (records below them are already in the snapshot).
    ``output_offsets`` is the runner's own: where its output stood (see
    :mod:`join_service.joined_output`).
    """

    offsets: dict[str, int]
    snapshot: bytes
    output_offsets: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class JoinOutput:
    """What one step produced: joined examples, dropped events, records consumed per stream."""

    joined: list[JoinedExample] = field(default_factory=list)
    dropped: list[DroppedEvent] = field(default_factory=list)
    consumed: Counter[str] = field(default_factory=Counter)

    def __bool__(self) -> bool:
        return bool(self.joined or self.dropped)


class PartitionJoin:
    """One partition number's join: merge the inputs, feed the join, track offsets.

    Parameters
    ----------
    partition
        The partition number (the same in each input topic).
    configs
        Decision-point settings; the runner refreshes this mapping in place.
    max_wait_seconds
        How long a record may wait for a lagging input (see :class:`ArrivalMerge`).
    now
        The runner's monotonic time at creation: idle time is counted from here.
    """

    def __init__(
        self,
        partition: int,
        configs: ConfigSource | None = None,
        *,
        max_wait_seconds: float,
        now: float,
        join: Join | None = None,
        offsets: Mapping[str, int] | None = None,
    ) -> None:
        self.partition = partition
        self.join = join if join is not None else Join(configs)
        self._offsets = {s: (offsets or {}).get(s, 0) for s in Streams.JOIN_INPUTS}
        self.merge = ArrivalMerge(Streams.JOIN_INPUTS, max_wait_seconds, self._offsets)
        self._last_arrival = now
        self._dirty = False

    @classmethod
    def restore(
        cls,
        partition: int,
        checkpoint: PartitionCheckpoint | None,
        configs: ConfigSource | None = None,
        *,
        max_wait_seconds: float,
        now: float,
    ) -> PartitionJoin:
        """The partition as checkpointed, or a fresh one reading from offset 0."""
        if checkpoint is None:
            return cls(partition, configs, max_wait_seconds=max_wait_seconds, now=now)
        return cls(
            partition,
            configs,
            max_wait_seconds=max_wait_seconds,
            now=now,
            join=Join.restore(checkpoint.snapshot, configs),
            offsets=checkpoint.offsets,
        )

    @property
    def offsets(self) -> dict[str, int]:
        """Next offset per input stream after the records handed to the join."""
        return dict(self._offsets)

    @property
    def dirty(self) -> bool:
        """The join state changed since the last :meth:`checkpoint`."""
        return self._dirty

    def offer(self, record: InputRecord, now: float) -> None:
        """Buffer a consumed record; one below the resume offset (already joined) is ignored."""
        self.merge.push(record, now)

    def step(self, now: float) -> JoinOutput:
        """Hand the records that are due to the join, or advance an idle partition."""
        output = JoinOutput()
        records = self.merge.pop_ready(now)
        for record in records:
            if record.event is not None:
                output.joined.extend(self.join.on_event(record.event))
            output.consumed[record.stream] += 1
            self._offsets[record.stream] = record.offset + 1
        if records:
            self._last_arrival = now
            self._dirty = True
        elif self.merge.caught_up() and self.join.stream_time is not None:
            idle_time = idle_stream_time(self.join.stream_time, self._last_arrival, now)
            if idle_time > self.join.stream_time:
                output.joined.extend(self.join.advance(idle_time))
                # The idle advance is now the stream time: measure further idleness from here.
                self._last_arrival = now
                self._dirty = True
        output.dropped = self.join.drain_dropped()
        return output

    def checkpoint(self) -> PartitionCheckpoint:
        """The state to persist now (after the output of every step has been shipped)."""
        self._dirty = False
        return PartitionCheckpoint(dict(self._offsets), self.join.snapshot())
