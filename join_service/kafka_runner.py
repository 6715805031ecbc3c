"""``learnloop join``: the join as a faust-streaming worker on Kafka.

One faust agent consumes the four co-partitioned join inputs; one
:class:`~join_service.partition_join.PartitionJoin` per assigned partition
number applies the pure join rule (faust's own stream joins are not
implemented, and the rule must be the embedded mode's anyway), after an
:class:`~join_service.arrival_merge.ArrivalMerge` has put the four inputs back
into the order the decision service produced them. A faust timer releases
records that waited for a lagging input, advances idle partitions
(:func:`~join_service.stream_time.idle_stream_time`) and checkpoints.

Recovery is exact and does not depend on faust tables: a partition's join
snapshot and the input offsets it reflects are stored together in Redis
(:mod:`join_service.kafka_checkpoint`), and events are acknowledged to faust
only once a checkpoint covers them, so the offsets faust commits never run ahead
of the stored state. On (re)assignment a partition is restored from Redis;
faust resumes at the committed offsets (at or before the checkpoint) and the
records the snapshot already holds are skipped. Joined examples re-emitted by
the replay are refused by their unique key. See ``docs/distributed.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import faust
from faust.types import TP, EventT

from join_service.kafka_partitions import JoinPartitions
from learnloop.eventlog.base import Streams
from learnloop.settings import Settings

log = logging.getLogger(__name__)

Event = EventT[bytes]  # raw values, decoded by learnloop.streams (in JoinPartitions.record)


def faust_broker_url(bootstrap: str) -> str:
    """faust's broker URL list for a Kafka bootstrap string.

    >>> faust_broker_url("k1:9092,k2:9092")
    'kafka://k1:9092;kafka://k2:9092'
    """
    return ";".join(f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip())


class FaustJoinWorker:
    """The join's faust app: an agent over the join inputs and a timer.

    Parameters
    ----------
    settings
        Broker address, topic prefix and producer batch size.
    partitions
        The worker's partitions and their way in and out (restore, ship, checkpoint).
    group_id
        The consumer group (and faust app id); workers of one deployment share it.
    """

    def __init__(self, settings: Settings, partitions: JoinPartitions, group_id: str) -> None:
        self.partitions = partitions
        self.tuning = partitions.tuning
        datadir = settings.data_dir / "join-worker"  # faust creates it even without tables
        datadir.mkdir(parents=True, exist_ok=True)
        self.clock = partitions.clock
        tuning = self.tuning
        self.app = faust.App(
            group_id,
            broker=faust_broker_url(settings.kafka_bootstrap),
            # Transactions need InitProducerId v3+, which tansu lacks (docs/distributed.md);
            # exactness comes from the checkpoint, the unique keys and the acks instead.
            processing_guarantee="at_least_once",
            key_serializer="raw",
            value_serializer="raw",
            broker_session_timeout=tuning.session_timeout_ms / 1000,
            broker_heartbeat_interval=tuning.heartbeat_interval_ms / 1000,
            producer_max_batch_size=settings.kafka_max_batch_bytes,
            consumer_auto_offset_reset="earliest",
            topic_allow_declare=False,  # ensure_topics creates them, co-partitioned
            stream_wait_empty=False,  # unacknowledged events are simply read again
            broker_commit_interval=tuning.checkpoint_seconds,
            web_enabled=False,
            store="memory://",  # no faust tables: the join state lives in Redis checkpoints
            datadir=str(datadir),
        )
        self.names = partitions.names
        topic = self.app.topic(*self.names.join_inputs, key_type=bytes, value_type=bytes)
        self.app.agent(topic, name=f"{group_id}-join")(self._consume)
        self.app.timer(tuning.tick_seconds, name=f"{group_id}-tick")(self._tick)
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.on_partitions_assigned.connect(self._on_assigned)
        self._lock = asyncio.Lock()
        self._unacked: dict[int, list[Event]] = defaultdict(list)
        self._stop = asyncio.Event()
        self._failure: BaseException | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; checkpoint every partition on the way out.

        A failure in the agent or the timer stops the worker and is raised here, so
        that a supervisor restarts it from its checkpoints (faust would log it and
        keep a worker running that no longer consumes).
        """
        await self.partitions.refresh_configs(force=True)
        self._stop = stop
        await self.app.start()
        try:
            await stop.wait()
        finally:
            if self._failure is None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._release_all(), 10)
            await self.app.stop()
        if self._failure is not None:
            raise self._failure

    def _fail(self, exc: BaseException) -> None:
        log.error("join worker failed: %r", exc, exc_info=exc)
        self._failure = self._failure or exc
        self._stop.set()

    # -- consuming -------------------------------------------------------------------------

    async def _consume(self, stream: Any) -> None:
        """The agent: buffer each event in its partition's merge and step that partition."""
        try:
            async for event in stream.noack().events():
                async with self._lock:
                    await self._accept(event)
        except Exception as exc:
            self._fail(exc)
            raise

    async def _accept(self, event: Event) -> None:
        message = event.message
        partition = message.partition
        if partition not in self.partitions:
            await self._assign([partition])
        part = self.partitions[partition]
        stream = self.names.stream_of(message.topic)
        if message.offset < part.merge.next_offset(stream):
            if message.offset < part.offsets[stream]:
                event.ack()  # read again after a restart: the checkpoint holds it already
            else:
                self.app.consumer.unacked.discard(message)  # a second delivery of a buffered one
            return
        arrival_ms = round(message.timestamp * 1000)  # when the decision service produced it
        record = self.partitions.record(message.topic, message.offset, arrival_ms, message.value)
        part.offer(record, self.clock.monotonic())
        self._unacked[partition].append(event)
        await self._step(partition)

    async def _tick(self, *_app: Any) -> None:
        """Timer: refresh settings, release waiting records, advance idle partitions.

        (faust's timer passes the app to a function that takes arguments.)
        """
        try:
            async with self._lock:
                await self.partitions.refresh_configs()
                for partition in self.partitions.owned:
                    await self._step(partition)
        except Exception as exc:
            self._fail(exc)
            raise

    async def _step(self, partition: int) -> None:
        """Join what is due in one partition, ship it, and checkpoint when it is time."""
        part = self.partitions[partition]
        for stream in Streams.JOIN_INPUTS:
            tp = TP(self.names.topic(stream), partition)
            part.merge.set_highwater(stream, self.app.consumer.highwater(tp))
        await self.partitions.ship(part.step(self.clock.monotonic()))
        if self.partitions.checkpoint_due(partition) and not await self._checkpoint(partition):
            # Another worker owns it now and stored newer state: drop ours. faust's next
            # rebalance takes the partition away; until then it is restored from that state.
            self._forget(partition)

    # -- assignment and commits ------------------------------------------------------------

    async def _assign(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            if partition not in self.partitions:
                await self.partitions.assign(partition)

    async def _checkpoint(self, partition: int) -> bool:
        """Persist a partition's state, then acknowledge the events it covers.

        Commit order: the joined examples were shipped and acknowledged by Kafka
        in :meth:`_step`; the join state is persisted with its input offsets here;
        only then are the events it covers acknowledged to faust, which commits
        their offsets (every ``checkpoint_seconds``). Committed offsets therefore
        never pass the stored state. ``False`` when another worker stored a newer
        state (this one lost the partition without noticing).
        """
        offsets = await self.partitions.checkpoint(partition)
        if offsets is None:
            return False
        covered: list[Event] = []
        waiting: list[Event] = []
        for event in self._unacked[partition]:
            message = event.message
            stream = self.names.stream_of(message.topic)
            (covered if message.offset < offsets[stream] else waiting).append(event)
        self._unacked[partition] = waiting
        for event in covered:
            event.ack()
        return True

    def _forget(self, partition: int) -> None:
        """Drop a partition; its unacknowledged events are read again by its next owner."""
        for event in self._unacked.pop(partition, []):
            self.app.consumer.unacked.discard(event.message)
        self.partitions.forget([partition])

    async def _release_all(self) -> None:
        """Checkpoint every partition and forget them (before a rebalance, at shutdown)."""
        async with self._lock:
            for partition in self.partitions.owned:
                if self.partitions[partition].dirty:
                    await self._checkpoint(partition)
                self._forget(partition)

    async def _on_revoked(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await self._release_all()

    async def _on_assigned(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Restore assigned partitions at once, so that idle ones advance too."""
        assigned = args[0]  # the signal's value: the assigned topic partitions
        inputs = set(self.names.join_inputs)
        async with self._lock:
            await self._assign(sorted({tp.partition for tp in assigned if tp.topic in inputs}))
