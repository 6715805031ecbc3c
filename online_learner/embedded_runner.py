"""The embedded learner runner: reads joined examples from the local event log, learns
them in a worker thread, and publishes model releases to the local model store."""

from __future__ import annotations

import asyncio
import logging

from learnloop.clock import Clock, SystemClock
from learnloop.decision_points import DecisionPointCache, DecisionPointStore
from learnloop.eventlog.base import EventLog, LogRecord, Streams
from learnloop.modelstore.base import ModelStore
from learnloop.settings import DEFAULTS
from online_learner.learner import OnlineLearner
from online_learner.metrics import LearnerMetrics
from online_learner.releases import adopt_all, publish_due, resume
from schemas import JoinedExample

log = logging.getLogger(__name__)


class EmbeddedLearnerRunner:
    """Consumes the ``joined`` stream from the offset the current releases reflect.

    The learner's VW workspaces are touched by one worker thread at a time (each
    batch is awaited before the next, and releases are made between batches), so
    the event loop keeps serving decisions while VW learns.

    Before each batch it adopts a promotion or rollback another process published
    to the model store (:func:`~online_learner.releases.adopt_all`), and keeps
    reading where it is: the next release is the promoted model plus what follows.
    """

    def __init__(
        self,
        events: EventLog,
        models: ModelStore,
        decision_points: DecisionPointStore,
        *,
        clock: Clock | None = None,
        metrics: LearnerMetrics | None = None,
        release_every_examples: int = DEFAULTS.release_every_examples,
        release_every_seconds: float = DEFAULTS.release_every_seconds,
        poll_seconds: float = 0.02,
        batch_size: int = 500,
        config_refresh_seconds: float = 1.0,
    ) -> None:
        self.events = events
        self.models = models
        self.decision_points = decision_points
        self.clock = clock or SystemClock()
        self.metrics = metrics or LearnerMetrics()
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self._configs = DecisionPointCache(decision_points, config_refresh_seconds)
        self.learner = OnlineLearner(
            self._configs.mapping,
            release_every_examples=release_every_examples,
            release_every_seconds=release_every_seconds,
        )
        self._offset = -1

    @property
    def offset(self) -> int:
        return self._offset

    async def start(self) -> None:
        """Restore the current releases and find where to resume reading."""
        await self._configs.refresh(self.clock.monotonic(), force=True)
        self._offset = await resume(self.learner, self.models, list(self._configs.mapping))
        log.info("learner resumes after offset %d", self._offset)

    async def run(self) -> None:
        await self.start()
        try:
            while True:
                if not await self.step():
                    await asyncio.sleep(self.poll_seconds)
        finally:
            self.learner.close()

    async def step(self) -> int:
        """Learn one batch of joined examples, publishing each release as it falls due;
        return the examples read.

        The batch is cut where a decision point reaches ``release_every_examples``
        pending examples, and that release is published before the rest is learned.
        So a release by count holds exactly that many new examples, however many a
        poll happened to find (a 500-example batch used to make one 500-example
        release out of a cadence of 25), and the served model's lag in examples does
        not depend on how fast traffic arrives.
        """
        await self._configs.refresh(self.clock.monotonic())
        for release in await adopt_all(self.learner, self.models, list(self._configs.mapping)):
            self.metrics.released_version.labels(release.decision_point).set(release.version)
        records = await self.events.read([Streams.JOINED], self._offset, self.batch_size)
        start = 0
        while True:
            stop, learned = await asyncio.to_thread(self._learn, records, start)
            if stop > start:
                self._offset = records[stop - 1].offset
                for name, count in learned.items():
                    self.metrics.learned.labels(name).inc(count)
                skipped = stop - start - sum(learned.values())
                if skipped:
                    self.metrics.skipped.inc(skipped)
            for release in await publish_due(self.learner, self.models, self.clock):
                self.metrics.published(release)
            if stop >= len(records):
                return len(records)
            start = stop

    def _learn(self, records: list[LogRecord], start: int) -> tuple[int, dict[str, int]]:
        """Learn ``records[start:]`` up to the first one after which a release is due by
        count; the index to continue from and the examples learned per decision point."""
        learned: dict[str, int] = {}
        every = self.learner.release_every_examples
        for index in range(start, len(records)):
            record = records[index]
            example = JoinedExample.model_validate_json(record.value)
            if self.learner.learn(example, record.offset):
                name = example.decision.decision_point
                learned[name] = learned.get(name, 0) + 1
                if self.learner.pending(name) >= every:
                    return index + 1, learned
        return len(records), learned
