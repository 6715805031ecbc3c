"""Apprentice mode's measurement: how often the learned policy would have chosen what
the baseline served, and how much of the baseline's reward that choice covers.

In apprentice mode the decision service serves the baseline (the first candidate) and
the learner learns from it. Before it learns each example it scores it (progressive
validation), so it knows the action its own model would have chosen. These counters,
cumulative over the decision point's life and kept in every release's metrics, are
what Personalizer reported as ``latestApprenticeModeMetrics``: events, *imitated*
events (the model's choice was the baseline's), their rewards, and the reward of the
imitated ones. ``sumOfImitatedRewards / sumOfRewards`` near 1 says the learned policy
does as well as the baseline on the traffic seen: time to switch to online mode.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

PREFIX = "apprentice_"


@dataclass(slots=True)
class ApprenticeCounts:
    events: int = 0
    imitated: int = 0
    reward_sum: float = 0.0
    imitated_reward_sum: float = 0.0
    last_event_time: float = 0.0  # epoch seconds of the newest apprentice example
    first_event_time: float = 0.0

    def add(self, pmf: Sequence[float], served: int, reward: float, at: datetime) -> None:
        """One apprentice example: the model's pmf before learning it, the served index.

        >>> from datetime import UTC, datetime
        >>> counts = ApprenticeCounts()
        >>> t = datetime(2026, 1, 1, tzinfo=UTC)
        >>> counts.add([0.9, 0.1], 0, 1.0, t); counts.add([0.1, 0.9], 0, 0.5, t)
        >>> counts.events, counts.imitated, counts.reward_sum, counts.imitated_reward_sum
        (2, 1, 1.5, 1.0)
        """
        chosen = max(range(len(pmf)), key=pmf.__getitem__) if pmf else -1
        self.events += 1
        self.reward_sum += reward
        if chosen == served:
            self.imitated += 1
            self.imitated_reward_sum += reward
        stamp = at.timestamp()
        self.last_event_time = max(self.last_event_time, stamp)
        if not self.first_event_time:
            self.first_event_time = stamp

    def metrics(self) -> dict[str, float]:
        if not self.events:
            return {}
        return {
            f"{PREFIX}events": float(self.events),
            f"{PREFIX}imitated": float(self.imitated),
            f"{PREFIX}reward_sum": self.reward_sum,
            f"{PREFIX}imitated_reward_sum": self.imitated_reward_sum,
            f"{PREFIX}first_event_time": self.first_event_time,
            f"{PREFIX}last_event_time": self.last_event_time,
        }

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, float]) -> ApprenticeCounts:
        """Back from a release's metrics (a restart goes on counting).

        >>> counts = ApprenticeCounts(3, 2, 1.0, 0.5, 9.0, 1.0)
        >>> ApprenticeCounts.from_metrics(counts.metrics()) == counts
        True
        """
        return cls(
            events=int(metrics.get(f"{PREFIX}events", 0)),
            imitated=int(metrics.get(f"{PREFIX}imitated", 0)),
            reward_sum=metrics.get(f"{PREFIX}reward_sum", 0.0),
            imitated_reward_sum=metrics.get(f"{PREFIX}imitated_reward_sum", 0.0),
            last_event_time=metrics.get(f"{PREFIX}last_event_time", 0.0),
            first_event_time=metrics.get(f"{PREFIX}first_event_time", 0.0),
        )
