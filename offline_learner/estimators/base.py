"""What every estimator shares: a confidence level, one call signature, one result type.

Subclasses are frozen dataclasses whose fields are their settings; they implement
:meth:`Estimator.estimate_data` on validated :class:`OffPolicyData`. The public
:meth:`Estimator.estimate` takes plain arrays, validates them and delegates, so
a data scientist can call any estimator on any logged data with the same
arguments (IPS and SNIPS ignore the reward-model arrays).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from learnloop.errors import InvalidInput
from offline_learner.estimators.estimate import Estimate
from offline_learner.estimators.inputs import ArrayLike, OffPolicyData
from offline_learner.estimators.normal_interval import check_level


def check_interval(kind: str, allowed: tuple[str, ...]) -> None:
    """Refuse an interval name the estimator does not offer."""
    if kind not in allowed:
        raise InvalidInput(f"interval {kind!r} is not offered here; choose one of {allowed}")


@dataclass(frozen=True)
class Estimator(ABC):
    """An off-policy estimator of a target policy's expected reward per decision."""

    level: float = 0.95
    """Coverage of the confidence interval."""

    name: ClassVar[str]

    def __post_init__(self) -> None:
        check_level(self.level)

    def estimate(
        self,
        rewards: ArrayLike,
        logging_propensities: ArrayLike,
        target_probabilities: ArrayLike,
        predicted_rewards: ArrayLike | None = None,
        target_predicted_rewards: ArrayLike | None = None,
    ) -> Estimate:
        """Validate the arrays (see :mod:`~offline_learner.estimators.inputs`), then estimate."""
        data = OffPolicyData.of(
            rewards,
            logging_propensities,
            target_probabilities,
            predicted_rewards,
            target_predicted_rewards,
        )
        return self.estimate_data(data)

    @abstractmethod
    def estimate_data(self, data: OffPolicyData) -> Estimate:
        """Estimate on data validated once (several estimators can share it)."""

    def _result(
        self, data: OffPolicyData, value: float, bounds: tuple[float, float], interval: str
    ) -> Estimate:
        return Estimate(
            estimator=self.name,
            value=value,
            lower=bounds[0],
            upper=bounds[1],
            level=self.level,
            interval=interval,
            n=data.n,
            effective_sample_size=data.effective_sample_size,
            max_weight=data.max_weight,
        )
