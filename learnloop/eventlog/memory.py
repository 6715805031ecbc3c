"""In-memory event log: the reference behaviour of :class:`EventLog`, for tests."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

from learnloop.eventlog.base import Append, AppendResult, LogRecord


class MemoryEventLog:
    def __init__(self) -> None:
        self._records: list[LogRecord] = []
        self._unique: dict[tuple[str, str], LogRecord] = {}
        self._state: dict[str, bytes] = {}

    def _write(self, item: Append) -> AppendResult:
        if item.unique_key is not None:
            existing = self._unique.get((item.stream, item.unique_key))
            if existing is not None:
                return AppendResult(existing.offset, existing.value, existed=True)
        record = LogRecord(len(self._records), item.stream, item.key, item.value)
        self._records.append(record)
        if item.unique_key is not None:
            self._unique[(item.stream, item.unique_key)] = record
        return AppendResult(record.offset, record.value, existed=False)

    async def append(self, records: Sequence[Append]) -> list[AppendResult]:
        return [self._write(item) for item in records]

    async def commit(self, records: Sequence[Append], state: Mapping[str, bytes]) -> list[int]:
        offsets = [self._write(item).offset for item in records]
        self._state.update(state)
        return offsets

    async def read(self, streams: Sequence[str], after: int, limit: int = 1000) -> list[LogRecord]:
        wanted = set(streams)
        start = bisect.bisect_right([r.offset for r in self._records], after)
        out: list[LogRecord] = []
        for record in self._records[start:]:
            if record.stream in wanted:
                out.append(record)
                if len(out) >= limit:
                    break
        return out

    async def find(self, stream: str, unique_key: str) -> LogRecord | None:
        return self._unique.get((stream, unique_key))

    async def load_state(self, name: str) -> bytes | None:
        return self._state.get(name)

    async def end_offset(self) -> int:
        return len(self._records) - 1

    async def close(self) -> None:
        return None
