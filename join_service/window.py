"""The join rule: a pure state machine that joins decisions with what followed them.

Feed it events with ``on_decision``, ``on_outcome``, ``on_reward`` and
``on_activation``; each call returns the joined examples whose windows the call
closed (usually none), ordered by close time, then by decision arrival. Nothing
here does I/O or reads a clock: time is the events' own time.

**Stream time** is the largest event time seen; it never goes backwards. A
decision made at ``t`` owns the half-open window ``[t, t + window)``: it closes
as soon as stream time reaches ``t + window``, and its joined example is
stamped with that close time. An outcome stamped exactly ``t + window`` is late.

**Idle streams.** When no events arrive, stream time stands still and windows
would stay open forever. Runners therefore call :meth:`Join.advance` with
:func:`idle_stream_time`: the stream time at the last arrival plus the
wall-clock time elapsed since then (a monotonic clock), *not* the wall-clock
date — producers' clocks and replays of old logs may be far from "now".

**Memory** is bounded by event time (see :mod:`join_service.join_memory`); a
decision whose window closed more than one window ago is refused as ``stale``,
since the join could no longer tell whether it had already emitted it.

See ``docs/join.md`` for the full table of rules.

>>> from datetime import UTC, datetime, timedelta
>>> from schemas import Context
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> join = Join()
>>> join.on_decision(DecisionEvent(
...     event_id="d1", decision_point="home_products", timestamp=t0,
...     context=Context(session_id="s1"), persona="visitor", actions=[],
...     chosen_index=0, probabilities=[], model_version="v1"))
[]
>>> join.on_outcome(OutcomeEvent(
...     outcome_id="o1", session_id="s1", type="basket_add", timestamp=t0 + timedelta(seconds=3)))
[]
>>> [(e.event_id, e.reward, e.close_reason) for e in join.advance(t0 + timedelta(seconds=20))]
[('d1', 3.0, 'outcome')]
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from pydantic import ValidationError

from join_service.horizons import ConfigSource, JoinHorizons
from join_service.join_memory import ClosedDecisions, SeenIds
from join_service.join_state import (
    ClosedDecision,
    DroppedEvent,
    DropReason,
    FollowUp,
    HeldEvent,
    JoinCounters,
    JoinSnapshot,
    JoinStats,
    OpenDecision,
)
from join_service.open_windows import OpenWindows
from join_service.reward_rule import close_reward, ordered_outcomes
from join_service.skew_hold import HeldEvents
from join_service.stream_time import idle_stream_time
from learnloop.errors import InvalidInput
from schemas import (
    ActivationEvent,
    DecisionEvent,
    DecisionPointConfig,
    JoinedExample,
    JoinInput,
    OutcomeEvent,
    RewardEvent,
)

__all__ = ["ConfigSource", "Join", "idle_stream_time"]


class Join:
    """Joins decisions with outcomes, direct rewards and activations by event time.

    Parameters
    ----------
    configs
        Decision-point settings (window, reward map, aggregation, default reward,
        skew tolerance). A decision point it does not know gets the defaults.
        The window length is fixed when a decision arrives, the reward map is
        read when an outcome is attributed, aggregation and default reward when
        the window closes.
    """

    def __init__(self, configs: ConfigSource | None = None) -> None:
        self.configs = configs
        self._horizons = JoinHorizons(configs)
        self._stream_time: datetime | None = None
        self._seq = 0
        self._counters = JoinCounters()
        self._open = OpenWindows()
        self._closed = ClosedDecisions()
        self._held = HeldEvents()
        self._seen = SeenIds()
        self._dropped: list[DroppedEvent] = []

    # -- feeding ---------------------------------------------------------------------------

    def on_event(self, event: JoinInput) -> list[JoinedExample]:
        """Feed any input event (for replays of a mixed log)."""
        if isinstance(event, DecisionEvent):
            return self.on_decision(event)
        if isinstance(event, OutcomeEvent):
            return self.on_outcome(event)
        if isinstance(event, RewardEvent):
            return self.on_reward(event)
        return self.on_activation(event)

    def on_decision(self, decision: DecisionEvent) -> list[JoinedExample]:
        """Open a window for a decision and give it the follow-ups that arrived before it."""
        emitted = self._move_to(decision.timestamp)
        self._seq += 1
        event_id = decision.event_id
        if event_id in self._open or event_id in self._closed:
            self._counters.duplicates += 1
            return emitted
        config = self._horizons.config(decision.decision_point)
        window = self._horizons.duration(config.window_seconds)
        close_at = decision.timestamp + window
        now = self._stream_time
        assert now is not None
        if close_at + window <= now:
            self._drop("stale", decision)
            return emitted
        self._counters.decisions += 1
        self._horizons.cover(config)
        opened = OpenDecision(decision, self._seq, close_at, decision.activated)
        self._open.add(opened)
        if len(self._held):
            self._give_held(opened, config)
        if close_at <= now:
            emitted.extend(self._close_due(now))
        return emitted

    def on_outcome(self, outcome: OutcomeEvent) -> list[JoinedExample]:
        """Attribute an outcome by decision ``event_id``, else to its session's open decisions."""
        emitted = self._move_to(outcome.timestamp)
        self._seq += 1
        if not self._first_time("outcome", outcome.outcome_id):
            return emitted
        self._counters.outcomes += 1
        if outcome.event_id is not None:
            self._to_decision(outcome.event_id, outcome)
        elif outcome.session_id is not None:
            self._to_session(outcome.session_id, outcome)
        else:
            self._unmatched(outcome)
        return emitted

    def on_reward(self, reward: RewardEvent) -> list[JoinedExample]:
        """Record a direct reward; it overrides the decision's outcomes at close."""
        emitted = self._move_to(reward.timestamp)
        self._seq += 1
        if self._first_time("reward", reward.reward_id):
            self._counters.rewards += 1
            self._to_decision(reward.event_id, reward)
        return emitted

    def on_activation(self, activation: ActivationEvent) -> list[JoinedExample]:
        """Activate a deferred decision so that its window closes with a joined example."""
        emitted = self._move_to(activation.timestamp)
        self._seq += 1
        if self._first_time("activation", activation.activation_id):
            self._counters.activations += 1
            self._to_decision(activation.event_id, activation)
        return emitted

    def advance(self, stream_time: datetime) -> list[JoinedExample]:
        """Move stream time forward (an idle stream; see :func:`idle_stream_time`)."""
        if stream_time.tzinfo is None:
            raise InvalidInput("advance() needs a timezone-aware time; pass UTC")
        return self._move_to(stream_time)

    # -- reading ---------------------------------------------------------------------------

    @property
    def stream_time(self) -> datetime | None:
        """The largest event time seen (``None`` before the first event)."""
        return self._stream_time

    @property
    def stats(self) -> JoinStats:
        """Counters and gauges, for metrics and logs."""
        return JoinStats(
            **asdict(self._counters),
            open_windows=len(self._open),
            held_events=len(self._held),
            stream_time=self._stream_time,
        )

    def drain_dropped(self) -> list[DroppedEvent]:
        """Hand over (and forget) the events not applied since the last call, for logging."""
        dropped, self._dropped = self._dropped, []
        return dropped

    # -- persistence -----------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state as JSON, to be stored atomically with the input offsets."""
        return (
            JoinSnapshot(
                stream_time=self._stream_time,
                seq=self._seq,
                longest_window=self._horizons.longest_window,
                longest_skew=self._horizons.longest_skew,
                counters=self._counters,
                open=list(self._open),
                closed=list(self._closed),
                held=list(self._held),
                seen=list(self._seen),
                dropped=self._dropped,
            )
            .model_dump_json()
            .encode()
        )

    @classmethod
    def restore(cls, data: bytes, configs: ConfigSource | None = None) -> Join:
        """A join that continues exactly where the one that took ``data`` stopped."""
        try:
            state = JoinSnapshot.model_validate_json(data)
        except ValidationError as exc:
            raise InvalidInput(f"not a join snapshot this version can read: {exc}") from exc
        join = cls(configs)
        join._stream_time = state.stream_time
        join._seq = state.seq
        join._horizons = JoinHorizons(configs, longest=(state.longest_window, state.longest_skew))
        join._counters = state.counters
        join._open = OpenWindows(state.open)
        join._closed = ClosedDecisions(state.closed)
        join._held = HeldEvents(state.held)
        join._seen = SeenIds(state.seen)
        join._dropped = state.dropped
        return join

    # -- time ------------------------------------------------------------------------------

    def _now(self) -> datetime:
        assert self._stream_time is not None, "stream time is set by the event being handled"
        return self._stream_time

    def _move_to(self, time: datetime) -> list[JoinedExample]:
        """Advance stream time; close windows, expire held events, forget old memory."""
        if self._stream_time is not None and time <= self._stream_time:
            return []
        self._stream_time = time
        next_close = self._open.next_close()
        emitted = self._close_due(time) if next_close is not None and next_close <= time else []
        if len(self._held):
            for waiting in self._held.expire(time):
                if not waiting.matched:
                    self._unmatched(waiting.event)
        self._closed.forget(time)
        self._seen.forget(time)
        return emitted

    # -- closing ---------------------------------------------------------------------------

    def _close_due(self, now: datetime) -> list[JoinedExample]:
        emitted: list[JoinedExample] = []
        for opened in self._open.pop_due(now):
            example = self._close(opened, now)
            if example is not None:
                emitted.append(example)
        return emitted

    def _close(self, opened: OpenDecision, now: datetime) -> JoinedExample | None:
        """Close one window: remember the decision, and join it unless it was never activated."""
        decision = opened.decision
        close_at = opened.close_at
        self._closed.add(
            ClosedDecision(
                decision.event_id, decision.timestamp, close_at, now + self._horizons.closed_memory,
                decision.context.session_id,
            )
        )  # fmt: skip
        if not opened.activated:
            self._drop("not_activated", decision)
            return None
        config = self._horizons.config(decision.decision_point)
        reward, reason = close_reward(config, opened.counted, opened.direct)
        if reason == "outcome":
            self._counters.joined_outcome += 1
        elif reason == "direct":
            self._counters.joined_direct += 1
        else:
            self._counters.joined_default += 1
        return JoinedExample(
            event_id=decision.event_id,
            timestamp=close_at,
            decision=decision,
            outcomes=ordered_outcomes(opened.counted),
            reward=float(reward),
            close_reason=reason,
            late_outcomes=opened.late_outcomes,
            traceparent=decision.traceparent,
        )

    # -- attribution -----------------------------------------------------------------------

    def _first_time(self, kind: str, own_id: str) -> bool:
        """Remember a follow-up's own id; ``False`` (and counted) if it is a duplicate."""
        now = self._stream_time
        assert now is not None
        if self._seen.first_time(kind, own_id, now + self._horizons.id_memory):
            return True
        self._counters.duplicates += 1
        return False

    def _to_decision(self, event_id: str, event: FollowUp) -> None:
        opened = self._open.get(event_id)
        if opened is not None:
            self._apply(opened, event, self._seq)
        elif event_id in self._closed:
            self._drop("late", event)
        else:
            self._hold(event, matched=False)

    def _to_session(self, session_id: str, outcome: OutcomeEvent) -> None:
        matched = False
        time = outcome.timestamp
        for opened in self._open.of_session(session_id):
            if opened.decision.timestamp <= time:
                self._apply(opened, outcome, self._seq)
                matched = True
        if not matched and self._closed.session_has_decision_at_or_before(session_id, time):
            self._drop("late", outcome)
            return
        # Held even when it counted: a decision of this session may still arrive (skew).
        self._hold(outcome, matched=matched)

    def _apply(self, opened: OpenDecision, event: FollowUp, seq: int) -> None:
        reward_map = self._horizons.config(opened.decision.decision_point).reward_map
        if not opened.take(event, seq, reward_map):
            self._counters.unknown_type += 1

    def _give_held(self, opened: OpenDecision, config: DecisionPointConfig) -> None:
        """Give a newly arrived decision the follow-ups that were waiting for it."""
        now = self._now()
        tolerance = self._horizons.duration(config.skew_tolerance_seconds)
        decision = opened.decision
        for waiting in self._held.take_for_decision(decision.event_id):
            if waiting.since + tolerance <= now:
                self._unmatched(waiting.event)
            elif waiting.event.timestamp >= opened.close_at:
                if isinstance(waiting.event, OutcomeEvent):
                    opened.late_outcomes += 1
                self._drop("late", waiting.event)
            else:
                self._apply(opened, waiting.event, waiting.seq)
        session_id = decision.context.session_id
        if session_id is None:
            return
        for waiting in self._held.of_session(session_id):
            time = waiting.event.timestamp
            if waiting.since + tolerance > now and decision.timestamp <= time < opened.close_at:
                self._apply(opened, waiting.event, waiting.seq)
                waiting.matched = True

    def _hold(self, event: FollowUp, *, matched: bool) -> None:
        now = self._now()
        deadline = now + self._horizons.hold_for
        if deadline > now:
            self._held.add(HeldEvent(event, self._seq, now, deadline, matched))
        elif not matched:
            self._unmatched(event)

    def _unmatched(self, event: FollowUp) -> None:
        """A follow-up that found no open window: late if its decision is known, else orphaned."""
        if self._closed.knows(event):
            self._drop("late", event)
        else:
            self._drop("orphaned", event)

    def _drop(self, reason: DropReason, event: JoinInput) -> None:
        """Count an event the join does not apply under its reason, and keep it for the runner."""
        setattr(self._counters, reason, getattr(self._counters, reason) + 1)
        self._dropped.append(DroppedEvent(reason=reason, stream_time=self._now(), event=event))
