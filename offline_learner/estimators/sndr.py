"""Self-normalised DR: DR whose importance-weighted correction is divided by the weights' sum.

Kallus & Uehara, "Intrinsically Efficient, Stable, and Bounded Off-Policy Evaluation
for Reinforcement Learning" (NeurIPS 2019), the bandit case of their self-normalised
doubly robust estimator. Like SNIPS for IPS: a small bias for a correction that stays
within the residuals' range however large the weights.

    V_SNDR = 1/n * sum_i qhat_i + sum_i w_i (r_i - rhat_i) / sum_i w_i

Its interval is the delta method's: per-example terms
``(qhat_i - mean(qhat)) + w_i (r_i - rhat_i - c) / mean(w)`` with ``c`` the
self-normalised correction.

>>> e = SNDR().estimate(
...     rewards=[1, 0], logging_propensities=[0.5, 0.5], target_probabilities=[1, 0],
...     predicted_rewards=[0.6, 0.2], target_predicted_rewards=[0.7, 0.3])
>>> round(e.value, 10)
0.9
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from offline_learner.estimators.base import Estimator
from offline_learner.estimators.doubly_robust import dr_terms
from offline_learner.estimators.estimate import Estimate
from offline_learner.estimators.inputs import OffPolicyData
from offline_learner.estimators.normal_interval import normal_interval
from offline_learner.estimators.snips import self_normalised


@dataclass(frozen=True)
class SNDR(Estimator):
    """SNDR (Kallus & Uehara 2019): DR with a self-normalised correction; delta-method CI."""

    name: ClassVar[str] = "sndr"

    def estimate_data(self, data: OffPolicyData) -> Estimate:
        qhat, w, residuals = dr_terms(data, "SNDR")
        correction, correction_terms = self_normalised("SNDR", w, residuals)
        base = float(np.mean(qhat))
        value = base + correction
        terms = (qhat - base) + correction_terms
        return self._result(data, value, normal_interval(terms, value, self.level), "delta")
