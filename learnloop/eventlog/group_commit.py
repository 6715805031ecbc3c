"""The event log's one writer per process: a thread that batches every queued write into
one transaction and one fsync (group commit).

Callers queue a request with an asyncio future; the writer takes everything that
queued up while it was busy (up to ``batch_max`` records), writes it in one
transaction, commits with one fsync (``synchronous=FULL``) and only then resolves
the futures.

Other processes (the other API workers, the loop process) write the same file, and
SQLite lets one transaction write at a time. SQLite's own busy handler waits for the
lock in steps of 1, 2, 5, 10 … ms, which would put whole milliseconds on a
decision that only had to wait for another process's ~1 ms commit; the writer
instead retries ``BEGIN IMMEDIATE`` itself in steps from 50 µs (see :meth:`_begin`).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from learnloop.errors import InvalidInput, Unavailable
from learnloop.eventlog.base import Append, AppendResult
from learnloop.eventlog.sqlite_file import (
    BUSY_TIMEOUT_MS,
    FIND_UNIQUE,
    INSERT,
    INSERT_NEW_UNIQUE,
    UPSERT_STATE,
    connect,
)

# Waiting for another process's write lock: first retry after this long, doubling up to
# the cap (the lock is held for one commit, about an fsync).
_LOCK_RETRY_FIRST_SECONDS: Final = 0.00005
_LOCK_RETRY_MAX_SECONDS: Final = 0.001


@dataclass(slots=True)
class WriteRequest:
    """One ``append`` or ``commit`` call waiting for the writer thread.

    ``state`` is ``None`` for a plain append; a commit's records and state blobs are
    written under one savepoint, so they land together or not at all.
    """

    records: Sequence[Append]
    state: Mapping[str, bytes] | None
    future: asyncio.Future[list[AppendResult]]

    @property
    def weight(self) -> int:
        """How much of a batch this request uses (a state-only commit still costs one)."""
        return max(1, len(self.records))


_STOP: Final = object()


def _settle(
    future: asyncio.Future[list[AppendResult]],
    result: list[AppendResult] | None,
    error: BaseException | None,
) -> None:
    """Runs on the caller's loop; a caller that gave up (cancelled) is skipped."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result if result is not None else [])


def _deliver(
    request: WriteRequest, result: list[AppendResult] | None, error: BaseException | None
) -> None:
    """Hand the outcome of a request back to the loop that is awaiting it."""
    with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
        request.future.get_loop().call_soon_threadsafe(_settle, request.future, result, error)


class GroupCommitWriter:
    """The one thread that writes: drains the queue, one transaction and one fsync per batch."""

    def __init__(self, path: Path, batch_max: int, *, checkpoints: bool = True) -> None:
        self._path = path
        self._batch_max = batch_max
        self._queue: queue.SimpleQueue[WriteRequest | object] = queue.SimpleQueue()
        self._conn = connect(path)
        # FULL: the WAL is fsynced on every commit, so an acknowledged write survives
        # power loss, not only a killed process.
        self._conn.execute("PRAGMA synchronous = FULL")
        # Lock waits are retried by _begin, in finer steps than SQLite's busy handler.
        self._conn.execute("PRAGMA busy_timeout = 0")
        if not checkpoints:
            # Another process checkpoints the WAL (see SqliteEventLog's ``checkpoints``).
            self._conn.execute("PRAGMA wal_autocheckpoint = 0")
        self.transactions = 0
        self.lock_waits = 0  # retries of BEGIN while another process wrote
        self._thread = threading.Thread(
            target=self._run, name=f"eventlog-writer:{path}", daemon=True
        )
        self._thread.start()

    def submit(self, request: WriteRequest) -> None:
        self._queue.put(request)

    def stop(self) -> None:
        """Ask the thread to finish what is queued and exit; join it with :meth:`join`."""
        self._queue.put(_STOP)

    def join(self) -> None:
        self._thread.join()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is _STOP:
                    break
                assert isinstance(first, WriteRequest)
                batch = [first]
                weight = first.weight
                while weight < self._batch_max:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    assert isinstance(item, WriteRequest)
                    batch.append(item)
                    weight += item.weight
                self._write_batch(batch)
        finally:
            self._conn.close()
            self._fail_queued()

    def _fail_queued(self) -> None:
        """Nothing may wait forever: whatever is still queued when the thread ends fails."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, WriteRequest):
                _deliver(item, None, Unavailable(f"event log {self._path} is closed"))

    def _write_batch(self, batch: list[WriteRequest]) -> None:
        """Write a batch in one transaction; resolve futures only after COMMIT returned.

        Each request runs under its own savepoint, so a request that fails on its own
        (a bad value) fails alone; a failed BEGIN/COMMIT (disk full, I/O error) fails
        the whole batch, because then none of it is durable.
        """
        done: list[tuple[WriteRequest, list[AppendResult] | None, BaseException | None]] = []
        try:
            self._begin()
            for request in batch:
                done.append(self._apply_isolated(request))
            self._conn.execute("COMMIT")
            self.transactions += 1
        except Exception as exc:
            if self._conn.in_transaction:
                # May fail when SQLite already rolled back on its own (e.g. after SQLITE_FULL).
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
            error = Unavailable(
                f"event log {self._path}: write failed and was rolled back ({exc}); "
                "check free disk space and permissions of the data directory, then retry"
            )
            error.__cause__ = exc
            for request in batch:
                _deliver(request, None, error)
            return
        for request, result, failure in done:
            _deliver(request, result, failure)

    def _apply_isolated(
        self, request: WriteRequest
    ) -> tuple[WriteRequest, list[AppendResult] | None, BaseException | None]:
        """Apply one request under a savepoint; on a request-level error undo only it."""
        self._conn.execute("SAVEPOINT request")
        try:
            result = self._apply(request)
        except sqlite3.OperationalError:
            raise  # disk full / I/O error: the transaction as a whole is in doubt
        except Exception as exc:
            self._conn.execute("ROLLBACK TO request")
            self._conn.execute("RELEASE request")
            error = InvalidInput(f"event log {self._path} rejected a write: {exc}")
            error.__cause__ = exc
            return request, None, error
        self._conn.execute("RELEASE request")
        return request, result, None

    def _apply(self, request: WriteRequest) -> list[AppendResult]:
        """Insert the records (skipping stored unique keys) and upsert the state blobs."""
        records = request.records
        if len(records) > 1 and all(item.unique_key is not None for item in records):
            batch = self._insert_unique(records)
            if request.state:
                self._conn.executemany(UPSERT_STATE, list(request.state.items()))
            return batch
        results: list[AppendResult] = []
        for item in records:
            params = (item.stream, item.key, item.unique_key, item.value)
            if item.unique_key is not None:
                # The conflict check sees the rows this transaction already wrote, so
                # duplicates inside one batch are caught too.
                inserted = self._conn.execute(INSERT_NEW_UNIQUE, params).fetchone()
                if inserted is None:
                    row = self._conn.execute(FIND_UNIQUE, (item.stream, item.unique_key)).fetchone()
                    results.append(AppendResult(row[0], row[3], existed=True))
                else:
                    results.append(AppendResult(inserted[0], item.value, existed=False))
                continue
            offset = self._conn.execute(INSERT, params).lastrowid
            assert offset is not None
            results.append(AppendResult(offset, item.value, existed=False))
        if request.state:
            self._conn.executemany(UPSERT_STATE, list(request.state.items()))
        return results

    def _insert_unique(self, records: Sequence[Append]) -> list[AppendResult]:
        """Records that all have a unique key (a batch of decisions) in one statement.

        The sqlite3 module releases the GIL around every statement and must take it
        back afterwards, which waits for the event loop's switch interval when the
        loop is busy: one statement per record made a 16-record commit wait for up to
        16 intervals and cost the loop ~30 µs of CPU per record (GIL hand-overs).
        RETURNING names only the rows inserted; a key already stored (or repeated in
        the batch) answers with the stored record, as the one-row path does.
        """
        rows = ", ".join(["(?, ?, ?, ?)"] * len(records))
        params = [p for r in records for p in (r.stream, r.key, r.unique_key, r.value)]
        sql = (
            f"INSERT INTO events (stream, key, unique_key, value) VALUES {rows} "
            "ON CONFLICT (stream, unique_key) WHERE unique_key IS NOT NULL DO NOTHING "
            'RETURNING "offset", stream, unique_key'
        )
        inserted = {(row[1], row[2]): row[0] for row in self._conn.execute(sql, params)}
        written: dict[tuple[str, str | None], bytes] = {}
        results: list[AppendResult] = []
        for item in records:
            key = (item.stream, item.unique_key)
            if key in written:  # repeated within the batch: the first one was stored
                results.append(AppendResult(inserted[key], written[key], existed=True))
            elif key in inserted:
                written[key] = item.value
                results.append(AppendResult(inserted[key], item.value, existed=False))
            else:
                row = self._conn.execute(FIND_UNIQUE, key).fetchone()
                results.append(AppendResult(row[0], row[3], existed=True))
        return results

    def _begin(self) -> None:
        """``BEGIN IMMEDIATE``, waiting while another process holds the write lock (at
        most ``BUSY_TIMEOUT_MS``, then the error goes to every request of the batch)."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        delay = _LOCK_RETRY_FIRST_SECONDS
        while True:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
            self.lock_waits += 1
            time.sleep(delay)
            delay = min(2 * delay, _LOCK_RETRY_MAX_SECONDS)
