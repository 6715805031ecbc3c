"""Raw VW learning the way the service does, for the in-process anchors: a decision is
learned only once event time passes its window, and decisions are served by a copy of
the model released every ``release_every`` learned examples.

With ``release_every=1`` the learning workspace serves itself (predicting changes nothing
in VW's state, so that is the freshest serving there is, without a reload per example).
"""

from __future__ import annotations

import heapq
from datetime import datetime

from learnloop.policy import VWPolicy
from schemas.events import DecisionEvent


class DelayedLearner:
    """One VW learner, its served copy and the decisions whose windows are still open."""

    def __init__(self, vw_args: str, release_every: int) -> None:
        self.vw_args = vw_args
        self.release_every = release_every
        self.learned = 0
        self._learner = VWPolicy(vw_args)
        self.serving = self._learner if release_every == 1 else VWPolicy(vw_args)
        self._closing: list[tuple[datetime, int, DecisionEvent, float]] = []

    def hold(self, closes_at: datetime, order: int, decision: DecisionEvent, reward: float) -> None:
        """Keep ``decision`` until event time passes ``closes_at``, then learn ``reward``."""
        heapq.heappush(self._closing, (closes_at, order, decision, reward))

    def advance(self, now: datetime) -> None:
        """Learn every decision whose window closed before ``now``, releasing on cadence."""
        while self._closing and self._closing[0][0] < now:
            _, _, decision, reward = heapq.heappop(self._closing)
            self._learner.learn(decision, reward)
            self.learned += 1
            if self.release_every > 1 and self.learned % self.release_every == 0:
                self.serving.close()
                self.serving = VWPolicy(self.vw_args, model=self._learner.to_bytes())

    def close(self) -> None:
        if self.serving is not self._learner:
            self.serving.close()
        self._learner.close()
