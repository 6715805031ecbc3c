"""The online learner's core: one incremental VW model per decision point.

Pure with respect to the outside world: no log, no store, no clock. A runner
feeds it joined examples with the log offset each came from, asks
``due_releases(now)`` which models should be published, snapshots them with
``make_release`` and, once the store has them, tells it ``mark_released``
(see :func:`online_learner.releases.publish_due` for the commit order).

Exactly once, relative to the model: an example is learned only if its offset
is greater than the last offset applied for its decision point (offsets of one
decision point are strictly increasing in the log) and its ``event_id`` is not
in a bounded memory of recently seen ids (a duplicate written at another
offset). A restored release carries ``last_offset``, so replaying the log from
there relearns exactly what the stored model lacks.

A release the learner did not make (a promotion, a rollback) is *adopted*
(:meth:`OnlineLearner.adopt`): its model replaces the live one and the learner
goes on from where it is reading, so the next release is that model plus the
examples that followed.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import get_args

from learnloop import featurizer
from learnloop.errors import InvalidInput, NotFound
from learnloop.policy import VWPolicy
from learnloop.settings import DEFAULTS
from online_learner.apprentice import ApprenticeCounts
from schemas.config import DecisionPointConfig
from schemas.events import CloseReason, JoinedExample, ModelRelease

logger = logging.getLogger(__name__)

ConfigSource = Callable[[str], DecisionPointConfig | None] | Mapping[str, DecisionPointConfig]
CLOSE_REASONS: tuple[str, ...] = get_args(CloseReason)


def same_vw_args(left: str, right: str) -> bool:
    """Whether two VW argument strings are the same setting (whitespace aside).

    >>> same_vw_args("--cb_explore_adf  -q ::", " --cb_explore_adf -q ::")
    True
    """
    return left.split() == right.split()


@dataclass(slots=True)
class _Model:
    """One VW workspace and what it has learned since it was created (or restored)."""

    policy: VWPolicy
    generation: int
    examples_learned: int = 0
    released_examples: int = 0  # examples_learned at the last release of this model
    ips_sum: float = 0.0
    ips_samples: int = 0


@dataclass(slots=True)
class _DecisionPointState:
    """Everything the learner tracks for one decision point."""

    model: _Model
    config_vw_args: str  # raw config string last checked against the model (fast path)
    version: int = 0  # last published version
    last_offset: int = -1
    examples_total: int = 0  # across models: the denominator of reward_mean
    reward_sum: float = 0.0
    reward_recent: float = 0.0
    close_reasons: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLOSE_REASONS, 0))
    duplicates_skipped: int = 0
    invalid_skipped: int = 0
    fresh_models: int = 0  # times a vw_args change started a new model
    logging_skipped: int = 0  # examples of the logging-only arm: logged, never learned
    apprentice: ApprenticeCounts = field(default_factory=ApprenticeCounts)
    window_examples: int = 0  # throughput since the last snapshot
    window_seconds: float = 0.0
    learn_per_second: float = 0.0
    release_clock: float | None = None  # monotonic time of the last release (or first wait)
    in_flight: tuple[int, int, int] | None = None  # (version, generation, examples) snapshot


class OnlineLearner:
    """Learns joined examples into one VW model per decision point and decides when to release.

    Parameters
    ----------
    configs:
        The decision points' configurations, as a mapping or a lookup function
        (returning ``None`` or raising ``KeyError``/``NotFound`` for unknown names).
        Looked up on every example, so a changed ``vw_args`` (a promotion) is
        seen at once and starts a fresh model.
    release_every_examples, release_every_seconds:
        A model with new examples is due when either many examples arrived or
        enough time passed since its last release.
    dedupe_window:
        How many recent event ids are remembered to skip duplicates that arrive
        at a different offset.
    recent_weight:
        Weight of the newest reward in the exponentially weighted ``reward_recent``.
    timer:
        Measures learn time for the throughput metric only (never for decisions).
    """

    def __init__(
        self,
        configs: ConfigSource,
        release_every_examples: int = DEFAULTS.release_every_examples,
        release_every_seconds: float = DEFAULTS.release_every_seconds,
        dedupe_window: int = 100_000,
        recent_weight: float = 0.01,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        if release_every_examples < 1 or release_every_seconds <= 0:
            raise InvalidInput("release_every_examples must be >= 1 and release_every_seconds > 0")
        if dedupe_window < 1 or not 0 < recent_weight <= 1:
            raise InvalidInput("dedupe_window must be >= 1 and recent_weight in (0, 1]")
        self.configs = configs
        self.release_every_examples = release_every_examples
        self.release_every_seconds = release_every_seconds
        self.dedupe_window = dedupe_window
        self.recent_weight = recent_weight
        self.timer = timer
        self._states: dict[str, _DecisionPointState] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._featurizer = featurizer.CachedFeaturizer()
        self._generations = 0
        self.unknown_skipped = 0  # examples for decision points without a config
        # Looked up once per example: bind the lookup once, not an isinstance per call.
        self._config: Callable[[str], DecisionPointConfig | None] = (
            configs.get if isinstance(configs, Mapping) else self._call_configs
        )

    # -- configuration and models -------------------------------------------------

    def _call_configs(self, decision_point: str) -> DecisionPointConfig | None:
        try:
            return self.configs(decision_point)  # type: ignore[operator]  # not a Mapping here
        except (KeyError, NotFound):
            return None

    def _new_model(self, policy: VWPolicy) -> _Model:
        self._generations += 1
        return _Model(policy=policy, generation=self._generations)

    def restore(self, release: ModelRelease, model: bytes) -> None:
        """Continue from a published release: its model, version, offset and counters."""
        policy = VWPolicy(release.vw_args, model)
        restored = self._new_model(policy)
        restored.examples_learned = restored.released_examples = release.examples_learned
        m = release.metrics
        restored.ips_samples = int(m.get("ips_samples", 0))
        restored.ips_sum = m.get("ips_reward", 0.0) * restored.ips_samples
        total = int(m.get("examples_total", release.examples_learned))
        old = self._states.pop(release.decision_point, None)
        if old is not None:
            old.model.policy.close()
        self._states[release.decision_point] = _DecisionPointState(
            model=restored,
            config_vw_args=release.vw_args,
            version=release.version,
            last_offset=release.last_offset,
            examples_total=total,
            reward_sum=m.get("reward_mean", 0.0) * total,
            reward_recent=m.get("reward_recent", 0.0),
            close_reasons={r: int(m.get(f"close_{r}", 0)) for r in CLOSE_REASONS},
            duplicates_skipped=int(m.get("duplicates_skipped", 0)),
            invalid_skipped=int(m.get("invalid_skipped", 0)),
            fresh_models=int(m.get("fresh_models", 0)),
            logging_skipped=int(m.get("logging_skipped", 0)),
            apprentice=ApprenticeCounts.from_metrics(m),
        )
        if release.source != "online":
            # A promotion or rollback changes the configured vw_args right after it
            # publishes; restored in between, the change to come names this model's
            # own arguments and must not start a fresh model (see ``adopt``).
            self._check_config_as_seen(release)

    def _check_config_as_seen(self, release: ModelRelease) -> None:
        config = self._config(release.decision_point)
        state = self._states[release.decision_point]
        state.config_vw_args = config.vw_args if config is not None else release.vw_args

    def adopt(self, release: ModelRelease, model: bytes) -> None:
        """Continue from a release another writer published (a promotion or a rollback).

        Its model, version and ``examples_learned`` replace the live model's; the
        learner keeps its read position (the later of its own offset and the
        release's) and its stream counters (rewards, close reasons, skips). The
        examples the live model learned since its last release are dropped with it:
        the adopted model was trained on the data its publisher chose.

        The configured ``vw_args`` seen now is remembered as checked: promote and
        rollback publish the release *before* they change the decision point's
        ``vw_args``, and that change, when it comes, names the adopted model's own
        arguments, so it must not start a fresh model.
        """
        state = self._states.get(release.decision_point)
        if state is None:
            self.restore(release, model)
            state = self._states[release.decision_point]
        else:
            adopted = self._new_model(VWPolicy(release.vw_args, model))
            adopted.examples_learned = adopted.released_examples = release.examples_learned
            state.model.policy.close()
            state.model = adopted
            state.version = max(state.version, release.version)
            state.last_offset = max(state.last_offset, release.last_offset)
            state.in_flight = None
        self._check_config_as_seen(release)

    def version(self, decision_point: str) -> int:
        """The last version this learner published or restored (0 before any)."""
        state = self._states.get(decision_point)
        return 0 if state is None else state.version

    def _state_for(self, decision_point: str, config: DecisionPointConfig) -> _DecisionPointState:
        """The decision point's state, with a fresh model if none exists or vw_args changed."""
        state = self._states.get(decision_point)
        if state is None:
            state = _DecisionPointState(
                model=self._new_model(VWPolicy(config.vw_args)), config_vw_args=config.vw_args
            )
            self._states[decision_point] = state
        elif config.vw_args != state.config_vw_args:
            state.config_vw_args = config.vw_args
            if not same_vw_args(config.vw_args, state.model.policy.vw_args):
                logger.info(
                    "decision point %s: vw_args changed from %r to %r, starting a fresh model",
                    decision_point,
                    state.model.policy.vw_args,
                    config.vw_args,
                )
                state.model.policy.close()
                state.model = self._new_model(VWPolicy(config.vw_args))
                state.fresh_models += 1
        return state

    def policy(self, decision_point: str) -> VWPolicy | None:
        """The live model of a decision point, for inspection (do not learn on it directly)."""
        state = self._states.get(decision_point)
        return None if state is None else state.model.policy

    # -- learning -----------------------------------------------------------------

    def _remember(self, event_id: str) -> None:
        self._seen[event_id] = None
        if len(self._seen) > self.dedupe_window:
            self._seen.popitem(last=False)

    def learn(self, example: JoinedExample, offset: int) -> bool:
        """Learn one joined example read at ``offset``; ``False`` if it was skipped.

        Skipped, and counted: offsets already applied, event ids seen recently,
        examples VW cannot learn (a probability outside (0, 1], a chosen index
        outside the actions), and decision points without a configuration.
        """
        decision = example.decision
        decision_point = decision.decision_point
        state = self._states.get(decision_point)
        if state is not None and offset <= state.last_offset:
            # Already in the model. Remember the id: a restart replays from an earlier
            # offset, and these skips rebuild the duplicate memory for what follows.
            state.duplicates_skipped += 1
            self._remember(example.event_id)
            return False
        config = self._config(decision_point)
        if config is None:
            self.unknown_skipped += 1
            if self.unknown_skipped % 10_000 == 1:
                logger.warning(
                    "skipping examples of unconfigured decision point %r", decision_point
                )
            return False
        if state is None or config.vw_args != state.config_vw_args:
            state = self._state_for(decision_point, config)
        state.last_offset = offset
        if example.event_id in self._seen:
            state.duplicates_skipped += 1
            return False
        self._remember(example.event_id)
        if decision.arm == "logging":
            state.logging_skipped += 1  # logging-only mode: kept for offline use only
            return False
        index, probabilities = decision.chosen_index, decision.probabilities
        probability = probabilities[index] if 0 <= index < len(probabilities) else 0.0
        if not 0.0 < probability <= 1.0 or len(probabilities) != len(decision.actions):
            state.invalid_skipped += 1  # VW would divide by it: unlearnable
            return False

        started = self.timer()
        model = state.model
        reward = example.reward
        lines = self._featurizer.example(decision.context, decision.persona, decision.actions)
        # Progressive validation for free: VW scores the example on its way into learn,
        # before the update, so this is the model's pmf on data it has not seen.
        pmf = model.policy.learn_lines(featurizer.labelled(lines, index, reward, probability))
        total = sum(pmf)
        if total > 0:
            model.ips_sum += reward * (pmf[index] / total) / probability
            model.ips_samples += 1
        model.examples_learned += 1
        if decision.arm == "apprentice":
            state.apprentice.add(pmf, index, reward, decision.timestamp)

        state.examples_total += 1
        state.reward_sum += reward
        if state.examples_total == 1:
            state.reward_recent = reward
        else:
            state.reward_recent += self.recent_weight * (reward - state.reward_recent)
        state.close_reasons[example.close_reason] += 1
        state.window_examples += 1
        state.window_seconds += self.timer() - started
        return True

    # -- releases -----------------------------------------------------------------

    def pending(self, decision_point: str) -> int:
        """Examples the live model learned since its last release."""
        state = self._states.get(decision_point)
        if state is None:
            return 0
        return state.model.examples_learned - state.model.released_examples

    def due_releases(self, now_monotonic: float) -> list[str]:
        """Decision points whose model has new examples and whose release is due.

        Due when ``release_every_examples`` examples are pending, or when
        ``release_every_seconds`` passed since the last release. A model never
        released yet starts its timer at the first call that sees it pending.
        """
        due: list[str] = []
        for name, state in self._states.items():
            pending = state.model.examples_learned - state.model.released_examples
            if pending <= 0:
                continue
            if state.release_clock is None:
                state.release_clock = now_monotonic
            waited = now_monotonic - state.release_clock
            if pending >= self.release_every_examples or waited >= self.release_every_seconds:
                due.append(name)
        return due

    def _require(self, decision_point: str) -> _DecisionPointState:
        state = self._states.get(decision_point)
        if state is None:
            raise NotFound(f"the online learner has no model for decision point {decision_point!r}")
        return state

    def metrics(self, decision_point: str) -> dict[str, float]:
        """The decision point's counters, as stored in ``ModelRelease.metrics``."""
        state = self._require(decision_point)
        model = state.model
        total = state.examples_total
        metrics = {
            "examples_total": float(total),
            "reward_mean": state.reward_sum / total if total else 0.0,
            "reward_recent": state.reward_recent,
            "ips_reward": model.ips_sum / model.ips_samples if model.ips_samples else 0.0,
            "ips_samples": float(model.ips_samples),
            "duplicates_skipped": float(state.duplicates_skipped),
            "invalid_skipped": float(state.invalid_skipped),
            "fresh_models": float(state.fresh_models),
            "logging_skipped": float(state.logging_skipped),
            **state.apprentice.metrics(),
            "learn_per_second": (
                state.window_examples / state.window_seconds
                if state.window_seconds > 0
                else state.learn_per_second
            ),
        }
        for reason, count in state.close_reasons.items():
            metrics[f"close_{reason}"] = float(count)
        return metrics

    def make_release(self, decision_point: str, now: datetime) -> tuple[ModelRelease, bytes]:
        """Snapshot the decision point's model as the next release (not yet published).

        ``model_location`` is left empty: the store fills it in.
        """
        state = self._require(decision_point)
        model = state.model
        version = state.version + 1
        data = model.policy.to_bytes()
        metrics = self.metrics(decision_point)
        state.learn_per_second = metrics["learn_per_second"]
        state.window_examples, state.window_seconds = 0, 0.0  # next window starts now
        release = ModelRelease(
            event_id=f"{decision_point}-v{version}",
            timestamp=now,
            decision_point=decision_point,
            version=version,
            vw_args=model.policy.vw_args,
            model_location="",
            examples_learned=model.examples_learned,
            last_offset=state.last_offset,
            metrics=metrics,
        )
        state.in_flight = (version, model.generation, model.examples_learned)
        return release, data

    def mark_released(self, release: ModelRelease, now_monotonic: float) -> None:
        """Record that ``release`` (from ``make_release``) is now the store's current release."""
        state = self._require(release.decision_point)
        state.version = max(state.version, release.version)
        state.release_clock = now_monotonic
        if state.in_flight is not None and state.in_flight[0] == release.version:
            _, generation, examples = state.in_flight
            # Examples learned while the store was writing stay pending; a model that
            # was replaced meanwhile (vw_args change) keeps all its examples pending.
            if generation == state.model.generation:
                state.model.released_examples = examples
            state.in_flight = None

    def close(self) -> None:
        """Free every VW workspace."""
        for state in self._states.values():
            state.model.policy.close()
        self._states.clear()
