"""Personalizer documents for the embedded mode: ``<data_dir>/personalizer.sqlite``.

One table of JSON documents keyed by ``(loop, kind, key)``. Every API worker of
``learnloop serve`` (and the process that runs evaluation jobs) opens the same file,
so the store reads SQLite on every call instead of caching: a settings document
written through one worker must be what the next request sees on another. WAL lets
readers go on while a write commits; writes are tiny and each is its own fsynced
transaction, run in a thread so a busy file never blocks the event loop.

``list`` answers in the order the keys were first put: an upsert keeps the row and
its ``rowid`` (``ON CONFLICT .. DO UPDATE``), and the rows are read by ``rowid``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

from learnloop.errors import ConfigurationError, Unavailable
from learnloop.personalizer_store import Document, Kind

FILE_NAME: Final = "personalizer.sqlite"
T = TypeVar("T")

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS personalizer_documents ("
    " loop TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, document TEXT NOT NULL,"
    " PRIMARY KEY (loop, kind, key))"
)
_UPSERT: Final = (
    "INSERT INTO personalizer_documents (loop, kind, key, document) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (loop, kind, key) DO UPDATE SET document = excluded.document"
)
_INSERT_NEW: Final = (
    "INSERT INTO personalizer_documents (loop, kind, key, document) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (loop, kind, key) DO NOTHING"
)
_WHERE_ONE: Final = "WHERE loop = ? AND kind = ? AND key = ?"


class SqlitePersonalizerStore:
    """A :class:`~learnloop.personalizer_store.PersonalizerStore` in a SQLite file.

    Parameters
    ----------
    path
        The database file (``data_dir / FILE_NAME``); its directory is created if missing.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout = 10000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise Unavailable(
                f"cannot open the Personalizer store {self.path}: {exc}; "
                "check that the data directory is writable"
            ) from exc
        self._lock = threading.Lock()  # one connection: one call at a time
        self._closed = False

    @classmethod
    def open(cls, data_dir: Path | str) -> SqlitePersonalizerStore:
        """The store of a data directory (``<data_dir>/personalizer.sqlite``)."""
        return cls(Path(data_dir) / FILE_NAME)

    async def get(self, loop: str, kind: Kind, key: str) -> Document | None:
        rows = await self._run(
            lambda c: c.execute(
                f"SELECT document FROM personalizer_documents {_WHERE_ONE}", (loop, kind, key)
            ).fetchall()
        )
        return self._decode(loop, kind, key, rows[0][0]) if rows else None

    async def put(self, loop: str, kind: Kind, key: str, document: Document) -> None:
        text = _encode(document)
        await self._run(lambda c: c.execute(_UPSERT, (loop, kind, key, text)))

    async def put_if_absent(self, loop: str, kind: Kind, key: str, document: Document) -> bool:
        text = _encode(document)
        # The primary key decides between two workers creating the same key at once.
        count = await self._run(lambda c: c.execute(_INSERT_NEW, (loop, kind, key, text)).rowcount)
        return bool(count == 1)

    async def delete(self, loop: str, kind: Kind, key: str) -> bool:
        count = await self._run(
            lambda c: (
                c.execute(
                    f"DELETE FROM personalizer_documents {_WHERE_ONE}", (loop, kind, key)
                ).rowcount
            )
        )
        return bool(count == 1)

    async def list(self, loop: str, kind: Kind) -> list[Document]:
        rows = await self._run(
            lambda c: c.execute(
                "SELECT key, document FROM personalizer_documents "
                "WHERE loop = ? AND kind = ? ORDER BY rowid",
                (loop, kind),
            ).fetchall()
        )
        return [self._decode(loop, kind, key, text) for key, text in rows]

    async def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    # Plumbing ----------------------------------------------------------------------------

    def _decode(self, loop: str, kind: str, key: str, text: str) -> Document:
        try:
            found = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(
                f"Personalizer document {loop}/{kind}/{key} in {self.path} is not JSON: {exc}"
            ) from exc
        if not isinstance(found, dict):
            raise ConfigurationError(
                f"Personalizer document {loop}/{kind}/{key} in {self.path} is not a JSON object"
            )
        return found

    def _locked(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            if self._closed:
                raise Unavailable(f"Personalizer store {self.path} is closed")
            try:
                return work(self._conn)
            except sqlite3.Error as exc:
                raise Unavailable(
                    f"cannot access the Personalizer store {self.path}: {exc}"
                ) from exc

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._locked, work)


def _encode(document: Document) -> str:
    """JSON text of a document; refuses what JSON cannot hold before anything is written."""
    return json.dumps(document, separators=(",", ":"), allow_nan=False)
