"""Direct method: average a reward model's value of the target policy over the logged contexts.

Dudík, Langford & Li, "Doubly Robust Policy Evaluation and Learning" (ICML 2011),
where DM is the baseline DR improves on. No importance weights, hence low variance,
but as biased as the reward model: the interval covers only the sampling noise of the
contexts, never the model's error. The weight diagnostics are still reported, since
they tell whether the logged data could check the model where the target policy goes.

    V_DM = 1/n * sum_i sum_a pi(a|x_i) rhat(x_i, a)

>>> e = DM().estimate(rewards=[1, 0], logging_propensities=[0.5, 0.5],
...                   target_probabilities=[1, 0], target_predicted_rewards=[0.7, 0.3])
>>> e.value
0.5
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from offline_learner.estimators.base import Estimator
from offline_learner.estimators.estimate import Estimate
from offline_learner.estimators.inputs import OffPolicyData
from offline_learner.estimators.normal_interval import normal_interval


@dataclass(frozen=True)
class DM(Estimator):
    """DM (Dudík, Langford & Li 2011), ``1/n sum qhat_i``; normal CI on the model values."""

    name: ClassVar[str] = "dm"

    def estimate_data(self, data: OffPolicyData) -> Estimate:
        terms = data.require_model_target("DM")
        value = float(np.mean(terms))
        return self._result(data, value, normal_interval(terms, value, self.level), "normal")
