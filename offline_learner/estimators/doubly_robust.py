"""Doubly robust: the reward model's value plus an importance-weighted correction of its error.

Dudík, Langford & Li, "Doubly Robust Policy Evaluation and Learning" (ICML 2011).
Unbiased when the logging propensities are right (whatever the model), and of low
variance when the model is good, since the weights then only multiply small residuals.

    V_DR = 1/n * sum_i [ qhat_i + w_i (r_i - rhat_i) ]

with ``qhat_i = sum_a pi(a|x_i) rhat(x_i, a)`` and ``rhat_i = rhat(x_i, a_i)``.

>>> e = DR().estimate(rewards=[1, 0], logging_propensities=[0.5, 0.5], target_probabilities=[1, 0],
...                   predicted_rewards=[0.6, 0.2], target_predicted_rewards=[0.7, 0.3])
>>> round(e.value, 10)
0.9
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from offline_learner.estimators.base import Estimator
from offline_learner.estimators.estimate import Estimate
from offline_learner.estimators.inputs import FloatArray, OffPolicyData
from offline_learner.estimators.normal_interval import normal_interval


def dr_terms(data: OffPolicyData, estimator: str) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Model value per context ``qhat``, the weights ``w`` and the residuals ``r - rhat``."""
    rhat, qhat = data.require_model(estimator)
    return qhat, data.weights, data.rewards - rhat


@dataclass(frozen=True)
class DR(Estimator):
    """DR (Dudík, Langford & Li 2011), ``1/n sum [qhat_i + w_i (r_i - rhat_i)]``; normal CI."""

    name: ClassVar[str] = "dr"

    def estimate_data(self, data: OffPolicyData) -> Estimate:
        qhat, w, residuals = dr_terms(data, "DR")
        terms = qhat + w * residuals
        value = float(np.mean(terms))
        return self._result(data, value, normal_interval(terms, value, self.level), "normal")
