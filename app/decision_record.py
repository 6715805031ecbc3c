"""The decide path's own record of a decision, encoded straight to the contract's JSON.

Building a :class:`~schemas.events.DecisionEvent` and a
:class:`~schemas.api.DecisionResponse` (with a ``RankedAction`` per action)
validates every field again, though each one was already validated in the
request or computed here; that and pydantic's encoding were a third of a
decision's CPU. :class:`DecisionRecord` is a plain slots dataclass whose
:meth:`~DecisionRecord.event_json` and :meth:`~DecisionRecord.response_json`
write, with orjson, the same bytes as ``model_dump_json()`` of the two models
(same field order, same float and time formatting; ``tests/unit/test_decision_record.py``
holds them equal), so the log and the answer stay the contract.

Inputs are trusted: the context and actions come from validated pydantic models,
the probabilities from the policy. Anything else should build the models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.api import DecisionResponse
from schemas.dsjson import ranking_order
from schemas.events import SCHEMA_VERSION, Arm, DecisionEvent
from schemas.features import Action

_JSON_OPTIONS = orjson.OPT_UTC_Z  # pydantic writes UTC as "Z", orjson as "+00:00" by default


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One decision as logged, in :class:`~schemas.events.DecisionEvent`'s field terms.

    ``user_id`` is already the pseudonym; ``features`` are the context's validated features.
    """

    event_id: str
    timestamp: datetime
    traceparent: str | None
    decision_point: str
    user_id: str | None
    session_id: str | None
    features: Mapping[str, Any]
    persona: str
    actions: Sequence[Action]
    chosen_index: int
    probabilities: list[float]
    model_version: str
    arm: Arm
    activated: bool

    @classmethod
    def from_event(cls, event: DecisionEvent) -> DecisionRecord:
        """The record of a logged event (replays answer from what was logged)."""
        return cls(
            event_id=event.event_id,
            timestamp=event.timestamp,
            traceparent=event.traceparent,
            decision_point=event.decision_point,
            user_id=event.context.user_id,
            session_id=event.context.session_id,
            features=event.context.features,
            persona=event.persona,
            actions=event.actions,
            chosen_index=event.chosen_index,
            probabilities=event.probabilities,
            model_version=event.model_version,
            arm=event.arm,
            activated=event.activated,
        )

    @property
    def chosen_action(self) -> str:
        return self.actions[self.chosen_index].id

    def event_json(self) -> bytes:
        """The bytes of ``DecisionEvent(...).model_dump_json()`` for this decision."""
        timestamp = self.timestamp
        if timestamp.tzinfo is not UTC:
            timestamp = timestamp.astimezone(UTC)  # the contract's validator does the same
        return orjson.dumps(
            {
                "timestamp": timestamp,
                "schema_version": SCHEMA_VERSION,
                "traceparent": self.traceparent,
                "event_id": self.event_id,
                "decision_point": self.decision_point,
                "context": {
                    "user_id": self.user_id,
                    "session_id": self.session_id,
                    "features": self.features,
                },
                "persona": self.persona,
                "actions": [{"id": a.id, "features": a.features} for a in self.actions],
                "chosen_index": self.chosen_index,
                "probabilities": self.probabilities,
                "model_version": self.model_version,
                "arm": self.arm,
                "activated": self.activated,
            },
            option=_JSON_OPTIONS,
        )

    def response_json(self) -> bytes:
        """The bytes of ``DecisionResponse(...).model_dump_json()``: the answer."""
        probabilities, actions = self.probabilities, self.actions
        order = ranking_order(probabilities, self.chosen_index)
        return orjson.dumps(
            {
                "event_id": self.event_id,
                "action_id": actions[self.chosen_index].id,
                "probability": probabilities[self.chosen_index],
                "ranking": [{"id": actions[i].id, "probability": probabilities[i]} for i in order],
                "model_version": self.model_version,
                "persona": self.persona,
                "arm": self.arm,
            }
        )

    def response(self) -> DecisionResponse:
        """The answer as the public model (for in-process callers; HTTP sends the bytes)."""
        return DecisionResponse.model_validate_json(self.response_json())
