"""Promotion and rollback over the in-memory stores: versions, offsets, the decision point's
vw_args, the audit record, and the refusals."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import JsonValue

from learnloop.audit import MemoryAuditLog
from learnloop.decision_points import MemoryDecisionPointStore
from learnloop.errors import Conflict, InvalidInput, NotFound
from learnloop.modelstore import MemoryModelStore
from offline_learner.promotion import WarmStart, promote, rollback, warm_start
from schemas import Action, Context, DecisionEvent, DecisionPointConfig, JoinedExample
from schemas.events import ModelRelease

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ACTIONS = [Action(id="A"), Action(id="B"), Action(id="C")]
OLD_ARGS = "--cb_explore_adf --epsilon 0.2"
NEW_ARGS = "--cb_explore_adf --squarecb -q ca"


def example(n: int, dp: str = "home", activated: bool = True) -> JoinedExample:
    rng = random.Random(n)
    chosen = rng.randrange(3)
    decision = DecisionEvent(
        event_id=f"{dp}-e{n}",
        timestamp=T0 + timedelta(seconds=n),
        decision_point=dp,
        context=Context(features={"x": rng.choice("abc")}),
        persona="visitor",
        actions=ACTIONS,
        chosen_index=chosen,
        probabilities=[1 / 3] * 3,
        model_version="0",
        activated=activated,
    )
    return JoinedExample(
        event_id=decision.event_id,
        timestamp=decision.timestamp,
        decision=decision,
        reward=float(chosen == 0),
        close_reason="outcome",
    )


def online(version: int, last_offset: int, vw_args: str = OLD_ARGS) -> ModelRelease:
    return ModelRelease(
        event_id=f"home-v{version}",
        timestamp=T0,
        decision_point="home",
        version=version,
        vw_args=vw_args,
        model_location="",
        examples_learned=version * 10,
        last_offset=last_offset,
        metrics={"examples_total": 40.0, "reward_mean": 0.25, "ips_reward": 0.4},
    )


Stores = tuple[MemoryModelStore, MemoryDecisionPointStore, MemoryAuditLog]


@pytest.fixture
def stores() -> Stores:
    return (
        MemoryModelStore(),
        MemoryDecisionPointStore(
            [DecisionPointConfig(name="home", actions=ACTIONS, vw_args=OLD_ARGS)]
        ),
        MemoryAuditLog(),
    )


def trained(n: int = 60) -> WarmStart:
    examples = [example(i) for i in range(n)] + [example(i, dp="other") for i in range(5)]
    examples.append(example(n, activated=False))
    return warm_start(examples, NEW_ARGS, decision_point="home", source="/data/set")


def test_warm_start_learns_the_decision_points_activated_examples() -> None:
    warm = trained(60)
    assert warm.model and warm.vw_args == NEW_ARGS
    ref = warm.dataset
    assert (ref.path, ref.rows, ref.examples_learned) == ("/data/set", 61, 60)
    assert ref.start == T0 and ref.end == T0 + timedelta(seconds=60)


@pytest.mark.parametrize(
    ("vw_args", "message"),
    [("--epsilon 0.1", "--cb_explore_adf"), ("--cb_explore_adf -f out.vw", "files or servers")],
)
def test_warm_start_refuses_arguments_the_service_would(vw_args: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        warm_start([example(1)], vw_args)


def test_warm_start_refuses_a_dataset_without_the_decision_point() -> None:
    with pytest.raises(InvalidInput, match="no examples of decision point 'home'"):
        warm_start([example(1, dp="other")], NEW_ARGS, decision_point="home")


async def test_promote_publishes_the_next_version_and_configures_it(stores: Stores) -> None:
    models, points, audit = stores
    await models.publish(online(3, last_offset=41), b"online")
    warm = trained()
    estimate: dict[str, JsonValue] = {
        "estimator": "SNIPS",
        "value": 0.6,
        "lower": 0.5,
        "upper": 0.7,
    }
    stored, record = await promote(
        models, points, audit, decision_point="home", warm=warm, estimate=estimate,
        by="ana", now=T0 + timedelta(hours=1),
    )  # fmt: skip
    assert (stored.version, stored.source, stored.vw_args) == (4, "promotion", NEW_ARGS)
    assert stored.last_offset == 41  # the online learner reads on from where it is
    assert stored.examples_learned == 60
    assert stored.metrics == {"examples_total": 40.0, "reward_mean": 0.25}  # no model metrics
    assert await models.current("home") == stored
    assert await models.load(stored) == warm.model
    config = await points.get("home")
    assert config is not None and config.vw_args == NEW_ARGS and config.actions == ACTIONS
    assert await audit.records("home") == [record]
    assert record.action == "promote" and record.by == "ana" and stored.audit_id == record.audit_id
    assert (record.version, record.previous_version) == (4, 3)
    assert (record.vw_args_before, record.vw_args_after) == (OLD_ARGS, NEW_ARGS)
    assert record.dataset == warm.dataset and record.estimate == estimate


async def test_promote_first_release_of_a_decision_point(stores: Stores) -> None:
    models, points, audit = stores
    stored, record = await promote(
        models, points, audit, decision_point="home", warm=trained(), estimate=None, by="ana",
        now=T0,
    )  # fmt: skip
    assert (stored.version, stored.last_offset, record.previous_version) == (1, -1, None)


async def test_promote_retries_when_the_learner_takes_the_version(stores: Stores) -> None:
    models, points, audit = stores
    await models.publish(online(3, last_offset=41), b"v3")

    class RacingStore(MemoryModelStore):
        """The online learner publishes v4 just before the promotion's first attempt."""

        raced = False

        async def publish(self, release: ModelRelease, model: bytes) -> ModelRelease:
            if release.source == "promotion" and not self.raced:
                self.raced = True
                await super().publish(online(4, last_offset=55), b"v4")
            return await super().publish(release, model)

    racing = RacingStore()
    await racing.publish(online(3, last_offset=41), b"v3")
    stored, _ = await promote(
        racing, points, audit, decision_point="home", warm=trained(), estimate=None, by="b",
        now=T0,
    )  # fmt: skip
    assert (stored.version, stored.last_offset) == (5, 55)


async def test_promote_gives_up_on_a_store_that_always_conflicts(stores: Stores) -> None:
    _, points, audit = stores

    class Busy(MemoryModelStore):
        async def publish(self, release: ModelRelease, model: bytes) -> ModelRelease:
            raise Conflict("taken")

    with pytest.raises(Conflict, match="kept changing"):
        await promote(
            Busy(), points, audit, decision_point="home", warm=trained(), estimate=None, by="b",
            now=T0,
        )  # fmt: skip
    assert await audit.records("home") == []


async def test_promote_refuses_an_unknown_decision_point(stores: Stores) -> None:
    models, points, audit = stores
    with pytest.raises(NotFound, match="'nowhere' does not exist"):
        await promote(
            models, points, audit, decision_point="nowhere", warm=trained(), estimate=None,
            by="b", now=T0,
        )  # fmt: skip


async def test_rollback_republishes_the_previous_release(stores: Stores) -> None:
    models, points, audit = stores
    await models.publish(online(3, last_offset=41), b"three")
    await promote(
        models, points, audit, decision_point="home", warm=trained(), estimate=None, by="a",
        now=T0,
    )  # fmt: skip
    stored, record = await rollback(
        models, points, audit, decision_point="home", by="bo", now=T0 + timedelta(minutes=5)
    )
    assert (stored.version, stored.source, stored.restores_version) == (5, "rollback", 3)
    assert await models.load(stored) == b"three"
    assert stored.vw_args == OLD_ARGS and stored.examples_learned == 30
    assert stored.last_offset == 41
    config = await points.get("home")
    assert config is not None and config.vw_args == OLD_ARGS
    assert record.action == "rollback" and record.restores_version == 3
    assert (record.vw_args_before, record.vw_args_after) == (NEW_ARGS, OLD_ARGS)
    assert [r.action for r in await audit.records("home")] == ["rollback", "promote"]
    history = [h.release.version for h in await models.history("home")]
    assert history == [5, 4, 3]


async def test_rollback_to_a_named_version(stores: Stores) -> None:
    models, points, audit = stores
    for version in (1, 2, 3):
        await models.publish(online(version, last_offset=version * 10), f"m{version}".encode())
    stored, _ = await rollback(
        models, points, audit, decision_point="home", to_version=1, by="x", now=T0
    )
    assert (stored.version, stored.restores_version, stored.last_offset) == (4, 1, 30)
    assert await models.load(stored) == b"m1"


async def test_rollback_refusals(stores: Stores) -> None:
    models, points, audit = stores
    with pytest.raises(NotFound, match="no model releases"):
        await rollback(models, points, audit, decision_point="home", by="x", now=T0)
    await models.publish(online(1, last_offset=1), b"m1")
    with pytest.raises(InvalidInput, match="only one release"):
        await rollback(models, points, audit, decision_point="home", by="x", now=T0)
    await models.publish(online(2, last_offset=2), b"m2")
    with pytest.raises(NotFound, match=r"no release v9 in its history \(v1..v2\)"):
        await rollback(models, points, audit, decision_point="home", to_version=9, by="x", now=T0)
    with pytest.raises(InvalidInput, match="current release"):
        await rollback(models, points, audit, decision_point="home", to_version=2, by="x", now=T0)
    assert await audit.records("home") == []


async def test_rollback_refuses_a_pruned_model(stores: Stores) -> None:
    _, points, audit = stores
    models = MemoryModelStore(keep=2)
    for version in (1, 2, 3, 4):
        await models.publish(online(version, last_offset=version), b"m")
    with pytest.raises(InvalidInput, match=r"no longer stored .* choose one of v4, v3"):
        await rollback(models, points, audit, decision_point="home", to_version=1, by="x", now=T0)


async def test_a_rollback_target_survives_pruning_when_pinned(stores: Stores) -> None:
    """A promotion keeps its bytes however many online releases follow: it can be restored."""
    _, points, audit = stores
    models = MemoryModelStore(keep=2)
    await models.publish(online(1, last_offset=1), b"m1")
    promoted, _ = await promote(
        models, points, audit, decision_point="home", warm=trained(), estimate=None, by="a",
        now=T0,
    )  # fmt: skip
    for version in range(3, 9):
        await models.publish(online(version, last_offset=version, vw_args=NEW_ARGS), b"m")
    stored, _ = await rollback(
        models, points, audit, decision_point="home", to_version=promoted.version, by="a", now=T0
    )
    assert await models.load(stored) == await models.load(promoted)


async def test_the_release_a_promotion_replaced_stays_restorable(stores: Stores) -> None:
    _, points, audit = stores
    models = MemoryModelStore(keep=2)
    await models.publish(online(1, last_offset=1), b"before")
    await promote(
        models, points, audit, decision_point="home", warm=trained(), estimate=None, by="a",
        now=T0,
    )  # fmt: skip
    for version in range(3, 9):
        await models.publish(online(version, last_offset=version, vw_args=NEW_ARGS), b"m")
    stored, _ = await rollback(
        models, points, audit, decision_point="home", to_version=1, by="a", now=T0
    )
    assert await models.load(stored) == b"before"
