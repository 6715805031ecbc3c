"""The estimators on a stream: sufficient statistics per chunk, never per-example arrays.

A replay over a million logged examples must not hold a million floats per candidate,
so :class:`StreamingEstimates` folds each chunk of arrays into running means and a
co-moment matrix (Chan, Golub & LeVeque's pairwise update, stable across chunks) of
five per-example series of the target policy: the weight ``w``, ``w r``, the model's
value ``qhat``, the weighted residual ``w (r - rhat)`` and its switch-DR part. Every
estimator here is a mean of one linear combination of these series, or a ratio whose
delta-method terms are one (with coefficients known only at the end), so its value
and its interval follow exactly from the means and the co-moments: the same
:class:`Estimate` as the array estimators, up to rounding.

Offered: IPS (normal interval), SNIPS (delta), DM, DR, SwitchDR (normal), SNDR (delta).
The Cressie-Read interval needs every weight and reward at once, so it is not offered
on the stream: use the array estimators for it.

With ``paired=True`` the stream also carries a reference policy on the same examples
and gives the **paired difference** candidate minus reference per estimator: the
linear combination of both policies' series, whose interval accounts for their
correlation (much narrower than two separate intervals would suggest).

>>> s = StreamingEstimates([IPS(), SNIPS()])
>>> s.update([1, 0], [0.5, 0.5], [1, 0])
>>> s.update([1, 0], [0.5, 0.25], [0.5, 0.5])
>>> s.estimate("ips").value == IPS().estimate([1, 0, 1, 0], [.5, .5, .5, .25], [1, 0, .5, .5]).value
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from learnloop.errors import InvalidInput
from offline_learner.estimators.base import Estimator
from offline_learner.estimators.direct_method import DM
from offline_learner.estimators.doubly_robust import DR
from offline_learner.estimators.estimate import Estimate
from offline_learner.estimators.inputs import ArrayLike, FloatArray, OffPolicyData
from offline_learner.estimators.ips import IPS
from offline_learner.estimators.normal_interval import z_value
from offline_learner.estimators.sndr import SNDR
from offline_learner.estimators.snips import SNIPS
from offline_learner.estimators.switch_dr import SwitchDR

W, WR, Q, WE, SWE = range(5)
SERIES = 5
"""Per policy: w, w*r, qhat, w*(r - rhat), 1{w <= tau} * w * (r - rhat)."""

MODEL_ESTIMATORS = frozenset({"dm", "dr", "switch-dr", "sndr"})


class _Moments:
    """Running count, mean vector and co-moment matrix of a few per-example series."""

    def __init__(self, width: int) -> None:
        self.n = 0
        self.mean = np.zeros(width)
        self.m2 = np.zeros((width, width))

    def update(self, x: FloatArray) -> None:
        k = x.shape[0]
        if k == 0:
            return
        mean_b = x.mean(axis=0)
        centred = x - mean_b
        m2_b = centred.T @ centred
        n = self.n + k
        delta = mean_b - self.mean
        self.m2 += m2_b + np.outer(delta, delta) * (self.n * k / n)
        self.mean += delta * (k / n)
        self.n = n


class _Weights:
    """Sum, sum of squares and maximum of one policy's importance weights."""

    def __init__(self) -> None:
        self.total = 0.0
        self.squares = 0.0
        self.largest = -math.inf

    def update(self, w: FloatArray) -> None:
        self.total += float(np.sum(w))
        self.squares += float(np.dot(w, w))
        self.largest = max(self.largest, float(np.max(w)))

    @property
    def effective_sample_size(self) -> float:
        return self.total**2 / self.squares if self.squares > 0 else 0.0


def _check_supported(estimator: Estimator) -> None:
    interval = getattr(estimator, "interval", None)
    if isinstance(estimator, IPS | SNIPS) and interval == "cressie-read":
        raise InvalidInput(
            f"{estimator.name} with the Cressie-Read interval needs all the data at once; "
            "the streaming estimates offer the normal/delta interval only: use the array "
            "estimator for Cressie-Read"
        )
    if not isinstance(estimator, IPS | SNIPS | DM | DR | SwitchDR | SNDR):
        raise InvalidInput(
            f"{type(estimator).__name__} has no streaming form: use IPS, SNIPS, DM, DR, "
            "SwitchDR or SNDR"
        )


def _series(data: OffPolicyData, threshold: float, needs_model: bool) -> FloatArray:
    """The five series of one policy for a validated chunk."""
    w = data.weights
    x = np.zeros((data.n, SERIES))
    x[:, W] = w
    x[:, WR] = w * data.rewards
    if needs_model:
        rhat, qhat = data.require_model("the reward-model estimators (DM, DR, SwitchDR, SNDR)")
        weighted = w * (data.rewards - rhat)
        x[:, Q] = qhat
        x[:, WE] = weighted
        x[:, SWE] = np.where(w <= threshold, weighted, 0.0)
    return x


def _combination(name: str, mean: FloatArray) -> tuple[float, FloatArray] | None:
    """The estimator's value from the series means and the coefficients of its (linearised)
    per-example terms; ``None`` when a ratio is undefined (every weight is 0)."""
    a = np.zeros(SERIES)
    if name == "ips":
        a[WR] = 1.0
        return float(mean[WR]), a
    if name == "dm":
        a[Q] = 1.0
        return float(mean[Q]), a
    if name == "dr":
        a[Q] = a[WE] = 1.0
        return float(mean[Q] + mean[WE]), a
    if name == "switch-dr":
        a[Q] = a[SWE] = 1.0
        return float(mean[Q] + mean[SWE]), a
    mean_w = float(mean[W])
    if mean_w <= 0.0:
        return None
    if name == "snips":
        ratio = float(mean[WR]) / mean_w
        a[WR], a[W] = 1.0 / mean_w, -ratio / mean_w
        return ratio, a
    correction = float(mean[WE]) / mean_w  # sndr
    a[Q], a[WE], a[W] = 1.0, 1.0 / mean_w, -correction / mean_w
    return float(mean[Q]) + correction, a


def _undefined(name: str) -> InvalidInput:
    return InvalidInput(
        f"{name} is undefined: the target policy gives probability 0 to every logged "
        "action, so no logged example says anything about it"
    )


class StreamingEstimates:
    """Running estimates of one target policy (and, ``paired``, of its difference to a
    reference policy) over chunks of logged examples.

    Parameters
    ----------
    estimators:
        Estimator settings (their ``level``, SwitchDR's ``threshold``); at most one of a
        kind. Names: ``ips``, ``snips``, ``dm``, ``dr``, ``switch-dr``, ``sndr``.
    paired:
        Also take the reference policy's arrays in :meth:`update` and offer
        :meth:`difference`.
    """

    def __init__(self, estimators: Sequence[Estimator], *, paired: bool = False) -> None:
        if not estimators:
            raise InvalidInput("no estimators given: name at least one, e.g. SNIPS()")
        self.estimators = {e.name: e for e in estimators}
        if len(self.estimators) != len(estimators):
            raise InvalidInput("each estimator may be given once")
        for estimator in estimators:
            _check_supported(estimator)
        self.paired = paired
        switch = self.estimators.get("switch-dr")
        self._threshold = switch.threshold if isinstance(switch, SwitchDR) else math.inf
        self._needs_model = bool(MODEL_ESTIMATORS & self.estimators.keys())
        self._moments = _Moments(2 * SERIES if paired else SERIES)
        self._weights = _Weights()

    @property
    def n(self) -> int:
        """Examples folded in so far."""
        return self._moments.n

    def update(
        self,
        rewards: ArrayLike,
        logging_propensities: ArrayLike,
        target_probabilities: ArrayLike,
        predicted_rewards: ArrayLike | None = None,
        target_predicted_rewards: ArrayLike | None = None,
        *,
        reference_probabilities: ArrayLike | None = None,
        reference_predicted_rewards: ArrayLike | None = None,
    ) -> None:
        """Fold one chunk in: the array estimators' arguments (see
        :class:`~offline_learner.estimators.inputs.OffPolicyData`), plus, when paired, the
        reference policy's probability of the logged action and its model value per context."""
        if len(rewards) == 0:
            return
        data = OffPolicyData.of(
            rewards,
            logging_propensities,
            target_probabilities,
            predicted_rewards,
            target_predicted_rewards,
        )
        x = _series(data, self._threshold, self._needs_model)
        if self.paired:
            if reference_probabilities is None:
                raise InvalidInput(
                    "paired estimates need reference_probabilities: the reference policy's "
                    "probability of each logged action"
                )
            reference = OffPolicyData.of(
                rewards,
                logging_propensities,
                reference_probabilities,
                predicted_rewards,
                reference_predicted_rewards,
            )
            x = np.hstack([x, _series(reference, self._threshold, self._needs_model)])
        self._moments.update(x)
        self._weights.update(data.weights)

    def value(self, name: str) -> float | None:
        """The current point estimate of ``name`` (cheap: no interval), ``None`` if undefined."""
        self._estimator(name)
        if self.n == 0:
            return None
        found = _combination(name, self._moments.mean[:SERIES])
        return None if found is None else found[0]

    def estimate(self, name: str) -> Estimate:
        """The target policy's estimate by ``name``, as the array estimator gives it."""
        estimator = self._estimator(name)
        found = _combination(name, self._moments.mean[:SERIES])
        if found is None:
            raise _undefined(name.upper())
        value, a = found
        if self.paired:
            a = np.concatenate([a, np.zeros(SERIES)])
        return self._result(estimator, value, a)

    def difference(self, name: str) -> Estimate:
        """The paired estimate of target minus reference by ``name`` (needs ``paired``)."""
        estimator = self._estimator(name)
        if not self.paired:
            raise InvalidInput("difference() needs StreamingEstimates(..., paired=True)")
        target = _combination(name, self._moments.mean[:SERIES])
        reference = _combination(name, self._moments.mean[SERIES:])
        if target is None or reference is None:
            raise _undefined(f"the {name.upper()} difference")
        return self._result(
            estimator, target[0] - reference[0], np.concatenate([target[1], -reference[1]])
        )

    def _estimator(self, name: str) -> Estimator:
        try:
            return self.estimators[name]
        except KeyError:
            raise InvalidInput(
                f"estimator {name!r} is not in this stream: it has {sorted(self.estimators)}"
            ) from None

    def _result(self, estimator: Estimator, value: float, a: FloatArray) -> Estimate:
        n = self.n
        if n < 2:
            raise InvalidInput(
                f"{n} example(s): a confidence interval needs at least 2 logged examples"
            )
        variance = max(float(a @ self._moments.m2 @ a) / (n - 1), 0.0)
        half = z_value(estimator.level) * math.sqrt(variance / n)
        ratio = estimator.name in ("snips", "sndr")
        return Estimate(
            estimator=estimator.name,
            value=value,
            lower=value - half,
            upper=value + half,
            level=estimator.level,
            interval="delta" if ratio else "normal",
            n=n,
            effective_sample_size=self._weights.effective_sample_size,
            max_weight=self._weights.largest,
        )
