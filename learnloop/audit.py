"""The audit trail of promotions and rollbacks: who changed what a decision point serves.

Behind a small interface (:class:`AuditLog`) with an in-memory backend for tests,
a SQLite file for the embedded mode (``data_dir/audit.sqlite``) and a Redis list
per decision point for the distributed mode (:mod:`learnloop.audit_redis`).
Records are appended, never changed; ``records`` lists them newest first.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Final, Protocol

from pydantic import ValidationError

from learnloop.errors import Unavailable
from schemas.audit import ModelAuditRecord

FILE_NAME: Final = "audit.sqlite"

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS model_audit ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " decision_point TEXT NOT NULL,"
    " record TEXT NOT NULL)"
)
_INDEX: Final = "CREATE INDEX IF NOT EXISTS model_audit_dp ON model_audit (decision_point, seq)"


class AuditLog(Protocol):
    async def append(self, record: ModelAuditRecord) -> None:
        """Record ``record`` durably."""
        ...

    async def records(
        self, decision_point: str, limit: int | None = None
    ) -> list[ModelAuditRecord]:
        """The decision point's records, newest first (at most ``limit``)."""
        ...

    async def close(self) -> None: ...


class MemoryAuditLog:
    """Audit records in a list (tests)."""

    def __init__(self) -> None:
        self._records: list[ModelAuditRecord] = []

    async def append(self, record: ModelAuditRecord) -> None:
        self._records.append(record)

    async def records(
        self, decision_point: str, limit: int | None = None
    ) -> list[ModelAuditRecord]:
        mine = [r for r in reversed(self._records) if r.decision_point == decision_point]
        return mine[:limit]

    async def close(self) -> None:
        return None


class SqliteAuditLog:
    """Audit records in a SQLite table, each append its own fsynced transaction.

    Several processes may append (the CLI while the service runs); SQLite
    serialises them.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout = 10000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute(_SCHEMA)
            self._conn.execute(_INDEX)
        except (OSError, sqlite3.Error) as exc:
            raise Unavailable(
                f"cannot open the audit log {self.path}: {exc}; "
                "check that the data directory is writable"
            ) from exc

    async def append(self, record: ModelAuditRecord) -> None:
        await asyncio.to_thread(self._append, record)

    def _append(self, record: ModelAuditRecord) -> None:
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT INTO model_audit (decision_point, record) VALUES (?, ?)",
                    (record.decision_point, record.model_dump_json()),
                )
            except sqlite3.Error as exc:
                raise Unavailable(f"cannot write the audit log {self.path}: {exc}") from exc

    async def records(
        self, decision_point: str, limit: int | None = None
    ) -> list[ModelAuditRecord]:
        return await asyncio.to_thread(self._records, decision_point, limit)

    def _records(self, decision_point: str, limit: int | None) -> list[ModelAuditRecord]:
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT record FROM model_audit WHERE decision_point = ? "
                    "ORDER BY seq DESC LIMIT ?",
                    (decision_point, -1 if limit is None else limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise Unavailable(f"cannot read the audit log {self.path}: {exc}") from exc
        return [parse_record(row[0], str(self.path)) for row in rows]

    async def close(self) -> None:
        with self._lock:
            self._conn.close()


def parse_record(raw: str | bytes, where: str) -> ModelAuditRecord:
    try:
        return ModelAuditRecord.model_validate_json(raw)
    except ValidationError as exc:
        raise Unavailable(
            f"an audit record in {where} is not valid ({exc.error_count()} errors)"
        ) from exc
