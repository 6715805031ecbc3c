"""Cressie-Read (CR(-2)) empirical-likelihood interval for the value of a target policy.

Karampatziakis, Mineiro & Ramdas, "Empirical Likelihood for Contextual Bandits"
(NeurIPS 2020). The interval is the set of values V reachable by re-weighting the
logged examples with a distribution Q close to the empirical one in the Cressie-Read
divergence with exponent -2, subject to the importance-weight moment condition
E_Q[w] = 1. One fictitious example with weight ``w_min`` or ``w_max`` (the true
bounds of the weight, by default 0 and infinity) and reward at the end of the
reward range absorbs the mass the logged sample cannot explain, which is what
makes the interval valid in small samples. CR(-2) has a closed form: each bound
is a one-dimensional quadratic problem, solved here from six sums
(n, sum w, sum w^2, sum w r, sum w^2 r, sum w^2 r^2). The size of the divergence
ball is the (1 - alpha) quantile of F(1, n).

The result equals the ``estimators.bandits.cressieread.Interval`` of the
vw-estimators package (tested to 1e-9), which sums exactly where this uses numpy's
pairwise sums (10x faster on a million examples). Should no candidate bound exist
(not met in the tests), this answers the trivial end of the reward range.

>>> w = [0.5, 2.0, 1.0, 0.5, 2.0, 1.0, 1.5, 0.5]
>>> r = [1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0]
>>> low, high = cressie_read_interval(w, r, 0.95, (0.0, 1.0))
>>> 0.0 <= low < high <= 1.0
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import f as f_distribution

from learnloop.errors import InvalidInput

ATOL = 1e-9
"""Tolerance under which the quadratic's discriminant counts as zero."""


@dataclass(frozen=True)
class _Moments:
    """The sums the closed form needs; ``negated`` flips the rewards' sign."""

    n: float
    w: float
    ww: float
    wr: float
    wwr: float
    wwrr: float

    def negated(self) -> _Moments:
        return _Moments(self.n, self.w, self.ww, -self.wr, -self.wwr, self.wwrr)


def _candidate(x: float, y: float, z: float) -> float | None:
    """The smaller root ``x - sqrt(2 y z)`` of the bound's quadratic, if it is real."""
    if abs(y * z) <= ATOL * ATOL:
        return x - math.sqrt(2.0) * ATOL
    if z <= 0.0 and y * z >= 0.0:
        return x - math.sqrt(2.0 * y * z)
    return None


def _lowest_value(
    m: _Moments, reward: float, w_fakes: tuple[float, float], phi: float
) -> float | None:
    """Smallest value over the divergence ball, the fictitious example having ``reward``."""
    found: list[float] = []
    n = m.n
    for w_fake in w_fakes:
        if math.isinf(w_fake):
            # An infinite weight can carry only vanishing mass: the limit of the finite case.
            x = reward + (m.wr - m.w * reward) / n
            y = (reward * m.w - m.wr) ** 2 / (n * (1 + n)) - (
                reward**2 * m.ww - 2 * reward * m.wwr + m.wwrr
            ) / (1 + n)
            z = phi + 1 / (2 * n)
        else:
            # Averages over the n logged examples plus the fictitious one.
            mw = (w_fake + m.w) / (1 + n)
            mww = (w_fake**2 + m.ww) / (1 + n)
            mwr = (w_fake * reward + m.wr) / (1 + n)
            mwwr = (w_fake**2 * reward + m.wwr) / (1 + n)
            mwwrr = (w_fake**2 * reward**2 + m.wwrr) / (1 + n)
            var_w = mww - mw**2
            if not var_w > 0:
                continue
            cov = mwwr - mw * mwr
            x = mwr + (1 - mw) * cov / var_w
            y = cov**2 / var_w - (mwwrr - mwr**2)
            z = phi + 0.5 * (1 - mw) ** 2 / var_w
        root = _candidate(x, y, z)
        if root is not None:
            found.append(root)
    return min(found) if found else None


def cressie_read_interval(
    weights: Sequence[float] | npt.NDArray[np.float64],
    rewards: Sequence[float] | npt.NDArray[np.float64],
    level: float,
    reward_range: tuple[float, float],
    weight_range: tuple[float, float] = (0.0, math.inf),
) -> tuple[float, float]:
    """The CR(-2) interval at ``level`` for weights ``w = pi / mu`` and rewards in ``reward_range``.

    ``weight_range`` are the true bounds of the importance weight (``w_min < 1 < w_max``);
    the observed weights widen it if they fall outside. Tighter true bounds (for example
    ``w_max = 1 / smallest logging propensity``) give tighter intervals.
    """
    w = np.asarray(weights, dtype=np.float64)
    r = np.asarray(rewards, dtype=np.float64)
    r_min, r_max = reward_range
    if not r_min < r_max:
        raise InvalidInput(f"reward_range {reward_range} must be (low, high) with low < high")
    if r.size and (r.min() < r_min or r.max() > r_max):
        raise InvalidInput(
            f"rewards span [{r.min()}, {r.max()}], outside reward_range {reward_range}: "
            "pass the true bounds of the reward"
        )
    w_min, w_max = weight_range
    if not (w_min < 1.0 < w_max):
        raise InvalidInput(f"weight_range {weight_range} must satisfy low < 1 < high")
    if w.size == 0:
        raise InvalidInput("no examples: an interval needs at least one logged example")
    w_min, w_max = min(w_min, float(w.min())), max(w_max, float(w.max()))

    ww = w * w
    m = _Moments(
        n=float(w.shape[0]),
        w=float(np.sum(w)),
        ww=float(np.sum(ww)),
        wr=float(np.dot(w, r)),
        wwr=float(np.dot(ww, r)),
        wwrr=float(np.dot(ww, r * r)),
    )
    n = m.n
    # Divergence of the closest distribution meeting E_Q[w] = 1, plus the F(1, n) radius.
    w_fake = w_max if m.w < n else w_min
    if math.isinf(w_fake):
        g_star = 1 + 1 / n
    else:
        a = (w_fake + m.w) / (1 + n)
        b = (w_fake**2 + m.ww) / (1 + n)
        g_star = (1 + n) * (a - 1) ** 2 / (b - a * a)
    radius = float(f_distribution.isf(1.0 - level, 1, n))
    phi = (-g_star - radius) / (2 * (1 + n))

    w_fakes = (w_min, w_max)
    low = _lowest_value(m, r_min, w_fakes, phi)
    # The upper bound is the lower bound of the negated rewards, negated back.
    neg_high = _lowest_value(m.negated(), -r_max, w_fakes, phi)
    lower = r_min if low is None else min(r_max, max(r_min, low))
    upper = r_max if neg_high is None else min(r_max, max(r_min, -neg_high))
    return lower, upper


def observed_or(
    reward_range: tuple[float, float] | None, rewards: npt.NDArray[np.float64]
) -> tuple[float, float]:
    """``reward_range``, or the observed [min, max] of the rewards when it is not known.

    The observed range is optimistic (the true one can only be wider), and it must not
    collapse to a point, so constant rewards r get [r - 1, r + 1].
    """
    if reward_range is not None:
        return reward_range
    low, high = float(rewards.min()), float(rewards.max())
    return (low, high) if low < high else (low - 1.0, high + 1.0)
