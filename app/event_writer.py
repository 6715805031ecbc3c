"""Durable appends from the decision service, traced and timed.

Every event the service accepts goes through :meth:`EventWriter.append`, which
returns only when the event log has made the records durable: the HTTP answer
is the acknowledgement.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from pydantic import BaseModel

from app.metrics import ServiceMetrics
from learnloop.eventlog.base import Append, AppendResult, EventSink, LogRecord
from learnloop.telemetry import Spans


class EventWriter:
    """An :class:`EventSink` wrapper with an ``eventlog.append`` span and a latency histogram."""

    def __init__(self, events: EventSink, spans: Spans, metrics: ServiceMetrics) -> None:
        self.events = events
        self.spans = spans
        self.metrics = metrics

    async def append(self, records: Sequence[Append]) -> list[AppendResult]:
        """Append ``records`` in one call (one group commit); durable on return."""
        stream = records[0].stream if records else ""
        attributes: dict[str, str | int] = {
            "learnloop.stream": stream,
            "learnloop.records": len(records),
        }
        with self.spans.span("eventlog.append", attributes=attributes):
            started = time.perf_counter()
            results = await self.events.append(records)
            self.metrics.append_latency.labels(stream).observe(time.perf_counter() - started)
        return results

    async def find(self, stream: str, unique_key: str) -> LogRecord | None:
        """The record stored under ``unique_key`` in ``stream``, if any."""
        return await self.events.find(stream, unique_key)


def record(stream: str, key: str | None, unique_key: str, event: BaseModel) -> Append:
    """An :class:`Append` of ``event`` serialised as JSON."""
    return Append(
        stream=stream, key=key, unique_key=unique_key, value=event.model_dump_json().encode()
    )
