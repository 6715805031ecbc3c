"""Normal (CLT) intervals on per-example terms, shared by the estimators that average terms.

An estimator that is a mean of i.i.d. per-example terms t_i (IPS, DM, DR and
switch-DR) gets ``mean(t) +- z * sd(t) / sqrt(n)``, with the sample standard
deviation (n - 1 in the denominator) and z the two-sided normal quantile. A
ratio estimator (SNIPS, SNDR) passes its linearised terms (delta method) instead.

>>> low, high = normal_interval([1.0, 2.0, 3.0], 2.0, 0.95)
>>> round(low, 4), round(high, 4)
(0.8684, 3.1316)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from learnloop.errors import InvalidInput


def check_level(level: float) -> None:
    """Refuse a confidence level outside (0, 1)."""
    if not (0.0 < level < 1.0):
        raise InvalidInput(f"level is {level}: a confidence level must lie in (0, 1), e.g. 0.95")


def z_value(level: float) -> float:
    """Two-sided standard normal quantile: 1.959963984540054 for 0.95."""
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def normal_interval(
    terms: Sequence[float] | npt.NDArray[np.float64], centre: float, level: float
) -> tuple[float, float]:
    """``centre +- z * sd(terms) / sqrt(n)``; needs at least two terms for a variance."""
    t = np.asarray(terms, dtype=np.float64)
    n = t.shape[0]
    if n < 2:
        raise InvalidInput(
            f"{n} example(s): a confidence interval needs at least 2 logged examples"
        )
    sd = float(np.std(t, ddof=1))
    half = z_value(level) * sd / math.sqrt(n)
    return centre - half, centre + half
