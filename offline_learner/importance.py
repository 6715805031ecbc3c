"""Feature importance by ablation: which context features a learned policy actually uses.

For each namespace (``c`` the whole context, ``u`` the persona) and each context feature
group (a top-level key such as ``page``; a nested group such as ``geo`` covers
``geo.*``), a copy of the policy learns and decides on the same log *without* it, side
by side with the full policy, in one replay evaluation
(:func:`offline_learner.replay.evaluate`: each policy predicts a decision before
learning from it, as online). The importance of a group is the **drop**: the full
policy's estimate minus the ablated one's, as a paired difference on the same decisions,
with the same estimator as an evaluation (SNIPS by default). A drop whose interval lies
above zero means the policy needs the group to earn its reward; one crossing zero
means removing it changes nothing these data can detect.

Featurizing is shared: the replay builds the action lines once per decision and each
ablation only swaps in its own shared line (cached per distinct context). One pass
costs one VW learn per policy per decision, so about ``groups + 3`` times training the
policy once (the ``+ 3``: the full policy, the ``c`` and ``u`` ablations). The actions'
namespace ``a`` is never ablated (without it a policy cannot tell the actions apart).

>>> ablations(["page", "geo"])[0], ablations(["page"])[-1].name
(Ablation(name='c', group='namespace'), 'page')
>>> Ablation("geo", "feature").features({"geo": {"region": "eu"}, "page": "home"})
{'page': 'home'}
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from learnloop.errors import InvalidInput
from learnloop.featurizer import shared_line
from offline_learner.candidates import CandidateRun, Kind, VWCandidate
from offline_learner.datasets.summary import DatasetSummary, SummaryAccumulator
from offline_learner.estimators import Estimate
from offline_learner.replay import ESTIMATORS, evaluate
from schemas.events import DecisionEvent, JoinedExample
from schemas.features import Context
from schemas.vw_layout import CONTEXT_NS, USER_NS

Group = Literal["namespace", "feature"]
Progress = Callable[[str, int], None]
"""Called with the pass (``"discover"`` or ``"replay"``) and the examples read since the
previous call (a progress bar's ``advance``)."""

FEATURE_LIMIT = 30
"""Feature groups ablated at most (the most frequent ones): each costs a VW learner."""
ABLATED_PERSONA = "unclassified"
"""The constant persona of the ``u`` ablation (what an unresolved shopper gets)."""
PROGRESS_EVERY = 1024
FULL = "full"
"""The replay's name of the policy with every feature: the reference of every drop."""
ESTIMATOR_NAMES = {n.upper(): n for n in ESTIMATORS}


@dataclass(frozen=True)
class Ablation:
    """What one ablated policy does without: a namespace (``c``, ``u``) or a context key."""

    name: str
    group: Group

    def features(self, features: Mapping[str, Any]) -> dict[str, Any]:
        """The context features this policy sees."""
        if self.group == "namespace":
            return {} if self.name == CONTEXT_NS else dict(features)
        return {k: v for k, v in features.items() if k != self.name}

    def persona(self, persona: str) -> str:
        """The persona this policy sees."""
        return ABLATED_PERSONA if (self.group, self.name) == ("namespace", USER_NS) else persona


def ablations(
    features: Sequence[str], namespaces: Sequence[str] = (CONTEXT_NS, USER_NS)
) -> list[Ablation]:
    """The namespaces first, then the feature groups, in the order given."""
    for ns in namespaces:
        if ns not in (CONTEXT_NS, USER_NS):
            raise InvalidInput(
                f"namespace {ns!r} cannot be ablated: choose from 'c' (context) and 'u' "
                "(persona); the action namespace 'a' is what the policy chooses between"
            )
    return [Ablation(ns, "namespace") for ns in namespaces] + [
        Ablation(f, "feature") for f in features
    ]


@dataclass(frozen=True)
class Discovery:
    """The context feature groups seen in a dataset, most frequent first."""

    groups: list[str]
    """At most ``limit`` groups, by the number of decisions that carry them."""
    seen: int
    """How many distinct groups the data has (more than ``len(groups)`` when capped)."""
    counts: dict[str, int] = field(default_factory=dict)


def discover_features(
    examples: Iterable[JoinedExample], limit: int = FEATURE_LIMIT, progress: Progress | None = None
) -> Discovery:
    """One pass: every top-level context key, counted once per decision; keep ``limit``
    (ties broken by name, so the choice is reproducible)."""
    if limit < 1:
        raise InvalidInput(f"feature limit is {limit}: ablate at least one feature group")
    counter: Counter[str] = Counter()
    pending = 0
    for example in examples:
        counter.update(example.decision.context.features.keys())
        pending += 1
        if progress is not None and pending >= PROGRESS_EVERY:
            progress("discover", pending)
            pending = 0
    if progress is not None and pending:
        progress("discover", pending)
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    return Discovery([k for k, _ in ranked[:limit]], len(ranked), dict(ranked))


@dataclass(frozen=True)
class GroupImportance:
    """One ablated group: the policy's estimate without it and the paired drop."""

    name: str
    group: Group
    estimate: Estimate
    drop: Estimate

    def to_dict(self) -> dict[str, Any]:
        """The payload entry: name, group, estimate, drop."""
        return {
            "name": self.name,
            "group": self.group,
            "estimate": self.estimate.to_dict(),
            "drop": self.drop.to_dict(),
        }


@dataclass(frozen=True)
class Importance:
    """The result of :func:`importance`; :meth:`to_dict` is the ``importance`` payload."""

    vw_args: str
    primary: str
    full: Estimate
    features: list[GroupImportance]
    """Sorted by the drop, largest first."""
    dataset: DatasetSummary
    groups_seen: int
    """Distinct context keys in the data; more than the feature groups ablated when capped."""
    limit: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able payload ``learnloop offline importance --json`` prints."""
        return {
            "kind": "importance",
            "dataset": self.dataset.to_dict(),
            "vw_args": self.vw_args,
            "primary": self.primary,
            "full": self.full.to_dict(),
            "features": [f.to_dict() for f in self.features],
            "groups_seen": self.groups_seen,
            "limit": self.limit,
        }

    def drop_of(self, name: str) -> Estimate:
        """The drop of one group by name (``c``, ``u`` or a context key)."""
        for f in self.features:
            if f.name == name:
                return f.drop
        raise InvalidInput(f"{name!r} was not ablated: {[f.name for f in self.features]}")


def _negated(e: Estimate) -> Estimate:
    """``-e``: the drop full minus ablated from the replay's ablated minus full."""
    return Estimate(
        e.estimator, -e.value, -e.upper, -e.lower, e.level, e.interval, e.n,
        e.effective_sample_size, e.max_weight,
    )  # fmt: skip


class ContextKeys:
    """The cache key of a decision's persona and context, computed once per decision for
    all the ablated runs (the replay steps them one after another on the same decision)."""

    def __init__(self) -> None:
        self._decision: DecisionEvent | None = None
        self._key = ("", "")

    def of(self, decision: DecisionEvent) -> tuple[str, str]:
        if decision is not self._decision:
            self._decision = decision
            self._key = (decision.persona, repr(decision.context.features))
        return self._key


class _AblatedRun:
    """A VW run that learns and decides on the decision without its ablated group: the
    replay's shared action lines (featurized once for all candidates) under its own
    shared line, built once per distinct context and persona."""

    def __init__(self, inner: CandidateRun, cut: Ablation, keys: ContextKeys) -> None:
        self._inner = inner
        self._cut = cut
        self._keys = keys
        self._shared: dict[tuple[str, str], str] = {}
        self.fallbacks = 0

    def step(self, lines: list[str], labelled: list[str], decision: DecisionEvent) -> list[float]:
        key = self._keys.of(decision)
        shared = self._shared.get(key)
        if shared is None:
            if len(self._shared) >= 50_000:
                self._shared.clear()  # many distinct contexts: start over rather than grow
            cut = self._cut
            context = Context.model_construct(features=cut.features(decision.context.features))
            shared = self._shared[key] = shared_line(context, cut.persona(decision.persona))
        return self._inner.step([shared, *lines[1:]], [shared, *labelled[1:]], decision)

    def close(self) -> None:
        self._inner.close()


@dataclass(frozen=True)
class AblatedCandidate:
    """A VW candidate for the replay evaluation that never sees one namespace or feature group."""

    cut: Ablation
    vw_args: str
    keys: ContextKeys = field(default_factory=ContextKeys, compare=False, repr=False)
    """Shared by the candidates of one replay, so each decision's key is computed once."""
    kind: Kind = "vw"

    @property
    def name(self) -> str:
        return f"without {self.cut.group} {self.cut.name}"

    def start(self) -> CandidateRun:
        return _AblatedRun(VWCandidate(self.name, self.vw_args).start(), self.cut, self.keys)


def _summarised(
    examples: Iterable[JoinedExample], into: SummaryAccumulator
) -> Iterator[JoinedExample]:
    """The examples, each folded into the dataset summary on its way to the replay."""
    for example in examples:
        into.add(example)
        yield example


def importance(
    examples: Iterable[JoinedExample],
    vw_args: str,
    *,
    features: Sequence[str] | Literal["auto"] = "auto",
    namespaces: Sequence[str] = (CONTEXT_NS, USER_NS),
    primary: str = "SNIPS",
    level: float = 0.95,
    reward_range: tuple[float, float] | None = None,
    limit: int = FEATURE_LIMIT,
    progress: Progress | None = None,
) -> Importance:
    """Ablate each namespace and feature group; estimate how much the policy loses.

    Parameters
    ----------
    examples:
        Joined examples in event order: a ``Dataset`` or a list. With ``features="auto"``
        they are read twice (discovery, then the replay); a one-shot iterator is first
        read into memory.
    vw_args:
        The policy's VW arguments (``--cb_explore_adf ...``).
    features:
        Context keys to ablate, or ``"auto"``: the ``limit`` most frequent top-level keys.
    namespaces:
        Namespaces to ablate as a whole: ``c`` (every context feature), ``u`` (the
        persona, replaced by a constant).
    primary:
        The estimator (``SNIPS`` by default; ``IPS``, ``DM``, ``DR``, ``SwitchDR``,
        ``SNDR``: the reward-model ones add the replay's shared reward model).
    reward_range:
        Bounds of the reward, to clip the reward model's predictions into.
    progress:
        Optional callback, see :data:`Progress`.
    """
    name = ESTIMATOR_NAMES.get(primary.upper())
    if name is None:
        raise InvalidInput(
            f"primary estimator {primary!r} is not offered: use one of {sorted(ESTIMATORS)}"
        )
    if features == "auto":
        if iter(examples) is examples:  # a one-shot iterator: keep it for the second pass
            examples = list(examples)
        found = discover_features(examples, limit, progress)
        groups, seen = found.groups, found.seen
    else:
        groups = list(dict.fromkeys(features))
        if any(not isinstance(g, str) or not g for g in groups):
            raise InvalidInput(f"features must be non-empty context keys, got {features!r}")
        seen = len(groups)
    cuts = ablations(groups, namespaces)
    if not cuts:
        raise InvalidInput("nothing to ablate: give at least one namespace or feature")
    full = VWCandidate(FULL, vw_args)
    keys = ContextKeys()
    ablated = [AblatedCandidate(cut, vw_args, keys) for cut in cuts]
    summary = SummaryAccumulator(str(getattr(examples, "source", "examples")))
    result = evaluate(
        _summarised(examples, summary),
        [full, *ablated],
        estimators=[name],
        primary=name,
        reference=FULL,
        reward_range=reward_range,
        points=2,
        progress=None if progress is None else (lambda k: progress("replay", k)),
        level=level,
    )
    full_estimate = result.candidate(FULL).estimates[name]
    if full_estimate is None:
        raise InvalidInput(f"{name} of the full policy is undefined on these data")
    results = []
    for candidate in ablated:
        got = result.candidate(candidate.name)
        estimate, difference = got.estimates[name], got.difference
        if estimate is None or difference is None:
            raise InvalidInput(
                f"{name} of the policy {candidate.name} is undefined on these data "
                "(it gives probability 0 to every logged action)"
            )
        results.append(
            GroupImportance(candidate.cut.name, candidate.cut.group, estimate, _negated(difference))
        )
    results.sort(key=lambda r: -r.drop.value if math.isfinite(r.drop.value) else math.inf)
    return Importance(vw_args, name, full_estimate, results, summary.result(), seen, limit)
