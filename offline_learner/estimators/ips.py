"""Inverse propensity scoring: re-weight each logged reward by how much likelier the target is.

Horvitz & Thompson, "A generalization of sampling without replacement from a finite
universe", JASA 47 (1952). Unbiased whenever the logging policy gives every action the
target may take a positive probability; its variance grows with the weights.

    V_IPS = 1/n * sum_i w_i r_i,    w_i = pi(a_i|x_i) / mu(a_i|x_i)

>>> e = IPS().estimate(rewards=[1, 0, 1, 1], logging_propensities=[0.5, 0.5, 0.25, 0.5],
...                    target_probabilities=[1, 0, 0.5, 0.5])
>>> e.value, e.max_weight, e.interval
(1.25, 2.0, 'normal')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from offline_learner.estimators.base import Estimator, check_interval
from offline_learner.estimators.cressie_read import cressie_read_interval, observed_or
from offline_learner.estimators.estimate import Estimate
from offline_learner.estimators.inputs import OffPolicyData
from offline_learner.estimators.normal_interval import normal_interval

IntervalKind = Literal["normal", "cressie-read"]
INTERVALS: tuple[IntervalKind, ...] = ("normal", "cressie-read")


@dataclass(frozen=True)
class IPS(Estimator):
    """IPS (Horvitz & Thompson 1952), ``1/n sum w_i r_i``, with a normal or Cressie-Read interval.

    Parameters
    ----------
    interval:
        ``"normal"``: CLT on the terms ``w_i r_i``. ``"cressie-read"``: the
        empirical-likelihood interval of :mod:`~offline_learner.estimators.cressie_read`,
        valid in small samples and with heavy weights, bounded by ``reward_range``.
    reward_range:
        True bounds of the reward, for the Cressie-Read interval; ``None`` takes the
        observed range (optimistic).
    weight_range:
        True bounds of the importance weight, for the Cressie-Read interval.
    """

    interval: IntervalKind = "normal"
    reward_range: tuple[float, float] | None = None
    weight_range: tuple[float, float] = (0.0, math.inf)

    name: ClassVar[str] = "ips"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_interval(self.interval, INTERVALS)

    def estimate_data(self, data: OffPolicyData) -> Estimate:
        w = data.weights
        terms = w * data.rewards
        value = float(np.mean(terms))
        if self.interval == "normal":
            bounds = normal_interval(terms, value, self.level)
        else:
            bounds = cressie_read_interval(
                w,
                data.rewards,
                self.level,
                observed_or(self.reward_range, data.rewards),
                self.weight_range,
            )
        return self._result(data, value, bounds, self.interval)
