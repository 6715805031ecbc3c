"""The reward-over-time series of a replay: cumulative points, bounded in number.

However long the dataset, each candidate's ``over_time`` holds at most ``points``
evenly spaced points (plus the final one), without knowing the length in advance.

>>> t = Timeline("snips", points=4)
>>> for n in range(1, 11):
...     if n == t.next_boundary:
...         t.add(f"t{n}", n, 0.5, [n / 10])
>>> [p.n for p in t.series(0)]
[4, 8]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from learnloop.errors import InvalidInput


@dataclass(frozen=True)
class TimelinePoint:
    """Cumulative state after the first ``n`` activated examples (up to time ``end``)."""

    end: str
    n: int
    logged: float
    """Mean logged reward so far."""
    value: float
    """The candidate's running primary estimate so far."""

    def to_dict(self) -> dict[str, Any]:
        return {"end": self.end, "n": self.n, "logged": self.logged, "value": self.value}


class Timeline:
    """At most ``points`` evenly spaced cumulative points, whatever the dataset's length:
    a point every ``bucket`` examples, and when there are too many, every other point
    goes and the bucket doubles (the kept points are exactly the doubled bucket's ends)."""

    def __init__(self, primary: str, points: int) -> None:
        if points < 2:
            raise InvalidInput(f"points is {points}: over_time needs at least 2 points")
        self.primary = primary
        self.limit = points
        self.bucket = 1
        self.next_boundary = 1
        self._points: list[tuple[str, int, float, list[float | None]]] = []

    @property
    def last_n(self) -> int:
        return self._points[-1][1] if self._points else 0

    def add(
        self, end: str, n: int, logged: float, values: list[float | None], final: bool = False
    ) -> None:
        self._points.append((end, n, logged, values))
        if len(self._points) > self.limit and not final:
            self._points = self._points[1::2]
            self.bucket *= 2
        self.next_boundary = (n // self.bucket + 1) * self.bucket

    def series(self, candidate: int) -> list[TimelinePoint]:
        """One candidate's points (those where its estimate was defined)."""
        return [
            TimelinePoint(end, n, logged, value)
            for end, n, logged, values in self._points
            if (value := values[candidate]) is not None
        ]
