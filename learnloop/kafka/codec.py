"""Events as Kafka records: JSON values that carry their ``schema_version``, keys from the
routing rule, and the W3C trace context in a ``traceparent`` header.

The value is the event's own JSON (the same bytes the embedded log stores), so a
record can move between the two modes unchanged. The header duplicates the
event's ``traceparent`` so that tracing middleware and tools can follow a record
without parsing its value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import orjson
from pydantic import BaseModel, ValidationError

from learnloop.errors import InvalidInput
from learnloop.eventlog.base import Append, Streams
from learnloop.kafka.topics import Event, TopicNames, partition_key
from schemas.events import (
    SCHEMA_VERSION,
    ActivationEvent,
    DecisionEvent,
    JoinedExample,
    ModelRelease,
    OutcomeEvent,
    RewardEvent,
)

TRACEPARENT: Final = "traceparent"
CONTENT_TYPE: Final = "content-type"
JSON_CONTENT: Final = b"application/json"

Headers = tuple[tuple[str, bytes], ...]

MODELS: Final[dict[str, type[BaseModel]]] = {
    Streams.DECISIONS: DecisionEvent,
    Streams.OUTCOMES: OutcomeEvent,
    Streams.REWARDS: RewardEvent,
    Streams.ACTIVATIONS: ActivationEvent,
    Streams.JOINED: JoinedExample,
    Streams.RELEASES: ModelRelease,
}
_STREAM_OF: Final = {model: stream for stream, model in MODELS.items()}


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """What a producer sends: ``producer.send(r.topic, r.value, key=r.key, headers=r.headers)``."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers


def stream_of(event: Event) -> str:
    """The stream an event belongs on."""
    return _STREAM_OF[type(event)]


def unique_key(event: Event) -> str:
    """The event's own identity: at most one record per (stream, unique key).

    Decisions, joined examples and releases are identified by ``event_id``;
    outcomes, rewards and activations by their own id (their ``event_id`` names
    the decision they belong to).
    """
    if isinstance(event, OutcomeEvent):
        return event.outcome_id
    if isinstance(event, RewardEvent):
        return event.reward_id
    if isinstance(event, ActivationEvent):
        return event.activation_id
    return event.event_id


def encode_value(event: Event) -> bytes:
    """The record value: the event's JSON, ``schema_version`` included."""
    return event.model_dump_json().encode()


def decode_value(stream: str, value: bytes) -> Event:
    """The event in a record value of ``stream``.

    Raises :class:`~learnloop.errors.InvalidInput` for a value that is not a valid
    event, saying so plainly when it was written by a newer learnloop.
    """
    model = MODELS.get(stream)
    if model is None:
        raise InvalidInput(f"no event type for stream {stream!r}: expected one of {list(MODELS)}")
    try:
        event = model.model_validate_json(value)
    except ValidationError as exc:
        _refuse_newer(stream, _peek_version(value))
        raise InvalidInput(
            f"record on {stream} is not a valid {model.__name__} "
            f"({exc.error_count()} errors): {exc.errors()[0]['msg']}"
        ) from exc
    _refuse_newer(stream, event.schema_version)  # type: ignore[attr-defined]
    return event  # type: ignore[return-value]


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


def trace_headers(traceparent: str | None) -> Headers:
    """Kafka headers for a record: content type and, when known, the trace context.

    >>> trace_headers("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")[1]
    ('traceparent', b'00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')
    """
    headers: list[tuple[str, bytes]] = [(CONTENT_TYPE, JSON_CONTENT)]
    if traceparent:
        headers.append((TRACEPARENT, traceparent.encode("ascii")))
    return tuple(headers)


def traceparent_of(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    """The ``traceparent`` header of a consumed record, if it has one."""
    for name, value in headers or ():
        if name == TRACEPARENT:
            return value.decode("ascii", errors="replace")
    return None


def headers_for_value(value: bytes) -> Headers:
    """Headers for a value already encoded (what :class:`~learnloop.eventlog.base.Append`
    carries): the trace context is read back from the event's JSON.

    A value that is not a JSON object (tests, foreign producers) gets no headers.
    """
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return ()
    if not isinstance(data, dict):
        return ()
    traceparent = data.get(TRACEPARENT)
    return trace_headers(traceparent if isinstance(traceparent, str) else None)


def to_record(event: Event, names: TopicNames) -> KafkaRecord:
    """The record for ``event``: its stream's topic, the routing key, JSON value, headers."""
    return KafkaRecord(
        topic=names.topic(stream_of(event)),
        key=partition_key(event).encode(),
        value=encode_value(event),
        headers=trace_headers(event.traceparent),
    )


def to_append(event: Event) -> Append:
    """The :class:`Append` of ``event`` for an :class:`EventSink`: stream, routing key,
    unique key (so a retried request is not logged twice) and JSON value."""
    return Append(
        stream=stream_of(event),
        value=encode_value(event),
        key=partition_key(event),
        unique_key=unique_key(event),
    )
