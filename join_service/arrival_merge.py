"""Merge one partition's four join inputs back into one arrival order.

The embedded log is one sequence: the join sees decisions and outcomes in the
order the decision service appended them. On Kafka they are four topics read
independently, so a consumer may hand over a hundred decisions before the
outcomes that were appended between them; the join's stream time would then run
ahead and close windows before their outcomes are read. This merge restores the
order, the way Kafka Streams picks among a task's input partitions: it releases
the buffered record that arrived first (the record's Kafka timestamp, i.e. when
the decision service produced it), and only while every input stream either has
a record buffered or has nothing more at the broker (its high watermark). A
stream that lags is waited for as long as it makes progress, but a stream that
delivers nothing for ``max_wait_seconds`` is passed over, so that a stuck fetch
cannot stall the join (records may then be joined out of arrival order; they
are counted in :attr:`ArrivalMerge.passed_over`).

Pure: no I/O and no clock reads; the runner passes monotonic time in.

>>> merge = ArrivalMerge(("decisions", "outcomes"), max_wait_seconds=1.0)
>>> merge.push(InputRecord("outcomes", 0, arrival_ms=20, event=None), now=0.0)
>>> merge.set_highwater("outcomes", 1); merge.set_highwater("decisions", 1)
>>> merge.pop_ready(now=0.0)  # the decisions stream has a record not fetched yet
[]
>>> merge.push(InputRecord("decisions", 0, arrival_ms=10, event=None), now=0.1)
>>> [(r.stream, r.arrival_ms) for r in merge.pop_ready(now=0.1)]
[('decisions', 10), ('outcomes', 20)]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from schemas.events import JoinInput


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One consumed record of a join input: where it was, when it arrived, what it holds.

    ``event`` is ``None`` for a record that could not be decoded: it still takes
    its place in the order so that its offset is passed.
    """

    stream: str
    offset: int
    arrival_ms: int
    event: JoinInput | None

    @property
    def event_time(self) -> datetime | None:
        return self.event.timestamp if self.event is not None else None


@dataclass(slots=True)
class _Buffered:
    record: InputRecord
    since: float  # monotonic time it was buffered


@dataclass(slots=True)
class _Input:
    """One input stream: its buffered records, the next offset to fetch, its high watermark."""

    rank: int
    next_offset: int = 0
    highwater: int | None = None
    last_push: float | None = None  # monotonic time of the last record buffered
    buffered: deque[_Buffered] = field(default_factory=deque)

    def lags(self) -> bool:
        """Nothing buffered while the broker holds records not fetched yet (or unknown)."""
        return not self.buffered and (self.highwater is None or self.next_offset < self.highwater)


class ArrivalMerge:
    """Releases the records of several input streams in arrival order.

    Parameters
    ----------
    streams
        The input streams, in the order that breaks remaining ties (decisions first).
    max_wait_seconds
        How long a lagging stream may deliver nothing (counted from its last record,
        or from when the waiting record was buffered) before it is passed over.
    next_offsets
        Where each stream resumes (after a restore); records below are refused.
    """

    def __init__(
        self,
        streams: Sequence[str],
        max_wait_seconds: float,
        next_offsets: Mapping[str, int] | None = None,
    ) -> None:
        self.max_wait_seconds = max_wait_seconds
        self.passed_over = 0  # records released while a stalled stream lagged
        offsets = next_offsets or {}
        self._inputs = {s: _Input(rank, offsets.get(s, 0)) for rank, s in enumerate(streams)}

    def __len__(self) -> int:
        return sum(len(i.buffered) for i in self._inputs.values())

    def next_offset(self, stream: str) -> int:
        """The offset after the last record accepted from ``stream``."""
        return self._inputs[stream].next_offset

    def push(self, record: InputRecord, now: float) -> None:
        """Buffer a record; a record below the stream's next offset (seen before) is ignored."""
        source = self._inputs[record.stream]
        if record.offset < source.next_offset:
            return
        source.buffered.append(_Buffered(record, now))
        source.next_offset = record.offset + 1
        source.last_push = now

    def set_highwater(self, stream: str, highwater: int | None) -> None:
        """The offset after the newest record the broker holds for ``stream``."""
        self._inputs[stream].highwater = highwater

    def caught_up(self) -> bool:
        """Nothing buffered and nothing known to wait at the broker."""
        return all(not i.buffered and not i.lags() for i in self._inputs.values())

    def pop_ready(self, now: float) -> list[InputRecord]:
        """The records that may be handed to the join now, in arrival order."""
        released: list[InputRecord] = []
        while True:
            head = self._first()
            if head is None:
                return released
            since = head.buffered[0].since
            lagging = [i for i in self._inputs.values() if i.lags()]
            if any(now - max(since, i.last_push or since) < self.max_wait_seconds for i in lagging):
                return released
            self.passed_over += bool(lagging)
            released.append(head.buffered.popleft().record)

    def _first(self) -> _Input | None:
        """The input whose head record arrived first (ties: event time, then stream rank)."""
        best: _Input | None = None
        best_key: tuple[int, float, int] | None = None
        for source in self._inputs.values():
            if not source.buffered:
                continue
            record = source.buffered[0].record
            event_time = record.event_time
            key = (record.arrival_ms, event_time.timestamp() if event_time else 0.0, source.rank)
            if best_key is None or key < best_key:
                best, best_key = source, key
        return best
