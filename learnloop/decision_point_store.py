"""Durable decision-point store for the embedded mode: one small SQLite table of JSON configs.

Writes are rare (an admin edits a decision point) and tiny, so the methods call
sqlite3 inline rather than through a writer thread; each write is its own
fsynced transaction. ``seed`` installs the shipped defaults on first start
without overwriting what an admin changed since.

Every process of ``learnloop serve`` opens the same file and reads through a
cache. A change committed by another process is noticed by ``PRAGMA
data_version`` (SQLite bumps it when another connection commits; a few
microseconds, no disk read), checked at most every ``change_check_seconds``, and at
once for a name missing from the cache or a ``fresh`` read. So a ``PUT`` through one
API worker reaches every other worker's decisions and the loop process well within a
second, and a new decision point, or an admin's read, sees it at once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from learnloop.errors import ConfigurationError, Unavailable
from schemas.config import DecisionPointConfig

FILE_NAME: Final = "decision_points.sqlite"

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS decision_points (name TEXT PRIMARY KEY, config TEXT NOT NULL)"
)
# ON CONFLICT .. DO UPDATE keeps the row (and its rowid), so ``all()`` lists decision
# points in the order they were first created, like the in-memory store.
_UPSERT: Final = (
    "INSERT INTO decision_points (name, config) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET config = excluded.config"
)
_INSERT_NEW: Final = (
    "INSERT INTO decision_points (name, config) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"
)


class SqliteDecisionPointStore:
    """A :class:`~learnloop.decision_points.DecisionPointStore` kept in a SQLite file.

    Parameters
    ----------
    path
        The database file (e.g. ``data_dir / "decision_points.sqlite"``); its
        directory is created if missing.
    change_check_seconds
        How often a read checks whether another process changed the file.
    monotonic
        The clock of those checks (tests pass a fake one).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        change_check_seconds: float = 0.2,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.change_check_seconds = change_check_seconds
        self._monotonic = monotonic
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout = 10000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise Unavailable(
                f"cannot open decision-point store {self.path}: {exc}; "
                "check that the data directory is writable"
            ) from exc
        # One connection shared by the event loop and any worker thread: one call at a time.
        self._lock = threading.Lock()
        self._closed = False
        # Read-through cache: every decision reads its config. This process's own writes
        # update it; other processes' writes are noticed by data_version (see above).
        self._cache: dict[str, DecisionPointConfig] | None = None
        self._data_version: int | None = None
        self._checked_at = 0.0

    async def get(self, name: str, *, fresh: bool = False) -> DecisionPointConfig | None:
        found = self._configs(check_now=fresh).get(name)
        if found is None and not fresh:
            # A name this process has not seen may have just been created by another one
            # (a Personalizer loop is created by its first call, on whichever worker):
            # check now instead of answering "unknown" until the next interval.
            found = self._configs(check_now=True).get(name)
        return found

    async def put(self, config: DecisionPointConfig) -> None:
        """Create or replace a decision point; durable on return."""
        self._run(_UPSERT, (config.name, config.model_dump_json()))
        self._configs()[config.name] = config

    async def all(self) -> list[DecisionPointConfig]:
        return list(self._configs().values())

    def _configs(self, *, check_now: bool = False) -> dict[str, DecisionPointConfig]:
        if self._cache is not None:
            now = self._monotonic()
            if not check_now and now - self._checked_at < self.change_check_seconds:
                return self._cache
            self._checked_at = now
            if self._run("PRAGMA data_version", ())[0][0] == self._data_version:
                return self._cache
        # Read the version first: a commit landing between the two reads is then seen
        # again by the next check instead of being missed.
        self._data_version = self._run("PRAGMA data_version", ())[0][0]
        self._checked_at = self._monotonic()
        rows = self._run("SELECT name, config FROM decision_points ORDER BY rowid", ())
        self._cache = {name: self._decode(name, text) for name, text in rows}
        return self._cache

    async def seed(self, configs: Iterable[DecisionPointConfig]) -> list[str]:
        """Insert the decision points that do not exist yet; return the names inserted.

        Existing ones are left as they are, so restarting with the shipped defaults
        never undoes an admin's change. All inserts share one transaction.
        """
        inserted: list[str] = []
        with self._lock:
            self._check_open()
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                for config in configs:
                    cursor = self._conn.execute(
                        _INSERT_NEW, (config.name, config.model_dump_json())
                    )
                    if cursor.rowcount == 1:
                        inserted.append(config.name)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise self._failure("seed", exc) from exc
        self._cache = None  # reload on next read, in insertion order
        return inserted

    async def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def _run(self, sql: str, params: tuple[str, ...] | tuple[()]) -> list[tuple[Any, ...]]:
        """One statement in autocommit mode: a write is its own fsynced transaction."""
        with self._lock:
            self._check_open()
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._failure("access", exc) from exc

    def _decode(self, name: str, text: str) -> DecisionPointConfig:
        try:
            return DecisionPointConfig.model_validate_json(text)
        except ValidationError as exc:
            raise ConfigurationError(
                f"stored decision point {name!r} in {self.path} is no longer valid ({exc}); "
                "PUT a corrected config for it"
            ) from exc

    def _failure(self, action: str, exc: sqlite3.Error) -> Unavailable:
        return Unavailable(f"cannot {action} decision-point store {self.path}: {exc}")

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable(f"decision-point store {self.path} is closed")
