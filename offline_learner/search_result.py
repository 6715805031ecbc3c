"""What a policy search found: each trial, and the result ``learnloop offline optimize``
prints, reports and returns (:meth:`Optimization.to_dict` is its payload)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from offline_learner.estimators import Estimate
from offline_learner.replay import Evaluation


@dataclass(frozen=True)
class Trial:
    """One sampled setting and how it did on the later part."""

    number: int
    vw_args: str
    params: dict[str, Any]
    estimate: Estimate | None
    difference: Estimate | None
    state: str
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "vw_args": self.vw_args,
            "params": dict(self.params),
            "estimate": self.estimate.to_dict() if self.estimate else None,
            "difference": self.difference.to_dict() if self.difference else None,
            "state": self.state,
            "error": self.error,
        }


@dataclass(frozen=True)
class Optimization:
    """The search's result; :meth:`to_dict` is the ``offline optimize`` payload."""

    fit_rows: int
    eval_rows: int
    boundary: str | None
    primary: str
    current_vw_args: str
    current: Estimate
    trials: list[Trial]
    """Ranked: completed trials by their difference's lower bound (best first), then failed."""
    evaluation: Evaluation | None
    dataset: dict[str, Any] = field(default_factory=dict)
    confirmation: Evaluation | None = None
    """Best vs current on the confirmation part, which the search never saw (see
    :func:`optimize`): the best trial's estimate without the winner's curse."""
    confirm_rows: int = 0

    @property
    def best(self) -> Trial | None:
        return self.trials[0] if self.trials and self.trials[0].state == "complete" else None

    @property
    def significantly_better(self) -> bool:
        """Whether the best trial's paired advantage over the current policy is above 0:
        on the confirmation part when there is one, else on the later part."""
        best = self.best
        if best is None:
            return False
        if self.confirmation is not None:
            difference = self.confirmation.candidate("best").difference
        else:
            difference = best.difference
        return difference is not None and difference.lower > 0

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "kind": "optimization",
            "dataset": dict(self.dataset),
            "split": {
                "fit_rows": self.fit_rows,
                "eval_rows": self.eval_rows,
                "confirm_rows": self.confirm_rows,
                "boundary": self.boundary,
            },
            "primary": self.primary,
            "current": {
                "name": "current",
                "vw_args": self.current_vw_args,
                "estimate": self.current.to_dict(),
            },
            "trials": [t.to_dict() for t in self.trials],
            "best": best.to_dict() if best else None,
            "significantly_better": self.significantly_better,
            "evaluation": self.evaluation.to_dict() if self.evaluation else None,
            "confirmation": self.confirmation.to_dict() if self.confirmation else None,
        }
