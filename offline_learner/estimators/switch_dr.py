"""Switch-DR: doubly robust where the weight is moderate, the reward model alone where it is not.

Wang, Agarwal & Dudík, "Optimal and Adaptive Off-policy Evaluation in Contextual
Bandits" (ICML 2017), in its doubly robust form (SWITCH-DR). Examples whose weight
exceeds the threshold tau drop their correction and keep only the model's value, so
a few huge weights can no longer dominate; the price is the model's bias on those
examples. ``tau = inf`` is DR; ``tau = 0`` keeps only the weight-0 corrections.

    V_SWITCH = 1/n * sum_i [ qhat_i + 1{w_i <= tau} w_i (r_i - rhat_i) ]

>>> e = SwitchDR(threshold=1.5).estimate(
...     rewards=[1, 0], logging_propensities=[0.5, 0.5], target_probabilities=[1, 0],
...     predicted_rewards=[0.6, 0.2], target_predicted_rewards=[0.7, 0.3])
>>> round(e.value, 10)
0.5
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from learnloop.errors import InvalidInput
from offline_learner.estimators.base import Estimator
from offline_learner.estimators.doubly_robust import dr_terms
from offline_learner.estimators.estimate import Estimate
from offline_learner.estimators.inputs import OffPolicyData
from offline_learner.estimators.normal_interval import normal_interval


@dataclass(frozen=True)
class SwitchDR(Estimator):
    """Switch-DR (Wang, Agarwal & Dudík 2017): DR without the corrections of weights > tau.

    Parameters
    ----------
    threshold:
        tau, the largest importance weight whose correction is kept. The default 10
        keeps the corrections of a target that is at most ten times likelier than the
        logging policy on the logged action.
    """

    threshold: float = 10.0

    name: ClassVar[str] = "switch-dr"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.threshold >= 0:
            raise InvalidInput(
                f"threshold is {self.threshold}: it must be a weight >= 0 (inf = DR)"
            )

    def estimate_data(self, data: OffPolicyData) -> Estimate:
        qhat, w, residuals = dr_terms(data, "SwitchDR")
        terms = qhat + np.where(w <= self.threshold, w * residuals, 0.0)
        value = float(np.mean(terms))
        return self._result(data, value, normal_interval(terms, value, self.level), "normal")
