"""The online learner continues from a promotion or rollback another process published:
every interleaving of "publish the release", "change the decision point's vw_args" and the
learner's own publish, over the memory stores and a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from learnloop.audit import MemoryAuditLog
from learnloop.clock import FakeClock
from learnloop.decision_points import MemoryDecisionPointStore
from learnloop.errors import Conflict
from learnloop.eventlog import Append, MemoryEventLog, Streams
from learnloop.modelstore import MemoryModelStore
from learnloop.rollback import publish_next
from offline_learner.promotion import promote, rollback, warm_start
from online_learner.embedded_runner import EmbeddedLearnerRunner
from online_learner.kafka_publisher import ReleasePublisher
from online_learner.learner import OnlineLearner
from online_learner.metrics import LearnerMetrics
from online_learner.releases import publish_due
from schemas import DecisionPointConfig
from schemas.events import ModelRelease
from tests.unit.test_online_learner import ACTIONS, config, synthetic

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OLD = "--cb_explore_adf --epsilon 0.2"
NEW = "--cb_explore_adf --squarecb -q ca"


class Loop:
    """An embedded learner runner over a memory log, with the promotion's stores beside it."""

    def __init__(self, every: int = 10) -> None:
        self.clock = FakeClock(T0)
        self.log = MemoryEventLog()
        self.models = MemoryModelStore()
        self.points = MemoryDecisionPointStore([config(vw_args=OLD)])
        self.audit = MemoryAuditLog()
        self.runner = EmbeddedLearnerRunner(
            self.log, self.models, self.points, clock=self.clock, release_every_examples=every
        )
        self.examples = synthetic(400)
        self.appended = 0

    async def feed(self, count: int) -> None:
        batch = self.examples[self.appended : self.appended + count]
        self.appended += count
        await self.log.append(
            [Append(Streams.JOINED, e.model_dump_json().encode(), key=e.event_id) for e in batch]
        )

    async def drain(self) -> None:
        self.clock.advance(1.5)  # past the decision-point cache's refresh
        while await self.runner.step():
            pass

    async def current(self) -> ModelRelease:
        release = await self.models.current("home")
        assert release is not None
        return release

    async def promote(self, examples: int = 100) -> ModelRelease:
        warm = warm_start(synthetic(examples, seed=99), NEW, decision_point="home")
        stored, _ = await promote(
            self.models, self.points, self.audit, decision_point="home", warm=warm,
            estimate=None, by="test", now=self.clock.now(),
        )  # fmt: skip
        return stored


async def test_the_learner_continues_from_a_promotion() -> None:
    loop = Loop(every=10)
    await loop.runner.start()
    await loop.feed(30)
    await loop.drain()
    before = await loop.current()
    assert (before.version, before.examples_learned, before.last_offset) == (3, 30, 29)
    promoted = await loop.promote(examples=100)
    assert (promoted.version, promoted.last_offset) == (4, 29)
    await loop.feed(10)
    await loop.drain()
    after = await loop.current()
    assert after.source == "online" and after.version == 5
    assert after.vw_args == NEW
    assert after.examples_learned == 100 + 10  # the promoted model plus the new examples
    assert after.last_offset == 39
    assert after.metrics["fresh_models"] == 0  # the vw_args change did not start afresh
    assert after.metrics["examples_total"] == 40  # the stream's counters carried on


async def test_a_publish_between_the_release_and_the_config_change_adopts() -> None:
    """The learner reads on after the promotion published but before it changed
    vw_args: it adopts the promoted model and learns on into it (the configuration
    still names the old arguments), and the config change that follows does not
    start a fresh model."""
    loop = Loop(every=10)
    await loop.runner.start()
    await loop.feed(10)
    await loop.drain()
    config_before = await loop.points.get("home")
    assert config_before is not None
    warm = warm_start(synthetic(50, seed=3), NEW, decision_point="home")
    promoted, _ = await publish_next(
        loop.models, "home", warm.model, loop.clock.now(), vw_args=NEW,
        examples_learned=50, source="promotion", audit_id="home-promote-x",
    )  # fmt: skip
    assert promoted.version == 2
    await loop.feed(10)
    await loop.drain()
    between = await loop.current()
    assert (between.version, between.vw_args, between.examples_learned) == (3, NEW, 60)
    await loop.points.put(config_before.model_copy(update={"vw_args": NEW}))  # step 2 lands
    await loop.feed(10)
    await loop.drain()
    after = await loop.current()
    assert (after.version, after.vw_args, after.examples_learned) == (4, NEW, 70)
    assert after.metrics["fresh_models"] == 0


async def test_a_conflict_on_publish_adopts_the_promotion() -> None:
    """The promotion lands between the learner's check and its publish."""
    models, clock = MemoryModelStore(), FakeClock(T0)
    learner = OnlineLearner({"home": config(vw_args=OLD)}, release_every_examples=5)
    for offset, example in enumerate(synthetic(5)):
        learner.learn(example, offset)

    class Racing(MemoryModelStore):
        async def publish(self, release: ModelRelease, model: bytes) -> ModelRelease:
            if release.source == "online" and await self.current("home") is None:
                warm = warm_start(synthetic(20, seed=5), NEW)
                await publish_next(
                    self, "home", warm.model, T0, vw_args=NEW, examples_learned=20,
                    source="promotion", audit_id="home-promote-y",
                )  # fmt: skip
            return await super().publish(release, model)

    models = Racing()
    assert await publish_due(learner, models, clock) == []
    assert learner.version("home") == 1
    assert learner.pending("home") == 0
    for offset, example in enumerate(synthetic(10)[5:], start=5):
        learner.learn(example, offset)
    (release,) = await publish_due(learner, models, clock)
    assert (release.version, release.examples_learned, release.last_offset) == (2, 25, 9)


async def test_a_newer_online_release_is_another_learners_conflict() -> None:
    models, clock = MemoryModelStore(), FakeClock(T0)
    learner = OnlineLearner({"home": config()}, release_every_examples=1)
    learner.learn(synthetic(1)[0], 0)
    other = OnlineLearner({"home": config()}, release_every_examples=1)
    other.learn(synthetic(1)[0], 0)
    await publish_due(other, models, clock)
    with pytest.raises(Conflict):
        await publish_due(learner, models, clock)


async def test_the_learner_continues_from_a_rollback() -> None:
    loop = Loop(every=10)
    await loop.runner.start()
    await loop.feed(20)
    await loop.drain()  # v1, v2 (OLD)
    v2 = await loop.current()
    await loop.promote(examples=100)  # v3 (NEW)
    await loop.feed(10)
    await loop.drain()  # v4: promoted + 10
    stored, _ = await rollback(
        loop.models, loop.points, loop.audit, decision_point="home", to_version=2,
        by="test", now=loop.clock.now(),
    )  # fmt: skip
    assert (stored.version, stored.restores_version, stored.vw_args) == (5, 2, OLD)
    assert await loop.models.load(stored) == await loop.models.load(v2)
    await loop.feed(10)
    await loop.drain()
    after = await loop.current()
    assert (after.version, after.vw_args, after.examples_learned) == (6, OLD, 20 + 10)
    assert after.last_offset == 39 and after.metrics["fresh_models"] == 0


async def test_a_restarted_learner_resumes_at_the_promotions_offset() -> None:
    loop = Loop(every=10)
    await loop.runner.start()
    await loop.feed(20)
    await loop.drain()
    promoted = await loop.promote(examples=100)
    restarted = EmbeddedLearnerRunner(
        loop.log, loop.models, loop.points, clock=loop.clock, release_every_examples=10
    )
    await restarted.start()
    assert restarted.offset == promoted.last_offset == 19
    await loop.feed(10)
    loop.clock.advance(1.5)
    while await restarted.step():
        pass
    after = await loop.current()
    assert (after.version, after.examples_learned, after.vw_args) == (4, 110, NEW)


async def test_the_kafka_publisher_adopts_instead_of_publishing() -> None:
    models, clock = MemoryModelStore(), FakeClock(T0)
    learner = OnlineLearner({"home": config(vw_args=OLD)}, release_every_examples=5)
    for offset, example in enumerate(synthetic(5)):
        learner.learn(example, offset)
    warm = warm_start(synthetic(20, seed=5), NEW)
    promoted, _ = await publish_next(
        models, "home", warm.model, T0, vw_args=NEW, examples_learned=20,
        source="promotion", audit_id="home-promote-z",
    )  # fmt: skip
    publisher = ReleasePublisher(models, None, None, clock, LearnerMetrics())  # type: ignore[arg-type]
    assert await publisher.publish_due(learner, lambda name: True) == ["home"]
    assert await models.current("home") == promoted
    assert learner.version("home") == promoted.version and learner.pending("home") == 0


def test_config_helper_is_the_online_learners() -> None:
    assert config(vw_args=NEW) == DecisionPointConfig(name="home", actions=ACTIONS, vw_args=NEW)


async def test_a_restart_between_the_release_and_the_config_change_keeps_the_model() -> None:
    """The learner restarts after the promotion published, before vw_args changed."""
    loop = Loop(every=10)
    await loop.runner.start()
    await loop.feed(10)
    await loop.drain()
    warm = warm_start(synthetic(50, seed=3), NEW, decision_point="home")
    await publish_next(
        loop.models, "home", warm.model, loop.clock.now(), vw_args=NEW,
        examples_learned=50, source="promotion", audit_id="home-promote-w",
    )  # fmt: skip
    restarted = EmbeddedLearnerRunner(
        loop.log, loop.models, loop.points, clock=loop.clock, release_every_examples=10
    )
    await restarted.start()
    await loop.feed(10)
    loop.clock.advance(1.5)
    while await restarted.step():
        pass
    config_now = await loop.points.get("home")
    assert config_now is not None
    await loop.points.put(config_now.model_copy(update={"vw_args": NEW}))
    await loop.feed(10)
    loop.clock.advance(1.5)
    while await restarted.step():
        pass
    after = await loop.current()
    assert (after.vw_args, after.examples_learned) == (NEW, 70)
    assert after.metrics["fresh_models"] == 0
