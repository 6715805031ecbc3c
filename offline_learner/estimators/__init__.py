"""Off-policy estimators: how would a target policy have done on logged bandit data?

Pure numpy/scipy, no I/O. Every estimator is a frozen dataclass of settings whose
``estimate(rewards, logging_propensities, target_probabilities, predicted_rewards=None,
target_predicted_rewards=None)`` returns an :class:`Estimate` (value, confidence
interval, effective sample size, largest importance weight). See ``docs/offline.md``.

>>> from offline_learner.estimators import IPS, SNIPS
>>> data = dict(rewards=[1, 0, 1, 0], logging_propensities=[0.5] * 4,
...             target_probabilities=[1, 0, 1, 1])
>>> IPS().estimate(**data).value, SNIPS().estimate(**data).value
(1.0, 0.6666666666666666)
"""

from offline_learner.estimators.action_matrices import ModelTerms, model_terms
from offline_learner.estimators.base import Estimator
from offline_learner.estimators.cressie_read import cressie_read_interval
from offline_learner.estimators.direct_method import DM
from offline_learner.estimators.doubly_robust import DR
from offline_learner.estimators.estimate import Estimate
from offline_learner.estimators.inputs import OffPolicyData
from offline_learner.estimators.ips import IPS
from offline_learner.estimators.sndr import SNDR
from offline_learner.estimators.snips import SNIPS
from offline_learner.estimators.streaming import StreamingEstimates
from offline_learner.estimators.switch_dr import SwitchDR

__all__ = [
    "DM",
    "DR",
    "IPS",
    "SNDR",
    "SNIPS",
    "Estimate",
    "Estimator",
    "ModelTerms",
    "OffPolicyData",
    "StreamingEstimates",
    "SwitchDR",
    "cressie_read_interval",
    "model_terms",
]
