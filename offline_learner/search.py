"""Policy search: which VW settings would have done best on the later part of the log?

Optuna (seeded TPE, in-memory study) samples an exploration algorithm, interactions,
learning rate, ``power_t`` and ``cb_type`` per trial (:class:`SearchSpace`). Each trial
is fitted on the earlier part of a temporal split, then scored progressively on the
later part (it keeps learning, as it would online) next to the current policy's
arguments, fitted the same way. Trials are ranked by the lower bound of the paired
difference trial minus current: a setting is only called better when the interval of
its advantage lies above zero. A trial VW refuses is recorded as failed, never fatal.

Both parts are featurized once and their labelled lines kept in memory when the split
has at most ``cache_rows`` examples; beyond that every trial featurizes the parts
again (memory stays bounded, trials get slower). The later part's numbers a trial
needs from outside itself (rewards, propensities, the reward model's predictions, the
current policy's terms) are computed once, a few floats per example.
"""

from __future__ import annotations

import itertools
import math
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from learnloop.errors import InvalidInput
from learnloop.featurizer import CachedFeaturizer
from learnloop.policy import VWPolicy
from offline_learner.candidates import LoggedPolicy, VWCandidate
from offline_learner.estimators import StreamingEstimates
from offline_learner.replay import DEFAULT_ESTIMATORS, ESTIMATORS, evaluate
from offline_learner.reward_model import RewardModel
from offline_learner.search_result import Optimization, Trial
from offline_learner.search_space import SearchSpace, suggest_vw_args
from offline_learner.training import example_lines, fit
from schemas.events import JoinedExample, utc_now_iso

TrialProgress = Callable[[int], None]
"""Called with 1 after each finished trial (complete or failed)."""

CACHE_ROWS = 200_000


class _Part:
    """One side of the split: its labelled lines, kept while the split's budget allows,
    else featurized again on every pass (then the examples must be re-iterable)."""

    def __init__(self, examples: Iterable[JoinedExample], budget: int) -> None:
        self._examples = examples
        self._cached: list[list[str]] | None = [] if budget > 0 else None
        self._budget = budget
        self.rows = 0

    @property
    def cached(self) -> bool:
        return self._cached is not None

    def scan(self, each: Callable[[JoinedExample, list[str]], None] | None = None) -> None:
        """First pass: count the activated rows, keep their lines within budget, call ``each``."""
        featurizer = CachedFeaturizer()
        for example in self._examples:
            if not example.decision.activated:
                continue
            labelled = example_lines(featurizer, example)[1]
            self.rows += 1
            if self._cached is not None:
                if self.rows > self._budget:
                    self._cached = None
                else:
                    self._cached.append(labelled)
            if each is not None:
                each(example, labelled)
        if self._cached is None and iter(self._examples) is self._examples:
            raise InvalidInput(
                f"the split has more than {self._budget} rows to keep in memory, so the "
                "search reads each part once per trial: pass re-iterable parts (lists or "
                "Dataset parts), not one-shot iterators"
            )

    def labelled(self) -> Iterator[list[str]]:
        if self._cached is not None:
            yield from self._cached
            return
        featurizer = CachedFeaturizer()
        for example in self._examples:
            if example.decision.activated:
                yield example_lines(featurizer, example)[1]


class _Later:
    """The later part's per-example numbers every trial shares, in compact arrays."""

    def __init__(self) -> None:
        self.rewards = array("d")
        self.propensities = array("d")
        self.chosen = array("l")
        self.offsets = array("l", [0])
        self.rhat = array("d")
        """Every example's per-action predictions, one after the other (see offsets)."""
        self.first: str | None = None

    def add(self, example: JoinedExample, rhat: list[float]) -> None:
        decision = example.decision
        if self.first is None:
            self.first = utc_now_iso(decision.timestamp)
        self.rewards.append(example.reward)
        self.propensities.append(decision.chosen_probability)
        self.chosen.append(decision.chosen_index)
        self.rhat.extend(rhat)
        self.offsets.append(len(self.rhat))

    def logged_rhat(self) -> np.ndarray:
        starts = np.frombuffer(self.offsets, dtype=np.int_)[:-1]
        return np.frombuffer(self.rhat)[starts + np.frombuffer(self.chosen, dtype=np.int_)]


@dataclass(frozen=True)
class _Scored:
    pi: np.ndarray
    q: np.ndarray
    model: bytes


def _score(vw_args: str, fit_part: _Part, later_part: _Part, later: _Later) -> _Scored:
    """Fit ``vw_args`` on the earlier part, then score the later part progressively."""
    try:
        policy = VWPolicy(vw_args)
    except RuntimeError as error:
        raise InvalidInput(f"VW refused {vw_args!r}: {error}") from None
    try:
        for labelled in fit_part.labelled():
            policy.learn_lines(labelled)
        model = policy.to_bytes()
        n = len(later.rewards)
        pi, q = np.zeros(n), np.zeros(n)
        rhat, offsets, chosen = np.frombuffer(later.rhat), later.offsets, later.chosen
        for i, labelled in enumerate(later_part.labelled()):
            pmf = np.asarray(policy.learn_lines(labelled))
            pmf /= pmf.sum()  # regcbopt scores every action 1
            pi[i] = pmf[chosen[i]]
            q[i] = float(pmf @ rhat[offsets[i] : offsets[i + 1]])
    finally:
        policy.close()
    return _Scored(pi, q, model)


def _stream(later: _Later, target: _Scored, reference: _Scored) -> StreamingEstimates:
    stream = StreamingEstimates([ESTIMATORS[name]() for name in DEFAULT_ESTIMATORS], paired=True)
    stream.update(
        np.frombuffer(later.rewards),
        np.frombuffer(later.propensities),
        target.pi,
        later.logged_rhat(),
        target.q,
        reference_probabilities=reference.pi,
        reference_predicted_rewards=reference.q,
    )
    return stream


def _prepare(
    fit_examples: Iterable[JoinedExample],
    eval_examples: Iterable[JoinedExample],
    cache_rows: int,
) -> tuple[_Part, _Part, _Later]:
    """One pass over both parts: featurize (keep what fits), count, reward-model the later."""
    fit_part = _Part(fit_examples, cache_rows)
    fit_part.scan()
    later = _Later()
    later_part = _Part(eval_examples, cache_rows - fit_part.rows)
    model = RewardModel()
    try:
        later_part.scan(lambda example, labelled: later.add(example, model.learn(labelled)))
    finally:
        model.close()
    if fit_part.rows < 1 or later_part.rows < 2:
        raise InvalidInput(
            f"the split has {fit_part.rows} activated example(s) to fit on and "
            f"{later_part.rows} to estimate on: the search needs at least 1 and 2; "
            "use a larger dataset or another --split"
        )
    return fit_part, later_part, later


def optimize(
    fit_examples: Iterable[JoinedExample],
    eval_examples: Iterable[JoinedExample],
    *,
    current_vw_args: str,
    trials: int = 30,
    seed: int = 0,
    primary: str = "SNIPS",
    timeout: float | None = None,
    progress: TrialProgress | None = None,
    space: SearchSpace | None = None,
    dataset: Mapping[str, Any] | None = None,
    cache_rows: int = CACHE_ROWS,
    confirm_examples: Iterable[JoinedExample] | None = None,
) -> Optimization:
    """Search VW settings: fit each on ``fit_examples``, rank by the paired difference to
    ``current_vw_args`` on ``eval_examples``, evaluate the best against it at the end.

    Parameters
    ----------
    fit_examples, eval_examples:
        The earlier and the later part of a temporal split, each in event order and
        re-iterable (lists or ``Dataset`` parts) when the split exceeds ``cache_rows``.
    current_vw_args:
        The decision point's current arguments: the policy to beat.
    trials, timeout:
        Stop after this many trials or seconds, whichever comes first.
    seed:
        Seeds the TPE sampler: the same data and seed give the same trials.
    primary:
        The estimator trials are ranked by (display name, e.g. SNIPS or DR).
    space:
        What to search (:class:`~offline_learner.search_space.SearchSpace`).
    confirm_examples:
        A third, latest part the search never sees. The best of many trials is also the
        luckiest on the later part, so its estimate there is optimistic (the winner's
        curse). With a confirmation part, the best and the current arguments are fitted
        on the earlier and the later part and estimated again on it, progressively:
        ``confirmation`` holds that estimate and ``significantly_better`` uses it.
        ``fit_examples`` and ``eval_examples`` must then be re-iterable.
    """
    import optuna

    if primary not in DEFAULT_ESTIMATORS:
        raise InvalidInput(f"primary {primary!r} must be one of {list(DEFAULT_ESTIMATORS)}")
    if "--cb_explore_adf" not in current_vw_args.split():
        raise InvalidInput(
            f"current_vw_args {current_vw_args!r} lack --cb_explore_adf: give the decision "
            "point's VW arguments (learnloop serves ADF exploration policies)"
        )
    if trials < 1:
        raise InvalidInput(f"trials is {trials}: run at least 1")
    space = space or SearchSpace()
    key = ESTIMATORS[primary].name
    fit_part, later_part, later = _prepare(fit_examples, eval_examples, cache_rows)
    current = _score(current_vw_args, fit_part, later_part, later)
    current_estimate = _stream(later, current, current).estimate(key)
    records: list[Trial] = []
    best: dict[str, Any] = {"lower": -math.inf, "model": b""}

    def objective(trial: optuna.Trial) -> float:
        vw_args, params = suggest_vw_args(trial, space)
        try:
            scored = _score(vw_args, fit_part, later_part, later)
            stream = _stream(later, scored, current)
            estimate, difference = stream.estimate(key), stream.difference(key)
        except InvalidInput as error:
            records.append(Trial(trial.number, vw_args, params, None, None, "failed", str(error)))
            raise _TrialFailed(str(error)) from None
        finally:
            if progress is not None:
                progress(1)
        records.append(Trial(trial.number, vw_args, params, estimate, difference, "complete"))
        if difference.lower > best["lower"]:
            best["lower"], best["model"] = difference.lower, scored.model
        return difference.lower

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials, timeout=timeout, catch=(_TrialFailed,))
    ranked = _rank(records)
    evaluation = None
    if ranked and ranked[0].state == "complete":
        evaluation = evaluate(
            eval_examples,
            [
                VWCandidate("best", ranked[0].vw_args, best["model"]),
                VWCandidate("current", current_vw_args, current.model),
                LoggedPolicy(),
            ],
            primary=primary,
            reference="current",
            dataset=dataset,
        )
    confirmation = None
    confirm_rows = 0
    if confirm_examples is not None and ranked and ranked[0].state == "complete":
        seen = (fit_examples, eval_examples)
        confirmation = evaluate(
            confirm_examples,
            [
                VWCandidate("best", ranked[0].vw_args, _fitted(seen, ranked[0].vw_args)),
                VWCandidate("current", current_vw_args, _fitted(seen, current_vw_args)),
                LoggedPolicy(),
            ],
            primary=primary,
            reference="current",
            dataset=dataset,
        )
        confirm_rows = confirmation.n
    return Optimization(
        fit_rows=fit_part.rows,
        eval_rows=later_part.rows,
        boundary=later.first,
        primary=primary,
        current_vw_args=current_vw_args,
        current=current_estimate,
        trials=ranked,
        evaluation=evaluation,
        dataset=dict(dataset or {}),
        confirmation=confirmation,
        confirm_rows=confirm_rows,
    )


def _fitted(parts: Sequence[Iterable[JoinedExample]], vw_args: str) -> bytes:
    """A model of ``vw_args`` fitted on ``parts`` in order (the search's whole data)."""
    policy = fit(itertools.chain.from_iterable(parts), vw_args)
    try:
        return policy.to_bytes()
    finally:
        policy.close()


class _TrialFailed(Exception):
    """A trial VW refused (or whose estimate is undefined): recorded, then skipped."""


def _rank(records: Sequence[Trial]) -> list[Trial]:
    def key(t: Trial) -> tuple[int, float, int]:
        lower = t.difference.lower if t.difference else -math.inf
        return (t.state != "complete", -lower, t.number)

    return sorted(records, key=key)
