"""Model releases in Kafka mode: published to the model store, then announced on the
``releases`` topic (a :class:`ModelRelease` without model bytes, keyed by decision point).

The order and what a failure in each step means are written down once, in
:meth:`online_learner.kafka_runner.KafkaLearnerRunner.commit`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from learnloop.clock import Clock
from learnloop.errors import Conflict, Unavailable
from learnloop.kafka import codec
from learnloop.kafka.topics import TopicNames
from learnloop.modelstore.base import ModelStore
from online_learner.learner import OnlineLearner
from online_learner.metrics import LearnerMetrics
from online_learner.releases import adopt_newer
from schemas.events import ModelRelease

log = logging.getLogger(__name__)


class ReleasePublisher:
    """Publishes due models to the store and keeps an outbox of releases to announce.

    Parameters
    ----------
    models
        The model store (bytes, manifest and notification in one step for Redis).
    producer
        A started producer (acks=all) for the releases topic.
    """

    def __init__(
        self,
        models: ModelStore,
        producer: AIOKafkaProducer,
        names: TopicNames,
        clock: Clock,
        metrics: LearnerMetrics,
    ) -> None:
        self.models = models
        self.producer = producer
        self.names = names
        self.clock = clock
        self.metrics = metrics
        self._outbox: list[ModelRelease] = []

    async def publish_due(self, learner: OnlineLearner, owned: Callable[[str], bool]) -> list[str]:
        """Publish every due model of a decision point ``owned`` says this worker owns;
        return the decision points whose every learned example is now published.

        A decision point whose partition moved to another worker is left alone: that
        worker publishes it. A newer promotion or rollback in the store is adopted
        instead of overwritten (and the decision point counts as complete: its
        pending examples went with the replaced model). Raises
        :class:`~learnloop.errors.Conflict` when the store holds a newer online
        release (another learner publishes the same decision point).
        """
        complete: list[str] = []
        for name in learner.due_releases(self.clock.monotonic()):
            if not owned(name):
                continue
            if await adopt_newer(learner, self.models, name) is not None:
                complete.append(name)
                continue
            release, model = learner.make_release(name, self.clock.now())
            try:
                stored = await self.models.publish(release, model)
            except Conflict:
                if await adopt_newer(learner, self.models, name) is None:
                    raise
                complete.append(name)
                continue
            learner.mark_released(stored, self.clock.monotonic())
            if learner.pending(name) == 0:
                complete.append(name)
            self.metrics.published(stored)
            self._outbox.append(stored)
            log.info(
                "published %s v%d (%d examples, last offset %d)",
                name,
                stored.version,
                stored.examples_learned,
                stored.last_offset,
            )
        return complete

    async def announce(self) -> None:
        """Produce the published releases to the releases topic, oldest first, each
        acknowledged before it leaves the outbox."""
        while self._outbox:
            record = codec.to_record(self._outbox[0], self.names)
            try:
                delivery = await self.producer.send(
                    record.topic, record.value, key=record.key, headers=list(record.headers)
                )
                await delivery
            except KafkaError as exc:
                raise Unavailable(f"the releases topic did not acknowledge: {exc!r}") from exc
            self._outbox.pop(0)

    def drop_unannounced(self) -> int:
        """Forget releases not yet announced (a rebalance); return how many."""
        dropped = len(self._outbox)
        if dropped:
            log.warning("%d published releases were not announced on the releases topic", dropped)
        self._outbox.clear()
        return dropped
