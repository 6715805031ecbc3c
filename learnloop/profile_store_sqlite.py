"""Durable profile store for the embedded mode: ``<data_dir>/profiles.sqlite`` (WAL).

Every process of ``learnloop serve`` opens the same file: the API workers write bulk
updates, labels and deletions, the loop process applies the real-time interactions.
Each call is one short ``BEGIN IMMEDIATE`` transaction, run in a worker thread so
the event loop never waits on the disk.

Exactly once: an interaction's id goes into ``applied`` in the same transaction as
its effect on the profile and the consumer's checkpoint, so an id already there is
skipped and a crash leaves either all three or none. Ids are kept for
``dedup_seconds`` of event time past the newest one applied.

The change feed: one counter in ``meta`` numbers every write; a profile row keeps
the number of its latest change (indexed), a deleted user leaves a row in
``tombstones`` with the number of its deletion. Writers are serialised by SQLite, so
numbers become visible in order and a reader resuming from a cursor misses nothing.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, TypeVar

from pydantic import ValidationError

from learnloop.clock import Clock, SystemClock
from learnloop.errors import ConfigurationError, Unavailable
from learnloop.profiles import (
    DEFAULT_DEDUP_SECONDS,
    ProfileChange,
    apply_interaction,
    apply_update,
    relabel,
    restamp,
)
from schemas.profiles import Interaction, ProfileUpdate, UserProfile

FILE_NAME: Final = "profiles.sqlite"
T = TypeVar("T")

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS profiles "
    "(user_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, body TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS profiles_seq ON profiles (seq)",
    "CREATE TABLE IF NOT EXISTS tombstones (user_id TEXT PRIMARY KEY, seq INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS tombstones_seq ON tombstones (seq)",
    "CREATE TABLE IF NOT EXISTS applied (interaction_id TEXT PRIMARY KEY, at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS applied_at ON applied (at)",
    "CREATE TABLE IF NOT EXISTS checkpoints (name TEXT PRIMARY KEY, blob BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT INTO meta (key, value) VALUES ('seq', 0) ON CONFLICT (key) DO NOTHING",
)
_CHANGES: Final = (
    "SELECT seq, user_id, body FROM profiles WHERE seq > ? "
    "UNION ALL SELECT seq, user_id, NULL FROM tombstones WHERE seq > ? "
    "ORDER BY seq LIMIT ?"
)


class SqliteProfileStore:
    """A :class:`~learnloop.profiles.ProfileStore` in one SQLite file.

    Parameters
    ----------
    path
        The database file (``data_dir / "profiles.sqlite"``); its directory is created.
    clock
        Stamps ``updated_at`` of bulk updates and labels.
    dedup_seconds
        How long (event time) applied interaction ids are remembered.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Clock | None = None,
        dedup_seconds: float = DEFAULT_DEDUP_SECONDS,
    ) -> None:
        self.path = Path(path)
        self.clock = clock or SystemClock()
        self.dedup_seconds = dedup_seconds
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout = 10000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            for statement in _SCHEMA:
                self._conn.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise Unavailable(
                f"cannot open profile store {self.path}: {exc}; "
                "check that the data directory is writable"
            ) from exc
        self._lock = threading.Lock()  # one connection: one call at a time
        self._closed = False

    # -- reads -----------------------------------------------------------------------

    async def get(self, user_id: str) -> UserProfile | None:
        return await self._run(lambda c: self._get(c, user_id), write=False)

    async def load_checkpoint(self, name: str) -> bytes | None:
        def read(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT blob FROM checkpoints WHERE name = ?", (name,)).fetchone()
            return bytes(row[0]) if row else None

        return await self._run(read, write=False)

    async def changes(self, after: int, limit: int = 1000) -> tuple[list[ProfileChange], int]:
        def read(conn: sqlite3.Connection) -> list[ProfileChange]:
            rows = conn.execute(_CHANGES, (after, after, limit)).fetchall()
            return [
                ProfileChange(seq, user, self._decode(user, body) if body is not None else None)
                for seq, user, body in rows
            ]

        out = await self._run(read, write=False)
        return out, (out[-1].seq if out else after)

    # -- writes ----------------------------------------------------------------------

    async def put(self, profile: UserProfile) -> UserProfile:
        return await self._run(lambda c: self._replace(c, profile))

    async def put_many(self, profiles: Sequence[UserProfile]) -> int:
        def write(conn: sqlite3.Connection) -> int:
            for profile in profiles:
                self._replace(conn, profile)
            return len(profiles)

        return await self._run(write)

    async def update(self, user_id: str, update: ProfileUpdate) -> UserProfile:
        now = self.clock.now()
        return await self._run(
            lambda c: self._write(c, apply_update(self._get(c, user_id), user_id, update, now))
        )

    async def update_many(self, updates: Sequence[tuple[str, ProfileUpdate]]) -> int:
        now = self.clock.now()

        def write(conn: sqlite3.Connection) -> int:
            for user_id, update in updates:
                self._write(conn, apply_update(self._get(conn, user_id), user_id, update, now))
            return len(updates)

        return await self._run(write)

    async def set_label(self, user_id: str, persona: str | None) -> UserProfile:
        now = self.clock.now()
        return await self._run(
            lambda c: self._write(c, relabel(self._get(c, user_id), user_id, persona, now))
        )

    async def delete(self, user_id: str) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            if conn.execute("DELETE FROM profiles WHERE user_id = ?", (user_id,)).rowcount == 0:
                return False
            conn.execute(
                "INSERT INTO tombstones (user_id, seq) VALUES (?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET seq = excluded.seq",
                (user_id, self._next_seq(conn)),
            )
            return True

        return await self._run(write)

    async def apply(
        self, interactions: Sequence[Interaction], checkpoint: tuple[str, bytes] | None = None
    ) -> int:
        def write(conn: sqlite3.Connection) -> int:
            new = 0
            newest = None
            changed: dict[str, UserProfile] = {}
            for interaction in interactions:
                at = interaction.timestamp.timestamp()
                newest = at if newest is None else max(newest, at)
                inserted = conn.execute(
                    "INSERT INTO applied (interaction_id, at) VALUES (?, ?) "
                    "ON CONFLICT (interaction_id) DO NOTHING",
                    (interaction.interaction_id, at),
                ).rowcount
                if inserted:
                    user = interaction.user_id
                    stored = changed[user] if user in changed else self._get(conn, user)
                    changed[user] = apply_interaction(stored, interaction)
                    new += 1
            for profile in changed.values():  # one write per user and batch
                self._write(conn, profile)
            if checkpoint is not None:
                conn.execute(
                    "INSERT INTO checkpoints (name, blob) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET blob = excluded.blob",
                    checkpoint,
                )
            if newest is not None:
                conn.execute("DELETE FROM applied WHERE at < ?", (newest - self.dedup_seconds,))
            return new

        return await self._run(write)

    async def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    # -- inside a transaction --------------------------------------------------------

    def _get(self, conn: sqlite3.Connection, user_id: str) -> UserProfile | None:
        row = conn.execute("SELECT body FROM profiles WHERE user_id = ?", (user_id,)).fetchone()
        return self._decode(user_id, row[0]) if row else None

    def _replace(self, conn: sqlite3.Connection, profile: UserProfile) -> UserProfile:
        return self._write(conn, restamp(self._get(conn, profile.user_id), profile))

    def _write(self, conn: sqlite3.Connection, profile: UserProfile) -> UserProfile:
        conn.execute(
            "INSERT INTO profiles (user_id, seq, body) VALUES (?, ?, ?) ON CONFLICT (user_id) "
            "DO UPDATE SET seq = excluded.seq, body = excluded.body",
            (profile.user_id, self._next_seq(conn), profile.model_dump_json()),
        )
        conn.execute("DELETE FROM tombstones WHERE user_id = ?", (profile.user_id,))
        return profile

    @staticmethod
    def _next_seq(conn: sqlite3.Connection) -> int:
        row = conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'seq' RETURNING value")
        return int(row.fetchone()[0])

    def _decode(self, user_id: str, body: str) -> UserProfile:
        try:
            return UserProfile.model_validate_json(body)
        except ValidationError as exc:
            raise ConfigurationError(
                f"stored profile of {user_id!r} in {self.path} is no longer valid ({exc}); "
                "PUT a corrected profile or DELETE the user"
            ) from exc

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        return await asyncio.to_thread(self._call, fn, write)

    def _call(self, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        with self._lock:
            if self._closed:
                raise Unavailable(f"profile store {self.path} is closed")
            try:
                if not write:
                    return fn(self._conn)
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(self._conn)
                    self._conn.execute("COMMIT")
                    return result
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise Unavailable(f"cannot access profile store {self.path}: {exc}") from exc
