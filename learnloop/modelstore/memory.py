"""In-memory model store, for tests: the same rules as the durable stores (newer versions
only, a release history, the newest ``keep`` models plus the pinned ones)."""

from __future__ import annotations

from learnloop.errors import Conflict, NotFound
from learnloop.modelstore.base import PINNED_SOURCES
from schemas.api import StoredRelease
from schemas.events import ModelRelease


class MemoryModelStore:
    """Models in dicts. ``keep=None`` keeps every model's bytes."""

    def __init__(self, keep: int | None = None) -> None:
        self.keep = keep
        self._current: dict[str, ModelRelease] = {}
        self._blobs: dict[str, bytes] = {}
        self._history: dict[str, list[ModelRelease]] = {}
        self._pinned: set[tuple[str, int]] = set()

    async def publish(self, release: ModelRelease, model: bytes) -> ModelRelease:
        dp = release.decision_point
        current = self._current.get(dp)
        if current is not None and release.version <= current.version:
            raise Conflict(
                f"model release {dp} v{release.version} is not newer than "
                f"the current v{current.version}"
            )
        location = f"memory://{dp}/{release.version}"
        self._blobs[location] = model
        stored = release.model_copy(update={"model_location": location})
        self._current[dp] = stored
        history = self._history.setdefault(dp, [])
        history.append(stored)
        if self.keep is not None:
            for old in history[: -self.keep]:
                if old.source not in PINNED_SOURCES and (dp, old.version) not in self._pinned:
                    self._blobs.pop(old.model_location, None)
        return stored

    async def current(self, decision_point: str) -> ModelRelease | None:
        return self._current.get(decision_point)

    async def load(self, release: ModelRelease) -> bytes:
        location = release.model_location or f"memory://{release.decision_point}/{release.version}"
        try:
            return self._blobs[location]
        except KeyError:
            raise NotFound(
                f"model {release.decision_point} v{release.version} is no longer stored"
            ) from None

    async def history(self, decision_point: str, limit: int | None = None) -> list[StoredRelease]:
        releases = list(reversed(self._history.get(decision_point, [])))[:limit]
        return [
            StoredRelease(release=r, model_kept=r.model_location in self._blobs) for r in releases
        ]

    async def pin(self, decision_point: str, version: int) -> bool:
        self._pinned.add((decision_point, version))
        return f"memory://{decision_point}/{version}" in self._blobs

    async def close(self) -> None:
        return None
