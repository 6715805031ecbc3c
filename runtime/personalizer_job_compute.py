"""The offline learner's answers to a Personalizer evaluation or feature-importance job.

Synchronous and CPU-bound (``runtime/personalizer_job_run.py`` runs it in a thread, off
the job's event loop, so the heartbeat keeps beating).

**Evaluation.** One progressive replay (:func:`offline_learner.replay.evaluate`, as
Personalizer's offline evaluations did: each learner predicts a decision before
learning from it) of these policies, estimated with SNIPS (primary, 95 % interval) and
IPS: ``Online`` (what the loop logged, under the learning settings it had when the job
was created), ``Baseline`` (always the first action), ``Random`` (uniform), each custom
policy, and, when optimization was asked for, the best VW settings a short Optuna
search found (``Offline experimentation``, fitted on the earlier 70 % and ranked on the
later 30 % of the rows, :func:`offline_learner.search.optimize`). The optimal policy is
the one with learning settings whose interval's lower bound is highest.

A multi-slot loop's decisions (one per slot, each with its ``slot_id`` context feature)
are evaluated all together and, for each slot, on their own (results with a ``slotId``).

The time series are the replay's cumulative estimates (at most 100 points). The replay
keeps only the final interval, so a point after ``n`` of ``N`` decisions carries the
final half-width scaled by ``sqrt(N / n)``: a CLT interval narrows as one over the root
of the sample, and this is what the final interval would have been on fewer rows with
the same spread.

**Feature importance.** For each context feature (a namespace's key, or a top-level
key), a copy of the loop's policy learns and decides without it, beside the full policy
on the same decisions (:mod:`offline_learner.importance`'s ablation, one feature at a
time instead of one top-level group); its importance is the paired drop of SNIPS, and
the score is the drop scaled to 0..1 against the largest drop (negative drops score 0).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Final

from app.personalizer.rank import SLOT_ID_FEATURE
from learnloop.errors import InvalidInput
from offline_learner.candidates import Baseline, Candidate, LoggedPolicy, Uniform, VWCandidate
from offline_learner.dataset import Dataset
from offline_learner.importance import AblatedCandidate, Ablation, ContextKeys
from offline_learner.replay import CandidateResult, evaluate
from schemas.events import JoinedExample
from schemas.personalizer_evaluations import (
    BASELINE_POLICY,
    ONLINE_POLICY,
    OPTIMIZED_POLICY,
    RANDOM_POLICY,
    FeatureScoreDoc,
    JobDocument,
    PolicyOutcome,
    PolicySource,
    SeriesPoint,
    learning_args,
)

ONLINE: Final = ONLINE_POLICY
BASELINE: Final = BASELINE_POLICY
RANDOM: Final = RANDOM_POLICY
OPTIMIZED: Final = OPTIMIZED_POLICY

SEARCH_TRIALS: Final = 8
SEARCH_SECONDS: Final = 300.0
SEARCH_MIN_ROWS: Final = 50
"""Fewer activated decisions than this: no search (each part would be too small)."""
FEATURE_LIMIT: Final = 20
"""Context features ablated at most (the most frequent): each costs a VW learner."""
POINTS: Final = 100
MAX_SLOTS: Final = 10
"""Slots of a multi-slot loop reported on their own at most (each costs a replay)."""


def compute_evaluation(job: JobDocument, rows: Dataset) -> JobDocument:
    """The job with its ``results``, ``optimal_policy`` and counts filled in."""
    online_args = learning_args(job.online_arguments)
    sources: dict[str, PolicySource] = {ONLINE: "Online", BASELINE: "Baseline", RANDOM: "Random"}
    arguments: dict[str, str] = {ONLINE: online_args, BASELINE: "", RANDOM: ""}
    candidates: list[Candidate] = [LoggedPolicy(ONLINE), Baseline(name=BASELINE), Uniform(RANDOM)]
    for policy in job.policies:
        candidates.append(VWCandidate(policy.name, learning_args(policy.arguments)))
        sources[policy.name], arguments[policy.name] = "Custom", policy.arguments
    notes = []
    if job.optimize:
        found, note = _search(rows, online_args)
        if note:
            notes.append(note)
        if found is not None:
            candidates.append(VWCandidate(OPTIMIZED, found))
            sources[OPTIMIZED], arguments[OPTIMIZED] = "OfflineExperimentation", found
    result = evaluate(
        rows, candidates, estimators=("IPS", "SNIPS"), primary="SNIPS", reference=ONLINE,
        points=POINTS,
    )  # fmt: skip
    job.n, job.results = result.n, []
    times = sorted(datetime.fromisoformat(p.end) for c in result.candidates for p in c.over_time)
    job.first_event, job.last_event = (times[0], times[-1]) if times else (None, None)
    for candidate in result.candidates:
        job.results.append(
            _outcome(candidate, sources[candidate.name], arguments[candidate.name], result.n)
        )
    job.optimal_policy = _optimal(job.results)
    for slot in slot_ids(rows):  # a multi-slot loop: each slot's decisions on their own
        part = Dataset.from_examples(partial(_of_slot, rows, slot), f"{rows.source} [{slot}]")
        try:
            per_slot = evaluate(
                part, candidates, estimators=("IPS", "SNIPS"), primary="SNIPS",
                reference=ONLINE, points=POINTS,
            )  # fmt: skip
        except InvalidInput:  # fewer than 2 of its decisions activated
            continue
        for c in per_slot.candidates:
            got = _outcome(c, sources[c.name], arguments[c.name], per_slot.n)
            job.results.append(got.model_copy(update={"slot_id": slot}))
    job.message = " ".join(notes) or None
    return job


def _outcome(got: CandidateResult, source: PolicySource, arguments: str, n: int) -> PolicyOutcome:
    snips, ips = got.estimates.get("SNIPS"), got.estimates.get("IPS")
    weight_sum = None
    if ips is not None and snips is not None and snips.value != 0:
        weight_sum = ips.value * n / snips.value
    elif ips is not None:
        weight_sum = float(n)
    half = (snips.upper - snips.lower) / 2 if snips is not None else 0.0
    half = half if math.isfinite(half) else 0.0
    series = [
        SeriesPoint(
            time=datetime.fromisoformat(p.end),
            n=p.n,
            value=p.value,
            half_width=half * math.sqrt(n / p.n) if p.n else half,
        )
        for p in got.over_time
    ]
    return PolicyOutcome(
        name=got.name,
        arguments=arguments,
        source=source,
        value=snips.value if snips else None,
        lower=snips.lower if snips else None,
        upper=snips.upper if snips else None,
        ips=ips.value if ips else None,
        weight_sum=weight_sum,
        n=n,
        series=series,
    )


def slot_ids(examples: Iterable[JoinedExample]) -> list[str]:
    """The slot ids of a multi-slot loop's decisions (the ``slot_id`` context feature its
    multi-slot rank logs), in order of first appearance, at most :data:`MAX_SLOTS`."""
    seen: dict[str, None] = {}
    for example in examples:
        slot = example.decision.context.features.get(SLOT_ID_FEATURE)
        if isinstance(slot, str) and slot not in seen:
            seen[slot] = None
            if len(seen) >= MAX_SLOTS:
                break
    return list(seen)


def _of_slot(rows: Dataset, slot: str) -> Iterator[JoinedExample]:
    return (e for e in rows if e.decision.context.features.get(SLOT_ID_FEATURE) == slot)


def _optimal(results: list[PolicyOutcome]) -> str | None:
    """The policy with learning settings (so it can be applied) whose estimate's lower
    bound over all decisions is highest; the online policy wins ties (nothing to change)."""
    best: tuple[float, int, str] | None = None
    for order, r in enumerate(results):
        if (
            r.slot_id is not None
            or not r.arguments
            or r.lower is None
            or not math.isfinite(r.lower)
        ):
            continue
        key = (r.lower, -order if r.name != ONLINE else 1, r.name)
        if best is None or key[:2] > best[:2]:
            best = key
    return best[2] if best else None


def _search(rows: Dataset, online_args: str) -> tuple[str | None, str | None]:
    """The best VW settings a short search found, if they beat the online settings
    significantly; else ``None`` and why not."""
    from offline_learner.search import optimize

    count = rows.count()
    if count < SEARCH_MIN_ROWS:
        return None, (
            f"Policy optimization skipped: {count} decisions, it needs {SEARCH_MIN_ROWS}."
        )
    if "--cb_explore_adf" not in online_args.split():
        return None, "Policy optimization skipped: the online settings are not ADF."
    boundary = round(count * 0.7)
    found = optimize(
        rows.take(boundary), rows.skip(boundary), current_vw_args=online_args,
        trials=SEARCH_TRIALS, timeout=SEARCH_SECONDS, seed=0,
    )  # fmt: skip
    best = found.best
    if best is None or not found.significantly_better:
        return None, "Policy optimization found no settings significantly better than online."
    return best.vw_args, None


# -- feature importance --------------------------------------------------------------------


@dataclass(frozen=True)
class LeafAblation(Ablation):
    """Without one context feature: ``key`` of namespace ``namespace`` (a nested map), or
    the top-level ``key`` when ``namespace`` is empty."""

    namespace: str = ""
    key: str = ""

    def features(self, features: Mapping[str, Any]) -> dict[str, Any]:
        if not self.namespace:
            return {k: v for k, v in features.items() if k != self.key}
        out = dict(features)
        inner = out.get(self.namespace)
        if isinstance(inner, Mapping) and self.key in inner:
            rest = {k: v for k, v in inner.items() if k != self.key}
            if rest:
                out[self.namespace] = rest
            else:
                del out[self.namespace]
        return out


def context_leaves(examples: Iterable[JoinedExample], limit: int) -> list[tuple[str, str]]:
    """The ``limit`` most frequent (namespace, key) context features, ties by name.

    >>> from offline_learner.dataset import Dataset
    >>> context_leaves([], 3)
    []
    """
    counter: Counter[tuple[str, str]] = Counter()
    for example in examples:
        for name, value in example.decision.context.features.items():
            if isinstance(value, Mapping):
                counter.update((name, key) for key in value)
            else:
                counter[("", name)] += 1
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    return [leaf for leaf, _ in ranked[:limit]]


def compute_importance(job: JobDocument, rows: Dataset) -> JobDocument:
    """The job with its ``feature_scores`` (descending) filled in."""
    vw_args = learning_args(job.online_arguments)
    leaves = context_leaves(rows, FEATURE_LIMIT)
    if not leaves:
        raise InvalidInput("the logged decisions of this range have no context features")
    keys = ContextKeys()
    full = VWCandidate("full", vw_args)
    ablated = [
        AblatedCandidate(LeafAblation(f"{ns!r}:{key!r}", "feature", ns, key), vw_args, keys)
        for ns, key in leaves
    ]
    result = evaluate(
        rows, [full, *ablated], estimators=("SNIPS",), primary="SNIPS", reference="full",
        points=2,
    )  # fmt: skip
    drops: list[tuple[str, str, float, float, float]] = []
    for (ns, key), candidate in zip(leaves, ablated, strict=True):
        difference = result.candidate(candidate.name).difference
        if difference is None:
            continue
        drops.append((ns, key, -difference.value, -difference.upper, -difference.lower))
    largest = max((d[2] for d in drops if math.isfinite(d[2])), default=0.0)
    scores = []
    for ns, key, drop, lower, upper in drops:
        score = max(drop, 0.0) / largest if largest > 0 and math.isfinite(drop) else 0.0
        scores.append(FeatureScoreDoc(
            namespace=ns, feature_name=key, score=score, drop=drop, lower=lower, upper=upper,
        ))  # fmt: skip
    scores.sort(key=lambda s: (-s.score, -s.drop if math.isfinite(s.drop) else 0.0))
    job.n, job.feature_scores = result.n, scores
    return job
