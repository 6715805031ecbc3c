"""Append-only event logs: an in-memory backend for tests, SQLite (WAL) for the embedded mode."""

from learnloop.eventlog.base import Append, AppendResult, EventLog, EventSink, LogRecord, Streams
from learnloop.eventlog.memory import MemoryEventLog
from learnloop.eventlog.sqlite import SqliteEventLog

__all__ = [
    "Append",
    "AppendResult",
    "EventLog",
    "EventSink",
    "LogRecord",
    "MemoryEventLog",
    "SqliteEventLog",
    "Streams",
]
