"""The one result every off-policy estimator returns: value, interval, weight diagnostics."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Estimate:
    """An estimated policy value with its confidence interval and importance-weight diagnostics.

    Parameters
    ----------
    estimator:
        Short name of the estimator (``"ips"``, ``"snips"``, ``"dm"``, ``"dr"``, ...).
    value:
        The point estimate of the target policy's expected reward per decision.
    lower, upper:
        The confidence interval at ``level``. An empirical-likelihood interval is
        clipped to the reward range, so it need not contain ``value``.
    level:
        Coverage the interval is built for, 0.95 by default.
    interval:
        How the interval was built: ``"normal"`` (CLT on the per-example terms),
        ``"delta"`` (delta method for a ratio) or ``"cressie-read"``.
    n:
        Number of logged examples.
    effective_sample_size:
        Kish's ``(sum w)^2 / sum w^2`` of the importance weights ``w = pi / mu``:
        how many examples the weighted sample is worth; far below ``n`` means the
        target policy goes where the logging policy rarely went.
    max_weight:
        The largest importance weight; one huge weight dominates IPS.

    >>> e = Estimate("ips", 0.5, 0.4, 0.6, 0.95, "normal", 100, 80.0, 3.0)
    >>> e.contains(0.45), e.width
    (True, 0.19999999999999996)
    >>> e.to_dict()["estimator"], e.to_dict()["n"]
    ('ips', 100)
    """

    estimator: str
    value: float
    lower: float
    upper: float
    level: float
    interval: str
    n: int
    effective_sample_size: float
    max_weight: float

    def __post_init__(self) -> None:
        # Built by the estimators only, so a violation here is a bug, not bad input.
        if not (self.lower <= self.upper) or math.isnan(self.value):
            raise ValueError(f"inconsistent estimate: {self!r}")

    @property
    def width(self) -> float:
        """Width of the confidence interval."""
        return self.upper - self.lower

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies inside the closed confidence interval."""
        return self.lower <= value <= self.upper

    def to_dict(self) -> dict[str, float | int | str]:
        """The JSON-able payload form every result (evaluation, search, importance) uses."""
        return asdict(self)
