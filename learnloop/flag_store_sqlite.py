"""Durable flag store for the embedded mode: ``<data_dir>/flags.sqlite``.

Three tables: the flags (JSON per key), their history (one JSON
:class:`~schemas.flags.FlagChange` per change) and a one-row change counter. A change
reads the current flag, plans it (:mod:`learnloop.flag_store`) and writes the flag,
its history record and the counter in one ``BEGIN IMMEDIATE`` transaction: the audit
trail cannot disagree with the flags, and two API workers changing one flag at once
are serialised by SQLite. The work runs in a thread (each commit is fsynced), never
on the event loop; :meth:`SqliteFlagStore.version` is one primary-key read of the
counter row through a second connection, a few microseconds that never wait for a
write, which is what the API's flag cache polls.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final, TypeVar

from pydantic import ValidationError

from learnloop.clock import Clock, SystemClock
from learnloop.errors import ConfigurationError, Unavailable
from learnloop.flag_store import (
    DEFAULT_HISTORY_LIMIT,
    Planned,
    check_import,
    check_limit,
    plan_delete,
    plan_put,
    plan_toggle,
)
from schemas.flags import Flag, FlagChange, FlagDefinition

FILE_NAME: Final = "flags.sqlite"
T = TypeVar("T")

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS flags (key TEXT PRIMARY KEY, flag TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS flag_history ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, version INTEGER NOT NULL,"
    " change TEXT NOT NULL, UNIQUE (key, version))",
    "CREATE TABLE IF NOT EXISTS flag_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT INTO flag_meta (name, value) VALUES ('changes', 0) ON CONFLICT (name) DO NOTHING",
)
_UPSERT: Final = (
    "INSERT INTO flags (key, flag) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET flag = excluded.flag"
)


class SqliteFlagStore:
    """A :class:`~learnloop.flag_store.FlagStore` in a SQLite file (see the module docstring).

    Parameters
    ----------
    path
        The database file (``data_dir / FILE_NAME``); its directory is created if missing.
    clock
        Stamps the changes (``updated_at``, the history's ``timestamp``).
    """

    def __init__(self, path: Path | str, *, clock: Clock | None = None) -> None:
        self.path = Path(path)
        self.clock = clock or SystemClock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout = 10000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            for statement in _SCHEMA:
                self._conn.execute(statement)
            # The change counter is polled on the event loop through a connection of its
            # own: a WAL reader never waits for a commit in progress on the other one.
            self._poll = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._poll.execute("PRAGMA busy_timeout = 1000")
        except (OSError, sqlite3.Error) as exc:
            raise Unavailable(
                f"cannot open flag store {self.path}: {exc}; "
                "check that the data directory is writable"
            ) from exc
        self._lock = threading.Lock()  # one connection: one call at a time
        self._closed = False

    # Reads -------------------------------------------------------------------------------

    async def get(self, key: str) -> Flag | None:
        rows = await self._run(
            lambda c: c.execute("SELECT flag FROM flags WHERE key = ?", (key,)).fetchall()
        )
        return self._flag(key, rows[0][0]) if rows else None

    async def all(self) -> list[Flag]:
        rows = await self._run(
            lambda c: c.execute("SELECT key, flag FROM flags ORDER BY rowid").fetchall()
        )
        return [self._flag(key, text) for key, text in rows]

    async def history(self, key: str, limit: int = DEFAULT_HISTORY_LIMIT) -> list[FlagChange]:
        check_limit(limit)
        rows = await self._run(
            lambda c: c.execute(
                "SELECT change FROM flag_history WHERE key = ? ORDER BY version DESC LIMIT ?",
                (key, limit),
            ).fetchall()
        )
        return [FlagChange.model_validate_json(text) for (text,) in rows]

    async def version(self) -> int:
        # Inline, not in a thread: a primary-key read of one row, cheaper than the hop.
        if self._closed:
            raise Unavailable(f"flag store {self.path} is closed")
        try:
            row = self._poll.execute("SELECT value FROM flag_meta WHERE name = 'changes'")
            return int(row.fetchone()[0])
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot read flag store {self.path}: {exc}") from exc

    # Changes -----------------------------------------------------------------------------

    async def put(self, key: str, definition: FlagDefinition, by: str) -> Flag:
        now = self.clock.now()

        def plan(c: sqlite3.Connection) -> list[Planned]:
            return [plan_put(key, definition, by, now, self._current(c, key), self._last(c, key))]

        (done,) = await self._change(plan)
        assert done.flag is not None
        return done.flag

    async def delete(self, key: str, by: str) -> None:
        now = self.clock.now()
        await self._change(
            lambda c: [plan_delete(key, by, now, self._current(c, key), self._last(c, key))]
        )

    async def set_enabled(self, key: str, enabled: bool, by: str) -> Flag:
        now = self.clock.now()
        unchanged: list[Flag] = []

        def plan(c: sqlite3.Connection) -> list[Planned]:
            current = self._current(c, key)
            planned = plan_toggle(key, enabled, by, now, current, self._last(c, key))
            if planned is None and current is not None:
                unchanged.append(current)
            return [planned] if planned is not None else []

        done = await self._change(plan)
        if unchanged:
            return unchanged[0]
        assert done[0].flag is not None
        return done[0].flag

    async def put_many(self, definitions: Mapping[str, FlagDefinition], by: str) -> list[Flag]:
        keys = check_import(definitions)
        now = self.clock.now()

        def plan(c: sqlite3.Connection) -> list[Planned]:
            return [
                plan_put(
                    k, definitions[k], by, now, self._current(c, k), self._last(c, k), "import"
                )
                for k in keys
            ]

        return [p.flag for p in await self._change(plan) if p.flag is not None]

    async def _change(self, plan: Callable[[sqlite3.Connection], list[Planned]]) -> list[Planned]:
        """Plan and write in one transaction: flags, history records, counter; all or nothing."""

        def write(c: sqlite3.Connection) -> list[Planned]:
            c.execute("BEGIN IMMEDIATE")
            try:
                planned = plan(c)  # may raise InvalidInput / NotFound: rolled back below
                for p in planned:
                    if p.flag is None:
                        c.execute("DELETE FROM flags WHERE key = ?", (p.key,))
                    else:
                        c.execute(_UPSERT, (p.key, p.flag.model_dump_json()))
                    c.execute(
                        "INSERT INTO flag_history (key, version, change) VALUES (?, ?, ?)",
                        (p.key, p.change.version, p.change.model_dump_json()),
                    )
                if planned:
                    c.execute("UPDATE flag_meta SET value = value + 1 WHERE name = 'changes'")
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
            return planned

        return await self._run(write)

    @staticmethod
    def _current(c: sqlite3.Connection, key: str) -> Flag | None:
        row = c.execute("SELECT flag FROM flags WHERE key = ?", (key,)).fetchone()
        return Flag.model_validate_json(row[0]) if row else None

    @staticmethod
    def _last(c: sqlite3.Connection, key: str) -> int:
        row = c.execute("SELECT MAX(version) FROM flag_history WHERE key = ?", (key,)).fetchone()
        return int(row[0] or 0)

    # Plumbing ----------------------------------------------------------------------------

    def _flag(self, key: str, text: str) -> Flag:
        try:
            return Flag.model_validate_json(text)
        except ValidationError as exc:
            raise ConfigurationError(
                f"stored flag {key!r} in {self.path} is no longer valid ({exc.error_count()} "
                f"errors): PUT a corrected definition for it"
            ) from exc

    def _locked(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            if self._closed:
                raise Unavailable(f"flag store {self.path} is closed")
            try:
                return work(self._conn)
            except sqlite3.Error as exc:
                raise Unavailable(f"cannot access flag store {self.path}: {exc}") from exc

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._locked, work)

    async def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
                self._poll.close()
