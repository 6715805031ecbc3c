"""What the Personalizer-compatible API keeps beside the decision point: documents per loop.

A Personalizer *loop* is a learnloop decision point (``docs/personalizer.md``). Most of
its settings map onto the decision point's configuration; the rest (learning mode
bookkeeping, ``modelExportFrequency``, ``logRetentionDays``, auto-optimization, when
the logs were last cleared) and its evaluations and feature-importance jobs are JSON
documents in this store, by ``(loop, kind, key)``:

- ``settings`` / ``service``: the Personalizer-only service settings;
- ``evaluation`` / ``<evaluationId>``: one evaluation job and its result;
- ``feature_importance`` / ``<featureImportanceId>``: one feature-importance job;
- ``state`` / ``<name>``: small facts the API records (first and last decision time).

The documents' shapes are the pydantic models of ``schemas/personalizer*.py``; the
store only keeps JSON objects. Backends: :class:`MemoryPersonalizerStore` (tests),
``personalizer_store_sqlite.py`` (embedded) and ``personalizer_store_redis.py``.
``list`` answers in the order the keys were first put.
"""

from __future__ import annotations

import copy
from typing import Any, Literal, Protocol

Kind = Literal["settings", "evaluation", "feature_importance", "state"]
Document = dict[str, Any]


class PersonalizerStore(Protocol):
    async def get(self, loop: str, kind: Kind, key: str) -> Document | None: ...

    async def put(self, loop: str, kind: Kind, key: str, document: Document) -> None:
        """Create or replace one document (a replaced key keeps its place in ``list``)."""

    async def put_if_absent(self, loop: str, kind: Kind, key: str, document: Document) -> bool:
        """Create the document unless the key exists; whether it was created."""

    async def delete(self, loop: str, kind: Kind, key: str) -> bool:
        """Remove one document; whether it existed."""

    async def list(self, loop: str, kind: Kind) -> list[Document]: ...

    async def close(self) -> None: ...


class MemoryPersonalizerStore:
    """A :class:`PersonalizerStore` in a dict (copies in and out, as a real store would)."""

    def __init__(self) -> None:
        self._documents: dict[tuple[str, str], dict[str, Document]] = {}

    def _bucket(self, loop: str, kind: Kind) -> dict[str, Document]:
        return self._documents.setdefault((loop, kind), {})

    async def get(self, loop: str, kind: Kind, key: str) -> Document | None:
        found = self._bucket(loop, kind).get(key)
        return None if found is None else copy.deepcopy(found)

    async def put(self, loop: str, kind: Kind, key: str, document: Document) -> None:
        self._bucket(loop, kind)[key] = copy.deepcopy(document)

    async def put_if_absent(self, loop: str, kind: Kind, key: str, document: Document) -> bool:
        bucket = self._bucket(loop, kind)
        if key in bucket:
            return False
        bucket[key] = copy.deepcopy(document)
        return True

    async def delete(self, loop: str, kind: Kind, key: str) -> bool:
        return self._bucket(loop, kind).pop(key, None) is not None

    async def list(self, loop: str, kind: Kind) -> list[Document]:
        return [copy.deepcopy(d) for d in self._bucket(loop, kind).values()]

    async def close(self) -> None:
        return None
