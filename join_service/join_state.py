"""What the join holds between events, what it counts, and how that is persisted.

The records are slotted dataclasses because the join touches them on every
event; pydantic validates and serialises them only when a runner takes a
:class:`JoinSnapshot` (to store it atomically with its input offset) or
restores one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from join_service.reward_rule import CountedOutcome, DirectReward
from schemas import ActivationEvent, DecisionEvent, JoinInput, OutcomeEvent, RewardEvent

FollowUp = OutcomeEvent | RewardEvent | ActivationEvent
"""An event that belongs to a decision: an outcome, a direct reward or an activation."""

DropReason = Literal["late", "orphaned", "stale", "not_activated"]


@dataclass(slots=True, eq=False)
class OpenDecision:
    """A decision whose window is open: what has counted for it so far."""

    decision: DecisionEvent
    seq: int
    close_at: datetime
    activated: bool
    counted: list[CountedOutcome] = field(default_factory=list)
    direct: list[DirectReward] = field(default_factory=list)
    late_outcomes: int = 0

    def take(self, event: FollowUp, seq: int, reward_map: Mapping[str, float]) -> bool:
        """Count a follow-up for this decision; ``False`` if it is an outcome of a type
        the reward map does not name (ignored)."""
        if isinstance(event, OutcomeEvent):
            reward = reward_map.get(event.type)
            if reward is None:
                return False
            self.counted.append(CountedOutcome(event, reward, seq))
        elif isinstance(event, RewardEvent):
            self.direct.append(DirectReward(event, seq))
        else:
            self.activated = True
        return True


@dataclass(slots=True, eq=False)
class ClosedDecision:
    """A recently closed decision, remembered so that follow-ups for it count as late
    (not orphaned) and a repeated decision counts as a duplicate (not a new one)."""

    event_id: str
    start: datetime
    close_at: datetime
    forget_at: datetime
    session_id: str | None


@dataclass(slots=True, eq=False)
class HeldEvent:
    """A follow-up waiting for its decision (clock skew between producers).

    ``since`` is the stream time when it arrived; it waits until ``deadline``.
    ``matched`` is true once a session outcome counted for some decision: it is
    then kept only so that decisions of the session that arrive later get it too.
    """

    event: FollowUp
    seq: int
    since: datetime
    deadline: datetime
    matched: bool = False
    done: bool = False


@dataclass(slots=True)
class JoinCounters:
    """Monotonic counters, exported as Prometheus counters by the runners."""

    decisions: int = 0
    outcomes: int = 0
    rewards: int = 0
    activations: int = 0
    joined_outcome: int = 0
    joined_default: int = 0
    joined_direct: int = 0
    late: int = 0
    duplicates: int = 0
    orphaned: int = 0
    unknown_type: int = 0
    not_activated: int = 0
    stale: int = 0


class JoinStats(BaseModel):
    """The join's counters plus its gauges (open windows, held events, stream time).

    ``late``: follow-ups for a decision (or session) whose window had closed.
    ``orphaned``: follow-ups whose decision never showed up within the skew tolerance.
    ``stale``: decisions older than the join's memory, refused (see the module docs).
    ``unknown_type``: (outcome, decision) attributions whose type is not in the reward map.
    """

    model_config = ConfigDict(frozen=True)

    decisions: int
    outcomes: int
    rewards: int
    activations: int
    joined_outcome: int
    joined_default: int
    joined_direct: int
    late: int
    duplicates: int
    orphaned: int
    unknown_type: int
    not_activated: int
    stale: int
    open_windows: int
    held_events: int
    stream_time: AwareDatetime | None

    @property
    def joined(self) -> int:
        """Joined examples emitted, whatever the close reason."""
        return self.joined_outcome + self.joined_default + self.joined_direct


class DroppedEvent(BaseModel):
    """An event the join did not apply, kept for the runner to log (never silently lost).

    ``late``: a follow-up after its window closed. ``orphaned``: a follow-up whose
    decision never arrived in time. ``stale``: a decision older than the join's
    memory. ``not_activated``: a deferred decision that closed without activation.
    """

    model_config = ConfigDict(frozen=True)

    reason: DropReason
    stream_time: AwareDatetime
    event: JoinInput


class JoinSnapshot(BaseModel):
    """Everything a :class:`join_service.window.Join` needs to continue exactly where it was.

    Lists keep the join's own order (arrival order, deadline order) so that a
    restored join emits the same examples in the same order.
    """

    format: Literal[1] = 1
    stream_time: AwareDatetime | None
    seq: int
    longest_window: float
    longest_skew: float
    counters: JoinCounters
    open: list[OpenDecision]
    closed: list[ClosedDecision]
    held: list[HeldEvent]
    seen: list[tuple[AwareDatetime, str, str]]
    dropped: list[DroppedEvent]
