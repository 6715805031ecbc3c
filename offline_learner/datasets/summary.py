"""What a dataset holds, in one streaming pass: rows, time span, decision points, chosen
actions, reward and logging-propensity ranges, close reasons.

The summary is what ``learnloop dataset describe`` prints and what every offline result
payload carries under ``"dataset"``, so it is a plain JSON-able dict via :meth:`to_dict`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.events import JoinedExample, utc_now_iso


@dataclass(frozen=True)
class DatasetSummary:
    """Counts and ranges over a dataset's rows (decision timestamps, chosen actions)."""

    source: str
    rows: int
    first: datetime | None
    last: datetime | None
    decision_points: dict[str, int]
    actions: dict[str, int]
    reward_mean: float | None
    reward_min: float | None
    reward_max: float | None
    propensity_min: float | None
    propensity_max: float | None
    close_reasons: dict[str, int]
    not_activated: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by ``--json`` output and result payloads."""
        return {
            "source": self.source,
            "rows": self.rows,
            "first": utc_now_iso(self.first) if self.first else None,
            "last": utc_now_iso(self.last) if self.last else None,
            "decision_points": dict(self.decision_points),
            "actions": dict(self.actions),
            "reward_mean": self.reward_mean,
            "reward_min": self.reward_min,
            "reward_max": self.reward_max,
            "propensity_min": self.propensity_min,
            "propensity_max": self.propensity_max,
            "close_reasons": dict(self.close_reasons),
            "not_activated": self.not_activated,
        }


@dataclass
class SummaryAccumulator:
    """Folds examples one at a time into a :class:`DatasetSummary` (constant memory
    apart from the per-action and per-decision-point counters)."""

    source: str
    rows: int = 0
    first: datetime | None = None
    last: datetime | None = None
    reward_sum: float = 0.0
    reward_min: float = math.inf
    reward_max: float = -math.inf
    propensity_min: float = math.inf
    propensity_max: float = -math.inf
    not_activated: int = 0
    decision_points: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    close_reasons: Counter[str] = field(default_factory=Counter)

    def add(self, example: JoinedExample) -> None:
        decision = example.decision
        when = decision.timestamp
        self.rows += 1
        self.first = when if self.first is None or when < self.first else self.first
        self.last = when if self.last is None or when > self.last else self.last
        self.reward_sum += example.reward
        self.reward_min = min(self.reward_min, example.reward)
        self.reward_max = max(self.reward_max, example.reward)
        propensity = decision.chosen_probability
        self.propensity_min = min(self.propensity_min, propensity)
        self.propensity_max = max(self.propensity_max, propensity)
        self.not_activated += not decision.activated
        self.decision_points[decision.decision_point] += 1
        self.actions[decision.chosen_action] += 1
        self.close_reasons[example.close_reason] += 1

    def result(self) -> DatasetSummary:
        empty = self.rows == 0
        return DatasetSummary(
            source=self.source,
            rows=self.rows,
            first=self.first,
            last=self.last,
            decision_points=dict(sorted(self.decision_points.items())),
            actions=dict(self.actions.most_common()),
            reward_mean=None if empty else self.reward_sum / self.rows,
            reward_min=None if empty else self.reward_min,
            reward_max=None if empty else self.reward_max,
            propensity_min=None if empty else self.propensity_min,
            propensity_max=None if empty else self.propensity_max,
            close_reasons=dict(sorted(self.close_reasons.items())),
            not_activated=self.not_activated,
        )
