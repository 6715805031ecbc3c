"""Replay evaluation: estimate several candidate policies side by side on one logged dataset.

One pass in event order. Each activated example is featurized once (lines shared by
every candidate); the reward model and every candidate then give their prediction for
it *before* learning from it (progressive validation), and the per-example terms go
into bounded-memory :class:`~offline_learner.estimators.StreamingEstimates`, chunk by
chunk, each paired with the reference policy so that "candidate minus reference" gets
its own (paired, narrower) interval. Decisions that were not activated were never shown,
so they are neither learned nor estimated; they are counted.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from learnloop.errors import InvalidInput
from offline_learner.candidates import (
    Baseline,
    Candidate,
    CandidateRun,
    Constant,
    LoggedPolicy,
    Uniform,
    VWCandidate,
    check_unique,
)
from offline_learner.datasets.summary import SummaryAccumulator
from offline_learner.estimators import DM, DR, IPS, SNDR, SNIPS, Estimate, SwitchDR
from offline_learner.estimators.base import Estimator
from offline_learner.estimators.streaming import StreamingEstimates
from offline_learner.replay_feed import Batch, Logged, OfferedAction, decision_time, feed
from offline_learner.replay_timeline import Timeline, TimelinePoint
from offline_learner.reward_model import DEFAULT_REWARD_MODEL_ARGS, RewardModel
from offline_learner.training import PROGRESS_EVERY, Progress
from schemas.events import DecisionEvent, JoinedExample, utc_now_iso

ESTIMATORS: Mapping[str, type[Estimator]] = {
    "IPS": IPS,
    "SNIPS": SNIPS,
    "DM": DM,
    "DR": DR,
    "SwitchDR": SwitchDR,
    "SNDR": SNDR,
}
"""Display name (payload key, CLI name) -> estimator class."""

DEFAULT_ESTIMATORS = ("IPS", "SNIPS", "DM", "DR", "SNDR")
NEEDS_MODEL = frozenset({"DM", "DR", "SwitchDR", "SNDR"})
CHUNK = 4096
LIGHT_CANDIDATES = (LoggedPolicy, Uniform, Baseline, Constant, VWCandidate)
"""Candidates whose runs read only a decision's actions and probabilities: with only
these, the replay can read and featurize in another process (replay_feed); any other
candidate (e.g. importance's ablations) gets the whole decision, read in-process."""
"""Examples per streaming update: big enough for numpy to pay off, small in memory."""


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@dataclass(frozen=True)
class CandidateResult:
    """One candidate's estimates over the whole replay."""

    name: str
    kind: str
    vw_args: str | None
    estimates: dict[str, Estimate | None]
    """Display name -> estimate; ``None`` where undefined (e.g. SNIPS of a policy that
    never takes a logged action)."""
    difference: Estimate | None
    """Paired candidate minus reference, primary estimator (``None`` for the reference)."""
    probability_floor: float
    """Smallest probability the candidate gave any offered action over the run."""
    over_time: list[TimelinePoint]
    fallbacks: int = 0
    """Decisions where a baseline/constant action was not offered (first action taken)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "vw_args": self.vw_args,
            "estimates": {k: (e.to_dict() if e else None) for k, e in self.estimates.items()},
            "difference": self.difference.to_dict() if self.difference else None,
            "probability_floor": self.probability_floor,
            "over_time": [p.to_dict() for p in self.over_time],
            "fallbacks": self.fallbacks,
        }


@dataclass(frozen=True)
class Evaluation:
    """All candidates' results; :meth:`to_dict` is the ``offline evaluate`` payload."""

    n: int
    inactive: int
    primary: str
    reference: str | None
    candidates: list[CandidateResult]
    dataset: dict[str, Any] = field(default_factory=dict)

    def candidate(self, name: str) -> CandidateResult:
        """The result of the candidate called ``name``."""
        for result in self.candidates:
            if result.name == name:
                return result
        raise InvalidInput(
            f"no candidate {name!r} in this evaluation: it has {[c.name for c in self.candidates]}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "evaluation",
            "dataset": dict(self.dataset),
            "n": self.n,
            "inactive": self.inactive,
            "primary": self.primary,
            "reference": self.reference,
            "candidates": [c.to_dict() for c in self.candidates],
        }


def _estimators(names: Sequence[str], level: float) -> list[Estimator]:
    unknown = [n for n in names if n not in ESTIMATORS]
    if unknown or not names:
        raise InvalidInput(
            f"unknown estimator(s) {unknown or '(none given)'}: choose from {list(ESTIMATORS)}"
        )
    return [ESTIMATORS[n](level=level) for n in dict.fromkeys(names)]


def _with_reference(candidates: Sequence[Candidate], reference: str | None) -> list[Candidate]:
    out = list(candidates)
    if not out:
        raise InvalidInput("no candidates: give at least one, e.g. logged or vw:ARGS")
    check_unique(out)
    if reference is not None and reference not in {c.name for c in out}:
        if reference != "logged":
            raise InvalidInput(
                f"reference {reference!r} is not among the candidates {[c.name for c in out]}"
            )
        out.insert(0, LoggedPolicy())
    return out


class _Replay:
    """The state of one evaluation pass (buffers of one chunk, the streams, the runs)."""

    def __init__(
        self,
        candidates: list[Candidate],
        estimators: list[Estimator],
        reference: str | None,
        reward_model: RewardModel | None,
        timeline: Timeline,
    ) -> None:
        self.candidates = candidates
        self.names = [e.name for e in estimators]
        self.ref = next((i for i, c in enumerate(candidates) if c.name == reference), None)
        self.model = reward_model
        self.timeline = timeline
        self.streams = [
            StreamingEstimates(estimators, paired=self.ref is not None) for _ in candidates
        ]
        k = len(candidates)
        # One chunk's per-example terms, as lists (appending beats numpy item assignment).
        self.rewards: list[float] = []
        self.propensities: list[float] = []
        self.predicted: list[float] = []
        self.pi: list[list[float]] = [[] for _ in range(k)]
        self.q: list[list[float]] = [[] for _ in range(k)]
        self.floors = [1.0] * k
        self.n = 0
        self.reward_sum = 0.0
        self.runs: list[CandidateRun] = []
        self.last_time = 0
        """Decision time of the last example replayed (µs since the epoch)."""
        self._offered: dict[tuple[str, ...], tuple[OfferedAction, ...]] = {}

    def start(self) -> None:
        for candidate in self.candidates:
            self.runs.append(candidate.start())

    def close(self) -> None:
        for run in self.runs:
            run.close()
        if self.model is not None:
            self.model.close()

    def add(self, batch: Batch) -> None:
        """Replay one batch of activated examples (see :mod:`offline_learner.replay_feed`)."""
        model, runs, floors, offered = self.model, self.runs, self.floors, self._offered
        for i, labelled in enumerate(batch.labelled):
            chosen, mu, reward = batch.chosen[i], batch.propensities[i], batch.rewards[i]
            ids = batch.action_ids[i]
            actions = offered.get(ids)
            if actions is None:
                actions = offered[ids] = tuple(OfferedAction(a) for a in ids)
            # The built-in runs read a decision's actions and probabilities only
            # (LIGHT_CANDIDATES); others get the decision itself, read in-process.
            decision = (
                batch.decisions[i]
                if batch.decisions
                else cast(DecisionEvent, Logged(actions, batch.probabilities[i]))
            )
            lines = batch.lines[i]
            rhat = model.learn(labelled) if model is not None else None
            self.rewards.append(reward)
            self.propensities.append(mu)
            if rhat is not None:
                self.predicted.append(rhat[chosen])
            k = len(ids)
            for c, run in enumerate(runs):
                pmf = run.step(lines, labelled, decision)
                total = math.fsum(pmf)
                if len(pmf) != k or not total > 0:
                    raise RuntimeError(f"{self.candidates[c].name} gave pmf {pmf} for {lines}")
                if abs(total - 1.0) > 1e-6:  # e.g. VW's regcbopt scores ones
                    pmf = [p / total for p in pmf]
                low = min(pmf)
                if low < floors[c]:
                    floors[c] = low
                self.pi[c].append(pmf[chosen])
                if rhat is not None:
                    self.q[c].append(_dot(pmf, rhat))
            self.n += 1
            self.reward_sum += reward
            self.last_time = batch.times[i]
            if len(self.rewards) == CHUNK or self.n == self.timeline.next_boundary:
                self.flush()
            if self.n == self.timeline.next_boundary:
                self.mark()

    def flush(self) -> None:
        if not self.rewards:
            return
        r, mu = np.asarray(self.rewards), np.asarray(self.propensities)
        rhat = np.asarray(self.predicted) if self.model is not None else None
        pi = [np.asarray(p) for p in self.pi]
        q = [np.asarray(v) for v in self.q] if rhat is not None else None
        ref = self.ref
        for c, stream in enumerate(self.streams):
            stream.update(
                r,
                mu,
                pi[c],
                rhat,
                None if q is None else q[c],
                reference_probabilities=None if ref is None else pi[ref],
                reference_predicted_rewards=None if ref is None or q is None else q[ref],
            )
        for buffer in (self.rewards, self.propensities, self.predicted, *self.pi, *self.q):
            buffer.clear()

    def mark(self, final: bool = False) -> None:
        primary = self.timeline.primary
        self.timeline.add(
            utc_now_iso(decision_time(self.last_time)),
            self.n,
            self.reward_sum / self.n,
            [s.value(primary) for s in self.streams],
            final,
        )

    def results(self, primary_name: str, display: dict[str, str]) -> list[CandidateResult]:
        out = []
        for c, (candidate, stream, run) in enumerate(
            zip(self.candidates, self.streams, self.runs, strict=True)
        ):
            estimates = {display[n]: _defined(stream.estimate, n) for n in self.names}
            difference = (
                None
                if self.ref is None or c == self.ref
                else _defined(stream.difference, primary_name)
            )
            out.append(
                CandidateResult(
                    name=candidate.name,
                    kind=candidate.kind,
                    vw_args=candidate.vw_args,
                    estimates=estimates,
                    difference=difference,
                    probability_floor=self.floors[c],
                    over_time=self.timeline.series(c),
                    fallbacks=run.fallbacks,
                )
            )
        return out


def _defined(get: Any, name: str) -> Estimate | None:
    try:
        estimate: Estimate = get(name)
    except InvalidInput as error:
        if "undefined" in str(error):
            return None
        raise
    return estimate


def evaluate(
    examples: Iterable[JoinedExample],
    candidates: Sequence[Candidate],
    *,
    estimators: Sequence[str] = DEFAULT_ESTIMATORS,
    primary: str | None = None,
    reference: str | None = "logged",
    reward_range: tuple[float, float] | None = None,
    points: int = 100,
    progress: Progress | None = None,
    level: float = 0.95,
    reward_model_args: str = DEFAULT_REWARD_MODEL_ARGS,
    dataset: Mapping[str, Any] | None = None,
    pipeline: bool | None = None,
    describe: bool = False,
) -> Evaluation:
    """Replay ``examples`` (event order) through every candidate; estimate each side by side.

    Parameters
    ----------
    examples:
        Joined examples in event order (a ``Dataset``, a list, any iterable), read once.
    candidates:
        The policies to compare (see :mod:`offline_learner.candidates`), unique names.
    estimators:
        Display names from :data:`ESTIMATORS`; DM, DR, SwitchDR and SNDR add the shared
        reward model (one more VW call per example).
    primary:
        The estimator of the difference to the reference and of ``over_time``; by default
        SNIPS (bounded by the reward range, steadier than IPS), else the first estimator.
    reference:
        The candidate the paired differences are taken against; ``"logged"`` is added
        when absent; ``None`` for no differences.
    reward_range:
        Bounds to clip the reward model's predictions into.
    points:
        Most points of each ``over_time`` series (cumulative, evenly spaced).
    progress:
        Called with the number of examples read since the last call.
    dataset:
        The dataset summary to carry in the payload (``Dataset.describe().to_dict()``).
    pipeline:
        Read, decode and featurize in a reader process on another core
        (:mod:`offline_learner.replay_feed`): ``None`` when the input is a ``Dataset`` of
        more than a few thousand rows, ``True`` for any ``Dataset``, ``False`` never;
        only with :data:`LIGHT_CANDIDATES`. Both paths give the same evaluation.
    describe:
        Fold the dataset's summary (``Dataset.describe``) into the same pass and carry it
        in the payload (unless ``dataset`` is given).
    """
    if primary is None:
        primary = "SNIPS" if "SNIPS" in estimators else next(iter(estimators), "SNIPS")
    if primary not in estimators:
        raise InvalidInput(
            f"primary estimator {primary!r} must be one of the estimators {list(estimators)}"
        )
    chosen = _estimators(estimators, level)
    display = {ESTIMATORS[n].name: n for n in estimators}
    pool = _with_reference(candidates, reference)
    model = RewardModel(reward_model_args, reward_range) if NEEDS_MODEL & set(estimators) else None
    replay = _Replay(pool, chosen, reference, model, Timeline(ESTIMATORS[primary].name, points))
    summary = SummaryAccumulator(getattr(examples, "source", "examples")) if describe else None
    inactive = pending = 0
    try:
        replay.start()
        light = all(type(c) in LIGHT_CANDIDATES for c in pool)
        stream = feed(examples, pipeline, decisions=not light, summary=summary)
        with contextlib.closing(stream) as batches:
            for batch in batches:
                inactive += batch.inactive
                pending += batch.read
                if progress is not None and pending >= PROGRESS_EVERY:
                    progress(pending)
                    pending = 0
                replay.add(batch)
        if progress is not None and pending:
            progress(pending)
        replay.flush()
        if replay.n < 2:
            raise InvalidInput(
                f"{replay.n} activated example(s) to evaluate on ({inactive} not activated): "
                "an estimate with an interval needs at least 2"
            )
        if replay.timeline.last_n != replay.n:
            replay.mark(final=True)
        results = replay.results(ESTIMATORS[primary].name, display)
    finally:
        replay.close()
    return Evaluation(
        n=replay.n,
        inactive=inactive,
        primary=primary,
        reference=reference,
        candidates=results,
        dataset=dict(dataset or (summary.result().to_dict() if summary is not None else {})),
    )
