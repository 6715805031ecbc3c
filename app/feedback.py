"""Feedback on decisions: outcomes, direct rewards and activations, logged durably.

Each event carries its own id (``outcome_id``, ``reward_id``, ``activation_id``)
used as the append's unique key, so a client that retries after a timeout is
not counted twice. Outcomes do not need their decision to exist yet (they may
race it, or name only a session); rewards and activations do.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.context import Context as TraceContext

from app.event_time import event_time
from app.event_writer import EventWriter, record
from app.metrics import ServiceMetrics
from learnloop.clock import Clock
from learnloop.errors import InvalidInput, NotFound
from learnloop.eventlog.base import Streams
from learnloop.telemetry import Spans, current_traceparent
from schemas.api import OutcomeRequest, RewardRequest
from schemas.events import ActivationEvent, OutcomeEvent, RewardEvent


@dataclass(frozen=True, slots=True)
class Accepted:
    """How many events were accepted, and how many of those were already recorded."""

    accepted: int
    duplicates: int


class FeedbackRecorder:
    """Turns outcome, reward and activation requests into logged events."""

    def __init__(
        self,
        *,
        writer: EventWriter,
        clock: Clock,
        spans: Spans,
        metrics: ServiceMetrics,
        max_future_seconds: float,
    ) -> None:
        self.writer = writer
        self.clock = clock
        self.spans = spans
        self.metrics = metrics
        self.max_future_seconds = max_future_seconds

    async def outcomes(
        self, requests: Sequence[OutcomeRequest], parent: TraceContext | None = None
    ) -> Accepted:
        """Validate every outcome first, then append them all in one call (all or nothing)."""
        with self.spans.span("outcomes", parent):
            return await self._outcomes(requests)

    async def _outcomes(self, requests: Sequence[OutcomeRequest]) -> Accepted:
        now = self.clock.now()
        traceparent = current_traceparent()
        events: list[OutcomeEvent] = []
        for position, item in enumerate(requests):
            try:
                timestamp = event_time(item.timestamp, now, self.max_future_seconds)
            except InvalidInput as exc:
                where = f"outcome {position} of the batch: " if len(requests) > 1 else ""
                raise InvalidInput(f"{where}{exc}; nothing was recorded") from exc
            events.append(
                OutcomeEvent(
                    outcome_id=item.outcome_id or uuid.uuid4().hex,
                    event_id=item.event_id,
                    session_id=item.session_id,
                    type=item.type,
                    value=item.value,
                    timestamp=timestamp,
                    traceparent=traceparent,
                )
            )
        results = await self.writer.append(
            [record(Streams.OUTCOMES, e.event_id or e.session_id, e.outcome_id, e) for e in events]
        )
        duplicates = 0
        for event, result in zip(events, results, strict=True):
            if result.existed:
                duplicates += 1
            else:
                self.metrics.outcomes.labels(event.type).inc()
        return Accepted(len(events), duplicates)

    async def reward(
        self, event_id: str, request: RewardRequest, parent: TraceContext | None = None
    ) -> RewardEvent:
        """Log a direct reward for a known decision."""
        with self.spans.span("reward", parent):
            return await self._reward(event_id, request)

    async def _reward(self, event_id: str, request: RewardRequest) -> RewardEvent:
        timestamp = event_time(request.timestamp, self.clock.now(), self.max_future_seconds)
        await self._require_decision(event_id)
        event = RewardEvent(
            reward_id=request.reward_id or uuid.uuid4().hex,
            event_id=event_id,
            value=request.value,
            timestamp=timestamp,
            traceparent=current_traceparent(),
        )
        [result] = await self.writer.append(
            [record(Streams.REWARDS, event_id, event.reward_id, event)]
        )
        if not result.existed:
            self.metrics.rewards.inc()
        return event

    async def activate(self, event_id: str, parent: TraceContext | None = None) -> ActivationEvent:
        """Mark a deferred decision as shown; activating twice records it once."""
        with self.spans.span("activate", parent):
            return await self._activate(event_id)

    async def _activate(self, event_id: str) -> ActivationEvent:
        await self._require_decision(event_id)
        # One activation per decision: the decision's id is the activation's identity.
        event = ActivationEvent(
            activation_id=event_id,
            event_id=event_id,
            timestamp=self.clock.now(),
            traceparent=current_traceparent(),
        )
        [result] = await self.writer.append(
            [record(Streams.ACTIVATIONS, event_id, event.activation_id, event)]
        )
        if not result.existed:
            self.metrics.activations.inc()
        return event

    async def _require_decision(self, event_id: str) -> None:
        if await self.writer.find(Streams.DECISIONS, event_id) is None:
            raise NotFound(
                f"no decision with event_id {event_id!r}: use the event_id returned by "
                "POST /v1/decisions (decisions are looked up exactly, case-sensitively)"
            )
