"""The embedded event log (``<data_dir>/log/events.sqlite``), read-only and page by page.

:class:`EventLogReader` is the offline learner's one way into the log: the joined
examples a dataset is made of (:func:`read_joined`) and the raw join inputs a what-if
re-join replays (:mod:`offline_learner.rejoin`). It opens SQLite in read-only mode, one
short read per page, so a notebook can iterate while ``learnloop serve`` keeps writing
(WAL readers never block the writer) and reading can never change the log. Rows come
in log order: for the joined stream that is window-close order.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Collection, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from learnloop.errors import InvalidInput, Unavailable
from learnloop.eventlog.sqlite_file import FILE_NAME
from learnloop.streams import Streams, decode_event, decode_join_input
from schemas.events import JoinedExample, JoinInput

log = logging.getLogger(__name__)

PAGE = 2_000


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


class EventLogReader:
    """Reads the embedded event log of a data directory read-only, page by page.

    Opened with SQLite's read-only mode, so nothing in the log can change; while the
    service runs, a read sees the last commit. Iterations stop at the end offset
    found when they start, so a replay of a live log is well defined. SQLite may
    create the log's ``-wal``/``-shm`` coordination files if no process has them
    open; they hold no data.
    """

    def __init__(self, data_dir: Path | str, *, page: int = PAGE) -> None:
        self.data_dir = Path(data_dir)
        self.page = page
        self.undecodable = 0
        """Join inputs skipped because they did not decode (the online runner skips them too)."""
        self.path = log_file(self.data_dir)

    def end_offset(self) -> int:
        """The largest offset in the log (-1 when empty)."""
        rows = self._query('SELECT MAX("offset") FROM events', ())
        return -1 if not rows or rows[0][0] is None else int(rows[0][0])

    def records(
        self, streams: Collection[str], *, after: int = -1, until: int | None = None
    ) -> Iterator[tuple[int, str, bytes]]:
        """``(offset, stream, value)`` of ``streams`` after ``after`` up to ``until``
        (default: the end now), in offset order, one page in memory at a time."""
        end = self.end_offset() if until is None else until
        names = list(dict.fromkeys(streams))
        marks = ", ".join("?" * len(names))
        sql = (
            f'SELECT "offset", stream, value FROM events WHERE "offset" > ? AND "offset" <= ? '
            f'AND stream IN ({marks}) ORDER BY "offset" LIMIT ?'
        )
        while True:
            rows = self._query(sql, (after, end, *names, self.page))
            for offset, stream, value in rows:
                yield int(offset), str(stream), bytes(value)
            if len(rows) < self.page:
                return
            after = int(rows[-1][0])

    def join_inputs(self, *, until: int | None = None) -> Iterator[JoinInput]:
        """Decisions, outcomes, rewards and activations in the order the online join read them."""
        for offset, stream, value in self.records(Streams.JOIN_INPUTS, until=until):
            try:
                yield decode_join_input(stream, value)
            except InvalidInput:
                self.undecodable += 1
                log.warning("skipping undecodable %s record at offset %d", stream, offset)

    def joined(self, *, until: int | None = None) -> Iterator[JoinedExample]:
        """The joined examples the online join wrote, in the order it wrote them."""
        for _offset, _stream, value in self.records([Streams.JOINED], until=until):
            example = decode_event(Streams.JOINED, value)
            assert isinstance(example, JoinedExample)
            yield example

    def _query(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        """One query on a fresh read-only connection (so a page never holds a read open)."""
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot open event log {self.path} read-only: {exc}") from exc
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise Unavailable(f"event log {self.path}: read failed: {exc}") from exc
        finally:
            conn.close()


def read_joined(
    data_dir: Path,
    *,
    decision_point: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    page: int = PAGE,
) -> Iterator[JoinedExample]:
    """Stream the joined examples of the log, in log order, up to its end when the
    iteration starts.

    ``decision_point`` keeps one decision point; ``start`` (inclusive) and ``end``
    (exclusive) bound the *decision* timestamp.
    """
    for example in EventLogReader(data_dir, page=page).joined():
        if keep(example, decision_point, start, end):
            yield example


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
