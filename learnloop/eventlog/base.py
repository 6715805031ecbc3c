"""The event-log interface every backend implements.

One log holds several *streams* (decisions, outcomes, rewards, activations,
joined examples). Offsets are global, strictly increasing integers across all
streams, so a consumer that reads several streams together sees one total
arrival order and commits a single offset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from learnloop.streams import Streams as Streams  # its home; re-exported for the log's users


@dataclass(frozen=True, slots=True)
class LogRecord:
    offset: int
    stream: str
    key: str | None
    value: bytes


@dataclass(frozen=True, slots=True)
class AppendResult:
    offset: int
    value: bytes
    existed: bool  # True when a record with the same unique key was already in the stream


@dataclass(frozen=True, slots=True)
class Append:
    """One record to append. ``unique_key``: at most one record per (stream, unique_key)."""

    stream: str
    value: bytes
    key: str | None = None
    unique_key: str | None = None


class EventSink(Protocol):
    """What the decision service needs: durable appends and lookup by unique key.

    The embedded :class:`EventLog` provides it; in distributed mode a Kafka
    producer (with a Redis index for lookups) does.
    """

    async def append(self, records: Sequence[Append]) -> list[AppendResult]:
        """Append records; return only once they are durable (fsynced).

        Concurrent callers are batched into one transaction/fsync (group commit).
        A record whose ``unique_key`` already exists in its stream is not written
        again: its result carries the stored value and ``existed=True``.
        """
        ...

    async def find(self, stream: str, unique_key: str) -> LogRecord | None:
        """The record stored under ``unique_key`` in ``stream``, if any."""
        ...

    async def close(self) -> None: ...


class EventLog(EventSink, Protocol):
    """A readable, committable log: the embedded mode's single source of truth."""

    async def commit(self, records: Sequence[Append], state: Mapping[str, bytes]) -> list[int]:
        """Atomically append ``records`` and set named ``state`` blobs (consumer state and
        offsets), durable on return. Used by the join runner for exactly-once output."""
        ...

    async def read(self, streams: Sequence[str], after: int, limit: int = 1000) -> list[LogRecord]:
        """Records of ``streams`` with offset > ``after``, in offset order, at most ``limit``."""
        ...

    async def load_state(self, name: str) -> bytes | None:
        """A state blob written by :meth:`commit`, or ``None``."""
        ...

    async def end_offset(self) -> int:
        """The largest offset written so far (-1 when empty)."""
        ...
