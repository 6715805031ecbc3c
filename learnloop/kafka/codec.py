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

from learnloop.eventlog.base import Append
from learnloop.kafka.topics import TopicNames, partition_key
from learnloop.streams import decode_event, stream_of
from schemas.events import ActivationEvent, Event, OutcomeEvent, RewardEvent

TRACEPARENT: Final = "traceparent"
CONTENT_TYPE: Final = "content-type"
JSON_CONTENT: Final = b"application/json"

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """What a producer sends: ``producer.send(r.topic, r.value, key=r.key, headers=r.headers)``."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers


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
    """The event in a record value of ``stream``: the embedded log's decoding
    (:func:`learnloop.streams.decode_event`), since the value is the same JSON."""
    return decode_event(stream, value)


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
