"""Validated logged data an estimator reads: one row per logged decision, as float arrays.

Every estimator takes the same arrays, so a caller (or the replay evaluator) can run
several estimators on one validated :class:`OffPolicyData`:

- ``rewards`` r_i, the reward observed for the logged action;
- ``logging_propensities`` mu(a_i|x_i), the probability the logging policy gave
  the logged action, in (0, 1];
- ``target_probabilities`` pi(a_i|x_i), the probability the evaluated policy
  gives the same action, in [0, 1];
- for DM and DR, a reward model's ``predicted_rewards`` rhat(x_i, a_i) for the
  logged action and ``target_predicted_rewards``
  sum_a pi(a|x_i) rhat(x_i, a), the model's value of the target policy on the
  context. :mod:`offline_learner.estimators.action_matrices` builds both (and the
  target probabilities) from per-action matrices.

Bad input raises :class:`~learnloop.errors.InvalidInput` naming the array, the first
offending row and what to do.

>>> d = OffPolicyData.of([1.0, 0.0], [0.5, 0.25], [1.0, 0.5])
>>> d.weights.tolist(), d.n
([2.0, 2.0], 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from learnloop.errors import InvalidInput

FloatArray: TypeAlias = npt.NDArray[np.float64]
ArrayLike: TypeAlias = Sequence[float] | npt.NDArray[np.floating] | npt.NDArray[np.integer]


def as_vector(name: str, values: ArrayLike, n: int | None = None) -> FloatArray:
    """``values`` as a 1-D float64 array of finite numbers (and length ``n`` when given)."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidInput(f"{name} must be a sequence of numbers: {error}") from None
    if array.ndim != 1:
        raise InvalidInput(
            f"{name} must be one-dimensional (one value per example), got shape {array.shape}"
        )
    if n is not None and array.shape[0] != n:
        raise InvalidInput(
            f"{name} has {array.shape[0]} values but rewards has {n}: "
            "give one value per logged example"
        )
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise InvalidInput(f"{name}[{bad[0]}] is {array[bad[0]]}: every value must be finite")
    return array


def _check_range(name: str, array: FloatArray, low: float, high: float, low_open: bool) -> None:
    too_low = array <= low if low_open else array < low
    bad = np.flatnonzero(too_low | (array > high))
    if bad.size:
        bracket = "(" if low_open else "["
        raise InvalidInput(
            f"{name}[{bad[0]}] is {array[bad[0]]}: "
            f"it must be a probability in {bracket}{low:g}, {high:g}]"
            + (
                "; a logged action with propensity 0 cannot have been chosen, check the logging"
                if low_open
                else ""
            )
        )


@dataclass(frozen=True)
class OffPolicyData:
    """The logged examples, checked once; build it with :meth:`of`."""

    rewards: FloatArray
    logging_propensities: FloatArray
    target_probabilities: FloatArray
    predicted_rewards: FloatArray | None = None
    target_predicted_rewards: FloatArray | None = None

    @classmethod
    def of(
        cls,
        rewards: ArrayLike,
        logging_propensities: ArrayLike,
        target_probabilities: ArrayLike,
        predicted_rewards: ArrayLike | None = None,
        target_predicted_rewards: ArrayLike | None = None,
    ) -> OffPolicyData:
        """Validate: equal lengths, at least one example, finite values, probabilities."""
        r = as_vector("rewards", rewards)
        if r.shape[0] == 0:
            raise InvalidInput("rewards is empty: an estimate needs at least one logged example")
        n = r.shape[0]
        mu = as_vector("logging_propensities", logging_propensities, n)
        _check_range("logging_propensities", mu, 0.0, 1.0, low_open=True)
        pi = as_vector("target_probabilities", target_probabilities, n)
        _check_range("target_probabilities", pi, 0.0, 1.0, low_open=False)
        rhat = (
            None
            if predicted_rewards is None
            else as_vector("predicted_rewards", predicted_rewards, n)
        )
        qhat = (
            None
            if target_predicted_rewards is None
            else as_vector("target_predicted_rewards", target_predicted_rewards, n)
        )
        return cls(r, mu, pi, rhat, qhat)

    @property
    def n(self) -> int:
        """Number of logged examples."""
        return int(self.rewards.shape[0])

    @property
    def weights(self) -> FloatArray:
        """Importance weights w_i = pi(a_i|x_i) / mu(a_i|x_i)."""
        return self.target_probabilities / self.logging_propensities

    @property
    def effective_sample_size(self) -> float:
        """Kish's effective sample size (sum w)^2 / sum w^2; 0 when every weight is 0."""
        w = self.weights
        sum_sq = float(np.dot(w, w))
        return float(np.sum(w)) ** 2 / sum_sq if sum_sq > 0 else 0.0

    @property
    def max_weight(self) -> float:
        """The largest importance weight."""
        return float(np.max(self.weights))

    def require_model(self, estimator: str) -> tuple[FloatArray, FloatArray]:
        """The reward model's two arrays, or a clear error naming the estimator that needs them."""
        if self.predicted_rewards is None or self.target_predicted_rewards is None:
            raise InvalidInput(
                f"{estimator} needs a reward model: pass predicted_rewards (rhat for the logged "
                "action) and target_predicted_rewards (sum over actions of pi(a|x) * rhat(x, a)); "
                "action_matrices.model_terms() builds both from per-action matrices"
            )
        return self.predicted_rewards, self.target_predicted_rewards

    def require_model_target(self, estimator: str) -> FloatArray:
        """Only the model's value of the target policy per context (all DM needs)."""
        if self.target_predicted_rewards is None:
            raise InvalidInput(
                f"{estimator} needs target_predicted_rewards: sum over actions of "
                "pi(a|x) * rhat(x, a) per example (action_matrices.model_terms() builds it)"
            )
        return self.target_predicted_rewards
