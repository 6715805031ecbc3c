"""Joined examples straight from the embedded event log (``<data_dir>/log/events.sqlite``).

A synchronous, read-only reader of the log's ``joined`` stream, paged by offset, so a
notebook can ``for example in Dataset.from_event_log(data_dir)`` while ``learnloop serve``
keeps writing (WAL readers never block the writer). It opens its own connection with
``query_only`` on and never starts the log's writer thread, so reading cannot change
the log. Rows come in log order, which is window-close order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from learnloop.errors import InvalidInput, Unavailable
from learnloop.eventlog.sqlite_file import FILE_NAME, connect
from learnloop.streams import Streams, decode_event
from schemas.events import JoinedExample

PAGE = 2_000
_READ = (
    'SELECT "offset", value FROM events WHERE stream = ? AND "offset" > ? ORDER BY "offset" LIMIT ?'
)


def log_file(data_dir: Path) -> Path:
    """The SQLite file of the embedded log under a data directory (``learnloop serve``'s
    ``--data-dir``); accepts the ``log`` directory or the file itself too."""
    for candidate in (data_dir / "log" / FILE_NAME, data_dir / FILE_NAME, data_dir):
        if candidate.is_file():
            return candidate
    raise InvalidInput(
        f"no embedded event log under {data_dir}: expected {data_dir / 'log' / FILE_NAME}; "
        "pass the --data-dir that `learnloop serve` used"
    )


def read_joined(
    data_dir: Path,
    *,
    decision_point: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    page: int = PAGE,
) -> Iterator[JoinedExample]:
    """Stream the joined examples of the log, in log order.

    ``decision_point`` keeps one decision point; ``start`` (inclusive) and ``end``
    (exclusive) bound the *decision* timestamp. Up to the end of the log as it was
    when each page was read.
    """
    path = log_file(data_dir)
    try:
        conn = connect(path)
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        raise Unavailable(f"cannot open event log {path}: {exc}") from exc
    try:
        offset = -1
        while True:
            try:
                rows = conn.execute(_READ, (Streams.JOINED, offset, page)).fetchall()
            except sqlite3.Error as exc:
                raise Unavailable(f"event log {path}: read failed: {exc}") from exc
            if not rows:
                return
            for row_offset, value in rows:
                event = decode_event(Streams.JOINED, bytes(value))
                assert isinstance(event, JoinedExample)
                if keep(event, decision_point, start, end):
                    yield event
                offset = row_offset
    finally:
        conn.close()


def keep(
    example: JoinedExample,
    decision_point: str | None,
    start: datetime | None,
    end: datetime | None,
) -> bool:
    """Whether an example passes the decision-point and decision-time filters."""
    decision = example.decision
    if decision_point is not None and decision.decision_point != decision_point:
        return False
    if start is not None and decision.timestamp < start:
        return False
    return not (end is not None and decision.timestamp >= end)
