"""The Kafka learner runner (``learnloop learn``): joined examples from Kafka, models to Redis.

One aiokafka consumer group reads the ``joined`` topic. Joined examples are keyed
by decision point, so one decision point's examples are in one partition with
increasing offsets: what :meth:`OnlineLearner.learn`'s offset check needs. In this
mode ``ModelRelease.last_offset`` is an offset *within that partition*.

On every assignment (aiokafka rebalances eagerly: all partitions move at once) the
runner starts a fresh :class:`OnlineLearner`, restores the current release of each
decision point living in its partitions (the configured ones murmur2 maps there,
and any seen there) and seeks each partition to
:func:`~online_learner.kafka_offsets.resume_offset` (after the smallest release
``last_offset``; the committed offset when one has no release) minus
``replay_records``: the replayed examples are skipped by offset but refill the
memory of recent event ids, so a duplicate joined example straddling a restart is
still skipped (they show up in ``duplicates_skipped``).

A promotion or rollback (another process publishing a release of an owned
decision point) is adopted whenever the configurations are refreshed and before
each publish: the model is swapped, the partitions are not sought, so the next
release is the promoted model plus the examples read after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from learnloop.clock import Clock, SystemClock
from learnloop.decision_points import DecisionPointStore
from learnloop.errors import Conflict, InvalidInput, LearnloopError, Unavailable
from learnloop.eventlog.base import Streams
from learnloop.kafka import codec
from learnloop.kafka.connect import start_consumer, start_producer_for
from learnloop.kafka.topics import TopicNames, ensure_kafka_topics, partition_of
from learnloop.modelstore.base import ModelStore
from learnloop.settings import Settings
from learnloop.shutdown import cancel_requested
from online_learner.kafka_offsets import OffsetLedger, resume_offset
from online_learner.kafka_publisher import ReleasePublisher
from online_learner.learner import OnlineLearner
from online_learner.metrics import LearnerMetrics
from online_learner.releases import adopt_newer
from schemas import DecisionPointConfig, JoinedExample

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Batch:
    """What learning one batch did (computed in the worker thread, applied on the loop)."""

    learned: Counter[str] = field(default_factory=Counter)
    first_learned: dict[str, int] = field(default_factory=dict)
    homes: dict[str, int] = field(default_factory=dict)
    skipped: int = 0


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: KafkaLearnerRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.runner.partitions_revoked()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.runner.partitions_assigned([tp.partition for tp in assigned])


class KafkaLearnerRunner:
    """Consumes the joined topic in a consumer group and publishes model releases.

    Parameters
    ----------
    settings
        Kafka bootstrap, topic prefix, release cadence, producer options.
    models, decision_points
        The model store (Redis in production) and where configurations come from.
    group_id
        Consumer group; defaults to ``{topic_prefix}learner``.
    session_timeout_ms, heartbeat_interval_ms
        Group membership: how soon a dead worker's partitions move; default from
        ``LEARNLOOP_KAFKA_SESSION_TIMEOUT_MS`` / ``..._HEARTBEAT_INTERVAL_MS``.
    replay_records
        How many records before the resume offset are re-read per partition to
        refill the memory of recent event ids (at most the learner's ``dedupe_window``).
    """

    def __init__(
        self,
        settings: Settings,
        models: ModelStore,
        decision_points: DecisionPointStore,
        *,
        clock: Clock | None = None,
        metrics: LearnerMetrics | None = None,
        group_id: str | None = None,
        session_timeout_ms: int | None = None,
        heartbeat_interval_ms: int | None = None,
        batch_size: int = 500,
        poll_timeout_ms: int = 100,
        replay_records: int = 10_000,
        config_refresh_seconds: float = 1.0,
    ) -> None:
        self.settings = settings
        self.models = models
        self.decision_points = decision_points
        self.clock = clock or SystemClock()
        self.metrics = metrics or LearnerMetrics()
        self.names = TopicNames(settings.topic_prefix)
        self.topic = self.names.topic(Streams.JOINED)
        self.group_id = group_id or f"{settings.topic_prefix}learner"
        self.session_timeout_ms = session_timeout_ms or settings.kafka_session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms or settings.kafka_heartbeat_interval_ms
        self.batch_size = batch_size
        self.poll_timeout_ms = poll_timeout_ms
        self.replay_records = replay_records
        self.config_refresh_seconds = config_refresh_seconds
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self._configs: dict[str, DecisionPointConfig] = {}
        self.learner = self._new_learner()
        self._lock = asyncio.Lock()  # the main loop and the rebalance callbacks take turns
        self._generation = 0  # bumped by every rebalance: batches fetched before are stale
        self.ledger = OffsetLedger()
        self.publisher: ReleasePublisher | None = None
        self._last_config_refresh = -1e9

    def _new_learner(self) -> OnlineLearner:
        return OnlineLearner(
            self._configs,
            release_every_examples=self.settings.release_every_examples,
            release_every_seconds=self.settings.release_every_seconds,
        )

    async def start(self) -> None:
        """Create missing topics, start the producer and join the consumer group."""
        s = self.settings
        await ensure_kafka_topics(s)
        await self._refresh_configs(force=True)
        self.producer = await start_producer_for(s)
        self.publisher = ReleasePublisher(
            self.models, self.producer, self.names, self.clock, self.metrics
        )
        self.consumer = await start_consumer(
            s.kafka_bootstrap,
            timeout_seconds=s.connect_timeout_seconds,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.batch_size,
            fetch_max_wait_ms=self.poll_timeout_ms,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
        )
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))
        log.info("learner joined group %s on %s", self.group_id, self.topic)

    async def run(self, until: asyncio.Event | None = None) -> None:
        """Learn until ``until`` is set or the task is cancelled, then publish what is due,
        commit and leave the group. Prefer ``until``: redis-py 8.1 on Python 3.11 swallows
        about one cancellation in three (so the loop also checks for a requested one)."""
        try:
            await self.start()
            while not (until is not None and until.is_set()):
                if cancel_requested():
                    raise asyncio.CancelledError  # requested, then swallowed by a library
                await self.step()
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Final publish and commit (bounded), then stop the clients."""
        timeout = self.settings.connect_timeout_seconds
        try:
            if self.consumer is not None and self.producer is not None:
                async with self._lock:
                    await asyncio.wait_for(self.commit(), timeout)
        except (LearnloopError, KafkaError, TimeoutError) as exc:
            log.warning("final commit failed (%s): the next owner replays from the releases", exc)
        finally:
            if self.consumer is not None:
                with contextlib.suppress(KafkaError, TimeoutError):
                    await asyncio.wait_for(self.consumer.stop(), timeout)
            if self.producer is not None:
                with contextlib.suppress(KafkaError, TimeoutError):
                    await asyncio.wait_for(self.producer.stop(), timeout)
            self.learner.close()

    async def step(self) -> int:
        """Fetch one batch, learn it in a worker thread, commit; return the records learned from."""
        assert self.consumer is not None, "call start() first"
        generation = self._generation
        batches = await self.consumer.getmany(
            timeout_ms=self.poll_timeout_ms, max_records=self.batch_size
        )
        async with self._lock:
            if generation != self._generation:
                # A rebalance ran meanwhile: the batch may predate its seeks (stale) or
                # follow them; drop it and read again from where the ledger stands.
                for partition in self.ledger.owned:
                    tp = TopicPartition(self.topic, partition)
                    self.consumer.seek(tp, self.ledger.position(partition))
                return 0
            if await self._refresh_configs():
                await self._adopt_external()
            records = [
                record
                for tp, messages in batches.items()
                if self.ledger.owns(tp.partition)
                for record in messages
            ]
            if records:
                await self._learn_batch(records)
            try:
                await self.commit()
            except Conflict as exc:
                log.error("%s; restoring every owned partition from the model store", exc)
                await self._reset(self.ledger.owned)
            except LearnloopError as exc:
                log.warning("could not publish or commit (%s): retrying after the next batch", exc)
            return len(records)

    async def _learn_batch(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        # VW learns off the event loop. If the task is cancelled meanwhile, the batch
        # still finishes and is accounted for, so the final commit sees a consistent state.
        learning = asyncio.ensure_future(asyncio.to_thread(self._learn, records))
        try:
            batch = await asyncio.shield(learning)
        except asyncio.CancelledError:
            self._apply(await learning, records)
            raise
        self._apply(batch, records)

    def _learn(self, records: list[ConsumerRecord[bytes, bytes]]) -> _Batch:
        batch = _Batch()
        for record in records:
            try:
                example = codec.decode_value(Streams.JOINED, record.value)
            except InvalidInput as exc:
                log.warning(
                    "skipping %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc
                )
                batch.skipped += 1
                continue
            assert isinstance(example, JoinedExample)
            name = example.decision.decision_point
            batch.homes.setdefault(name, record.partition)
            replayed = self.ledger.is_replay(record.partition, record.offset)
            if replayed and self.learner.policy(name) is None:
                batch.skipped += 1  # below the committed offset: never to be learned
                continue
            if self.learner.learn(example, record.offset):
                batch.learned[name] += 1
                batch.first_learned.setdefault(name, record.offset)
            else:
                batch.skipped += 1
        return batch

    def _apply(self, batch: _Batch, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        for record in records:
            self.ledger.read(record.partition, record.offset)
        for name, partition in batch.homes.items():
            moved_from = self.ledger.saw(name, partition)
            if moved_from is not None:
                log.warning(
                    "decision point %s has joined examples in partitions %d and %d: its offsets "
                    "are no longer one sequence (were partitions added?)",
                    name,
                    moved_from,
                    partition,
                )
        for name, offset in batch.first_learned.items():
            self.ledger.learned(name, offset)
        for name, count in batch.learned.items():
            self.metrics.learned.labels(name).inc(count)
        if batch.skipped:
            self.metrics.skipped.inc(batch.skipped)

    async def commit(self) -> None:
        """Publish what is due, then the release events, then the consumer offsets.

        Commit order:

        1. **model** — for each due decision point this worker owns: snapshot it,
           publish it to the model store (bytes, manifest and the pub/sub
           notification in one Redis transaction; API replicas swap here) and mark
           it released;
        2. **release event** — produce each new :class:`ModelRelease` (without model
           bytes) to the releases topic and await the broker's acknowledgement;
        3. **offsets** — commit, per owned partition, the offset below which every
           example is in a published model: the smaller of the next offset to read
           and the first example of any of its decision points not yet released.

        A failure in 1 keeps the examples pending (retried next time under the same
        version). A failure in 2 keeps the release in an outbox and commits nothing
        until it is sent. A crash between 1 and 2 loses that release's event (the
        model store stays the source of truth; the topic is an audit trail). A crash
        before 3 only makes the next owner replay examples its models skip by offset.
        Raises :class:`~learnloop.errors.Conflict` when another learner published a
        newer release of a decision point this worker owns.
        """
        assert self.publisher is not None, "call start() first"
        for name in await self.publisher.publish_due(self.learner, self.ledger.owns_decision_point):
            self.ledger.released(name)
        await self.publisher.announce()
        await self._commit_offsets()

    async def _commit_offsets(self) -> None:
        assert self.consumer is not None
        offsets = self.ledger.to_commit()
        if not offsets:
            return
        try:
            await self.consumer.commit(
                {TopicPartition(self.topic, p): offset for p, offset in offsets.items()}
            )
        except KafkaError as exc:
            raise Unavailable(f"cannot commit offsets of group {self.group_id}: {exc!r}") from exc
        self.ledger.committed(offsets)

    async def partitions_revoked(self) -> None:
        """Before a rebalance: publish what is due and commit while we still own it all."""
        async with self._lock:
            self._generation += 1
            try:
                await self.commit()
            except (LearnloopError, KafkaError) as exc:
                log.warning("commit before rebalance failed (%s): the next owner replays", exc)
            self.ledger.revoke_all()

    async def partitions_assigned(self, partitions: list[int]) -> None:
        """After a rebalance: restore the releases of the new partitions and seek."""
        async with self._lock:
            self._generation += 1
            await self._refresh_configs(force=True)
            await self._reset(partitions)

    async def _reset(self, partitions: list[int]) -> None:
        """A fresh learner holding exactly the published models of ``partitions``; seek them."""
        assert self.consumer is not None
        self.learner.close()
        self.learner = self._new_learner()
        self.ledger.revoke_all()
        if self.publisher is not None:
            self.publisher.drop_unannounced()  # published already; the event is best effort
        known = self.consumer.partitions_for_topic(self.topic)
        count = len(known) if known else self.settings.kafka_partitions
        for partition in partitions:
            tp = TopicPartition(self.topic, partition)
            resume_from = await self._restore(tp, self._living_in(partition, count))
            read_from = max(0, resume_from - self.replay_records)
            self.ledger.assign(partition, resume_from, read_from)
            self.consumer.seek(tp, read_from)
            log.info("partition %d: resuming after offset %d", partition, resume_from - 1)

    def _living_in(self, partition: int, count: int) -> set[str]:
        """The decision points whose joined examples are in ``partition``: the configured
        ones the default partitioner maps there, and any seen there."""
        hashed = {name for name in self._configs if partition_of(name, count) == partition}
        return hashed | self.ledger.living_in(partition)

    async def _restore(self, tp: TopicPartition, names: set[str]) -> int:
        """Restore ``names``' current releases; return the offset to resume reading at."""
        assert self.consumer is not None
        release_offsets: list[int | None] = []
        for name in sorted(names):
            release = await self.models.current(name)
            if release is not None:
                model = await self.models.load(release)
                await asyncio.to_thread(self.learner.restore, release, model)
                log.info(
                    "restored %s v%d (last offset %d)", name, release.version, release.last_offset
                )
            release_offsets.append(None if release is None else release.last_offset)
        committed = None
        if not release_offsets or None in release_offsets:
            committed = await self.consumer.committed(tp)
        return resume_offset(release_offsets, committed)

    async def _adopt_external(self) -> None:
        """Adopt the promotions and rollbacks of the decision points this worker owns."""
        assert self.consumer is not None
        known = self.consumer.partitions_for_topic(self.topic)
        count = len(known) if known else self.settings.kafka_partitions
        owned = {n for p in self.ledger.owned for n in self._living_in(p, count)}
        for name in sorted(owned):
            try:
                adopted = await adopt_newer(self.learner, self.models, name)
            except LearnloopError as exc:
                log.warning("cannot check %s for a promoted release (%s)", name, exc)
                continue
            if adopted is not None:
                self.ledger.released(name)
                self.metrics.released_version.labels(name).set(adopted.version)

    async def _refresh_configs(self, force: bool = False) -> bool:
        """Reread the decision points if due; whether they were reread."""
        now = self.clock.monotonic()
        if not force and now - self._last_config_refresh < self.config_refresh_seconds:
            return False
        try:
            configs = await self.decision_points.all()
        except LearnloopError as exc:
            log.warning("cannot refresh decision points (%s): keeping the ones known", exc)
            return False
        self._configs.clear()
        self._configs.update({c.name: c for c in configs})
        self._last_config_refresh = now
        return True
