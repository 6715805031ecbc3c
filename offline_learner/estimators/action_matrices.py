"""From per-action matrices to the per-example arrays the estimators take.

A data scientist often has, for each logged context, the target policy's whole
distribution ``pi[i, a]`` and a reward model's prediction for every action
``rhat[i, a]`` (columns in one fixed action order, ``actions[i]`` the logged
column). :func:`model_terms` reduces them to the logged action's probability and
prediction and the model's value of the target policy per context.

>>> t = model_terms(actions=[0, 1], target_policy=[[0.8, 0.2], [0.5, 0.5]],
...                 reward_predictions=[[1.0, 0.0], [0.2, 0.6]])
>>> t.target_probabilities.tolist(), t.predicted_rewards.tolist()
([0.8, 0.5], [1.0, 0.6])
>>> t.target_predicted_rewards.tolist()
[0.8, 0.4]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from learnloop.errors import InvalidInput
from offline_learner.estimators.inputs import FloatArray

Matrix = Sequence[Sequence[float]] | npt.NDArray[np.floating]

ROW_SUM_TOLERANCE = 1e-6
"""How far a row of the target policy may sum from 1 (rounding in its producer)."""


@dataclass(frozen=True)
class ModelTerms:
    """Per-example arrays for ``Estimator.estimate``'s last three arguments."""

    target_probabilities: FloatArray
    predicted_rewards: FloatArray
    target_predicted_rewards: FloatArray


def _matrix(name: str, values: Matrix) -> FloatArray:
    try:
        m = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidInput(
            f"{name} must be a matrix (examples x actions) of numbers: {error}"
        ) from None
    if m.ndim != 2 or m.shape[1] == 0:
        raise InvalidInput(
            f"{name} must be a matrix of shape (examples, actions), got shape {m.shape}"
        )
    bad = np.argwhere(~np.isfinite(m))
    if bad.size:
        i, a = bad[0]
        raise InvalidInput(f"{name}[{i}, {a}] is {m[i, a]}: every value must be finite")
    return m


def model_terms(
    actions: Sequence[int] | npt.NDArray[np.integer],
    target_policy: Matrix,
    reward_predictions: Matrix,
) -> ModelTerms:
    """The logged action's target probability and prediction, and sum_a pi(a|x) rhat(x, a).

    ``target_policy`` rows must be probability distributions; ``actions[i]`` is the
    column of the action the logging policy took for example ``i``.
    """
    pi = _matrix("target_policy", target_policy)
    rhat = _matrix("reward_predictions", reward_predictions)
    if pi.shape != rhat.shape:
        raise InvalidInput(
            f"target_policy has shape {pi.shape} but reward_predictions {rhat.shape}: "
            "both need one row per example and one column per action, in the same order"
        )
    a = np.asarray(actions)
    if a.ndim != 1 or a.shape[0] != pi.shape[0]:
        raise InvalidInput(
            f"actions must hold one column index per example ({pi.shape[0]}), got shape {a.shape}"
        )
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise InvalidInput(f"actions must be integer column indices, got dtype {a.dtype}")
    outside = np.flatnonzero((a < 0) | (a >= pi.shape[1]))
    if outside.size:
        raise InvalidInput(
            f"actions[{outside[0]}] is {a[outside[0]]}: "
            f"a column index must lie in [0, {pi.shape[1]})"
        )
    bad_p = np.argwhere((pi < 0) | (pi > 1))
    if bad_p.size:
        i, j = bad_p[0]
        raise InvalidInput(
            f"target_policy[{i}, {j}] is {pi[i, j]}: a probability must lie in [0, 1]"
        )
    sums = pi.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOLERANCE)
    if off.size:
        raise InvalidInput(
            f"target_policy row {off[0]} sums to {sums[off[0]]}: "
            "each row must be a distribution over the actions"
        )
    rows = np.arange(pi.shape[0])
    return ModelTerms(
        target_probabilities=pi[rows, a],
        predicted_rewards=rhat[rows, a],
        target_predicted_rewards=np.einsum("ij,ij->i", pi, rhat),
    )
