"""Deciding: candidates, persona, arm, prediction, sampling, and the logged decision.

No HTTP here: :class:`Decider` takes a :class:`~schemas.api.DecisionRequest` and
returns the :class:`~app.decision_record.DecisionRecord` it logged, raising
:mod:`learnloop.errors` for bad input. The answer is always made from the logged
decision (a replay parses the stored :class:`~schemas.events.DecisionEvent`), so
a replayed ``event_id`` answers exactly what was logged (and what was answered
the first time). The hot path builds no pydantic model: see
:mod:`app.decision_record` for why and how the bytes stay the contract's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.context import Context as TraceContext

from app.decision_record import DecisionRecord
from app.event_ids import new_event_id
from app.event_time import event_time
from app.event_writer import EventWriter
from app.metrics import ServiceMetrics
from app.personas import PersonaResolver
from app.pseudonyms import Pseudonyms
from app.serving import ModelRegistry
from learnloop.clock import Clock
from learnloop.decision_points import DecisionPointStore
from learnloop.errors import Conflict, InvalidInput, NotFound
from learnloop.eventlog.base import Append, Streams
from learnloop.policy import draw, uniforms_for
from learnloop.telemetry import Spans, current_traceparent
from schemas.api import DecisionRequest
from schemas.config import DecisionPointConfig, LearningMode
from schemas.events import Arm, DecisionEvent
from schemas.features import Action


@dataclass(frozen=True, slots=True)
class Choice:
    """The sampled action and the true propensities of the arm mixture."""

    arm: Arm
    index: int
    probabilities: list[float]


def choose(
    model_pmf: Sequence[float],
    baseline_share: float,
    event_id: str,
    baseline: str = "uniform",
) -> Choice:
    """Pick the arm, then the action, with the two uniforms of the event id
    (:func:`~learnloop.policy.uniforms_for`, reproducible). The learned arm follows the
    model; the baseline arm is uniform over the actions, or (``baseline="first"``) the
    first action. The logged probabilities are the mixture ``share*baseline +
    (1-share)*pmf``: the real chance each action had, so off-policy estimates stay
    unbiased.

    >>> choose([0.7, 0.1, 0.1, 0.1], 0.0, "e1").probabilities
    [0.7, 0.1, 0.1, 0.1]
    >>> choose([0.7, 0.1, 0.1, 0.1], 1.0, "e1").probabilities
    [0.25, 0.25, 0.25, 0.25]
    >>> [round(p, 3) for p in choose([1.0, 0.0], 0.5, "e1").probabilities]
    [0.75, 0.25]
    >>> [round(p, 3) for p in choose([0.0, 1.0], 0.5, "e1", "first").probabilities]
    [0.5, 0.5]
    >>> choose([0.2, 0.8], 0.3, "e9") == choose([0.2, 0.8], 0.3, "e9")
    True
    """
    n = len(model_pmf)
    arm_u, action_u = uniforms_for(event_id)
    arm: Arm = "baseline" if arm_u < baseline_share else "learned"
    baseline_pmf = [1.0] + [0.0] * (n - 1) if baseline == "first" else [1.0 / n] * n
    index = draw(baseline_pmf if arm == "baseline" else model_pmf, action_u)
    probabilities = [
        baseline_share * b + (1.0 - baseline_share) * p
        for b, p in zip(baseline_pmf, model_pmf, strict=True)
    ]
    return Choice(arm, index, probabilities)


def baseline_only(mode: LearningMode, n: int) -> Choice:
    """Apprentice and logging-only modes serve the first candidate (the baseline), with
    the probability it really had: 1.

    >>> baseline_only("apprentice", 3)
    Choice(arm='apprentice', index=0, probabilities=[1.0, 0.0, 0.0])
    """
    arm: Arm = "apprentice" if mode == "apprentice" else "logging"
    return Choice(arm, 0, [1.0] + [0.0] * (n - 1))


def candidate_actions(config: DecisionPointConfig, request: DecisionRequest) -> list[Action]:
    """The request's actions (or the configured ones) minus the excluded ids."""
    actions = request.actions if request.actions is not None else config.actions
    excluded = set(request.excluded_actions)
    candidates = [a for a in actions if a.id not in excluded]
    if not candidates:
        source = (
            "the request's actions"
            if request.actions is not None
            else (f"the actions configured for {config.name!r}")
        )
        raise InvalidInput(
            f"no actions left to choose from: {source} are all excluded or empty; "
            "send at least one action that is not in excluded_actions"
        )
    return candidates


class Decider:
    """Makes decisions and logs them durably before answering."""

    def __init__(
        self,
        *,
        writer: EventWriter,
        decision_points: DecisionPointStore,
        registry: ModelRegistry,
        personas: PersonaResolver,
        clock: Clock,
        spans: Spans,
        metrics: ServiceMetrics,
        pseudonym_key: bytes,
        max_future_seconds: float,
    ) -> None:
        self.writer = writer
        self.decision_points = decision_points
        self.registry = registry
        self.personas = personas
        self.clock = clock
        self.spans = spans
        self.metrics = metrics
        self.pseudonyms = Pseudonyms(pseudonym_key)
        self.max_future_seconds = max_future_seconds

    async def decide(
        self,
        request: DecisionRequest,
        parent: TraceContext | None = None,
        fresh_event_id: str | None = None,
    ) -> DecisionRecord:
        """Decide for one context; idempotent per ``event_id``.

        Order: replay check, validation, prediction, durable append, answer. If two
        requests with the same new ``event_id`` race, the append's unique key keeps
        the first and both answer with it. The result is what was logged; send
        :meth:`~app.decision_record.DecisionRecord.response_json` (or
        :meth:`~app.decision_record.DecisionRecord.response`) as the answer.
        ``fresh_event_id``: an id the caller just made for a request without one (flag
        exposures draw their holdout from it), used without the replay check.
        """
        if self.spans.tracer is None and not parent:
            # Tracing off and no caller trace: no span, no context to attach, no
            # traceparent to log. The common case, worth ~10 µs per decision.
            event_id = request.event_id or fresh_event_id or new_event_id()
            return await self._decide(request, event_id, None)
        event_id = request.event_id or fresh_event_id or new_event_id()
        attributes = {
            "learnloop.decision_point": request.decision_point,
            "learnloop.event_id": event_id,
        }
        with self.spans.span("decide", parent, attributes):
            return await self._decide(request, event_id, current_traceparent())

    async def _decide(
        self, request: DecisionRequest, event_id: str, traceparent: str | None
    ) -> DecisionRecord:
        started = time.perf_counter()
        if request.event_id is not None:
            stored = await self.writer.find(Streams.DECISIONS, request.event_id)
            if stored is not None:
                return self._replay(request, stored.value)
        decided = await self._new_record(request, event_id, traceparent)
        result = await self.writer.append_one(
            Append(
                stream=Streams.DECISIONS,
                value=decided.event_json(),
                key=event_id,
                unique_key=event_id,
            )
        )
        if result.existed:
            return self._replay(request, result.value)
        self.metrics.decided(
            decided.decision_point, decided.arm, decided.persona, time.perf_counter() - started
        )
        return decided

    async def _new_record(
        self, request: DecisionRequest, event_id: str, traceparent: str | None
    ) -> DecisionRecord:
        config = await self.decision_points.get(request.decision_point)
        if config is None:
            raise NotFound(
                f"decision point {request.decision_point!r} does not exist: "
                "create it with PUT /v1/decision-points/{name} or check the name"
            )
        timestamp = event_time(request.timestamp, self.clock.now(), self.max_future_seconds)
        actions = candidate_actions(config, request)
        context = request.context
        user_id = None if context.user_id is None else self.pseudonyms.of(context.user_id)
        # Sync and in memory (app.personas): no await between here and predict either.
        persona = self.personas.resolve(context, user_id, request.persona, timestamp).persona
        # Read the served model once; no await between here and predict, so a swap
        # cannot interleave (and VW only runs on this, the event-loop, thread).
        served = self.registry.get(config.name) or self.registry.serve_untrained(config)
        if config.learning_mode != "online":
            choice = baseline_only(config.learning_mode, len(actions))
        elif config.baseline_share >= 1.0:
            uniform = [1.0 / len(actions)] * len(actions)
            choice = choose(uniform, config.baseline_share, event_id, config.baseline)
        else:
            model_pmf = served.policy.predict(context, persona, actions)
            choice = choose(model_pmf, config.baseline_share, event_id, config.baseline)
        return DecisionRecord(
            event_id=event_id,
            timestamp=timestamp,
            traceparent=traceparent,
            decision_point=config.name,
            user_id=user_id,
            session_id=context.session_id,
            features=context.features,
            persona=persona,
            actions=actions,
            chosen_index=choice.index,
            probabilities=choice.probabilities,
            model_version=str(served.version),
            arm=choice.arm,
            activated=not request.defer_activation,
        )

    @staticmethod
    def _replay(request: DecisionRequest, logged: bytes) -> DecisionRecord:
        stored = DecisionEvent.model_validate_json(logged)
        if stored.decision_point != request.decision_point:
            raise Conflict(
                f"event_id {stored.event_id!r} was already used for a decision at "
                f"{stored.decision_point!r}: send a fresh event_id for a new decision"
            )
        return DecisionRecord.from_event(stored)
