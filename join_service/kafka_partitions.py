"""The Kafka join worker's partitions: restore, feed, ship, checkpoint — whatever the consumer.

A worker owns some partition numbers of the co-partitioned join inputs; each
has a :class:`~join_service.partition_join.PartitionJoin`. This module moves
things between those pure joins and the outside world:

- *restore* a partition from its Redis checkpoint when it is assigned;
- *decode* consumed records (:mod:`learnloop.streams`, as the embedded runner does);
- *ship* what a step produced (:class:`~join_service.joined_output.JoinedOutput`):
  joined examples with the decision's ``event_id`` as unique key (a replay after a
  crash cannot emit one twice) and dropped events for audit (at least once);
- *checkpoint* a partition (after its output has been shipped), with the joined
  topic's watermark, from which a restore first recovers the output of a crashed
  predecessor.

The consumer driver (:mod:`join_service.kafka_runner`) decides when, and commits
offsets after the checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace

from join_service.arrival_merge import InputRecord
from join_service.joined_output import JoinedOutput
from join_service.kafka_checkpoint import RedisCheckpoints
from join_service.metrics import JoinMetrics
from join_service.partition_join import JoinOutput, PartitionJoin
from learnloop.clock import Clock
from learnloop.decision_points import DecisionPointStore
from learnloop.errors import InvalidInput
from learnloop.kafka.topics import TopicNames
from learnloop.settings import Settings
from learnloop.streams import decode_join_input
from schemas import DecisionPointConfig, JoinInput

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JoinTuning:
    """Timings of the join worker: :meth:`from_settings` in production (the defaults
    live in :class:`~learnloop.settings.Settings`, once); tests shorten them.

    Parameters
    ----------
    checkpoint_seconds
        How often a changed partition is checkpointed and its offsets committed.
        Joined examples are shipped as soon as they are emitted either way.
    tick_seconds
        How often quiet partitions are looked at (idle advance, waiting records).
    max_wait_seconds
        How long a record may wait for a lagging input stream (arrival order).
    config_refresh_seconds
        How often decision-point settings are re-read from Redis.
    session_timeout_ms, heartbeat_interval_ms
        Consumer-group liveness: a killed worker's partitions move after about
        the session time-out.
    """

    checkpoint_seconds: float
    tick_seconds: float
    max_wait_seconds: float
    session_timeout_ms: int
    heartbeat_interval_ms: int
    config_refresh_seconds: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> JoinTuning:
        """The timings of ``LEARNLOOP_JOIN_WORKER_*`` and ``LEARNLOOP_KAFKA_*``."""
        return cls(
            checkpoint_seconds=settings.join_worker_checkpoint_seconds,
            tick_seconds=settings.join_worker_tick_seconds,
            max_wait_seconds=settings.join_worker_max_wait_seconds,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        )


class JoinPartitions:
    """The partitions one worker owns, and their way in and out."""

    def __init__(
        self,
        names: TopicNames,
        output: JoinedOutput,
        checkpoints: RedisCheckpoints,
        decision_points: DecisionPointStore,
        clock: Clock,
        metrics: JoinMetrics,
        tuning: JoinTuning,
    ) -> None:
        self.names = names
        self.output = output
        self.checkpoints = checkpoints
        self.decision_points = decision_points
        self.clock = clock
        self.metrics = metrics
        self.tuning = tuning
        self.configs: dict[str, DecisionPointConfig] = {}  # every join holds this mapping
        self._owned: dict[int, PartitionJoin] = {}
        self._last_checkpoint: dict[int, float] = {}
        self._last_config_refresh = -1e9

    def __contains__(self, partition: int) -> bool:
        return partition in self._owned

    def __getitem__(self, partition: int) -> PartitionJoin:
        return self._owned[partition]

    @property
    def owned(self) -> list[int]:
        return sorted(self._owned)

    async def refresh_configs(self, force: bool = False) -> None:
        """Re-read decision-point settings (in place: the joins hold this mapping)."""
        now = self.clock.monotonic()
        if force or now - self._last_config_refresh >= self.tuning.config_refresh_seconds:
            configs = await self.decision_points.all()
            self.configs.clear()
            self.configs.update({c.name: c for c in configs})
            self._last_config_refresh = now

    async def assign(self, partition: int) -> PartitionJoin:
        """Restore a partition from its checkpoint (or start it fresh) and own it.

        A restored partition first indexes the joined examples it emitted after the
        checkpoint (so the replay does not emit them again); a fresh one stores a
        first checkpoint before it emits anything, so that a restore knows where its
        output begins.
        """
        checkpoint = await self.checkpoints.load(partition)
        if checkpoint is not None:
            await self.output.recover(partition, checkpoint.output_offsets)
        now = self.clock.monotonic()
        part = PartitionJoin.restore(
            partition,
            checkpoint,
            self.configs,
            max_wait_seconds=self.tuning.max_wait_seconds,
            now=now,
        )
        self._owned[partition] = part
        self._last_checkpoint[partition] = now
        if checkpoint is None:
            await self.checkpoint(partition)
        log.info("join partition %d restored at offsets %s", partition, part.offsets)
        return part

    def forget(self, partitions: Iterable[int]) -> None:
        """Stop owning partitions (revoked, or to be reloaded)."""
        for partition in partitions:
            self._owned.pop(partition, None)
            self._last_checkpoint.pop(partition, None)

    def record(self, topic: str, offset: int, arrival_ms: int, value: bytes | None) -> InputRecord:
        """A consumed record of a join input; an undecodable one keeps its place as ``None``."""
        stream = self.names.stream_of(topic)
        event: JoinInput | None = None
        try:
            event = decode_join_input(stream, value or b"")
        except InvalidInput:
            # Written by the API after validation, so a bug or a foreign writer: skip it
            # loudly rather than wedge the partition forever.
            log.exception("undecodable record %s@%d", topic, offset)
        return InputRecord(stream, offset, arrival_ms, event)

    async def ship(self, output: JoinOutput) -> None:
        """Append what a step produced; returns once Kafka acknowledged it."""
        for stream, count in output.consumed.items():
            self.metrics.events.labels(stream).inc(count)
        if not output:
            return
        results = await self.output.ship(output)
        repeated = sum(r.existed for r in results)
        if repeated:
            log.info(
                "%d joined examples were emitted before a restart: not emitted again", repeated
            )
        self.metrics.emitted(
            [e for e, r in zip(output.joined, results, strict=True) if not r.existed]
        )
        for item in output.dropped:
            self.metrics.dropped.labels(item.reason).inc()

    def checkpoint_due(self, partition: int, force: bool = False) -> bool:
        part = self._owned.get(partition)
        if part is None or not part.dirty:
            return False
        elapsed = self.clock.monotonic() - self._last_checkpoint.get(partition, 0.0)
        return force or elapsed >= self.tuning.checkpoint_seconds

    async def checkpoint(self, partition: int) -> dict[str, int] | None:
        """Persist a partition's state; the offsets to commit, or ``None`` if a newer
        checkpoint was stored by another worker (then this one must reload it)."""
        part = self._owned[partition]
        if part.merge.passed_over:
            log.warning(
                "join partition %d: %d records joined out of arrival order (an input delivered "
                "nothing for %g s while the broker held more)",
                partition,
                part.merge.passed_over,
                self.tuning.max_wait_seconds,
            )
            part.merge.passed_over = 0
        state = replace(part.checkpoint(), output_offsets=await self.output.watermark())
        self._last_checkpoint[partition] = self.clock.monotonic()
        if not await self.checkpoints.save(partition, state):
            log.warning(
                "join partition %d: a newer checkpoint is stored (another worker owned it); "
                "reloading",
                partition,
            )
            return None
        self.update_gauges()
        return state.offsets

    def update_gauges(self) -> None:
        stats = [p.join.stats for p in self._owned.values()]
        self.metrics.open_windows.set(sum(s.open_windows for s in stats))
        self.metrics.held.set(sum(s.held_events for s in stats))
        times = [s.stream_time for s in stats if s.stream_time is not None]
        if times:
            self.metrics.lag.set((self.clock.now() - min(times)).total_seconds())
