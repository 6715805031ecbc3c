"""The streams of the event log, and the event model each one carries.

A stream is the same in both modes: a named part of the embedded SQLite log, or
the Kafka topic ``{topic_prefix}{stream}``. Its records are the events' own JSON,
so one table decodes them wherever they were read (the embedded runners, the
Kafka sink and workers). This module does no I/O, so pure cores may import it.

>>> from datetime import UTC, datetime
>>> when = datetime(2026, 1, 1, tzinfo=UTC)
>>> event = RewardEvent(reward_id="r1", event_id="e1", value=2.0, timestamp=when)
>>> stream_of(event)
'rewards'
>>> decode_event(Streams.REWARDS, event.model_dump_json().encode()) == event
True
>>> decode_join_input(Streams.JOINED, b"{}")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
learnloop.errors.InvalidInput: stream 'joined' is not a join input: expected one of decisions, ...
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import orjson
from pydantic import ValidationError

from learnloop.errors import InvalidInput
from schemas.events import (
    SCHEMA_VERSION,
    ActivationEvent,
    DecisionEvent,
    Event,
    JoinedExample,
    JoinInput,
    ModelRelease,
    OutcomeEvent,
    RewardEvent,
)


class Streams:
    """Stream names (also the Kafka topic suffixes)."""

    DECISIONS = "decisions"
    OUTCOMES = "outcomes"
    REWARDS = "rewards"
    ACTIVATIONS = "activations"
    JOINED = "joined"
    RELEASES = "releases"
    DROPPED = "dropped"  # follow-ups the join did not apply (late, orphaned, ...), kept for audit

    JOIN_INPUTS = (DECISIONS, OUTCOMES, REWARDS, ACTIVATIONS)


STREAM_MODELS: Final[Mapping[str, type[Event]]] = {
    Streams.DECISIONS: DecisionEvent,
    Streams.OUTCOMES: OutcomeEvent,
    Streams.REWARDS: RewardEvent,
    Streams.ACTIVATIONS: ActivationEvent,
    Streams.JOINED: JoinedExample,
    Streams.RELEASES: ModelRelease,
}
"""The event model of every stream that carries events (``dropped`` is an audit trail)."""

_STREAM_OF: Final = {model: stream for stream, model in STREAM_MODELS.items()}


def stream_of(event: Event) -> str:
    """The stream an event belongs on."""
    return _STREAM_OF[type(event)]


def decode_event(stream: str, value: bytes) -> Event:
    """The event in a record value of ``stream``.

    Raises :class:`~learnloop.errors.InvalidInput` for a value that is not a valid
    event, saying so plainly when it was written by a newer learnloop.
    """
    model = STREAM_MODELS.get(stream)
    if model is None:
        raise InvalidInput(
            f"no event type for stream {stream!r}: expected one of {', '.join(STREAM_MODELS)}"
        )
    try:
        event = model.model_validate_json(value)
    except ValidationError as exc:
        _refuse_newer(stream, _peek_version(value))
        raise InvalidInput(
            f"record on {stream} is not a valid {model.__name__} "
            f"({exc.error_count()} errors): {exc.errors()[0]['msg']}"
        ) from exc
    _refuse_newer(stream, event.schema_version)
    return event


def decode_join_input(stream: str, value: bytes) -> JoinInput:
    """:func:`decode_event` for the join's four input streams only."""
    if stream not in Streams.JOIN_INPUTS:
        raise InvalidInput(
            f"stream {stream!r} is not a join input: expected one of "
            f"{', '.join(Streams.JOIN_INPUTS)}"
        )
    event = decode_event(stream, value)
    assert isinstance(event, DecisionEvent | OutcomeEvent | RewardEvent | ActivationEvent)
    return event


def _peek_version(value: bytes) -> int | None:
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    version = data.get("schema_version") if isinstance(data, dict) else None
    return version if isinstance(version, int) else None


def _refuse_newer(stream: str, version: int | None) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise InvalidInput(
            f"record on {stream} has schema_version {version}, newer than this learnloop's "
            f"{SCHEMA_VERSION}: upgrade this service before it reads that topic"
        )
