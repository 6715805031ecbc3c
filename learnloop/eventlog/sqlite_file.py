"""The embedded event log's SQLite file: its tables, statements and connections.

Shared by the log's readers (:mod:`learnloop.eventlog.sqlite`) and its writer
(:mod:`learnloop.eventlog.group_commit`). Several processes of ``learnloop serve``
open the same file; WAL mode lets them read while one of them writes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

from learnloop.errors import Unavailable

FILE_NAME: Final = "events.sqlite"

# "offset" is an SQL keyword (LIMIT .. OFFSET), hence the quotes. AUTOINCREMENT keeps
# offsets strictly increasing even if a retention job ever deletes the newest rows.
_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS events (
        "offset" INTEGER PRIMARY KEY AUTOINCREMENT,
        stream TEXT NOT NULL,
        key TEXT,
        unique_key TEXT,
        value BLOB NOT NULL
    )""",
    'CREATE INDEX IF NOT EXISTS events_stream_offset ON events (stream, "offset")',
    """CREATE UNIQUE INDEX IF NOT EXISTS events_stream_unique_key
        ON events (stream, unique_key) WHERE unique_key IS NOT NULL""",
    "CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
)
FIND_UNIQUE: Final = (
    'SELECT "offset", stream, key, value FROM events WHERE stream = ? AND unique_key = ?'
)
INSERT: Final = "INSERT INTO events (stream, key, unique_key, value) VALUES (?, ?, ?, ?)"
# One statement for the common case of a new unique key: no row back means it existed.
INSERT_NEW_UNIQUE: Final = (
    "INSERT INTO events (stream, key, unique_key, value) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (stream, unique_key) WHERE unique_key IS NOT NULL DO NOTHING "
    'RETURNING "offset"'
)
UPSERT_STATE: Final = (
    "INSERT INTO state (name, value) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)
BUSY_TIMEOUT_MS: Final = 10_000


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN/COMMIT ourselves) that may be
    handed to another thread; each connection is used by one thread at a time."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def create_schema(path: Path) -> None:
    """Create the database file, switch it to WAL and create the tables (idempotent)."""
    conn = connect(path)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise Unavailable(
                f"event log {path}: cannot switch to WAL mode (got {mode!r}); "
                "put the data directory on a local file system"
            )
        for statement in _SCHEMA:
            conn.execute(statement)
    finally:
        conn.close()
