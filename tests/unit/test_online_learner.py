"""The online learner core: exactly-once learning, release cadence, restore, and that it learns."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from learnloop.clock import FakeClock
from learnloop.decision_points import MemoryDecisionPointStore
from learnloop.errors import Unavailable
from learnloop.eventlog import Append, MemoryEventLog, Streams
from learnloop.featurizer import CachedFeaturizer
from learnloop.featurizer import labelled as labelled_lines
from learnloop.modelstore import MemoryModelStore
from learnloop.policy import VWPolicy
from online_learner.embedded_runner import EmbeddedLearnerRunner
from online_learner.learner import OnlineLearner
from online_learner.releases import publish_due, resume
from schemas import Action, Context, DecisionEvent, DecisionPointConfig, JoinedExample
from schemas.config import DEFAULT_VW_ARGS
from schemas.events import CloseReason, ModelRelease

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ACTIONS = [Action(id="A"), Action(id="B"), Action(id="C")]
BEST = {"a": 0, "b": 1, "c": 2}  # the synthetic problem: the best action depends on x


def config(name: str = "home", vw_args: str = DEFAULT_VW_ARGS) -> DecisionPointConfig:
    return DecisionPointConfig(name=name, actions=ACTIONS, vw_args=vw_args)


def joined(
    n: int,
    x: str = "a",
    chosen: int = 0,
    reward: float = 1.0,
    decision_point: str = "home",
    probability: float = 1 / 3,
    close_reason: CloseReason = "outcome",
) -> JoinedExample:
    probabilities = [(1 - probability) / 2] * 3
    probabilities[chosen] = probability
    decision = DecisionEvent(
        event_id=f"{decision_point}-e{n}",
        timestamp=T0,
        decision_point=decision_point,
        context=Context(features={"x": x}),
        persona="visitor",
        actions=ACTIONS,
        chosen_index=chosen,
        probabilities=probabilities,
        model_version="0",
    )
    return JoinedExample(
        event_id=decision.event_id,
        timestamp=T0,
        decision=decision,
        reward=reward,
        close_reason=close_reason,
    )


def synthetic(count: int, seed: int = 7) -> list[JoinedExample]:
    """Uniform logging over 3 actions; reward 1 for the context's best action, else 0."""
    rng = random.Random(seed)
    examples = []
    for n in range(count):
        x, chosen = rng.choice("abc"), rng.randrange(3)
        examples.append(joined(n, x, chosen, float(chosen == BEST[x])))
    return examples


def greedy(learner: OnlineLearner, x: str) -> int:
    policy = learner.policy("home")
    assert policy is not None
    pmf = policy.predict(Context(features={"x": x}), "visitor", ACTIONS)
    return max(range(len(pmf)), key=pmf.__getitem__)


# -- exactly once -------------------------------------------------------------------


def test_feeding_the_same_offsets_twice_learns_each_example_once() -> None:
    learner = OnlineLearner({"home": config()})
    examples = synthetic(10)
    assert [learner.learn(e, offset) for offset, e in enumerate(examples)] == [True] * 10
    assert [learner.learn(e, offset) for offset, e in enumerate(examples)] == [False] * 10
    release, _ = learner.make_release("home", T0)
    assert release.examples_learned == 10
    assert release.last_offset == 9
    assert release.metrics["duplicates_skipped"] == 10
    assert release.metrics["examples_total"] == 10


def test_a_duplicate_event_id_at_a_new_offset_is_skipped() -> None:
    learner = OnlineLearner({"home": config()})
    assert learner.learn(joined(1), 0)
    assert not learner.learn(joined(1), 5)  # e.g. a producer retry wrote it twice
    assert learner.pending("home") == 1
    assert learner.metrics("home")["duplicates_skipped"] == 1


def test_unlearnable_examples_and_unknown_decision_points_are_skipped_and_counted() -> None:
    learner = OnlineLearner({"home": config()})
    assert not learner.learn(joined(1, probability=0.0), 0)
    assert not learner.learn(joined(2, decision_point="nowhere"), 1)
    assert learner.learn(joined(3), 2)
    assert learner.metrics("home")["invalid_skipped"] == 1
    assert learner.unknown_skipped == 1
    assert learner.pending("home") == 1


def test_counters_reward_averages_and_close_reasons() -> None:
    learner = OnlineLearner({"home": config()}, recent_weight=0.5)
    learner.learn(joined(1, reward=3.0, close_reason="outcome"), 0)
    learner.learn(joined(2, reward=0.0, close_reason="default"), 1)
    learner.learn(joined(3, reward=0.0, close_reason="default"), 2)
    metrics = learner.metrics("home")
    assert metrics["reward_mean"] == pytest.approx(1.0)
    assert metrics["reward_recent"] == pytest.approx(0.75)  # 3 -> 1.5 -> 0.75
    assert metrics["learn_per_second"] > 0
    assert (metrics["close_outcome"], metrics["close_default"], metrics["close_direct"]) == (
        1.0,
        2.0,
        0.0,
    )


def test_a_lookup_function_works_as_config_source() -> None:
    configs = {"home": config()}
    learner = OnlineLearner(configs.__getitem__)  # raises KeyError for unknown names
    assert learner.learn(joined(1), 0)
    assert not learner.learn(joined(2, decision_point="nowhere"), 1)
    assert learner.unknown_skipped == 1


# -- release cadence ----------------------------------------------------------------


def test_release_is_due_after_enough_examples() -> None:
    learner = OnlineLearner({"home": config()}, release_every_examples=5, release_every_seconds=60)
    for offset, example in enumerate(synthetic(4)):
        learner.learn(example, offset)
    assert learner.due_releases(0.0) == []
    learner.learn(joined(99), 4)
    assert learner.due_releases(0.0) == ["home"]


async def test_release_is_due_after_enough_time_and_only_with_new_examples() -> None:
    clock, store = FakeClock(T0), MemoryModelStore()
    learner = OnlineLearner({"home": config()}, release_every_examples=1000)
    assert learner.due_releases(clock.monotonic()) == []  # nothing learned: nothing due
    learner.learn(joined(1), 0)
    assert learner.due_releases(clock.monotonic()) == []  # the timer starts now
    clock.advance(0.5)
    assert await publish_due(learner, store, clock) == []
    clock.advance(0.5)
    published = await publish_due(learner, store, clock)
    assert [r.version for r in published] == [1]
    clock.advance(5)
    assert learner.due_releases(clock.monotonic()) == []  # no new examples
    learner.learn(joined(2), 1)
    assert learner.due_releases(clock.monotonic()) == ["home"]  # and long past the last release


async def test_versions_increase_and_the_store_holds_the_latest() -> None:
    clock, store = FakeClock(T0), MemoryModelStore()
    learner = OnlineLearner({"home": config()}, release_every_examples=3)
    examples = synthetic(9)
    for offset, example in enumerate(examples):
        learner.learn(example, offset)
        await publish_due(learner, store, clock)
    current = await store.current("home")
    assert current is not None
    assert (current.version, current.examples_learned, current.last_offset) == (3, 9, 8)
    assert current.event_id == "home-v3"
    assert current.metrics["learn_per_second"] > 0


class FlakyStore(MemoryModelStore):
    """Fails its first publish, like a full disk or a Redis restart."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def publish(self, release: ModelRelease, model: bytes) -> ModelRelease:
        if self.failures:
            self.failures -= 1
            raise Unavailable("disk full")
        return await super().publish(release, model)


async def test_a_failed_publish_is_retried_under_the_same_version() -> None:
    clock, store = FakeClock(T0), FlakyStore()
    learner = OnlineLearner({"home": config()}, release_every_examples=1)
    learner.learn(joined(1), 0)
    with pytest.raises(Unavailable):
        await publish_due(learner, store, clock)
    assert learner.pending("home") == 1
    [release] = await publish_due(learner, store, clock)
    assert (release.version, release.examples_learned) == (1, 1)
    assert learner.pending("home") == 0


def test_examples_learned_while_publishing_stay_pending() -> None:
    learner = OnlineLearner({"home": config()})
    learner.learn(joined(1), 0)
    release, _ = learner.make_release("home", T0)
    learner.learn(joined(2), 1)  # arrives while the store writes
    learner.mark_released(release, 0.0)
    assert learner.pending("home") == 1


# -- restore and restart ------------------------------------------------------------


async def test_restore_continues_versions_and_predicts_like_the_original() -> None:
    clock, store = FakeClock(T0), MemoryModelStore()
    original = OnlineLearner({"home": config()}, release_every_examples=50)
    for offset, example in enumerate(synthetic(100)):
        original.learn(example, offset)
        await publish_due(original, store, clock)

    restarted = OnlineLearner({"home": config()})
    assert await resume(restarted, store, ["home"]) == 99
    for x in "abc":
        context = Context(features={"x": x})
        restored, live = restarted.policy("home"), original.policy("home")
        assert restored is not None and live is not None
        assert restored.predict(context, "visitor", ACTIONS) == live.predict(
            context, "visitor", ACTIONS
        )
    restarted.learn(joined(1000), 100)
    release, _ = restarted.make_release("home", T0)
    assert (release.version, release.examples_learned) == (3, 101)
    assert release.metrics["examples_total"] == 101


async def test_restart_relearns_exactly_what_the_stored_model_lacks() -> None:
    clock, store = FakeClock(T0), MemoryModelStore()
    examples = synthetic(15)
    crashed = OnlineLearner({"home": config()}, release_every_examples=10)
    for offset, example in enumerate(examples):
        crashed.learn(example, offset)
        await publish_due(crashed, store, clock)  # releases after offset 9; 10..14 unreleased

    restarted = OnlineLearner({"home": config()}, release_every_examples=10)
    after = await resume(restarted, store, ["home"])
    assert after == 9
    # The runner may start reading earlier (to refill the duplicate memory): no harm done.
    replay = [(offset, e) for offset, e in enumerate(examples) if offset > after - 3]
    learned = [restarted.learn(example, offset) for offset, example in replay]
    assert learned == [False] * 3 + [True] * 5
    release, _ = restarted.make_release("home", T0)
    assert release.examples_learned == 15

    straight = OnlineLearner({"home": config()})
    for offset, example in enumerate(examples):
        straight.learn(example, offset)
    # The same model as if nothing had crashed (the model files differ only in VW's
    # bookkeeping counters, so compare what the models do).
    for x in "abcd":
        context = Context(features={"x": x})
        resumed_policy, straight_policy = restarted.policy("home"), straight.policy("home")
        assert resumed_policy is not None and straight_policy is not None
        assert resumed_policy.predict(context, "visitor", ACTIONS) == straight_policy.predict(
            context, "visitor", ACTIONS
        )


async def test_resume_starts_from_the_least_advanced_decision_point() -> None:
    store, clock = MemoryModelStore(), FakeClock(T0)
    configs = {"home": config("home"), "flag": config("flag")}
    learner = OnlineLearner(configs, release_every_examples=1)
    learner.learn(joined(1, decision_point="home"), 4)
    learner.learn(joined(2, decision_point="flag"), 7)
    await publish_due(learner, store, clock)
    assert await resume(OnlineLearner(configs), store, ["home", "flag"]) == 4
    assert await resume(OnlineLearner(configs), store, ["home", "flag", "new"]) == -1
    assert await resume(OnlineLearner(configs), store, []) == -1


# -- promotion: a vw_args change ----------------------------------------------------


def test_changed_vw_args_start_a_fresh_model_and_versions_continue() -> None:
    configs = {"home": config(vw_args="--cb_explore_adf --epsilon 0.1")}
    learner = OnlineLearner(configs)
    for offset, example in enumerate(synthetic(10)):
        learner.learn(example, offset)
    first, _ = learner.make_release("home", T0)
    learner.mark_released(first, 0.0)
    old_policy = learner.policy("home")

    configs["home"] = config(vw_args="  --cb_explore_adf   --epsilon 0.1 ")  # same setting
    learner.learn(joined(100), 10)
    assert learner.policy("home") is old_policy

    configs["home"] = config(vw_args="--cb_explore_adf --epsilon 0.2 -q ::")  # promotion
    learner.learn(joined(101), 11)
    assert learner.policy("home") is not old_policy
    release, _ = learner.make_release("home", T0)
    assert release.vw_args == "--cb_explore_adf --epsilon 0.2 -q ::"
    assert (release.version, release.examples_learned) == (2, 1)
    assert release.metrics["fresh_models"] == 1
    assert release.metrics["examples_total"] == 12


# -- featurizing and learning -------------------------------------------------------


def test_cached_featurizer_tells_true_from_one() -> None:
    cached = CachedFeaturizer()
    flag, number = Action(id="p", features={"new": True}), Action(id="p", features={"new": 1.0})
    context = Context(features={"on": True})
    assert cached.example(context, "visitor", [flag])[1] == "|a id=p new=true"
    assert cached.example(context, "visitor", [number])[1] == "|a id=p new:1.0"
    assert (
        cached.example(Context(features={"on": 1}), "visitor", [])[0]
        != (cached.example(context, "visitor", [])[0])
    )


def test_learns_the_best_action_per_context_on_a_synthetic_problem() -> None:
    learner = OnlineLearner({"home": config()})
    for offset, example in enumerate(synthetic(2000, seed=11)):
        learner.learn(example, offset)
    assert {x: greedy(learner, x) for x in "abc"} == BEST
    metrics = learner.metrics("home")
    # A uniformly random policy is worth 1/3, and its IPS estimate from these 250 samples
    # (every 8th example) has a standard error of about 0.03: 0.6 is out of chance's reach.
    assert metrics["ips_samples"] == 2000  # every example is scored before it is learned
    assert metrics["ips_reward"] > 0.6
    assert metrics["reward_mean"] == pytest.approx(1 / 3, abs=0.05)  # the logging policy's value


# -- what a release holds and what a reload keeps --------------------------------------


class RecordingStore(MemoryModelStore):
    """A memory store that remembers every release published to it, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[ModelRelease] = []

    async def publish(self, release: ModelRelease, model: bytes) -> ModelRelease:
        stored = await super().publish(release, model)
        self.published.append(stored)
        return stored


@pytest.mark.parametrize(
    ("every", "batch_size", "released_at"),
    [
        (25, 500, list(range(25, 301, 25))),  # one read, cut twelve times
        (100, 500, [100, 200, 300]),
        (100, 40, [100, 200, 300]),  # reads smaller than the cadence
        (1000, 500, []),  # not due by count; the timer has not run out either
    ],
)
async def test_the_runner_releases_every_n_examples_whatever_the_batch(
    every: int, batch_size: int, released_at: list[int]
) -> None:
    """A count release holds exactly ``every`` new examples: the served model's lag in
    examples must not depend on how many examples one poll of the log found."""
    log, store = MemoryEventLog(), RecordingStore()
    await log.append(
        [
            Append(Streams.JOINED, e.model_dump_json().encode(), key=e.event_id)
            for e in synthetic(300)
        ]
    )
    points = MemoryDecisionPointStore([config()])
    runner = EmbeddedLearnerRunner(
        log, store, points, clock=FakeClock(T0), release_every_examples=every,
        batch_size=batch_size,
    )  # fmt: skip
    await runner.start()
    while await runner.step():
        pass
    assert [r.examples_learned for r in store.published] == released_at
    assert runner.offset == 299


@pytest.mark.parametrize(
    "vw_args",
    [
        DEFAULT_VW_ARGS,  # --gamma_scale too must survive the file, or served copies explore
        "--cb_explore_adf --squarecb -q ca -q ua",  # differently from the learner
        "--cb_explore_adf --squarecb --cubic cca -q ca -l 1 --power_t 0.3",
        "--cb_explore_adf --epsilon 0.1",
    ],
)
def test_a_reloaded_model_goes_on_learning_exactly_like_the_original(vw_args: str) -> None:
    """Suspect (b) of issue 8: VW 9 saves with resume state (adaptive and normalised
    accumulators, example counters that squarecb's gamma schedule reads), so a served
    or restored copy is the same learner, not a fresh-learning-rate one."""
    featurize = CachedFeaturizer()

    def lines(example: JoinedExample) -> list[str]:
        d = example.decision
        labelled = featurize.example(d.context, d.persona, d.actions)
        return labelled_lines(labelled, d.chosen_index, example.reward, d.chosen_probability)

    examples = synthetic(600, seed=3)
    original = VWPolicy(vw_args)
    for example in examples[:300]:
        original.learn_lines(lines(example))
    reloaded = VWPolicy(vw_args, model=original.to_bytes())
    for example in examples[300:]:
        # learn_lines returns the pmf before the update: every step is compared.
        assert reloaded.learn_lines(lines(example)) == original.learn_lines(lines(example))


def test_predicting_changes_nothing_a_learner_will_learn() -> None:
    """The in-process anchor serves from the learning workspace itself
    (``run_in_process(release_every=1)``): that is only the same learner if VW's
    predict leaves its state alone."""
    featurize = CachedFeaturizer()
    quiet, asked = VWPolicy(DEFAULT_VW_ARGS), VWPolicy(DEFAULT_VW_ARGS)
    for example in synthetic(400, seed=5):
        d = example.decision
        lines = featurize.example(d.context, d.persona, d.actions)
        asked.predict_lines(lines)
        labelled = labelled_lines(lines, d.chosen_index, example.reward, d.chosen_probability)
        assert asked.learn_lines(labelled) == quiet.learn_lines(labelled)


def with_arm(example: JoinedExample, arm: str) -> JoinedExample:
    decision = example.decision.model_copy(update={"arm": arm, "probabilities": [1.0, 0.0, 0.0]})
    return example.model_copy(update={"decision": decision})


def test_logging_only_examples_are_counted_never_learned() -> None:
    learner = OnlineLearner({"home": config()})
    assert not learner.learn(with_arm(joined(0, chosen=0), "logging"), 0)
    assert learner.learn(joined(1), 1)
    metrics = learner.metrics("home")
    assert metrics["logging_skipped"] == 1.0 and metrics["examples_total"] == 1.0
    assert learner.pending("home") == 1


def test_apprentice_counts_imitation_and_survives_a_restore() -> None:
    """The learner scores each apprentice example before learning it: once it has learned
    that the baseline (action A) pays in context a, its own choice imitates the baseline."""
    learner = OnlineLearner({"home": config()})
    offset = 0
    for n in range(300):
        x, reward = ("a", 1.0) if n % 2 == 0 else ("b", 0.0)
        example = with_arm(joined(n, x=x, chosen=0, reward=reward), "apprentice")
        assert learner.learn(example, offset)
        offset += 1
    metrics = learner.metrics("home")
    assert metrics["apprentice_events"] == 300.0
    assert metrics["apprentice_reward_sum"] == 150.0
    # Context a: the model learns A pays 1, others 0: it imitates; the later half of the
    # rewarded events are nearly all imitated.
    assert metrics["apprentice_imitated_reward_sum"] >= 140.0
    assert metrics["apprentice_last_event_time"] == T0.timestamp()
    release, model = learner.make_release("home", T0)
    restored = OnlineLearner({"home": config()})
    restored.restore(release, model)
    assert restored.metrics("home")["apprentice_events"] == 300.0
    restored.learn(with_arm(joined(900, x="a", chosen=0), "apprentice"), offset)
    assert restored.metrics("home")["apprentice_events"] == 301.0
