"""The policies a replay evaluation compares: VW argument sets and fixed reference policies.

A candidate is a recipe; :meth:`Candidate.start` makes a fresh run of it for one pass
over a dataset, so the same candidate can be replayed twice from a clean state. A run's
:meth:`CandidateRun.step` gets the example's featurized lines (shared by all candidates:
featurized once), its labelled lines and the logged decision, and returns its
distribution over the decision's actions *before* learning from the example
(progressive validation, as Personalizer's offline evaluations did). Fixed policies
ignore the lines.

>>> [c.name for c in parse_candidates(["logged", "uniform", "constant:bestsellers"])]
['logged', 'uniform', 'constant:bestsellers']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from learnloop.errors import InvalidInput
from learnloop.policy import VWPolicy
from schemas.events import DecisionEvent

Kind = Literal["vw", "logged", "baseline", "uniform", "constant"]


class CandidateRun(Protocol):
    """One pass of a candidate over a dataset."""

    fallbacks: int
    """Decisions where the candidate's configured action was not offered (first taken)."""

    def step(self, lines: list[str], labelled: list[str], decision: DecisionEvent) -> list[float]:
        """The distribution over ``decision.actions`` before learning this example."""
        ...

    def close(self) -> None:
        """Free the run's resources (a VW workspace)."""
        ...


class Candidate(Protocol):
    """A policy to evaluate: its name (unique in an evaluation), kind and VW arguments."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> Kind: ...

    @property
    def vw_args(self) -> str | None: ...

    def start(self) -> CandidateRun:
        """A fresh run from the candidate's initial state."""
        ...


class _FixedRun:
    """A run of a policy that never learns."""

    def __init__(self, pmf_of: _PmfOf) -> None:
        self._pmf_of = pmf_of
        self.fallbacks = 0

    def step(self, lines: list[str], labelled: list[str], decision: DecisionEvent) -> list[float]:
        pmf, fell_back = self._pmf_of(decision)
        self.fallbacks += fell_back
        return pmf

    def close(self) -> None:
        return None


class _PmfOf(Protocol):
    def __call__(self, decision: DecisionEvent) -> tuple[list[float], bool]: ...


def _one_hot(decision: DecisionEvent, action_id: str | None) -> tuple[list[float], bool]:
    """All mass on ``action_id`` (the first action when it is ``None`` or not offered)."""
    pmf = [0.0] * len(decision.actions)
    if action_id is not None:
        for index, action in enumerate(decision.actions):
            if action.id == action_id:
                pmf[index] = 1.0
                return pmf, False
    pmf[0] = 1.0
    return pmf, action_id is not None


@dataclass(frozen=True)
class LoggedPolicy:
    """The policy that logged the data (its recorded probabilities): its estimate is the
    logged mean reward, a sanity anchor and the usual reference."""

    name: str = "logged"
    kind: Kind = "logged"
    vw_args: str | None = None

    def start(self) -> CandidateRun:
        return _FixedRun(lambda d: (list(d.probabilities), False))


@dataclass(frozen=True)
class Uniform:
    """Uniform random over the offered actions."""

    name: str = "uniform"
    kind: Kind = "uniform"
    vw_args: str | None = None

    def start(self) -> CandidateRun:
        return _FixedRun(lambda d: ([1.0 / len(d.actions)] * len(d.actions), False))


@dataclass(frozen=True)
class Baseline:
    """The decision point's baseline: the first offered action, or ``action_id`` when
    offered (otherwise the first, counted as a fallback)."""

    action_id: str | None = None
    name: str = "baseline"
    kind: Kind = "baseline"
    vw_args: str | None = None

    def start(self) -> CandidateRun:
        return _FixedRun(lambda d: _one_hot(d, self.action_id))


@dataclass(frozen=True)
class Constant:
    """Always ``action_id``; where it is not offered, the first action (a fallback)."""

    action_id: str
    name: str = ""
    kind: Kind = "constant"
    vw_args: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", f"constant:{self.action_id}")

    def start(self) -> CandidateRun:
        return _FixedRun(lambda d: _one_hot(d, self.action_id))


class _VWRun:
    def __init__(self, policy: VWPolicy) -> None:
        self._policy = policy
        self.fallbacks = 0

    def step(self, lines: list[str], labelled: list[str], decision: DecisionEvent) -> list[float]:
        return self._policy.learn_lines(labelled)

    def close(self) -> None:
        self._policy.close()


@dataclass(frozen=True)
class VWCandidate:
    """A VW ``--cb_explore_adf`` argument set, learning progressively through the replay.

    ``model`` warm-starts it from a saved model (e.g. one fitted on an earlier part of
    the log); it then keeps learning, as it would online.
    """

    name: str
    vw_args: str
    model: bytes | None = None
    kind: Kind = "vw"

    def start(self) -> CandidateRun:
        if "--cb_explore_adf" not in self.vw_args.split():
            raise InvalidInput(
                f"candidate {self.name!r}: vw_args {self.vw_args!r} lack --cb_explore_adf "
                "(learnloop evaluates ADF exploration policies)"
            )
        try:
            policy = VWPolicy(self.vw_args, self.model)
        except RuntimeError as error:
            raise InvalidInput(
                f"candidate {self.name!r}: VW refused the arguments {self.vw_args!r}: {error}"
            ) from None
        return _VWRun(policy)


def parse_candidate(spec: str, index: int = 0) -> Candidate:
    """One candidate from its CLI form, optionally named ``NAME=SPEC``.

    ``logged``, ``uniform``, ``baseline``, ``baseline:ACTION``, ``constant:ACTION``,
    ``vw:VW ARGS``; e.g. ``fast=vw:--cb_explore_adf --epsilon 0.1 -q ca``.
    """
    name: str | None = None
    head = spec.split(":", 1)[0]
    if "=" in head:
        name, spec = spec.split("=", 1)
        name = name.strip()
    kind, _, rest = spec.strip().partition(":")
    rest = rest.strip()
    candidate: Candidate
    if kind == "vw" and rest:
        candidate = VWCandidate(name or ("vw" if index == 0 else f"vw-{index + 1}"), rest)
    elif kind == "constant" and rest:
        candidate = Constant(rest, name=name or "")
    elif kind == "baseline":
        candidate = Baseline(rest or None, name=name or "baseline")
    elif kind in ("logged", "uniform") and not rest:
        candidate = LoggedPolicy(name or "logged") if kind == "logged" else Uniform(name or kind)
    else:
        raise InvalidInput(
            f"candidate {spec!r} is not understood: use logged, uniform, baseline[:ACTION], "
            "constant:ACTION or vw:VW ARGS, optionally as NAME=SPEC"
        )
    return candidate


def parse_candidates(specs: Iterable[str]) -> list[Candidate]:
    """Candidates from their CLI forms (see :func:`parse_candidate`); names must be unique."""
    candidates: list[Candidate] = []
    vw_count = 0
    for spec in specs:
        candidate = parse_candidate(spec, vw_count)
        vw_count += candidate.kind == "vw"
        candidates.append(candidate)
    check_unique(candidates)
    return candidates


def check_unique(candidates: Iterable[Candidate]) -> None:
    """Refuse two candidates with one name: results are looked up by name."""
    seen: set[str] = set()
    for candidate in candidates:
        if candidate.name in seen:
            raise InvalidInput(
                f"two candidates are named {candidate.name!r}: name them apart with NAME=SPEC"
            )
        seen.add(candidate.name)
