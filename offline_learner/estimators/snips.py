"""Self-normalised IPS: the IPS sum divided by the sum of the weights instead of n.

Swaminathan & Joachims, "The Self-Normalized Estimator for Counterfactual Learning"
(NeurIPS 2015). Slightly biased (a ratio), but bounded by the reward range and much
less variable than IPS when a few weights are large.

    V_SNIPS = sum_i w_i r_i / sum_i w_i

Its normal interval comes from the delta method: the ratio linearised around the
estimate has per-example terms ``w_i (r_i - V) / mean(w)``.

>>> e = SNIPS().estimate(rewards=[1, 0, 1, 1], logging_propensities=[0.5, 0.5, 0.25, 0.5],
...                      target_probabilities=[1, 0, 0.5, 0.5])
>>> round(e.value, 6), e.interval
(1.0, 'delta')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from learnloop.errors import InvalidInput
from offline_learner.estimators.base import Estimator, check_interval
from offline_learner.estimators.cressie_read import cressie_read_interval, observed_or
from offline_learner.estimators.estimate import Estimate
from offline_learner.estimators.inputs import FloatArray, OffPolicyData
from offline_learner.estimators.normal_interval import normal_interval

SnipsInterval = Literal["delta", "cressie-read"]
INTERVALS: tuple[SnipsInterval, ...] = ("delta", "cressie-read")


def self_normalised(name: str, w: FloatArray, residuals: FloatArray) -> tuple[float, FloatArray]:
    """``sum w x / sum w`` and its delta-method terms ``w (x - ratio) / mean(w)``."""
    total = float(np.sum(w))
    if total <= 0.0:
        raise InvalidInput(
            f"{name} is undefined: the target policy gives probability 0 to every logged "
            "action, so no logged example says anything about it"
        )
    ratio = float(np.dot(w, residuals)) / total
    return ratio, w * (residuals - ratio) / (total / w.shape[0])


@dataclass(frozen=True)
class SNIPS(Estimator):
    """SNIPS (Swaminathan & Joachims 2015), ``sum w_i r_i / sum w_i``; delta or Cressie-Read CI.

    Parameters
    ----------
    interval:
        ``"delta"``: normal interval of the linearised ratio. ``"cressie-read"``:
        the empirical-likelihood interval (the same one IPS offers).
    reward_range, weight_range:
        As for :class:`~offline_learner.estimators.ips.IPS`.
    """

    interval: SnipsInterval = "delta"
    reward_range: tuple[float, float] | None = None
    weight_range: tuple[float, float] = (0.0, math.inf)

    name: ClassVar[str] = "snips"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_interval(self.interval, INTERVALS)

    def estimate_data(self, data: OffPolicyData) -> Estimate:
        w = data.weights
        value, terms = self_normalised("SNIPS", w, data.rewards)
        if self.interval == "delta":
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
